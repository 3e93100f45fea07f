"""One simulated session: beats, then waveforms, then recording imperfections."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import schema
from ..features.pulse_contour import DEFAULT_SUBJECT, aortic_characteristic_impedance
from .artefacts import (
    apply_dropout,
    apply_motion,
    overlaps,
    physiocal_gaps,
    random_intervals,
)
from .beats import beat_series, epoch_profile, narrowband
from .effects import QUANTITIES
from .waveforms import ecg_waveform, ldf_flux, pressure_pulse_areas, pulse_waveform

__all__ = [
    "RATES",
    "Artefacts",
    "SubjectTraits",
    "draw_subject_traits",
    "respiration_belt",
    "simulate_session",
]

#: Default sampling rates (Hz) of the demo campaign.
RATES = {"ecg": 500.0, "abp": 200.0, "ldf": 32.0, "doppler": 100.0, "resp": 25.0}
VESSELS = ("femoral", "mca")


@dataclass(frozen=True)
class Artefacts:
    """Rates of recording imperfections.

    Attributes
    ----------
    ectopic_rate : float
        Fraction of beats that are premature ventricular contractions.
    motion_per_hour : float
        Motion artefacts per hour (1-3 s each; all channels).
    dropout_per_hour : float
        Signal dropouts per hour and channel (2-6 s of held value).
    physiocal : bool
        Finger-pressure calibration gaps.
    """

    ectopic_rate: float = 0.002
    motion_per_hour: float = 3.0
    dropout_per_hour: float = 1.0
    physiocal: bool = True

    @classmethod
    def none(cls) -> Artefacts:
        """No imperfection at all (for clean reference signals)."""
        return cls(ectopic_rate=0.0, motion_per_hour=0.0, dropout_per_hour=0.0, physiocal=False)


@dataclass(frozen=True)
class SubjectTraits:
    """Constants of one subject that are not mission effects."""

    resp_rate_hz: float
    r_amplitude: float
    t_amplitude: float
    ptt_finger: float
    ptt_femoral: float
    ptt_mca: float
    ldf_delay: float
    extra: dict = field(default_factory=dict)


def draw_subject_traits(rng) -> SubjectTraits:
    """Draw a subject's breathing rate, ECG amplitudes and pulse transit times."""
    return SubjectTraits(
        resp_rate_hz=rng.uniform(0.2, 0.3),
        r_amplitude=rng.uniform(0.8, 1.6),
        t_amplitude=rng.uniform(0.2, 0.4),
        ptt_finger=rng.uniform(0.22, 0.28),
        ptt_femoral=rng.uniform(0.15, 0.19),
        ptt_mca=rng.uniform(0.10, 0.13),
        ldf_delay=rng.uniform(0.28, 0.34),
    )


def _segments(starts_idx, n):
    """Valid sample segments [start, next start) for reduceat, clipped to n."""
    s = np.clip(starts_idx, 0, n - 1)
    return s


def _per_beat(values, fs, feet, func):
    """Per-beat reduction of a sampled waveform over [foot_i, foot_{i+1})."""
    idx = np.ceil(np.asarray(feet) * fs - 1e-9).astype(np.int64)
    inside = (idx >= 0) & (idx < values.size)
    out = np.full(feet.size, np.nan)
    idx_in = idx[inside]
    if idx_in.size < 2:
        return out
    red = func.reduceat(values, idx_in) if func is not np.mean else None
    if func is np.mean:
        sums = np.add.reduceat(values, idx_in)
        counts = np.diff(np.r_[idx_in, values.size])
        red = sums / counts
    res = np.asarray(red, dtype=float)
    res[-1] = np.nan  # the last beat is cut by the end of the record
    out[np.flatnonzero(inside)] = res
    return out


