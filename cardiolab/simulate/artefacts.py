"""Recording imperfections: Physiocal gaps, motion artefacts and signal dropouts.

Each function returns the intervals it chose, so that the truth can flag the beats
they touch; :func:`apply_intervals` writes them into a signal.
"""

from __future__ import annotations

import numpy as np

__all__ = ["physiocal_gaps", "random_intervals", "apply_motion", "apply_dropout", "overlaps"]

#: Beats between Finapres Physiocal calibrations: frequent at first, then spaced out.
PHYSIOCAL_SCHEDULE = (10, 10, 15, 20, 30, 40, 50, 70)


def physiocal_gaps(feet, rng, *, duration_s=(2.0, 2.8)):
    """Calibration gaps of a finger-pressure monitor, placed on beat onsets (s)."""
    gaps = []
    k = 0
    step = 0
    while True:
        k += PHYSIOCAL_SCHEDULE[min(step, len(PHYSIOCAL_SCHEDULE) - 1)]
        step += 1
        if k >= feet.size - 2:
            break
        start = feet[k] + 0.05
        gaps.append((start, start + rng.uniform(*duration_s)))
    return np.asarray(gaps, dtype=float).reshape(-1, 2)


def random_intervals(total_s, rate_per_hour, duration_s, rng, *, margin_s=2.0):
    """Poisson-placed intervals of random length (s)."""
    n = rng.poisson(rate_per_hour * total_s / 3600.0)
    if n == 0 or total_s <= 2 * margin_s + duration_s[1]:
        return np.zeros((0, 2))
    starts = np.sort(rng.uniform(margin_s, total_s - margin_s - duration_s[1], n))
    lengths = rng.uniform(*duration_s, n)
    return np.c_[starts, starts + lengths]


def _mask(n, fs, intervals):
    t = np.arange(n) / fs
    mask = np.zeros(n, dtype=bool)
    for a, b in intervals:
        mask[int(np.ceil(a * fs)) : int(np.ceil(b * fs))] = True
    return mask, t


def apply_motion(signal, fs, intervals, amplitude, rng):
    """Add motion artefacts: a baseline excursion plus 2-8 Hz shaking, in place units."""
    out = np.array(signal, dtype=float, copy=True)
    for a, b in intervals:
        i0, i1 = int(a * fs), min(int(b * fs), out.size)
        if i1 <= i0:
            continue
        tt = np.arange(i1 - i0) / fs
        env = np.sin(np.pi * tt / max(tt[-1], 1.0 / fs)) ** 2
        f = rng.uniform(2.0, 8.0)
        shake = np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
        out[i0:i1] += amplitude * env * (rng.uniform(0.5, 1.0) * shake + rng.uniform(-1, 1))
    return out


def apply_dropout(signal, fs, intervals):
    """Signal loss: the device holds its last value over each interval."""
    out = np.array(signal, dtype=float, copy=True)
    for a, b in intervals:
        i0, i1 = int(a * fs), min(int(b * fs), out.size)
        if i1 > i0:
            out[i0:i1] = out[max(i0 - 1, 0)]
    return out


def overlaps(starts, stops, intervals):
    """Which ``[start, stop)`` spans touch any of ``intervals``."""
    hit = np.zeros(np.size(starts), dtype=bool)
    for a, b in intervals:
        hit |= (starts < b) & (stops > a)
    return hit
