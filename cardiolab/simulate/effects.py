"""Effect sizes of the simulator: the population truth behind a simulated campaign.

Each quantity (named as the features will be) has, per protocol epoch, a pre-flight
level and two exponential time courses:

* in flight (or in head-down bed rest), ``y = pre + A * (1 - exp(-day / tau_a))``;
* after landing, ``y = pre + D * exp(-day / tau_r)``;

where ``day`` is the session's day relative to its phase anchor (launch, landing).
Subjects differ by a random intercept: subject ``i`` has ``pre_i = pre * (1 + between_sd
* z_i)``, ``z_i ~ N(0, 1)``, one ``z_i`` per quantity shared by its epochs.

Defaults follow ../shared/SCIENCE.md: supine HR +3 bpm in flight and +5 bpm after
landing; a stand-test HR rise 11 bpm larger than pre-flight at R+0; in-flight SBP
-12 mmHg; BRS -30 % after landing with slow recovery; skin endothelial (NO-dependent)
vasomotion power -32 % after landing (bed-rest ACh response 35.4 % -> 24.1 %). In
microgravity there is no hydrostatic gradient, so the "stand" epoch of an in-flight
session takes the in-flight supine value within about a day (``tau_a`` 0.5 d).

Per-session measurements (:data:`MEASURED_QUANTITIES`, written to the campaign's
measurement table, :mod:`cardiolab.measurements`) follow the same model and random
intercept, in the epoch ``"session"``:

* carotid intima-media thickness 0.56 mm before flight, 0.65 mm in flight (+16 %),
  still 0.65 mm at R+4 and 0.57 mm at R+6 months (Arbeille et al. 2016, Aerosp Med
  Hum Perform 87:449; Arbeille et al. 2025, Front Physiol 16:1638531; between-subject
  SD 0.09 mm = 16 %). Already +12 % at FD15: ``tau_a`` 5 d. ``D`` 0.09 mm (the
  in-flight level at landing) with ``tau_r`` 40 d (*inferred*: about 0.08 mm left at
  R+4, 0.001 mm at R+180). Confinement keeps the change: Mars-500 (520 days, 1 g)
  found +14 to +28 % (Arbeille et al. 2014, PLoS ONE 9:e83063).
* internal jugular vein cross-sectional area +178 % at FD15 and +225 % at 4-5.5
  months, back to baseline 4 days after landing (Arbeille et al. 2015, Eur J Appl
  Physiol 115:2099): ``A`` +200 % with ``tau_a`` 0.5 d (a fluid shift: hours). The
  pre-flight level 0.40 cm2 is *inferred* (between the 0.12 cm2 seated and 1.03 cm2
  supine of Martin et al. 2020, Front Physiol 11:863); ``D`` +20 % with ``tau_r``
  1 d (*inferred*: plasma volume is back within 24-48 h); between-subject SD 20 %.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import CardiolabError
from ..measurements import SESSION_EPOCH
from .waveforms import TEMPLATE_MEAN

__all__ = [
    "EFFECT_COLUMNS",
    "MEASURED_QUANTITIES",
    "QUANTITIES",
    "EPOCHS",
    "default_effects",
    "apply_effect_overrides",
    "time_course",
    "derive_map",
    "MAP_FORM_FACTOR",
]

EFFECT_COLUMNS = ["pre", "A", "tau_a", "D", "tau_r", "between_sd"]
EPOCHS = ("supine", "stand")

#: quantity -> (units, long_name)
QUANTITIES = {
    "hr": ("bpm", "heart rate"),
    "sbp": ("mmHg", "systolic blood pressure"),
    "dbp": ("mmHg", "diastolic blood pressure"),
    "map": ("mmHg", "mean arterial pressure"),
    "brs": ("ms/mmHg", "baroreflex sensitivity"),
    "flux": ("PU", "mean laser Doppler skin flux"),
    "ldf_endothelial_power": (
        "PU2",
        "LDF power in the endothelial NO-dependent band (0.0095-0.021 Hz)",
    ),
    "femoral_psv": ("cm/s", "femoral artery peak systolic velocity"),
    "femoral_ri": ("1", "femoral artery resistive index"),
    "mca_psv": ("cm/s", "middle cerebral artery peak systolic velocity"),
    "mca_ri": ("1", "middle cerebral artery resistive index"),
}

#: Per-session measurements (one value per session, epoch ``"session"``), written to the
#: campaign's measurement table: quantity -> (units, long_name).
MEASURED_QUANTITIES = {
    "carotid_imt": ("mm", "common carotid artery intima-media thickness"),
    "jugular_vein_area": ("cm2", "internal jugular vein cross-sectional area"),
}

#: Measurements whose spaceflight change confinement keeps (no gravity in the cause).
_CONFINEMENT_KEEPS = ("carotid_imt",)

#: Quantities computed from others rather than drawn (``map`` from ``sbp`` and ``dbp``).
DERIVED = ("map",)

#: Mean of the normalised arterial pressure pulse over a beat: MAP = DBP + k * PP for
#: the simulator's waveform (k measured on that waveform; the textbook 1/3 is close).
MAP_FORM_FACTOR = TEMPLATE_MEAN["pressure"]

# quantity, epoch: pre, A, tau_a (d), D, tau_r (d), between_sd (fraction of pre)
_SPACEFLIGHT = {
    ("hr", "supine"): (62.0, 3.0, 4.0, 5.0, 3.0, 0.12),
    ("hr", "stand"): (74.0, -9.0, 0.5, 16.0, 4.0, 0.12),
    ("sbp", "supine"): (118.0, -12.0, 3.0, -2.0, 2.0, 0.10),
    ("sbp", "stand"): (121.0, -15.0, 3.0, -9.0, 3.0, 0.10),
    ("dbp", "supine"): (72.0, -1.0, 3.0, -1.0, 2.0, 0.10),
    ("dbp", "stand"): (79.0, -8.0, 3.0, -6.0, 3.0, 0.10),
    ("brs", "supine"): (12.0, -1.5, 10.0, -3.6, 12.0, 0.15),
    ("brs", "stand"): (7.0, 3.5, 0.5, -2.1, 12.0, 0.15),
    ("flux", "supine"): (14.0, 2.0, 3.0, -2.5, 5.0, 0.20),
    ("flux", "stand"): (10.0, 6.0, 0.5, -2.0, 5.0, 0.20),
    ("ldf_endothelial_power", "supine"): (4.0, -1.0, 10.0, -1.3, 10.0, 0.20),
    ("ldf_endothelial_power", "stand"): (2.5, 0.5, 0.5, -0.8, 10.0, 0.20),
    ("femoral_psv", "supine"): (90.0, -5.0, 5.0, 5.0, 3.0, 0.15),
    ("femoral_psv", "stand"): (75.0, 10.0, 0.5, -5.0, 3.0, 0.15),
    ("femoral_ri", "supine"): (0.92, -0.07, 5.0, -0.03, 3.0, 0.03),
    ("femoral_ri", "stand"): (0.96, -0.11, 0.5, -0.02, 3.0, 0.03),
    ("mca_psv", "supine"): (95.0, 3.0, 5.0, -8.0, 7.0, 0.15),
    ("mca_psv", "stand"): (85.0, 13.0, 0.5, -10.0, 7.0, 0.15),
    ("mca_ri", "supine"): (0.55, -0.02, 5.0, 0.04, 7.0, 0.05),
    ("mca_ri", "stand"): (0.58, -0.05, 0.5, 0.05, 7.0, 0.05),
    ("carotid_imt", SESSION_EPOCH): (0.56, 0.09, 5.0, 0.09, 40.0, 0.16),
    ("jugular_vein_area", SESSION_EPOCH): (0.40, 0.80, 0.5, 0.08, 1.0, 0.20),
}


def derive_map(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``map`` computed from ``sbp`` and ``dbp`` rows of an effects table.

    With the simulator's waveform MAP = DBP + k (SBP - DBP) exactly, so the MAP time
    course is an exponential of the same form when SBP and DBP share their time
    constants (the simulator uses the SBP time constants for DBP).
    """
    k = MAP_FORM_FACTOR
    rows = {}
    for epoch in table.loc["sbp"].index:
        s = table.loc[("sbp", epoch)]
        d = table.loc[("dbp", epoch)]
        rows[("map", epoch)] = {
            "pre": d["pre"] + k * (s["pre"] - d["pre"]),
            "A": d["A"] + k * (s["A"] - d["A"]),
            "tau_a": s["tau_a"],
            "D": d["D"] + k * (s["D"] - d["D"]),
            "tau_r": s["tau_r"],
            "between_sd": s["between_sd"],
        }
    out = pd.DataFrame.from_dict(rows, orient="index")[EFFECT_COLUMNS]
    out.index = pd.MultiIndex.from_tuples(out.index, names=["quantity", "epoch"])
    return out


