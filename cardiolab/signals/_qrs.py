"""Numerical core of the QRS detector (numba; arrays in, arrays out).

:func:`live_segments` splits the ECG at non-informative stretches (NaN, or a flat line:
lead off, zero padding, a clipped plateau). :func:`qrs_energy` computes, segment by
segment and at a reduced rate, a band-passed ECG (difference of centred moving
averages) and the moving-window integral of its absolute slope, as in Pan & Tompkins
(1985). :func:`find_qrs` finds QRS complexes in that integral with adaptive signal and
noise levels, search-back for missed beats, T-wave discrimination by the slope of the
full-rate ECG (:func:`max_slope`), a learning phase that restarts after a long
non-informative stretch, and levels learned again when no beat is found for seconds;
:func:`place_peaks` puts each complex's fiducial point on the largest deflection of a
wider-band ECG computed around it only, and :func:`refine_peaks` moves it to the raw
ECG. The algorithm and its sources are described in :mod:`cardiolab.signals.ecg`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def live_segments(x, min_flat):
    """Stretches of ``x`` that carry signal.

    A sample is dead if it is not finite, or if it belongs to a run of at least
    ``min_flat`` equal values (a flat line: electrodes off, zero padding, a clipped
    plateau). One pass.

    Parameters
    ----------
    x : 1-d float array
    min_flat : int
        Shortest run of equal samples counted as a flat line (samples, >= 2).

    Returns
    -------
    starts, ends : int64 arrays
        Live segments ``[starts[k], ends[k])``, increasing; empty if all is dead.
    """
    n = x.size
    # fast path: every run of >= min_flat equal samples holds a whole aligned block of
    # min_flat // 2 (whose ends are then equal); if no block is flat and the sum is
    # finite (NaN and inf propagate), all is live
    blk = max(min_flat // 2, 1)
    suspect = False
    for b0 in range(0, n - blk + 1, blk):
        if x[b0] == x[b0 + blk - 1]:
            v = x[b0]
            flat = True
            for k in range(b0 + 1, b0 + blk - 1):
                if x[k] != v:
                    flat = False
                    break
            if flat:
                suspect = True
                break
    if not suspect:
        total = np.float32(0.0)
        for k in range(n):
            total += x[k]
        if np.isfinite(total):
            s = np.zeros(1, np.int64)
            e = np.full(1, n, np.int64)
            return s, e
    starts = []
    ends = []
    live0 = 0  # start of the current live stretch
    i = 0
    while i < n:
        v = x[i]
        if not np.isfinite(v):
            j = i + 1
            while j < n and not np.isfinite(x[j]):
                j += 1
        else:
            j = i + 1
            while j < n and x[j] == v:
                j += 1
            if j - i < min_flat:
                i = j
                continue
        # dead run [i, j)
        if i > live0:
            starts.append(live0)
            ends.append(i)
        live0 = j
        i = j
    if n > live0:
        starts.append(live0)
        ends.append(n)
    s = np.empty(len(starts), np.int64)
    e = np.empty(len(starts), np.int64)
    for k in range(len(starts)):
        s[k] = starts[k]
        e[k] = ends[k]
    return s, e


@numba.njit(cache=True, nogil=True, fastmath=True)
def qrs_energy(x, a, b, q, n_lp, w_hp, w_d, w_int, bp, m):
    """Band-passed ECG and integrated slope energy of ``x[a:b]``, every ``q``-th sample.

    Writes ``bp[j]`` and ``m[j]`` for the reduced-rate samples ``j`` with
    ``a <= j * q < b``: the mean of ``x`` over ``n_lp`` consecutive blocks of ``q``
    samples centred on ``j * q`` (a moving-average low-pass that also keeps aliasing
    out of the reduced rate), minus a centred ``w_hp``-sample moving average of that
    (high-pass: baseline wander, P and T waves), then the absolute slope over ``w_d``
    samples and its centred ``w_int``-sample moving average. Moving averages are
    differences of prefix sums (float64) and take the mean of what is there at the
    segment's edges: no signal is read outside it, so a flat or NaN neighbour leaves
    no step.

    Parameters
    ----------
    x : 1-d float32 array
        ECG at the full rate.
    a, b : int
        Segment ``[a, b)`` of ``x``.
    q : int
        Rate reduction (>= 1).
    n_lp : int
        Low-pass width in blocks of ``q`` samples (odd).
    w_hp, w_d, w_int : int
        High-pass, slope and integration widths, reduced-rate samples (``w_hp`` and
        ``w_int`` odd).
    bp, m : float32 arrays
        Outputs at the reduced rate (written in place).
    """
    ja = (a + q - 1) // q
    jb = (b + q - 1) // q
    n = jb - ja
    if n <= 0:
        return
    lp = np.empty(n, np.float32)
    c = np.empty(n + 1, np.float64)
    # 1. prefix sums of the blocks of q samples centred on j * q (the first and last
    #    clipped to the segment), then their centred n_lp-block means
    h_q = (q - 1) // 2
    o = ja * q - h_q  # first sample of block 0
    c[0] = 0.0
    blk = np.float32(0.0)
    for k in range(max(o, a), min(o + q, b)):
        blk += x[k]
    acc = np.float64(blk)
    c[1] = acc
    for j in range(1, n - 1):
        k0 = o + j * q
        blk = np.float32(0.0)
        for k in range(q):
            blk += x[k0 + k]
        acc += blk
        c[j + 1] = acc
    if n > 1:
        blk = np.float32(0.0)
        for k in range(o + (n - 1) * q, min(o + n * q, b)):
            blk += x[k]
        c[n] = acc + blk
    h = n_lp // 2
    inv = 1.0 / (n_lp * q)
    for j in range(n):
        if h < j < n - h - 1:  # whole blocks only
            lp[j] = np.float32((c[j + h + 1] - c[j - h]) * inv)
        else:
            lo = max(j - h, 0)
            hi = min(j + h + 1, n)
            count = min(o + hi * q, b) - max(o + lo * q, a)
            lp[j] = np.float32((c[hi] - c[lo]) / count)
    # 2. centred high-pass: lp minus its centred w_hp-sample mean
    acc = 0.0
    for j in range(n):
        acc += lp[j]
        c[j + 1] = acc
    h = w_hp // 2
    inv = 1.0 / w_hp
    for j in range(n):
        if h <= j < n - h:
            bp[ja + j] = lp[j] - np.float32((c[j + h + 1] - c[j - h]) * inv)
        else:
            lo = max(j - h, 0)
            hi = min(j + h + 1, n)
            bp[ja + j] = lp[j] - np.float32((c[hi] - c[lo]) / (hi - lo))
    # 3. centred moving average (divided by w_int throughout) of the absolute slope
    #    |bp[k] - bp[k - w_d]| (0 for the first w_d samples); > 0 where live
    for j in range(min(w_d, n) + 1):
        c[j] = 0.0
    acc = 0.0
    for j in range(w_d, n):
        acc += abs(bp[ja + j] - bp[ja + j - w_d])
        c[j + 1] = acc
    h = w_int // 2
    inv = 1.0 / w_int
    tiny = np.float32(1e-30)
    for j in range(n):
        if h <= j < n - h:
            m[ja + j] = max(np.float32((c[j + h + 1] - c[j - h]) * inv), tiny)
        else:
            lo = max(j - h, 0)
            hi = min(j + h + 1, n)
            m[ja + j] = max(np.float32((c[hi] - c[lo]) * inv), tiny)


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
def _levels(m, lo, hi):
    """Signal level (half the largest energy) and noise level (mean energy) learned
    from the live (``m > 0``) samples of ``m[lo:hi]``; (0, 0) if none is live."""
    mx = 0.0
    s = 0.0
    c = 0
    for k in range(lo, hi):
        v = m[k]
        if v > 0:
            s += v
            c += 1
            if v > mx:
                mx = v
    return 0.5 * mx, (s / c if c > 0 else 0.0)


@numba.njit(cache=True, nogil=True)
def _level(heights, rank, scratch):
    """The signal level: the height of rank ``rank`` (0 is the smallest; the median
    for ``rank >= (size - 1) // 2``). Sorts into ``scratch`` (insertion sort of a few
    values, no allocation)."""
    k = heights.size
    for i in range(k):
        v = heights[i]
        j = i
        while j > 0 and scratch[j - 1] > v:
            scratch[j] = scratch[j - 1]
            j -= 1
        scratch[j] = v
    if 2 * rank + 1 >= k:
        return 0.5 * (scratch[(k - 1) // 2] + scratch[k // 2])
    return scratch[rank]


@numba.njit(cache=True, nogil=True)
def _max(m, lo, hi):
    mx = -1.0
    for k in range(lo, hi):
        if m[k] > mx:
            mx = m[k]
    return mx


@numba.njit(cache=True, nogil=True)
def max_slope(x, c, q, half, w):
    """Largest absolute slope of the full-rate ECG ``x`` around a complex: the largest
    ``|x[k] - x[k - w]|`` (``w`` full-rate samples) for ``k`` within ``half`` reduced-rate
    samples of the reduced-rate sample ``c`` (the block centred on ``c * q``); pairs with
    a non-finite sample are skipped; 0 if none is left."""
    lo = max((c - half) * q, w)
    hi = min((c + half) * q + 1, x.size)
    best = 0.0
    for k in range(lo, hi):
        d = abs(x[k] - x[k - w])
        if d > best:  # False for NaN
            best = d
    return best


@numba.njit(cache=True, nogil=True)
def _qrs_slope(slopes, s_n, s_last, scratch):
    """The QRS slope a T wave is compared with: the last beat's (Pan & Tompkins), at
    most the median of the last ``s_n`` (<= 8) beats' slopes (order statistics of the
    last 8 beats as in Hamilton & Tompkins 1986), so that a steep artefact taken as a
    beat cannot make the next true beat a T wave."""
    return min(slopes[s_last], _level(slopes[:s_n], 8, scratch))


@numba.njit(cache=True, nogil=True)
def _qrs_before(m, x, q, half, w, lo, hi, level, min_slope):
    """The highest energy peak (local maximum) in ``m[lo:hi]`` above ``level`` whose
    slope (:func:`max_slope`) exceeds ``min_slope``: (its index, its slope), or (-1, 0)."""
    kb = -1
    sb = 0.0
    bv = level
    for k in range(max(lo, 1), min(hi, m.size - 1)):
        if m[k] > bv and m[k] >= m[k - 1] and m[k] >= m[k + 1]:
            sk = max_slope(x, k, q, half, w)
            if sk > min_slope:
                bv = m[k]
                kb = k
                sb = sk
    return kb, sb


@numba.njit(cache=True, nogil=True)
def find_qrs(
    m,
    bp,
    x,
    q,
    learn_at,
    fs,
    refractory_s,
    search_half_s,
    frac,
    learn_s,
    relearn_after_s,
    max_qrs_s,
    rank,
    replace_ratio,
    t_wave_s,
    t_wave_slope_ratio,
    slope_w,
):
    """Adaptive-threshold QRS detection on the integrated energy ``m``.

    The threshold lies a fraction ``frac`` of the way from the noise level (a running
    mean of the largest energy between complexes, the rising edge of the next one left
    out) to the signal level (the height of rank ``rank`` among the last 8 complexes,
    so that a run of large ectopic or artefact complexes does not raise it above the
    normal ones), as in Pan & Tompkins (1985) and Hamilton & Tompkins (1986). A
    stretch longer than 1.66 mean RR without a beat is searched again for its highest
    energy peak (local maximum) above half the threshold. Within the refractory period
    a complex ``replace_ratio`` times larger than the last beat replaces it (OSEA's
    200-ms peak hold).

    *T waves* (Pan & Tompkins 1985): a complex within ``t_wave_s`` of the last beat
    whose largest slope (:func:`max_slope` of the full-rate ECG over ``slope_w``
    samples) is less than ``t_wave_slope_ratio`` times the last beat's is a T wave,
    neither a beat nor a signal height; the last beat's slope counts at most as the
    median slope of the last 8 beats (Hamilton & Tompkins' order statistics), so that
    a steep artefact taken as a beat cannot make the next true beat a T wave.
    Search-back skips such peaks as well. The same test, read backwards, keeps a small
    QRS whose T wave crosses the threshold when it does not: a beat found later than
    ``t_wave_s`` after the last one, preceded within ``t_wave_s`` by an energy peak
    above half the threshold (the search-back level) with more than
    ``1 / t_wave_slope_ratio`` times its slope, is that earlier peak's T wave, and the
    earlier peak is the beat.

    Levels are learned (signal: half the largest energy, noise: the mean energy) from
    the ``learn_s`` after each index of ``learn_at`` (the first live sample, and the
    end of each long flat or NaN stretch); the detection starts there. A gap between
    complexes that is all dead (``m == 0``) does not feed the noise level. When no
    beat has been found for ``relearn_after_s`` (or 2.5 mean RR if longer), the levels
    are learned again from the last ``learn_s`` and that stretch is scanned again, so
    that a burst of giant artefact complexes cannot hold the threshold above the beats
    that follow it (the 8-s threshold reset of Hamilton's OSEA detector, on a shorter
    scale). A complex ends after ``max_qrs_s`` at most, so that a threshold below a
    noisy stretch cannot merge it into one complex.

    The scan skips from one threshold crossing or event (search-back, re-learning) to
    the next; the noise level's gap maxima are taken when a gap ends.

    Parameters
    ----------
    m, bp : float32 arrays
        Integrated slope energy (0 where the ECG is dead) and band-passed ECG.
    x : 1-d float32 array
        ECG at the full rate (for the slopes of the T-wave test).
    q : int
        Rate reduction of ``m`` and ``bp`` (:func:`qrs_energy`).
    learn_at : int64 array
        Indices where the levels are (re)learned, increasing.
    fs : float
        Rate of ``m`` (Hz).
    refractory_s, search_half_s, frac, learn_s, relearn_after_s, max_qrs_s : float
        See :data:`cardiolab.signals.ecg.QRS_PARAMETERS`.
    rank : int
        Signal-level rank among the last 8 heights (0: the smallest; >= 3: median).
    replace_ratio : float
        Replacement ratio within the refractory period (0: no replacement).
    t_wave_s, t_wave_slope_ratio : float
        T-wave window (s) and slope ratio (0: no T-wave test).
    slope_w : int
        Slope span for the T-wave test (full-rate samples, >= 1).

    Returns
    -------
    peaks : int64 array
        Largest deflection of ``bp`` in each complex (used for the refractory period
        and the RR intervals of the detection).
    centres : int64 array
        Energy peak of each complex (where :func:`place_peaks` looks for its fiducial
        point).
    """
    n = m.size
    refr = int(refractory_s * fs)
    half = max(int(search_half_s * fs), 1)
    out = np.empty(n // max(refr, 1) + 2, np.int64)
    ctr = np.empty_like(out)
    nb = 0
    n_learn = max(int(learn_s * fs), 1)
    relearn_after = relearn_after_s * fs
    max_qrs = max(int(max_qrs_s * fs), 1)
    heights = np.zeros(8)
    scratch = np.empty(8)
    hpos = 0
    spk = 0.0
    npk = 0.0
    thr = np.inf
    rr_avg = fs * 0.8
    last = -refr - 1
    origin = 0
    have = False
    last_h = 0.0
    searched = -1
    gap_start = 0
    k_learn = 0
    replace = replace_ratio > 0
    t_wave = int(t_wave_s * fs)
    t_test = t_wave_slope_ratio > 0
    slopes = np.zeros(8)  # largest slopes of the last 8 beats (ring buffer)
    s_n = 0
    s_last = 0
    i = 0
    while i < n:
        relearn = -1
        if k_learn < learn_at.size and i >= learn_at[k_learn]:
            relearn = i
            spk, npk = _levels(m, i, min(n, i + n_learn))
            k_learn += 1
        elif i - max(last, origin) > max(relearn_after, 2.5 * rr_avg):
            # no beat for too long: learn from the last learn_s and scan it again
            spk, npk = _levels(m, max(i - n_learn, 0), i)
            relearn = max(i - n_learn, last + refr + 1, 0)
            origin = i
        if relearn >= 0:
            heights[:] = spk
            thr = npk + frac * (spk - npk) if spk > 0 else np.inf
            if relearn == i:
                origin = i
                last = i - refr - 1
                have = False
                s_n = 0
                rr_avg = fs * 0.8
            i = relearn
            searched = i
            gap_start = i
        # skip to the next threshold crossing (outside the refractory period) or event
        stop = n
        if k_learn < learn_at.size and learn_at[k_learn] < stop:
            stop = learn_at[k_learn]
        t = int(max(last, origin) + max(relearn_after, 2.5 * rr_avg)) + 1
        if t < stop:
            stop = max(t, i)
        if have:
            t = int(max(last + 1.66 * rr_avg, searched + 0.5 * rr_avg)) + 1
            if t < stop:
                stop = max(t, i)
        if not replace and i <= last + refr:
            i = min(last + refr + 1, stop)
        while i < stop and not m[i] > thr:
            i += 1
        if i >= n:
            break
        if i < stop:
            refractory = i <= last + refr
            if not refractory:
                # a complex starts at i: the gap before it feeds the noise level
                lo = max(gap_start, last + refr + 1, 0)
                hi = i - 2 * half
                if hi <= lo:
                    npk = 0.875 * npk
                else:
                    g = _max(m, lo, hi)
                    if g > 0:
                        npk = 0.125 * g + 0.875 * npk
            cross = i
            reg_max = m[i]
            reg_arg = i
            end = min(n, i + max_qrs)
            i += 1
            while i < end and not m[i] < thr:
                if m[i] > reg_max:
                    reg_max = m[i]
                    reg_arg = i
                i += 1
            gap_start = i
            r = _argmax_abs(bp, max(reg_arg - half, 0), min(reg_arg + half + 1, n))
            if refractory:
                if have and reg_max > replace_ratio * last_h and r - last > half:
                    # a larger complex inside the refractory period: it was the beat
                    out[nb - 1] = r
                    ctr[nb - 1] = reg_arg
                    last = r
                    last_h = reg_max
                    slopes[s_last] = max_slope(x, reg_arg, q, half, slope_w)
                continue
            sl = max_slope(x, reg_arg, q, half, slope_w)
            if have and s_n > 0 and refr < r - last <= t_wave:
                if sl < t_wave_slope_ratio * _qrs_slope(slopes, s_n, s_last, scratch):
                    # a T wave (Pan & Tompkins): no beat, no signal height
                    continue
            if t_test and r - last > t_wave:
                # is the candidate the T wave of a smaller QRS just before it?
                kb, sk = _qrs_before(
                    m,
                    x,
                    q,
                    half,
                    slope_w,
                    max(last + refr + 1, reg_arg - t_wave),
                    cross,
                    0.5 * thr,
                    sl / t_wave_slope_ratio,
                )
                if kb >= 0:
                    r2 = _argmax_abs(bp, max(kb - half, 0), min(kb + half + 1, n))
                    if r2 - last > refr:
                        r = r2
                        reg_arg = kb
                        reg_max = m[kb]
                        sl = sk
            if r - last > refr:
                if have:
                    rr = r - last
                    if rr < 2.5 * rr_avg:
                        rr_avg = 0.875 * rr_avg + 0.125 * rr
                out[nb] = r
                ctr[nb] = reg_arg
                nb += 1
                last = r
                last_h = reg_max
                have = True
                s_last = (s_last + 1) % 8 if s_n > 0 else 0
                slopes[s_last] = sl
                s_n = min(s_n + 1, 8)
            elif reg_max > last_h and have:
                # a larger complex right after: it was the beat, not the first
                out[nb - 1] = r
                ctr[nb - 1] = reg_arg
                last = r
                last_h = reg_max
                slopes[s_last] = sl
            heights[hpos] = reg_max
            hpos = (hpos + 1) % 8
            spk = _level(heights, rank, scratch)
            thr = npk + frac * (spk - npk)
            continue
        # an event at i (stop): search-back if due
        if have and i - last > 1.66 * rr_avg and i - searched > 0.5 * rr_avg:
            lo = max(last + refr, searched)
            searched = i
            # the highest peak (local maximum: not the rising edge of the complex
            # that may start at i)
            best = lo
            bv = 0.0
            for k in range(max(lo, 1), min(i, n - 1)):
                if m[k] > bv and m[k] >= m[k - 1] and m[k] >= m[k + 1]:
                    if s_n > 0 and k - last <= t_wave:
                        sk = max_slope(x, k, q, half, slope_w)
                        if sk < t_wave_slope_ratio * _qrs_slope(slopes, s_n, s_last, scratch):
                            continue
                    bv = m[k]
                    best = k
            if bv > 0.5 * thr and best - last > refr:
                if t_test:
                    # is it the T wave of a smaller QRS just before it?
                    kb, sk = _qrs_before(
                        m,
                        x,
                        q,
                        half,
                        slope_w,
                        max(lo, best - t_wave),
                        best,
                        0.5 * thr,
                        max_slope(x, best, q, half, slope_w) / t_wave_slope_ratio,
                    )
                    if kb >= 0:
                        best = kb
                        bv = m[kb]
                r = _argmax_abs(bp, max(best - half, 0), min(best + half + 1, n))
                if r - last > refr:
                    out[nb] = r
                    ctr[nb] = best
                    nb += 1
                    rr_avg = 0.875 * rr_avg + 0.125 * (r - last)
                    last = r
                    last_h = bv
                    s_last = (s_last + 1) % 8 if s_n > 0 else 0
                    slopes[s_last] = max_slope(x, best, q, half, slope_w)
                    s_n = min(s_n + 1, 8)
                    heights[hpos] = bv
                    hpos = (hpos + 1) % 8
                    spk = _level(heights, rank, scratch)
                    thr = npk + frac * (spk - npk)
                    # scan again from just after the recovered beat
                    searched = r
                    i = r + refr
                    gap_start = i + 1
                    continue
        if i == stop and not (k_learn < learn_at.size and i >= learn_at[k_learn]):
            if not (i - max(last, origin) > max(relearn_after, 2.5 * rr_avg)):
                i += 1
    return out[:nb], ctr[:nb]


@numba.njit(cache=True, nogil=True, fastmath=True)
def place_peaks(x, centres, starts, ends, q, back, ahead, w_lp, w_base):
    """Fiducial points: the largest deflection of a wide-band ECG near each complex.

    Around each complex's energy peak ``centres[k]`` (a reduced-rate sample of
    :func:`qrs_energy`: the block of ``q`` ECG samples centred on ``centres[k] * q``),
    at the block centres ``t = j * q`` with ``-back <= j - centres[k] <= ahead``, the
    wide-band ECG is the centred ``w_lp``-sample moving average of ``x`` minus its
    centred ``w_base``-sample moving average (a difference of moving averages, as in
    :func:`qrs_energy` but in a wider band, computed only there; the mean of what is
    there at the live segment's edges). The fiducial point is the block centre where it
    is largest in absolute value.

    Parameters
    ----------
    x : 1-d float32 array
        ECG at the full rate.
    centres : int64 array
        Reduced-rate samples, increasing, each inside a live segment.
    starts, ends : int64 arrays
        Live segments ``[starts[s], ends[s])`` of ``x`` (:func:`live_segments`).
    q : int
        Rate reduction (>= 1).
    back, ahead : int
        Search before and after the energy peak (reduced-rate samples).
    w_lp, w_base : int
        Low-pass and baseline widths (full-rate samples, odd).

    Returns
    -------
    peaks : int64 array
        Fiducial points, full-rate samples, same size as ``centres``.
    sign : float64 array
        Polarity (+1 or -1) of the wide-band ECG there.
    """
    nc = centres.size
    peaks = np.empty(nc, np.int64)
    sign = np.empty(nc, np.float64)
    h_lp = w_lp // 2
    h_b = w_base // 2
    inv_lp = np.float32(1.0 / w_lp)
    inv_b = np.float32(1.0 / w_base)
    v = np.empty(back + ahead + 1, np.float32)
    seg = 0
    for k in range(nc):
        c = centres[k]
        while seg < starts.size - 1 and c * q >= ends[seg]:
            seg += 1
        a = starts[seg]
        b = ends[seg]
        j0 = max(c - back, (a + q - 1) // q)
        j1 = min(c + ahead + 1, (b + q - 1) // q)
        lo = j0 * q - max(h_b, h_lp)
        hi = (j1 - 1) * q + max(h_b, h_lp) + 1
        if a <= lo and hi <= b:
            # all within the segment: running baseline, one add per step
            t = j0 * q
            base = np.float32(0.0)
            for i in range(t - h_b, t + h_b + 1):
                base += x[i]
            for j in range(j0, j1):
                t = j * q
                if j > j0:
                    d = np.float32(0.0)
                    for i in range(q):
                        d += x[t + h_b - i] - x[t - h_b - 1 - i]
                    base += d
                s = np.float32(0.0)
                for i in range(t - h_lp, t + h_lp + 1):
                    s += x[i]
                v[j - j0] = s * inv_lp - base * inv_b
        else:
            # near a segment's edge: the mean of what is there
            for j in range(j0, j1):
                t = j * q
                l0 = max(t - h_lp, a)
                l1 = min(t + h_lp + 1, b)
                s = np.float32(0.0)
                for i in range(l0, l1):
                    s += x[i]
                b0 = max(t - h_b, a)
                b1 = min(t + h_b + 1, b)
                base = np.float32(0.0)
                for i in range(b0, b1):
                    base += x[i]
                v[j - j0] = s / (l1 - l0) - base / (b1 - b0)
        best = 0
        for j in range(1, j1 - j0):
            if abs(v[j]) > abs(v[best]):
                best = j
        peaks[k] = (j0 + best) * q
        sign[k] = 1.0 if v[best] >= 0 else -1.0
    return peaks, sign


@numba.njit(cache=True, nogil=True)
def refine_peaks(x, peaks, sign, w):
    """R-peaks on the raw ECG.

    Each fiducial point ``peaks[k]`` moves to the largest deflection of ``x`` with the
    polarity ``sign[k]`` from the mean of its ``+-w``-sample neighbourhood; duplicates
    are dropped, and so are peaks whose neighbourhood is not finite.
    """
    n = x.size
    out = np.empty(peaks.size, np.int64)
    k = 0
    for i in range(peaks.size):
        c = peaks[i]
        lo = max(c - w, 0)
        hi = min(c + w + 1, n)
        base = 0.0
        cnt = 0
        for j in range(lo, hi):
            if np.isfinite(x[j]):
                base += x[j]
                cnt += 1
        if cnt == 0:
            continue
        base /= cnt
        best = -1
        val = -np.inf
        for j in range(lo, hi):
            v = sign[i] * (x[j] - base)
            if v > val:  # False for NaN
                val = v
                best = j
        if best >= 0 and (k == 0 or best > out[k - 1]):
            out[k] = best
            k += 1
    return out[:k]
