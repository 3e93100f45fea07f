"""Doppler velocity envelope: per-beat PSV, EDV, TAMV and the resistive and pulsatility indices.

Beat ``i`` runs from the velocity upstroke that follows R-peak ``i`` to the next one.
Onsets come from :func:`cardiolab.signals.pressure.pulse_onsets` (intersecting
tangents on the steepest upstroke), so the same routine serves pressure and velocity.

* PSV: the peak of the (lightly smoothed) envelope between the onsets.
* EDV: the envelope just before the next beat's upstroke (mean over the last
  ``edv_s`` before the next onset's end-diastolic minimum).
* TAMV: the time average of the envelope from onset to next onset (not the
  PSV/3 + 2 EDV/3 shortcut).
* RI = (PSV - EDV) / PSV (Pourcelot); PI = (PSV - EDV) / TAMV (Gosling).

This works for high-resistance (femoral: triphasic, with early-diastolic reverse
flow and a small EDV) and low-resistance (middle cerebral artery) envelopes. Flat or
held segments, NaNs, beats without an upstroke and implausible values are flagged
``valid = False``, never repaired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .pressure import (
    _count_in,
    _filled,
    _onset_samples,
    _segment_mean,
    _window_arg,
    beat_spans_overlap,
    flat_segments,
    pulse_onsets,
)

__all__ = ["DOPPLER_COLUMNS", "DOPPLER_LIMITS", "doppler_beats"]

#: column: (units, long_name) of :func:`doppler_beats`
DOPPLER_COLUMNS = {
    "onset": ("s", "velocity upstroke onset"),
    "psv": ("cm/s", "peak systolic velocity"),
    "edv": ("cm/s", "end-diastolic velocity"),
    "tamv": ("cm/s", "time-averaged mean of the envelope over the beat"),
    "ri": ("1", "resistive index (Pourcelot)"),
    "pi": ("1", "pulsatility index (Gosling)"),
    "valid": ("1", "beat values trustworthy"),
}

#: Plausible ranges (cm/s, and of the indices); outside them a beat is invalid.
DOPPLER_LIMITS = {
    "psv_min": 5.0,
    "psv_max": 300.0,
    "tamv_min": 0.5,
    "ri_min": 0.0,
    "ri_max": 1.5,
    "pi_max": 30.0,
}


def doppler_beats(
    velocity,
    fs,
    r_times,
    *,
    transit=0.08,
    smooth_s=0.05,
    edv_s=0.03,
    flat_tolerance=0.05,
    flat_min_s=0.5,
    limits=None,
):
    """Per-beat Doppler indices from a velocity envelope, one row per R-peak.

    Parameters
    ----------
    velocity : array-like
        Maximum-velocity envelope (cm/s), 1-D, first sample at t = 0.
    fs : float
        Sampling rate (Hz).
    r_times : array-like
        R-peak times (s, same clock as ``velocity``), increasing.
    transit : float
        Shortest expected transit time from the heart to the vessel (s); see
        :func:`~cardiolab.signals.pressure.pulse_onsets`. The default, 0.08 s, suits
        both the femoral artery (0.15-0.2 s) and the middle cerebral artery
        (0.1-0.13 s).
    smooth_s : float
        Savitzky-Golay window (s) for the onset search and the PSV.
    edv_s : float
        Length (s) of the stretch averaged for the EDV, ending at the next beat's
        end-diastolic minimum.
    flat_tolerance : float
        Local SD (cm/s) under which the envelope counts as flat (held value,
        dropout); see :func:`~cardiolab.signals.pressure.flat_segments`.
    flat_min_s : float
        Shortest flat stretch (s) flagged.
    limits : dict, optional
        Overrides of :data:`DOPPLER_LIMITS`.

    Returns
    -------
    pandas.DataFrame
        One row per R-peak with the columns of :data:`DOPPLER_COLUMNS`: ``onset``
        (s), ``psv``, ``edv``, ``tamv`` (cm/s), ``ri``, ``pi`` (dimensionless) and
        ``valid``. The last beat (no end) is always invalid. Units are in
        ``DataFrame.attrs["units"]``.
    """
    lim = {**DOPPLER_LIMITS, **(limits or {})}
    fs = float(fs)
    xf, bad = _filled(velocity)
    n = xf.size
    r = np.asarray(r_times, dtype=float).ravel()
    nb = r.size
    po = pulse_onsets(xf, fs, r, transit=transit, smooth_s=smooth_s)
    onset = po["onset"]
    smooth = po["smooth"]
    psv = np.full(nb, np.nan)
    edv = np.full(nb, np.nan)
    tamv = np.full(nb, np.nan)
    valid = np.zeros(nb, dtype=bool)
    if nb and n >= 5:
        a = _onset_samples(onset, fs)
        b = np.r_[a[1:], -1]
        ok = (a >= 0) & (b > a)
        i_pk = _window_arg(smooth, np.where(ok, a, 0), np.where(ok, b - 1, -1), mode="max")
        ok &= i_pk >= 0
        psv = np.where(ok, smooth[np.clip(i_pk, 0, n - 1)], np.nan)
        # EDV: raw envelope averaged just before the next upstroke's foot
        i_end = np.r_[po["i_min"][1:], -1]
        i_end = np.where(ok & (i_end > i_pk), np.minimum(i_end + 1, b), b)
        k = max(1, int(round(edv_s * fs)))
        edv = np.where(ok, _segment_mean(xf, np.maximum(i_end - k, a), i_end), np.nan)
        tamv = np.where(ok, _segment_mean(xf, a, b), np.nan)

        flats = flat_segments(np.where(bad, np.nan, xf), fs, flat_min_s, flat_tolerance)
        stop = np.r_[onset[1:], np.nan]
        touched = beat_spans_overlap(onset, stop, flats)
        nan_hit = _count_in(bad, np.where(a >= 0, a, 0), np.where(b > 0, b, n)) > 0
        valid = ok & ~touched & ~nan_hit
        # never a value computed over bridged (NaN) samples
        psv, edv, tamv = (np.where(nan_hit, np.nan, v) for v in (psv, edv, tamv))
    with np.errstate(invalid="ignore", divide="ignore"):
        ri = (psv - edv) / psv
        pi = np.where(tamv > 0, (psv - edv) / tamv, np.nan)
        plausible = (psv >= lim["psv_min"]) & (psv <= lim["psv_max"])
        plausible &= (tamv >= lim["tamv_min"]) & (ri >= lim["ri_min"]) & (ri <= lim["ri_max"])
        plausible &= pi <= lim["pi_max"]
    out = pd.DataFrame(
        {
            "onset": onset,
            "psv": psv,
            "edv": edv,
            "tamv": tamv,
            "ri": ri,
            "pi": pi,
            "valid": valid & plausible,
        }
    )
    out.attrs["units"] = {k: u for k, (u, _) in DOPPLER_COLUMNS.items()}
    return out
