"""The session data model: names, units, attributes and their validation.

A campaign is an :class:`xarray.DataTree` ``/<subject>/<session>/<group>``. A session
node carries the attributes in :data:`SESSION_ATTRS` and holds one Dataset per raw
group, each with its own ``time`` coordinate (float seconds from the session start,
``units: s``) and a ``sampling_rate`` attribute in Hz:

=========  ============  =======  ===============================================
group      variable      units    notes
=========  ============  =======  ===============================================
ecg        ``ecg``       mV       one lead; extra leads as dimension ``lead``
abp        ``abp``       mmHg     continuous finger arterial pressure
ldf        ``flux``      PU       laser Doppler skin perfusion
doppler    ``velocity``  cm/s     max-velocity envelope, dims (``vessel``, time)
resp       ``resp``      any      respiration (belt, spirometer, nasal pressure),
                                  in the unit it was recorded in (see below)
protocol   ``start``,    s        dim ``epoch`` (the epoch labels), plus ``label``
           ``stop``
beats      ``t`` and     s, ...   dim ``beat``; no sampling rate (see below)
           any of
           :data:`BEAT_FIELDS`
=========  ============  =======  ===============================================

Every data variable carries ``units`` and ``long_name``.

Respiration has no one canonical unit: a strain-gauge or piezo belt records volts
(BIOPAC's RSP100C writes ``Volts``) or arbitrary units, an inductance band arbitrary
units, a spirometer litres (volume) or litres per second (flow), a nasal cannula
cmH2O. The respiratory features (rate, RSA, the HF band) use only its timing, so the
``resp`` group keeps the recorded unit in the table spelling of :mod:`cardiolab.units`
(``"V"``, ``"1"`` for arbitrary units, ``"L"``, ``"L/s"``, ``"cmH2O"``); an unknown
unit is still an error, never a guess. Its :attr:`GroupSpec.units` is ``None``.

Beat-level sessions (R-R interval files, beat-to-beat haemodynamic exports) come as
beats, not waveforms: their ``beats`` group has dim ``beat``, the beat times ``t`` (s
from the session start: the R-peak, or the beat onset the device reports) and any of
the variables of :data:`BEAT_FIELDS` in their units (``rr`` is the interval *ending*
at the beat, as in the beat table). A session needs at least one waveform group or a
``beats`` group; it may hold both. :func:`validate_session` reads the beat times (one
number per beat, small) to check they increase strictly, and ``rr`` to check it is
positive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .errors import SessionFormatError, UnitError
from .labels import PHASES, LabelError, parse_session_label
from .units import normalise_unit

__all__ = [
    "GroupSpec",
    "RAW_GROUPS",
    "BEAT_GROUP",
    "BEAT_FIELDS",
    "SESSION_ATTRS",
    "POSTURES",
    "MAX_SAMPLES",
    "check_sampling_rate",
    "check_n_samples",
    "time_coordinate",
    "signal_group",
    "group_units",
    "protocol_group",
    "beats_group",
    "session_node",
    "validate_session",
    "recording_end",
    "validate_campaign",
    "iter_sessions",
]


@dataclass(frozen=True)
class GroupSpec:
    """What a raw group of the data model holds."""

    name: str
    variable: str
    #: canonical unit; ``None``: the recorded unit is kept (any unit of
    #: :mod:`cardiolab.units`, given to :func:`signal_group`)
    units: str | None
    long_name: str
    #: plausible sampling rates (Hz); outside is an error
    min_rate: float
    max_rate: float


RAW_GROUPS: dict[str, GroupSpec] = {
    "ecg": GroupSpec("ecg", "ecg", "mV", "electrocardiogram", 100.0, 10000.0),
    "abp": GroupSpec("abp", "abp", "mmHg", "continuous finger arterial pressure", 25.0, 2000.0),
    "ldf": GroupSpec("ldf", "flux", "PU", "laser Doppler skin perfusion", 5.0, 2000.0),
    "doppler": GroupSpec(
        "doppler", "velocity", "cm/s", "Doppler maximum-velocity envelope", 25.0, 2000.0
    ),
    # belts are sampled from a few Hz (BIOPAC RSP100C at 3.9 Hz) to the ECG's rate
    "resp": GroupSpec("resp", "resp", None, "respiration", 1.0, 10000.0),
}

#: The raw group of beat-level sessions (no waveform, no sampling rate).
BEAT_GROUP = "beats"

#: Variables of a ``beats`` group: name -> (units, long_name). ``t`` is required.
BEAT_FIELDS: dict[str, tuple[str, str]] = {
    "t": ("s", "beat time from session start (R-peak or beat onset)"),
    "rr": ("ms", "RR interval ending at this beat"),
    "sbp": ("mmHg", "systolic blood pressure"),
    "dbp": ("mmHg", "diastolic blood pressure"),
    "map": ("mmHg", "mean arterial pressure"),
    "hr": ("bpm", "heart rate"),
    "sv": ("mL", "stroke volume"),
    "co": ("L/min", "cardiac output"),
    "tpr": ("mmHg.min/L", "total peripheral resistance"),
}

#: Session node attributes and their meaning.
SESSION_ATTRS = {
    "subject": "pseudonymous subject code (e.g. S01), never a name",
    "session": "session label (e.g. L-30, FD12, R+3)",
    "phase": "mission phase: pre, in or post",
    "day": "days relative to the phase anchor (launch for pre/in, landing for post)",
    "campaign": "campaign name",
    "protocol": "name of the session's protocol (e.g. supine-stand)",
    "posture": "posture of the baseline epoch (supine, seated or standing)",
}

POSTURES = ("supine", "seated", "standing")


#: Most samples one raw group may hold: 2**31 - 1. The ``time`` coordinate of a file's
#: group is built in memory (float64, 8 bytes a sample), so this caps it at 16 GiB;
#: it is 24.8 days at 1 kHz and 2.5 days at 10 kHz, longer than any one session of the
#: campaigns cardiolab serves (a 7-day Holter ECG at 1 kHz is 6.0e8 samples). A header
#: claiming more (5e8 Hz for 1.2e11 samples: a 894 GiB time coordinate) is refused
#: before anything is allocated.
MAX_SAMPLES = 2**31 - 1


def check_sampling_rate(rate, *, source, field: str, group: str | None = None) -> float:
    """A sampling rate read from a file or given by a user, checked.

    Parameters
    ----------
    rate : float or str
        The rate (Hz).
    source : str or pathlib.Path
        The file (or session) it comes from, for the message.
    field : str
        The header field or attribute that gave it (e.g. ``"record duration"``).
    group : str, optional
        A raw group of :data:`RAW_GROUPS`: the rate must then lie in its plausible
        range (:attr:`GroupSpec.min_rate` to :attr:`GroupSpec.max_rate`).

    Returns
    -------
    float
        The rate (Hz).

    Raises
    ------
    SessionFormatError
        Not a number, not finite, <= 0, or outside the group's plausible range; the
        message names ``source`` and ``field``.
    """
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(rate, bool) or not (np.isfinite(value) and value > 0):
        raise SessionFormatError(
            f"{source}: {field} gives a sampling rate of {rate!r} Hz; it must be a finite "
            "number of Hz > 0"
        )
    spec = RAW_GROUPS.get(group) if group else None
    if spec is not None and not spec.min_rate <= value <= spec.max_rate:
        raise SessionFormatError(
            f"{source}: {field} gives a sampling rate of {value:g} Hz for group {group!r}, "
            f"outside its plausible range {spec.min_rate:g}-{spec.max_rate:g} Hz"
        )
    return value


def check_n_samples(n_samples, *, source, field: str) -> int:
    """A number of samples read from a file's header, checked against :data:`MAX_SAMPLES`.

    Raises
    ------
    SessionFormatError
        Negative, or more than :data:`MAX_SAMPLES` (the message names ``source``,
        ``field`` and the limit).
    """
    n = int(n_samples)
    if n < 0:
        raise SessionFormatError(f"{source}: {field} gives {n} samples (negative)")
    if n > MAX_SAMPLES:
        raise SessionFormatError(
            f"{source}: {field} gives {n:.4g} samples, more than cardiolab reads into one "
            f"group ({MAX_SAMPLES:.4g}: a {8 * MAX_SAMPLES / 2**30:.0f} GiB time "
            "coordinate); a damaged header, or a recording to split into sessions"
        )
    return n


def time_coordinate(n_samples: int, sampling_rate: float, start: float = 0.0) -> xr.DataArray:
    """Time coordinate of a regularly sampled group.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    sampling_rate : float
        Sampling rate (Hz).
    start : float
        Time of the first sample (s from the session start).

    Returns
    -------
    xarray.DataArray
        ``time`` in s, with ``units`` and ``long_name``.

    Raises
    ------
    SessionFormatError
        A rate that is not a finite number > 0, or more than :data:`MAX_SAMPLES`
        samples (checked before anything is allocated).
    """
    sampling_rate = check_sampling_rate(
        sampling_rate, source="time coordinate", field="sampling_rate"
    )
    n_samples = check_n_samples(n_samples, source="time coordinate", field="n_samples")
    values = start + np.arange(int(n_samples), dtype=np.float64) / float(sampling_rate)
    return xr.DataArray(
        values, dims="time", attrs={"units": "s", "long_name": "time from session start"}
    )


def signal_group(
    values,
    sampling_rate: float,
    group: str,
    *,
    start: float = 0.0,
    vessels: Iterable[str] | None = None,
    attrs: Mapping | None = None,
    units: str | None = None,
) -> xr.Dataset:
    """Build one raw group of the data model from an array in canonical units.

    Parameters
    ----------
    values : array-like (NumPy or dask)
        Samples in the group's canonical unit (see :data:`RAW_GROUPS`; for ``resp``,
        in ``units``). For ``doppler``, shape ``(n_vessels, n_samples)``; otherwise
        ``(n_samples,)``.
    sampling_rate : float
        Sampling rate (Hz).
    group : {"ecg", "abp", "ldf", "doppler", "resp"}
        Which group.
    start : float
        Time of the first sample (s).
    vessels : iterable of str, optional
        Vessel names for ``doppler`` (e.g. ``["femoral", "mca"]``).
    attrs : mapping, optional
        Extra group attributes (e.g. ``source_file``, ``channel``).
    units : str, optional
        The unit of ``values`` for a group that keeps its recorded unit (``resp``:
        required; written in the spelling of :func:`cardiolab.units.normalise_unit`).
        For the other groups, omit it or give the canonical unit.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    UnitError
        ``units`` missing or unknown for ``resp``, or not the canonical unit of
        another group.
    SessionFormatError
        A sampling rate that is not a finite number > 0, or more samples than
        :data:`MAX_SAMPLES`; the message names ``attrs["source_file"]`` and channel.
    """
    spec = RAW_GROUPS[group]
    extra = dict(attrs or {})
    source = extra.get("source_file", f"group {group!r}")
    channel = extra.get("channel")
    what = f"channel {channel!r}" if channel is not None else f"group {group!r}"
    # the plausible range of the group is validate_session's to check (a reader may
    # map a channel to a group it then fails), not a reason to refuse reading
    sampling_rate = check_sampling_rate(
        sampling_rate, source=source, field=f"{what}: sampling_rate"
    )
    check_n_samples(values.shape[-1], source=source, field=f"{what}: number of samples")
    units = group_units(group, units)
    if group == "doppler":
        vessels = list(vessels) if vessels is not None else ["unknown"]
        if getattr(values, "ndim", 1) == 1:
            values = values[None, :]
        dims = ("vessel", "time")
        coords = {"vessel": ("vessel", np.asarray(vessels, dtype=object))}
    else:
        dims = ("time",)
        coords = {}
    n = values.shape[-1]
    coords["time"] = time_coordinate(n, sampling_rate, start)
    var = xr.Variable(dims, values, attrs={"units": units, "long_name": spec.long_name})
    ds = xr.Dataset({spec.variable: var}, coords=coords)
    ds.attrs = {"sampling_rate": float(sampling_rate), **dict(attrs or {})}
    return ds


def group_units(group: str, units: str | None = None) -> str:
    """The unit a raw group's variable is stored in.

    Parameters
    ----------
    group : str
        A raw group of :data:`RAW_GROUPS`.
    units : str, optional
        The recorded unit, for a group that keeps it (``resp``).

    Returns
    -------
    str
        The group's canonical unit, or for ``resp`` ``units`` in the table spelling
        (``"Volts"`` -> ``"V"``, ``"a.u."`` -> ``"1"``).

    Raises
    ------
    UnitError
        ``resp`` without a unit or with one unknown to :mod:`cardiolab.units`; a unit
        other than the canonical one for any other group.
    """
    spec = RAW_GROUPS[group]
    if spec.units is None:
        if units is None or not str(units).strip():
            raise UnitError(
                f"group {group!r} keeps the unit it was recorded in: give its 'units' "
                "(e.g. 'V', '1' for arbitrary units, 'L', 'L/s')"
            )
        return normalise_unit(units)
    if units is not None and normalise_unit(units) != spec.units:
        raise UnitError(
            f"group {group!r} is stored in {spec.units!r}, not {units!r}: convert the "
            "values first (cardiolab.units.conversion_factor)"
        )
    return spec.units


def protocol_group(epochs: Iterable) -> xr.Dataset:
    """Build the ``protocol`` group from epochs.

    Parameters
    ----------
    epochs : iterable
        ``(label, start, stop)`` tuples or mappings with those keys; times in s from
        the session start.

    Returns
    -------
    xarray.Dataset
        Dim ``epoch`` (indexed by the labels), variables ``label``, ``start`` and
        ``stop``.
    """
    rows = []
    for e in epochs:
        if isinstance(e, Mapping):
            rows.append((str(e["label"]), float(e["start"]), float(e["stop"])))
        else:
            label, start, stop = e
            rows.append((str(label), float(start), float(stop)))
    labels = np.asarray([r[0] for r in rows], dtype=object)
    return xr.Dataset(
        {
            "label": ("epoch", labels, {"long_name": "protocol epoch label"}),
            "start": (
                "epoch",
                np.asarray([r[1] for r in rows], dtype=float),
                {"units": "s", "long_name": "epoch start from session start"},
            ),
            "stop": (
                "epoch",
                np.asarray([r[2] for r in rows], dtype=float),
                {"units": "s", "long_name": "epoch stop from session start"},
            ),
        },
        coords={"epoch": ("epoch", labels)},
    )


def beats_group(t, values: Mapping | None = None, *, attrs: Mapping | None = None) -> xr.Dataset:
    """Build the ``beats`` group of a beat-level session.

    Parameters
    ----------
    t : array-like, shape (n_beats,)
        Beat times (s from the session start), strictly increasing.
    values : mapping of str to array-like, optional
        Beat-to-beat variables of :data:`BEAT_FIELDS` (``rr``, ``sbp``, ...), each of
        shape ``(n_beats,)`` and already in the field's unit; NaN where missing.
    attrs : mapping, optional
        Group attributes (e.g. ``source_file``).

    Returns
    -------
    xarray.Dataset
        Dim ``beat``; ``t`` and the given variables with ``units`` and ``long_name``.

    Raises
    ------
    KeyError
        A variable that :data:`BEAT_FIELDS` does not define.
    ValueError
        A variable whose length is not that of ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    data = {"t": t, **dict(values or {})}
    ds = xr.Dataset()
    for name, v in data.items():
        if name not in BEAT_FIELDS:
            raise KeyError(f"unknown beat variable {name!r} (known: {list(BEAT_FIELDS)})")
        v = np.asarray(v, dtype=np.float64)
        if v.shape != t.shape:
            raise ValueError(f"beat variable {name!r} has shape {v.shape}, t has {t.shape}")
        units, long_name = BEAT_FIELDS[name]
        ds[name] = xr.Variable("beat", v, {"units": units, "long_name": long_name})
    ds.attrs = dict(attrs or {})
    return ds