def respiration_belt(duration_s, fs, rate_hz, phase, motion, artefacts, rng):
    """A respiratory belt's signal (arbitrary units), in step with the simulated RSA.

    Lung volume is ``-sin(2 pi f t + phase)`` where ``sin(2 pi f t + phase)`` is the
    respiratory oscillation of systolic pressure in :func:`~.beats.beat_series`: the
    end of inspiration falls at the pressure trough (intrathoracic pressure lowest), so
    the RR interval, which follows pressure through the baroreflex, shortens during
    inspiration and lengthens during expiration, as respiratory sinus arrhythmia does.
    The breathing frequency is the subject's, constant over the session; each breath's
    depth varies by about 10 %, the belt drifts slowly, and the session's motion
    artefacts and the belt's own dropouts are added.

    Parameters
    ----------
    duration_s, fs : float
        Session length (s) and the belt's sampling rate (Hz).
    rate_hz : float
        Breathing frequency (Hz).
    phase : float
        :attr:`~.beats.BeatSeries.resp_phase` (rad).
    motion : numpy.ndarray, shape (n, 2)
        Motion artefact intervals (s), shared with the other channels.
    artefacts : Artefacts
    rng : numpy.random.Generator
        The session's generator: one integer is drawn from it to seed the belt's own
        stream, after everything else, so no other simulated value changes.

    Returns
    -------
    resp : numpy.ndarray
        Belt signal (arbitrary units, ``"1"``).
    rate_bpm : float
        The true breathing rate (breaths/min).
    """
    own = np.random.default_rng(rng.integers(2**63))
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    depth = 1.0 + 0.1 * narrowband(t, 0.005, 0.03, own)
    volume = -np.sin(2 * np.pi * rate_hz * t + phase) * depth
    drift = 0.3 * narrowband(t, 0.002, 0.01, own)
    resp = volume + drift + own.normal(0.0, 0.03, n)
    resp = apply_motion(resp, fs, motion, 1.5, own)
    drop = random_intervals(duration_s, artefacts.dropout_per_hour, (2.0, 6.0), own)
    return apply_dropout(resp, fs, drop), 60.0 * float(rate_hz)


