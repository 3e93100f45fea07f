"""Declared features: one function, its inputs, outputs and parameters, in one place.

A feature is declared as xclim declares an indicator: a function decorated with
:func:`register_feature`, stating

- its **inputs** with units (beat-table variables such as ``rr`` or ``sbp``, or raw
  groups of the data model such as ``ldf``), checked against the session's units before
  the function runs (:class:`~cardiolab.errors.UnitError` naming the variable, the
  feature and both units);
- its **outputs** (:class:`Output`: units and ``long_name``), per vessel where the
  feature is computed per Doppler vessel (``{vessel}`` in the output name);
- its **parameters** (:class:`Parameter`: default, units, meaning and the source of the
  default), which a caller may override per feature;
- the **source** of the method.

The epoch loop (:func:`cardiolab.features.epoch_features`), the pipeline's provenance
hash (:func:`feature_parameters`), the Cohort page and ``cardiolab features`` (the
README's feature table) read this registry: adding a feature is one compute function
plus one registration, nothing else.

A feature function takes an :class:`EpochData` (one epoch's beats, masked by the
channel flags, and raw signals) and the parameters as keywords, and returns a dict of
floats keyed by its declared outputs (missing outputs become NaN). It may add a
``"reason"`` key: the values are then NaN-able results the epoch could not support
(too short, too few beats), and the reason is kept in the features' ``flags``
attribute with the feature and epoch named. A feature whose required inputs the
session lacks (no pressure channel, no LDF) is not computed; the features' ``skipped``
attribute says which and why.

Example
-------
A new feature is a compute function and one registration (the built-in ones are in
:mod:`cardiolab.features.declared`)::

    from cardiolab.features.registry import Output, Parameter, register_feature

    @register_feature(
        "pulse_pressure_amplification",
        inputs={"sbp": "mmHg", "dbp": "mmHg"},
        outputs={"ppa": Output("1", "pulse pressure over its epoch median")},
        parameters={"q": Parameter(0.5, "1", "quantile of the reference", "Smith 2020")},
        source="Smith J (2020). ...",
    )
    def _ppa(epoch, *, q):
        pp = epoch["sbp"] - epoch["dbp"]
        return {"ppa": float(np.nanmean(pp) / np.nanquantile(pp, q))}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnitError
from ..schema import RAW_GROUPS

__all__ = [
    "ANY_UNITS",
    "BEAT_INPUTS",
    "EpochData",
    "Feature",
    "Output",
    "Parameter",
    "check_input_units",
    "describe_output",
    "feature_outputs",
    "feature_parameters",
    "feature_table",
    "features",
    "get_feature",
    "json_default",
    "register_feature",
    "resolved_parameters",
]


#: Declared units of an input whose unit the data model leaves to the device (``resp``).
ANY_UNITS = "any"


@dataclass(frozen=True)
class Parameter:
    """A feature parameter: its default, units, meaning and the source of the default."""

    default: Any
    units: str
    description: str
    source: str


@dataclass(frozen=True)
class Output:
    """A feature output: units and long name (``{vessel}`` is filled per vessel)."""

    units: str
    long_name: str


@dataclass(frozen=True)
class BeatInput:
    """A beat-table variable a feature may read.

    ``flag`` is the channel's own beat flag (besides ``valid``) that a beat needs for
    this variable to be used; ``per_vessel`` variables have dims (beat, vessel).
    """

    units: str
    flag: str | None = None
    per_vessel: bool = False


#: Beat-table variables features may declare as inputs, with their units and the
#: channel flag a beat needs for the value to be used (see
#: :func:`cardiolab.features.epoch_features`). ``rr`` is the NN interval: NaN unless both
#: beats that bound it are valid (and the first interval of an epoch unless the beat
#: before it is in the epoch too).
BEAT_INPUTS: dict[str, BeatInput] = {
    "t": BeatInput("s"),
    "rr": BeatInput("ms"),
    "sbp": BeatInput("mmHg", "abp_valid"),
    "dbp": BeatInput("mmHg", "abp_valid"),
    "map": BeatInput("mmHg", "abp_valid"),
    "r_amplitude": BeatInput("mV"),
    "sv": BeatInput("mL", "abp_valid"),
    "flux": BeatInput("PU", "ldf_valid"),
    "psv": BeatInput("cm/s", "doppler_valid", per_vessel=True),
    "edv": BeatInput("cm/s", "doppler_valid", per_vessel=True),
    "tamv": BeatInput("cm/s", "doppler_valid", per_vessel=True),
    "ri": BeatInput("1", "doppler_valid", per_vessel=True),
    "pi": BeatInput("1", "doppler_valid", per_vessel=True),
}


@dataclass(frozen=True)
class Feature:
    """A declared feature (see the module docstring)."""

    name: str
    func: Callable[..., dict]
    inputs: Mapping[str, str]
    outputs: Mapping[str, Output]
    parameters: Mapping[str, Parameter]
    source: str
    any_of: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    per_vessel: bool = False
    vessels: Callable[[str], bool] | None = None
    uses: tuple[str, ...] = ()
    description: str = ""

    def applies_to(self, vessels) -> list:
        """The vessels the feature is computed for (``[None]`` when not per vessel)."""
        if not self.per_vessel:
            return [None]
        return [v for v in vessels if self.vessels is None or self.vessels(v)]

    def resolved_outputs(self, vessels=()) -> dict[str, Output]:
        """``{output name: Output}`` with ``{vessel}`` filled for each vessel it applies to."""
        out = {}
        for vessel in self.applies_to(vessels):
            for name, meta in self.outputs.items():
                if vessel is None:
                    out[name] = meta
                else:
                    out[name.format(vessel=vessel)] = Output(
                        meta.units, meta.long_name.format(vessel=vessel)
                    )
        return out

    def defaults(self) -> dict:
        """The default value of every parameter."""
        return {k: p.default for k, p in self.parameters.items()}


_REGISTRY: dict[str, Feature] = {}


def _input_units(name: str) -> str | None:
    if name in BEAT_INPUTS:
        return BEAT_INPUTS[name].units
    if name in RAW_GROUPS:  # a group recorded in any unit (respiration) is "any"
        return RAW_GROUPS[name].units or ANY_UNITS
    return None


def register_feature(
    name: str,
    *,
    inputs: Mapping[str, str],
    outputs: Mapping[str, Output],
    source: str,
    parameters: Mapping[str, Parameter] | None = None,
    any_of: tuple[str, ...] = (),
    unless: tuple[str, ...] = (),
    per_vessel: bool = False,
    vessels: Callable[[str], bool] | None = None,
    uses: tuple[str, ...] = (),
):
    """Declare a feature (decorator).

    Parameters
    ----------
    name : str
        Feature name (unique), e.g. ``"hrv_time"``.
    inputs : dict of str to str
        Required inputs and their units: beat-table variables of :data:`BEAT_INPUTS`
        or raw groups of :data:`cardiolab.schema.RAW_GROUPS`. The feature is skipped in
        a session that lacks one.
    outputs : dict of str to Output
        Output names (``{vessel}`` in each name when ``per_vessel``).
    source : str
        The published source of the method.
    parameters : dict of str to Parameter, optional
    any_of : tuple of str
        Optional inputs (beat variables or raw groups, units as in the data model) of
        which the session needs at least one; the function sees the ones present.
    unless : tuple of str
        Inputs whose presence makes the feature unnecessary (e.g. ECG-derived
        respiration ``unless=("resp",)``): skipped, with that reason, in such sessions.
    per_vessel : bool
        Computed once per Doppler vessel (``EpochData.vessel`` set).
    vessels : callable, optional
        ``vessel name -> bool``: the vessels the feature applies to (default all).
    uses : tuple of str
        Outputs of features declared earlier that this one reads from
        ``EpochData.results`` (e.g. ``"map"``).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.

    Raises
    ------
    ValueError
        If the name is taken, an input is not a known beat variable or raw group, its
        units differ from the data model's, an output name is declared by another
        feature, or a used output is declared by no earlier feature.
    """

    def decorate(func):
        if name in _REGISTRY:
            raise ValueError(f"feature {name!r} is already registered")
        for inp, units in inputs.items():
            known = _input_units(inp)
            if known is None:
                raise ValueError(
                    f"feature {name!r}: unknown input {inp!r} (beat variables: "
                    f"{sorted(BEAT_INPUTS)}; raw groups: {sorted(RAW_GROUPS)})"
                )
            if units != known:
                raise ValueError(
                    f"feature {name!r}: input {inp!r} is in {known!r} in the data model, "
                    f"declared {units!r}"
                )
        for inp in (*any_of, *unless):
            if _input_units(inp) is None:
                raise ValueError(f"feature {name!r}: unknown input {inp!r} in any_of/unless")
        taken = {o: f.name for f in _REGISTRY.values() for o in f.outputs}
        clash = {o: taken[o] for o in outputs if o in taken}
        if clash:
            raise ValueError(f"feature {name!r}: outputs already declared: {clash}")
        for used in uses:
            if used not in taken:
                raise ValueError(
                    f"feature {name!r} uses {used!r}, which no earlier feature outputs"
                )
        _REGISTRY[name] = Feature(
            name=name,
            func=func,
            inputs=dict(inputs),
            outputs=dict(outputs),
            parameters=dict(parameters or {}),
            source=source,
            any_of=tuple(any_of),
            unless=tuple(unless),
            per_vessel=per_vessel,
            vessels=vessels,
            uses=tuple(uses),
            description=(func.__doc__ or "").strip().split("\n")[0],
        )
        return func

    return decorate


def _load_builtin() -> None:
    from . import declared  # noqa: F401  (registers the built-in features)


def features() -> list[Feature]:
    """Every registered feature, in computation order."""
    _load_builtin()
    return list(_REGISTRY.values())


def get_feature(name: str) -> Feature:
    """A registered feature by name.

    Raises
    ------
    KeyError
        Naming the known features.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown feature {name!r} (features: {sorted(_REGISTRY)})")
    return _REGISTRY[name]


