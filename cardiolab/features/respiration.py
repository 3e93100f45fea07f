"""Respiration of one epoch: breathing rate, respiratory sinus arrhythmia, ECG-derived
respiration, and the HF band that follows the breathing rate.

Numerical core only (NumPy arrays in, dicts of floats or arrays out). The methods are
published ones, written here because no maintained library offers them on cardiolab's
inputs: NeuroKit2 (the peer used in the tests) runs its respiration pipeline on a
waveform sampled at >= 6 Hz (BIOPAC's belt channel is at 3.9 Hz), measures RSA from
R-peak sample indices on the respiration signal's clock (cardiolab's beats carry
their own times, with artefact-flagged RR intervals) and derives respiration from the
heart rate, not from R-wave amplitude.

Conventions
-----------
* A respiration signal rises during inspiration (a chest or abdominal belt, a lung
  volume); airflow (L/s) must be integrated to a volume first. Its unit is the one it
  was recorded in (:data:`cardiolab.schema.RAW_GROUPS`, ``resp``): nothing here
  depends on it.
* Breaths are found by :func:`detect_breaths`: zero crossings of the band-passed
  signal, one extremum between successive crossings, and the removal of extremum
  pairs shallower than 30 % of the median breath (Khodadad et al. 2018, the method
  NeuroKit2's ``rsp_peaks`` defaults to). An inspiration runs from an onset (trough)
  to the next peak, an expiration from the peak to the next onset.
* Too short or unusable data give NaN with a ``reason`` string, never an exception;
  wrong shapes and units raise :class:`~cardiolab.errors.SignalQualityError` and
  :class:`~cardiolab.errors.UnitError` naming the field.
"""

from __future__ import annotations

import numpy as np
import scipy.interpolate
import scipy.signal

from ..errors import SignalQualityError, UnitError
from ..units import normalise_unit

__all__ = [
    "RESP_BAND",
    "MIN_RESP_DURATION_S",
    "HF_HALF_WIDTH_HZ",
    "detect_breaths",
    "respiration_rate",
    "rsa_amplitude",
    "ecg_derived_respiration",
    "hf_band_for_breathing",
]

#: Breathing frequencies looked for (Hz): 3 to 42 breaths/min.
RESP_BAND = (0.05, 0.7)

#: Shortest respiration record analysed (s): three breaths at 6 breaths/min.
MIN_RESP_DURATION_S = 30.0

#: Half-width (Hz) of the HF band centred on a breathing rate outside 0.15-0.4 Hz.
HF_HALF_WIDTH_HZ = 0.05

#: Extremum pairs shallower than this fraction of the median breath are dropped
#: (Khodadad et al. 2018).
_MIN_BREATH_FRACTION = 0.3

#: Grossman et al. (1990): the RR interval that follows the end of a phase by up to
#: 750 ms still belongs to it (the vagal effect lags the respiratory phase).
_RSA_LAG_S = 0.75


def _vector(x, name: str, units: str | None = None) -> np.ndarray:
    """A float copy of a 1-D input; a DataArray's ``units`` attr is checked."""
    attrs = getattr(x, "attrs", None)
    if units is not None and attrs and "units" in attrs:
        try:
            ok = normalise_unit(attrs["units"]) == normalise_unit(units)
        except UnitError:
            ok = False
        if not ok:
            raise UnitError(f"{name}: units {attrs['units']!r}, expected {units!r}")
    a = np.array(getattr(x, "values", x), dtype=float)  # a copy: inputs stay untouched
    if a.ndim != 1:
        raise SignalQualityError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _rate(fs, name: str = "fs") -> float:
    fs = float(fs)
    if not (np.isfinite(fs) and fs > 0):
        raise SignalQualityError(f"{name}: sampling rate must be a positive number, got {fs}")
    return fs


def _unusable(resp: np.ndarray, fs: float) -> str | None:
    """Why a respiration record cannot be analysed (None when it can)."""
    duration = resp.size / fs
    if duration < MIN_RESP_DURATION_S:
        return (
            f"respiration record of {duration:.1f} s is shorter than the "
            f"{MIN_RESP_DURATION_S:g} s minimum (three breaths at 6 breaths/min)"
        )
    bad = int(np.count_nonzero(~np.isfinite(resp)))
    if bad:
        return f"respiration has {bad} missing (NaN) samples"
    if np.ptp(resp) == 0:
        return "flat respiration signal"
    return None