def session_node(groups: Mapping[str, xr.Dataset], **attrs) -> xr.DataTree:
    """Assemble a session node from its groups and attributes.

    Parameters
    ----------
    groups : mapping of str to xarray.Dataset
        Raw groups (``ecg``, ``abp``, ``ldf``, ``doppler``, ``beats``, ``protocol``).
    **attrs
        Session attributes (see :data:`SESSION_ATTRS`).

    Returns
    -------
    xarray.DataTree
    """
    node = xr.DataTree(dataset=xr.Dataset(attrs=dict(attrs)))
    for name, ds in groups.items():
        node[name] = xr.DataTree(dataset=ds)
    return node


def _where(node: xr.DataTree, name: str | None) -> str:
    if name:
        return name
    subject = node.attrs.get("subject")
    session = node.attrs.get("session")
    if subject and session:
        return f"session {subject}/{session}"
    return f"session at {node.path!r}"


def _check_time(group: str, ds: xr.Dataset, problems: list[str]) -> None:
    if "time" not in ds.coords:
        problems.append(f"group {group!r}: no 'time' coordinate")
        return
    t = ds["time"]
    if t.attrs.get("units") != "s":
        problems.append(
            f"group {group!r}: field 'time' has units {t.attrs.get('units')!r}, expected 's'"
        )
    rate = ds.attrs.get("sampling_rate")
    if rate is None:
        problems.append(f"group {group!r}: missing attribute 'sampling_rate' (Hz)")
        return
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        problems.append(f"group {group!r}: attribute 'sampling_rate' is not a number: {rate!r}")
        return
    if not (np.isfinite(rate) and rate > 0):
        problems.append(
            f"group {group!r}: attribute 'sampling_rate' is {rate!r}; it must be a finite "
            "number of Hz > 0"
        )
        return
    spec = RAW_GROUPS.get(group)
    if spec and not (spec.min_rate <= rate <= spec.max_rate):
        problems.append(
            f"group {group!r}: sampling_rate {rate:g} Hz outside the plausible range "
            f"{spec.min_rate:g}-{spec.max_rate:g} Hz"
        )
    n = t.size
    if n >= 2:
        # Only the first and last samples: O(1) even where time is lazy (no index).
        expected = (n - 1) / rate
        span = float(t[-1]) - float(t[0])
        if not np.isfinite(span):
            problems.append(
                f"group {group!r}: field 'time' is missing (NaN) at its first or last "
                "sample: its array or chunks are not in the store"
            )
        elif not np.isclose(span, expected, rtol=1e-6, atol=0.5 / rate):
            problems.append(
                f"group {group!r}: 'time' spans {span:.6g} s for {n} samples, but "
                f"sampling_rate {rate:g} Hz implies {expected:.6g} s"
            )


