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

    One pass of running sums (no ring buffers, no modulo): a ``w_lp``-sample moving
    average (low-pass; 20 ms puts its first zero at 50 Hz), minus a centred
    ``w_hp``-sample moving average of that (high-pass: baseline wander, P and T
    waves), then the absolute slope over ``w_d`` samples and its centred
    ``w_int``-sample moving average.

    Parameters
    ----------
    x : 1-d float array
    w_lp, w_hp, w_d, w_int : int
        Window widths (samples); ``w_hp`` and ``w_int`` odd.

    Returns
    -------
    bp, m : float32 arrays
        Band-passed signal and integrated slope energy, centred (no delay).
    """
    n = x.size
    lp = np.empty(n, np.float32)
    bp = np.zeros(n, np.float32)
    m = np.zeros(n, np.float32)
    x0 = x[0]
    # 1. centred low-pass (x0-padded at the start, edge-held at the end)
    h_lp = (w_lp - 1) // 2
    inv = np.float32(1.0 / w_lp)
    acc = np.float32(0.0)
    for i in range(min(w_lp, n)):
        acc += x[i] - x0
        if i - h_lp >= 0:
            lp[i - h_lp] = acc * inv
    for i in range(w_lp, n):
        acc += x[i] - x[i - w_lp]
        lp[i - h_lp] = acc * inv
    last = x[n - 1] - x0
    for i in range(n, n + h_lp):
        k = i - w_lp
        acc += last - (x[k] - x0 if k >= 0 else 0.0)
        if i - h_lp >= 0:
            lp[i - h_lp] = acc * inv
    # 2. centred high-pass: lp minus its centred w_hp-sample mean (edges: the mean of
    #    what is there)
    h = w_hp // 2
    acc = np.float32(0.0)
    for k in range(min(h, n)):
        acc += lp[k]
    inv = np.float32(1.0 / w_hp)
    for j in range(n):
        k = j + h
        if k < n:
            acc += lp[k]
        k = j - h - 1
        if k >= 0:
            acc -= lp[k]
        if j >= h and j + h < n:
            bp[j] = lp[j] - acc * inv
        else:
            count = min(j + h, n - 1) - max(j - h, 0) + 1
            bp[j] = lp[j] - acc / count
    # 3. centred moving average of the absolute slope |bp[k] - bp[k - w_d]|
    h_int = w_int // 2
    inv = np.float32(1.0 / w_int)
    acc = np.float32(0.0)
    start = w_d + w_int
    for i in range(min(start, n)):
        if i >= w_d:
            acc += abs(bp[i] - bp[i - w_d])
        k = i - w_int
        if k >= w_d:
            acc -= abs(bp[k] - bp[k - w_d])
        if i - h_int >= 0:
            m[i - h_int] = acc * inv
    for i in range(start, n):
        acc += abs(bp[i] - bp[i - w_d]) - abs(bp[i - w_int] - bp[i - w_int - w_d])
        m[i - h_int] = acc * inv
    for i in range(n, n + h_int):
        k = i - w_int
        if k >= w_d:
            acc -= abs(bp[k] - bp[k - w_d])
        if i - h_int >= 0:
            m[i - h_int] = acc * inv
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


@numba.njit(cache=True, nogil=True)
def any_nonfinite(x):
    """Whether ``x`` holds a NaN or an infinity (one pass, stops at the first)."""
    for i in range(x.size):
        if not np.isfinite(x[i]):
            return True
    return False


@numba.njit(cache=True, nogil=True)
def refine_peaks(x, peaks, bp, w):
    """Move each peak to the largest deflection of ``x`` (with the polarity of ``bp``
    there) from the mean of its +-``w``-sample neighbourhood; drop duplicates."""
    n = x.size
    out = np.empty(peaks.size, np.int64)
    k = 0
    for p in peaks:
        lo = max(p - w, 0)
        hi = min(p + w + 1, n)
        base = 0.0
        for j in range(lo, hi):
            base += x[j]
        base /= hi - lo
        sign = 1.0 if bp[p] >= 0 else -1.0
        best = lo
        val = -np.inf
        for j in range(lo, hi):
            v = sign * (x[j] - base)
            if v > val:
                val = v
                best = j
        if k == 0 or best > out[k - 1]:
            out[k] = best
            k += 1
    return out[:k]
