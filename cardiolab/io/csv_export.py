"""CSV exports: a time column and one column per channel, one file per group.

Layout
    First line: column names; then one row per sample, comma-separated. A column
    name may carry its unit in square brackets, ``"abp [mmHg]"``; the channel is
    then named ``abp`` in the mapping (or by the full column name) and the bracketed
    unit is the file's unit, checked against the mapping's ``units`` like an EDF
    physical dimension. Without brackets, the mapping's ``units`` is required.
    The time column (``time_column``, ``"time"`` by default, also matched as
    ``"time [s]"``) is in ``time_units``; a bracketed time unit must agree with it.

Laziness and cost
    Opening parses the time column once, in chunks of a million rows (one pass over
    the file's bytes, memory bounded): it gives the number of samples, the start time
    and the sampling rate, and checks that sampling is regular. The channel columns
    are parsed only on compute, each by one delayed :func:`pandas.read_csv`.

Sampling
    The sampling rate is ``sampling_rate`` if given, else 1 / the median step of the
    first million rows. A step that deviates from 1 / rate by more than 1 %, or a
    last time more than half a step away from ``start + (n - 1) / rate``, is a
    :class:`~cardiolab.errors.SessionFormatError` naming the file.

Writing
    :func:`write_csv` writes ``<stem>_<group>.csv`` with columns ``time [s]`` and
    ``ecg [mV]``, ``abp [mmHg]``, ``flux [PU]`` or ``velocity_<vessel> [cm/s]``,
    values in Python's shortest round-trip notation (read back to within pandas'
    fast float parser, about 1e-15 of full scale), plus ``<stem>_protocol.csv`` (``label``,
    ``start [s]``, ``stop [s]``) when the session has epochs; read that one with
    :func:`read_csv_protocol`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CardiolabError, SessionFormatError, UnitError
from ..schema import protocol_group
from ..units import conversion_factor
from .channels import (
    GROUP_VARIABLES,
    assemble,
    file_token,
    lazy_channel,
    missing_channel,
    parse_channels,
    unit_factor,
)

__all__ = ["read_csv", "write_csv", "read_csv_protocol", "column_name"]

log = logging.getLogger("cardiolab")

_CHUNK_ROWS = 1_000_000
_TOLERANCE = 0.01  # relative deviation of a time step from 1 / sampling rate
_BRACKETED = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]\s*$")


def column_name(name: str, unit: str) -> str:
    """The CSV column name of a channel with its unit: ``"abp [mmHg]"``."""
    return f"{name} [{unit}]"


def _split(header: str) -> tuple[str, str | None]:
    """``"abp [mmHg]"`` -> ``("abp", "mmHg")``; ``"abp"`` -> ``("abp", None)``."""
    m = _BRACKETED.match(header)
    if m and m.group("name"):
        return m.group("name").strip(), m.group("unit").strip() or None
    return header.strip(), None


def _find_column(path, columns: list[str], name: str) -> tuple[str, str | None]:
    """The column a mapping names (full name or name without the unit), and its unit."""
    if name in columns:
        return name, _split(name)[1]
    hits = [c for c in columns if _split(c)[0] == name]
    if len(hits) > 1:
        raise SessionFormatError(f"{path}: channel {name!r} matches several columns: {hits}")
    if not hits:
        raise missing_channel(path, name, columns)
    return hits[0], _split(hits[0])[1]


def _time_scan(path, column: str, factor: float, sampling_rate: float | None):
    """One chunked pass over the time column: ``(n, start, rate)``, sampling checked."""
    ref = 1.0 / float(sampling_rate) if sampling_rate else None
    n, start, last = 0, None, None
    try:
        reader = pd.read_csv(
            path, usecols=[column], dtype={column: np.float64}, chunksize=_CHUNK_ROWS
        )
        for chunk in reader:
            t = chunk[column].to_numpy(dtype=np.float64) * factor
            bad = np.flatnonzero(~np.isfinite(t))
            if bad.size:
                raise SessionFormatError(
                    f"{path}: column {column!r} has a missing time at data row {n + bad[0] + 1}"
                )
            if t.size == 0:
                continue
            steps = np.diff(t if last is None else np.concatenate([[last], t]))
            if ref is None and steps.size:
                ref = float(np.median(steps))
                if not ref > 0:
                    raise SessionFormatError(
                        f"{path}: column {column!r} does not increase (median step {ref:g} s)"
                    )
            if ref is not None:
                off = np.flatnonzero(np.abs(steps - ref) > _TOLERANCE * ref)
                if off.size:
                    k = int(off[0])
                    row = n + k + (1 if last is None else 0)
                    raise SessionFormatError(
                        f"{path}: column {column!r} is not regularly sampled: the step "
                        f"before data row {row + 1} is {steps[k]:g} s, not {ref:g} s "
                        f"(tolerance {_TOLERANCE:.0%}; {steps.size} steps, from "
                        f"{steps.min():g} to {steps.max():g} s in this block)"
                    )
            if start is None:
                start = float(t[0])
            last = float(t[-1])
            n += t.size
    except (ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: cannot read time column {column!r} ({err})") from None
    if n < 2:
        raise SessionFormatError(f"{path}: fewer than 2 samples in column {column!r}")
    rate = float(sampling_rate) if sampling_rate else round(1.0 / ref, 6)
    expected = start + (n - 1) / rate
    if abs(last - expected) > 0.5 / rate:
        raise SessionFormatError(
            f"{path}: column {column!r} ends at {last:.6g} s, but {n} samples at "
            f"{rate:g} Hz from {start:.6g} s end at {expected:.6g} s: the sampling rate "
            "is not what the steps suggest; give sampling_rate"
        )
    return n, start, rate


def _read_column(path, column: str, factor: float, n: int) -> np.ndarray:
    """One channel column, in the group's canonical unit (runs on compute)."""
    try:
        values = pd.read_csv(path, usecols=[column], dtype={column: np.float64})[column]
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: cannot read column {column!r} ({err})") from None
    values = values.to_numpy(dtype=np.float64)
    if values.size != n:
        raise SessionFormatError(
            f"{path}: column {column!r} has {values.size} values, the time column {n}"
        )
    return values * factor