def _band_passed(resp: np.ndarray, fs: float, band=RESP_BAND) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth band-pass; the upper edge is kept below
    0.45 fs for slowly sampled belts."""
    lo, hi = band
    hi = min(hi, 0.45 * fs)
    sos = scipy.signal.butter(2, (lo, hi), btype="bandpass", fs=fs, output="sos")
    return scipy.signal.sosfiltfilt(sos, resp - np.mean(resp))


def detect_breaths(resp, fs) -> dict:
    """Inspiration onsets (troughs) and ends (peaks) of a respiration signal.

    Parameters
    ----------
    resp : array-like, shape (n_samples,)
        Respiration signal, rising during inspiration (belt, volume); any unit.
    fs : float
        Sampling rate (Hz).

    Returns
    -------
    dict
        ``onsets`` and ``peaks``: int arrays of sample indices, alternating
        ``onsets[i] < peaks[i] < onsets[i + 1]`` (``peaks`` has as many entries as
        ``onsets``, or one fewer); ``reason``: ``""``, or why none were found (record
        too short, missing samples, flat).

    Raises
    ------
    SignalQualityError
        ``resp`` not 1-D, or ``fs`` not a positive number.

    Notes
    -----
    Khodadad D, Nordebo S, Müller B, et al. (2018) Optimized breath detection
    algorithm in electrical impedance tomography. Physiol Meas 39:094001: the
    signal is band-passed (here 0.05-0.7 Hz, 2nd-order Butterworth, zero phase), an
    extremum is taken between each pair of successive zero crossings, and peak-trough
    pairs whose depth is below 30 % of the median depth of all successive extrema
    (computed once, before any removal) are removed, the shallowest first. NeuroKit2's ``rsp_peaks`` (method ``khodadad2018``) follows the same paper
    with a 0.05-3 Hz band.
    """
    x = _vector(resp, "resp")
    fs = _rate(fs)
    empty = {"onsets": np.zeros(0, np.int64), "peaks": np.zeros(0, np.int64)}
    reason = _unusable(x, fs)
    if reason:
        return {**empty, "reason": reason}
    y = _band_passed(x, fs)
    # successive zero crossings delimit half-cycles; the extremum of each half-cycle
    sign = np.signbit(y)
    cross = np.flatnonzero(sign[1:] != sign[:-1]) + 1
    if cross.size < 3:
        return {**empty, "reason": "fewer than two breaths (zero crossings) found"}
    starts, stops = cross[:-1], cross[1:]
    positive = ~sign[starts]
    # per half-cycle extremum, vectorised with reduceat on the signed signal
    signed = np.where(np.repeat(positive, stops - starts), 1.0, -1.0) * y[starts[0] : stops[-1]]
    rel = starts - starts[0]
    best = np.maximum.reduceat(signed, rel)
    # index of the extremum: first position in each half-cycle that reaches it
    hit = signed == np.repeat(best, stops - starts)
    first = np.flatnonzero(hit)
    seg = np.searchsorted(rel, first, side="right") - 1
    keep = np.r_[True, seg[1:] != seg[:-1]]
    ext_idx = first[keep] + starts[0]
    ext_is_peak = positive.copy()
    ext_val = y[ext_idx]
    # remove shallow peak-trough pairs, the shallowest first (Khodadad et al. 2018)
    limit = _MIN_BREATH_FRACTION * np.median(np.abs(np.diff(ext_val)))
    while ext_idx.size >= 3:
        depth = np.abs(np.diff(ext_val))
        k = int(np.argmin(depth))
        if depth[k] >= limit:
            break
        ext_idx = np.delete(ext_idx, [k, k + 1])
        ext_val = np.delete(ext_val, [k, k + 1])
        ext_is_peak = np.delete(ext_is_peak, [k, k + 1])
    # start at the first trough, then alternate
    if ext_idx.size and ext_is_peak[0]:
        ext_idx, ext_is_peak = ext_idx[1:], ext_is_peak[1:]
    onsets = ext_idx[~ext_is_peak].astype(np.int64)
    peaks = ext_idx[ext_is_peak].astype(np.int64)
    if onsets.size < 2:
        return {**empty, "reason": "fewer than two breaths found"}
    return {"onsets": onsets, "peaks": peaks, "reason": ""}


def respiration_rate(resp, fs, *, band=RESP_BAND) -> dict:
    """Breathing rate of one epoch, from the dominant spectral peak and from breaths.

    Parameters
    ----------
    resp : array-like, shape (n_samples,)
        Respiration signal (belt, volume, or an ECG-derived respiration from
        :func:`ecg_derived_respiration`), any unit; at least
        :data:`MIN_RESP_DURATION_S` long, without missing samples.
    fs : float
        Sampling rate (Hz).
    band : tuple of float
        Frequencies searched for the peak (Hz), ``lo <= f <= hi``.

    Returns
    -------
    dict
        ``resp_rate`` (breaths/min): 60 x the frequency of the highest peak of the
        Welch PSD inside ``band``; ``resp_frequency`` (Hz) the same frequency;
        ``resp_rate_breaths`` (breaths/min): 60 / mean duration of the complete
        breaths of :func:`detect_breaths`; ``n_breaths``; ``reason`` (``""`` when
        both rates are defined, else why a value is NaN).

    Raises
    ------
    SignalQualityError
        ``resp`` not 1-D, or ``fs`` not a positive number.

    Notes
    -----
    The PSD is Welch's (Welch 1967, IEEE Trans Audio Electroacoust 15:70): linear
    detrend, Hann windows of 60 s (the whole record when shorter), 50 % overlap,
    zero-padded to a 0.001 Hz grid so that the peak frequency is read to 0.06
    breaths/min. Counting breaths is the time-domain alternative (Khodadad et al.
    2018; see :func:`detect_breaths`); Charlton et al. (2016, Physiol Meas 37:610)
    compare both families of estimators. The two agree on regular breathing; they
    part where breathing is irregular, which is itself worth seeing.
    """
    x = _vector(resp, "resp")
    fs = _rate(fs)
    out = {
        "resp_rate": np.nan,
        "resp_frequency": np.nan,
        "resp_rate_breaths": np.nan,
        "n_breaths": 0,
        "reason": "",
    }
    reason = _unusable(x, fs)
    if reason:
        return {**out, "reason": reason}
    nperseg = min(x.size, int(round(60.0 * fs)))
    nfft = max(nperseg, int(np.ceil(fs / 0.001)))
    f, p = scipy.signal.welch(
        x, fs=fs, window="hann", nperseg=nperseg, nfft=nfft, detrend="linear", scaling="density"
    )
    lo, hi = band
    sel = (f >= lo) & (f <= min(hi, fs / 2))
    reasons = []
    if np.any(sel) and np.max(p[sel]) > 0:
        f_peak = float(f[sel][np.argmax(p[sel])])
        out["resp_frequency"] = f_peak
        out["resp_rate"] = 60.0 * f_peak
    else:
        reasons.append(f"no spectral power in {lo:g}-{hi:g} Hz")
    breaths = detect_breaths(x, fs)
    onsets = breaths["onsets"]
    out["n_breaths"] = int(max(onsets.size - 1, 0))
    if onsets.size >= 2:
        out["resp_rate_breaths"] = 60.0 * fs / float(np.mean(np.diff(onsets)))
    else:
        reasons.append(breaths["reason"] or "fewer than two breaths found")
    out["reason"] = "; ".join(reasons)
    return out


def rsa_amplitude(t_beats, rr, resp, fs, *, resp_t0: float = 0.0) -> dict:
    """Respiratory sinus arrhythmia by the peak-to-trough method.

    For each breath, the longest RR interval of the expiration minus the shortest RR
    interval of the inspiration (0 where that is negative), averaged over breaths.

    Parameters
    ----------
    t_beats : array-like, shape (n_beats,)
        Beat (R-peak) times (s from the session start).
    rr : array-like, shape (n_beats,)
        RR interval ending at each beat (ms; the beat table's ``rr_corrected`` or
        ``rr`` with NaN where not to be trusted). A DataArray must be in ms.
    resp : array-like, shape (n_samples,)
        Respiration signal recorded with the beats (rising during inspiration).
    fs : float
        Sampling rate of ``resp`` (Hz).
    resp_t0 : float
        Time of ``resp``'s first sample (s from the session start).

    Returns
    -------
    dict
        ``rsa_p2t`` mean peak-to-trough RSA (ms); ``rsa_p2t_sd`` its SD over breaths
        (ms, ddof 1); ``n_breaths`` breaths with an estimate; ``n_breaths_no_rsa``
        complete breaths without one (no RR interval in a phase); ``reason``.

    Raises
    ------
    SignalQualityError
        Inputs not 1-D, ``t_beats`` and ``rr`` of different lengths, ``fs`` not
        positive.
    UnitError
        ``rr`` given as a DataArray whose ``units`` is not ms.

    Notes
    -----
    Grossman P, van Beek J, Wientjes C (1990) A comparison of three quantification
    methods for estimation of respiratory sinus arrhythmia. Psychophysiology
    27:702-714. Breath ``i`` runs from inspiration onset ``o_i`` through the peak
    ``p_i`` to ``o_{i+1}``; its inspiration takes the RR intervals that lie wholly in
    ``[o_i, p_i + 0.75 s)`` and its expiration those in ``[p_i, o_{i+1} + 0.75 s)``:
    the 750 ms lag lets the interval that follows a phase belong to it, as in
    Grossman et al. and in NeuroKit2's ``hrv_rsa`` (``RSA_P2T_Mean``), which the
    tests compare with on identical breaths and beats. Breaths come from
    :func:`detect_breaths`.
    """
    t = _vector(t_beats, "t_beats", "s")
    r = _vector(rr, "rr", "ms")
    x = _vector(resp, "resp")
    fs = _rate(fs)
    if t.size != r.size:
        raise SignalQualityError(f"t_beats and rr: lengths differ ({t.size} vs {r.size} beats)")
    out = {
        "rsa_p2t": np.nan,
        "rsa_p2t_sd": np.nan,
        "n_breaths": 0,
        "n_breaths_no_rsa": 0,
        "reason": "",
    }
    breaths = detect_breaths(x, fs)
    onsets, peaks = breaths["onsets"], breaths["peaks"]
    if onsets.size < 2:
        return {**out, "reason": breaths["reason"]}
    n = onsets.size - 1
    o0 = resp_t0 + onsets[:-1] / fs
    p = resp_t0 + peaks[:n] / fs
    o1 = resp_t0 + onsets[1:] / fs
    ok = np.isfinite(t) & np.isfinite(r)
    order = np.argsort(t[ok], kind="stable")
    t_end, rr_ok = t[ok][order], r[ok][order]
    t_start = t_end - rr_ok / 1000.0
    # the intervals lying wholly in each phase, and their extreme
    shortest_inh = _range_reduce(np.minimum, rr_ok, t_start, t_end, o0, p + _RSA_LAG_S)
    longest_exh = _range_reduce(np.maximum, rr_ok, t_start, t_end, p, o1 + _RSA_LAG_S)
    has = np.isfinite(shortest_inh) & np.isfinite(longest_exh)
    values = np.clip(longest_exh[has] - shortest_inh[has], 0.0, None)
    out["n_breaths"] = int(values.size)
    out["n_breaths_no_rsa"] = int(n - values.size)
    if values.size == 0:
        return {**out, "reason": "no breath holds an RR interval in both phases"}
    out["rsa_p2t"] = float(np.mean(values))
    if values.size > 1:
        out["rsa_p2t_sd"] = float(np.std(values, ddof=1))
    return out


def _range_reduce(ufunc, values, t_start, t_end, a, b) -> np.ndarray:
    """``ufunc`` over the values whose span ``[t_start, t_end]`` lies in ``[a_j, b_j)``,
    for every window ``j`` (NaN where none does); spans sorted by time, no loop.

    Spans are in time order and do not overlap, so the spans inside a window are a
    contiguous run: from the first that starts at or after ``a`` to the last that
    ends before ``b``.
    """
    lo = np.searchsorted(t_start, a, side="left")
    hi = np.searchsorted(t_end, b, side="left")
    out = np.full(a.size, np.nan)
    some = hi > lo
    if values.size == 0 or not some.any():
        return out
    # reduceat over [lo_j, hi_j): pairs of indices, the odd results discarded
    padded = np.r_[values, values[-1]]
    idx = np.ravel(np.column_stack([lo[some], hi[some]]))
    out[some] = ufunc.reduceat(padded, idx)[::2]
    return out


def ecg_derived_respiration(t_beats, r_amplitude, *, resample_hz: float = 4.0) -> dict:
    """ECG-derived respiration (EDR) from the beat-to-beat R-wave amplitude.

    Breathing moves the heart relative to the electrodes and changes the thoracic
    impedance, so the amplitude of the QRS complex rises and falls with it. Sampled
    once per beat and resampled evenly, it is a respiration signal for
    :func:`respiration_rate` when no respiration channel was recorded.

    Parameters
    ----------
    t_beats : array-like, shape (n_beats,)
        Beat (R-peak) times (s).
    r_amplitude : array-like, shape (n_beats,)
        R-wave amplitude of each beat (mV; the beat table's ``r_amplitude``); NaN
        beats (ectopic, artefact) are left out and bridged by the interpolation.
    resample_hz : float
        Rate of the evenly resampled EDR (Hz); 4 Hz as for the RR tachogram.

    Returns
    -------
    dict
        ``t`` (s) the even grid from the first to the last usable beat; ``edr`` (mV)
        the amplitude, cubic-spline interpolated, mean removed; ``fs`` (Hz) the grid's
        rate; ``reason`` (``""``, or why ``edr`` is empty: fewer than 4 usable beats).

    Raises
    ------
    SignalQualityError
        Inputs not 1-D or of different lengths; ``resample_hz`` not positive.
    UnitError
        ``r_amplitude`` given as a DataArray whose ``units`` is not mV.

    Notes
    -----
    Moody GB, Mark RG, Zoccola A, Mantero S (1985) Derivation of respiratory signals
    from multi-lead ECGs. Computers in Cardiology 12:113-116 (amplitude modulation of
    the QRS, one value per beat). Resampling by cubic spline as in the EDR methods
    compared by Charlton et al. (2016) Physiol Meas 37:610-626.
    """
    t = _vector(t_beats, "t_beats", "s")
    a = _vector(r_amplitude, "r_amplitude", "mV")
    fs = _rate(resample_hz, "resample_hz")
    if t.size != a.size:
        raise SignalQualityError(
            f"t_beats and r_amplitude: lengths differ ({t.size} vs {a.size} beats)"
        )
    ok = np.isfinite(t) & np.isfinite(a)
    t, a = t[ok], a[ok]
    keep = np.r_[True, np.diff(t) > 0] if t.size else np.zeros(0, bool)
    t, a = t[keep], a[keep]
    if t.size < 4:
        return {
            "t": np.zeros(0),
            "edr": np.zeros(0),
            "fs": fs,
            "reason": f"only {t.size} beats with an R amplitude (4 needed)",
        }
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * fs)) + 1) / fs
    edr = scipy.interpolate.CubicSpline(t, a)(grid)
    return {"t": grid, "edr": edr - np.mean(edr), "fs": fs, "reason": ""}


def hf_band_for_breathing(
    rate_hz, default=(0.15, 0.4), *, half_width: float = HF_HALF_WIDTH_HZ
) -> tuple[float, float]:
    """The HRV high-frequency band for a measured breathing rate.

    Parameters
    ----------
    rate_hz : float
        Breathing frequency (Hz; breaths/min / 60). NaN: the default band.
    default : tuple of float
        The standard HF band (Hz), kept when the breathing frequency lies inside it.
    half_width : float
        Half-width (Hz) of the band centred on a breathing frequency outside
        ``default``.

    Returns
    -------
    tuple of float
        ``default`` when ``lo <= rate_hz <= hi`` or the rate is NaN; else
        ``(rate_hz - half_width, rate_hz + half_width)``, the lower edge kept above
        0.04 Hz (the LF band's lower edge).

    Raises
    ------
    ValueError
        A negative rate or half-width, or a default band that is not ``lo < hi``.

    Notes
    -----
    The Task Force of the ESC and NASPE (1996, Circulation 93:1043) defines HF as
    0.15-0.4 Hz because respiration usually lies there; when breathing is slower
    (paced breathing at 6/min = 0.1 Hz) the respiratory peak moves into LF, and when
    faster (exercise) above 0.4 Hz. Laborde, Mosley and Thayer (2017, Front Psychol
    8:213) and Quintana et al. (2016, GRAPH guidelines, Transl Psychiatry 6:e803)
    ask for the breathing rate to be measured and the vagal band to follow it. The
    half-width, 0.05 Hz (3 breaths/min either side), is this package's choice: wide
    enough to hold a breathing rate that wanders by +-3 breaths/min over an epoch,
    narrow enough at 0.1 Hz to leave the Mayer-wave peak partly outside; below 0.15 Hz
    the band overlaps the standard LF band, so LF and HF then share power.
    """
    lo, hi = (float(v) for v in default)
    if not lo < hi:
        raise ValueError(f"default HF band {default!r}: expected (lo, hi) with lo < hi")
    half_width = float(half_width)
    if half_width <= 0:
        raise ValueError(f"half_width must be positive, got {half_width}")
    rate = float(rate_hz)
    if np.isnan(rate):
        return (lo, hi)
    if rate < 0:
        raise ValueError(f"rate_hz must be >= 0 (Hz), got {rate}")
    if lo <= rate <= hi:
        return (lo, hi)
    return (max(rate - half_width, 0.04), rate + half_width)