def _check_beats(ds: xr.Dataset, problems: list[str]) -> None:
    """Check a ``beats`` group: dim ``beat``, known variables in their units, times."""
    g = f"group {BEAT_GROUP!r}"
    if "t" not in ds.variables:
        problems.append(f"{g}: missing variable 't' (beat times, s)")
    for vname, var in ds.variables.items():
        if vname in ds.dims and vname not in ds.data_vars and vname != "t":
            continue  # an index coordinate of 'beat'
        if var.dims != ("beat",):
            problems.append(f"{g}: field {vname!r} has dims {var.dims}, expected ('beat',)")
        if vname not in BEAT_FIELDS:
            problems.append(f"{g}: unknown field {vname!r} (beat variables: {list(BEAT_FIELDS)})")
            continue
        units = var.attrs.get("units")
        if units != BEAT_FIELDS[vname][0]:
            problems.append(
                f"{g}: field {vname!r} has units {units!r}, expected {BEAT_FIELDS[vname][0]!r}"
            )
        if "long_name" not in var.attrs:
            problems.append(f"{g}: field {vname!r} has no 'long_name' attribute")
    if "t" in ds.variables and ds["t"].dims == ("beat",):
        t = np.asarray(ds["t"].values, dtype=float)
        if not np.all(np.isfinite(t)):
            problems.append(f"{g}: field 't' has missing (non-finite) times")
        back = np.flatnonzero(~(np.diff(t) > 0))
        if back.size:
            i = int(back[0]) + 1
            problems.append(
                f"{g}: field 't' does not increase: beat {i} at {t[i]:.6g} s follows "
                f"{t[i - 1]:.6g} s ({back.size} such beat(s))"
            )
    if "rr" in ds.variables and ds["rr"].dims == ("beat",):
        rr = np.asarray(ds["rr"].values, dtype=float)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(rr <= 0)
        if bad.size:
            problems.append(
                f"{g}: field 'rr' is <= 0 ms at beat {int(bad[0])} ({rr[bad[0]]:g} ms; "
                f"{bad.size} such beat(s))"
            )