def read_csv(path, channels, *, time_column="time", time_units="s", sampling_rate=None):
    """Read a CSV export into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file (first line: column names); opened read-only.
    channels : mapping
        ``{column: {"group", "units", "vessel"?}}``; ``units`` is required for
        columns whose name carries no ``[unit]``.
    time_column : str
        Name of the time column (with or without its ``[unit]``).
    time_units : str
        Unit of the time column (``s``, ``ms``, ``min``, ``h``).
    sampling_rate : float, optional
        Sampling rate (Hz); inferred from the time column's median step if not given.

    Returns
    -------
    xarray.DataTree
        Session node with one group per mapped group; samples dask-backed. The
        ``time`` coordinates start at the file's first time.

    Raises
    ------
    SessionFormatError
        Missing or unreadable file, missing column, irregular sampling.
    UnitError
        Unknown unit, no unit, or a unit contradicting the mapping or ``time_units``.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: CSV file not found")
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SessionFormatError(f"{path}: not a readable CSV file ({err})") from None
    try:
        time_header, time_declared = _find_column(path, columns, time_column)
    except SessionFormatError:
        raise SessionFormatError(
            f"{path}: no time column {time_column!r} (the file's columns: {columns})"
        ) from None
    try:
        t_factor = conversion_factor(time_units, "time")
        if time_declared and conversion_factor(time_declared, "time") != t_factor:
            raise UnitError(
                f"{path}: column {time_header!r} is in {time_declared!r} according to the "
                f"file but in {time_units!r} according to time_units"
            )
    except UnitError as err:
        if str(path) in str(err):
            raise
        raise UnitError(f"{path}: time column {time_header!r}: {err}") from None
    found = []
    for ch in chans:
        header, declared = _find_column(path, columns, ch.name)
        factor, unit = unit_factor(ch, declared, path)
        found.append((ch, header, factor, unit))
    n, start, rate = _time_scan(path, time_header, t_factor, sampling_rate)
    token = file_token(path)
    signals = [
        (
            ch,
            lazy_channel(
                _read_column, (path, header, factor, n), n, name=f"csv-{header}-{token}-{factor}"
            ),
            rate,
            unit,
        )
        for ch, header, factor, unit in found
    ]
    return assemble(signals, path, start=start)


def read_csv_protocol(path) -> xr.Dataset:
    """Read the protocol epochs :func:`write_csv` exports (``label``, ``start``, ``stop``).

    Parameters
    ----------
    path : str or pathlib.Path
        A CSV file with columns ``label``, ``start [<unit>]`` and ``stop [<unit>]``
        (unit s where no bracket is given).

    Returns
    -------
    xarray.Dataset
        The ``protocol`` group (times in s).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"label": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: not a readable CSV file ({err})") from None
    columns = [str(c) for c in frame.columns]
    out = {}
    for field in ("label", "start", "stop"):
        header, unit = _find_column(path, columns, field)
        if field == "label":
            out[field] = frame[header].astype(str).tolist()
            continue
        try:
            factor = conversion_factor(unit or "s", "time")
        except UnitError as err:
            raise UnitError(f"{path}: column {header!r}: {err}") from None
        out[field] = frame[header].to_numpy(dtype=np.float64) * factor
    ds = protocol_group(zip(out["label"], out["start"], out["stop"], strict=True))
    ds.attrs["source_file"] = str(path)
    return ds