def default_effects(kind: str = "spaceflight") -> pd.DataFrame:
    """The default effects table of a campaign kind.

    Parameters
    ----------
    kind : {"spaceflight", "bedrest", "confinement"}
        Head-down bed rest takes the spaceflight effects (it is built to mimic them);
        confinement has no change of gravity, so its changes are a fifth of the
        spaceflight supine changes in both epochs and the stand response is kept
        (measurements: a fifth of their own change, except carotid IMT, which
        confinement raises too).

    Returns
    -------
    pandas.DataFrame
        Indexed by (quantity, epoch), columns :data:`EFFECT_COLUMNS`; ``tau_a`` and
        ``tau_r`` in days, ``between_sd`` a fraction of ``pre``, the rest in the
        quantity's units (:data:`QUANTITIES`).
    """
    if kind not in ("spaceflight", "bedrest", "confinement"):
        raise CardiolabError(f"unknown campaign kind {kind!r}")
    table = pd.DataFrame.from_dict(_SPACEFLIGHT, orient="index", columns=EFFECT_COLUMNS)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["quantity", "epoch"])
    if kind == "confinement":
        for q in table.index.get_level_values("quantity").unique():
            if q in MEASURED_QUANTITIES:
                if q not in _CONFINEMENT_KEEPS:
                    table.loc[(q, SESSION_EPOCH), ["A", "D"]] *= 0.2
                continue
            sup = table.loc[(q, "supine")]
            for epoch in EPOCHS:
                table.loc[(q, epoch), "A"] = 0.2 * sup["A"]
                table.loc[(q, epoch), "D"] = 0.2 * sup["D"]
                table.loc[(q, epoch), "tau_a"] = sup["tau_a"]
                table.loc[(q, epoch), "tau_r"] = sup["tau_r"]
    return _with_map(table)


