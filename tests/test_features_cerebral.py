"""Cerebral autoregulation TFA against CARNet's tfa_car.m outputs and a known filter."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import xarray as xr

from cardiolab.errors import SignalQualityError
from cardiolab.features import cerebral_autoregulation, mean_flow_index
from cardiolab.features.cerebral import transfer_function_spectra

SIDES = [("left", "mcav_l"), ("right", "mcav_r")]
BANDS = ("vlf", "lf", "hf")
#: reference key in reference_tfa.json -> our variable
REF_VARS = {
    "gain": "gain",
    "gain_norm": "gain_norm",
    "gain_pct_per_pct": "gain_pct",
    "phase_deg": "phase",
    "coh2": "coherence",
}


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


# --- mean flow index Mx -------------------------------------------------------------


def pandas_mx(pressure, velocity, fs, block_s=3.0, blocks=20, step=20, min_blocks=15):
    """Independent Mx: pandas groupby blocks, then rolling Pearson correlation."""
    n_block = int(round(block_s * fs))
    df = pd.DataFrame({"p": pressure, "v": velocity})
    g = df.groupby(np.arange(len(df)) // n_block)
    means = g.mean()
    complete = g.count().eq(g.size(), axis=0).all(axis=1)  # no NaN sample in the block
    means = means[g.size() == n_block].where(complete, np.nan)  # whole blocks only
    r = means["p"].rolling(blocks, min_periods=min_blocks).corr(means["v"])
    per_window = r.iloc[blocks - 1 :: step]
    return per_window.mean(), per_window.to_numpy()


def carnet_with_gaps(data, column):
    """CARNet sample with NaN runs: 7 blocks of window 1 (rejected), 3 of window 3."""
    p, v = data["abp"].to_numpy().copy(), data[column].to_numpy().copy()
    for block in (22, 25, 27, 30, 31, 33, 38):  # window 60-120 s: 13 of 20 blocks left
        p[block * 30 + 5] = np.nan
    v[3 * 600 + 10 : 3 * 600 + 95] = np.nan  # window 180-240 s: its blocks 0-3 hit
    return p, v


@pytest.mark.parametrize(("side", "column"), SIDES)
@pytest.mark.parametrize("case", ["clean", "gaps", "step9"])
def test_mx_matches_pandas_on_carnet_sample(carnet, side, column, case):
    data, _, _ = carnet
    p, v = data["abp"].to_numpy(), data[column].to_numpy()
    step_s = 9.0 if case == "step9" else None
    if case == "gaps":
        p, v = carnet_with_gaps(data, column)
    p_in, v_in = p.copy(), v.copy()
    ds = mean_flow_index(p, v, fs=10.0, step_s=step_s)
    np.testing.assert_array_equal(p, p_in)  # inputs not mutated
    np.testing.assert_array_equal(v, v_in)
    want, want_windows = pandas_mx(p, v, 10.0, step=3 if step_s else 20)
    print(f"\n{side} {case}: Mx {float(ds['mx']):.6f} (pandas {want:.6f})")
    np.testing.assert_allclose(ds["mx_window"].values, want_windows, rtol=0, atol=1e-12)
    assert float(ds["mx"]) == pytest.approx(want, abs=1e-12)
    # 3072 samples = 102 whole 3 s blocks: 5 windows of 20 blocks, or 28 at a 9 s step
    n_total = 28 if step_s else 5
    assert ds.sizes["window"] == n_total
    assert int(ds["n_windows"]) + int(ds["n_windows_rejected"]) == n_total
    np.testing.assert_allclose(ds["window"].values, np.arange(n_total) * (9 if step_s else 60))
    if case == "gaps":
        assert int(ds["n_windows_rejected"]) == 1 and np.isnan(ds["mx_window"].values[1])
        np.testing.assert_array_equal(ds["n_blocks"].values, [20, 13, 20, 16, 20])
    else:
        assert int(ds["n_windows_rejected"]) == 0


def test_mx_carnet_sample_physiological(carnet):
    data, _, _ = carnet
    for side, column in SIDES:
        ds = mean_flow_index(
            xr.DataArray(data["abp"].to_numpy(), attrs={"sampling_rate": 10.0}),
            xr.DataArray(data[column].to_numpy(), attrs={"sampling_rate": 10.0}),
        )
        mx = ds["mx_window"].values
        print(f"\n{side}: Mx {float(ds['mx']):.4f}, windows {np.round(mx, 4)}")
        assert np.all((mx >= -1) & (mx <= 1))
        assert float(ds["mx"]) == pytest.approx(mx.mean(), rel=1e-12)
        assert int(ds["n_windows"]) == 5
        params = json.loads(ds.attrs["parameters"])
        assert params["fs"] == 10.0 and params["blocks_per_window"] == 20
        assert params["min_blocks"] == 15 and params["step_s"] == 60.0
        for var in ("mx", "mx_window", "n_windows", "n_windows_rejected", "n_blocks"):
            assert {"units", "long_name"} <= set(ds[var].attrs), var


def _pressure(n, seed):
    """MAP-like: 80 mmHg + slow random fluctuations + white noise, 10 Hz."""
    rng = np.random.default_rng(seed)
    slow = scipy.signal.lfilter([0.1], [1, -0.98], rng.normal(0, 3.0, n))
    return 80.0 + slow + rng.normal(0, 1.0, n), rng


def test_mx_known_answers():
    n = 200 * 600  # 200 one-minute windows at 10 Hz
    p, rng = _pressure(n, 5)
    passive = mean_flow_index(p, 0.7 * p + 5.0 + rng.normal(0, 0.2, n), fs=10.0)
    assert float(passive["mx"]) > 0.99
    inverse = mean_flow_index(p, 150.0 - p, fs=10.0)
    np.testing.assert_allclose(inverse["mx_window"].values, -1.0, atol=1e-12)
    # independent block means: each window's r has SD 1/sqrt(19) = 0.23, the mean over
    # 200 windows 0.016; tolerance 0.08 = 5 SD
    independent = mean_flow_index(p, 60.0 + rng.normal(0, 2.0, n), fs=10.0)
    assert abs(float(independent["mx"])) < 0.08
    assert float(independent["mx_window"].std()) == pytest.approx(1 / np.sqrt(19), rel=0.2)
    assert int(independent["n_windows"]) == 200


def test_mx_window_and_step_parameters():
    p, rng = _pressure(3600, 6)  # 360 s
    v = 0.5 * p + rng.normal(0, 1.0, p.size)
    ds = mean_flow_index(p, v, fs=10.0, block_s=2.0, window_s=40.0, step_s=10.0)
    assert ds.sizes["window"] == (180 - 20) // 5 + 1
    want, want_windows = pandas_mx(p, v, 10.0, block_s=2.0, blocks=20, step=5)
    np.testing.assert_allclose(ds["mx_window"].values, want_windows, atol=1e-12)
    with pytest.raises(ValueError, match="window_s = 50.0 s is not a whole number of blocks"):
        mean_flow_index(p, v, fs=10.0, window_s=50.0)
    with pytest.raises(ValueError, match="step_s"):
        mean_flow_index(p, v, fs=10.0, step_s=0.01)


@pytest.mark.parametrize(("side", "column"), SIDES)
def test_mx_step_not_whole_blocks(carnet, side, column):
    """10 s step with 3 s blocks: each window's blocks start at the window's start."""
    data, _, _ = carnet
    p, v = data["abp"].to_numpy(), data[column].to_numpy()
    ds = mean_flow_index(p, v, fs=10.0, step_s=10.0)
    assert ds.sizes["window"] == (3072 - 600) // 100 + 1
    want = [pandas_mx(p[j * 100 :], v[j * 100 :], 10.0)[1][0] for j in range(ds.sizes["window"])]
    np.testing.assert_allclose(ds["mx_window"].values, want, rtol=0, atol=1e-12)
    assert float(ds["mx"]) == pytest.approx(np.mean(want), abs=1e-12)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("lengths", "lengths differ"),
        ("short", "too short for Mx"),
        ("inf", "velocity: 1 infinite"),
        ("all_nan", "pressure: every sample is NaN"),
        ("flat", "velocity: flat signal"),
        ("nan_everywhere", "no Mx window usable"),
    ],
)
def test_mx_bad_input_raises(case, match):
    p, rng = _pressure(3000, 7)
    v = 0.5 * p + rng.normal(0, 1.0, p.size)
    if case == "lengths":
        v = v[:-1]
    elif case == "short":
        p, v = p[:599], v[:599]  # 59.9 s: 19 whole blocks < 20
    elif case == "inf":
        v[10] = np.inf
    elif case == "all_nan":
        p[:] = np.nan
    elif case == "flat":
        v[:] = 0.0
    elif case == "nan_everywhere":
        p[::60] = np.nan  # one NaN every 6 s: 10 of 20 blocks valid per window
    with pytest.raises(SignalQualityError, match=match):
        mean_flow_index(p, v, fs=10.0)