def write_csv(node, directory, stem: str) -> dict[str, Path]:
    """Write a session node as CSV files, one per group.

    Parameters
    ----------
    node : xarray.DataTree
        Session node in the data model.
    directory : str or pathlib.Path
        Folder for the files (created if needed).
    stem : str
        File names are ``<stem>_<group>.csv``.

    Returns
    -------
    dict of str to pathlib.Path
        ``{group: path}``, including ``"protocol"`` when the session has epochs.

    Raises
    ------
    CardiolabError
        One of the files exists (nothing is written then).

    Notes
    -----
    Columns are ``time [s]`` and one per channel with its unit in brackets:
    ``ecg [mV]``, ``abp [mmHg]``, ``flux [PU]``, ``velocity_<vessel> [cm/s]``. Read a
    file back with ``read_csv(path, {"abp": {"group": "abp"}})`` (doppler channels
    need their ``vessel``).
    """
    directory = Path(directory)
    groups = [g for g in (*GROUP_VARIABLES, "protocol") if g in node.children]
    targets = {g: directory / f"{stem}_{g}.csv" for g in groups}
    for target in targets.values():
        if target.exists():
            raise CardiolabError(f"{target} exists; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    for group, target in targets.items():
        ds = node[group].to_dataset(inherit=False)
        if group == "protocol":
            frame = pd.DataFrame(
                {
                    "label": [str(x) for x in ds["epoch"].values],
                    column_name("start", "s"): ds["start"].values,
                    column_name("stop", "s"): ds["stop"].values,
                }
            )
        else:
            var = GROUP_VARIABLES[group]
            units = ds[var].attrs["units"]
            frame = {column_name("time", "s"): ds["time"].values}
            if group == "doppler":
                values = ds[var].transpose("vessel", "time").values
                for vessel, row in zip(ds["vessel"].values, values, strict=True):
                    frame[column_name(f"{var}_{vessel}", units)] = row
            else:
                frame[column_name(var, units)] = ds[var].values
            frame = pd.DataFrame(frame)
        frame.to_csv(target, index=False)
    log.debug("wrote %s", [str(t) for t in targets.values()])
    return targets