def _with_map(table: pd.DataFrame) -> pd.DataFrame:
    table = table.drop(index="map", level="quantity", errors="ignore")
    # DBP follows SBP's time constants so that MAP is an exact exponential too.
    for epoch in table.loc["dbp"].index:
        table.loc[("dbp", epoch), ["tau_a", "tau_r"]] = table.loc[
            ("sbp", epoch), ["tau_a", "tau_r"]
        ].to_numpy()
    full = pd.concat([table, derive_map(table)])
    present = full.index.get_level_values("quantity")
    order = [q for q in (*QUANTITIES, *MEASURED_QUANTITIES) if q in present]
    return full.loc[order]


def apply_effect_overrides(table: pd.DataFrame, effects: Mapping | None) -> pd.DataFrame:
    """Return a copy of ``table`` with user overrides applied.

    Parameters
    ----------
    table : pandas.DataFrame
        An effects table (see :func:`default_effects`).
    effects : mapping, optional
        ``{quantity: {column: value}}`` applies to every epoch of the quantity (the
        measurements have one: ``"session"``); ``{(quantity, epoch): {column: value}}``
        to one epoch. ``map`` cannot be set:
        it follows from ``sbp`` and ``dbp``, whose time constants it shares.

    Raises
    ------
    CardiolabError
        For an unknown quantity, epoch or column, or a non-finite value.
    """
    out = table.copy()
    if not effects:
        return out
    quantities = [q for q in out.index.get_level_values("quantity").unique()]
    for key, changes in effects.items():
        quantity = key[0] if isinstance(key, tuple) else key
        if quantity in DERIVED:
            raise CardiolabError(
                f"effects[{key!r}]: {quantity!r} is derived from sbp and dbp; set those instead"
            )
        if quantity not in quantities:
            raise CardiolabError(
                f"effects[{key!r}]: unknown quantity {quantity!r}; known: {quantities}"
            )
        epochs = list(out.loc[quantity].index)
        targets = [key[1]] if isinstance(key, tuple) else epochs
        for epoch in targets:
            if epoch not in epochs:
                raise CardiolabError(f"effects[{key!r}]: unknown epoch {epoch!r}; known: {epochs}")
        if not isinstance(changes, Mapping):
            raise CardiolabError(f"effects[{key!r}] must map column names to values")
        for column, value in changes.items():
            if column not in EFFECT_COLUMNS:
                raise CardiolabError(
                    f"effects[{key!r}]: unknown column {column!r}; known: {EFFECT_COLUMNS}"
                )
            value = float(value)
            if not np.isfinite(value):
                raise CardiolabError(f"effects[{key!r}][{column!r}] must be finite")
            if column in ("tau_a", "tau_r") and value <= 0:
                raise CardiolabError(f"effects[{key!r}][{column!r}] must be > 0 days")
            if column == "between_sd" and value < 0:
                raise CardiolabError(f"effects[{key!r}][{column!r}] must be >= 0")
            for epoch in targets:
                out.loc[(quantity, epoch), column] = value
    return _with_map(out)


def time_course(pre, A, tau_a, D, tau_r, phase, day):
    """Evaluate the adaptation/recovery model.

    Parameters
    ----------
    pre, A, tau_a, D, tau_r : float or array-like
        Model parameters (``tau_*`` in days).
    phase : str or array-like of str
        ``"pre"``, ``"in"`` or ``"post"``.
    day : float or array-like
        Days from the phase anchor.

    Returns
    -------
    numpy.ndarray or float
        ``pre`` before flight, ``pre + A (1 - exp(-day/tau_a))`` in flight and
        ``pre + D exp(-day/tau_r)`` after landing.
    """
    phase = np.asarray(phase)
    day = np.asarray(day, dtype=float)
    pre = np.asarray(pre, dtype=float)
    inflight = np.where(phase == "in", A * (1.0 - np.exp(-np.clip(day, 0, None) / tau_a)), 0.0)
    post = np.where(phase == "post", D * np.exp(-np.clip(day, 0, None) / tau_r), 0.0)
    out = pre + inflight + post
    return out.item() if out.ndim == 0 else out
