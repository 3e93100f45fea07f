"""Stroke volume, cardiac output and total peripheral resistance from arterial pressure.

Beat-to-beat stroke volume by the systolic-area pulse-contour method: the volume
ejected in a beat is the area under the pressure pulse during ejection, above the
end-diastolic pressure, divided by the characteristic impedance of the aorta,

    SV = A_sys / Z0,    A_sys = integral from onset to end of ejection of (P(t) - P_dia) dt,

(Wesseling et al. 1983, "A simple device for the continuous measurement of cardiac
output", Adv Cardiovasc Phys 5:16-52: the "cZ" method; it is also what the
three-element model of Wesseling et al. 1993, J Appl Physiol 74:2566-2573,
"Modelflow", reduces to when the Windkessel pressure stays at the diastolic level
during ejection). ``Z0`` is not measured but taken from the aortic pressure-area
relation of Langewouters et al. (1984, J Biomech 17:425-435), an arctangent model whose
three parameters depend on age and sex:

    A(p)  = Am (1/2 + arctan((p - p0) / p1) / pi)              (cm2)
    C'(p) = dA/dp = Am / (pi p1 (1 + ((p - p0) / p1)**2))       (cm2/mmHg)
    Z0(p) = sqrt(rho / (A(p) C'(p)))                          (water-hammer relation)

with Am = 5.62 cm2 (men) or 4.12 cm2 (women), p0 = 76 - 0.89 age (men) or
72 - 0.89 age (women) and p1 = 57 - 0.44 age (mmHg), the thoracic-aorta values used by
Modelflow (the same numbers appear in the Wesseling estimator of the PhysioNet
cardiac output estimation toolbox of Sun et al. 2009, Crit Care Med 37:72-80). ``Z0`` is evaluated at the beat's mean
pressure.

The end of ejection is the dicrotic notch found on the waveform by
:func:`cardiolab.signals.pressure.arterial_pressure_beats` (first local minimum after
the systolic peak, else the largest positive curvature: the maximum of the second
derivative); where no notch is found, or the notch lies implausibly far from the
expected ejection time, the left-ventricular ejection time of Weissler et al. (1968,
Circulation 37:149-159: LVET = 413 - 1.7 HR ms in men, 418 - 1.6 HR ms in women) is
counted from the pulse onset instead.

**Units.** With the population ``Z0`` the stroke volume is in mL but *uncalibrated*:
individual aortas differ from the population by +-20-30 %, so absolute values are
relative units; changes within a subject (posture, time course) are what the method
tracks. A per-subject calibration factor against a reference (echo) stroke volume is
given by :func:`stroke_volume_calibration`. A finger pressure is not an aortic
pressure: its systolic area overestimates the aortic one by a subject-specific factor
that the calibration absorbs too.

**Where it fails.** Pulse-contour stroke volume (Modelflow) is known to fail in
microgravity (../shared/SCIENCE.md): :func:`pulse_contour_reliable` is False for
in-flight sessions, whose values must be flagged.

Hand-written because no maintained Python library implements pulse-contour stroke
volume (NeuroKit2, BioSPPy and pyPPG stop at pressure fiducials; the PhysioNet
toolbox is MATLAB).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import CatalogError, SessionFormatError, UnitError
from ..labels import PHASES, schedule_order

__all__ = [
    "BLOOD_DENSITY",
    "DEFAULT_SUBJECT",
    "DYN_S_CM5_PER_MMHG_MIN_L",
    "LANGEWOUTERS_1984",
    "WEISSLER_LVET",
    "age_from_band",
    "aortic_characteristic_impedance",
    "calibrate_stroke_volume",
    "cardiac_output",
    "ejection_time_weissler",
    "end_of_ejection",
    "langewouters_parameters",
    "pulse_contour_reliable",
    "pulse_contour_stroke_volume",
    "stroke_volume_calibration",
    "stroke_volume_features",
    "total_peripheral_resistance",
    "tpr_to_dyn",
]

#: Langewouters et al. (1984) thoracic aorta, as used by Modelflow (Wesseling et al.
#: 1993): maximal area ``a_max`` (cm2) and ``p0 = p0_intercept + p0_age * age``,
#: ``p1 = p1_intercept + p1_age * age`` (mmHg, age in years), per sex.
LANGEWOUTERS_1984 = {
    "M": {"a_max": 5.62, "p0_intercept": 76.0, "p0_age": -0.89, "p1_intercept": 57.0,
          "p1_age": -0.44},
    "F": {"a_max": 4.12, "p0_intercept": 72.0, "p0_age": -0.89, "p1_intercept": 57.0,
          "p1_age": -0.44},
}  # fmt: skip
#: Age range (years) of the aortas Langewouters et al. measured (30-88), widened to
#: adults: outside it the model is not used.
AGE_RANGE = (18.0, 90.0)
#: Density of blood (g/cm3).
BLOOD_DENSITY = 1.05
#: 1 mmHg in dyn/cm2.
DYN_CM2_PER_MMHG = 1333.22
#: 1 mmHg.min/L in dyn.s/cm5 (1333.22 dyn/cm2 / (1000 cm3 / 60 s) = 79.99).
DYN_S_CM5_PER_MMHG_MIN_L = DYN_CM2_PER_MMHG * 60.0 / 1000.0
#: Weissler et al. (1968) left-ventricular ejection time: intercept (ms) and slope
#: (ms/bpm) of LVET against heart rate, per sex.
WEISSLER_LVET = {"M": (413.0, -1.7), "F": (418.0, -1.6)}
#: Subject used when the catalog gives no age or sex (values then flagged).
DEFAULT_SUBJECT = {"age": 40.0, "sex": "M"}
#: A notch further than this fraction from Weissler's ejection time is not the end
#: of ejection (the Weissler time is used instead): only gross misdetections (a noise
#: minimum in the upstroke, the trough after the dicrotic wave) are rejected, since
#: the foot-to-notch time of a finger pulse differs from the aortic ejection time by
#: the onset detection and by the individual scatter of LVET about Weissler's line.
NOTCH_TOLERANCE = 0.5
#: Fewest beats with a stroke volume for an epoch summary.
MIN_BEATS = 10
#: End-of-ejection source codes of :func:`end_of_ejection`.
EJECTION_SOURCES = {0: "none", 1: "dicrotic notch", 2: "Weissler ejection time"}

_SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "X": "X"}
_AGE_BAND = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)|\+)\s*$")


# --------------------------------------------------------------------------------------
# subject: age, sex, impedance
# --------------------------------------------------------------------------------------


def _sex_key(sex) -> str:
    key = _SEXES.get(str(sex).strip().upper()) if sex is not None else None
    if key is None:
        raise CatalogError(f"sex {sex!r} must be 'M', 'F' or 'X'", field="sex")
    return key


def _check_age(age) -> float:
    try:
        value = float(age)
    except (TypeError, ValueError):
        raise CatalogError(f"age {age!r} is not a number of years", field="age") from None
    if not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
        raise CatalogError(
            f"age {value:g} years is outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g}, the range "
            "of the Langewouters aortic model",
            field="age",
        )
    return value


def age_from_band(age_band: str) -> float:
    """Age (years) standing for a catalog age band.

    Parameters
    ----------
    age_band : str
        ``"30-39"`` (its centre, 35.0) or ``"60+"`` (the lower bound plus 5 years, 65.0),
        as :class:`cardiolab.catalog.Subject` stores it.

    Returns
    -------
    float

    Raises
    ------
    CatalogError
        If the band does not look like ``"30-39"`` or ``"60+"`` (field ``age_band``).
    """
    m = _AGE_BAND.match(str(age_band))
    if not m or (m.group(2) and int(m.group(1)) > int(m.group(2))):
        raise CatalogError(
            f"age band {age_band!r} must look like '30-39' or '60+'", field="age_band"
        )
    lo = int(m.group(1))
    return (lo + int(m.group(2)) + 1) / 2.0 if m.group(2) else lo + 5.0


def langewouters_parameters(age, sex) -> dict:
    """Parameters of the Langewouters arctangent aortic pressure-area model.

    Parameters
    ----------
    age : float
        Years (18-90).
    sex : {"M", "F", "X"}
        ``"X"`` takes the mean of the male and female parameters.

    Returns
    -------
    dict
        ``a_max`` (cm2), ``p0`` and ``p1`` (mmHg).

    Raises
    ------
    CatalogError
        Age outside 18-90 years (field ``age``) or an unknown sex (field ``sex``).

    Notes
    -----
    Langewouters, Wesseling & Goedhard (1984), J Biomech 17:425-435; the age and sex
    regressions are Modelflow's (Wesseling et al. 1993, J Appl Physiol 74:2566).
    """
    age = _check_age(age)
    key = _sex_key(sex)
    sets = [LANGEWOUTERS_1984[k] for k in (("M", "F") if key == "X" else (key,))]
    mean = {name: float(np.mean([s[name] for s in sets])) for name in sets[0]}
    return {
        "a_max": mean["a_max"],
        "p0": mean["p0_intercept"] + mean["p0_age"] * age,
        "p1": mean["p1_intercept"] + mean["p1_age"] * age,
    }


def aortic_characteristic_impedance(pressure, age, sex) -> np.ndarray:
    """Characteristic impedance of the aorta at a pressure, from age and sex.

    Parameters
    ----------
    pressure : array-like
        Distending (mean arterial) pressure (mmHg), any shape.
    age : float
        Years.
    sex : {"M", "F", "X"}

    Returns
    -------
    numpy.ndarray
        ``Z0`` (mmHg.s/mL), shape of ``pressure``: ``sqrt(rho / (A C'))`` with the
        area ``A`` and compliance per unit length ``C'`` of the Langewouters model
        (see the module docstring), NaN where ``pressure`` is NaN.

    Raises
    ------
    CatalogError
        See :func:`langewouters_parameters`.
    """
    par = langewouters_parameters(age, sex)
    p = np.asarray(pressure, dtype=float)
    m = (p - par["p0"]) / par["p1"]
    area = par["a_max"] * (0.5 + np.arctan(m) / np.pi)  # cm2
    compliance = par["a_max"] / (np.pi * par["p1"] * (1.0 + m * m))  # cm2/mmHg
    # rho (g/cm3) / (A cm2 * C' cm2/(dyn/cm2)) -> dyn.s/cm5; then to mmHg.s/mL
    return np.sqrt(BLOOD_DENSITY / (DYN_CM2_PER_MMHG * area * compliance))


# --------------------------------------------------------------------------------------
# end of ejection
# --------------------------------------------------------------------------------------


def ejection_time_weissler(hr, sex) -> np.ndarray:
    """Left-ventricular ejection time expected at a heart rate (Weissler et al. 1968).

    Parameters
    ----------
    hr : array-like
        Heart rate (bpm).
    sex : {"M", "F", "X"}
        ``"X"`` takes the mean of the two regressions.

    Returns
    -------
    numpy.ndarray
        LVET (s): 413 - 1.7 HR ms (men), 418 - 1.6 HR ms (women); Weissler, Harris &
        Schoenfeld (1968), Circulation 37:149-159.
    """
    key = _sex_key(sex)
    coef = [WEISSLER_LVET[k] for k in (("M", "F") if key == "X" else (key,))]
    a = float(np.mean([c[0] for c in coef]))
    b = float(np.mean([c[1] for c in coef]))
    return (a + b * np.asarray(hr, dtype=float)) / 1000.0


def end_of_ejection(onset, t_notch, cycle_s, sex, *, tolerance=NOTCH_TOLERANCE) -> dict:
    """End of ejection per beat: the dicrotic notch, else Weissler's ejection time.

    Parameters
    ----------
    onset : array-like
        Pulse onset (foot) of each beat (s), shape ``(n,)``; NaN when not found.
    t_notch : array-like
        Dicrotic notch of each beat (s), shape ``(n,)``, NaN when not found (as
        :func:`cardiolab.signals.pressure.arterial_pressure_beats` returns it).
    cycle_s : array-like
        Duration of each beat (s), shape ``(n,)``: gives the heart rate of the
        Weissler regression.
    sex : {"M", "F", "X"}
    tolerance : float
        A notch whose onset-to-notch time differs from Weissler's ejection time by
        more than this fraction is rejected.

    Returns
    -------
    dict
        ``t`` (s, NaN where the onset is unknown) and ``source`` (int8: 1 notch,
        2 Weissler, 0 none; see :data:`EJECTION_SOURCES`).

    Raises
    ------
    SessionFormatError
        If the arrays differ in shape (names the field).
    """
    onset, t_notch, cycle = _same_shape(onset=onset, t_notch=t_notch, cycle_s=cycle_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        lvet = ejection_time_weissler(60.0 / cycle, sex)
        duration = t_notch - onset
        notch_ok = np.isfinite(duration) & (np.abs(duration / lvet - 1.0) <= tolerance)
    known = np.isfinite(onset) & np.isfinite(lvet) & (lvet > 0)
    t = np.where(notch_ok, t_notch, np.where(known, onset + lvet, np.nan))
    source = np.where(notch_ok, 1, np.where(known, 2, 0)).astype(np.int8)
    return {"t": t, "source": source}


# --------------------------------------------------------------------------------------
# stroke volume
# --------------------------------------------------------------------------------------


def _same_shape(**arrays):
    out = [np.asarray(v, dtype=float) for v in arrays.values()]
    names = list(arrays)
    for name, arr in zip(names, out, strict=True):
        if arr.ndim != 1:
            raise SessionFormatError(f"{name} must be 1-D (one value per beat), got {arr.shape}")
    for name, arr in zip(names[1:], out[1:], strict=True):
        if arr.shape != out[0].shape:
            raise SessionFormatError(
                f"{name} has {arr.size} beats but {names[0]} has {out[0].size}"
            )
    return out


def _check_pressure(abp, fs):
    x = np.asarray(abp, dtype=float)
    if x.ndim != 1:
        raise SessionFormatError(f"abp must be a 1-D pressure waveform, got shape {x.shape}")
    if not np.isfinite(fs) or fs <= 0:
        raise SessionFormatError(f"fs (sampling rate of abp) must be positive, got {fs!r}")
    finite = x[np.isfinite(x)]
    if finite.size:
        med = float(np.median(finite))
        if not 20.0 <= med <= 250.0:
            raise UnitError(
                f"abp: median {med:g} is not an arterial pressure in mmHg (20-250); "
                "kPa or Pa must be converted where the signal is read"
            )
    return x


def _integral_at(cum, t, fs, n):
    """Integral of the signal from sample 0 to time ``t`` (linear interpolation)."""
    grid = np.arange(n) / fs
    return np.interp(t, grid, cum, left=np.nan, right=np.nan)


def pulse_contour_stroke_volume(
    abp, fs, onset, t_notch, age, sex, *, dbp=None, tolerance=NOTCH_TOLERANCE
) -> dict:
    """Beat-to-beat stroke volume by the systolic-area (cZ) pulse-contour method.

    Parameters
    ----------
    abp : array-like
        Arterial (finger) pressure waveform (mmHg), shape ``(k,)``, first sample at
        t = 0; NaN samples allowed (a beat touching one has no stroke volume).
    fs : float
        Sampling rate (Hz).
    onset : array-like
        Pulse onset (foot) of each beat (s, same clock), shape ``(n,)``; beat ``i``
        runs from ``onset[i]`` to ``onset[i + 1]`` (the last beat has no end).
    t_notch : array-like
        Dicrotic notch of each beat (s), shape ``(n,)``, NaN when not found.
    age : float
        Years (18-90).
    sex : {"M", "F", "X"}
    dbp : array-like, optional
        End-diastolic pressure at each onset (mmHg), shape ``(n,)``; default: the
        pressure at the onset (linear interpolation).
    tolerance : float
        See :func:`end_of_ejection`.

    Returns
    -------
    dict
        Arrays of shape ``(n,)``: ``sv`` (mL, uncalibrated: relative units, see the
        module docstring), ``systolic_area`` (mmHg.s), ``map`` (area mean from onset
        to next onset, mmHg), ``z0`` (mmHg.s/mL), ``t_end_ejection`` (s),
        ``ejection_source`` (int8, :data:`EJECTION_SOURCES`); and ``reason`` (str,
        "" when at least one beat has a stroke volume). ``sv`` is NaN for a beat
        without both onsets, with an end of ejection outside the beat, touching a
        NaN sample, or with a non-positive systolic area.

    Raises
    ------
    SessionFormatError
        Shapes: ``abp`` not 1-D, per-beat arrays of different lengths.
    UnitError
        ``abp`` not in mmHg (median outside 20-250).
    CatalogError
        Age or sex out of the model's range (see :func:`langewouters_parameters`).

    Notes
    -----
    Wesseling et al. (1983), Adv Cardiovasc Phys 5:16-52 (systolic area over
    characteristic impedance); Langewouters et al. (1984), J Biomech 17:425-435
    (impedance from age and sex); Weissler et al. (1968), Circulation 37:149-159
    (ejection time when no notch is found).
    """
    x = _check_pressure(abp, fs)
    fs = float(fs)
    on, notch = _same_shape(onset=onset, t_notch=t_notch)
    n = on.size
    base = None if dbp is None else _same_shape(onset=on, dbp=dbp)[1]
    langewouters_parameters(age, sex)  # errors before any work
    nan = np.full(n, np.nan)
    out = {
        "sv": nan.copy(),
        "systolic_area": nan.copy(),
        "map": nan.copy(),
        "z0": nan.copy(),
        "t_end_ejection": nan.copy(),
        "ejection_source": np.zeros(n, dtype=np.int8),
        "reason": "",
    }
    if n < 2 or x.size < 2:
        out["reason"] = f"{n} pulse onset(s) and {x.size} pressure sample(s): no complete beat"
        return out
    bad = ~np.isfinite(x)
    xf = np.where(bad, 0.0, x)
    # cumulative trapezoid integral (mmHg.s) and cumulative count of NaN samples
    cum = np.r_[0.0, np.cumsum(0.5 * (xf[1:] + xf[:-1]) / fs)]
    cum_bad = np.r_[0, np.cumsum(bad[1:] | bad[:-1])].astype(float)
    nxt = np.r_[on[1:], np.nan]
    end = end_of_ejection(on, notch, nxt - on, sex, tolerance=tolerance)
    t_es = end["t"]
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(nxt) & (t_es > on) & (t_es < nxt)
    i_on = _integral_at(cum, on, fs, x.size)
    i_es = _integral_at(cum, t_es, fs, x.size)
    i_nx = _integral_at(cum, nxt, fs, x.size)
    touched = (_integral_at(cum_bad, nxt, fs, x.size) - _integral_at(cum_bad, on, fs, x.size)) > 0
    p_on = np.interp(on, np.arange(x.size) / fs, xf, left=np.nan, right=np.nan)
    baseline = p_on if base is None else base
    with np.errstate(invalid="ignore", divide="ignore"):
        area = (i_es - i_on) - baseline * (t_es - on)
        mean_p = (i_nx - i_on) / (nxt - on)
        ok = inside & ~touched & np.isfinite(area) & (area > 0) & np.isfinite(mean_p)
        z0 = aortic_characteristic_impedance(np.where(ok, mean_p, np.nan), age, sex)
        sv = area / z0
    out["sv"] = np.where(ok, sv, np.nan)
    out["systolic_area"] = np.where(ok, area, np.nan)
    out["map"] = np.where(ok, mean_p, np.nan)
    out["z0"] = np.where(ok, z0, np.nan)
    out["t_end_ejection"] = t_es
    out["ejection_source"] = end["source"]
    if not ok.any():
        out["reason"] = "no beat with both onsets, an end of ejection and clean samples"
    return out


# --------------------------------------------------------------------------------------
# cardiac output, resistance, calibration, epoch summary
# --------------------------------------------------------------------------------------


def cardiac_output(sv_ml, rr_ms) -> np.ndarray:
    """Cardiac output of each beat: stroke volume times heart rate.

    Parameters
    ----------
    sv_ml : array-like
        Stroke volume (mL).
    rr_ms : array-like
        Duration of the same beat (ms), broadcastable with ``sv_ml``.

    Returns
    -------
    numpy.ndarray
        CO (L/min) = ``sv_ml * 60 / rr_ms`` (mL/ms is L/s); NaN where ``rr_ms`` is not
        positive.
    """
    sv = np.asarray(sv_ml, dtype=float)
    rr = np.asarray(rr_ms, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rr > 0, sv * 60.0 / rr, np.nan)


def total_peripheral_resistance(map_mmhg, co_l_min) -> np.ndarray:
    """Total peripheral resistance: mean arterial pressure over cardiac output.

    Parameters
    ----------
    map_mmhg : array-like
        Mean arterial pressure (mmHg).
    co_l_min : array-like
        Cardiac output (L/min), broadcastable.

    Returns
    -------
    numpy.ndarray
        TPR (mmHg.min/L) = MAP / CO, with the central venous pressure taken as 0 (as
        Modelflow does); NaN where CO is not positive. Multiply by
        :data:`DYN_S_CM5_PER_MMHG_MIN_L` (79.99; :func:`tpr_to_dyn`) for dyn.s/cm5.
    """
    m = np.asarray(map_mmhg, dtype=float)
    co = np.asarray(co_l_min, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(co > 0, m / co, np.nan)


def tpr_to_dyn(tpr_mmhg_min_l) -> np.ndarray:
    """TPR from mmHg.min/L to dyn.s/cm5 (x 79.99: 1333.22 dyn/cm2 per mmHg, 1 L/min =
    16.67 cm3/s)."""
    return np.asarray(tpr_mmhg_min_l, dtype=float) * DYN_S_CM5_PER_MMHG_MIN_L


def stroke_volume_calibration(sv_reference_ml, sv_uncalibrated, *, min_beats=MIN_BEATS) -> dict:
    """Per-subject calibration factor of pulse-contour stroke volume.

    Parameters
    ----------
    sv_reference_ml : float
        Reference stroke volume of the subject in one session and epoch (mL), e.g.
        echocardiography from the campaign's measurement table.
    sv_uncalibrated : array-like
        Uncalibrated pulse-contour stroke volume of the beats of the same session
        and epoch (mL), shape ``(n,)``; NaN beats ignored.
    min_beats : int
        Fewest finite beats for a factor.

    Returns
    -------
    dict
        ``factor`` (1): ``sv_reference_ml / mean(sv_uncalibrated)``; multiply the
        subject's uncalibrated stroke volumes (and cardiac outputs; divide TPRs) by it.
        ``n_beats`` (int) and ``reason`` ("" or why ``factor`` is NaN).

    Raises
    ------
    CatalogError
        If the reference is not a positive finite volume (field ``sv_reference``).

    Notes
    -----
    The single-point calibration of Modelflow against thermodilution (Wesseling et
    al. 1993, J Appl Physiol 74:2566: one comparison per patient), here against echo.
    """
    try:
        ref = float(sv_reference_ml)
    except (TypeError, ValueError):
        raise CatalogError(
            f"reference stroke volume {sv_reference_ml!r} is not a number", field="sv_reference"
        ) from None
    if not np.isfinite(ref) or ref <= 0:
        raise CatalogError(
            f"reference stroke volume {ref:g} mL must be positive", field="sv_reference"
        )
    sv = np.asarray(sv_uncalibrated, dtype=float).ravel()
    sv = sv[np.isfinite(sv)]
    if sv.size < min_beats:
        return {
            "factor": np.nan,
            "n_beats": int(sv.size),
            "reason": f"{sv.size} beats with a stroke volume, fewer than {min_beats}",
        }
    return {"factor": ref / float(np.mean(sv)), "n_beats": int(sv.size), "reason": ""}


def stroke_volume_features(sv, rr, map_, *, min_beats=MIN_BEATS) -> dict:
    """Epoch stroke volume, cardiac output and total peripheral resistance.

    Parameters
    ----------
    sv : array-like
        Stroke volume per beat (mL, calibrated or not), shape ``(n,)``; NaN for
        excluded beats.
    rr : array-like
        Beat duration (ms), shape ``(n,)`` (the beat table's ``rr`` is the interval
        ending at the R-peak, one beat off: epoch means barely differ).
    map_ : array-like
        Mean arterial pressure per beat (mmHg), shape ``(n,)``.
    min_beats : int
        Fewest beats with finite ``sv``, ``rr`` and ``map_``.

    Returns
    -------
    dict
        ``sv`` (mean, mL), ``co`` (total volume over total time: 60 sum(sv) / sum(rr),
        L/min), ``tpr`` (mean MAP / CO, mmHg.min/L), ``n_beats_sv`` and ``reason``
        ("" or why the values are NaN).

    Raises
    ------
    SessionFormatError
        If the arrays differ in shape.
    """
    s, r, m = _same_shape(sv=sv, rr=rr, map_=map_)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(s) & np.isfinite(r) & np.isfinite(m) & (r > 0)
    n = int(ok.sum())
    if n < min_beats:
        return {
            "sv": np.nan,
            "co": np.nan,
            "tpr": np.nan,
            "n_beats_sv": n,
            "reason": f"{n} beats with stroke volume, RR and MAP, fewer than {min_beats}",
        }
    co = float(cardiac_output(s[ok].sum(), r[ok].sum()))
    return {
        "sv": float(np.mean(s[ok])),
        "co": co,
        "tpr": float(total_peripheral_resistance(np.mean(m[ok]), co)),
        "n_beats_sv": n,
        "reason": "",
    }


def pulse_contour_reliable(phase: str) -> bool:
    """Whether pulse-contour stroke volume can be trusted in a mission phase.

    Parameters
    ----------
    phase : {"pre", "in", "post"}
        The session's mission phase (session attribute ``phase``).

    Returns
    -------
    bool
        False in flight (``"in"``): pulse-contour stroke volume (Modelflow) is known
        to fail in microgravity (../shared/SCIENCE.md), so in-flight values must be
        flagged; True before and after flight.

    Raises
    ------
    CatalogError
        An unknown phase (field ``phase``).
    """
    if phase not in PHASES:
        raise CatalogError(f"phase {phase!r} is not one of {tuple(PHASES)}", field="phase")
    return phase != "in"


def calibrate_stroke_volume(table, reference: str = "sv_echo", *, epoch: str = "supine"):
    """Calibrate a features table's pulse-contour SV, CO and TPR per subject.

    Each subject's factor is its reference stroke volume (e.g. echocardiography, a
    column of the catalog's measurement tables) over its pulse-contour ``sv`` in the
    same session and epoch (:func:`stroke_volume_calibration`, single-point as
    Wesseling et al. 1993), from the earliest session
    (:func:`cardiolab.labels.schedule_order`) where both exist. A reference given for the whole session (epoch ``"session"``) is compared
    with ``sv`` of ``epoch``.

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`) with ``sv``,
        ``co``, ``tpr`` and the ``reference`` column (mL).
    reference : str
        The reference stroke volume column (mL).
    epoch : str
        The epoch whose ``sv`` a whole-session reference is compared with.

    Returns
    -------
    pandas.DataFrame
        A copy with ``sv_cal`` (mL), ``co_cal`` (L/min) and ``tpr_cal`` (mmHg.min/L):
        the subject's values times (TPR: divided by) its factor, NaN for subjects
        without a usable reference; ``attrs["sv_calibration"]``: per subject the
        ``session``, ``epoch``, ``factor`` used or the ``reason`` it has none.

    Raises
    ------
    KeyError
        If the table lacks ``sv``, ``co``, ``tpr`` or the reference column.
    """
    import pandas as pd

    missing = [c for c in ("sv", "co", "tpr", reference) if c not in table.columns]
    if missing:
        raise KeyError(f"features table has no column(s) {missing} to calibrate stroke volume")
    out = table.copy()
    position = {label: i for i, label in enumerate(schedule_order(out))}
    rank = out["session"].astype(str).map(position).to_numpy(dtype=float)
    ranked = out.iloc[np.argsort(rank, kind="stable")]
    calibration = {}
    factors = pd.Series(np.nan, index=out.index)
    for subject, rows in ranked.groupby("subject", sort=False):
        found = None
        for session, srows in rows.groupby("session", sort=False):
            refs = srows[srows[reference].notna()]
            for _, r in refs.iterrows():
                at = r["epoch"] if r["epoch"] != "session" else epoch
                sv = srows.loc[srows["epoch"] == at, "sv"]
                if len(sv) and np.isfinite(sv.iloc[0]) and sv.iloc[0] > 0:
                    factor = stroke_volume_calibration(r[reference], [sv.iloc[0]], min_beats=1)
                    found = (session, at, factor["factor"])
                    break
            if found:
                break
        if found is None:
            calibration[subject] = {"reason": f"no session with both {reference} and sv"}
            continue
        calibration[subject] = {"session": found[0], "epoch": found[1], "factor": found[2]}
        factors[out["subject"] == subject] = found[2]
    out["sv_cal"] = out["sv"] * factors
    out["co_cal"] = out["co"] * factors
    out["tpr_cal"] = out["tpr"] / factors
    units = dict(table.attrs.get("units", {}))
    units.update(sv_cal="mL", co_cal="L/min", tpr_cal="mmHg.min/L")
    out.attrs = {**table.attrs, "units": units, "sv_calibration": calibration}
    return out