def validate_session(
    node: xr.DataTree, name: str | None = None, sources: Mapping[str, str] | None = None
) -> xr.DataTree:
    """Check a session node against the data model.

    All violations are collected and raised together. No waveform sample is read:
    only attributes, dimensions and coordinates are checked, so a lazy session stays
    lazy. A ``beats`` group's ``t`` and ``rr`` (one number per beat) are read to check
    that the times increase strictly and the intervals are positive.

    Parameters
    ----------
    node : xarray.DataTree
        A session node.
    name : str, optional
        How to name the session in messages (defaults to ``session S01/L-30`` from
        its attributes, or its path).
    sources : mapping of str to str, optional
        The file (or store) each group was read from, named in its violations
        (default: the group's ``source_file`` attribute, where it has one).

    Returns
    -------
    xarray.DataTree
        ``node`` itself, unchanged, when it is valid.

    Raises
    ------
    SessionFormatError
        Naming the session, the group and the field of each violation.
    """
    where = _where(node, name)
    problems: list[str] = []
    attrs = node.attrs
    for key in SESSION_ATTRS:
        if key not in attrs:
            problems.append(f"missing session attribute {key!r} ({SESSION_ATTRS[key]})")
    phase = attrs.get("phase")
    if phase is not None and phase not in PHASES:
        problems.append(f"attribute 'phase' is {phase!r}, expected one of {PHASES}")
    label = attrs.get("session")
    if label is not None:
        try:
            parsed = parse_session_label(str(label))
        except LabelError as err:
            problems.append(f"attribute 'session': {err}")
        else:
            if phase in PHASES and parsed.phase != phase:
                problems.append(
                    f"attribute 'phase' is {phase!r} but session label {label!r} "
                    f"is {parsed.phase!r}"
                )
            day = attrs.get("day")
            if day is not None:
                try:
                    if not np.isclose(float(day), parsed.day, atol=1e-6):
                        problems.append(
                            f"attribute 'day' is {day!r} but session label {label!r} "
                            f"gives {parsed.day!r}"
                        )
                except (TypeError, ValueError):
                    problems.append(f"attribute 'day' is not a number: {day!r}")
    posture = attrs.get("posture")
    if posture is not None and posture not in POSTURES:
        problems.append(f"attribute 'posture' is {posture!r}, expected one of {POSTURES}")

    children = set(node.children)
    signal_groups = [g for g in RAW_GROUPS if g in children]
    if not signal_groups and BEAT_GROUP not in children:
        problems.append(
            f"no signal group: expected at least one of {sorted(RAW_GROUPS)} or "
            f"{BEAT_GROUP!r}, found {sorted(children)}"
        )
    if BEAT_GROUP in children:
        _check_beats(node[BEAT_GROUP].to_dataset(inherit=False), problems)
    for group in signal_groups:
        spec = RAW_GROUPS[group]
        ds = node[group].to_dataset(inherit=False)
        if spec.variable not in ds.data_vars:
            problems.append(
                f"group {group!r}: missing variable {spec.variable!r} "
                f"(found {sorted(map(str, ds.data_vars))})"
            )
        else:
            var = ds[spec.variable]
            if "time" not in var.dims:
                problems.append(f"group {group!r}: variable {spec.variable!r} has no 'time' dim")
            if group == "doppler" and "vessel" not in var.dims:
                problems.append("group 'doppler': variable 'velocity' has no 'vessel' dim")
            units = var.attrs.get("units")
            if spec.units is None:
                try:
                    known = units is not None and normalise_unit(units) == units
                except UnitError:
                    known = False
                if not known:
                    problems.append(
                        f"group {group!r}: field {spec.variable!r} has units {units!r}, "
                        "expected a unit of cardiolab.units in its table spelling (e.g. "
                        "'V', '1', 'L', 'L/s')"
                    )
            elif units != spec.units:
                problems.append(
                    f"group {group!r}: field {spec.variable!r} has units {units!r}, "
                    f"expected {spec.units!r}"
                )
        for vname, var in ds.data_vars.items():
            for key in ("units", "long_name"):
                if key not in var.attrs:
                    problems.append(f"group {group!r}: field {vname!r} has no {key!r} attribute")
        _check_time(group, ds, problems)

    if "protocol" in children:
        ds = node["protocol"].to_dataset(inherit=False)
        for field in ("label", "start", "stop"):
            if field not in ds.variables:
                problems.append(f"group 'protocol': missing field {field!r}")
        if {"start", "stop"} <= set(ds.variables):
            start = np.asarray(ds["start"].values, dtype=float)
            stop = np.asarray(ds["stop"].values, dtype=float)
            bad = np.flatnonzero(~(stop > start))
            for i in bad:
                lab = ds["epoch"].values[i] if "epoch" in ds.coords else i
                problems.append(
                    f"group 'protocol': epoch {lab!r} has stop {stop[i]:g} s <= start {start[i]:g} s"
                )
            if np.any(start < 0):
                problems.append("group 'protocol': field 'start' has negative times")
            for field in ("start", "stop"):
                if ds[field].attrs.get("units") != "s":
                    problems.append(
                        f"group 'protocol': field {field!r} has units "
                        f"{ds[field].attrs.get('units')!r}, expected 's'"
                    )
        if "epoch" in ds.coords:
            labels = [str(v) for v in ds["epoch"].values]
            dups = sorted({x for x in labels if labels.count(x) > 1})
            if dups:
                problems.append(f"group 'protocol': duplicate epoch labels {dups}")
    else:
        problems.append("no 'protocol' group (epochs with label/start/stop)")

    if problems:
        problems = _with_sources(node, problems, sources)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SessionFormatError(
            f"{where} does not follow the cardiolab data model:\n{lines}",
            violations=[f"{where}: {p}" for p in problems],
        )
    return node


