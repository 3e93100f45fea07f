"""Laser Doppler flux: per-beat mean flux and cutaneous vascular conductance.

Beat ``i`` runs from R-peak ``r_times[i]`` to ``r_times[i + 1]``; its flux is the
mean of the samples in ``[r_times[i], r_times[i + 1])``. Flat stretches (held value,
dropouts, a signal clipped at 0), NaNs and motion spikes (see :func:`ldf_spikes`:
samples beyond the running median +/- ``spike_k`` median absolute deviations of a
10-s window, after removing the slower vasomotion) make a beat invalid; nothing is
repaired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

from .pressure import _count_in, _filled, _segment_mean, beat_spans_overlap, flat_segments

__all__ = ["LDF_COLUMNS", "ldf_beats", "ldf_spikes", "cutaneous_vascular_conductance"]

#: column: (units, long_name) of :func:`ldf_beats`
LDF_COLUMNS = {
    "flux": ("PU", "mean laser Doppler flux over the beat"),
    "valid": ("1", "beat value trustworthy"),
}


def ldf_spikes(flux, fs, *, window_s=10.0, k=6.0, detrend_s=1.0):
    """Motion spikes: samples beyond the running median +/- ``k`` MAD.

    Vasomotion moves the flux by tens of percent over seconds, so the test runs on
    the flux minus its running median over ``detrend_s`` (what is faster than about
    1 Hz: the cardiac pulsation, noise and motion); a sample is a spike where this
    residual leaves its running median +/- ``k`` median absolute deviations over
    ``window_s``.

    Parameters
    ----------
    flux : array-like
        Laser Doppler flux (PU), 1-D.
    fs : float
        Sampling rate (Hz).
    window_s : float
        Length of the running window of the median and the MAD (s).
    k : float
        Threshold, in (unscaled) median absolute deviations.
    detrend_s : float
        Length of the running median removed first (s).

    Returns
    -------
    numpy.ndarray of bool
        True at spike samples (NaN samples are not spikes; they are missing).
    """
    x, bad = _filled(flux)
    if x.size == 0:
        return np.zeros(0, dtype=bool)
    fs = float(fs)
    w = max(3, int(round(window_s * fs)))
    resid = x - median_filter(x, size=max(3, int(round(detrend_s * fs))), mode="reflect")
    med = median_filter(resid, size=w, mode="reflect")
    dev = np.abs(resid - med)
    mad = median_filter(dev, size=w, mode="reflect")
    return (dev > k * mad) & (mad > 0) & ~bad


def ldf_beats(
    flux,
    fs,
    r_times,
    *,
    flat_tolerance=0.02,
    flat_min_s=0.5,
    spike_window_s=10.0,
    spike_k=6.0,
):
    """Per-beat mean laser Doppler flux, one row per R-peak.

    Parameters
    ----------
    flux : array-like
        Laser Doppler flux (PU), 1-D, first sample at t = 0.
    fs : float
        Sampling rate (Hz).
    r_times : array-like
        R-peak times (s, same clock as ``flux``), increasing.
    flat_tolerance : float
        Local SD (PU) under which the flux counts as flat (held value, dropout).
    flat_min_s : float
        Shortest flat stretch (s) flagged.
    spike_window_s, spike_k : float
        Running window (s) and threshold (MADs) of :func:`ldf_spikes`.

    Returns
    -------
    pandas.DataFrame
        One row per R-peak: ``flux`` (PU, mean over ``[r_times[i], r_times[i + 1])``,
        NaN for the last beat, which has no end) and ``valid``. Units are in
        ``DataFrame.attrs["units"]``.
    """
    fs = float(fs)
    x, bad = _filled(flux)
    n = x.size
    r = np.asarray(r_times, dtype=float).ravel()
    nb = r.size
    mean = np.full(nb, np.nan)
    valid = np.zeros(nb, dtype=bool)
    if nb and n:
        a = np.ceil(r * fs - 1e-9).astype(np.int64)
        b = np.r_[a[1:], -1]
        ok = (a >= 0) & (b > a) & (b <= n)
        mean = np.where(ok, _segment_mean(x, a, b), np.nan)
        stop = np.r_[r[1:], np.nan]
        flats = flat_segments(np.where(bad, np.nan, x), fs, flat_min_s, flat_tolerance)
        touched = beat_spans_overlap(r, stop, flats)
        lo, hi = np.clip(a, 0, n), np.where(ok, b, 0)
        nan_hit = _count_in(bad, lo, hi) > 0
        spikes = ldf_spikes(x, fs, window_s=spike_window_s, k=spike_k)
        valid = ok & ~touched & ~nan_hit & (_count_in(spikes, lo, hi) == 0)
        mean = np.where(nan_hit, np.nan, mean)  # never a mean over bridged samples
    out = pd.DataFrame({"flux": mean, "valid": valid})
    out.attrs["units"] = {k: u for k, (u, _) in LDF_COLUMNS.items()}
    return out


def cutaneous_vascular_conductance(flux, map, valid=None):
    """Cutaneous vascular conductance CVC = flux / MAP (PU/mmHg).

    Parameters
    ----------
    flux : array-like
        Laser Doppler flux (PU), e.g. per beat.
    map : array-like
        Mean arterial pressure (mmHg), same shape (or broadcastable).
    valid : array-like of bool, optional
        Which MAP values are trustworthy (e.g. ``arterial_pressure_beats(...)["valid"]``).

    Returns
    -------
    numpy.ndarray
        CVC (PU/mmHg); NaN where MAP is invalid, missing or not positive, or the flux
        is missing.
    """
    f = np.asarray(flux, dtype=float)
    m = np.asarray(map, dtype=float)
    ok = np.isfinite(m) & (m > 0) & np.isfinite(f)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, f / np.where(ok, m, 1.0), np.nan)
