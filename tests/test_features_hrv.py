"""HRV features against NeuroKit2 on identical RR series (synthetic, MIT-BIH 100, rest R-R)."""

import math
import warnings

import numpy as np
import pytest
from reference_data import SHARED_DATA

from cardiolab.features import hrv_frequency, hrv_nonlinear, hrv_time

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


# cardiolab key -> NeuroKit2 column. What is matched (NeuroKit2 0.3.0 source read):
# SD1/SD2: both take the sample SD (ddof=1) of (RR_n -/+ RR_n+1)/sqrt 2 -> identical.
# DFA: both integrate RR - mean, fit a line per box, F(n) = RMS of residuals, slope of
#   log F on log n at every integer scale 4-16 and 16-64 (NeuroKit2 via
#   dfa_windows=[(4, 16), (16, 64)]; its default is 4-11 / 12-N/10), boxes overlapping
#   by half. NeuroKit2 starts boxes at range(0, n - box, box // 2), leaving out the
#   last full box when n - box is a multiple of box // 2; cardiolab keeps it. This is
#   the only difference and moves alpha by < 0.5 % on these series.
# SampEn / ApEn: both use r = 0.2 * SD(ddof=1), Chebyshev distance, match if d <= r;
#   SampEn over the first N - m templates for both lengths, self-matches excluded;
#   ApEn over all templates, self-matches included -> identical up to rounding.
NONLINEAR = {
    "sd1": "HRV_SD1",
    "sd2": "HRV_SD2",
    "sd1_sd2": "HRV_SD1SD2",
    "dfa_alpha1": "HRV_DFA_alpha1",
    "dfa_alpha2": "HRV_DFA_alpha2",
    "sampen": "HRV_SampEn",
    "apen": "HRV_ApEn",
}


