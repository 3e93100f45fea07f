"""The units cardiolab knows, and the one explicit table that converts them.

Each raw group of the session data model has one canonical unit (ECG in mV, arterial
pressure in mmHg, laser Doppler flux in PU, Doppler velocity in cm/s, time in s),
except respiration, which keeps the unit it was recorded in (a belt's V or arbitrary
units ``"1"``, a spirometer's L or L/s). Readers convert what a file declares into the
group's unit with :func:`conversion_factor`; a unit missing from the table is an error,
never a guess. The beat-to-beat variables
of a ``beats`` group (:data:`cardiolab.schema.BEAT_FIELDS`) have their own units (RR
in ms, heart rate in bpm, stroke volume in mL, cardiac output in L/min, peripheral
resistance in mmHg.min/L); :func:`unit_ratio` converts between two units of one
quantity.

Lengths (mm) and areas (mm2) are here for the per-session measurements of catalog
measurement tables (:mod:`cardiolab.measurements`): carotid intima-media thickness and
vessel diameters in mm (or um, cm), vein cross-sectional areas in mm2 or cm2, the units
ultrasound studies report them in.
"""

from __future__ import annotations

from .errors import UnitError

__all__ = [
    "CANONICAL_UNITS",
    "UNIT_FACTORS",
    "normalise_unit",
    "conversion_factor",
    "unit_ratio",
]

#: Canonical unit of each physical quantity.
CANONICAL_UNITS = {
    "voltage": "mV",
    "pressure": "mmHg",
    "perfusion": "PU",
    "velocity": "cm/s",
    "time": "s",
    "heart_rate": "bpm",
    "volume": "mL",
    "flow": "L/min",
    "resistance": "mmHg.min/L",
    "length": "mm",
    "area": "mm2",
    "dimensionless": "1",
}

#: 1 mmHg.min/L in dyn.s/cm5: 133.322387415 Pa * 60 s / 1e-3 m3 = 7.99934e6 Pa.s/m3, and
#: 1 dyn.s/cm5 = 1e-5 N * s / 1e-10 m5 = 1e5 Pa.s/m3 (Finapres' "medical unit" and CGS TPR)
_DYN_PER_MU = 133.322387415 * 60.0 / 1e-3 / 1e5

#: unit -> (quantity, factor that multiplies a value in this unit to give canonical)
UNIT_FACTORS: dict[str, tuple[str, float]] = {
    "V": ("voltage", 1e3),
    "mV": ("voltage", 1.0),
    "uV": ("voltage", 1e-3),
    "nV": ("voltage", 1e-6),
    "mmHg": ("pressure", 1.0),
    "kPa": ("pressure", 1000.0 / 133.322387415),
    "Pa": ("pressure", 1.0 / 133.322387415),
    "cmH2O": ("pressure", 98.0665 / 133.322387415),
    "PU": ("perfusion", 1.0),
    "m/s": ("velocity", 100.0),
    "cm/s": ("velocity", 1.0),
    "mm/s": ("velocity", 0.1),
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "bpm": ("heart_rate", 1.0),
    "mL": ("volume", 1.0),
    "L": ("volume", 1000.0),
    "L/min": ("flow", 1.0),
    "mL/min": ("flow", 1e-3),
    "L/s": ("flow", 60.0),  # spirometer / pneumotachograph airflow
    "mL/s": ("flow", 0.06),
    "mmHg.min/L": ("resistance", 1.0),
    "mmHg.s/mL": ("resistance", 1000.0 / 60.0),  # peripheral resistance unit (PRU)
    "dyn.s/cm5": ("resistance", 1.0 / _DYN_PER_MU),
    "cm": ("length", 10.0),
    "mm": ("length", 1.0),
    "um": ("length", 1e-3),
    "cm2": ("area", 100.0),
    "mm2": ("area", 1.0),
    "1": ("dimensionless", 1.0),  # arbitrary units (uncalibrated belts, inductance bands)
}

