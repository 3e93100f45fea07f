"""Waveforms synthesised from beat series: ECG, finger pressure, Doppler, LDF flux.

Everything is vectorised over samples and beats (no per-sample Python loops).

* ECG: each beat is a sum of Gaussian waves (P, Q, R, S, T), as in McSharry et al.
  (2003, ECGSYN), with the QT interval following Bazett's RR dependence; premature
  ventricular beats have a wide QRS, no P wave and an inverted T wave.
* Arterial pressure and Doppler velocity: each beat is a pulse template on the beat's
  normalised phase, scaled between its diastolic (or end-diastolic) level and its
  systolic (or peak systolic) level, so the per-beat extremes are known exactly.
* LDF: mean flux plus band-limited vasomotion in the standard bands, respiratory and
  cardiac components.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from ..features.microcirculation import LDF_BANDS  # one definition of the bands

__all__ = [
    "ECG_WAVES",
    "ecg_waveform",
    "pulse_template",
    "pulse_waveform",
    "pressure_pulse_areas",
    "TEMPLATE_NOTCH_PHASE",
    "LDF_BANDS",
    "ldf_flux",
]

#: name: (offset from R (s) at RR = 1 s, amplitude (mV), width sigma (s))
ECG_WAVES = {
    "P": (-0.20, 0.12, 0.025),
    "Q": (-0.028, -0.10, 0.010),
    "R": (0.0, 1.0, 0.010),
    "S": (0.030, -0.22, 0.011),
    "T": (0.28, 0.28, 0.045),
}


def _add_gaussians(out, fs, centres, amps, sigma):
    """Add Gaussians (one per centre) into ``out`` in place, windowed at 5 sigma."""
    half = int(np.ceil(5 * np.max(sigma) * fs))
    offsets = np.arange(-half, half + 1)
    base = np.rint(centres * fs).astype(np.int64)
    idx = base[:, None] + offsets[None, :]
    tt = idx / fs - centres[:, None]
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), centres.shape)[:, None]
    vals = np.asarray(amps, dtype=float)[..., None] * np.exp(-0.5 * (tt / sig) ** 2)
    ok = (idx >= 0) & (idx < out.size)
    out += np.bincount(idx[ok], weights=vals[ok], minlength=out.size)


def ecg_waveform(n, fs, r_times, ectopic, rng, *, r_amplitude=1.0, t_amplitude=0.28):
    """Noise-free ECG (mV) for beats with R-peaks at ``r_times``.

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling rate (Hz).
    r_times : numpy.ndarray
        R-peak times (s).
    ectopic : numpy.ndarray of bool
        Premature ventricular beats.
    rng : numpy.random.Generator
    r_amplitude, t_amplitude : float
        Subject's R and T wave amplitudes (mV).

    Returns
    -------
    numpy.ndarray
        ECG (mV), length ``n``.
    """
    out = np.zeros(n)
    rr = np.diff(r_times, prepend=r_times[0] - 1.0)
    rr = np.clip(rr, 0.3, 2.0)
    normal = ~ectopic
    jitter = rng.normal(1.0, 0.03, r_times.size)  # beat-to-beat amplitude variation
    for name, (offset, amp, sigma) in ECG_WAVES.items():
        scale = r_amplitude if name in ("Q", "R", "S") else 1.0
        if name == "T":
            amp = t_amplitude
            offset = offset * np.sqrt(rr)  # Bazett: QT grows with sqrt(RR)
        sel = normal
        _add_gaussians(
            out,
            fs,
            (r_times + offset)[sel] if np.ndim(offset) else r_times[sel] + offset,
            (scale * amp * jitter)[sel],
            sigma,
        )
    if ectopic.any():
        te = r_times[ectopic]
        # wide bizarre QRS and discordant T wave, no P wave
        _add_gaussians(out, fs, te, 1.5 * r_amplitude * jitter[ectopic], 0.025)
        _add_gaussians(out, fs, te + 0.06, -0.5 * r_amplitude * jitter[ectopic], 0.03)
        _add_gaussians(out, fs, te + 0.32, -1.2 * t_amplitude * jitter[ectopic], 0.06)
    return out


def pulse_template(phase, kind):
    """Normalised pulse shape on the beat phase (0 at the foot, 1 at the next foot).

    Parameters
    ----------
    phase : numpy.ndarray
        Beat phase in [0, 1).
    kind : {"pressure", "femoral", "mca"}
        Finger arterial pressure (systolic peak, dicrotic notch and wave, diastolic
        run-off); femoral artery velocity (high resistance: a sharp systolic peak, an
        early-diastolic reverse flow and a small late forward flow); middle cerebral
        artery velocity (low resistance: continuous forward diastolic flow).

    Returns
    -------
    numpy.ndarray
        Shape with value 0 at the foot and at the end, and maximum 1.
    """
    p = np.asarray(phase, dtype=float)

    def g(mu, sd_rise, sd_fall=None):
        sd_fall = sd_rise if sd_fall is None else sd_fall
        sd = np.where(p < mu, sd_rise, sd_fall)
        return np.exp(-0.5 * ((p - mu) / sd) ** 2)

    def sig(mu, w):
        return 0.5 * (1.0 + np.tanh((p - mu) / w))

    if kind == "pressure":
        shape = (
            g(0.14, 0.045, 0.09)
            + 0.16 * g(0.40, 0.035)
            + 0.38 * sig(0.30, 0.02) * np.exp(-(p - 0.30) / 0.55)
        )
    elif kind == "femoral":
        shape = g(0.10, 0.035, 0.05) - 0.22 * g(0.26, 0.045) + 0.07 * g(0.42, 0.06)
    elif kind == "mca":
        shape = (
            g(0.11, 0.04, 0.07)
            + 0.25 * g(0.26, 0.05)
            + 0.45 * sig(0.16, 0.03) * np.exp(-(p - 0.16) / 0.8)
        )
    else:
        raise ValueError(f"unknown pulse kind {kind!r}")
    taper = sig(0.0, 0.012) * 2.0 - 1.0  # 0 at the foot
    end = 1.0 - sig(0.93, 0.022)  # back to 0 at the next foot
    shape = np.clip(taper, 0, None) * shape * end
    return shape / _TEMPLATE_MAX[kind] if kind in _TEMPLATE_MAX else shape


_TEMPLATE_MAX: dict[str, float] = {}
_fine = np.linspace(0.0, 1.0, 20001)
for _k in ("pressure", "femoral", "mca"):
    _TEMPLATE_MAX[_k] = float(pulse_template(_fine, _k).max())
#: mean of each normalised template over a beat (the "form factor")
TEMPLATE_MEAN = {k: float(pulse_template(_fine, k).mean()) for k in _TEMPLATE_MAX}
del _fine, _k


def pulse_waveform(n, fs, feet, peak, base, kind):
    """Sample a pulsatile waveform beat by beat.

    Beat ``i`` runs from ``feet[i]`` to ``feet[i + 1]``; its baseline goes linearly
    from ``base[i]`` to ``base[i + 1]`` and the pulse rises from it to ``peak[i]``.

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling rate (Hz).
    feet : numpy.ndarray
        Beat onset times (s), increasing; one more than ``peak`` is not needed: the
        last beat ends where the record ends.
    peak, base : numpy.ndarray
        Per-beat peak value and baseline at the foot.
    kind : str
        Template (see :func:`pulse_template`).

    Returns
    -------
    numpy.ndarray
        Length ``n``; samples before the first foot hold ``base[0]``.
    """
    t = np.arange(n) / fs
    i = np.searchsorted(feet, t, side="right") - 1
    before = i < 0
    i = np.clip(i, 0, feet.size - 1)
    t_next = np.r_[feet[1:], feet[-1] + (feet[-1] - feet[-2] if feet.size > 1 else 1.0)]
    period = t_next - feet
    phase = np.clip((t - feet[i]) / period[i], 0.0, 1.0)
    base_next = np.r_[base[1:], base[-1]]
    baseline = base[i] + (base_next[i] - base[i]) * phase
    shape = pulse_template(phase, kind)
    # the pulse reaches peak[i] where the template is 1
    p_peak = _TEMPLATE_ARGMAX[kind]
    amp = peak[i] - (base[i] + (base_next[i] - base[i]) * p_peak)
    out = baseline + amp * shape
    out[before] = base[0]
    return out


_TEMPLATE_ARGMAX = {
    k: float(np.linspace(0, 1, 20001)[np.argmax(pulse_template(np.linspace(0, 1, 20001), k))])
    for k in ("pressure", "femoral", "mca")
}


def _notch_and_systolic_integral(n=200001):
    """Phase of the pressure template's dicrotic notch (its first local minimum after
    the systolic peak) and the template's integral from the foot to it."""
    phase = np.linspace(0.0, 1.0, n)
    shape = pulse_template(phase, "pressure")
    d = np.diff(shape)
    minima = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0)) + 1
    notch = int(minima[phase[minima] > _TEMPLATE_ARGMAX["pressure"]][0])
    integral = float(trapezoid(shape[: notch + 1], phase[: notch + 1]))
    return float(phase[notch]), integral