def feature_outputs() -> dict[str, tuple[str, Output]]:
    """``{output name: (feature name, Output)}`` (per-vessel names keep ``{vessel}``)."""
    return {o: (f.name, out) for f in features() for o, out in f.outputs.items()}


def resolved_parameters(overrides: Mapping[str, Mapping] | None = None) -> dict:
    """Every feature's parameters: the declared defaults with ``overrides`` applied.

    Parameters
    ----------
    overrides : dict, optional
        ``{feature name: {parameter: value}}``.

    Returns
    -------
    dict
        ``{feature name: {parameter: value}}``.

    Raises
    ------
    KeyError
        If an override names an unknown feature or parameter.
    """
    overrides = dict(overrides or {})
    out = {}
    for f in features():
        given = dict(overrides.pop(f.name, {}) or {})
        unknown = sorted(set(given) - set(f.parameters))
        if unknown:
            raise KeyError(
                f"feature {f.name!r} has no parameter(s) {unknown} (parameters: "
                f"{sorted(f.parameters)})"
            )
        out[f.name] = {**f.defaults(), **given}
    if overrides:
        raise KeyError(f"unknown feature(s) {sorted(overrides)} (features: {sorted(out)})")
    return out


def describe_output(name: str) -> tuple[Feature, Output] | None:
    """The feature that declares an output name, and the output (``{vessel}`` filled).

    Parameters
    ----------
    name : str
        A features-table column, e.g. ``"rmssd"`` or ``"mca_tfa_gain_lf"``.

    Returns
    -------
    (Feature, Output) or None
        ``None`` for a name no feature declares (e.g. a catalog measurement).
    """
    for f in features():
        for template, meta in f.outputs.items():
            if "{vessel}" not in template:
                if template == name:
                    return f, meta
                continue
            head, _, tail = template.partition("{vessel}")
            vessel = name[len(head) : len(name) - len(tail)] if tail else name[len(head) :]
            if (
                vessel
                and name.startswith(head)
                and name.endswith(tail)
                and (f.vessels is None or f.vessels(vessel))
            ):
                return f, Output(meta.units, meta.long_name.format(vessel=vessel))
    return None