# Spellings met in EDF, WFDB and CSV headers, mapped to the table's names. Only
# spellings, never a change of scale.
_ALIASES = {
    "µV": "uV",
    "μV": "uV",
    "microvolt": "uV",
    "millivolt": "mV",
    "mv": "mV",
    "uv": "uV",
    "volt": "V",
    "volts": "V",  # BIOPAC AcqKnowledge writes "Volts"
    "mm Hg": "mmHg",
    "mmhg": "mmHg",
    "mm[Hg]": "mmHg",
    "kpa": "kPa",
    "cmh2o": "cmH2O",
    "cm H2O": "cmH2O",
    "pu": "PU",
    "perfusion units": "PU",
    "cm s-1": "cm/s",
    "cm.s-1": "cm/s",
    "m s-1": "m/s",
    "mm s-1": "mm/s",
    "sec": "s",
    "second": "s",
    "seconds": "s",
    "msec": "ms",
    "beats/min": "bpm",
    "1/min": "bpm",
    "min-1": "bpm",
    "ml": "mL",
    "l": "L",
    "l/min": "L/min",
    "ml/min": "mL/min",
    "mmhg.min/l": "mmHg.min/L",
    "mmhg·min/l": "mmHg.min/L",
    "mmhg*min/l": "mmHg.min/L",
    "mmhg min/l": "mmHg.min/L",
    "mmhg.s/ml": "mmHg.s/mL",
    "mmhg·s/ml": "mmHg.s/mL",
    "pru": "mmHg.s/mL",
    "dyn·s/cm5": "dyn.s/cm5",
    "dyn·s·cm-5": "dyn.s/cm5",
    "dyn s cm-5": "dyn.s/cm5",
    "µm": "um",
    "μm": "um",
    "micrometre": "um",
    "micrometer": "um",
    "mm²": "mm2",
    "mm^2": "mm2",
    "cm²": "cm2",
    "cm^2": "cm2",
    "l/s": "L/s",
    "ml/s": "mL/s",
    "a.u.": "1",
    "au": "1",
    "arbitrary units": "1",
    "arbitrary unit": "1",
}

#: Quantity of each raw group of the data model; ``None``: the group keeps the unit it
#: was recorded in (any unit of the table), as respiration does (belts in V or arbitrary
#: units, spirometers in L or L/s, nasal pressure in cmH2O): see
#: :data:`cardiolab.schema.RAW_GROUPS`.
GROUP_QUANTITY = {
    "ecg": "voltage",
    "abp": "pressure",
    "ldf": "perfusion",
    "doppler": "velocity",
    "resp": None,
}


def normalise_unit(unit: str) -> str:
    """Return the table's spelling of ``unit`` (``"µV"`` -> ``"uV"``).

    Raises
    ------
    UnitError
        If the unit is not in the table.
    """
    text = str(unit).strip()
    if text in UNIT_FACTORS:
        return text
    alias = _ALIASES.get(text) or _ALIASES.get(text.lower())
    if alias is None:
        known = ", ".join(sorted(UNIT_FACTORS))
        raise UnitError(f"unknown unit {unit!r} (known units: {known})")
    return alias


def conversion_factor(unit: str, quantity: str) -> float:
    """Factor that converts a value in ``unit`` to the canonical unit of ``quantity``.

    Parameters
    ----------
    unit : str
        The unit a file or catalog declares.
    quantity : str
        ``"voltage"``, ``"pressure"``, ``"perfusion"``, ``"velocity"``, ``"time"``,
        ``"length"`` or ``"area"``, or the name of a raw group (``"ecg"``, ``"abp"``,
        ``"ldf"``, ``"doppler"``, ``"resp"``).

    Returns
    -------
    float
        Multiply values in ``unit`` by this to obtain ``CANONICAL_UNITS[quantity]``.
        For a group that keeps its recorded unit (``GROUP_QUANTITY[group] is None``:
        ``resp``), 1.0 for any unit of the table: the values stay in ``unit``.

    Raises
    ------
    UnitError
        If the unit is unknown, or measures another quantity (mmHg for an ECG).
    """
    if quantity in GROUP_QUANTITY and GROUP_QUANTITY[quantity] is None:
        normalise_unit(unit)  # any known unit; an unknown one is an error
        return 1.0
    quantity = GROUP_QUANTITY.get(quantity, quantity)
    if quantity not in CANONICAL_UNITS:
        raise UnitError(f"unknown quantity {quantity!r}")
    name = normalise_unit(unit)
    unit_quantity, factor = UNIT_FACTORS[name]
    if unit_quantity != quantity:
        raise UnitError(
            f"unit {unit!r} measures {unit_quantity}, not {quantity} "
            f"(expected a unit convertible to {CANONICAL_UNITS[quantity]})"
        )
    return factor


def unit_ratio(unit: str, target: str) -> float:
    """Factor that converts a value in ``unit`` to ``target``, a unit of the same quantity.

    Parameters
    ----------
    unit : str
        The unit a file or catalog declares (``"s"``).
    target : str
        The unit wanted (``"ms"``).

    Returns
    -------
    float
        Multiply values in ``unit`` by this to obtain ``target`` (``unit_ratio("s",
        "ms") == 1000``).

    Raises
    ------
    UnitError
        If either unit is unknown, or they measure different quantities.
    """
    target_quantity, target_factor = UNIT_FACTORS[normalise_unit(target)]
    return conversion_factor(unit, target_quantity) / target_factor
