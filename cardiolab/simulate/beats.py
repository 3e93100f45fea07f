"""Beat-to-beat cardiovascular series: RR intervals coupled to blood pressure.

Systolic pressure fluctuates with Mayer waves (about 0.1 Hz) and respiration; the
baroreflex turns each systolic change into a change of the RR interval that follows
it, with a stated gain (ms/mmHg). Respiratory sinus arrhythmia and the LF (0.1 Hz)
modulation of RR therefore arise through the reflex, as in the closed-loop models of
the short-term cardiovascular control, plus a small independent RR noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BeatSeries", "narrowband", "beat_series", "epoch_profile"]


@dataclass
class BeatSeries:
    """Per-beat truth of one session (all arrays of length ``n_beats``)."""

    t: np.ndarray  # R-peak times (s)
    sbp: np.ndarray  # target systolic pressure of the beat (mmHg)
    dbp: np.ndarray  # target pressure at the beat's foot (mmHg)
    ectopic: np.ndarray  # premature ventricular beat
    epoch: np.ndarray  # index of the protocol epoch (-1 outside any)
    #: phase (rad) of the respiratory SBP oscillation ``sin(2 pi f t + resp_phase)``
    resp_phase: float = 0.0


def narrowband(t, f_low, f_high, rng, n_components=8):
    """Unit-variance narrow-band noise: a sum of sinusoids with random phases.

    Parameters
    ----------
    t : numpy.ndarray
        Times (s).
    f_low, f_high : float
        Band edges (Hz); component frequencies are drawn uniformly inside.
    rng : numpy.random.Generator
    n_components : int

    Returns
    -------
    numpy.ndarray
        Same shape as ``t``; variance 1 over a long record.
    """
    freqs = rng.uniform(f_low, f_high, n_components)
    phases = rng.uniform(0, 2 * np.pi, n_components)
    amp = np.sqrt(2.0 / n_components)
    out = np.zeros_like(t, dtype=float)
    for f, p in zip(freqs, phases, strict=True):
        out += amp * np.sin(2 * np.pi * f * t + p)
    return out


def epoch_profile(t, epochs, values, transition_s=6.0):
    """A quantity that steps between epoch levels with a smooth transition.

    Parameters
    ----------
    t : numpy.ndarray
        Times (s).
    epochs : sequence of (label, start, stop)
        Protocol epochs, in time order.
    values : sequence of float
        Level in each epoch.
    transition_s : float
        Width of the logistic transition (s), centred ``transition_s`` after the
        start of each new epoch, as the orthostatic response builds over seconds.

    Returns
    -------
    numpy.ndarray
    """
    out = np.full_like(np.asarray(t, dtype=float), float(values[0]))
    for (_, start, _), prev, new in zip(epochs[1:], values[:-1], values[1:], strict=True):
        centre = start + transition_s
        w = 0.5 * (1.0 + np.tanh((t - centre) / (transition_s / 3.0)))
        out = out + (new - prev) * w
    return out


def _epoch_index(t, epochs):
    idx = np.full(t.shape, -1, dtype=np.int16)
    for i, (_, start, stop) in enumerate(epochs):
        idx[(t >= start) & (t < stop)] = i
    return idx


def beat_series(
    duration_s,
    epochs,
    hr,
    sbp,
    dbp,
    brs,
    rng,
    *,
    resp_rate_hz=0.25,
    mayer_sd=(3.0, 4.5),
    resp_sbp_sd=1.5,
    sbp_noise=0.4,
    rr_noise_ms=6.0,
    ectopic_rate=0.002,
    first_beat_s=0.35,
):
    """Generate R-peak times and per-beat pressures with baroreflex coupling.

    The RR interval that ends at beat ``i + 1`` is ``RR0 + G (SBP_i - SBP0) + e``:
    gain ``G`` (``brs``, ms/mmHg) at lag 1 in the beat-table convention where
    ``rr[i]`` is the interval ending at beat ``i``. ``RR0`` is set per epoch so that
    the mean of ``60 / RR`` over the epoch equals the target heart rate.

    Parameters
    ----------
    duration_s : float
        Session length (s).
    epochs : sequence of (label, start, stop)
    hr, sbp, dbp, brs : sequence of float
        Targets per epoch (bpm, mmHg, mmHg, ms/mmHg).
    rng : numpy.random.Generator
    resp_rate_hz : float
        Breathing frequency (Hz).
    mayer_sd : tuple of float
        SD of the 0.1 Hz SBP oscillation per epoch (mmHg).
    resp_sbp_sd, sbp_noise : float
        SD of the respiratory SBP oscillation and of beat noise (mmHg).
    rr_noise_ms : float
        SD of RR noise independent of pressure (ms).
    ectopic_rate : float
        Probability that a beat is a premature ventricular contraction (coupling
        interval 62 % of the preceding RR, full compensatory pause).
    first_beat_s : float
        Time of the first R-peak (s).

    Returns
    -------
    BeatSeries
    """
    n_ep = len(epochs)
    mayer_sd = np.resize(np.asarray(mayer_sd, dtype=float), n_ep)  # per epoch, cycled
    # Continuous drivers on a 20 Hz grid, evaluated at beat times by interpolation.
    grid = np.arange(0.0, duration_s + 5.0, 0.05)
    mayer = narrowband(grid, 0.08, 0.12, rng) * epoch_profile(grid, epochs, mayer_sd)
    resp_phase = rng.uniform(0, 2 * np.pi)
    resp = resp_sbp_sd * np.sqrt(2) * np.sin(2 * np.pi * resp_rate_hz * grid + resp_phase)
    dsbp_grid = mayer + resp
    hr_grid = epoch_profile(grid, epochs, hr)
    sbp_grid = epoch_profile(grid, epochs, sbp)
    dbp_grid = epoch_profile(grid, epochs, dbp)
    brs_grid = epoch_profile(grid, epochs, brs)

    n_max = int(duration_s * max(hr) / 60.0 * 1.3) + 10
    sbp_noise_b = rng.normal(0.0, sbp_noise, n_max)
    rr_noise_b = rng.normal(0.0, rr_noise_ms, n_max)
    scale = np.ones(n_ep)

    # Fixed-point passes: beat times -> pressures at those times -> RR -> beat times.
    t = first_beat_s + np.cumsum(np.r_[0.0, 60.0 / np.interp(np.zeros(n_max - 1), grid, hr_grid)])
    for _ in range(4):
        ds = np.interp(t, grid, dsbp_grid) + sbp_noise_b
        rr0 = 60000.0 / np.interp(t, grid, hr_grid)
        ep = np.clip(_epoch_index(t, epochs), 0, None)
        rr0 = rr0 * scale[ep]
        gain = np.interp(t, grid, brs_grid)
        rr_next = rr0 + gain * ds + rr_noise_b  # interval following beat i (ms)
        t = first_beat_s + np.r_[0.0, np.cumsum(rr_next[:-1]) / 1000.0]
        # Epoch-wise correction so that mean(60/RR) equals the target HR.
        rr = np.diff(t) * 1000.0
        ep_rr = _epoch_index(t[1:], epochs)
        for e in range(n_ep):
            sel = (ep_rr == e) & (t[1:] < duration_s)
            if sel.any():
                scale[e] *= np.mean(60000.0 / rr[sel]) / hr[e]

    keep = t < duration_s - 0.6
    t = t[keep]
    ds = ds[keep]
    s = np.interp(t, grid, sbp_grid) + ds
    d = (
        np.interp(t, grid, dbp_grid)
        + 0.5 * (ds - sbp_noise_b[: t.size])
        + rng.normal(0.0, 0.3, t.size)
    )

    ectopic = np.zeros(t.size, dtype=bool)
    if ectopic_rate > 0 and t.size > 4:
        cand = np.flatnonzero(rng.random(t.size) < ectopic_rate)
        cand = cand[(cand > 1) & (cand < t.size - 2)]
        cand = cand[np.r_[True, np.diff(cand) > 3]] if cand.size else cand
        if cand.size:
            ectopic[cand] = True
            t = t.copy()
            t[cand] = t[cand - 1] + 0.62 * (t[cand] - t[cand - 1])
            pp = s[cand] - d[cand]
            s[cand] = d[cand] + 0.6 * pp  # poorly filled premature beat
            s[cand + 1] = s[cand + 1] + 0.05 * (s[cand + 1] - d[cand + 1])  # potentiation
    return BeatSeries(
        t=t,
        sbp=s,
        dbp=d,
        ectopic=ectopic,
        epoch=_epoch_index(t, epochs),
        resp_phase=float(resp_phase),
    )