def feature_table():
    """One row per registered feature, for documentation and ``cardiolab features``.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature``, ``outputs`` (``"name (units)"``, comma-separated;
        ``<vessel>`` for per-vessel names), ``inputs`` (``"name (units)"``; ``any of``
        alternatives marked), ``parameters`` (``name=default``), ``source``.
    """
    import pandas as pd

    rows = []
    for f in features():
        outputs = ", ".join(
            f"{name.replace('{vessel}', '<vessel>')} ({o.units})" for name, o in f.outputs.items()
        )
        inputs = [f"{n} ({u})" for n, u in f.inputs.items()]
        if f.any_of:
            inputs.append("any of " + " / ".join(f.any_of))
        params = ", ".join(f"{k}={p.default!r}" for k, p in f.parameters.items())
        rows.append(
            {
                "feature": f.name,
                "outputs": outputs,
                "inputs": ", ".join(inputs),
                "parameters": params,
                "source": f.source,
            }
        )
    return pd.DataFrame(rows)


def feature_parameters(overrides: Mapping[str, Mapping] | None = None) -> dict:
    """Every feature's parameters (defaults with ``overrides`` applied), for provenance.

    Parameters
    ----------
    overrides : dict, optional
        ``{feature name: {parameter: value}}``.

    Returns
    -------
    dict
        ``{feature name: {"parameters": {...}, "outputs": [...], "inputs": {...}}}``;
        JSON-serialisable (tuples become lists).

    Raises
    ------
    KeyError
        If an override names an unknown feature or parameter.
    """
    resolved = resolved_parameters(overrides)
    out = {
        f.name: {
            "parameters": resolved[f.name],
            "outputs": sorted(f.outputs),
            "inputs": dict(f.inputs),
            "any_of": list(f.any_of),
        }
        for f in features()
    }
    return json.loads(json.dumps(out, default=json_default))


