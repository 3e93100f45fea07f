"""Laser Doppler flux through skin micro-circulation challenges, with known truth.

Two protocols, each a deterministic flux profile (the truth) plus the recording's
fluctuations, synthesised by the session simulator's :func:`.waveforms.ldf_flux`
(vasomotion in the standard bands, respiratory and cardiac components) and laser speckle
noise:

* :func:`simulate_porh`: post-occlusive reactive hyperaemia. Baseline; at cuff
  inflation the flux falls exponentially (time constant ``tau_occlusion``) to the
  biological zero; at release it rises as a half cosine to the peak at ``time_to_peak``
  and returns to baseline as ``(1 - v)^3``, ``v = (u - time_to_peak) / decay``: an
  exponential-like fall (initial time constant ``decay / 3``) that meets baseline with
  zero slope after ``decay`` seconds, so that the return to baseline is defined. (A peak
  rounded on both sides was tried: its flat top makes the time to peak ill-defined by
  several seconds, unlike recorded PORH peaks.)
* :func:`simulate_local_heating`: local heating to 42 degC then 44 degC. Half-cosine
  transitions: baseline -> axon-reflex peak -> nadir -> plateau, then, at maximal
  heating, plateau -> maximum.

Shapes and ranges follow the time courses in Minson et al. 2001 (J Appl Physiol 91:1619)
and Roustit & Cracowski 2012 (Microcirculation 19:47); they are plausible, not fitted.

Fluctuations. Vasomotion is added with the session simulator's relative amplitudes
(:data:`.waveforms.LDF_RELATIVE_SD`, and ``endothelial_no_rel`` for the NO-dependent band)
times the *baseline* flux: its amplitude in PU does not grow with the hyperaemia. In the
PORH it fades with perfusion (it is scaled by ``(flux - BZ) / (baseline - BZ)``, clipped
to 0-1), as no flow means no flowmotion. Cardiac pulsation (``cardiac_rel`` of the flux)
and respiration (3 % of the flux) come from :func:`.waveforms.ldf_flux`, whose mean
offset from the pulsation is removed so that the recorded mean equals the profile.
Speckle noise is white, Gaussian, with SD ``noise_rel`` times the flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .waveforms import LDF_BANDS, LDF_RELATIVE_SD, TEMPLATE_MEAN, ldf_flux

__all__ = [
    "LdfChallenge",
    "heating_profile",
    "porh_profile",
    "simulate_local_heating",
    "simulate_porh",
]


@dataclass(frozen=True)
class LdfChallenge:
    """A simulated LDF challenge recording.

    Attributes
    ----------
    t : numpy.ndarray, shape (n,)
        Sample times (s), from 0.
    flux : numpy.ndarray, shape (n,)
        Recorded laser Doppler flux (PU).
    profile : numpy.ndarray, shape (n,)
        The noise-free flux time course (PU) the truth describes.
    epochs : list of (str, float, float)
        Protocol epochs (label, start s, stop s), in time order.
    truth : dict of str to float
        The landmarks the profile was built from (see each simulator).
    fs : float
        Sampling rate (Hz).
    """

    t: np.ndarray
    flux: np.ndarray
    profile: np.ndarray
    epochs: list
    truth: dict
    fs: float

    def epoch(self, label):
        """``(start, stop)`` (s) of the epoch called ``label``."""
        for lab, a, b in self.epochs:
            if lab == label:
                return (a, b)
        raise KeyError(f"epoch {label!r} not in {[e[0] for e in self.epochs]}")


def _half_cosine(x):
    """0 -> 1 as ``x`` goes 0 -> 1 with zero slope at both ends (clipped outside)."""
    return 0.5 * (1.0 - np.cos(np.pi * np.clip(x, 0.0, 1.0)))


def _record(
    t, profile, baseline, scale, rng, *, endothelial_no_rel, cardiac_rel, noise_rel, hr_bpm
):
    """Profile + vasomotion (``scale`` x baseline amplitude) + respiration, pulse, noise."""
    fs = 1.0 / (t[1] - t[0])
    rel = {**LDF_RELATIVE_SD, "endothelial_no": endothelial_no_rel}
    band_power = {
        b: (rel.get(b, 0.0) * baseline * scale) ** 2
        for b in LDF_BANDS
        if b not in ("cardiac", "respiratory")
    }
    rr = 60.0 / hr_bpm * (1.0 + 0.04 * rng.standard_normal(int(t[-1] * hr_bpm / 50) + 10))
    feet = np.cumsum(rr) - rr[0] * rng.uniform()
    # ldf_flux's pulsation adds cardiac_rel * TEMPLATE_MEAN of the flux on average
    mean_flux = profile / (1.0 + cardiac_rel * TEMPLATE_MEAN["pressure"])
    clean = ldf_flux(
        t.size, fs, mean_flux, band_power, feet, rng.uniform(0.2, 0.3), rng, cardiac_rel=cardiac_rel
    )
    return clean + noise_rel * profile * rng.standard_normal(t.size)


def _draw(rng, value, lo, hi):
    """``value`` if given, else uniform in ``[lo, hi)``."""
    return float(value) if value is not None else float(rng.uniform(lo, hi))


def porh_profile(t, *, occlusion, baseline, bz, peak, time_to_peak, decay, tau_occlusion=8.0):
    """Noise-free PORH flux (PU) at times ``t`` (s); see :func:`simulate_porh`."""
    t = np.asarray(t, dtype=float)
    o0, o1 = occlusion
    occ = bz + (baseline - bz) * np.exp(-(t - o0) / tau_occlusion)
    f_release = bz + (baseline - bz) * np.exp(-(o1 - o0) / tau_occlusion)
    u = t - o1
    rise = f_release + (peak - f_release) * _half_cosine(u / time_to_peak)
    fall = baseline + (peak - baseline) * np.clip(1.0 - (u - time_to_peak) / decay, 0, 1) ** 3
    return np.select(
        [t < o0, t < o1, u < time_to_peak], [np.full_like(t, baseline), occ, rise], fall
    )


def simulate_porh(
    seed=None,
    *,
    fs=32.0,
    baseline_s=180.0,
    occlusion_s=240.0,
    release_s=420.0,
    baseline=None,
    bz=None,
    peak=None,
    time_to_peak=None,
    decay=None,
    map_mmhg=None,
    vasomotion=True,
    endothelial_no_rel=0.10,
    cardiac_rel=0.06,
    noise_rel=0.03,
) -> LdfChallenge:
    """Simulate a post-occlusive reactive hyperaemia (PORH) LDF recording with truth.

    Parameters
    ----------
    seed : int or numpy.random.Generator, optional
    fs : float
        Sampling rate (Hz); 32 Hz as the demo campaign's ``ldf`` group.
    baseline_s, occlusion_s, release_s : float
        Epoch durations (s): rest, cuff occlusion, recording after release.
    baseline, bz, peak : float, optional
        Baseline flux, biological zero and peak flux (PU). Drawn when not given:
        baseline 8-20 PU, BZ 2-5 PU, peak 3-6 x baseline.
    time_to_peak : float, optional
        Seconds from release to the peak; drawn in 6-15 s.
    decay : float, optional
        Seconds from the peak back to baseline; drawn in 90-180 s.
    map_mmhg : float, optional
        Mean arterial pressure (mmHg) stored in the truth for CVC; drawn in 80-100.
    vasomotion : bool
        Add vasomotion (False: only respiration, cardiac pulsation and noise).
    endothelial_no_rel : float
        SD of the NO-dependent vasomotion band relative to baseline flux.
    cardiac_rel : float
        Cardiac pulsation amplitude relative to the flux.
    noise_rel : float
        Speckle noise SD relative to the flux.

    Returns
    -------
    LdfChallenge
        Epochs ``baseline``, ``occlusion``, ``release``. Truth keys: ``baseline_flux``,
        ``bz_flux``, ``peak_flux`` (PU), ``time_to_peak`` (s from release),
        ``hyperaemic_area`` (PU s: integral of the profile above baseline from release
        to its return to baseline), ``return_time`` (s from release), ``peak_pct_baseline``
        (%), ``peak_minus_bz`` (PU), ``map_mmhg`` (mmHg).
    """
    rng = np.random.default_rng(seed)
    base = _draw(rng, baseline, 8.0, 20.0)
    bz = _draw(rng, bz, 2.0, 5.0)
    peak = float(peak) if peak is not None else base * rng.uniform(3.0, 6.0)
    tp = _draw(rng, time_to_peak, 6.0, 15.0)
    decay = _draw(rng, decay, 90.0, 180.0)
    mapv = _draw(rng, map_mmhg, 80.0, 100.0)
    o0, o1 = baseline_s, baseline_s + occlusion_s
    end = o1 + release_s
    t = np.arange(int(round(end * fs))) / fs
    kw = dict(occlusion=(o0, o1), baseline=base, bz=bz, peak=peak, time_to_peak=tp, decay=decay)
    profile = porh_profile(t, **kw)
    scale = np.clip((profile - bz) / (base - bz), 0.0, 1.0) if vasomotion else 0.0
    flux = _record(
        t,
        profile,
        base,
        scale,
        rng,
        endothelial_no_rel=endothelial_no_rel,
        cardiac_rel=cardiac_rel,
        noise_rel=noise_rel,
        hr_bpm=rng.uniform(55, 80),
    )
    # area from the profile on a 1 ms grid (exact to < 1e-4 relative)
    fine = np.arange(o1, o1 + tp + decay + 1e-3, 1e-3)
    area = float(np.trapezoid(np.clip(porh_profile(fine, **kw) - base, 0, None), fine))
    truth = {
        "baseline_flux": base,
        "bz_flux": bz,
        "peak_flux": peak,
        "time_to_peak": tp,
        "hyperaemic_area": area,
        "return_time": tp + decay,
        "peak_pct_baseline": 100.0 * peak / base,
        "peak_minus_bz": peak - bz,
        "map_mmhg": mapv,
    }
    epochs = [("baseline", 0.0, o0), ("occlusion", o0, o1), ("release", o1, end)]
    return LdfChallenge(t, flux, profile, epochs, truth, fs)


def heating_profile(
    t,
    *,
    heating_start,
    maximal_start,
    baseline,
    initial_peak,
    time_to_initial_peak,
    nadir,
    time_to_nadir,
    plateau,
    plateau_rise,
    max_flux,
    max_rise,
):
    """Noise-free local-heating flux (PU) at times ``t`` (s); see the simulator."""
    t = np.asarray(t, dtype=float)
    u = t - heating_start
    t1, tn = time_to_initial_peak, time_to_nadir
    f = baseline + (initial_peak - baseline) * _half_cosine(u / t1)
    f = np.where(
        u > t1, initial_peak + (nadir - initial_peak) * _half_cosine((u - t1) / (tn - t1)), f
    )
    f = np.where(u > tn, nadir + (plateau - nadir) * _half_cosine((u - tn) / plateau_rise), f)
    v = t - maximal_start
    return np.where(v > 0, plateau + (max_flux - plateau) * _half_cosine(v / max_rise), f)


def simulate_local_heating(
    seed=None,
    *,
    fs=32.0,
    baseline_s=600.0,
    heating_s=2400.0,
    maximal_s=1800.0,
    max_flux=None,
    map_mmhg=None,
    vasomotion=True,
    endothelial_no_rel=0.10,
    cardiac_rel=0.06,
    noise_rel=0.03,
) -> LdfChallenge:
    """Simulate a local-heating LDF recording (42 degC then 44 degC) with known truth.

    Parameters
    ----------
    seed : int or numpy.random.Generator, optional
    fs : float
        Sampling rate (Hz).
    baseline_s, heating_s, maximal_s : float
        Epoch durations (s): thermoneutral baseline, 42 degC heating (35-40 min in the
        protocol), 44 degC maximal heating (20-30 min).
    max_flux : float, optional
        Maximal flux (PU); drawn in 150-300 PU. The landmarks are drawn as fractions of
        it: baseline 6-15 %, initial peak 45-70 %, nadir 15-30 points below the peak
        (at least 3 points above baseline), plateau 80-95 %.
    map_mmhg : float, optional
        Mean arterial pressure (mmHg) in the truth; drawn in 80-100.
    vasomotion, endothelial_no_rel, cardiac_rel, noise_rel
        As in :func:`simulate_porh`; vasomotion keeps its baseline amplitude throughout.

    Returns
    -------
    LdfChallenge
        Epochs ``baseline``, ``heating_42``, ``maximal_44``. Truth keys:
        ``baseline_flux``, ``initial_peak_flux``, ``nadir_flux``, ``plateau_flux``,
        ``max_flux`` (PU); ``time_to_initial_peak`` (drawn 100-200 s) and
        ``time_to_nadir`` (150-300 s later), both from heating start; ``plateau_rise``
        (600-1000 s from the nadir to the plateau), ``max_rise`` (300-600 s);
        ``<landmark>_pct_max`` (%); ``map_mmhg``.
    """
    rng = np.random.default_rng(seed)
    mx = _draw(rng, max_flux, 150.0, 300.0)
    b_pct = rng.uniform(6.0, 15.0)
    p_pct = rng.uniform(45.0, 70.0)
    n_pct = max(p_pct - rng.uniform(15.0, 30.0), b_pct + 3.0)
    l_pct = rng.uniform(80.0, 95.0)
    t1 = rng.uniform(100.0, 200.0)
    tn = t1 + rng.uniform(150.0, 300.0)
    h0, m0 = baseline_s, baseline_s + heating_s
    end = m0 + maximal_s
    kw = dict(
        heating_start=h0,
        maximal_start=m0,
        baseline=mx * b_pct / 100,
        initial_peak=mx * p_pct / 100,
        time_to_initial_peak=t1,
        nadir=mx * n_pct / 100,
        time_to_nadir=tn,
        plateau=mx * l_pct / 100,
        plateau_rise=rng.uniform(600.0, 1000.0),
        max_flux=mx,
        max_rise=rng.uniform(300.0, 600.0),
    )
    t = np.arange(int(round(end * fs))) / fs
    profile = heating_profile(t, **kw)
    flux = _record(
        t,
        profile,
        kw["baseline"],
        1.0 if vasomotion else 0.0,
        rng,
        endothelial_no_rel=endothelial_no_rel,
        cardiac_rel=cardiac_rel,
        noise_rel=noise_rel,
        hr_bpm=rng.uniform(55, 80),
    )
    truth = {
        "baseline_flux": kw["baseline"],
        "initial_peak_flux": kw["initial_peak"],
        "time_to_initial_peak": t1,
        "nadir_flux": kw["nadir"],
        "time_to_nadir": tn,
        "plateau_flux": kw["plateau"],
        "plateau_rise": kw["plateau_rise"],
        "max_flux": mx,
        "max_rise": kw["max_rise"],
        "baseline_pct_max": b_pct,
        "initial_peak_pct_max": p_pct,
        "nadir_pct_max": n_pct,
        "plateau_pct_max": l_pct,
        "map_mmhg": _draw(rng, map_mmhg, 80.0, 100.0),
    }
    epochs = [("baseline", 0.0, h0), ("heating_42", h0, m0), ("maximal_44", m0, end)]
    return LdfChallenge(t, flux, profile, epochs, truth, fs)