def recording_end(node: xr.DataTree) -> float | None:
    """When a session's recording ends (s from the session start).

    The latest end of its raw groups: a waveform group ends one sample period after
    its last sample (``time[-1] + 1 / sampling_rate``), a ``beats`` group one median
    beat interval after its last beat (when the next beat was due: a beat export
    stops at a beat, not when the recording did). Only the last element of each ``time`` (or ``t``) is read, so a lazy session
    stays lazy.

    Parameters
    ----------
    node : xarray.DataTree
        A session node.

    Returns
    -------
    float or None
        The end (s); ``None`` when the session has no group with samples.
    """
    ends = []
    for group in (*RAW_GROUPS, BEAT_GROUP):
        if group not in node.children:
            continue
        ds = node[group].to_dataset(inherit=False)
        if group == BEAT_GROUP:
            t = np.asarray(ds["t"].values, dtype=float) if "t" in ds.variables else []
            t = t[np.isfinite(t)] if len(t) else t
            if len(t):
                # the next beat was due one (median) interval after the last one
                step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
                ends.append(float(t.max()) + step)
            continue
        if "time" not in ds.variables or not ds["time"].size:
            continue
        rate = float(ds.attrs.get("sampling_rate", np.inf))
        ends.append(float(ds["time"][-1]) + (1.0 / rate if rate > 0 else 0.0))
    ends = [e for e in ends if np.isfinite(e)]
    return max(ends) if ends else None


