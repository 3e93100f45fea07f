"""Arterial pressure: pulse onsets and per-beat systolic, diastolic and mean pressure.

Beat ``i`` is the cardiac cycle that starts at R-peak ``r_times[i]``; its pressure
pulse reaches the measurement site after a transit delay (finger 0.2-0.3 s). The
pulse onset (foot) is found by the intersecting-tangents method (Chiu et al. 1991):
the tangent at the steepest point of the upstroke meets the horizontal through the
end-diastolic minimum. The steepest upstroke of beat ``i`` is searched in
``[r_times[i] + 0.03 s, r_times[i + 1] + transit]``, where ``transit`` is the
shortest expected transit time, so the window holds beat ``i``'s upstroke and not
beat ``i + 1``'s.

Nothing is repaired: beats in Finapres calibration gaps ("Physiocal", the signal
goes flat for 2-3 s), signal dropouts (a held value), NaNs, beats without a clear
upstroke and beats with non-physiological values keep their numbers (or NaN) and
are flagged ``valid = False``.

The pulse-onset machinery (:func:`pulse_onsets`, :func:`flat_segments`) is shared
with :mod:`cardiolab.signals.doppler` and :mod:`cardiolab.signals.ldf`. These are
NumPy cores: arrays in, arrays or a :class:`pandas.DataFrame` out; labels, units and
attrs belong to the xarray layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter1d
from scipy.signal import savgol_filter

__all__ = [
    "PRESSURE_LIMITS",
    "PRESSURE_COLUMNS",
    "arterial_pressure_beats",
    "flat_segments",
    "pulse_onsets",
    "beat_spans_overlap",
]

#: Physiological limits (mmHg): a beat outside them is flagged invalid.
PRESSURE_LIMITS = {"sbp_max": 300.0, "dbp_min": 10.0, "pp_min": 5.0}

#: column: (units, long_name) of :func:`arterial_pressure_beats`
PRESSURE_COLUMNS = {
    "onset": ("s", "pressure pulse onset (foot of the upstroke)"),
    "t_systolic": ("s", "time of the systolic peak"),
    "t_notch": ("s", "time of the dicrotic notch (NaN when not found)"),
    "sbp": ("mmHg", "systolic blood pressure"),
    "dbp": ("mmHg", "diastolic blood pressure (end-diastolic minimum at the onset)"),
    "map": ("mmHg", "mean arterial pressure (area mean, onset to next onset)"),
    "pp": ("mmHg", "pulse pressure"),
    "valid": ("1", "beat values trustworthy"),
}

#: R-peak to the start of the upstroke search (s): no pulse arrives before this.
SEARCH_DELAY_S = 0.03
#: Elements per block of the windowed reductions (bounds memory on long records).
_BLOCK = 1 << 22


# --------------------------------------------------------------------------------------
# windowed reductions (vectorised, in blocks of beats)
# --------------------------------------------------------------------------------------


def _window_arg(values, i0, i1, *, mode="max"):
    """Index of the max (or min) of ``values[i0[k]:i1[k] + 1]`` for each window ``k``.

    Windows may overlap. Empty windows (``i1 < i0``) and windows of only NaNs give -1.
    """
    i0 = np.asarray(i0, dtype=np.int64)
    i1 = np.asarray(i1, dtype=np.int64)
    out = np.full(i0.size, -1, dtype=np.int64)
    length = i1 - i0 + 1
    ok = length > 0
    if not ok.any():
        return out
    width = int(length[ok].max())
    fill = -np.inf if mode == "max" else np.inf
    step = max(1, _BLOCK // width)
    rows = np.flatnonzero(ok)
    offs = np.arange(width)
    for b in range(0, rows.size, step):
        k = rows[b : b + step]
        idx = i0[k, None] + offs[None, :]
        inside = offs[None, :] < length[k, None]
        win = np.where(inside, values[np.clip(idx, 0, values.size - 1)], fill)
        win = np.where(np.isnan(win), fill, win)
        j = np.argmax(win, axis=1) if mode == "max" else np.argmin(win, axis=1)
        hit = win[np.arange(k.size), j] != fill
        out[k[hit]] = i0[k[hit]] + j[hit]
    return out


def _segment_mean(values, a, b):
    """Mean of ``values[a[k]:b[k]]`` for each k (NaN where empty), by cumulative sums."""
    cs = np.concatenate(([0.0], np.cumsum(values, dtype=float)))
    a = np.clip(a, 0, values.size)
    b = np.clip(b, 0, values.size)
    count = b - a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (cs[b] - cs[a]) / count, np.nan)


def _count_in(mask, a, b):
    """Number of True samples of ``mask`` in ``[a[k], b[k])``."""
    cs = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    a = np.clip(a, 0, mask.size)
    b = np.clip(b, a, mask.size)
    return cs[b] - cs[a]


def _filled(x):
    """``x`` as float with NaNs bridged linearly (for the filters only) and the NaN mask.

    The bridged values are never reported: every beat that touches a NaN is flagged.
    """
    x = np.asarray(x, dtype=float).ravel()
    bad = ~np.isfinite(x)
    if not bad.any():
        return x, bad
    good = np.flatnonzero(~bad)
    if good.size == 0:
        return np.zeros_like(x), bad
    filled = x.copy()
    filled[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return filled, bad


def _odd(n, minimum):
    n = max(int(round(n)), minimum)
    return n + 1 - n % 2


def _smooth(x, fs, smooth_s, deriv=0):
    """Savitzky-Golay (cubic) smoothing or derivative (units of x per s**deriv)."""
    win = _odd(smooth_s * fs, 5)
    if x.size < win:
        if deriv == 0:
            return x.copy()
        return np.gradient(x, 1.0 / fs) if x.size > 1 else np.zeros_like(x)
    return savgol_filter(x, win, 3, deriv=deriv, delta=1.0 / fs, mode="interp")


# --------------------------------------------------------------------------------------
# flat segments
# --------------------------------------------------------------------------------------


def flat_segments(x, fs, min_duration_s=0.5, tolerance=0.5, *, window_s=0.2):
    """Stretches where a signal is flat: calibration plateaus and held-value dropouts.

    A sample is flat when the standard deviation of the signal over the centred
    ``window_s`` around it is at most ``tolerance``; runs of flat samples lasting at
    least ``min_duration_s`` (window included) are returned. A held value (SD 0) is
    always flat; a Finapres Physiocal plateau (SD about 0.2 mmHg) is flat for the
    default tolerance, while any pulsatile stretch is not. NaN samples are never flat
    (they are missing, not flat).

    Parameters
    ----------
    x : array-like
        Signal (any units), 1-D.
    fs : float
        Sampling rate (Hz).
    min_duration_s : float
        Shortest flat stretch reported (s).
    tolerance : float
        Largest local standard deviation of a flat stretch, in the units of ``x``
        (the default, 0.5, suits pressure in mmHg).
    window_s : float
        Length of the running window of the local SD (s).

    Returns
    -------
    numpy.ndarray
        Shape ``(k, 2)``: start and stop times (s, from the first sample) of each
        flat stretch, in time order.
    """
    x = np.asarray(x, dtype=float).ravel()
    fs = float(fs)
    if x.size == 0:
        return np.zeros((0, 2))
    w = max(3, int(round(window_s * fs)))
    if x.size < w:
        return np.zeros((0, 2))
    finite = np.isfinite(x)
    ref = np.median(x[finite]) if finite.any() else 0.0
    xc = np.where(finite, x - ref, 0.0)
    mean = uniform_filter1d(xc, w, mode="nearest")
    var = uniform_filter1d(xc * xc, w, mode="nearest") - mean * mean
    nan_near = uniform_filter1d((~finite).astype(float), w, mode="nearest") > 0
    flat = (np.sqrt(np.clip(var, 0.0, None)) <= tolerance) & ~nan_near
    edges = np.diff(np.concatenate(([0], flat.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)  # exclusive
    half = w // 2
    lo = np.clip(starts - half, 0, x.size)
    hi = np.clip(stops + (w - 1 - half), 0, x.size)
    keep = (hi - lo) >= min_duration_s * fs
    return np.c_[lo[keep], hi[keep]].astype(float).reshape(-1, 2) / fs


def beat_spans_overlap(starts, stops, segments):
    """Which spans ``[starts[k], stops[k])`` (s) intersect any of ``segments``.

    Parameters
    ----------
    starts, stops : array-like
        Span limits (s); NaN limits never overlap.
    segments : array-like
        Shape ``(m, 2)``, start and stop (s), sorted and non-overlapping (as returned
        by :func:`flat_segments`).

    Returns
    -------
    numpy.ndarray of bool
    """
    starts = np.asarray(starts, dtype=float)
    stops = np.asarray(stops, dtype=float)
    seg = np.asarray(segments, dtype=float).reshape(-1, 2)
    if seg.shape[0] == 0:
        return np.zeros(starts.shape, dtype=bool)
    # first segment ending after the span start; it overlaps if it begins before the stop
    k = np.searchsorted(seg[:, 1], np.nan_to_num(starts, nan=np.inf), side="right")
    kk = np.clip(k, 0, seg.shape[0] - 1)
    return (k < seg.shape[0]) & (seg[kk, 0] < stops) & np.isfinite(starts)


# --------------------------------------------------------------------------------------
# pulse onsets
# --------------------------------------------------------------------------------------


def _beat_ends(r, n_seconds):
    """R-peak of the next beat, and a stand-in for the last beat (one median RR on)."""
    if r.size > 1:
        rr = float(np.median(np.diff(r)))
    else:
        rr = 1.0
    return np.r_[r[1:], min(r[-1] + rr, n_seconds)] if r.size else r


def pulse_onsets(
    x,
    fs,
    r_times,
    *,
    transit=0.15,
    smooth_s=0.04,
    min_slope_ratio=0.25,
    max_latency_dev_s=0.12,
):
    """Pulse onsets (feet) of a pulsatile signal, one per R-peak.

    For beat ``i`` the steepest upstroke is searched in
    ``[r_times[i] + 0.03, r_times[i + 1] + transit]`` (the last beat: one median RR
    after its R-peak), on a Savitzky-Golay derivative. The onset is where the tangent
    there meets the horizontal through the minimum between the window start and the
    steepest point (intersecting tangents).

    Parameters
    ----------
    x : array-like
        Pressure (mmHg) or velocity (cm/s), 1-D, first sample at t = 0.
    fs : float
        Sampling rate (Hz).
    r_times : array-like
        R-peak times (s, same clock as ``x``), increasing.
    transit : float
        Shortest expected pulse transit time from the heart to the site (s): ends
        the search window short of the next beat's upstroke. 0.15 s suits the
        finger (transit 0.2-0.3 s); use 0.08 s for the femoral artery (0.15-0.2 s)
        or the middle cerebral artery (0.1-0.13 s).
    smooth_s : float
        Savitzky-Golay window (s) of the smoothing and the derivative.
    min_slope_ratio : float
        An upstroke less steep than this fraction of the median upstroke is not an
        upstroke (flat or missing signal): onset not found.
    max_latency_dev_s : float
        An onset further than this from the session's median R-to-onset latency is
        not found (s).

    Returns
    -------
    dict of numpy.ndarray
        ``onset`` (s, NaN when not found), ``i_min`` (sample of the end-diastolic
        minimum, -1 when not found), ``i_upstroke`` (sample of the steepest upstroke,
        -1), ``slope`` (largest upstroke slope, units of x per s), ``latency`` (the
        session's median R-to-onset latency, s) and ``smooth`` (the smoothed signal).
    """
    xf, _ = _filled(x)
    fs = float(fs)
    r = np.asarray(r_times, dtype=float).ravel()
    nb = r.size
    empty = {
        "onset": np.full(nb, np.nan),
        "i_min": np.full(nb, -1, dtype=np.int64),
        "i_upstroke": np.full(nb, -1, dtype=np.int64),
        "slope": np.full(nb, np.nan),
        "latency": np.nan,
        "smooth": xf,
    }
    if nb == 0 or xf.size < 5:
        return empty
    n = xf.size
    smooth = _smooth(xf, fs, smooth_s)
    slope = _smooth(xf, fs, smooth_s, deriv=1)
    r_next = _beat_ends(r, n / fs)
    i0 = np.ceil((r + SEARCH_DELAY_S) * fs).astype(np.int64)
    i1 = np.floor((r_next + transit) * fs).astype(np.int64)
    i0 = np.clip(i0, 0, n)
    i1 = np.clip(i1, -1, n - 1)
    ims = _window_arg(slope, i0, i1, mode="max")
    found = ims >= 0
    s_max = np.where(found, slope[np.clip(ims, 0, n - 1)], np.nan)
    found &= s_max > 0
    if found.any():
        found &= s_max >= min_slope_ratio * np.median(s_max[found])
    imin = _window_arg(smooth, i0, np.where(found, ims, -1), mode="min")
    found &= imin >= 0
    ims_c = np.clip(ims, 0, n - 1)
    imin_c = np.clip(imin, 0, n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        onset = ims_c / fs - (smooth[ims_c] - smooth[imin_c]) / s_max
    onset = np.where(found, np.clip(onset, imin_c / fs, ims_c / fs), np.nan)
    latency = onset - r
    lat = float(np.nanmedian(latency)) if np.isfinite(latency).any() else np.nan
    if np.isfinite(lat):
        found &= np.abs(latency - lat) <= max_latency_dev_s
    return {
        "onset": np.where(found, onset, np.nan),
        "i_min": np.where(found, imin, -1),
        "i_upstroke": np.where(found, ims, -1),
        "slope": np.where(found, s_max, np.nan),
        "latency": lat,
        "smooth": smooth,
    }


def _onset_samples(onset, fs):
    """First sample at or after each onset (-1 where NaN)."""
    ok = np.isfinite(onset)
    return np.where(ok, np.ceil(np.where(ok, onset, 0.0) * fs - 1e-9), -1).astype(np.int64)


def _shift_next(values):
    """``values[i + 1]`` for each i, NaN for the last."""
    return np.r_[values[1:], np.nan] if values.size else values


# --------------------------------------------------------------------------------------
# arterial pressure
# --------------------------------------------------------------------------------------


def _dicrotic_notch(smooth, slope, curv, fs, i_sys, i_end):
    """Dicrotic notch sample per beat (-1 when not found).

    The first local minimum of the pressure in ``[systolic peak + 40 ms, systolic
    peak + 60 % of the remaining beat]``; failing that (a notch seen only as a
    shoulder), the point of largest positive curvature there.
    """
    n = smooth.size
    ok = (i_sys >= 0) & (i_end > i_sys)
    w0 = i_sys + int(round(0.04 * fs))
    w1 = i_sys + (0.6 * (i_end - i_sys)).astype(np.int64)
    ok &= w1 > w0
    out = np.full(i_sys.size, -1, dtype=np.int64)
    if not ok.any():
        return out
    minima = np.flatnonzero((slope[:-1] < 0) & (slope[1:] >= 0)) + 1
    j = np.searchsorted(minima, w0)
    jc = np.clip(j, 0, max(minima.size - 1, 0))
    has_min = ok & (j < minima.size) & (minima[jc] <= w1) if minima.size else np.zeros_like(ok)
    out[has_min] = minima[jc[has_min]]
    rest = ok & ~has_min
    if rest.any():
        k = _window_arg(curv, np.where(rest, w0, 0), np.where(rest, w1, -1), mode="max")
        kc = np.clip(k, 0, n - 1)
        good = rest & (k >= 0) & (curv[kc] > 0)
        out[good] = k[good]
    return out


def arterial_pressure_beats(
    abp,
    fs,
    r_times,
    *,
    transit=0.15,
    flat_tolerance=0.5,
    flat_min_s=0.5,
    limits=None,
):
    """Per-beat systolic, diastolic and mean arterial pressure, one row per R-peak.

    Parameters
    ----------
    abp : array-like
        Arterial pressure (mmHg), 1-D, first sample at t = 0 (finger or intra-arterial).
    fs : float
        Sampling rate (Hz).
    r_times : array-like
        R-peak times (s, same clock as ``abp``), increasing.
    transit : float
        Shortest expected transit time from the heart to the site (s); see
        :func:`pulse_onsets`. 0.15 s suits the finger.
    flat_tolerance : float
        Local SD (mmHg) under which the signal counts as flat (calibration or
        dropout); see :func:`flat_segments`.
    flat_min_s : float
        Shortest flat stretch (s) flagged.
    limits : dict, optional
        Overrides of :data:`PRESSURE_LIMITS` (mmHg).

    Returns
    -------
    pandas.DataFrame
        One row per R-peak (beat ``i`` runs from pulse onset ``i`` to onset ``i + 1``)
        with the columns of :data:`PRESSURE_COLUMNS`: ``onset``, ``t_systolic``,
        ``t_notch`` (s), ``sbp`` (max from onset to next onset), ``dbp`` (end-diastolic
        minimum before the upstroke), ``map`` (area mean from onset to next onset),
        ``pp`` (mmHg) and ``valid``. Beats are invalid when their onset or the next one
        is not found (the last beat, which has no end, always is), when they touch a
        flat stretch (Physiocal, dropout) or a NaN, or when SBP > 300, DBP < 10 or
        PP < 5 mmHg. Units are in ``DataFrame.attrs["units"]``.
    """
    lim = {**PRESSURE_LIMITS, **(limits or {})}
    fs = float(fs)
    xf, bad = _filled(abp)
    n = xf.size
    r = np.asarray(r_times, dtype=float).ravel()
    nb = r.size
    po = pulse_onsets(xf, fs, r, transit=transit)
    onset = po["onset"]
    smooth = po["smooth"]
    nan = np.full(nb, np.nan)
    cols = {k: nan.copy() for k in ("t_systolic", "t_notch", "sbp", "dbp", "map")}
    valid = np.zeros(nb, dtype=bool)
    if nb and n >= 5:
        a = _onset_samples(onset, fs)
        b = np.r_[a[1:], -1]
        ok = (a >= 0) & (b > a)
        i_sys = _window_arg(smooth, np.where(ok, a, 0), np.where(ok, b - 1, -1), mode="max")
        ok &= i_sys >= 0
        i_sys_c = np.clip(i_sys, 0, n - 1)
        cols["sbp"] = np.where(ok, smooth[i_sys_c], np.nan)
        cols["t_systolic"] = np.where(ok, i_sys / fs, np.nan)
        cols["dbp"] = np.where(ok, smooth[np.clip(po["i_min"], 0, n - 1)], np.nan)
        cols["map"] = np.where(ok, _segment_mean(xf, a, b), np.nan)
        slope = _smooth(xf, fs, 0.04, deriv=1)
        curv = _smooth(xf, fs, 0.08, deriv=2)
        i_notch = _dicrotic_notch(smooth, slope, curv, fs, np.where(ok, i_sys, -1), b)
        cols["t_notch"] = np.where(i_notch >= 0, i_notch / fs, np.nan)

        # on the raw signal: bridged NaNs are missing (flagged below), not flat
        flats = flat_segments(np.where(bad, np.nan, xf), fs, flat_min_s, flat_tolerance)
        # the beat as measured, and as expected from the session's R-to-onset latency
        stop = _shift_next(onset)
        lat = po["latency"]
        exp_start = r + lat - 0.05
        exp_stop = _beat_ends(r, n / fs) + lat - 0.05
        touched = beat_spans_overlap(onset + 0.02, stop - 0.02, flats)
        touched |= beat_spans_overlap(exp_start, exp_stop, flats)
        lo = np.minimum(np.where(a >= 0, a, n), np.ceil((r + SEARCH_DELAY_S) * fs))
        nan_hit = _count_in(bad, lo.astype(np.int64), np.where(b > 0, b, n)) > 0
        pp = cols["sbp"] - cols["dbp"]
        with np.errstate(invalid="ignore"):
            physio = (cols["sbp"] <= lim["sbp_max"]) & (cols["dbp"] >= lim["dbp_min"])
            physio &= pp >= lim["pp_min"]
        valid = ok & ~touched & ~nan_hit & physio
        for k in cols:  # never a value computed over bridged (NaN) samples
            cols[k] = np.where(nan_hit, np.nan, cols[k])
    out = pd.DataFrame(
        {
            "onset": onset,
            "t_systolic": cols["t_systolic"],
            "t_notch": cols["t_notch"],
            "sbp": cols["sbp"],
            "dbp": cols["dbp"],
            "map": cols["map"],
            "pp": cols["sbp"] - cols["dbp"],
            "valid": valid,
        }
    )
    out.attrs["units"] = {k: u for k, (u, _) in PRESSURE_COLUMNS.items()}
    return out
