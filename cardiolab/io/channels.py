"""Channel mappings: from a file's channels to the groups of the data model.

Every file reader turns its channel mapping into a list of :class:`Channel` with
:func:`parse_channels`, finds each channel's conversion factor with
:func:`unit_factor`, wraps each channel's samples in a lazy dask array with
:func:`lazy_channel` and builds the session node with :func:`assemble`, so that format
quirks stay inside the readers and the rules below are applied once:

- a mapping is ``{channel name in the file: {"group", "units"?, "vessel"?, "index"?,
  "variable"?}}`` (a bare group name ``"ecg"`` is accepted for ``{"group": "ecg"}``);
- a column of a beat-to-beat file maps to group ``beats`` and names its ``variable``
  (one of :data:`~cardiolab.schema.BEAT_FIELDS`: ``{"SYS": {"group": "beats",
  "variable": "sbp", "units": "mmHg"}}``); its unit is converted to the variable's;
- a channel is found by its name, or by its 0-based position among the file's signals
  (columns) where the mapping gives ``index``; :func:`locate_channel` does this for
  every reader, so a name that the file holds twice is always an error naming both
  positions, never a silent pick;
- at most one channel per group, except ``doppler``, where each channel names a
  distinct ``vessel`` and all of them share one sampling rate and length, and
  ``beats``, where each channel names a distinct ``variable``;
- the unit is the file's where it declares one, the mapping's where it does not; both
  given and different, or unknown, is a :class:`~cardiolab.errors.UnitError` naming
  the file and the channel;
- a ``resp`` channel keeps its unit (any unit of :mod:`cardiolab.units`: ``V``,
  ``1`` for arbitrary units, ``L``, ``L/s``); the others are converted to the group's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from ..errors import SessionFormatError, UnitError, file_names
from ..schema import (
    BEAT_FIELDS,
    BEAT_GROUP,
    RAW_GROUPS,
    protocol_group,
    session_node,
    signal_group,
)
from ..units import conversion_factor, normalise_unit, unit_ratio

__all__ = [
    "Channel",
    "parse_channels",
    "unit_factor",
    "missing_channel",
    "locate_channel",
    "file_token",
    "lazy_channel",
    "assemble",
    "GROUP_VARIABLES",
]

#: data variable of each raw group
GROUP_VARIABLES = {group: spec.variable for group, spec in RAW_GROUPS.items()}

_MAPPING_KEYS = {"group", "units", "vessel", "index", "variable"}
#: groups a channel may map to
_CHANNEL_GROUPS = (*RAW_GROUPS, BEAT_GROUP)


@dataclass(frozen=True)
class Channel:
    """One channel of a file and where it goes in the data model.

    Attributes
    ----------
    name : str
        The channel's name in the file (EDF label, WFDB signal name, CSV column).
    group : str
        Raw group of the data model (``ecg``, ``abp``, ``ldf``, ``doppler``, ``resp``,
        ``beats``).
    units : str or None
        Unit given by the mapping (the catalog), if any.
    vessel : str or None
        Vessel of a ``doppler`` channel.
    index : int or None
        0-based position of the channel among the file's signals (columns), when the
        mapping gives it: needed where a name is not unique or the file has no names.
    variable : str or None
        The beat variable (:data:`~cardiolab.schema.BEAT_FIELDS`) of a ``beats``
        channel.
    """

    name: str
    group: str
    units: str | None = None
    vessel: str | None = None
    index: int | None = None
    variable: str | None = None

    @property
    def target_units(self) -> str | None:
        """The unit the channel's values are stored in (its group's or variable's);
        ``None`` for a group that keeps the recorded unit (``resp``)."""
        if self.group == BEAT_GROUP:
            return BEAT_FIELDS[self.variable][0]
        return RAW_GROUPS[self.group].units


def parse_channels(channels: Mapping | None, source) -> list[Channel]:
    """Check a channel mapping and return its channels.

    Parameters
    ----------
    channels : mapping
        ``{name: {"group": str, "units": str (optional), "vessel": str (doppler),
        "index": int (optional, 0-based position in the file), "variable": str
        (beats)}}``.
    source : str or pathlib.Path
        The file, for messages.

    Returns
    -------
    list of Channel

    Raises
    ------
    SessionFormatError
        Empty mapping, unknown group or key, a vessel on a non-doppler channel, a
        doppler channel without a vessel, two channels for one group or one vessel,
        an ``index`` that is not a non-negative integer or that two channels share,
        a ``beats`` channel without a known ``variable`` or two for one variable, a
        ``variable`` on another group.
    """
    if not channels:
        raise SessionFormatError(
            f"{source}: no channel mapping given ({{channel: {{'group': ..., 'units': ...}}}})"
        )
    if not isinstance(channels, Mapping):
        raise SessionFormatError(
            f"{source}: the channel mapping must be a mapping channel -> group, "
            f"not {type(channels).__name__}"
        )
    out: list[Channel] = []
    groups: dict[str, str] = {}
    vessels: dict[str, str] = {}
    indices: dict[int, str] = {}
    for name, spec in channels.items():
        if isinstance(spec, str):
            spec = {"group": spec}
        if not isinstance(spec, Mapping):
            raise SessionFormatError(
                f"{source}: channel {name!r}: expected a mapping with 'group' "
                f"(and 'units', 'vessel'), got {spec!r}"
            )
        unknown = sorted(set(spec) - _MAPPING_KEYS)
        if unknown:
            raise SessionFormatError(
                f"{source}: channel {name!r}: unknown key(s) {unknown} "
                f"(allowed: {sorted(_MAPPING_KEYS)})"
            )
        group = spec.get("group")
        if group not in _CHANNEL_GROUPS:
            raise SessionFormatError(
                f"{source}: channel {name!r} maps to unknown group {group!r} "
                f"(groups: {sorted(_CHANNEL_GROUPS)})"
            )
        variable = spec.get("variable")
        if group == BEAT_GROUP:
            if variable not in BEAT_FIELDS or variable == "t":
                raise SessionFormatError(
                    f"{source}: beats channel {name!r}: 'variable' is {variable!r}; give one "
                    f"of {[v for v in BEAT_FIELDS if v != 't']}"
                )
            _claim(groups, (group, variable), name, f"map to beat variable {variable!r}", source)
        elif variable is not None:
            raise SessionFormatError(
                f"{source}: channel {name!r}: 'variable' applies to beats channels only, "
                f"not to group {group!r}"
            )
        vessel = spec.get("vessel")
        if group == "doppler":
            if not vessel:
                raise SessionFormatError(
                    f"{source}: doppler channel {name!r} needs a 'vessel' (e.g. 'femoral')"
                )
            vessel = str(vessel)
            _claim(vessels, vessel, name, f"map to doppler vessel {vessel!r}", source)
        else:
            if vessel:
                raise SessionFormatError(
                    f"{source}: channel {name!r}: 'vessel' applies to doppler channels "
                    f"only, not to group {group!r}"
                )
            if group != BEAT_GROUP:
                _claim(groups, group, name, f"map to group {group!r}", source)
        index = spec.get("index")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
                raise SessionFormatError(
                    f"{source}: channel {name!r}: 'index' must be a 0-based position "
                    f"(an integer >= 0), not {index!r}"
                )
            index = int(index)
            _claim(indices, index, name, f"take the file's signal at index {index}", source)
        units = spec.get("units")
        out.append(
            Channel(
                str(name),
                group,
                None if units in (None, "") else str(units),
                vessel,
                index,
                variable,
            )
        )
    return out


def _claim(taken: dict, key, name, what: str, source) -> None:
    """Record that channel ``name`` takes ``key``; a second claim is an error."""
    if key in taken:
        raise SessionFormatError(f"{source}: channels {taken[key]!r} and {name!r} both {what}")
    taken[key] = str(name)


def unit_factor(channel: Channel, file_units: str | None, source) -> tuple[float, str]:
    """Conversion factor of a channel to its group's canonical unit.

    Parameters
    ----------
    channel : Channel
        The mapped channel (its ``units`` is the catalog's unit, if any).
    file_units : str or None
        The unit the file declares for the channel (``None`` or blank: none).
    source : str or pathlib.Path
        The file, for messages.

    Returns
    -------
    factor : float
        Multiply the file's values by this to get the group's canonical unit (for a
        ``beats`` channel: its variable's unit, :attr:`Channel.target_units`; for
        ``resp``, which keeps the recorded unit, 1.0).
    unit : str
        The unit the values are in (the file's, else the mapping's).

    Raises
    ------
    UnitError
        Unknown unit, a unit of another quantity, file and mapping disagreeing, or
        no unit at all; the message names the file and the channel.
    """
    declared = (file_units or "").strip() or None
    given = channel.units
    if channel.group == BEAT_GROUP:

        def factor(unit):
            return unit_ratio(unit, channel.target_units)
    else:

        def factor(unit):
            return conversion_factor(unit, channel.group)

    try:
        if declared and given:
            f_declared = factor(declared)
            f_given = factor(given)
            # a group that keeps the recorded unit (resp) converts nothing: the two
            # units themselves must be the same
            kept = channel.target_units is None
            if f_declared != f_given or (
                kept and normalise_unit(declared) != normalise_unit(given)
            ):
                raise UnitError(
                    f"{source}: channel {channel.name!r} is in {declared!r} according to "
                    f"the file but in {given!r} according to the catalog"
                )
            return f_declared, declared
        unit = declared or given
        if unit is None:
            raise UnitError(
                f"{source}: channel {channel.name!r} has no unit in the file; give "
                "'units' in the channel mapping"
            )
        return factor(unit), unit
    except UnitError as err:
        if str(source) in str(err):
            raise
        raise UnitError(f"{source}: channel {channel.name!r}: {err}") from None


def missing_channel(source, name: str, available) -> SessionFormatError:
    """The error for a mapped channel the file does not have, listing those it has."""
    return SessionFormatError(
        f"{source}: no channel {name!r} (the file has: {file_names(available)})"
    )


def locate_channel(channel: Channel, labels, source) -> int:
    """Position of a mapped channel among a file's signal labels (column names).

    Parameters
    ----------
    channel : Channel
        The mapped channel: found by ``channel.index`` where given (the label there
        must then be ``channel.name``, or the file must have no labels), else by name.
    labels : sequence of str or None
        The file's signal labels in file order (EDF labels, WFDB signal names, CSV
        columns); ``None`` for a file without names (a header-less CSV).
    source : str or pathlib.Path
        The file, for messages.

    Returns
    -------
    int
        0-based position of the channel in the file.

    Raises
    ------
    SessionFormatError
        The name is not in the file (the message lists the labels it has), it is there
        more than once and no ``index`` says which (the message names every position),
        the ``index`` is past the file's last signal, or the label at ``index`` is not
        the mapped name.
    """
    if labels is None:
        if channel.index is None:
            raise SessionFormatError(
                f"{source}: the file has no channel names; give channel {channel.name!r} "
                "an 'index' (its 0-based column)"
            )
        return channel.index
    labels = [str(label).strip() for label in labels]
    if channel.index is not None:
        if channel.index >= len(labels):
            raise SessionFormatError(
                f"{source}: channel {channel.name!r}: index {channel.index} is past the "
                f"file's last signal (it has {len(labels)}: {file_names(labels)})"
            )
        found = labels[channel.index]
        if found != channel.name:
            raise SessionFormatError(
                f"{source}: channel {channel.name!r}: the signal at index "
                f"{channel.index} is labelled {found!r}"
            )
        return channel.index
    hits = [i for i, label in enumerate(labels) if label == channel.name]
    if not hits:
        raise missing_channel(source, channel.name, labels)
    if len(hits) > 1:
        raise SessionFormatError(
            f"{source}: channel label {channel.name!r} appears {len(hits)} times, at signal "
            f"indices {hits}; say which one with 'index' in the channel mapping"
        )
    return hits[0]


def file_token(path) -> str:
    """A token that changes when a local file changes (path, size, mtime)."""
    path = Path(path)
    try:
        st = path.stat()
        return tokenize(str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return tokenize(str(path))


def lazy_channel(func, args: tuple, n_samples: int, *, name: str, dtype=np.float64):
    """A one-chunk dask array whose samples ``func(*args)`` reads on compute only.

    Parameters
    ----------
    func : callable
        Returns a 1-D array of ``n_samples`` values of ``dtype``.
    args : tuple
        Its arguments.
    n_samples : int
        Length, known from the file's header.
    name : str
        Unique, deterministic dask key (include :func:`file_token` of the file).
    dtype : numpy dtype
    """
    value = dask.delayed(func, pure=True)(*args, dask_key_name=f"read-{name}")
    return da.from_delayed(value, shape=(int(n_samples),), dtype=dtype, name=name)


def assemble(signals, source, epochs=None, *, start: float = 0.0) -> xr.DataTree:
    """Build a session node from read channels.

    Parameters
    ----------
    signals : list of (Channel, array, float, str)
        ``(channel, samples, sampling_rate, unit in the file)``; samples (NumPy or
        dask) already converted to the group's canonical unit.
    source : str or pathlib.Path
        The file, for messages and the ``source_file`` attribute.
    epochs : list of (label, start, stop), optional
        Protocol epochs found in the file (s from the session start).
    start : float
        Time of the first sample (s from the session start).

    Returns
    -------
    xarray.DataTree
        Session node; each group has attrs ``source_file``, ``channel`` (the file's
        channel name, a list for ``doppler``) and ``source_units``.

    Raises
    ------
    SessionFormatError
        Doppler channels that differ in sampling rate or length; a channel mapped to
        group ``beats`` (waveform readers only: beat files build their node with
        :func:`cardiolab.schema.beats_group`).
    """
    beat_channels = [s[0].name for s in signals if s[0].group == BEAT_GROUP]
    if beat_channels:
        raise SessionFormatError(
            f"{source}: channel(s) {beat_channels} map to group {BEAT_GROUP!r}, which holds "
            "beat-to-beat values, not waveforms: read such files with format 'beats' or 'rr'"
        )
    groups: dict[str, xr.Dataset] = {}
    doppler = [s for s in signals if s[0].group == "doppler"]
    for ch, arr, fs, unit in signals:
        if ch.group == "doppler":
            continue
        groups[ch.group] = signal_group(
            arr,
            fs,
            ch.group,
            start=start,
            attrs={"source_file": str(source), "channel": ch.name, "source_units": unit},
            units=unit if ch.target_units is None else None,
        )
    if doppler:
        rates = {float(fs) for _, _, fs, _ in doppler}
        sizes = {int(a.shape[0]) for _, a, _, _ in doppler}
        if len(rates) > 1 or len(sizes) > 1:
            detail = ", ".join(f"{c.name!r}: {a.shape[0]} at {fs:g} Hz" for c, a, fs, _ in doppler)
            raise SessionFormatError(
                f"{source}: doppler channels must share one sampling rate and length "
                f"({detail}); map them from separate files"
            )
        stack = da.stack([da.asarray(a) for _, a, _, _ in doppler])
        groups["doppler"] = signal_group(
            stack,
            doppler[0][2],
            "doppler",
            start=start,
            vessels=[c.vessel for c, _, _, _ in doppler],
            attrs={
                "source_file": str(source),
                "channel": [c.name for c, _, _, _ in doppler],
                "source_units": [u for _, _, _, u in doppler],
            },
        )
    if epochs:
        groups["protocol"] = protocol_group(epochs)
        groups["protocol"].attrs["source_file"] = str(source)
    # order the groups as the data model lists them
    order = [g for g in (*RAW_GROUPS, "protocol") if g in groups]
    return session_node({g: groups[g] for g in order})