def simulate_session(
    targets,
    duration_s,
    epochs,
    traits,
    rng,
    *,
    rates=None,
    artefacts=None,
    age=DEFAULT_SUBJECT["age"],
    sex=DEFAULT_SUBJECT["sex"],
):
    """Simulate one session's raw groups and its per-beat truth.

    The per-beat truth holds a stroke volume ``sv`` (mL) that the finger pressure
    carries by construction of the systolic-area pulse-contour model (Wesseling et al.
    1983 with the Langewouters et al. 1984 impedance of a subject of this ``age`` and
    ``sex``): the exact area of the clean pulse above its foot pressure, from the foot
    to the template's dicrotic notch, divided by ``Z0`` at the beat's exact mean
    pressure. It follows pulse pressure and RR beat by beat (Mayer waves, ectopic
    beats) and falls with the narrower pulse and shorter beats of standing. No random
    number is drawn for it: the other quantities of a seed are unchanged.

    Parameters
    ----------
    targets : pandas.DataFrame
        Index: epoch labels; columns: quantities of :data:`~.effects.QUANTITIES`
        (each in its units), the session's true values.
    duration_s : float
        Session length (s).
    epochs : list of (label, start, stop)
        Protocol epochs (s).
    traits : SubjectTraits
    rng : numpy.random.Generator
    rates : dict, optional
        Sampling rates (Hz) per group; default :data:`RATES`.
    artefacts : Artefacts, optional
    age : float
        Subject's age (years), for the aortic impedance of the stroke volume truth.
    sex : {"M", "F", "X"}
        Subject's sex, idem.

    Returns
    -------
    groups : dict of str to xarray.Dataset
        Raw groups of the data model, including ``protocol`` and ``resp`` (a belt in
        arbitrary units, :func:`respiration_belt`).
    beats : xarray.Dataset
        Per-beat truth (dim ``beat``).
    realised : pandas.DataFrame
        The values the recorded physiology actually has per epoch (from the clean
        signals and beat truth), same layout as ``targets``, plus ``resp_rate``
        (breaths/min).
    """
    rates = {**RATES, **(rates or {})}
    art = artefacts if artefacts is not None else Artefacts()
    labels = [e[0] for e in epochs]
    tv = {q: [float(targets.loc[lab, q]) for lab in labels] for q in targets.columns}

    bs = beat_series(
        duration_s,
        epochs,
        tv["hr"],
        tv["sbp"],
        tv["dbp"],
        tv["brs"],
        rng,
        resp_rate_hz=traits.resp_rate_hz,
        ectopic_rate=art.ectopic_rate,
    )
    t_r = bs.t
    nb = t_r.size

    # --- ECG -------------------------------------------------------------------------
    fs = rates["ecg"]
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    ecg_clean = ecg_waveform(
        n, fs, t_r, bs.ectopic, rng, r_amplitude=traits.r_amplitude, t_amplitude=traits.t_amplitude
    )
    w = int(0.015 * fs)
    base = np.rint(t_r * fs).astype(np.int64)
    win = np.clip(base[:, None] + np.arange(-w, w + 1)[None, :], 0, n - 1)
    r_sample = win[np.arange(nb), np.argmax(ecg_clean[win], axis=1)]
    wander = 0.06 * np.sin(2 * np.pi * traits.resp_rate_hz * t) + 0.08 * narrowband(
        t, 0.01, 0.08, rng
    )
    hum = 0.012 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))
    ecg = ecg_clean + wander + hum + rng.normal(0.0, 0.012, n)

    motion = random_intervals(duration_s, art.motion_per_hour, (1.0, 3.0), rng)
    drop = {
        g: random_intervals(duration_s, art.dropout_per_hour, (2.0, 6.0), rng)
        for g in ("ecg", "abp", "ldf", "doppler")
    }
    ecg = apply_dropout(apply_motion(ecg, fs, motion, 0.8, rng), fs, drop["ecg"])

    # --- arterial pressure --------------------------------------------------------------
    fs_p = rates["abp"]
    n_p = int(round(duration_s * fs_p))
    feet = t_r + traits.ptt_finger
    abp_clean = pulse_waveform(n_p, fs_p, feet, bs.sbp, bs.dbp, "pressure")
    sbp_b = _per_beat(abp_clean, fs_p, feet, np.maximum)
    map_b = _per_beat(abp_clean, fs_p, feet, np.mean)
    # DBP: the minimum around the foot (end-diastole before the upstroke)
    k = int(0.05 * fs_p)
    fidx = np.clip(np.rint(feet * fs_p).astype(np.int64), 0, n_p - 1)
    fw = np.clip(fidx[:, None] + np.arange(-k, k + 1)[None, :], 0, n_p - 1)
    dbp_b = abp_clean[fw].min(axis=1)
    pulse = pressure_pulse_areas(feet, bs.sbp, bs.dbp, n_p / fs_p)
    sv_b = pulse["systolic_area"] / aortic_characteristic_impedance(pulse["map"], age, sex)
    abp = abp_clean + rng.normal(0.0, 0.3, n_p)
    gaps = physiocal_gaps(feet, rng) if art.physiocal else np.zeros((0, 2))
    for a, b in gaps:
        i0, i1 = int(a * fs_p), min(int(b * fs_p), n_p)
        if i1 > i0:
            level = float(np.mean(abp_clean[i0:i1]))
            abp[i0:i1] = level + rng.normal(0.0, 0.2, i1 - i0)
    abp = apply_dropout(apply_motion(abp, fs_p, motion, 15.0, rng), fs_p, drop["abp"])

    # --- Doppler -----------------------------------------------------------------------
    fs_d = rates["doppler"]
    n_d = int(round(duration_s * fs_d))
    pp = bs.sbp - bs.dbp
    pp_rel = pp / np.median(pp)
    vel = []
    dop_truth = {}
    for vessel, ptt in zip(VESSELS, (traits.ptt_femoral, traits.ptt_mca), strict=True):
        vfeet = t_r + ptt
        psv_t = np.interp(vfeet, t, epoch_profile(t, epochs, tv[f"{vessel}_psv"]))
        ri_t = np.interp(vfeet, t, epoch_profile(t, epochs, tv[f"{vessel}_ri"]))
        psv = psv_t * (1.0 + 0.25 * (pp_rel - 1.0)) * rng.normal(1.0, 0.01, nb)
        edv = psv_t * (1.0 - ri_t) * rng.normal(1.0, 0.01, nb)
        clean = pulse_waveform(n_d, fs_d, vfeet, psv, np.r_[edv[0], edv[:-1]], vessel)
        b_psv = _per_beat(clean, fs_d, vfeet, np.maximum)
        b_tamv = _per_beat(clean, fs_d, vfeet, np.mean)
        nxt = np.ceil(np.r_[vfeet[1:], np.inf] * fs_d - 1e-9) - 1
        nxt = np.where(np.isfinite(nxt) & (nxt < n_d), nxt, -1).astype(np.int64)
        b_edv = np.where(nxt >= 0, clean[np.clip(nxt, 0, n_d - 1)], np.nan)
        dop_truth[vessel] = {
            "psv": b_psv,
            "edv": b_edv,
            "tamv": b_tamv,
            "ri": (b_psv - b_edv) / b_psv,
            "pi": (b_psv - b_edv) / b_tamv,
        }
        noisy = clean * rng.normal(1.0, 0.02, n_d) + rng.normal(0.0, 1.0, n_d)
        noisy = apply_motion(noisy, fs_d, motion, 20.0, rng)
        vel.append(apply_dropout(noisy, fs_d, drop["doppler"]))
    vel = np.vstack(vel)

    # --- LDF ---------------------------------------------------------------------------
    fs_l = rates["ldf"]
    n_l = int(round(duration_s * fs_l))
    t_l = np.arange(n_l) / fs_l
    flux_mean = epoch_profile(t_l, epochs, tv["flux"])
    endo = epoch_profile(t_l, epochs, tv["ldf_endothelial_power"])
    ldf_clean = ldf_flux(
        n_l,
        fs_l,
        flux_mean,
        {"endothelial_no": endo},
        t_r + traits.ldf_delay,
        traits.resp_rate_hz,
        rng,
    )
    flux = ldf_clean + rng.normal(0.0, 0.25, n_l)
    flux = apply_motion(flux, fs_l, motion, 0.8 * float(np.mean(flux_mean)), rng)
    flux = np.clip(apply_dropout(flux, fs_l, drop["ldf"]), 0.0, None)
    flux_b = _per_beat(ldf_clean, fs_l, t_r, np.mean)

    # --- truth -------------------------------------------------------------------------
    t_next = np.r_[t_r[1:], np.nan]
    rr = np.r_[np.nan, np.diff(t_r) * 1000.0]
    beat_start = t_r - 0.1
    beat_stop = np.where(np.isnan(t_next), duration_s, t_next)
    art_hit = overlaps(beat_start, beat_stop, motion)
    ecg_valid = ~(art_hit | overlaps(beat_start, beat_stop, drop["ecg"]))
    abp_stop = np.r_[feet[1:], duration_s]
    abp_valid = ~(
        overlaps(feet, abp_stop, gaps)
        | overlaps(feet, abp_stop, motion)
        | overlaps(feet, abp_stop, drop["abp"])
        | np.isnan(sbp_b)
    )
    epoch_lab = np.where(bs.epoch >= 0, np.asarray(labels, dtype=object)[bs.epoch], "")

    def var(values, units, long_name):
        return ("beat", values, {"units": units, "long_name": long_name})

    data = {
        "t": var(t_r, "s", "R-peak time"),
        "r_sample": ("beat", r_sample, {"units": "1", "long_name": "R-peak ECG sample index"}),
        "rr": var(rr, "ms", "RR interval ending at this beat"),
        "hr": var(60000.0 / rr, "bpm", "instantaneous heart rate"),
        "ectopic": ("beat", bs.ectopic, {"long_name": "premature ventricular beat"}),
        "epoch": ("beat", epoch_lab.astype(object), {"long_name": "protocol epoch"}),
        "sbp": var(sbp_b, "mmHg", "systolic pressure"),
        "dbp": var(dbp_b, "mmHg", "diastolic pressure at the beat's foot"),
        "map": var(map_b, "mmHg", "mean arterial pressure (area mean)"),
        "pressure_onset": var(feet, "s", "finger pressure pulse onset"),
        "sv": var(
            sv_b,
            "mL",
            "stroke volume carried by the pressure pulse (systolic area / Langewouters Z0)",
        ),
        "ejection_time": var(pulse["ejection"], "s", "pulse foot to dicrotic notch"),
        "flux": var(flux_b, "PU", "mean clean LDF flux over the beat"),
        "ecg_valid": ("beat", ecg_valid, {"long_name": "no ECG artefact or dropout"}),
        "abp_valid": ("beat", abp_valid, {"long_name": "no calibration gap or artefact"}),
    }
    for vessel, d in dop_truth.items():
        data[f"{vessel}_psv"] = var(d["psv"], "cm/s", f"{vessel} peak systolic velocity")
        data[f"{vessel}_edv"] = var(d["edv"], "cm/s", f"{vessel} end-diastolic velocity")
        data[f"{vessel}_tamv"] = var(d["tamv"], "cm/s", f"{vessel} time-averaged max velocity")
        data[f"{vessel}_ri"] = var(d["ri"], "1", f"{vessel} resistive index")
        data[f"{vessel}_pi"] = var(d["pi"], "1", f"{vessel} pulsatility index")
    beats = xr.Dataset(data)
    beats.attrs = {
        "brs_lag": 1,
        "brs_definition": "rr[i+1] = RR0 + brs * (SBP_i - SBP0) + noise",
        "sv_definition": (
            "systolic area of the clean pulse above its foot pressure, foot to dicrotic "
            "notch, / Z0(beat mean pressure, age, sex) of Langewouters et al. 1984"
        ),
        "age": float(age),
        "sex": str(sex),
        "motion_artefacts": motion.ravel().tolist(),
        "physiocal_gaps": gaps.ravel().tolist(),
        **{f"dropouts_{g}": iv.ravel().tolist() for g, iv in drop.items()},
    }

    realised = targets.copy()
    for lab in labels:
        sel = epoch_lab == lab
        ok = sel & np.isfinite(rr)
        realised.loc[lab, "hr"] = float(np.mean(60000.0 / rr[ok])) if ok.any() else np.nan
        okp = sel & abp_valid
        for q, arr in (("sbp", sbp_b), ("dbp", dbp_b), ("map", map_b)):
            realised.loc[lab, q] = float(np.nanmean(arr[okp])) if okp.any() else np.nan
        start, stop = next((s, e) for lb, s, e in epochs if lb == lab)
        in_ep = (t_l >= start) & (t_l < stop)
        realised.loc[lab, "flux"] = float(np.mean(ldf_clean[in_ep]))
        for vessel, d in dop_truth.items():
            for q in ("psv", "ri"):
                realised.loc[lab, f"{vessel}_{q}"] = float(np.nanmean(d[q][sel]))

    # --- respiration (a belt, arbitrary units) ------------------------------------------
    # Drawn last, from its own stream, so that every value above is what it was before
    # the simulator had a respiration channel.
    resp, resp_rate = respiration_belt(
        duration_s, rates["resp"], traits.resp_rate_hz, bs.resp_phase, motion, art, rng
    )
    realised["resp_rate"] = resp_rate  # breaths/min, every epoch

    groups = {
        "ecg": schema.signal_group(ecg.astype(np.float32), fs, "ecg"),
        "abp": schema.signal_group(abp.astype(np.float32), fs_p, "abp"),
        "ldf": schema.signal_group(flux.astype(np.float32), fs_l, "ldf"),
        "doppler": schema.signal_group(vel.astype(np.float32), fs_d, "doppler", vessels=VESSELS),
        "resp": schema.signal_group(resp.astype(np.float32), rates["resp"], "resp", units="1"),
        "protocol": schema.protocol_group(epochs),
    }
    return groups, beats, realised


assert set(QUANTITIES) >= {"hr", "sbp", "dbp", "brs", "flux"}
