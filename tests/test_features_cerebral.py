"""Cerebral autoregulation TFA against CARNet's tfa_car.m outputs and a known filter."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import xarray as xr

from cardiolab.errors import SignalQualityError
from cardiolab.features import cerebral_autoregulation
from cardiolab.features.cerebral import transfer_function_spectra

SIDES = [("left", "mcav_l"), ("right", "mcav_r")]
BANDS = ("vlf", "lf", "hf")
#: reference key in reference_tfa.json -> our variable
REF_VARS = {"gain": "gain", "gain_norm": "gain_norm", "phase_deg": "phase", "coh2": "coherence"}


@pytest.fixture(scope="module")
def carnet(shared_data):
    folder = shared_data / "carnet"
    data = pd.read_csv(folder / "tfa_sample_data.csv")
    ref = json.loads((folder / "reference_tfa.json").read_text())
    spectra = pd.read_csv(folder / "reference_tfa_spectra.csv")
    return data, ref["results"]["tfa_sample_data"], spectra


@pytest.mark.parametrize(("side", "column"), SIDES)
def test_bands_match_carnet_reference(carnet, side, column):
    data, ref, _ = carnet
    r = ref[side]
    ds = cerebral_autoregulation(data["abp"].to_numpy(), data[column].to_numpy(), fs=10.0)
    assert int(ds["n_windows"]) == r["n_windows"]
    assert float(ds["overlap"]) == pytest.approx(r["overlap_pct"], abs=1e-9)
    assert ds.attrs["coherence2_threshold"] == r["coherence2_threshold_used"]
    assert ds.attrs["mean_cbfv"] == pytest.approx(r["mean_cbfv"], rel=1e-12)
    print(
        f"\n{side}: n_windows {int(ds['n_windows'])} (ref {r['n_windows']}), "
        f"overlap {float(ds['overlap']):.2f} % (ref {r['overlap_pct']})"
    )
    print(f"{'band':4} {'quantity':10} {'reference':>12} {'cardiolab':>12}")
    for band in BANDS:
        for ref_key, var in REF_VARS.items():
            ours = float(ds[var].sel(band=band))
            want = r[band][ref_key]
            print(f"{band:4} {var:10} {want:12.6f} {ours:12.6f}")
            if var == "phase":
                assert ours == pytest.approx(want, abs=1.0)
            else:
                assert ours == pytest.approx(want, rel=0.01)


@pytest.mark.parametrize(("side", "column"), SIDES)
def test_spectra_match_carnet_reference(carnet, side, column):
    data, _, spectra = carnet
    ref = spectra[(spectra["sample"] == "tfa_sample_data") & (spectra["side"] == side)]
    spec = transfer_function_spectra(
        xr.DataArray(data["abp"].to_numpy(), attrs={"sampling_rate": 10.0}),
        xr.DataArray(data[column].to_numpy(), attrs={"sampling_rate": 10.0}),
    )
    k = ref["k"].to_numpy()
    np.testing.assert_allclose(spec["frequency"].values[k], ref["f_hz"], rtol=1e-12, atol=0)
    for ref_col, var in (("gain", "gain"), ("coh2", "coherence"), ("Pxx", "pxx"), ("Pyy", "pyy")):
        # the CSV carries 12 significant digits
        np.testing.assert_allclose(spec[var].values[k], ref[ref_col], rtol=1e-9, err_msg=var)
    np.testing.assert_allclose(spec["phase"].values[k], ref["phase_deg"], atol=1e-8)


def test_known_high_pass_transfer_function():
    """CBFV = 0.8 x first-order high-pass (tau 1.5 s) of MAP + noise: the textbook
    (Aaslid) model of autoregulation; gain rises and phase lead falls with frequency."""
    fs, tau, scale, n = 10.0, 1.5, 0.8, 3072
    b, a = scipy.signal.bilinear([tau, 0.0], [tau, 1.0], fs)
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 3.0, n + 500)
    y = scale * scipy.signal.lfilter(b, a, x)
    pressure = 80.0 + x[500:]  # first 50 s dropped: filter start-up transient
    velocity = 60.0 + y[500:] + rng.normal(0.0, 0.1, n)
    p_in, v_in = pressure.copy(), velocity.copy()
    ds = cerebral_autoregulation(pressure, velocity, fs=fs)
    np.testing.assert_array_equal(pressure, p_in)  # inputs not mutated
    np.testing.assert_array_equal(velocity, v_in)

    f = np.arange(513) * fs / 1024
    _, h = scipy.signal.freqz(scale * b, a, worN=f, fs=fs)
    # tolerances: Hann leakage + 3-point smoothing bias the steep VLF end most
    # (seeds 0-4: VLF gain within 4.4 %, phase 3.6 deg; LF/HF 2.0 %, 0.8 deg)
    tol = {"vlf": (0.06, 5.0), "lf": (0.03, 1.5), "hf": (0.03, 1.5)}
    for band, (lo, hi) in (("vlf", (0.02, 0.07)), ("lf", (0.07, 0.2)), ("hf", (0.2, 0.5))):
        sel = (f >= lo) & (f < hi)
        gain = np.abs(h[sel]).mean()
        phase = np.degrees(np.angle(h[sel])).mean()
        got = ds.sel(band=band)
        assert float(got["gain"]) == pytest.approx(gain, rel=tol[band][0]), band
        assert float(got["phase"]) == pytest.approx(phase, abs=tol[band][1]), band
        assert float(got["gain_norm"]) == pytest.approx(
            float(got["gain"]) / velocity.mean() * 100, rel=1e-12
        )
        assert float(got["coherence"]) > 0.9
        assert int(got["n_bins"]) == np.count_nonzero(sel)
    assert int(ds["n_windows"]) == 5
    for var in ("gain", "gain_norm", "phase", "coherence", "n_windows", "overlap"):
        assert {"units", "long_name"} <= set(ds[var].attrs)
    assert json.loads(ds.attrs["parameters"])["window_length"] == 102.4


def test_overlap_adjusted_to_cover_record():
    rng = np.random.default_rng(1)
    p, v = rng.normal(80, 3, 3000), rng.normal(60, 2, 3000)
    ds = cerebral_autoregulation(p, v)
    # 59.99 % overlap fits 5 windows of 1024 in 3000 samples; shift (3000-1024)/4 = 494
    assert int(ds["n_windows"]) == 5
    assert float(ds["overlap"]) == pytest.approx(100 * (1024 - 494) / 1024)


def test_fs_from_dataarray_attr():
    rng = np.random.default_rng(2)
    p, v = rng.normal(80, 3, 1500), rng.normal(60, 2, 1500)
    attrs = {"sampling_rate": 5.0}
    ds = cerebral_autoregulation(xr.DataArray(p, attrs=attrs), xr.DataArray(v, attrs=attrs))
    # at 5 Hz, 300 s = 1500 samples: 512-sample windows, 5 of them
    assert int(ds["n_windows"]) == 5
    with pytest.raises(SignalQualityError, match="sampling_rate"):
        cerebral_autoregulation(
            xr.DataArray(p, attrs=attrs), xr.DataArray(v, attrs={"sampling_rate": 10.0})
        )


@pytest.mark.parametrize(
    ("n_p", "n_v", "nan_in", "match"),
    [
        (1500, 1500, None, "too short"),  # 150 s at 10 Hz: 2 windows < 3
        (500, 500, None, "too short"),  # shorter than one window
        (3072, 3072, "pressure", "pressure: 1 NaN"),
        (3072, 3072, "velocity", "velocity: 1 NaN"),
        (3072, 3000, None, "lengths differ"),
        (3072, 3072, "flat", "velocity: flat signal"),
    ],
)
def test_bad_input_raises(n_p, n_v, nan_in, match):
    rng = np.random.default_rng(3)
    p, v = rng.normal(80, 3, n_p), rng.normal(60, 2, n_v)
    if nan_in == "pressure":
        p[100] = np.nan
    elif nan_in == "velocity":
        v[100] = np.nan
    elif nan_in == "flat":
        v[:] = 0.0
    with pytest.raises(SignalQualityError, match=match):
        cerebral_autoregulation(p, v, fs=10.0)


def test_unknown_parameter_rejected():
    p = np.random.default_rng(4).normal(80, 3, 3072)
    with pytest.raises(TypeError, match="window_lenght"):
        cerebral_autoregulation(p, p, window_lenght=100)


def test_defaults_are_carnet_defaults(shared_data):
    """The defaults are the parameter struct tfa_car.m ran with (reference_tfa.json)."""
    from cardiolab.features.cerebral import CARNET_DEFAULTS

    ref = json.loads((shared_data / "carnet" / "reference_tfa.json").read_text())["params"]
    for key in ("window_length", "overlap", "spectral_smoothing", "remove_negative_phase_f_cutoff"):
        assert CARNET_DEFAULTS[key] == ref[key], key
    for key in ("overlap_adjust", "apply_coherence2_threshold", "remove_negative_phase"):
        assert CARNET_DEFAULTS[key] == bool(ref[key]), key
    for band in BANDS:
        assert list(CARNET_DEFAULTS[band]) == ref[band]
    assert CARNET_DEFAULTS["coherence2_thresholds"] == {
        int(k): c for k, c in ref["coherence2_thresholds"]
    }
    assert ref["window_type"] == "hanning" and ref["detrend"] == 0


def test_reference_comparison_can_fail(carnet):
    """Without the spectral smoothing the LF gain of the reference is missed by > 1 %."""
    data, ref, _ = carnet
    ds = cerebral_autoregulation(
        data["abp"].to_numpy(), data["mcav_l"].to_numpy(), spectral_smoothing=1
    )
    assert abs(float(ds["gain"].sel(band="lf")) / ref["left"]["lf"]["gain"] - 1) > 0.01