def _with_sources(node, problems: list[str], sources) -> list[str]:
    """``problems`` with each group named with the file it was read from."""
    known = dict(sources or {})
    for group, child in node.children.items():
        if group not in known and child.attrs.get("source_file"):
            known[group] = str(child.attrs["source_file"])
    out = []
    for p in problems:
        for group, source in known.items():
            prefix = f"group {group!r}"
            if p.startswith(prefix + ":") or p.startswith(prefix + " "):
                p = f"{prefix} (from {source}){p[len(prefix) :]}"
                break
        out.append(p)
    return out


def iter_sessions(tree: xr.DataTree):
    """Yield ``(subject, session, node)`` for every session node of a campaign tree."""
    for subject, snode in tree.children.items():
        for session, node in snode.children.items():
            yield subject, session, node


def validate_campaign(tree: xr.DataTree) -> xr.DataTree:
    """Validate every session of a campaign tree; raise one error listing all faults."""
    violations: list[str] = []
    for subject, session, node in iter_sessions(tree):
        try:
            validate_session(node, name=f"session {subject}/{session}")
        except SessionFormatError as err:
            violations.extend(err.violations)
        if node.attrs.get("subject") not in (None, subject):
            violations.append(
                f"session {subject}/{session}: attribute 'subject' is "
                f"{node.attrs.get('subject')!r} but the node sits under {subject!r}"
            )
    if violations:
        raise SessionFormatError(
            "campaign does not follow the cardiolab data model:\n"
            + "\n".join(f"  - {v}" for v in violations),
            violations=violations,
        )
    return tree
