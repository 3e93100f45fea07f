"""CSV exports with a time column (one column per channel).

The catalog names the time column, its unit, and each channel's group and unit (a
CSV header has no units). The row count is found by one pass over the bytes (counting
newlines); the samples are parsed only when computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import SessionFormatError
from ..units import conversion_factor
from .channels import assemble, lazy_channel, parse_channels, unit_factor

__all__ = ["read_csv", "write_csv"]


def _count_rows(path) -> int:
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1) - 1  # minus the header line


def _read_column(path, column, factor):
    return pd.read_csv(path, usecols=[column])[column].to_numpy(dtype=float) * factor


def read_csv(path, channels, *, time_column="time", time_units="s", sampling_rate=None):
    """Read a CSV export into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file (first line: column names).
    channels : mapping
        ``{column: {"group", "units", "vessel"?}}``; units are required.
    time_column : str
        Name of the time column.
    time_units : str
        Unit of the time column (s, ms, min).
    sampling_rate : float, optional
        Sampling rate (Hz); inferred from the time column's median step if not given.
        Sampling that deviates by more than 1 % from regular is an error.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    try:
        head = pd.read_csv(path, nrows=0)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: not a readable CSV file ({err})") from None
    columns = list(head.columns)
    if time_column not in columns:
        raise SessionFormatError(f"{path}: no time column {time_column!r} (columns: {columns})")
    for ch in chans:
        if ch.name not in columns:
            raise SessionFormatError(f"{path}: no channel {ch.name!r} (columns: {columns})")
    t = pd.read_csv(path, usecols=[time_column])[time_column].to_numpy(dtype=float)
    t = t * conversion_factor(time_units, "time")
    if t.size < 2:
        raise SessionFormatError(f"{path}: fewer than 2 samples")
    steps = np.diff(t)
    step = float(np.median(steps))
    if not step > 0 or np.any(np.abs(steps - step) > 0.01 * step):
        raise SessionFormatError(
            f"{path}: column {time_column!r} is not regularly sampled (median step "
            f"{step:g} s, steps from {steps.min():g} to {steps.max():g} s)"
        )
    fs = float(sampling_rate) if sampling_rate else round(1.0 / step, 6)
    n = _count_rows(path)
    if n != t.size:
        raise SessionFormatError(f"{path}: {n} data lines but {t.size} time values")
    signals = []
    for ch in chans:
        factor = unit_factor(ch, None, path)
        signals.append(
            (ch, lazy_channel(_read_column, (n,), np.float64, path, ch.name, factor), fs)
        )
    node = assemble(signals, path)
    if t[0] != 0:
        for name in node.children:
            ds = node[name].to_dataset(inherit=False)
            node[name] = ds.assign_coords(time=ds["time"] + t[0])
    return node


def write_csv(node, directory, stem: str) -> dict[str, Path]:
    """Write each signal group of a session node as ``<stem>_<group>.csv``.

    Columns: ``time`` (s) and one per channel (``ecg``, ``abp``, ``flux``,
    ``velocity_<vessel>``) in the group's canonical unit.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for group in ("ecg", "abp", "ldf", "doppler"):
        if group not in node.children:
            continue
        ds = node[group].to_dataset(inherit=False)
        var = {"ecg": "ecg", "abp": "abp", "ldf": "flux", "doppler": "velocity"}[group]
        frame = {"time": ds["time"].values}
        if group == "doppler":
            for v in ds["vessel"].values:
                frame[f"velocity_{v}"] = ds[var].sel(vessel=v).values
        else:
            frame[var] = ds[var].values
        target = directory / f"{stem}_{group}.csv"
        if target.exists():
            raise SessionFormatError(f"{target} exists; refusing to overwrite it")
        pd.DataFrame(frame).to_csv(target, index=False, float_format="%.6g")
        out[group] = target
    return out
