"""Per-session measurement tables: values taken once per session, in CSV or Excel.

Ultrasound and laboratory values (carotid intima-media thickness, vessel diameters,
jugular and femoral vein cross-sectional areas, ...) are measured once per session
(or once per protocol epoch), not recorded as signals. A campaign catalog lists their
tables under ``measurements:`` (see :mod:`cardiolab.catalog`); this module reads one
table and checks what can be checked without the catalog. The catalog then checks
the rows against its subjects, sessions and protocols, and
:func:`cardiolab.pipeline.features_table` joins them to the features.

Layout of a table
-----------------
One header row, then one row per subject x session (x epoch)::

    subject, session, epoch,  carotid_imt [mm], jugular_vein_area [cm2]
    S01,     L-30,    ,       0.57,             0.61
    S01,     FD15,    ,       0.66,             1.83

* ``subject`` and ``session`` (a session label: ``L-30``, ``FD15``, ``R+4``) are
  required; ``epoch`` is optional. A row with no epoch (no column, or an empty cell)
  holds values of the whole session: its epoch is :data:`SESSION_EPOCH`
  (``"session"``). A row with an epoch holds values of that protocol epoch.
* Every other column is one quantity, named by letters, digits and ``_`` (the name
  becomes a feature column; like every ``n_<what>`` feature, a name starting with
  ``n_`` is taken for a count and not modelled by default). Its unit is given in the header in square brackets
  (``carotid_imt [mm]``) or in a **units row**: the first non-blank row after the
  header, when its ``subject`` cell is empty or reads ``units``. A unit given in both
  places must agree. Units are those of :mod:`cardiolab.units` (``mm``, ``um``,
  ``cm``, ``mm2``, ``cm2``, ``mmHg``, ``cm/s``, ``ms``, ...); a column without a unit,
  or with an unknown one, is an error. Values are kept in the unit the table gives.
* A value is a number; an empty cell is a missing value (anything else, ``NA``
  included, is an error). CSV tables may use a decimal comma (``decimal: ","``).
* Blank rows are skipped. Rows and columns are numbered as a spreadsheet shows them
  (row 1 is the first line of the file or sheet; column A the first column), and
  every error names them.

Files: ``.csv``, ``.tsv`` and ``.txt`` are read with :func:`pandas.read_csv`
(separator ``,``, ``\\t`` for ``.tsv``; UTF-8, a byte-order mark allowed); ``.xlsx``
and ``.xlsm`` with :func:`pandas.read_excel` (openpyxl), first sheet unless
``sheet`` names one (by name, or 0-based position).
"""

from __future__ import annotations

import math
import numbers
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CatalogError, UnitError
from .labels import LabelError, parse_session_label
from .paths import is_url
from .units import normalise_unit

__all__ = [
    "SESSION_EPOCH",
    "TABLE_FORMATS",
    "MeasurementTable",
    "read_measurement_table",
    "table_format",
]

#: Epoch label of values that apply to a whole session (rows without an epoch).
SESSION_EPOCH = "session"
#: File suffix -> table format.
TABLE_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "excel", ".xlsm": "excel"}
#: Header names of the identifier columns (compared case-insensitively).
ID_COLUMNS = ("subject", "session", "epoch")
#: Names a quantity column may not take (the features table's identifiers).
RESERVED_NAMES = ("subject", "session", "epoch", "phase", "day")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER = re.compile(r"^(?P<name>[^\[\]]*?)\s*(?:\[(?P<unit>[^\[\]]*)\])?$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class MeasurementTable:
    """One measurement table, read and checked on its own.

    Attributes
    ----------
    path : str
        The file.
    values : pandas.DataFrame
        One row per table row, indexed by its spreadsheet row number (``row``):
        ``subject``, ``session`` (the label as written, as the catalog keeps it),
        ``epoch`` (:data:`SESSION_EPOCH`
        where the table gives none) and one float column per quantity, in ``units``.
    units : dict
        Quantity -> unit (as :func:`cardiolab.units.normalise_unit` spells it).
    columns : dict
        Column name (``subject``, ``session``, ``epoch``, quantities) -> how error
        messages name it: ``"column C ('carotid_imt [mm]')"``.
    """

    path: str
    values: pd.DataFrame
    units: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)

    @property
    def quantities(self) -> list[str]:
        """The quantity columns, in table order."""
        return list(self.units)


def table_format(path) -> str:
    """The format of a measurement table from its suffix: ``"csv"`` or ``"excel"``.

    Raises
    ------
    ValueError
        For any other suffix (the message lists the known ones).
    """
    suffix = Path(str(path).split("?")[0]).suffix.lower()
    try:
        return TABLE_FORMATS[suffix]
    except KeyError:
        known = ", ".join(TABLE_FORMATS)
        raise ValueError(
            f"unknown measurement table suffix {suffix or '(none)'!r} of {path}; "
            f"expected one of {known}"
        ) from None


