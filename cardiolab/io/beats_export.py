"""Beat-to-beat haemodynamic exports (format ``beats``): one row per beat.

Finapres, Nexfin and CNAP monitors export what they measure beat by beat (systolic,
diastolic and mean pressure, heart rate, stroke volume, cardiac output, peripheral
resistance) rather than the waveform. Such a file becomes a session node with one
``beats`` group (:func:`cardiolab.schema.beats_group`) whose variables are those of
:data:`~cardiolab.schema.BEAT_FIELDS`, in their units. Two layouts:

Finapres BeatScope (first line ``BeatScope ...``)
    BeatScope Easy's text export: CRLF, a preamble (program version, an
    ``Identification;...`` line and its values, ``Reconstructed pressure level:`` and
    its value), then a ``;``-separated header ``Time (s);Systolic Pressure (mmHg);...``
    with the unit of each column in parentheses, and rows with **decimal commas** and
    times of day ``hh:mm:ss,mmm``. Times become seconds from the first beat (a time of
    day more than 12 h earlier than the one before is taken as the next day; any other
    step back is an error). Without a channel mapping the columns map as
    :data:`BEATSCOPE_COLUMNS` says. Two quirks of the format are handled:

    - ``Pulse Interval (ms)`` of a row is the interval from that beat to the *next*
      (in the export, ``t[i + 1] - t[i]`` equals it to the ms), while ``rr`` of the
      data model ends at the beat: ``rr[i]`` is the previous row's pulse interval and
      the first beat's ``rr`` is NaN.
    - ``Total Peripheral Resistance Medical Unit`` is labelled ``mmHg.min/l`` but
      holds MAP / CO in mmHg.s/mL (100 mmHg at 4.8 L/min is written ``1,25``, not
      20.8); ``tpr`` is therefore read from ``Total Peripheral Resistance CGS``
      (dyn.s/cm5, unambiguous: 1687 dyn.s/cm5 = 21.1 mmHg.min/L beside ``1,265``).

    BeatScope writes 0 where it has no value (before the first calibration): those
    values are kept as written; the beat table's ``abp_valid`` is False there
    (:data:`~cardiolab.signals.pressure.PRESSURE_LIMITS`). The identification line
    (file name, age, height, weight, gender) is not read: it may identify a person.
    ``Markers`` and the columns without a beat variable (LVET, maximum slope) are not
    read.

Generic CSV (any other first line)
    A header line of column names, then one row per beat; ``separator`` (``,`` by
    default) and ``decimal`` (``.`` by default) as for format ``csv``. A column name
    may carry its unit in brackets, ``"SYS [mmHg]"`` (see
    :func:`~cardiolab.io.csv_export.split_column_name`). The channel mapping maps
    columns to beat variables: ``{"SYS": {"group": "beats", "variable": "sbp",
    "units": "mmHg"}}``; the unit is the file's where its header gives one, else the
    mapping's, and is converted to the variable's (:func:`~cardiolab.io.channels.
    unit_factor`). The time column is ``time_column`` (default ``time``), in
    ``time_units`` (default ``s``, or the unit in its brackets), seconds from the
    session start; or times of day ``hh:mm:ss[.,fff]``, which become seconds from the
    first beat as above. ``rr`` in such a file is the interval ending at the beat.

Every beat's time must be later than the one before; a row with fewer fields than the
header (a file cut mid-line), a value that is not a number, an unknown column (the
message lists those present) or a unit not convertible to the variable's is an error
naming the file, the line and the column.

Laziness: the file is read whole at open (one row per beat; the catalog validates the
beat times).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SessionFormatError, UnitError, file_names, file_text
from ..schema import BEAT_GROUP, beats_group, session_node
from ..units import unit_ratio
from .channels import Channel, locate_channel, missing_channel, parse_channels, unit_factor
from .csv_export import DECIMAL_MARKS, SEPARATORS, check_text_marks, split_column_name
from .registry import (
    FileFormat,
    FormatOption,
    nonempty_text,
    one_of,
    register_format,
    single_file,
    time_unit,
)

__all__ = ["read_beats", "BEATSCOPE_COLUMNS", "FORMAT"]

#: BeatScope column (name without its unit) -> beat variable, when no mapping is given
BEATSCOPE_COLUMNS = {
    "Systolic Pressure": "sbp",
    "Diastolic Pressure": "dbp",
    "Mean Pressure": "map",
    "Heart rate": "hr",
    "Stroke Volume": "sv",
    "Pulse Interval": "rr",
    "Cardiac Output": "co",
    "Total Peripheral Resistance CGS": "tpr",
}
_BEATSCOPE_INTERVAL = "Pulse Interval"  # the interval from the beat to the next
_PAREN_UNIT = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")
_TIME_OF_DAY = r"^\s*(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*$"
_DAY_S = 86400.0


def _paren_split(header: str) -> tuple[str, str | None]:
    """``"Systolic Pressure (mmHg)"`` -> ``("Systolic Pressure", "mmHg")``."""
    m = _PAREN_UNIT.match(header)
    if m and m.group("name"):
        return m.group("name").strip(), m.group("unit").strip() or None
    return header.strip(), None


def _numbers(path, texts: pd.Series, decimal: str, column: str, lines) -> np.ndarray:
    """Numbers of one column (NaN where empty); an error names the line and column."""
    s = texts.str.strip()
    if decimal == ",":
        s = s.str.replace(",", ".", regex=False)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & (s != "").to_numpy() & ~s.str.lower().isin(["nan"]))
    if bad.size:
        i = int(bad[0])
        hint = ""
        if decimal == "." and re.fullmatch(r"[-+]?\d*,\d+", texts.iloc[i].strip()):
            hint = " (a decimal comma: give decimal: ',' and the file's separator)"
        raise SessionFormatError(
            f"{path}: line {lines[i]}, column {column!r}: {file_text(texts.iloc[i])} is not a "
            f"number{hint}"
        )
    return values


def _times(path, texts: pd.Series, factor: float, decimal: str, column: str, lines):
    """Beat times (s): numbers times ``factor``, or times of day from the first beat."""
    parts = texts.str.extract(_TIME_OF_DAY)
    clock = parts[0].notna()
    if clock.any():
        if not clock.all():
            i = int(np.flatnonzero(~clock.to_numpy())[0])
            raise SessionFormatError(
                f"{path}: line {lines[i]}, column {column!r}: {file_text(texts.iloc[i])} is "
                "not a "
                "time of day hh:mm:ss,mmm like the rows before"
            )
        frac = parts[3].fillna("0")
        seconds = (
            parts[0].astype(float) * 3600.0
            + parts[1].astype(float) * 60.0
            + parts[2].astype(float)
            + frac.astype(float) / 10.0 ** frac.str.len().astype(float)
        ).to_numpy()
        step = np.diff(seconds)
        days = np.r_[0.0, np.cumsum(step < -_DAY_S / 2)]
        t = seconds + days * _DAY_S
        return t - t[0], {"start_time_of_day": str(texts.iloc[0]).strip()}
    values = _numbers(path, texts, decimal, column, lines)
    missing = np.flatnonzero(~np.isfinite(values))
    if missing.size:
        i = int(missing[0])
        raise SessionFormatError(f"{path}: line {lines[i]}, column {column!r}: no beat time")
    return values * factor, {}


def _check_increasing(path, t, column: str, lines) -> None:
    back = np.flatnonzero(~(np.diff(t) > 0))
    if back.size:
        i = int(back[0]) + 1
        raise SessionFormatError(
            f"{path}: line {lines[i]}, column {column!r}: beat time {t[i]:.6g} s is not "
            f"after the previous beat's {t[i - 1]:.6g} s (times go backwards or repeat; "
            f"{back.size} such row(s))"
        )


def _rows(path, lines, header_index: int, separator: str):
    """Header fields, data rows (lists of str) and each row's line number (1-based)."""
    header_line = lines[header_index]
    if separator not in header_line:
        others = [s for s in SEPARATORS if s != separator and s != " " and s in header_line]
        advice = f"; give separator: {others[0]!r} for this file" if others else ""
        raise SessionFormatError(
            f"{path}: line {header_index + 1}: the header has no separator {separator!r}{advice}"
        )
    numbered = [
        (n, line)
        for n, line in enumerate(lines[header_index + 1 :], header_index + 2)
        if line.strip()
    ]
    reader = csv.reader([header_line, *(line for _, line in numbered)], delimiter=separator)
    try:
        header, *rows = [[field.strip() for field in row] for row in reader]
    except csv.Error as err:
        raise SessionFormatError(f"{path}: not a readable beat table ({err})") from None
    if not rows:
        raise SessionFormatError(f"{path}: the beat table has a header but no beats")
    for (n, _), row in zip(numbered, rows, strict=True):
        if len(row) != len(header):
            raise SessionFormatError(
                f"{path}: line {n} has {len(row)} fields, the header {len(header)} (a file "
                "cut mid-line, or a separator inside a value)"
            )
    return header, rows, [n for n, _ in numbered]


