"""HRV features against NeuroKit2 on identical RR series (synthetic and MIT-BIH 100)."""

import numpy as np
import pytest
from reference_data import SHARED_DATA

from cardiolab.features import hrv_frequency, hrv_time

nk = pytest.importorskip("neurokit2")


def _synthetic_peaks(seed, lf_amp, hf_amp, duration_s=300.0, fs=1000):
    """R-peak samples of an RR series with LF (~0.1 Hz) and HF (~0.25 Hz) modulation."""
    rng = np.random.default_rng(seed)
    f_lf, f_hf = rng.uniform(0.08, 0.12), rng.uniform(0.2, 0.3)
    ph = rng.uniform(0, 2 * np.pi, 2)
    t = [0.5]
    while t[-1] < duration_s:
        tt = t[-1]
        rr = (
            850.0
            + lf_amp * np.sin(2 * np.pi * f_lf * tt + ph[0])
            + hf_amp * np.sin(2 * np.pi * f_hf * tt + ph[1])
            + rng.normal(0.0, 15.0)
        )
        t.append(tt + rr / 1000.0)
    return np.round(np.asarray(t) * fs).astype(int), fs


SYNTHETIC = [(0, 30, 20), (1, 10, 40), (2, 50, 5), (3, 20, 20)]


def _mitdb_peaks():
    wfdb = pytest.importorskip("wfdb")
    if not (SHARED_DATA / "mitdb" / "100.atr").exists():
        pytest.skip(f"{SHARED_DATA / 'mitdb'} not found: MIT-BIH record 100 is not available")
    ann = wfdb.rdann(str(SHARED_DATA / "mitdb" / "100"), "atr")
    beat = np.isin(ann.symbol, list("NLRBAaJSVrFejnE/fQ"))
    peaks = ann.sample[beat]
    return peaks[peaks < 300 * 360], 360  # first 5 min


def _cases():
    return [pytest.param(*_synthetic_peaks(*s), id=f"synthetic{s[0]}") for s in SYNTHETIC] + [
        pytest.param(None, 360, id="mitdb100")
    ]


def _rel(a, b):
    return abs(a / b - 1.0)


@pytest.mark.parametrize(("peaks", "fs"), _cases())
def test_hrv_time_matches_neurokit(peaks, fs):
    if peaks is None:
        peaks, fs = _mitdb_peaks()
    rr = np.diff(peaks) / fs * 1000.0
    mine = hrv_time(rr)
    ref = nk.hrv_time(peaks, sampling_rate=fs).iloc[0]
    for key, col in (("sdnn", "HRV_SDNN"), ("rmssd", "HRV_RMSSD"), ("pnn50", "HRV_pNN50")):
        assert _rel(mine[key], ref[col]) < 0.02, (key, mine[key], ref[col])
    assert mine["mean_nn"] == pytest.approx(ref["HRV_MeanNN"], rel=1e-9)
    assert mine["hr"] == pytest.approx(np.mean(60000.0 / rr), rel=1e-12)


@pytest.mark.parametrize(("peaks", "fs"), _cases())
def test_hrv_frequency_matches_neurokit(peaks, fs):
    """NeuroKit2 with normalize=False (ms²) and interpolation_rate=4 (our 4 Hz grid).

    Times are NeuroKit2's own (cumulative sum of RR/1000): with half-record Welch
    segments, band edges fall on PSD bins, and a one-sample change of the grid length
    moves bins across edges (see the module docstring of cardiolab.features.hrv).
    """
    if peaks is None:
        peaks, fs = _mitdb_peaks()
    rr = np.diff(peaks) / fs * 1000.0
    t = np.nancumsum(rr / 1000.0)
    mine = hrv_frequency(t, rr)
    ref = nk.hrv_frequency(peaks, sampling_rate=fs, normalize=False, interpolation_rate=4)
    ref = ref.iloc[0]
    assert _rel(mine["lf"], ref["HRV_LF"]) < 0.02
    assert _rel(mine["hf"], ref["HRV_HF"]) < 0.02
    assert _rel(mine["lf_hf"], ref["HRV_LFHF"]) < 0.02
    # our total power is VLF + LF + HF (Task Force); NeuroKit2's TP adds VHF 0.4-0.5 Hz
    tp_ref = np.nansum([ref["HRV_VLF"], ref["HRV_LF"], ref["HRV_HF"]])
    assert _rel(mine["total_power"], tp_ref) < 0.02
    assert mine["lf_nu"] + mine["hf_nu"] == pytest.approx(100.0)
    assert mine["lf_band"] == (0.04, 0.15)


def test_hrv_frequency_recovers_sinusoid_power():
    """A 0.1 Hz RR oscillation of amplitude 40 ms carries 800 ms² in LF."""
    t = np.cumsum(np.full(400, 0.8))
    rr = 800.0 + 40.0 * np.sin(2 * np.pi * 0.1 * t)
    out = hrv_frequency(t, rr)
    assert out["lf"] == pytest.approx(800.0, rel=0.05)
    assert out["hf"] < 0.01 * out["lf"]


def test_hrv_time_drops_differences_across_nan():
    rr = np.array([800.0, 900.0, np.nan, 700.0, 760.0])
    out = hrv_time(rr)
    assert out["rmssd"] == pytest.approx(np.sqrt((100.0**2 + 60.0**2) / 2))
    assert out["pnn50"] == pytest.approx(100.0 * 2 / 4)
    assert out["sdnn"] == pytest.approx(np.std([800, 900, 700, 760], ddof=1))
    assert np.isnan(rr[2])  # input untouched
