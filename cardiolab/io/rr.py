"""R-R interval files (format ``rr``): a session that comes as beats, not as an ECG.

Two layouts, told apart by the file's first line (a Polar file starts with its
``[Params]`` section) or its ``.hrm`` suffix:

Plain text (Kubios ASCII, Elite HRV, most chest-strap apps)
    One R-R interval per line, no header, in ``unit`` (``ms`` by default; ``s`` or any
    other time unit of :mod:`cardiolab.units`). Blank lines are skipped; a line with
    several fields, a field that is not a number, an interval <= 0 or not finite is a
    :class:`~cardiolab.errors.SessionFormatError` naming the file and the line.

Polar HRM (``.hrm``, Polar Precision Performance export)
    INI-like sections (``[Params]``, ``[Note]``, ..., ``[HRData]``). ``[Params]``
    ``Interval=238`` means the recording is in R-R mode and ``[HRData]`` holds one R-R
    interval in ms per line (Polar's "HRM file format" description; any other
    ``Interval`` is a heart-rate sample period, not R-R data, and is refused). With
    ``SMode`` flags for speed, cadence, altitude or power set the lines carry more
    columns; such files are refused (no example to test against). ``Version`` must be
    105, 106 or 107. ``Length`` (``hh:mm:ss.f``) must agree with the sum of the
    intervals to within :data:`HRM_LENGTH_TOLERANCE_S`: a file whose ``[HRData]`` was
    cut is refused. The ``[Params]`` fields are kept as group attributes
    ``hrm_<field>`` (``hrm_SMode``, ``hrm_Length``, ...), and ``Date`` with
    ``StartTime`` as ``start_datetime`` (ISO 8601, local time of the device).

Beat times
    An R-R file has no clock: beat ``k`` is at the cumulative sum of the intervals
    ``rr[0] .. rr[k]`` (s from the session start), so the first beat is at the *end*
    of the first interval and the session starts at the R-peak before it; ``rr[k]`` is
    the interval ending at beat ``k``, as in the beat table. The node holds one
    ``beats`` group (:func:`cardiolab.schema.beats_group`) with ``t`` and ``rr``.

Laziness
    The intervals are the beat times, and the catalog validates those, so the file is
    read whole at open (one number per beat: a 24-h Holter is about 100 000 lines).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import SessionFormatError, UnitError, file_text
from ..schema import BEAT_GROUP, beats_group, session_node
from ..units import unit_ratio
from .registry import FileFormat, FormatOption, register_format, single_file, time_unit

__all__ = ["read_rr", "HRM_LENGTH_TOLERANCE_S", "HRM_VERSIONS", "FORMAT"]

#: Polar HRM versions read (Polar Precision Performance 3-4 exports)
HRM_VERSIONS = ("105", "106", "107")
#: ``[Params] Length`` vs the sum of the intervals (s): Length is printed to 0.1 s
#: (truncated: 2561.791 s of intervals is ``00:42:41.7``), plus 0.1 s of rounding.
HRM_LENGTH_TOLERANCE_S = 0.2
#: ``[Params] Interval`` of an R-R recording
_HRM_RR_INTERVAL = "238"
_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_LENGTH = re.compile(r"^(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")


def _intervals(path, lines, first_line: int, where: str) -> np.ndarray:
    """One number per non-blank line (ms or the file's unit), errors naming the line."""
    numbered = [(first_line + i, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise SessionFormatError(f"{path}: {where} holds no R-R intervals (empty)")
    texts = [t for _, t in numbered]
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        for number, t in numbered:
            fields = re.split(r"[\s,;]+", t)
            if len(fields) > 1:
                raise SessionFormatError(
                    f"{path}: line {number} ({where}) has {len(fields)} fields; "
                    "format 'rr' reads one R-R interval per line"
                ) from None
            try:
                float(t)
            except ValueError:
                raise SessionFormatError(
                    f"{path}: line {number} ({where}): {file_text(t)} is not an R-R interval "
                    "(a number)"
                ) from None
        raise  # pragma: no cover - every line parsed on its own
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        number, t = numbered[int(bad[0])]
        raise SessionFormatError(
            f"{path}: line {number} ({where}): R-R interval {file_text(t)} is not a positive "
            "number "
            f"({bad.size} such line(s))"
        )
    return values


def _sections(path, lines) -> dict[str, tuple[int, list[str]]]:
    """``{section: (line number of its first content line, its lines)}``."""
    out: dict[str, tuple[int, list[str]]] = {}
    current = None
    for number, line in enumerate(lines, 1):
        m = _SECTION.match(line.strip())
        if m:
            current = m.group("name")
            if current in out:
                raise SessionFormatError(f"{path}: section [{current}] appears twice")
            out[current] = (number + 1, [])
        elif current is not None:
            out[current][1].append(line)
    return out


def _hrm_length(path, text: str) -> float:
    m = _LENGTH.match(text.strip())
    if not m:
        raise SessionFormatError(
            f"{path}: [Params] Length is {file_text(text)}, expected hh:mm:ss.f (e.g. 00:42:41.7)"
        )
    return int(m["h"]) * 3600.0 + int(m["m"]) * 60.0 + float(m["s"])


def _read_hrm(path, lines, unit) -> tuple[np.ndarray, dict]:
    if unit is not None and unit_ratio(unit, "ms") != 1.0:
        raise SessionFormatError(
            f"{path}: option 'unit' is {unit!r}, but Polar HRM R-R intervals are in ms"
        )
    sections = _sections(path, lines)
    if "Params" not in sections:
        raise SessionFormatError(f"{path}: no [Params] section: not a Polar HRM file")
    params = {}
    for line in sections["Params"][1]:
        key, sep, value = line.partition("=")
        if sep:
            params[key.strip()] = value.strip()
    version = params.get("Version")
    if version not in HRM_VERSIONS:
        raise SessionFormatError(
            f"{path}: [Params] Version is {version!r}; Polar HRM versions read: "
            f"{list(HRM_VERSIONS)}"
        )
    interval = params.get("Interval")
    if interval != _HRM_RR_INTERVAL:
        raise SessionFormatError(
            f"{path}: [Params] Interval is {interval!r}: [HRData] holds heart-rate samples, "
            f"not R-R intervals (R-R recordings have Interval={_HRM_RR_INTERVAL})"
        )
    if "HRData" not in sections:
        raise SessionFormatError(f"{path}: no [HRData] section (the R-R intervals)")
    first, data = sections["HRData"]
    if any(len(line.split()) > 1 for line in data):
        raise SessionFormatError(
            f"{path}: [HRData] lines have several columns (SMode {file_text(params.get('SMode', ''))} "
            "records speed, cadence, altitude or power besides R-R); format 'rr' reads "
            "R-R-only recordings"
        )
    rr = _intervals(path, data, first, "[HRData]")
    if "Length" in params:
        length = _hrm_length(path, params["Length"])
        total = float(rr.sum()) / 1000.0
        if abs(total - length) > HRM_LENGTH_TOLERANCE_S:
            raise SessionFormatError(
                f"{path}: [HRData] holds {rr.size} R-R intervals summing to {total:.3f} s, "
                f"but [Params] Length is {params['Length']} ({length:g} s): the file is "
                "truncated or its header does not belong to its data"
            )
    attrs = {f"hrm_{k}": v for k, v in params.items()}
    if "Date" in params and "StartTime" in params:
        try:
            start = datetime.strptime(
                f"{params['Date']} {params['StartTime']}", "%Y%m%d %H:%M:%S.%f"
            )
        except ValueError:
            raise SessionFormatError(
                f"{path}: [Params] Date {params['Date']!r} / StartTime "
                f"{params['StartTime']!r} is not a date YYYYMMDD and a time hh:mm:ss.f"
            ) from None
        attrs["start_datetime"] = start.isoformat()
    attrs["source_format"] = f"Polar HRM {version}"
    return rr, attrs


def read_rr(path, channels=None, *, unit: str | None = None) -> xr.DataTree:
    """Read an R-R interval file as a beat-level session node.

    Parameters
    ----------
    path : str or pathlib.Path
        A text file of one R-R interval per line, or a Polar ``.hrm`` file.
    channels : None
        Not used: an R-R file has one series (a mapping is an error).
    unit : str, optional
        Unit of a text file's intervals (``"ms"`` by default, ``"s"``); Polar files are
        in ms (another unit is an error).

    Returns
    -------
    xarray.DataTree
        A session node with one ``beats`` group: ``t`` (s, cumulative sum of the
        intervals: beat ``k`` ends interval ``k``) and ``rr`` (ms, the interval ending
        at the beat), dim ``beat``; attrs ``source_file``, ``source_format``,
        ``source_units`` and, for Polar files, ``hrm_<field>`` and ``start_datetime``.

    Raises
    ------
    SessionFormatError
        A missing or empty file, a channel mapping, a line that is not one positive
        number, a Polar file of another version, not in R-R mode, with several
        columns or whose ``Length`` disagrees with its intervals.
    UnitError
        ``unit`` unknown or not a unit of time (names the file and the option).

    Notes
    -----
    Layouts: Kubios HRV's ASCII R-R export (one interval per line) and Polar
    Electro's HRM text format (``[Params]`` ``Interval=238``: R-R data in ms).
    """
    path = Path(path)
    if channels:
        raise SessionFormatError(
            f"{path}: format 'rr' takes no channel mapping (the file holds one R-R series)"
        )
    if not path.is_file():
        raise SessionFormatError(f"{path}: no such R-R file")
    if unit is not None:
        try:
            unit_ratio(unit, "ms")
        except UnitError as err:
            raise UnitError(f"{path}: option 'unit': {err}") from None
    raw = path.read_bytes()
    if not raw.strip():
        raise SessionFormatError(f"{path}: the file is empty (no R-R intervals)")
    # Polar notes may be in a legacy code page; every number is ASCII either way
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    first = next(line.strip() for line in lines if line.strip())
    if path.suffix.lower() == ".hrm" or first == "[Params]":
        rr, attrs = _read_hrm(path, lines, unit)
        attrs["source_units"] = "ms"
    else:
        values = _intervals(path, lines, 1, "R-R text")
        unit = unit or "ms"
        rr = values * unit_ratio(unit, "ms")
        attrs = {"source_format": "R-R text (one interval per line)", "source_units": unit}
    t = np.cumsum(rr) / 1000.0
    group = beats_group(t, {"rr": rr}, attrs={"source_file": str(path), **attrs})
    return session_node({BEAT_GROUP: group})


FORMAT = register_format(
    FileFormat(
        name="rr",
        reader=read_rr,
        description="R-R interval files: one interval per line (Kubios/Elite HRV), Polar .hrm",
        suffixes=(".txt", ".rr", ".rri", ".hrm"),
        options=(
            FormatOption("unit", time_unit, "unit of a text file's R-R intervals (default ms)"),
        ),
        channels=False,
        raw_files=single_file,
    )
)
