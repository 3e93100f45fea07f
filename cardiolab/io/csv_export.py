"""CSV exports: a time column (or a stated rate) and one column per channel.

Layout
    The first line is either column names or, where every field of it parses as a
    number (or a missing value: empty, ``nan``), the first row of samples: such a
    file has no header, so its channels are mapped by ``index`` (0-based column) and
    it needs ``sampling_rate``. Names may be quoted with ``"`` or, as PhysioNet's
    export writes them, with ``'`` (a first line starting with ``'`` is read with
    ``'`` as the quote character). A column name may carry its unit in square
    brackets, ``"abp [mmHg]"``; the channel is then named ``abp`` in the mapping (or
    by the full column name). A second line whose fields are all text (none a
    number) is a *units line* (PhysioNet: ``'seconds','mV','mV'``) giving each
    column's unit. A unit in brackets or in the units line is the file's unit,
    checked against the mapping's ``units`` like an EDF physical dimension; without
    one, the mapping's ``units`` is required. Channels are found with
    :func:`~cardiolab.io.channels.locate_channel` (a name held twice needs
    ``index``).

Separators and decimal marks
    ``separator`` (``,`` by default; ``;``, tab, space, ``|``) and ``decimal`` (``.``
    by default, or ``,``) are the catalog's to state; nothing is guessed. A header
    line without the separator but with ``;``, tab or ``|``, or sample fields such as
    ``0,455`` while ``decimal`` is ``.``, is an error that says which option to give.
    (A header-less, one-column file of ``0,455`` with ``,`` as separator cannot be
    told from two integer columns: give ``decimal`` and ``separator`` for such files.)
    In files of one column an empty line is a missing sample (NaN), as pandas writes
    one; in files of several columns empty lines are skipped.

Time and sampling
    The time column is ``time_column`` (by default a column named ``time`` or, as in
    PhysioNet's export, ``Elapsed time``, with or without a ``[unit]``), in
    ``time_units``; a unit in brackets or in the units line must agree with it. A file
    without a time column reads when ``sampling_rate`` is given; its first sample is
    at 0 s.

    Times are printed to some resolution, often coarser than the sampling period
    (PhysioNet prints seconds to 3 decimals, so at 360 Hz its steps read 0.003 or
    0.002 s); the check is therefore on the grid, not step by step. The tolerance
    ``tol`` is half the last printed decimal of the times (counted in the file's first
    rows; none where they use exponents) plus 1/1000 of a sampling period for
    floating-point error.

    - ``sampling_rate`` given: every time must satisfy ``|t_k - s - k / rate| <= tol``
      for one start ``s``;
    - not given: every time must satisfy ``|t_k - t_0 - k p| <= 2 tol`` (``t_0`` is
      rounded too) for one period ``p``, and the rate is ``1 / p`` with the fewest
      digits among the periods that fit. This is the span's estimate
      ``(n - 1) / (t_last - t_0)`` made exact by all rows: PhysioNet's 43 200 samples
      in 119.997 s give 360 Hz, not the span's 360.0008 Hz.

    Opening parses the time column once, in chunks of a million rows, keeping only
    the interval of starts (periods) that fit the rows so far: one pass, memory
    bounded. A time that empties the interval is a
    :class:`~cardiolab.errors.SessionFormatError` naming the file, the row and the
    shortest and longest steps so far. Times that stay within their printed
    resolution (constant) give no rate: give ``sampling_rate``. The first time is
    the session's start as printed (to within ``tol``).

Laziness and cost
    Opening reads the first lines, the last 64 kB (a last line with fewer fields than
    the header means the file was cut mid-line) and the time column (or, without
    one, the first mapped column, to count the rows). The channel columns are parsed
    only on compute, each by one delayed :func:`pandas.read_csv`.

Writing
    :func:`write_csv` writes ``<stem>_<group>.csv`` with columns ``time [s]`` and
    ``ecg [mV]``, ``abp [mmHg]``, ``flux [PU]`` or ``velocity_<vessel> [cm/s]``,
    values in Python's shortest round-trip notation (read back to within pandas'
    fast float parser, about 1e-15 of full scale), plus ``<stem>_protocol.csv`` (``label``,
    ``start [s]``, ``stop [s]``) when the session has epochs; read that one with
    :func:`read_csv_protocol`.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CardiolabError, SessionFormatError, UnitError, file_names
from ..schema import protocol_group
from ..units import conversion_factor, normalise_unit
from .channels import (
    GROUP_VARIABLES,
    Channel,
    assemble,
    file_token,
    lazy_channel,
    locate_channel,
    missing_channel,
    parse_channels,
    unit_factor,
)
from .registry import (
    FileFormat,
    FormatOption,
    nonempty_text,
    one_of,
    positive_number,
    register_format,
    time_unit,
)

__all__ = [
    "SEPARATORS",
    "DECIMAL_MARKS",
    "check_text_marks",
    "read_csv",
    "write_csv",
    "read_csv_protocol",
    "column_name",
    "split_column_name",
]

log = logging.getLogger("cardiolab")

_CHUNK_ROWS = 1_000_000
_SNIFF_ROWS = 50  # first lines read to find the header, units line and resolution
_TAIL_BYTES = 65536  # end of the file read to check its last line
_MARGIN = 1e-3  # of a sampling period, added to the printed resolution of the times
_TIME_NAMES = ("time", "elapsed time")  # default time columns (case-insensitive)
#: Field separators and decimal marks a delimited text file may use (catalog options).
SEPARATORS = (",", ";", "\t", " ", "|")
DECIMAL_MARKS = (".", ",")
_OTHER_SEPARATORS = (";", "\t", "|")  # looked for where the stated one is absent
_BRACKETED = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]\s*$")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+([eE][-+]?\d+)?$")
_MISSING = {"", "nan", "na", "n/a", "null", "none", "-nan"}


def column_name(name: str, unit: str) -> str:
    """The CSV column name of a channel with its unit: ``"abp [mmHg]"``."""
    return f"{name} [{unit}]"


def split_column_name(header: str) -> tuple[str, str | None]:
    """A column name and the unit in its brackets (the inverse of :func:`column_name`).

    ``"abp [mmHg]"`` -> ``("abp", "mmHg")``; ``"abp"`` -> ``("abp", None)``.
    """
    m = _BRACKETED.match(header)
    if m and m.group("name"):
        return m.group("name").strip(), m.group("unit").strip() or None
    return header.strip(), None


def _find_column(path, columns: list[str], name: str) -> tuple[str, str | None]:
    """The column a name designates (full name or name without the unit), and its unit."""
    if name in columns:
        return name, split_column_name(name)[1]
    hits = [c for c in columns if split_column_name(c)[0] == name]
    if len(hits) > 1:
        raise SessionFormatError(f"{path}: channel {name!r} matches several columns: {hits}")
    if not hits:
        raise missing_channel(path, name, columns)
    return hits[0], split_column_name(hits[0])[1]


@dataclass(frozen=True)
class _Layout:
    """How a CSV file is laid out, from its first lines."""

    labels: list[str] | None  # column names as written (None: no header line)
    units: list[str | None]  # each column's unit (brackets or units line)
    skip: int  # lines before the first sample row
    n_fields: int
    marks: dict  # pandas.read_csv options: sep, decimal, quotechar
    resolution: dict[int, float]  # printed resolution of each column's first values

    def position(self, channel: Channel, path) -> int:
        """The column of a mapped channel (full column name, or name without [unit])."""
        if self.labels is None:
            return locate_channel(channel, None, path)
        names = [split_column_name(label)[0] for label in self.labels]
        if channel.name in self.labels:
            return locate_channel(channel, self.labels, path)
        if channel.name in names or channel.index is not None:
            return locate_channel(channel, names, path)
        raise missing_channel(path, channel.name, self.labels)

    def name(self, pos: int) -> str:
        return self.labels[pos] if self.labels is not None else f"column {pos}"

    def read(self, path, pos: int, **kwargs):
        """:func:`pandas.read_csv` of one column (by position) of the samples.

        A file with no line after its header gives no rows (a frame, or one chunk).
        A file of one column is read with its column named, so that empty lines at its
        start are samples (NaN) rather than a header pandas cannot find.
        """
        if self.n_fields == 1:
            kwargs = {"names": [0], **kwargs}
        try:
            return pd.read_csv(
                path,
                header=None,
                skiprows=self.skip,
                usecols=[pos],
                dtype={pos: np.float64},
                skip_blank_lines=self.n_fields > 1,
                **self.marks,
                **kwargs,
            )
        except pd.errors.EmptyDataError:
            empty = pd.DataFrame({pos: np.empty(0)})
            return [empty] if "chunksize" in kwargs else empty


def _is_number(text: str, decimal: str) -> bool:
    text = text.strip()
    if text.lower() in _MISSING:
        return True
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        float(text)
    except ValueError:
        return False
    return True


def _printed_resolution(texts, decimal: str) -> float:
    """Half-step of the last printed decimal of numbers as written (0: exponents)."""
    decimals = 0
    for text in texts:
        text = text.strip()
        if not text or text.lower() in _MISSING:
            continue
        if "e" in text.lower():
            return 0.0
        if decimal in text:
            decimals = max(decimals, len(text.split(decimal, 1)[1]))
    return 0.5 * 10.0**-decimals


def check_text_marks(path, separator: str, decimal: str) -> None:
    """Check a delimited text file's separator and decimal mark (one of
    :data:`SEPARATORS`, :data:`DECIMAL_MARKS`, and not the same character).

    Raises
    ------
    SessionFormatError
        Naming the file and the option.
    """
    if decimal not in DECIMAL_MARKS:
        raise SessionFormatError(f"{path}: decimal must be '.' or ',', not {decimal!r}")
    if separator not in SEPARATORS:
        raise SessionFormatError(
            f"{path}: separator must be one of {list(SEPARATORS)}, not {separator!r}"
        )
    if decimal == separator:
        raise SessionFormatError(
            f"{path}: decimal and separator are both {decimal!r}; give the file's separator "
            "(e.g. separator: ';' with decimal: ',')"
        )


def _check_options(path, sampling_rate, decimal, separator) -> float | None:
    check_text_marks(path, separator, decimal)
    if sampling_rate is None:
        return None
    try:
        rate = float(sampling_rate)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(sampling_rate, bool) or not (math.isfinite(rate) and rate > 0):
        raise SessionFormatError(
            f"{path}: sampling_rate is {sampling_rate!r}; it must be a number of Hz > 0"
        )
    return rate


def _first_lines(path) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = [line for _, line in zip(range(_SNIFF_ROWS + 2), f, strict=False)]
    except (OSError, UnicodeDecodeError) as err:
        raise SessionFormatError(f"{path}: not a readable CSV file ({err})") from None
    if not lines:
        raise SessionFormatError(f"{path}: not a readable CSV file (the file is empty)")
    return lines


def _check_marks(path, lines: list[str], separator: str, decimal: str, rows) -> None:
    """Refuse a separator or decimal mark the file evidently does not use."""
    first = lines[0]
    commas = decimal == "." and any(
        _DECIMAL_COMMA.match(field.strip()) for row in rows for field in row
    )
    if separator not in first:
        others = [s for s in _OTHER_SEPARATORS if s in first]
        if others:
            advice = f"separator: {others[0]!r}"
            if decimal == "." and re.search(r"\d,\d", "".join(lines[1:])):
                advice += " and decimal: ','"
            raise SessionFormatError(
                f"{path}: the first line has no separator {separator!r} but has "
                f"{others[0]!r}: give {advice} for this file"
            )
    if commas:
        raise SessionFormatError(
            f"{path}: values such as "
            f"{next(f for r in rows for f in r if _DECIMAL_COMMA.match(f.strip()))!r} use a "
            "decimal comma: give decimal: ',' (and the file's separator) for this file"
        )


def _layout(path, separator: str, decimal: str) -> _Layout:
    """Header line, units line and printed resolution, from the file's first lines."""
    lines = _first_lines(path)
    quotechar = "'" if lines[0].lstrip().startswith("'") else '"'
    marks = {"sep": separator, "decimal": decimal, "quotechar": quotechar}
    reader = csv.reader(lines, delimiter=separator, quotechar=quotechar)
    try:
        rows = [[field.strip() for field in row] for row in reader]
    except csv.Error as err:
        raise SessionFormatError(f"{path}: not a readable CSV file ({err})") from None
    rows = [row or [""] for row in rows]  # an empty line: one empty field
    if len(lines) > _SNIFF_ROWS and not lines[-1].endswith(("\n", "\r")):
        rows = rows[:-1]  # the last line read may be cut at the sniff's end
    n_fields = len(rows[0])
    if n_fields > 1:  # empty lines are skipped in files of several columns
        rows = [row for row in rows if row != [""]]
    header = not all(_is_number(field, decimal) for field in rows[0])
    _check_marks(path, lines, separator, decimal, rows[int(header) :])
    units_line = (
        header
        and len(rows) > 1
        and not any(_is_number(f, decimal) for f in rows[1] if f)
        and any(rows[1])
    )
    skip = int(header) + int(units_line)
    samples = rows[skip:]
    labels = list(rows[0]) if header else None
    units: list[str | None] = [None] * n_fields
    if labels is not None:
        units = [split_column_name(label)[1] for label in labels]
    if units_line:
        for i, stated in enumerate(rows[1][:n_fields]):
            if not stated:
                continue
            if units[i] and not _same_unit(units[i], stated):
                raise UnitError(
                    f"{path}: column {labels[i]!r} is in {units[i]!r} according to its name "
                    f"but in {stated!r} according to the units line"
                )
            units[i] = units[i] or stated
    resolution = {
        i: _printed_resolution((row[i] for row in samples if len(row) > i), decimal)
        for i in range(n_fields)
    }
    return _Layout(labels, units, skip, n_fields, marks, resolution)