def _column_letter(j: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return get_column_letter(j + 1)


def _text(cell) -> str:
    """A cell as text: '' for empty, integers without '.0'."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _raise(path, problems: list[tuple[str | None, str | None, str]]):
    if len(problems) == 1:
        loc, col, message = problems[0]
        err = CatalogError(message, file=path, entry=loc, field=col)
    else:
        lines = []
        for loc, col, message in problems:
            where = ": ".join(p for p in (loc, col) if p)
            lines.append(f"  - {where}: {message}" if where else f"  - {message}")
        err = CatalogError(f"{len(problems)} problems:\n" + "\n".join(lines), file=path)
    err.problems = list(problems)
    raise err


def _read_grid(path, fmt, *, sheet, separator, decimal, storage_options) -> list[list]:
    """The table's cells, row by row from spreadsheet row 1 (blank rows kept)."""
    where = str(path)
    opts = {"storage_options": storage_options} if is_url(where) and storage_options else {}
    try:
        if fmt == "csv":
            sep = separator or ("\t" if where.lower().endswith(".tsv") else ",")
            frame = pd.read_csv(
                path,
                sep=sep,
                header=None,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
                **opts,
            )
        else:
            frame = pd.read_excel(
                path,
                sheet_name=0 if sheet is None else sheet,
                header=None,
                dtype=object,
                keep_default_na=False,  # a cell reading 'NA' is text, not a missing value
                engine="openpyxl",
                **opts,
            )
    except FileNotFoundError:
        _raise(path, [(None, None, "measurement table not found")])
    except pd.errors.EmptyDataError:
        _raise(path, [(None, None, "the measurement table is empty")])
    except pd.errors.ParserError as err:
        _raise(path, [(None, None, f"not a {separator or ','!r}-separated table: {err}")])
    except UnicodeDecodeError as err:
        _raise(path, [(None, None, f"not UTF-8 text ({err.reason} at byte {err.start})")])
    except (zipfile.BadZipFile, OSError) as err:
        _raise(path, [(None, None, f"cannot read the table as {fmt}: {err}")])
    except (ValueError, IndexError, KeyError) as err:
        if fmt == "excel" and sheet is not None:
            try:
                sheets = pd.ExcelFile(path, engine="openpyxl").sheet_names
            except Exception:  # noqa: BLE001 - only to list the sheets in the message
                sheets = []
            _raise(path, [(None, "sheet", f"no sheet {sheet!r} (sheets: {sheets})")])
        _raise(path, [(None, None, f"cannot read the table as {fmt}: {err}")])
    rows = frame.astype(object).where(frame.notna(), None).values.tolist()
    return rows


def _number(cell, decimal: str | None):
    """(value, ok): a float for a number or an empty cell (NaN), ok False otherwise."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return np.nan, True
    if isinstance(cell, bool):
        return np.nan, False
    if isinstance(cell, numbers.Real):
        value = float(cell)
        return value, math.isfinite(value)
    text = str(cell).strip()
    if not text:
        return np.nan, True
    if decimal == ",":
        if "." in text:
            return np.nan, False
        text = text.replace(",", ".")
    if not _NUMBER.match(text):
        return np.nan, False
    return float(text), True


def read_measurement_table(
    path,
    *,
    sheet: str | int | None = None,
    separator: str | None = None,
    decimal: str | None = None,
    storage_options: dict | None = None,
) -> MeasurementTable:
    """Read and check one measurement table (layout in the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.csv``/``.tsv``/``.txt`` or ``.xlsx``/``.xlsm`` file, or an fsspec URL.
    sheet : str or int, optional
        Excel only: sheet name, or 0-based position (default: the first sheet).
    separator : str, optional
        CSV only: field separator (default ``,``; ``\\t`` for ``.tsv``).
    decimal : {".", ","}, optional
        CSV only: decimal mark of the values (default ``.``).
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    MeasurementTable

    Raises
    ------
    CatalogError
        ``file`` the table; one problem per line, each naming the row and column as a
        spreadsheet shows them (``row 5: column C ('carotid_imt [mm]'): not a
        number: 'abc'``): file not found, empty or unreadable, no ``subject`` or
        ``session`` column, a quantity column without a name, unit or with an unknown
        unit, a cell that is not a number, an empty subject or session, a label that
        fits no schedule, a duplicate row (same subject, session and epoch).
        ``err.problems`` lists them as ``(row, column, message)``.
    """
    fmt = table_format(path)
    grid = _read_grid(
        path,
        fmt,
        sheet=sheet,
        separator=separator,
        decimal=decimal,
        storage_options=storage_options,
    )
    texts = [[_text(c) for c in row] for row in grid]
    filled = [i for i, row in enumerate(texts) if any(row)]
    if not filled:
        _raise(path, [(None, None, "the measurement table is empty")])
    problems: list[tuple[str | None, str | None, str]] = []
    head = filled[0]
    header_row = f"row {head + 1}"
    width = max(len(r) for r in texts)

    def col(j: int) -> str:
        name = texts[head][j] if j < len(texts[head]) else ""
        return f"column {_column_letter(j)}" + (f" ({name!r})" if name else "")

    ids: dict[str, int] = {}
    header_units: dict[str, str | None] = {}
    where_of: dict[str, int] = {}
    for j in range(width):
        text = texts[head][j] if j < len(texts[head]) else ""
        if not text:
            if any(j < len(texts[i]) and texts[i][j] for i in filled[1:]):
                problems.append((header_row, col(j), "a column with values has no header"))
            continue
        if text.lower() in ID_COLUMNS:
            key = text.lower()
            if key in ids:
                problems.append((header_row, col(j), f"a second {key!r} column"))
            ids[key] = j
            continue
        m = _HEADER.match(text)
        name = m.group("name").strip() if m else ""
        if not m or not _NAME.match(name):
            problems.append(
                (
                    header_row,
                    col(j),
                    "a quantity column is named by letters, digits and '_' (it becomes a "
                    "feature column), with its unit in brackets: 'carotid_imt [mm]'",
                )
            )
            continue
        if name.lower() in RESERVED_NAMES:
            problems.append((header_row, col(j), f"{name!r} names an identifier, not a quantity"))
            continue
        if name in where_of:
            problems.append(
                (header_row, col(j), f"quantity {name!r} is also {col(where_of[name])}")
            )
            continue
        where_of[name] = j
        unit = m.group("unit")
        header_units[name] = unit.strip() if unit is not None else None
    for key in ("subject", "session"):
        if key not in ids:
            problems.append((header_row, None, f"no {key!r} column (header: {texts[head]})"))
    if not where_of and not problems:
        problems.append((header_row, None, "no quantity column besides subject/session/epoch"))
    if problems:
        _raise(path, problems)

    # units: header, or the units row
    data_rows = filled[1:]
    units_row = None
    first = data_rows[0] if data_rows else None
    if first is not None and texts[first][ids["subject"]].lower() in ("", "units"):
        units_row = first
        data_rows = data_rows[1:]

    def cell(i: int, j: int) -> str:
        return texts[i][j] if j < len(texts[i]) else ""

    units: dict[str, str] = {}
    for name, j in where_of.items():
        in_header = header_units[name]
        in_row = cell(units_row, j) if units_row is not None else ""
        loc = f"row {units_row + 1}" if units_row is not None and in_row else header_row
        given = [u for u in (in_header, in_row) if u]
        if not given:
            problems.append(
                (
                    header_row,
                    col(j),
                    f"no unit for {name!r}: give it in the header ('{name} [mm]') or in a "
                    "units row (the first row after the header, its subject cell empty or "
                    "'units')",
                )
            )
            continue
        try:
            spelled = [normalise_unit(u) for u in given]
        except UnitError as err:
            note = ""
            if loc != header_row:
                note = f" (row {units_row + 1} is read as the units row: its subject cell is "
                note += "empty or 'units')"
            problems.append((loc, col(j), f"{err}{note}"))
            continue
        if len(set(spelled)) > 1:
            problems.append(
                (
                    f"row {units_row + 1}",
                    col(j),
                    f"unit {in_row!r} differs from {in_header!r} in the header",
                )
            )
            continue
        units[name] = spelled[0]

    # values
    records = []
    seen: dict[tuple[str, str, str], int] = {}
    id_cols = [ids[k] for k in ID_COLUMNS if k in ids]
    id_names = ", ".join(f"{_column_letter(j)}" for j in id_cols)
    key_cols = f"columns {id_names} ({', '.join(k for k in ID_COLUMNS if k in ids)})"
    for i in data_rows:
        row = f"row {i + 1}"
        subject = cell(i, ids["subject"])
        label = cell(i, ids["session"])
        epoch = cell(i, ids["epoch"]) if "epoch" in ids else ""
        ok = True
        if not subject:
            problems.append((row, col(ids["subject"]), "no subject"))
            ok = False
        if not label:
            problems.append((row, col(ids["session"]), "no session label"))
            ok = False
        else:
            try:
                parse_session_label(label)
            except LabelError as err:
                problems.append((row, col(ids["session"]), str(err)))
                ok = False
        epoch = epoch or SESSION_EPOCH
        record = {"row": i + 1, "subject": subject, "session": label, "epoch": epoch}
        for name, j in where_of.items():
            raw = grid[i][j] if j < len(grid[i]) else None
            value, good = _number(raw, decimal)
            if not good:
                problems.append(
                    (
                        row,
                        col(j),
                        f"not a number: {_text(raw)!r}"
                        + (f" (decimal mark {decimal!r})" if decimal else "")
                        + "; leave the cell empty for a missing value",
                    )
                )
            record[name] = value
        if ok:
            key = (subject, label, epoch)
            if key in seen:
                what = f"{subject} {label}" + (f" epoch {epoch}" if epoch != SESSION_EPOCH else "")
                problems.append((row, key_cols, f"duplicate row: {what} is also row {seen[key]}"))
            else:
                seen[key] = i + 1
        records.append(record)
    if problems:
        _raise(path, problems)
    columns = ["row", "subject", "session", "epoch", *where_of]
    values = pd.DataFrame.from_records(records, columns=columns).set_index("row")
    for name in where_of:
        values[name] = values[name].astype(float)
    named = {k: col(j) for k, j in ids.items()}
    named.update({name: col(j) for name, j in where_of.items()})
    return MeasurementTable(str(path), values, units, named)