#: Phase (fraction of the beat from its foot) of the end of ejection of the pressure
#: template: its dicrotic notch (0.283).
TEMPLATE_NOTCH_PHASE, _TEMPLATE_SYSTOLIC_INTEGRAL = _notch_and_systolic_integral()


def pressure_pulse_areas(feet, peak, base, t_end):
    """Exact systolic area and mean pressure of each beat of :func:`pulse_waveform`.

    Parameters
    ----------
    feet : numpy.ndarray
        Beat onsets (s), as given to :func:`pulse_waveform` with kind ``"pressure"``.
    peak, base : numpy.ndarray
        Per-beat systolic pressure and pressure at the foot (mmHg).
    t_end : float
        End of the record (s): the last beat, cut by it, gets NaN.

    Returns
    -------
    dict of numpy.ndarray
        ``systolic_area``: integral of the pressure above its value at the foot, from
        the foot to the dicrotic notch of the template (:data:`TEMPLATE_NOTCH_PHASE`),
        mmHg.s (the area of the systolic-area pulse-contour method, Wesseling et al.
        1983); ``map``: mean pressure from foot to next foot (mmHg); ``ejection``:
        foot-to-notch time (s).
    """
    feet = np.asarray(feet, dtype=float)
    peak = np.asarray(peak, dtype=float)
    base = np.asarray(base, dtype=float)
    t_next = np.r_[feet[1:], np.nan]
    period = t_next - feet
    base_next = np.r_[base[1:], base[-1]]
    slope = base_next - base  # baseline change over the beat (mmHg)
    amp = peak - (base + slope * _TEMPLATE_ARGMAX["pressure"])
    phi = TEMPLATE_NOTCH_PHASE
    area = period * (slope * phi * phi / 2.0 + amp * _TEMPLATE_SYSTOLIC_INTEGRAL)
    mean = base + slope / 2.0 + amp * TEMPLATE_MEAN["pressure"]
    cut = ~np.isfinite(t_next) | (t_next > t_end)
    return {
        "systolic_area": np.where(cut, np.nan, area),
        "map": np.where(cut, np.nan, mean),
        "ejection": np.where(cut, np.nan, phi * period),
    }