def _nk_nonlinear(peaks, fs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns about its other indices
        ref = nk.hrv_nonlinear(peaks, sampling_rate=fs, dfa_windows=[(4, 16), (16, 64)])
    return ref.iloc[0]


def _assert_nonlinear_matches(peaks, fs):
    rr = np.diff(peaks) / fs * 1000.0
    mine = hrv_nonlinear(rr)
    ref = _nk_nonlinear(peaks, fs)
    for key, col in NONLINEAR.items():
        assert np.isfinite(mine[key]), key
        assert _rel(mine[key], ref[col]) < 0.02, (key, mine[key], ref[col])
    # Poincaré and entropies follow the same definitions: agreement to rounding
    for key in ("sd1", "sd2", "sd1_sd2", "sampen", "apen"):
        assert mine[key] == pytest.approx(ref[NONLINEAR[key]], rel=1e-9), key


@pytest.mark.parametrize(("peaks", "fs"), _cases())
def test_hrv_nonlinear_matches_neurokit(peaks, fs):
    if peaks is None:
        peaks, fs = _mitdb_peaks()
    _assert_nonlinear_matches(peaks, fs)


def test_hrv_nonlinear_matches_neurokit_rest_rri(shared_data):
    """910 real resting R-R intervals (ms, integers): peaks at 1 kHz reproduce them exactly."""
    rr = np.loadtxt(shared_data / "beat_exports" / "rest_rri.txt")
    assert rr.size == 910
    peaks = np.r_[0, np.cumsum(rr)].astype(int)
    assert np.array_equal(np.diff(peaks), rr)
    _assert_nonlinear_matches(peaks, 1000)


def test_hrv_nonlinear_white_noise_known_answers():
    """Uncorrelated RR: alpha = 0.5 (Peng 1995), SD1 = SD2 = SD, and SampEn equals
    -ln P(|x - y| <= r) for one Gaussian pair (x - y has SD sqrt 2 SD), r = 0.2 SD:
    -ln P(|Z| <= 0.2 / sqrt 2) = -ln erf(0.1) = 2.18 (Richman & Moorman 2000)."""
    rng = np.random.default_rng(11)
    rr = 900.0 + 40.0 * rng.standard_normal(3000)
    out = hrv_nonlinear(rr)
    sd = np.std(rr, ddof=1)
    assert out["sd1"] == pytest.approx(sd, rel=0.05)
    assert out["sd2"] == pytest.approx(sd, rel=0.05)
    assert out["sd1_sd2"] == pytest.approx(1.0, rel=0.07)
    # linear detrending in boxes of 4-6 beats biases alpha1 upwards (0.58 here)
    assert out["dfa_alpha1"] == pytest.approx(0.5, abs=0.12)
    assert out["dfa_alpha2"] == pytest.approx(0.5, abs=0.1)
    assert out["sampen"] == pytest.approx(-np.log(math.erf(0.1)), rel=0.05)


def test_hrv_nonlinear_random_walk_alpha():
    """Brownian RR (cumulated white noise): alpha = 1.5 (Peng 1995)."""
    rng = np.random.default_rng(5)
    rr = 900.0 + np.cumsum(rng.standard_normal(3000))
    out = hrv_nonlinear(rr)
    assert out["dfa_alpha1"] == pytest.approx(1.5, abs=0.1)
    assert out["dfa_alpha2"] == pytest.approx(1.5, abs=0.1)


def test_hrv_nonlinear_regular_series_has_low_entropy():
    """A strictly periodic RR series is fully predictable: every m-match extends."""
    rr = np.tile([800.0, 850.0, 900.0, 850.0], 100)
    out = hrv_nonlinear(rr)
    assert out["sampen"] == pytest.approx(0.0, abs=1e-12)
    assert out["apen"] == pytest.approx(0.0, abs=0.01)


def test_hrv_nonlinear_nan_robust_and_input_untouched():
    rng = np.random.default_rng(3)
    rr = 850.0 + 30.0 * rng.standard_normal(400)
    rr[[50, 51, 200]] = np.nan
    before = rr.copy()
    out = hrv_nonlinear(rr)
    np.testing.assert_array_equal(rr, before)
    assert all(np.isfinite(v) for v in out.values())
    x, y = rr[:-1], rr[1:]
    ok = np.isfinite(x) & np.isfinite(y)
    assert out["sd1"] == pytest.approx(np.std((x - y)[ok] / np.sqrt(2), ddof=1))
    assert out["sd2"] == pytest.approx(np.std((x + y)[ok] / np.sqrt(2), ddof=1))
    assert all(np.isnan(v) for v in hrv_nonlinear([800.0, np.nan, 810.0]).values())


def test_hrv_nonlinear_entropies_equal_a_dense_all_pairs_count():
    """The compiled pair counting gives the textbook definitions computed here from the
    dense Chebyshev distance matrix (Richman & Moorman 2000; Pincus 1991), exactly."""
    rng = np.random.default_rng(8)
    rr = 850.0 + 30.0 * rng.standard_normal(500)
    rr[[40, 41, 300]] = np.nan
    m, r = 2, 0.2 * np.nanstd(rr, ddof=1)

    def windows(k):
        w = np.lib.stride_tricks.sliding_window_view(rr, k)
        return w, np.all(np.isfinite(w), axis=1)

    def counts(emb):
        d = np.max(np.abs(emb[:, None, :] - emb[None, :, :]), axis=2)
        return np.count_nonzero(d <= r, axis=1)

    long_, ok = windows(m + 1)
    short = windows(m)[0][: long_.shape[0]][ok]
    a = counts(long_[ok]).sum() - ok.sum()
    b = counts(short).sum() - ok.sum()
    phi = [np.mean(np.log(counts(w[k]) / k.sum())) for w, k in (windows(m), windows(m + 1))]
    got = hrv_nonlinear(rr)
    assert got["sampen"] == pytest.approx(-np.log(a / b), rel=1e-12)
    assert got["apen"] == pytest.approx(phi[0] - phi[1], rel=1e-12)


def test_hrv_nonlinear_parameters_are_used():
    rng = np.random.default_rng(9)
    rr = 850.0 + 30.0 * rng.standard_normal(400)
    base = hrv_nonlinear(rr)
    wider = hrv_nonlinear(rr, entropy_r=0.3)
    assert wider["sampen"] < base["sampen"]  # more matches at a larger tolerance
    other = hrv_nonlinear(rr, dfa_short=(4, 11), dfa_overlap=False)
    assert other["dfa_alpha1"] != base["dfa_alpha1"]


def test_entropies_of_a_long_epoch_are_capped_with_a_reason():
    from cardiolab.features import hrv_nonlinear

    rr = 800 + 50 * np.random.default_rng(0).standard_normal(400)
    full = hrv_nonlinear(rr)
    capped = hrv_nonlinear(rr, entropy_max_beats=300)
    assert np.isfinite(full["sampen"]) and "reason" not in full
    assert np.isnan(capped["sampen"]) and np.isnan(capped["apen"])
    assert "400 NN intervals, more than entropy_max_beats = 300" in capped["reason"]
    for k in ("sd1", "sd2", "dfa_alpha1"):
        assert capped[k] == full[k]