def _same_unit(a: str, b: str) -> bool:
    """Two spellings of one unit (``uV`` and ``µV``); unknown units compare as written."""
    try:
        return normalise_unit(a) == normalise_unit(b)
    except UnitError:
        return a.strip() == b.strip()


def _check_last_line(path, layout: _Layout) -> bool:
    """Refuse a file cut mid-line; return whether it ends with a line break."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    ends_cleanly = tail.endswith((b"\n", b"\r"))
    lines = tail.decode("utf-8", errors="replace").splitlines()
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first may start mid-line
    lines = [line for line in lines if line.strip()]
    if not lines or layout.n_fields < 2:
        return ends_cleanly
    q = layout.marks["quotechar"]
    last = next(csv.reader([lines[-1]], delimiter=layout.marks["sep"], quotechar=q))
    if len(last) < layout.n_fields or (not ends_cleanly and not last[-1].strip()):
        raise SessionFormatError(
            f"{path}: the last line has {len(last)} of the {layout.n_fields} fields of the "
            f"first{'' if len(last) < layout.n_fields else ', the last one empty'} "
            f"({'' if ends_cleanly else 'no line break after it; '}line not shown): "
            "the file is cut mid-line (truncated)"
        )
    if not ends_cleanly:
        log.warning(
            "%s: the file does not end with a line break; if it was cut short, its last "
            "value (%r) may be cut too",
            path,
            last[-1],
        )
    return ends_cleanly


def _simplest_rate(low_step: float, high_step: float) -> float:
    """The rate with the fewest digits whose period lies in ``[low_step, high_step]`` (s).

    PhysioNet's 3-decimal times at 360 Hz allow periods around 1/360 s to a few parts
    in 10^8 over two minutes: 360 is taken, not the 360.0008 of the span alone.
    """
    high, low = 1.0 / low_step, 1.0 / high_step
    middle = 2.0 / (low_step + high_step)
    for digits in range(-3, 10):
        rate = round(middle, digits)
        if rate > 0 and low <= rate <= high:
            return rate
    return middle


def _time_scan(path, layout: _Layout, pos: int, factor: float, rate, ends: bool):
    """One chunked pass over the time column: ``(n, start, rate)``, sampling checked.

    With a given rate, the start ``s`` must satisfy ``|t_k - s - k / rate| <= tol`` for
    every row k: the pass keeps the interval of such ``s``. Without one, the period
    ``p`` must satisfy ``|t_k - t_0 - k p| <= 2 tol`` (``t_0`` is rounded too): the
    pass keeps the interval of such ``p``. Either way an empty interval is an error
    at the row that empties it, and memory does not grow with the file.
    """
    label = layout.name(pos)
    resolution = layout.resolution[pos] * factor
    n, start, last = 0, None, None
    shortest, longest = (math.inf, 0), (-math.inf, 0)  # (step, data row after it)
    low, high = -math.inf, math.inf  # feasible start (rate given) or period (inferred)
    tolerance = None if rate is None else resolution + _MARGIN / rate
    try:
        for chunk in layout.read(path, pos, chunksize=_CHUNK_ROWS):
            t = chunk[pos].to_numpy(dtype=np.float64) * factor
            if t.size == 0:
                continue
            bad = np.flatnonzero(~np.isfinite(t))
            if bad.size:
                raise SessionFormatError(
                    f"{path}: column {label!r} has a missing time at data row {n + bad[0] + 1}"
                )
            if start is None:
                start = float(t[0])
                if rate is None and t.size > 1:  # margin from the first block's span
                    tolerance = resolution + _MARGIN * (float(t[-1]) - start) / (t.size - 1)
            steps = np.diff(t) if last is None else np.diff(t, prepend=last)
            if steps.size:
                first_row = n + (2 if last is None else 1)
                i, j = int(np.argmin(steps)), int(np.argmax(steps))
                shortest = min(shortest, (float(steps[i]), first_row + i))
                longest = max(longest, (float(steps[j]), first_row + j))
            k = np.arange(n, n + t.size, dtype=np.float64)
            if rate is not None:
                lows, highs = t - k / rate - tolerance, t - k / rate + tolerance
            else:
                if tolerance is None:  # a first block of one row
                    tolerance = resolution
                kk = np.where(k > 0, k, np.nan)  # row 0 is t_0 itself: no bound
                lows = (t - start - 2 * tolerance) / kk
                highs = (t - start + 2 * tolerance) / kk
            block_low, block_high = np.nanmax(lows, initial=low), np.nanmin(highs, initial=high)
            if block_low > block_high:  # find the row that empties the interval
                lows = np.fmax(np.fmax.accumulate(lows), low)
                highs = np.fmin(np.fmin.accumulate(highs), high)
                i = int(np.flatnonzero(lows > highs)[0])
                if rate is not None:
                    grid = f"at {rate:g} Hz"
                else:
                    before = (low, high) if i == 0 else (lows[i - 1], highs[i - 1])
                    grid = (
                        "at any one rate (the periods that fit the rows before it: "
                        f"{before[0]:.9g} to {before[1]:.9g} s)"
                    )
                cut = "" if ends else "; the file does not end with a line break: cut short?"
                raise SessionFormatError(
                    f"{path}: column {label!r} is not regularly sampled {grid}: data row "
                    f"{n + i + 1} (at {t[i]:.9g} s) is off the grid by more than the times' "
                    f"printed resolution allows ({tolerance:.3g} s); the steps up to data row "
                    f"{n + t.size} range from {shortest[0]:g} s (before data row "
                    f"{shortest[1]}) to {longest[0]:g} s (before data row {longest[1]}){cut}"
                )
            low, high = float(block_low), float(block_high)
            last = float(t[-1])
            n += t.size
    except (ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: cannot read time column {label!r} ({err})") from None
    if n < 2:
        raise SessionFormatError(f"{path}: fewer than 2 samples in time column {label!r}")
    if rate is None:
        if not low > 0:
            raise SessionFormatError(
                f"{path}: column {label!r} does not increase beyond its printed resolution "
                f"(from {start:g} s at data row 1 to {last:g} s at data row {n}), so it does "
                "not give the sampling rate; give sampling_rate"
            )
        rate = _simplest_rate(low, high)
    return n, start, rate


def _count_rows(path, layout: _Layout, pos: int) -> int:
    """Rows of samples in a file without a time column (one chunked pass over a column)."""
    n = 0
    try:
        for chunk in layout.read(path, pos, chunksize=_CHUNK_ROWS):
            n += len(chunk)
    except (ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(
            f"{path}: cannot read column {layout.name(pos)!r} ({err})"
        ) from None
    if n < 1:
        raise SessionFormatError(f"{path}: no samples after the header")
    return n


def _read_column(path, layout: _Layout, pos: int, factor: float, n: int) -> np.ndarray:
    """One channel column, in the group's canonical unit (runs on compute)."""
    label = layout.name(pos)
    try:
        values = layout.read(path, pos)[pos]
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise SessionFormatError(f"{path}: cannot read column {label!r} ({err})") from None
    values = values.to_numpy(dtype=np.float64)
    if values.size != n:
        raise SessionFormatError(
            f"{path}: column {label!r} has {values.size} values, the file {n} rows"
        )
    return values * factor


