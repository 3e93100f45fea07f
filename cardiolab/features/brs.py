"""Spontaneous baroreflex sensitivity: sequence method and transfer function.

Numerical core (NumPy arrays in, dicts out). Beat convention of the beat table:
``rr[i]`` is the RR interval *ending* at beat ``i``, ``sbp[i]`` the systolic pressure
of beat ``i``. At lag ``k`` the pressure of beat ``i`` is paired with ``rr[i + k]``;
lag 1 pairs a systole with the interval that follows it (the simulator's
``rr[i+1] = RR0 + brs (SBP_i - SBP0) + noise``).
"""

from __future__ import annotations

import numpy as np
import scipy.interpolate
import scipy.signal

__all__ = ["baroreflex_sequence", "baroreflex_transfer"]


def _runs(mask):
    """Start and stop (exclusive) indices of the runs of True in a 1-D bool array."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def baroreflex_sequence(
    sbp_mmhg,
    rr_ms,
    *,
    min_beats=3,
    min_dsbp=1.0,
    min_drr=5.0,
    min_r=0.85,
    lag=1,
) -> dict:
    """Baroreflex sensitivity by the sequence method (Bertinieri, Di Rienzo).

    A sequence is a maximal run of at least ``min_beats`` consecutive beats in which
    SBP and the (lagged) RR interval rise together at every step ("up") or fall
    together ("down"), each step by at least ``min_dsbp`` and ``min_drr``; it is
    accepted when the correlation of RR on SBP over its beats reaches ``min_r`` in
    absolute value. Its slope is the least-squares slope of RR on SBP.

    Parameters
    ----------
    sbp_mmhg : array-like of float
        Systolic pressure per beat (mmHg); NaN for excluded beats (a NaN breaks any
        run through it).
    rr_ms : array-like of float
        RR interval ending at each beat (ms), same length; NaN where unknown.
    min_beats : int
        Minimum number of beats in a sequence.
    min_dsbp : float
        Minimum SBP change per step (mmHg).
    min_drr : float
        Minimum RR change per step (ms).
    min_r : float
        Minimum absolute correlation coefficient.
    lag : int
        Beats between a systole and the RR interval paired with it (>= 0).

    Returns
    -------
    dict
        ``brs`` mean slope of accepted sequences (ms/mmHg, NaN if none);
        ``n_sequences``, ``n_up``, ``n_down`` accepted sequences; ``n_ramps`` SBP
        ramps (maximal runs of at least ``min_beats`` beats of SBP rising, or
        falling, by ``min_dsbp`` per step with the paired RR known); ``bei``
        baroreflex effectiveness index ``n_sequences / n_ramps`` (1; NaN without
        ramps).
    """
    sbp = np.asarray(sbp_mmhg, dtype=float)
    rr = np.asarray(rr_ms, dtype=float)
    if sbp.shape != rr.shape or sbp.ndim != 1:
        raise ValueError("sbp_mmhg and rr_ms must be 1-D arrays of the same length")
    if lag < 0:
        raise ValueError("lag must be >= 0")
    n = sbp.size - lag
    out = {"brs": np.nan, "n_sequences": 0, "n_up": 0, "n_down": 0, "n_ramps": 0, "bei": np.nan}
    if n < min_beats:
        return out
    x = sbp[:n]
    y = rr[lag : lag + n]
    dx, dy = np.diff(x), np.diff(y)  # NaN steps compare False everywhere
    known = np.isfinite(dy)
    min_steps = max(int(min_beats) - 1, 1)
    slopes = []
    n_ramps = 0
    counts = {}
    with np.errstate(invalid="ignore"):
        cases = {
            "up": (dx >= min_dsbp, dy >= min_drr),
            "down": (dx <= -min_dsbp, dy <= -min_drr),
        }
    for name, (ramp_step, rr_step) in cases.items():
        r0, r1 = _runs(ramp_step & known)
        n_ramps += int(np.count_nonzero(r1 - r0 >= min_steps))
        s0, s1 = _runs(ramp_step & rr_step)
        keep = s1 - s0 >= min_steps
        s0, s1 = s0[keep], s1[keep] + 1  # steps [s0, s1) -> beats [s0, s1 + 1)
        if s0.size == 0:
            counts[name] = 0
            continue
        # Per-sequence regression from cumulative sums (no loop over sequences).
        cx = np.r_[0.0, np.cumsum(np.nan_to_num(x))]
        cy = np.r_[0.0, np.cumsum(np.nan_to_num(y))]
        cxx = np.r_[0.0, np.cumsum(np.nan_to_num(x * x))]
        cyy = np.r_[0.0, np.cumsum(np.nan_to_num(y * y))]
        cxy = np.r_[0.0, np.cumsum(np.nan_to_num(x * y))]
        m = (s1 - s0).astype(float)
        sx, sy = cx[s1] - cx[s0], cy[s1] - cy[s0]
        sxx = cxx[s1] - cxx[s0] - sx * sx / m
        syy = cyy[s1] - cyy[s0] - sy * sy / m
        sxy = cxy[s1] - cxy[s0] - sx * sy / m
        r = sxy / np.sqrt(sxx * syy)
        ok = np.abs(r) >= min_r
        slopes.append((sxy / sxx)[ok])
        counts[name] = int(np.count_nonzero(ok))
    out["n_up"], out["n_down"] = counts["up"], counts["down"]
    out["n_sequences"] = out["n_up"] + out["n_down"]
    out["n_ramps"] = n_ramps
    if out["n_sequences"]:
        out["brs"] = float(np.mean(np.concatenate(slopes)))
    if n_ramps:
        out["bei"] = out["n_sequences"] / n_ramps
    return out


def baroreflex_transfer(
    t_s,
    sbp_mmhg,
    rr_ms,
    *,
    band=(0.04, 0.15),
    min_coherence=0.5,
    resample_hz=4.0,
    segment_s=None,
    lag=1,
) -> dict:
    """Baroreflex gain by cross-spectral transfer function analysis (SBP -> RR).

    SBP (at beat ``i``) and RR (``rr[i + lag]``, the interval the systole affects)
    are placed at the time of beat ``i``, resampled evenly by cubic spline, linearly
    detrended, and the transfer function ``H = P_sbp,rr / P_sbp,sbp`` is estimated by
    Welch's method (Hann windows, 50 % overlap). The gain ``|H|`` is averaged over
    the frequency bins of ``band`` whose squared coherence is at least
    ``min_coherence``.

    Parameters
    ----------
    t_s : array-like of float
        Beat times (s).
    sbp_mmhg : array-like of float
        Systolic pressure per beat (mmHg); NaN beats are left out.
    rr_ms : array-like of float
        RR interval ending at each beat (ms).
    band : tuple of float
        Frequency band (Hz), ``lo <= f <= hi``.
    min_coherence : float
        Minimum squared coherence of a bin.
    resample_hz : float
        Resampling rate (Hz).
    segment_s : float, optional
        Welch segment length (s). Default: a third of the record, at most 120 s and
        at least 30 s, so that at least 5 overlapping segments enter the estimate
        (coherence from too few segments is biased towards 1).
    lag : int
        Beats between a systole and the RR interval paired with it.

    Returns
    -------
    dict
        ``gain`` mean gain in qualifying bins (ms/mmHg, NaN if none); ``coherence``
        mean squared coherence over the band (1); ``n_bins`` number of qualifying
        bins; ``segment_s`` the segment length used (s).
    """
    t = np.asarray(t_s, dtype=float)
    sbp = np.asarray(sbp_mmhg, dtype=float)
    rr = np.asarray(rr_ms, dtype=float)
    out = {"gain": np.nan, "coherence": np.nan, "n_bins": 0, "segment_s": np.nan}
    n = t.size - lag
    if n < 8:
        return out
    t, x, y = t[:n], sbp[:n], rr[lag : lag + n]
    ok = np.isfinite(t) & np.isfinite(x) & np.isfinite(y)
    t, x, y = t[ok], x[ok], y[ok]
    if t.size < 8:
        return out
    duration = t[-1] - t[0]
    seg = segment_s if segment_s is not None else float(np.clip(duration / 3.0, 30.0, 120.0))
    nperseg = int(round(seg * resample_hz))
    grid = np.arange(t[0], t[-1], 1.0 / resample_hz)
    if grid.size < nperseg or nperseg < 8:
        return out
    xs = scipy.signal.detrend(scipy.interpolate.CubicSpline(t, x)(grid), type="linear")
    ys = scipy.signal.detrend(scipy.interpolate.CubicSpline(t, y)(grid), type="linear")
    kw = {"fs": resample_hz, "window": "hann", "nperseg": nperseg, "detrend": False}
    f, pxx = scipy.signal.welch(xs, **kw)
    _, pyy = scipy.signal.welch(ys, **kw)
    _, pxy = scipy.signal.csd(xs, ys, **kw)
    with np.errstate(invalid="ignore", divide="ignore"):
        coh = np.abs(pxy) ** 2 / (pxx * pyy)
        gain = np.abs(pxy) / pxx
    in_band = (f >= band[0]) & (f <= band[1])
    out["segment_s"] = nperseg / resample_hz
    if not in_band.any():
        return out
    out["coherence"] = float(np.mean(coh[in_band]))
    good = in_band & (coh >= min_coherence)
    out["n_bins"] = int(np.count_nonzero(good))
    if out["n_bins"]:
        out["gain"] = float(np.mean(gain[good]))
    return out
