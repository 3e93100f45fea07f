"""Numerical core of the QRS detector (numba; arrays in, arrays out).

A single fused pass computes, per sample, a band-passed ECG (difference of centred
moving averages), its squared slope and the moving-window integral of that energy,
as in Pan & Tompkins (1985); a second pass finds QRS complexes in the integral with
adaptive signal and noise levels and search-back for missed beats, and places each
R-peak on the largest deflection of the band-passed ECG inside the complex.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def qrs_energy(x, w_lp, w_hp, w_d, w_int):
    """Band-passed ECG and integrated slope energy, both aligned with ``x``.

    Parameters
    ----------
    x : 1-d float array
    w_lp : int
        Width of the low-pass moving average (samples).
    w_hp : int
        Width of the moving average subtracted as the high-pass (samples).
    w_d : int
        Lag of the slope (samples).
    w_int : int
        Width of the integration window (samples).

    Returns
    -------
    bp, m : float32 arrays
        Band-passed signal and integrated energy, centred (no delay).
    """
    n = x.size
    bp = np.zeros(n, np.float32)
    m = np.zeros(n, np.float32)
    # ring buffers for the running sums
    buf_x = np.zeros(w_lp, np.float64)
    buf_lp = np.zeros(w_hp, np.float64)
    buf_bp = np.zeros(w_d + 1, np.float64)
    buf_e = np.zeros(w_int, np.float64)
    s_x = 0.0
    s_lp = 0.0
    s_e = 0.0
    d_lp = (w_lp - 1) // 2
    d_hp = (w_hp - 1) // 2
    d_bp = d_lp + d_hp  # delay of the band-passed signal
    d_m = d_bp + w_d // 2 + (w_int - 1) // 2  # delay of the integral
    x0 = x[0]
    for i in range(n + d_m):
        xi = x[i] - x0 if i < n else x[n - 1] - x0
        j = i % w_lp
        s_x += xi - buf_x[j]
        buf_x[j] = xi
        lp = s_x / w_lp
        # the high-pass subtracts the moving average of the low-passed signal,
        # taken centred on the low-passed sample it is subtracted from
        k = i % w_hp
        old_lp = buf_lp[k]
        s_lp += lp - old_lp
        buf_lp[k] = lp
        centre = buf_lp[(i - d_hp) % w_hp] if i >= d_hp else lp
        b = centre - s_lp / w_hp
        q = i % (w_d + 1)
        slope = b - buf_bp[q]
        buf_bp[q] = b
        e = abs(slope)
        r = i % w_int
        s_e += e - buf_e[r]
        buf_e[r] = e
        ib = i - d_bp
        if 0 <= ib < n:
            bp[ib] = b
        im = i - d_m
        if 0 <= im < n:
            m[im] = s_e / w_int
    return bp, m


@numba.njit(cache=True, nogil=True)
def _argmax_abs(bp, lo, hi):
    best = lo
    val = -1.0
    for k in range(lo, hi):
        a = abs(bp[k])
        if a > val:
            val = a
            best = k
    return best


@numba.njit(cache=True, nogil=True)
def find_qrs(m, bp, fs, refractory_s, search_half_s, frac):
    """Adaptive-threshold QRS detection on the integrated energy ``m``.

    The signal level is the median height of the last 8 detected complexes (so that
    a run of large ectopic beats does not raise the threshold above the normal
    ones), the noise level a running mean of the largest energy between complexes.
    A stretch longer than 1.66 mean RR without a beat is searched again at half the
    threshold.

    Returns
    -------
    peaks : int64 array
        Sample indices of the R-peaks (largest deflection of ``bp``).
    """
    n = m.size
    out = np.empty(n // max(int(refractory_s * fs), 1) + 2, np.int64)
    nb = 0
    refr = int(refractory_s * fs)
    half = int(search_half_s * fs)
    init = min(n, int(2.0 * fs))
    if init < 2:
        return out[:0]
    mx = 0.0
    mean = 0.0
    for k in range(init):
        mean += m[k]
        if m[k] > mx:
            mx = m[k]
    mean /= init
    heights = np.full(8, 0.5 * mx)
    hpos = 0
    spk = 0.5 * mx
    npk = mean
    thr = npk + frac * (spk - npk)
    rr_avg = fs * 0.8  # samples
    last = -refr - 1
    last_h = 0.0
    searched = -1
    in_region = False
    reg_max = 0.0
    reg_arg = 0
    gap_max = 0.0
    i = -1
    while i < n - 1:
        i += 1
        v = m[i]
        if not in_region:
            if v > thr and i - last > refr:
                in_region = True
                reg_max = v
                reg_arg = i
                npk = 0.125 * gap_max + 0.875 * npk
                gap_max = 0.0
            else:
                # noise level: the gap's energy, leaving out the next complex's rising
                # edge (the last 2 * search_half before the crossing)
                j = i - 2 * half
                if j - last > refr and m[j] > gap_max:
                    gap_max = m[j]
                if nb > 0 and i - last > 1.66 * rr_avg and i - searched > 0.5 * rr_avg:
                    lo = max(last + refr, searched)
                    searched = i
                    best = lo
                    bv = 0.0
                    for k in range(lo, i):
                        if m[k] > bv:
                            bv = m[k]
                            best = k
                    if bv > 0.5 * thr and best - last > refr:
                        r = _argmax_abs(bp, max(best - half, 0), min(best + half + 1, n))
                        if r - last > refr:
                            out[nb] = r
                            nb += 1
                            rr_avg = 0.875 * rr_avg + 0.125 * (r - last)
                            last = r
                            last_h = bv
                            heights[hpos] = bv
                            hpos = (hpos + 1) % 8
                            spk = np.median(heights)
                            thr = npk + frac * (spk - npk)
                            gap_max = 0.0
                            # scan again from just after the recovered beat
                            searched = r
                            i = r + refr
        else:
            if v > reg_max:
                reg_max = v
                reg_arg = i
            if v < thr or i == n - 1:
                in_region = False
                r = _argmax_abs(bp, max(reg_arg - half, 0), min(reg_arg + half + 1, n))
                if r - last > refr:
                    if nb > 0:
                        rr = r - last
                        if rr < 2.5 * rr_avg:
                            rr_avg = 0.875 * rr_avg + 0.125 * rr
                    out[nb] = r
                    nb += 1
                    last = r
                    last_h = reg_max
                elif reg_max > last_h and nb > 0:
                    # a larger complex right after: it was the beat, not the first
                    out[nb - 1] = r
                    last = r
                    last_h = reg_max
                heights[hpos] = reg_max
                hpos = (hpos + 1) % 8
                spk = np.median(heights)
                thr = npk + frac * (spk - npk)
    return out[:nb]