def _column_position(path, channel: Channel, header, names) -> int:
    """A mapped column by its full name or its name without the unit."""
    if channel.name in header:
        return locate_channel(channel, header, path)
    if channel.name in names or channel.index is not None:
        return locate_channel(channel, names, path)
    raise missing_channel(path, channel.name, header)


def read_beats(
    path,
    channels: Mapping | None = None,
    *,
    time_column: str | None = None,
    time_units: str | None = None,
    separator: str | None = None,
    decimal: str | None = None,
) -> xr.DataTree:
    """Read a beat-to-beat haemodynamic export as a beat-level session node.

    Parameters
    ----------
    path : str or pathlib.Path
        A Finapres BeatScope text export or a CSV of one row per beat.
    channels : mapping, optional
        ``{column: {"group": "beats", "variable": <BEAT_FIELDS name>, "units"?,
        "index"?}}``; required for a generic CSV, optional for BeatScope (default
        :data:`BEATSCOPE_COLUMNS`).
    time_column : str, optional
        The column of beat times (default: BeatScope's ``Time``, else ``time``).
    time_units : str, optional
        Unit of numeric beat times (default: the unit in the column name, else s).
    separator, decimal : str, optional
        Field separator (``,``) and decimal mark (``.``) of a generic CSV; BeatScope
        files are ``;`` and ``,`` (other values are an error).

    Returns
    -------
    xarray.DataTree
        A session node with one ``beats`` group: ``t`` (s) and the mapped variables
        (dim ``beat``) in the units of :data:`~cardiolab.schema.BEAT_FIELDS`; attrs
        ``source_file``, ``source_format``, ``channel`` (the file's columns, in the
        order of the variables), ``variable``, ``source_units`` and, for times of day,
        ``start_time_of_day``.

    Raises
    ------
    SessionFormatError
        Missing or empty file, no header or no rows, a row cut short, a value that
        is not a number, an R-R interval <= 0, an unknown column (listing those
        present), beat times that do not increase, a generic CSV without a mapping, a
        bad option.
    UnitError
        A unit unknown or not convertible to the variable's (file and column named).

    Notes
    -----
    BeatScope layout: as described in ``beat_exports/README.md`` of the reference
    data (BeatScope Easy v02.10 exports of a Finometer Model-2).
    """
    path = Path(path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: no such beat file")
    raw = path.read_bytes()
    if not raw.strip():
        raise SessionFormatError(f"{path}: the file is empty (no beats)")
    lines = raw.decode("utf-8", errors="replace").splitlines()
    beatscope = lines[0].lstrip("\ufeff").startswith("BeatScope")
    if beatscope:
        for name, value, fixed in (("separator", separator, ";"), ("decimal", decimal, ",")):
            if value is not None and value != fixed:
                raise SessionFormatError(
                    f"{path}: a BeatScope export has {name} {fixed!r}, not {value!r}"
                )
        separator, decimal = ";", ","
        time_column = time_column or "Time"
        header_index = next(
            (
                i
                for i, line in enumerate(lines)
                if _paren_split(line.split(";")[0])[0].lower() == time_column.lower()
            ),
            None,
        )
        if header_index is None:
            raise SessionFormatError(
                f"{path}: BeatScope export without a header line starting with "
                f"{time_column!r} (e.g. 'Time (s);Systolic Pressure (mmHg);...')"
            )
        split = _paren_split
        source_format = lines[0].strip()
    else:
        separator, decimal = separator or ",", decimal or "."
        time_column = time_column or "time"
        header_index = next(i for i, line in enumerate(lines) if line.strip())
        split = split_column_name
        source_format = "CSV, one row per beat"
    check_text_marks(path, separator, decimal)
    header, rows, line_numbers = _rows(path, lines, header_index, separator)
    names = [split(h)[0] for h in header]
    units = [split(h)[1] for h in header]
    table = pd.DataFrame(rows, columns=range(len(header)), dtype=str)

    if channels is None:
        if not beatscope:
            raise SessionFormatError(
                f"{path}: a beat CSV needs a channel mapping {{column: {{'group': 'beats', "
                f"'variable': ..., 'units': ...}}}} (its columns: {file_names(header)})"
            )
        channels = {
            col: {"group": BEAT_GROUP, "variable": var}
            for col, var in BEATSCOPE_COLUMNS.items()
            if col in names
        }
    mapped = parse_channels(channels, path)
    wrong = [c.name for c in mapped if c.group != BEAT_GROUP]
    if wrong:
        raise SessionFormatError(
            f"{path}: channel(s) {wrong} map to waveform groups; a beat file's columns map "
            f"to group {BEAT_GROUP!r} with a 'variable'"
        )

    time_hits = [i for i, n in enumerate(names) if n.lower() == time_column.lower()]
    if time_column in header:
        time_hits = [header.index(time_column)]
    if len(time_hits) != 1:
        if not time_hits:
            raise SessionFormatError(
                f"{path}: no time column {time_column!r} (the file has: {file_names(header)}); give time_column"
            )
        raise SessionFormatError(
            f"{path}: time column {time_column!r} appears {len(time_hits)} times"
        )
    tpos = time_hits[0]
    file_time_unit = None if beatscope else units[tpos]
    t_unit = time_units or file_time_unit or "s"
    try:
        if (
            time_units
            and file_time_unit
            and unit_ratio(time_units, "s") != unit_ratio(file_time_unit, "s")
        ):
            raise UnitError(
                f"column {header[tpos]!r} is in {file_time_unit!r} but time_units is {time_units!r}"
            )
        t_factor = unit_ratio(t_unit, "s")
    except UnitError as err:
        raise UnitError(f"{path}: time column {header[tpos]!r}: {err}") from None
    t, time_attrs = _times(path, table[tpos], t_factor, decimal, header[tpos], line_numbers)
    _check_increasing(path, t, header[tpos], line_numbers)

    values, used, used_units, variables = {}, [], [], []
    for ch in mapped:
        pos = _column_position(path, ch, header, names)
        factor, unit = unit_factor(ch, units[pos], path)
        v = _numbers(path, table[pos], decimal, header[pos], line_numbers) * factor
        if ch.variable == "rr":
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(v <= 0)
            if bad.size:
                i = int(bad[0])
                raise SessionFormatError(
                    f"{path}: line {line_numbers[i]}, column {header[pos]!r}: R-R interval "
                    f"{table[pos].iloc[i]!r} is not positive ({bad.size} such row(s))"
                )
        if beatscope and ch.variable == "rr" and names[pos] == _BEATSCOPE_INTERVAL:
            v = np.r_[np.nan, v[:-1]]  # the interval to the next beat -> ending at the beat
        values[ch.variable] = v
        used.append(header[pos])
        used_units.append(unit)
        variables.append(ch.variable)
    attrs = {
        "source_file": str(path),
        "source_format": source_format,
        "channel": used,
        "variable": variables,
        "source_units": used_units,
        **time_attrs,
    }
    return session_node({BEAT_GROUP: beats_group(t, values, attrs=attrs)})


FORMAT = register_format(
    FileFormat(
        name="beats",
        reader=read_beats,
        description="beat-to-beat haemodynamic exports: Finapres BeatScope, CSV with a column map",
        suffixes=(".txt", ".csv"),
        options=(
            FormatOption("time_column", nonempty_text, "column of beat times (BeatScope: Time)"),
            FormatOption("time_units", time_unit, "unit of numeric beat times (default s)"),
            FormatOption("separator", one_of(*SEPARATORS), "field separator (default ',')"),
            FormatOption("decimal", one_of(*DECIMAL_MARKS), "decimal mark (default '.')"),
        ),
        channels=True,
        channels_optional=True,  # a BeatScope file names its own columns
        raw_files=single_file,
    )
)