def _time_position(path, layout: _Layout, time_column, rate) -> int | None:
    """The time column's position; ``None`` for a file read at a given rate without one."""
    if layout.labels is None:
        if time_column is not None:
            raise SessionFormatError(
                f"{path}: the file has no header line (its first line is numbers), so no "
                f"time column {time_column!r}; map channels by 'index' and give sampling_rate"
            )
        if rate is None:
            raise SessionFormatError(
                f"{path}: the file has no header line (its first line is numbers) and no "
                "time column; give sampling_rate (Hz) and map channels by 'index'"
            )
        return None
    labels = layout.labels
    if time_column is not None:
        try:
            header, _ = _find_column(path, labels, str(time_column))
        except SessionFormatError:
            raise SessionFormatError(
                f"{path}: no time column {time_column!r} (the file's columns: {file_names(labels)})"
            ) from None
        return labels.index(header)
    hits = [
        i for i, label in enumerate(labels) if split_column_name(label)[0].lower() in _TIME_NAMES
    ]
    if len(hits) > 1:
        raise SessionFormatError(
            f"{path}: several time columns {[labels[i] for i in hits]}; give time_column"
        )
    if hits:
        return hits[0]
    if rate is None:
        raise SessionFormatError(
            f"{path}: no time column 'time' (the file's columns: {file_names(labels)}); give "
            "time_column, or sampling_rate for a file without one"
        )
    return None