#: SD of each vasomotion band relative to the mean flux, when not set explicitly
LDF_RELATIVE_SD = {
    "endothelial_ni": 0.10,
    "neurogenic": 0.08,
    "myogenic": 0.08,
}


def ldf_flux(n, fs, mean_flux, band_power, pulse_feet, resp_rate_hz, rng, *, cardiac_rel=0.06):
    """Noise-free laser Doppler flux (PU).

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling rate (Hz).
    mean_flux : numpy.ndarray
        Mean flux at each sample (PU).
    band_power : dict of str to numpy.ndarray
        Power (PU²) of named vasomotion bands at each sample; bands of
        :data:`LDF_BANDS` not given take :data:`LDF_RELATIVE_SD` times the mean flux.
    pulse_feet : numpy.ndarray
        Arrival times of the pulse in the skin (s).
    resp_rate_hz : float
        Breathing frequency (Hz); the respiratory component sits there.
    rng : numpy.random.Generator
    cardiac_rel : float
        Cardiac pulsation amplitude relative to the mean flux.

    Returns
    -------
    numpy.ndarray
    """
    from .beats import narrowband

    t = np.arange(n) / fs
    out = np.array(mean_flux, dtype=float, copy=True)
    for band, (lo, hi) in LDF_BANDS.items():
        if band == "cardiac":
            continue
        if band in band_power:
            sd = np.sqrt(np.asarray(band_power[band], dtype=float))
        elif band == "respiratory":
            sd = 0.03 * out
            out = out + sd * np.sqrt(2) * np.sin(
                2 * np.pi * resp_rate_hz * t + rng.uniform(0, 2 * np.pi)
            )
            continue
        else:
            sd = LDF_RELATIVE_SD[band] * np.asarray(mean_flux)
        out = out + sd * narrowband(t, lo, hi, rng)
    peak = cardiac_rel * np.interp(pulse_feet, t, mean_flux)
    out = out + pulse_waveform(n, fs, pulse_feet, peak, np.zeros_like(peak), "pressure")
    return out
