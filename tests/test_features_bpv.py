"""Blood-pressure variability: SBP spectra against known oscillations and the
simulator's pressure truth; the estimator is hrv_frequency's, whose own tests pin it
against NeuroKit2."""

import numpy as np
import pytest
import xarray as xr

from cardiolab.errors import SignalQualityError, UnitError
from cardiolab.features.bpv import bpv_spectrum
from cardiolab.features.hrv import hrv_frequency
from cardiolab.simulate.beats import beat_series


def test_known_oscillations_carry_their_power():
    """SBP = 120 + 4 sin(2 pi 0.1 t) + 2 sin(2 pi 0.25 t) mmHg, a beat every 0.9 s:
    LF holds 4² / 2 = 8 mmHg², HF 2² / 2 = 2 mmHg² (within 5 %)."""
    t = np.cumsum(np.full(340, 0.9))
    sbp = 120.0 + 4.0 * np.sin(2 * np.pi * 0.1 * t) + 2.0 * np.sin(2 * np.pi * 0.25 * t)
    out = bpv_spectrum(t, sbp)
    assert out["sbp_lf"] == pytest.approx(8.0, rel=0.05)
    assert out["sbp_hf"] == pytest.approx(2.0, rel=0.05)
    assert out["sbp_lf_hf"] == pytest.approx(4.0, rel=0.08)
    assert out["reason"] == ""


def test_same_estimator_as_hrv_frequency():
    """Called, not copied: identical numbers for any series and options."""
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.7, 1.0, 400))
    x = 115 + rng.normal(0, 3, t.size)
    for options in ({}, {"interpolation": "cubic", "detrend": "linear", "resample_hz": 2.0}):
        ref = hrv_frequency(t, x, **options)
        got = bpv_spectrum(t, x, **options)
        for band in ("vlf", "lf", "hf", "total_power", "lf_hf"):
            assert got[f"sbp_{band}"] == ref[band] or (
                np.isnan(got[f"sbp_{band}"]) and np.isnan(ref[band])
            )


def test_simulated_mayer_waves_raise_lf_power():
    """The simulator's SBP has 0.08-0.12 Hz Mayer waves of SD 2 then 5 mmHg and a
    respiratory swing of SD 1.5 mmHg at 0.25 Hz: LF power near 2² and 5² mmHg²
    (within 35 %: eight random sinusoids over 150 s), HF near 1.5² mmHg² (10 %)."""
    epochs = [("supine", 0.0, 150.0), ("stand", 150.0, 300.0)]
    lf = {"supine": [], "stand": []}
    hf = []
    for seed in range(4):
        bs = beat_series(
            300.0, epochs, [65.0, 65.0], [115.0, 115.0], [70.0, 70.0], [10.0, 10.0],
            np.random.default_rng(seed), mayer_sd=(2.0, 5.0), sbp_noise=0.0, ectopic_rate=0.0,
        )  # fmt: skip
        for label, a, b in epochs:
            sel = (bs.t >= a + 10) & (bs.t < b)  # past the 6-s transition
            out = bpv_spectrum(bs.t[sel], bs.sbp[sel])
            lf[label].append(out["sbp_lf"])
            hf.append(out["sbp_hf"])
    assert np.mean(lf["supine"]) == pytest.approx(4.0, rel=0.35)
    assert np.mean(lf["stand"]) == pytest.approx(25.0, rel=0.35)
    assert np.mean(hf) == pytest.approx(2.25, rel=0.1)


def test_bad_input():
    out = bpv_spectrum([1.0, 2.0, 3.0], [120.0, np.nan, 118.0])
    assert np.isnan(out["sbp_lf"]) and "only 2 beats" in out["reason"]
    t = np.arange(0.0, 20.0, 0.8)  # 20 s: the PSD starts at 0.2 Hz
    out = bpv_spectrum(t, 120 + np.sin(t))
    assert np.isnan(out["sbp_lf"]) and "no LF power" in out["reason"]
    with pytest.raises(SignalQualityError, match=r"t_beats and sbp: lengths differ"):
        bpv_spectrum(t, t[:-1])
    with pytest.raises(SignalQualityError, match=r"sbp: expected a 1-D array"):
        bpv_spectrum(t, np.vstack([t, t]))
    with pytest.raises(UnitError, match=r"sbp: units 'kPa', expected 'mmHg'"):
        bpv_spectrum(t, xr.DataArray(t, attrs={"units": "kPa"}))
    x = 120 + np.sin(t)
    before = x.copy()
    bpv_spectrum(t, x)
    np.testing.assert_array_equal(x, before)