def json_default(value):
    """``json.dumps`` default for parameter values (NumPy scalars, tuples, sets)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"parameter value {value!r} is not JSON-serialisable")


@dataclass
class EpochData:
    """One epoch's inputs, as a feature function sees them.

    ``epoch[name]`` is a beat variable of :data:`BEAT_INPUTS` for the epoch's beats
    (float array, NaN where the beat is not valid for that channel; per-vessel
    variables for :attr:`vessel`); :meth:`signal` gives a raw group's samples in the
    epoch; :attr:`results` holds the outputs of the features computed before, for
    this epoch (and vessel); :attr:`session` the session's attributes (``phase``,
    ``day``, ``sex``, ``age_band``, ... where known).
    """

    label: str
    start: float
    stop: float
    index: np.ndarray
    columns: Mapping[str, np.ndarray]
    flags: Mapping[str, np.ndarray]
    vessels: list[str]
    signals: Mapping[str, Any]
    first_interval_inside: bool = True
    results: dict = field(default_factory=dict)
    vessel: str | None = None
    session: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        spec = BEAT_INPUTS.get(name)
        if spec is None:
            raise KeyError(f"{name!r} is not a beat input (inputs: {sorted(BEAT_INPUTS)})")
        values = self.columns.get(name)
        if values is None:
            return np.full(self.index.size, np.nan)
        if spec.per_vessel:
            if self.vessel is None:
                raise KeyError(f"{name!r} is per vessel; this feature is not")
            j = self.vessels.index(self.vessel)
            return np.where(self.mask(spec.flag), values[self.index, j], np.nan)
        if name == "t":
            return values[self.index]
        if name == "rr":  # NN: NaN already where a bounding beat is invalid
            rr = values[self.index].copy()
            if rr.size and not self.first_interval_inside:
                rr[0] = np.nan
            return rr
        return np.where(self.mask(spec.flag or "valid"), values[self.index], np.nan)

    def mask(self, flag: str = "valid") -> np.ndarray:
        """The epoch's beats with a channel flag (and ``valid``) set, shape (n_beats,).

        A flag the beat table lacks is ``valid`` alone; ``doppler_valid`` is for
        :attr:`vessel`.
        """
        ok = self.flags.get(flag, self.flags["valid"])
        if ok.ndim == 2:
            ok = ok[:, self.vessels.index(self.vessel)]
        return ok[self.index]

    def count(self, flag: str = "valid") -> int:
        """Number of the epoch's beats with a channel flag (and ``valid``) set."""
        return int(np.count_nonzero(self.mask(flag)))

    def signal(self, group: str):
        """A raw group's samples in the epoch.

        Returns
        -------
        t : numpy.ndarray, shape (n,)
            Sample times (s).
        x : numpy.ndarray
            Samples (dims of the group's variable, time first).
        fs : float
            Sampling rate (Hz).
        """
        ds = self.signals[group]
        t = np.asarray(ds["time"].values, dtype=float)
        inside = (t >= self.start) & (t < self.stop)
        var = RAW_GROUPS[group].variable
        return (
            t[inside],
            np.asarray(ds[var].values, dtype=float)[inside],
            float(ds.attrs["sampling_rate"]),
        )


def check_input_units(feature: Feature, beats, signals) -> None:
    """Raise :class:`UnitError` if a present input's units differ from the declared ones."""
    for name in (*feature.inputs, *feature.any_of):
        units = _input_units(name)
        if name in BEAT_INPUTS:
            var = beats.get(name)
        elif name in signals:
            var = signals[name].get(RAW_GROUPS[name].variable)
        else:
            var = None
        if var is None or "units" not in var.attrs or units == ANY_UNITS:
            continue
        if var.attrs["units"] != units:
            raise UnitError(
                f"feature {feature.name!r}: input {name!r} is in {var.attrs['units']!r}, "
                f"expected {units!r}"
            )