def _time_factor(path, layout: _Layout, pos: int, time_units: str) -> float:
    """Factor from the time column's unit to s; a unit the file states must agree."""
    label, declared = layout.labels[pos], layout.units[pos]
    try:
        factor = conversion_factor(time_units, "time")
        if declared and conversion_factor(declared, "time") != factor:
            raise UnitError(
                f"{path}: column {label!r} is in {declared!r} according to the file but in "
                f"{time_units!r} according to time_units"
            )
    except UnitError as err:
        if str(path) in str(err):
            raise
        raise UnitError(f"{path}: time column {label!r}: {err}") from None
    return factor


def read_csv(
    path,
    channels,
    *,
    time_column=None,
    time_units="s",
    sampling_rate=None,
    decimal=".",
    separator=",",
):
    """Read a CSV export into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file; opened read-only. See the module notes for the layouts read
        (header line or none, units line, quoting, missing samples).
    channels : mapping
        ``{column: {"group", "units"?, "vessel"?, "index"?}}``; ``units`` is required
        for columns whose unit the file does not state; ``index`` (0-based column) is
        required in a file without a header line.
    time_column : str, optional
        Name of the time column (with or without its ``[unit]``). By default a column
        named ``time`` or ``Elapsed time``; a file without one reads when
        ``sampling_rate`` is given.
    time_units : str
        Unit of the time column (``s``, ``ms``, ``min``, ``h``).
    sampling_rate : float, optional
        Sampling rate (Hz, > 0). Required for a file without a time column; where
        the file has one, its times must lie on ``start + k / sampling_rate``.
        Inferred from the times' span if not given.
    decimal : {".", ","}
        Decimal mark of the numbers.
    separator : {",", ";", "\\t", " ", "|"}
        Field separator.

    Returns
    -------
    xarray.DataTree
        Session node with one group per mapped group; samples dask-backed, shape
        ``(n_samples,)`` per channel. The ``time`` coordinates start at the file's
        first time (0 s without a time column).

    Raises
    ------
    SessionFormatError
        Missing, empty, unreadable or truncated file; a bad option (``sampling_rate``
        not > 0, unknown ``decimal`` or ``separator``, or one the file evidently does
        not use); a missing column; times off their grid; a header-less file without
        ``sampling_rate``.
    UnitError
        Unknown unit, no unit, or a unit contradicting the mapping or ``time_units``.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    rate = _check_options(path, sampling_rate, decimal, separator)
    if not path.is_file():
        raise SessionFormatError(f"{path}: CSV file not found")
    layout = _layout(path, separator, decimal)
    time_pos = _time_position(path, layout, time_column, rate)
    found = []
    for ch in chans:
        pos = layout.position(ch, path)
        if pos >= layout.n_fields:
            raise SessionFormatError(
                f"{path}: channel {ch.name!r}: index {pos} is past the file's last column "
                f"(it has {layout.n_fields})"
            )
        if pos == time_pos:
            raise SessionFormatError(
                f"{path}: channel {ch.name!r} is the time column {layout.name(pos)!r}"
            )
        factor, unit = unit_factor(ch, layout.units[pos], path)
        found.append((ch, pos, factor, unit))
    ends = _check_last_line(path, layout)
    if time_pos is None:
        n, start = _count_rows(path, layout, found[0][1]), 0.0
    else:
        t_factor = _time_factor(path, layout, time_pos, time_units)
        n, start, rate = _time_scan(path, layout, time_pos, t_factor, rate, ends)
    token = file_token(path)
    signals = [
        (
            ch,
            lazy_channel(
                _read_column,
                (path, layout, pos, factor, n),
                n,
                name=f"csv-{pos}-{token}-{factor}-{layout.skip}-{decimal}-{separator}",
            ),
            rate,
            unit,
        )
        for ch, pos, factor, unit in found
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


FORMAT = register_format(
    FileFormat(
        name="csv",
        reader=read_csv,
        description="a column per channel; a time column, or a stated sampling rate",
        suffixes=(".csv", ".txt"),
        options=(
            FormatOption(
                "time_column", nonempty_text, "the time column (default: 'time' or 'Elapsed time')"
            ),
            FormatOption("time_units", time_unit, "unit of the time column (default s)"),
            FormatOption("sampling_rate", positive_number, "sampling rate (Hz)"),
            FormatOption("decimal", one_of(*DECIMAL_MARKS), "decimal mark"),
            FormatOption("separator", one_of(*SEPARATORS), "field separator"),
        ),
    )
)
