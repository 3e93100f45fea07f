"""Channel mappings: from a file's channels to the groups of the data model.

Every reader turns its channels into ``{group: [Channel, ...]}`` with
:func:`parse_channels`, converts units with :func:`unit_factor` and builds the
session node with :func:`assemble`, so that format quirks stay inside the readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import SessionFormatError, UnitError
from ..schema import RAW_GROUPS, protocol_group, session_node, signal_group
from ..units import conversion_factor

__all__ = ["Channel", "parse_channels", "unit_factor", "assemble"]


@dataclass(frozen=True)
class Channel:
    """One channel of a file and where it goes."""

    name: str
    group: str
    units: str | None = None
    vessel: str | None = None


def parse_channels(channels: Mapping | None, source) -> list[Channel]:
    """Check a channel mapping ``{name: {group, units?, vessel?}}``.

    Raises
    ------
    SessionFormatError
        Unknown group, doppler channel without vessel, or two channels for one group.
    """
    if not channels:
        raise SessionFormatError(f"{source}: no channel mapping given (channel -> group)")
    out, seen, vessels = [], {}, {}
    for name, spec in channels.items():
        if isinstance(spec, str):
            spec = {"group": spec}
        group = spec.get("group")
        if group not in RAW_GROUPS:
            raise SessionFormatError(
                f"{source}: channel {name!r} maps to unknown group {group!r} "
                f"(groups: {sorted(RAW_GROUPS)})"
            )
        vessel = spec.get("vessel")
        if group == "doppler":
            if not vessel:
                raise SessionFormatError(f"{source}: doppler channel {name!r} needs a 'vessel'")
            if vessel in vessels:
                raise SessionFormatError(
                    f"{source}: channels {vessels[vessel]!r} and {name!r} both map to "
                    f"doppler vessel {vessel!r}"
                )
            vessels[vessel] = name
        elif group in seen:
            raise SessionFormatError(
                f"{source}: channels {seen[group]!r} and {name!r} both map to group {group!r}"
            )
        else:
            seen[group] = name
        out.append(Channel(str(name), group, spec.get("units"), vessel))
    return out


def unit_factor(channel: Channel, file_units: str | None, source) -> float:
    """Factor to the group's canonical unit, from the file's or the mapping's unit.

    The file's unit is used where it declares one; the mapping's where it does not.
    Both given and different is an error, and so is an unknown unit.
    """
    declared = (file_units or "").strip() or None
    given = channel.units
    if declared and given:
        try:
            same = conversion_factor(declared, channel.group) == conversion_factor(
                given, channel.group
            )
        except UnitError as err:
            raise UnitError(f"{source}: channel {channel.name!r}: {err}") from None
        if not same:
            raise UnitError(
                f"{source}: channel {channel.name!r} is in {declared!r} according to the "
                f"file but in {given!r} according to the catalog"
            )
    unit = declared or given
    if unit is None:
        raise UnitError(
            f"{source}: channel {channel.name!r} has no unit in the file; give 'units' "
            "in the channel mapping"
        )
    try:
        return conversion_factor(unit, channel.group)
    except UnitError as err:
        raise UnitError(f"{source}: channel {channel.name!r}: {err}") from None


def assemble(signals, source, epochs=None) -> xr.DataTree:
    """Build a session node from read channels.

    Parameters
    ----------
    signals : list of (Channel, array, sampling_rate)
        Arrays (NumPy or dask) already in canonical units.
    source : str
        The file, for messages and the ``source_file`` attribute.
    epochs : list of (label, start, stop), optional
        Protocol epochs found in the file.
    """
    groups: dict[str, xr.Dataset] = {}
    doppler = [(c, a, fs) for c, a, fs in signals if c.group == "doppler"]
    for ch, arr, fs in signals:
        if ch.group == "doppler":
            continue
        groups[ch.group] = signal_group(
            arr, fs, ch.group, attrs={"source_file": str(source), "channel": ch.name}
        )
    if doppler:
        rates = {fs for _, _, fs in doppler}
        sizes = {a.shape[0] for _, a, _ in doppler}
        if len(rates) > 1 or len(sizes) > 1:
            raise SessionFormatError(
                f"{source}: doppler channels {[c.name for c, _, _ in doppler]} differ in "
                "sampling rate or length; put each vessel in its own file"
            )
        stack = da.stack([da.asarray(a) for _, a, _ in doppler])
        groups["doppler"] = signal_group(
            stack,
            doppler[0][2],
            "doppler",
            vessels=[c.vessel for c, _, _ in doppler],
            attrs={"source_file": str(source), "channel": [c.name for c, _, _ in doppler]},
        )
    if epochs:
        groups["protocol"] = protocol_group(epochs)
    return session_node(groups)


def lazy_channel(func, shape, dtype=np.float64, *args):
    """A dask array whose samples are read by ``func(*args)`` on compute only."""
    import dask

    return da.from_delayed(dask.delayed(func, pure=True)(*args), shape=shape, dtype=dtype)
