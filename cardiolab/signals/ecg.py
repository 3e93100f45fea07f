"""ECG: R-peak detection and RR-interval artefact classification.

:func:`detect_r_peaks` runs a numba-compiled QRS detector in the Pan & Tompkins (1985)
family (:mod:`cardiolab.signals._qrs`), made to survive real recordings:

1. *Live segments.* NaN stretches and flat lines (a run of equal samples of
   ``flat_s`` or more: lead off, zero padding, a clipped plateau) are dead: no beat is
   found in them, their edges leave no step in the filters, they do not feed the noise
   level, and after one of ``relearn_s`` or more (or at the first live sample) the
   detector learns its levels again from the next ``learn_s`` of signal.
2. *Energy at ~100 Hz.* Per live segment, the ECG is averaged over blocks of
   ``q = fs // detection_rate_hz`` samples and band-passed by differences of centred
   moving averages (``lowpass_s`` 40 ms: first zero at 25 Hz; minus a
   ``highpass_s`` 120 ms mean: roughly the 5-15 Hz QRS band of Pan & Tompkins); its
   absolute slope is integrated over ``integration_s`` (150 ms, as theirs).
3. *Adaptive threshold* a fraction ``threshold`` of the way from the noise level
   (running mean of the largest energy between complexes, Pan & Tompkins) to the
   signal level: the 4th smallest of the last 8 complex heights (``signal_rank``;
   order statistics of the last 8 peaks as in Hamilton & Tompkins 1986, taken below
   the median so that runs of giant artefact or ectopic complexes do not raise it).
4. *Recovery.* When no beat is found for ``relearn_after_s`` (or 2.5 mean RR), the
   levels are learned again from the last ``learn_s`` and that stretch is scanned
   again (the 8-s threshold reset of Hamilton's OSEA detector, on a shorter scale):
   no flat, NaN or saturated stretch freezes or inflates the thresholds for the rest
   of the record. A complex lasts at most ``max_qrs_s``.
5. *Search-back* (Pan & Tompkins): after 1.66 mean RR without a beat, the highest
   energy peak (a local maximum, not the rising edge of the next complex) above half
   the threshold is a beat. *One QRS per refractory period*: a complex ``replace_ratio``
   times larger than the last beat within ``refractory_s`` replaces it (OSEA holds
   each peak 200 ms "in case a bigger one comes along").
6. *T waves* (Pan & Tompkins): a complex within ``t_wave_s`` (360 ms) of the last
   beat whose largest slope is less than ``t_wave_slope_ratio`` (half) the last
   beat's is a T wave, not a beat. The slope is measured on the full-rate ECG (the
   largest change over ``slope_s``, 10 ms, within ``search_half_s`` of the complex),
   not in the detection band: a narrow QRS loses most of its slope in the 40 ms
   average, a tall inverted T wave with a steep return keeps it (a BIOPAC ECG,
   ``acq/nojournal-4.1.0.acq``: in the detection band T waves have 0.56-0.76 of the
   preceding QRS's slope, on the raw ECG 0.17-0.41, so the band gave 81 beats for 69).
   The last beat's slope counts at most as the median slope of the last 8 beats
   (order statistics as Hamilton & Tompkins'), so that a steep noise complex taken as
   a beat cannot veto the true beat after it (118e00 Se 86.0 % with the last beat's
   slope alone). Search-back skips T waves too, and the test read backwards keeps a
   small QRS whose T wave crosses the threshold when it does not (the beat is moved
   to an earlier energy peak above half the threshold, within 360 ms, with more than
   twice its slope): the three small complexes of that recording were otherwise
   placed on their T waves, 230 ms late.
7. *Fiducial point*, apart from detection (Pan & Tompkins mark it on the desired
   feature of the complex once it is detected, here the peak of its largest
   deflection): from ``fiducial_back_s`` before to ``fiducial_ahead_s`` after each
   complex's energy peak, the R-peak is the largest deflection of a wider-band ECG, a
   ``fiducial_lowpass_s`` (20 ms) moving average minus a ``fiducial_highpass_s``
   (200 ms) one, computed there only, then moved to the largest deflection of that
   polarity of the raw ECG within ``+-refine_s``; the detector works for either
   polarity. The detection band (40 ms / 120 ms) is too narrow for this: on paced and
   other wide complexes its largest deflection is a later lobe, 50-100 ms after the R
   wave (95th percentile of the offset to the annotations 38 samples at 360 Hz on
   MIT-BIH 104, 18 on 102, 17 on 208; 3, 1 and 5 this way, as with the 20 ms / 200 ms
   detector before), and its energy peak lags the R wave of these complexes (104:
   median 47 ms, 95th percentile 56 ms at 360 Hz, 80 ms at 500 and 1000 Hz), hence the
   search 100 ms back; 75 ms ahead as the previous detector's search (wider admits
   noise: 118e00 Se 86.9 % with +-100 ms).

Parameters were tuned on MIT-BIH records 100-108, 118, 208 and the noise-stress
records 118e24/e12/e00 (``benchmarks/bench_r_peaks.py``: Se/+P 99.56/99.77 % on MIT-BIH;
on 118e00 87.4/80.9 % against NeuroKit2's 87.1/80.6 %; ``threshold`` 0.775 with the
T-wave test, 0.78 without it) and checked on svdb/800, the BIOPAC ECG of ``acq`` and
the real-world inputs of ``../shared/data/real_world``; the fiducial band is the
previous detector's, checked against the MIT-BIH annotations' fiducial marks
(``tests/test_signals_ecg.py``).

References: Pan J, Tompkins WJ (1985) IEEE Trans Biomed Eng 32:230-236. Hamilton PS,
Tompkins WJ (1986) IEEE Trans Biomed Eng 33:1157-1165. Hamilton PS (2002) Open source
ECG analysis (OSEA), Computers in Cardiology 29:101-104.

:func:`classify_rr` flags RR artefacts (ectopic, long, short, missed, extra beats)
with the time-varying thresholds of Lipponen & Tarvainen (2019) and returns both the
raw and a corrected series.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SignalQualityError
from ._qrs import find_qrs, live_segments, place_peaks, qrs_energy, refine_peaks

__all__ = [
    "detect_r_peaks",
    "snap_r_peak",
    "qrs_polarity",
    "R_PEAK_SNAP_S",
    "r_wave_amplitude",
    "classify_rr",
    "RR_FLAGS",
    "QRS_PARAMETERS",
    "R_AMPLITUDE_BASELINE_S",
    "R_AMPLITUDE_SEARCH_S",
]

#: Window before the R-peak (s) whose median is the isoelectric (PR-segment) level
#: that R-wave amplitudes are measured from: after the P wave, before the QRS onset.
R_AMPLITUDE_BASELINE_S = (-0.100, -0.060)

#: Half-width (s) of the window around the R-peak searched for the R wave's extreme.
R_AMPLITUDE_SEARCH_S = 0.040

#: Detector parameters (s, Hz, or fractions), see the module docstring for each step
#: and its source. Tuned (small grids, aggregate MIT-BIH and every noise-stress record
#: at once, not one record) on MIT-BIH 100-108, 118, 208 and NSTDB 118e24/e12/e00;
#: checked on svdb/800 and ../shared/data/real_world (benchmarks/bench_r_peaks.py).
QRS_PARAMETERS = {
    "detection_rate_hz": 100.0,  # energy at fs // q >= this rate (q integer); 60-85 Hz lose Se
    "lowpass_s": 0.04,  # moving average (whole blocks, odd count): first zero at 25 Hz
    "highpass_s": 0.12,  # subtracted centred moving average (0.20 before: more noise FPs)
    "slope_s": 0.01,
    "integration_s": 0.15,  # Pan & Tompkins' 150 ms window
    "refractory_s": 0.20,  # Pan & Tompkins; OSEA's 200 ms peak hold
    "search_half_s": 0.075,
    "threshold": 0.775,  # between noise (0) and signal (1) levels (0.77-0.78 on the grid)
    "refine_s": 0.02,  # R-peak moved to the raw ECG's largest deflection within this
    "fiducial_back_s": 0.10,  # R-peak searched from this before the energy peak ...
    "fiducial_ahead_s": 0.075,  # ... to this after it
    "fiducial_lowpass_s": 0.02,  # fiducial band: 20 ms moving average (25 ms: 102 off by 4)
    "fiducial_highpass_s": 0.20,  # minus a 200 ms one (0.15 s: 208's PVCs off by 12)
    "flat_s": 0.5,  # a run of equal samples this long is a flat line (MIT-BIH max: 0.17 s)
    "relearn_s": 1.0,  # after a dead stretch this long, the levels are learned again
    "learn_s": 1.5,  # learning window (Pan & Tompkins: 2 s)
    "relearn_after_s": 2.0,  # no beat for this long (or 2.5 RR): learn again (OSEA: 8 s)
    "max_qrs_s": 0.5,  # longest complex (threshold crossing) in the energy
    "replace_ratio": 1.5,  # a complex this x larger within the refractory period replaces
    "signal_rank": 3,  # signal level: this rank (0: smallest) of the last 8 heights
    "t_wave_s": 0.36,  # a complex this soon after a beat may be a T wave (Pan & Tompkins)
    "t_wave_slope_ratio": 0.5,  # ... it is if its slope < this x the beat's (P&T; 0: off)
}


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def detect_r_peaks(ecg, fs: float | None = None, **parameters) -> np.ndarray:
    """Sample indices of the R-peaks of an ECG.

    Parameters
    ----------
    ecg : numpy.ndarray or xarray.DataArray
        One ECG lead, shape ``(time,)`` (any unit; mV in the data model). NaNs
        (dropouts) and flat lines (lead off, zero padding, clipping) are dead: no beat
        is found inside them, and the detector learns its levels again after one that
        lasts ``relearn_s`` or more (see the module docstring). Not modified.
    fs : float, optional
        Sampling rate (Hz); taken from the DataArray's (or its Dataset's)
        ``sampling_rate`` attribute when not given.
    **parameters
        Overrides of :data:`QRS_PARAMETERS`.

    Returns
    -------
    numpy.ndarray of int64
        R-peak sample indices, increasing: the peak of each QRS complex's largest
        deflection (either polarity), as the MIT-BIH annotations' fiducial marks.

    Raises
    ------
    SignalQualityError
        If the record is shorter than 2 s.

    Examples
    --------
    >>> import numpy as np
    >>> from cardiolab.signals import detect_r_peaks
    >>> fs = 500.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> ecg = np.exp(-0.5 * ((t % 1.0 - 0.5) / 0.01) ** 2)
    >>> detect_r_peaks(ecg, fs)[:3]
    array([ 250,  750, 1250])
    """
    p = {**QRS_PARAMETERS, **parameters}
    if isinstance(ecg, xr.DataArray):
        if fs is None:
            fs = ecg.attrs.get("sampling_rate")
            if fs is None and "time" in ecg.coords and ecg.sizes["time"] > 1:
                fs = 1.0 / float(ecg["time"][1] - ecg["time"][0])
        ecg = ecg.values
    if fs is None:
        raise ValueError("detect_r_peaks needs the sampling rate fs (Hz)")
    fs = float(fs)
    x = np.asarray(ecg, dtype=np.float32).ravel()
    if x.size < 2 * fs:
        raise SignalQualityError(f"ECG of {x.size / fs:.2f} s is too short (need >= 2 s)")
    starts, ends = live_segments(x, max(int(round(p["flat_s"] * fs)), 2))
    q = max(int(fs // p["detection_rate_hz"]), 1)
    fq = fs / q
    nq = (x.size + q - 1) // q
    bp = np.zeros(nq, np.float32)
    m = np.zeros(nq, np.float32)
    n_lp = _odd(max(int(round(p["lowpass_s"] * fs / q)), 1))
    w_hp = _odd(int(round(p["highpass_s"] * fq)))
    w_d = max(int(round(p["slope_s"] * fq)), 1)
    w_int = _odd(int(round(p["integration_s"] * fq)))
    for a, b in zip(starts, ends, strict=True):
        qrs_energy(x, a, b, q, n_lp, w_hp, w_d, w_int, bp, m)
    # learn at the first live sample and after every dead stretch of relearn_s or more
    gap = starts - np.r_[0, ends[:-1]]
    learn = starts[(gap >= p["relearn_s"] * fs) | (np.arange(starts.size) == 0)]
    _, centres = find_qrs(
        m,
        bp,
        x,
        q,
        (learn + q - 1) // q,
        fq,
        p["refractory_s"],
        p["search_half_s"],
        p["threshold"],
        p["learn_s"],
        p["relearn_after_s"],
        p["max_qrs_s"],
        int(p["signal_rank"]),
        p["replace_ratio"],
        p["t_wave_s"],
        p["t_wave_slope_ratio"],
        max(int(round(p["slope_s"] * fs)), 1),
    )
    # fiducial point: the largest deflection of a wide-band ECG around each complex's
    # energy peak, then refined on the raw ECG within +-refine_s
    peaks, sign = place_peaks(
        x,
        centres,
        starts,
        ends,
        q,
        max(int(round(p["fiducial_back_s"] * fq)), 1),
        max(int(round(p["fiducial_ahead_s"] * fq)), 1),
        _odd(max(int(round(p["fiducial_lowpass_s"] * fs)), 1)),
        _odd(int(round(p["fiducial_highpass_s"] * fs))),
    )
    return refine_peaks(x, peaks, sign, max(int(round(p["refine_s"] * fs)), q))


#: Half-width (s) of the window in which a reviewer's beat is placed on the ECG's
#: largest deflection (:func:`snap_r_peak`): +-50 ms holds one QRS complex
#: (80-120 ms wide) and no T wave (>= 200 ms after the R-peak).
R_PEAK_SNAP_S = 0.050


def snap_r_peak(
    ecg, fs: float, sample, *, window_s: float = R_PEAK_SNAP_S, polarity: int | None = None
) -> np.ndarray:
    """Sample index of the R-peak nearest a reviewer's mark: the ECG's largest deflection.

    For each mark, the local maximum of the ECG within ``+-window_s`` (the "add beat
    at the local maximum" of Kubios HRV's and systole's beat editors), of the lead's
    QRS polarity: with ``polarity=-1`` (a lead whose R-peaks the detector found as
    negative deflections, e.g. MCL1 or an inverted lead) the local minimum; without a
    polarity, the sample farthest from the window's median, of either sign. A beat
    a reviewer adds by clicking near a complex then sits on the fiducial point the
    detector marks (the peak of the QRS complex's largest deflection, as the MIT-BIH
    annotations').

    Parameters
    ----------
    ecg : numpy.ndarray
        One ECG lead, shape ``(time,)``. Not modified; NaNs are ignored.
    fs : float
        Sampling rate (Hz).
    sample : int or array-like of int, shape ``(n,)``
        Marked sample indices (``round(time * fs)``).
    window_s : float
        Half-width of the search window (s); 0 keeps the marks (a nudge by a set
        step).
    polarity : {1, -1}, optional
        Sign of the lead's R-peaks (:func:`qrs_polarity`).

    Returns
    -------
    numpy.ndarray of int64, shape ``(n,)``
        The R-peak sample of each mark.

    Raises
    ------
    SignalQualityError
        If a mark lies outside the ECG, or its window holds no finite sample.

    Examples
    --------
    >>> x = np.zeros(1000); x[520] = 1.0
    >>> snap_r_peak(x, 500.0, [510]).tolist()
    [520]
    """
    x = np.asarray(ecg, dtype=float)
    marks = np.atleast_1d(np.asarray(sample, dtype=np.int64))
    outside = marks[(marks < 0) | (marks >= x.size)]
    if outside.size:
        raise SignalQualityError(
            f"beat mark(s) at sample {outside[:5].tolist()} outside the ECG "
            f"(0 to {x.size - 1}, {x.size / fs:.1f} s)"
        )
    half = max(int(round(window_s * fs)), 0)
    idx = np.clip(marks[:, None] + np.arange(-half, half + 1)[None, :], 0, x.size - 1)
    win = x[idx]
    finite = np.isfinite(win)
    empty = marks[~finite.any(axis=1)]
    if empty.size:
        raise SignalQualityError(
            f"no ECG samples within +-{window_s * 1000:.0f} ms of sample(s) {empty[:5].tolist()}"
        )
    if polarity in (1, -1):
        deflection = np.where(finite, polarity * win, -np.inf)
    else:
        with np.errstate(invalid="ignore"):
            level = np.nanmedian(win, axis=1, keepdims=True)
        deflection = np.where(finite, np.abs(win - level), -np.inf)
    return idx[np.arange(marks.size), np.argmax(deflection, axis=1)].astype(np.int64)


def qrs_polarity(ecg, fs: float, r_samples) -> int:
    """Sign of a lead's R-peaks: +1 if they stand above the PR-segment level, else -1.

    The median over beats of the ECG at the R-peak minus the median of the
    :data:`R_AMPLITUDE_BASELINE_S` window before it (the isoelectric level, as
    :func:`r_wave_amplitude`).

    Parameters
    ----------
    ecg : numpy.ndarray
        One ECG lead, shape ``(time,)``.
    fs : float
        Sampling rate (Hz).
    r_samples : array-like of int, shape ``(n_beats,)``
        R-peak sample indices (the detector's).

    Returns
    -------
    int
        +1 or -1 (+1 without beats).

    Examples
    --------
    >>> x = np.zeros(1000); x[[300, 700]] = -1.0
    >>> qrs_polarity(x, 500.0, [300, 700])
    -1
    """
    x = np.asarray(ecg, dtype=float)
    r = np.asarray(r_samples, dtype=np.int64)
    r = r[(r >= 0) & (r < x.size)]
    if r.size == 0:
        return 1
    a, b = (int(round(s * fs)) for s in R_AMPLITUDE_BASELINE_S)
    idx = np.clip(r[:, None] + np.arange(a, b + 1)[None, :], 0, x.size - 1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        height = np.nanmedian(x[r] - np.nanmedian(x[idx], axis=1))
    return -1 if height < 0 else 1


#: Codes of :func:`classify_rr`.
RR_FLAGS = {0: "normal", 1: "ectopic", 2: "long", 3: "short", 4: "missed", 5: "extra"}


def r_wave_amplitude(ecg, fs: float, r_times) -> pd.DataFrame:
    """R-wave amplitude of each beat, above the PR-segment baseline.

    Parameters
    ----------
    ecg : array-like, shape (n_samples,)
        ECG (mV).
    fs : float
        Sampling rate (Hz).
    r_times : array-like, shape (n_beats,)
        R-peak times (s from the first sample), as :func:`detect_r_peaks` gives them
        (``peaks / fs``).

    Returns
    -------
    pandas.DataFrame
        Column ``r_amplitude`` (mV): the extreme of the ECG within
        +-:data:`R_AMPLITUDE_SEARCH_S` of the R-peak, in the lead's polarity (that
        of most detected R-peaks: a maximum for an upright QRS, a minimum, hence a
        negative amplitude, for an inverted one), minus the median of the ECG over
        :data:`R_AMPLITUDE_BASELINE_S` before the peak. NaN where these windows leave
        the record or hold a missing sample. One row per beat (the per-beat
        extractors' layout, so that long ECGs run block by block).

    Notes
    -----
    The lead's polarity, not each beat's detected deflection, decides the sign: the
    detector may mark the S wave of a few beats of an upright lead (two of 69 beats of
    the BIOPAC ECG ``acq/nojournal-4.1.0.acq``), whose amplitude would otherwise flip
    sign. Measuring the R wave from the isoelectric PR segment rather than from zero
    removes baseline wander, which also follows breathing, so that the amplitude
    keeps only the QRS modulation used for ECG-derived respiration (Moody et al.
    1985, Computers in Cardiology 12:113; see
    :func:`cardiolab.features.respiration.ecg_derived_respiration`).
    """
    x = np.asarray(ecg, dtype=float)
    fs = float(fs)
    idx = np.rint(np.asarray(r_times, dtype=float) * fs).astype(np.int64)
    lo, hi = (int(round(s * fs)) for s in R_AMPLITUDE_BASELINE_S)
    half = max(int(round(R_AMPLITUDE_SEARCH_S * fs)), 1)
    base_win = idx[:, None] + np.arange(lo, min(hi, -1) + 1)[None, :]
    qrs_win = idx[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (base_win[:, 0] >= 0) & (qrs_win[:, -1] < x.size)
    out = np.full(idx.size, np.nan)
    if inside.any():
        base = np.median(x[base_win[inside]], axis=1)
        qrs = x[qrs_win[inside]] - base[:, None]
        # the lead's polarity: the sign of most beats' detected R-peak
        polarity = 1.0 if np.nanmedian(qrs[:, half]) >= 0 else -1.0
        out[inside] = polarity * np.max(polarity * qrs, axis=1)
    return pd.DataFrame({"r_amplitude": out})


def _qd(values: pd.Series, window: int) -> np.ndarray:
    roll = values.abs().rolling(window, center=True, min_periods=1)
    return ((roll.quantile(0.75) - roll.quantile(0.25)) / 2.0).to_numpy()


def classify_rr(rr_ms, *, alpha=5.2, window=91, median_window=11, c1=0.13, c2=0.17):
    """Classify and correct RR-interval artefacts (Lipponen & Tarvainen, 2019).

    Parameters
    ----------
    rr_ms : array-like
        RR intervals (ms); ``rr[i]`` ends at beat ``i`` (the first may be NaN).
    alpha : float
        Threshold multiplier of the quartile deviation.
    window, median_window : int
        Beats in the quartile-deviation and the median windows.
    c1, c2 : float
        Ectopic decision boundary constants.

    Returns
    -------
    pandas.DataFrame
        ``rr`` (raw, ms), ``rr_corrected`` (ms; flagged intervals replaced by
        interpolation between their normal neighbours, never silently: see ``flag``),
        ``flag`` (int codes of :data:`RR_FLAGS`).
    """
    rr = np.asarray(rr_ms, dtype=float)
    n = rr.size
    flag = np.zeros(n, dtype=np.int8)
    if n < 4:
        return pd.DataFrame({"rr": rr, "rr_corrected": rr.copy(), "flag": flag})
    s = pd.Series(rr)
    drr = s.diff()
    drr.iloc[0] = drr.iloc[1] if n > 1 else 0.0
    th1 = alpha * _qd(drr, window)
    med = s.rolling(median_window, center=True, min_periods=1).median().to_numpy()
    mrr = rr - med
    mrr = np.where(mrr < 0, 2 * mrr, mrr)
    th2 = alpha * _qd(pd.Series(mrr), window)
    d = drr.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        s11 = d / th1
        prev_d = np.r_[np.nan, d[:-1]]
        next_d = np.r_[d[1:], np.nan]
        s12 = np.where(d > 0, np.fmax(prev_d, next_d), np.fmin(prev_d, next_d)) / th1
        next2 = np.r_[d[2:], np.nan, np.nan]
        s22 = np.where(d >= 0, np.fmin(next_d, next2), np.fmax(next_d, next2)) / th1
        ectopic = (np.abs(s11) > 1) & (
            ((s11 > 0) & (s12 < -c1 * s11 - c2)) | ((s11 < 0) & (s12 > -c1 * s11 + c2))
        )
        longshort = ((np.abs(s11) > 1) & (((s11 > 0) & (s22 < -1)) | ((s11 < 0) & (s22 > 1)))) | (
            np.abs(mrr / th2) > 3
        )
        long_ = longshort & (rr > med)
        short = longshort & (rr <= med)
        missed = long_ & (np.abs(rr / 2 - med) < th2)
        rr_next = np.r_[rr[1:], np.nan]
        extra = short & (np.abs(rr + rr_next - med) < th2)
    flag[long_] = 2
    flag[short] = 3
    flag[missed] = 4
    flag[extra] = 5
    flag[ectopic] = 1
    corrected = rr.copy()
    bad = (flag != 0) | ~np.isfinite(rr)
    good = ~bad
    if good.sum() >= 2 and bad.any():
        i = np.arange(n)
        corrected[bad] = np.interp(i[bad], i[good], rr[good])
    return pd.DataFrame({"rr": rr, "rr_corrected": corrected, "flag": flag})
