"""ADInstruments LabChart exports: text (``.txt``) and MATLAB (``.mat``).

One format, ``labchart``; the file's suffix says which export it is (``.txt``: text,
``.mat``: MATLAB). No LabChart library is used: both layouts are simple; the one Python
text parser looked at (``labchart_txt_parser``, per its docstring) reads the whole file
into a DataFrame and stitches the blocks end to end, dropping the pauses between them;
the MATLAB export is read with SciPy.

Text export (``.txt``)
    Layout as LabChart writes it (checked against the two real exports in
    ``shared/data/labchart``): per block a header of ``Key=<TAB>value...`` lines,
    ``Interval=`` (the sampling interval with its unit, ``0.01 s``) first, then
    ``ExcelDateTime=`` (the block's start as an Excel serial day and as text),
    ``TimeFormat=``, ``DateFormat=``, ``ChannelTitle=`` (one name per channel),
    ``Range=`` (one ``<range> <unit>`` per channel) and, from some LabChart versions,
    ``UnitName=``, ``TopValue=``, ``BottomValue=``; then tab-separated data rows
    (time, one value per channel, optionally a comment field); lines end in CRLF. A
    new ``Interval=`` line starts a new block.

    - *Units*: a channel's ``UnitName``; where that line is absent or the entry is
      ``*``, the unit after the number in ``Range`` (``100.00 mV`` -> ``mV``). An empty
      unit (a unit-converted channel without a name) is no unit: the mapping's
      ``units`` is then required (see :func:`~cardiolab.io.channels.unit_factor`).
    - *Time*: only ``TimeFormat=StartOfBlock`` exports are read (row times in s from
      the block's start); other time formats are an error naming the field.
    - *Comments*: a field ``#* text`` (all channels) or ``#N text`` (channel ``N``,
      1-based in ``ChannelTitle``) after the values of a row.

MATLAB export (``.mat``)
    The layout relied on is ADInstruments' knowledge-base article "How does MATLAB open
    exported data?" (LabChart help, ``adinstruments.com/support/knowledge-base``):
    a MATLAB level-5 file (read with :func:`scipy.io.loadmat`) holding

    ==================  ====================  ===========================================
    variable            shape                 meaning
    ==================  ====================  ===========================================
    ``data``            1 x N                 every channel's samples, channel by
                                              channel within block by block
    ``datastart``,      channels x blocks     1-based first and last index (closed
    ``dataend``                               interval) of each channel and block in
                                              ``data``; -1 where the channel is empty
    ``titles``          channels rows (char)  channel names (padded with blanks)
    ``unittext``        units rows (char)     unit names, each once
    ``unittextmap``     channels x blocks     1-based row of ``unittext``; -1: empty
    ``samplerate``      channels x blocks     Hz; 0 where the channel is empty
    ``firstsampleoffset`` channels x blocks   offset of the first sample from the block
                                              start
    ``blocktimes``      1 x blocks            MATLAB serial date of each block's first
                                              sample
    ``tickrate``        1 x blocks            the block's tick rate (Hz)
    ``com``             comments x 5          channel (-1: all), block (1-based),
                                              position (ticks from the block start),
                                              type, 1-based row of ``comtext``
    ``comtext``         rows (char)           comment texts, each once
    ``scaleunits``,     channels x blocks     16-bit exports only: value =
    ``scaleoffset``                           (``data`` + scaleoffset) x scaleunits
    ==================  ====================  ===========================================

    What the article does not settle is not guessed: a mapped channel whose
    ``firstsampleoffset`` is not 0 is refused (the article gives no unit for it), and
    comment positions are read as ticks from the block start (``position / tickrate``
    s, as ADInstruments' ``LabChart.m`` reader plots them; ``tickrate`` missing: the
    block's highest sampling rate, which is what the tick rate is). MATLAB v7.3 (HDF5)
    files are refused (LabChart writes level 5, "opened with MATLAB v4.0 and later").

Blocks, gaps and the time axis
    A LabChart file holds blocks, segments of one recording session separated by
    pauses. The data model's ``time`` is regular (``schema.signal_group`` builds it
    from a start and a rate, and ``validate_session`` checks its span), so the blocks
    of a channel are laid on one grid at the channel's rate, from the session start
    (time 0 of the first block: the first block's ``ExcelDateTime``, or ``blocktimes``),
    each at the sample nearest its start (within half a sample period), and the pause
    between two blocks is filled with NaN: missing samples, never interpolated, as
    cardiolab treats dropouts. Each group lists those gaps in its attribute ``gaps``
    (flat ``[start, stop, start, stop, ...]`` in s, the NaN samples at ``start <= t <
    stop``) and its blocks' first-sample times in ``block_starts``. Blocks whose
    rates differ, or that overlap in time, are errors naming the blocks. Block ``k``
    starts ``(serial_k - serial_0) x 86400`` s after block 0 (plus its first row's
    time, for text exports), so where every block's first row is at the same time
    within its block (as in both real files), which instant ``ExcelDateTime`` names
    does not change the gaps.

Comments
    LabChart comments are events (a time and a text, no duration), and no LabChart
    convention makes two of them an epoch; so they do not become protocol epochs
    (the catalog's protocol gives those). They are kept on the session node's
    attributes, one entry per comment in file order: ``comment_times`` (s from the
    session start, the time of the row or tick the comment is on), ``comment_texts``
    (the text without its ``#*``/``#N`` marker and surrounding blanks),
    ``comment_channels`` (``""`` for all channels, else the channel's title) and
    ``comment_blocks`` (0-based block).

Laziness and cost
    Opening a text export reads the file once, in chunks of 16 MB, vectorised: it
    finds the header lines, counts each block's rows, reads each block's first and
    last row and every row that holds a ``#``. A channel's samples are parsed only on
    compute, one delayed :func:`pandas.read_csv` of each block's rows (that column
    only). Opening a MATLAB export reads every variable but ``data``; computing reads
    ``data`` once for the channels computed together.

Checks
    Empty file, no ``Interval=`` header, a header line inside a block's rows, a
    block without rows, a last line cut short (no line end, or fewer fields than the
    block has channels), a block whose last row time is not where its row count and
    interval put it, an ``Interval`` or ``ExcelDateTime`` that is not a number,
    ``TimeFormat`` other than ``StartOfBlock``; a ``.mat`` that is not a MAT file,
    lacks one of the variables above or whose indices leave ``data``: each a
    :class:`~cardiolab.errors.SessionFormatError` naming the file and the field.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.io
import xarray as xr

from ..errors import SessionFormatError, UnitError, file_text
from ..schema import check_sampling_rate
from ..units import conversion_factor
from .channels import (
    Channel,
    assemble,
    file_token,
    lazy_channel,
    locate_channel,
    parse_channels,
    unit_factor,
)
from .registry import FileFormat, register_format

__all__ = ["read_labchart", "FORMAT"]

_CHUNK = 16 * 2**20
_SECONDS_PER_DAY = 86400.0
_MAT_REQUIRED = ("data", "datastart", "dataend", "titles", "samplerate")
_COMMENT = re.compile(r"#(\*|\d+)\s?(.*)", re.DOTALL)


# --- what both exports give: blocks of channels on a session clock ---------------------


@dataclass(frozen=True)
class _Piece:
    """One channel's samples in one block."""

    block: int
    start: float  # s from the session start (time 0 of block 0)
    n: int
    fs: float
    unit: str | None  # as the file declares it (None: none)
    read: tuple  # (func, args): func(*args) -> raw samples (n,), in the file's unit


@dataclass
class _Comment:
    block: int
    time: float
    text: str
    channel: str


@dataclass
class _Export:
    """A LabChart export as far as opening needs it."""

    titles: list[list[str]]  # per block
    pieces: dict = field(default_factory=dict)  # (block, position) -> _Piece
    comments: list[_Comment] = field(default_factory=list)


def _channel_signal(path, ch: Channel, export: _Export, token: str):
    """A mapped channel over every block: lazy samples on one grid, NaN in the gaps."""
    found = []
    for b, titles in enumerate(export.titles):
        try:
            j = locate_channel(ch, titles, path)
        except SessionFormatError as err:
            if b == 0 or len(export.titles) == 1:
                raise
            raise SessionFormatError(f"block {b}: {err}") from None
        piece = export.pieces.get((b, j))
        if piece is not None:
            found.append(piece)
    if not found:
        raise SessionFormatError(f"{path}: channel {ch.name!r} has no samples in any block")
    rates = {p.fs for p in found}
    if len(rates) > 1:
        detail = ", ".join(f"block {p.block}: {p.fs:g} Hz" for p in found)
        raise SessionFormatError(
            f"{path}: channel {ch.name!r} is sampled at different rates in its blocks "
            f"({detail}); one group has one sampling rate"
        )
    factors = []
    for p in found:
        try:
            factors.append(unit_factor(ch, p.unit, path))
        except UnitError as err:
            if len(found) == 1:
                raise
            raise UnitError(f"{err} (block {p.block})") from None
    if len({f for f, _ in factors}) > 1:
        detail = ", ".join(
            f"block {p.block}: {u!r}" for p, (_, u) in zip(found, factors, strict=True)
        )
        raise UnitError(f"{path}: channel {ch.name!r} changes unit between blocks ({detail})")
    factor, unit = factors[0]
    fs = found[0].fs
    t0 = found[0].start
    parts, gaps, starts, end = [], [], [], 0
    for p in found:
        k = int(round((p.start - t0) * fs))
        if k < end:
            raise SessionFormatError(
                f"{path}: channel {ch.name!r}: block {p.block} starts at {p.start:.6g} s, "
                f"before the previous block ends ({t0 + end / fs:.6g} s); blocks overlap"
            )
        if k > end:
            # named by its length: dask's own token for it costs ms per gap
            parts.append(
                da.full((k - end,), np.nan, dtype=np.float64, name=f"labchart-nan-{k - end}")
            )
            gaps += [t0 + end / fs, t0 + k / fs]
        func, args = p.read
        parts.append(
            lazy_channel(
                _scaled,
                (func, args, factor, p.n),
                p.n,
                name=f"labchart-{ch.name}-{p.block}-{token}-{factor}",
            )
        )
        starts.append(t0 + k / fs)
        end = k + p.n
    samples = parts[0] if len(parts) == 1 else da.concatenate(parts)
    return samples, fs, unit, t0, gaps, starts


def _scaled(func, args, factor: float, n: int) -> np.ndarray:
    values = np.asarray(func(*args), dtype=np.float64)
    if values.shape != (n,):
        raise SessionFormatError(f"read {values.shape} samples where {n} were expected")
    return values * factor


def read_labchart(path, channels) -> xr.DataTree:
    """Read a LabChart text (``.txt``) or MATLAB (``.mat``) export as a session node.

    Parameters
    ----------
    path : str or pathlib.Path
        The export; its suffix (``.txt`` or ``.mat``, any case) says which layout.
    channels : mapping
        ``{channel title: {"group", "units"?, "index"?}}`` (see
        :mod:`cardiolab.io.channels`); ``index`` is the 0-based position in
        ``ChannelTitle`` (``titles``). A LabChart pressure channel in cmH2O maps to
        ``abp`` (converted to mmHg), a voltage channel to ``ecg`` (mV).

    Returns
    -------
    xarray.DataTree
        Session node: one group per mapped channel, samples dask-backed (read on
        compute), the blocks on one time grid with NaN in the gaps between them
        (group attributes ``gaps`` and ``block_starts``, s); comments in the node
        attributes ``comment_times``, ``comment_texts``, ``comment_channels`` and
        ``comment_blocks``. No ``protocol`` group (comments are events, see the
        module docstring).

    Raises
    ------
    SessionFormatError
        Missing, empty, truncated or malformed file (see the module docstring; each
        message names the file and the field), an unknown suffix, a mapped channel
        the file lacks (the message lists the titles it has), blocks at different
        rates or overlapping.
    UnitError
        A unit unknown to :mod:`cardiolab.units`, of another quantity than the
        group's, changing between blocks, or missing with no ``units`` in the mapping.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: LabChart export not found")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        export = _open_text(path)
    elif suffix == ".mat":
        export = _open_mat(path)
    else:
        raise SessionFormatError(
            f"{path}: a LabChart export ends in .txt (text) or .mat (MATLAB), not {suffix!r}"
        )
    token = file_token(path)
    signals, extra = [], {}
    for ch in chans:
        samples, fs, unit, start, gaps, starts = _channel_signal(path, ch, export, token)
        signals.append((ch, samples, fs, unit))
        extra[ch.group] = (start, gaps, starts)
    # assemble takes one start for every group; groups whose first block starts
    # elsewhere are shifted after it
    node = assemble(signals, path, None, start=0.0)
    for group, (start, gaps, starts) in extra.items():
        ds = node[group].to_dataset(inherit=False)
        ds = ds.assign_coords(time=ds["time"] + start)
        ds["time"].attrs.update(node[group]["time"].attrs)
        ds.attrs.update(gaps=[float(g) for g in gaps], block_starts=[float(s) for s in starts])
        node[group] = ds
    node.attrs.update(
        comment_times=[float(c.time) for c in export.comments],
        comment_texts=[c.text for c in export.comments],
        comment_channels=[c.channel for c in export.comments],
        comment_blocks=[int(c.block) for c in export.comments],
    )
    return node


# --- text exports ----------------------------------------------------------------------


@dataclass
class _TextBlock:
    line: int  # 1-based line of its Interval=
    header: dict = field(default_factory=dict)  # key -> list of fields (after the key)
    n: int = 0  # data rows
    data_start: int = -1  # byte offset of its first data row
    data_stop: int = -1  # byte offset after its last data row
    first: bytes = b""
    last: bytes = b""
    last_line: int = 0
    comments: list = field(default_factory=list)  # (row in block, raw field)


def _open_text(path: Path) -> _Export:
    blocks = _scan_text(path)
    titles, export = [], _Export(titles=[])
    serial0 = None
    for b, blk in enumerate(blocks):
        where = f"{path}: block {b} (line {blk.line})"
        head = blk.header
        names = [t.strip() for t in head.get("ChannelTitle", [])]
        if not names:
            raise SessionFormatError(f"{where}: no 'ChannelTitle=' header line")
        titles.append(names)
        interval = _interval(where, head.get("Interval", []))
        fs = 1.0 / interval
        time_format = (head.get("TimeFormat") or [""])[0].strip()
        if time_format != "StartOfBlock":
            raise SessionFormatError(
                f"{where}: header field 'TimeFormat' is {time_format!r}; only "
                "'StartOfBlock' exports (time in s from the block start) are read"
            )
        serial = _excel_serial(where, head.get("ExcelDateTime"), len(blocks))
        if serial0 is None:
            serial0 = serial
        offset = (serial - serial0) * _SECONDS_PER_DAY
        n_fields = 1 + len(names)
        first = _row(where, blk.first, n_fields, "first")
        last = _row(where, blk.last, n_fields, f"last (line {blk.last_line})")
        span = last - first
        if abs(span - (blk.n - 1) * interval) > 0.5 * interval:
            raise SessionFormatError(
                f"{where}: {blk.n} rows at 'Interval' {interval:g} s should span "
                f"{(blk.n - 1) * interval:.6g} s, but the times run from {first:g} to "
                f"{last:g} s (rows missing or the file cut)"
            )
        units = _text_units(where, head, len(names))
        start = offset + first
        for j, unit in enumerate(units):
            read = (_text_column, (path, blk.data_start, blk.data_stop, n_fields, j + 1))
            export.pieces[(b, j)] = _Piece(b, start, blk.n, fs, unit, read)
        for row, raw in blk.comments:
            m = _COMMENT.match(raw)
            if m is None:
                continue
            mark, text = m.groups()
            if mark == "*":
                channel = ""
            else:
                j = int(mark) - 1
                if not 0 <= j < len(names):
                    raise SessionFormatError(
                        f"{where}: a comment at row {row} names channel "
                        f"{mark}, but the block has {len(names)} channels"
                    )
                channel = names[j]
            export.comments.append(_Comment(b, start + row / fs, text.strip(), channel))
    export.titles = titles
    return export


def _scan_text(path: Path) -> list[_TextBlock]:
    """One pass over a text export, in chunks: headers, row counts, comment rows."""
    size = path.stat().st_size
    if size == 0:
        raise SessionFormatError(f"{path}: empty file (0 bytes); not a LabChart text export")
    blocks: list[_TextBlock] = []
    with path.open("rb") as f:
        lead = f.read(64)
        if not lead.lstrip(b"\xef\xbb\xbf").startswith(b"Interval="):
            raise SessionFormatError(
                f"{path}: not a LabChart text export with headers: its first line does "
                "not start with 'Interval='; "
                "export with 'Include header' ticked"
            )
        f.seek(0)
        offset, line_no, tail = 0, 0, b""
        while True:
            chunk = f.read(_CHUNK)
            buf = tail + chunk
            if not chunk:
                if buf:
                    raise SessionFormatError(
                        f"{path}: the last line (line {line_no + 1}) has no line end: "
                        "the file is cut short"
                    )
                break
            cut = buf.rfind(b"\n") + 1
            tail = buf[cut:]
            if cut:
                line_no = _scan_lines(path, buf[:cut], offset, line_no, blocks)
            offset += cut
    if not blocks:
        raise SessionFormatError(f"{path}: no 'Interval=' header line")
    for b, blk in enumerate(blocks):
        if blk.n == 0:
            raise SessionFormatError(
                f"{path}: block {b} (header at line {blk.line}) has no data rows"
            )
    return blocks


def _scan_lines(path, buf: bytes, offset: int, line_no: int, blocks: list) -> int:
    """Scan whole lines ``buf`` (starting at byte ``offset``, after line ``line_no``)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(a == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    first = a[starts]
    letter = ((first >= 65) & (first <= 90)) | ((first >= 97) & (first <= 122))
    blank = (first == 13) | (first == 10)
    data = ~letter & ~blank
    heads = np.flatnonzero(letter)
    hashes = np.unique(np.searchsorted(ends, np.flatnonzero(a == 35)))
    # runs of lines between header lines
    bounds = [*heads.tolist(), len(starts)]
    pos = 0
    for h in bounds:
        if h > pos:
            rows = np.flatnonzero(data[pos:h]) + pos
            if rows.size:
                if not blocks:
                    raise SessionFormatError(
                        f"{path}: data row at line {line_no + pos + 1} before any header"
                    )
                blk = blocks[-1]
                base = blk.n
                if blk.data_start < 0:
                    blk.data_start = offset + int(starts[rows[0]])
                    blk.first = buf[starts[rows[0]] : ends[rows[0]] + 1]
                blk.data_stop = offset + int(ends[rows[-1]]) + 1
                blk.last = buf[starts[rows[-1]] : ends[rows[-1]] + 1]
                blk.last_line = line_no + int(rows[-1]) + 1
                blk.n += int(rows.size)
                lo, hi = np.searchsorted(hashes, [rows[0], rows[-1] + 1])
                for i in hashes[lo:hi]:
                    if not data[i]:
                        continue
                    text = buf[starts[i] : ends[i] + 1].decode("utf-8", "replace")
                    at = text.find("#")
                    row = base + int(np.searchsorted(rows, i))
                    blk.comments.append((row, text[at:].rstrip("\r\n")))
        if h < len(starts):
            text = buf[starts[h] : ends[h] + 1].decode("utf-8", "replace").rstrip("\r\n")
            key, _, rest = text.partition("=")
            if key == "Interval":
                blocks.append(_TextBlock(line=line_no + h + 1))
            elif not blocks or blocks[-1].n:
                raise SessionFormatError(
                    f"{path}: header line {line_no + h + 1} ({file_text(key)}=...) inside a "
                    "block's rows or before any 'Interval='; a block's header starts "
                    "with 'Interval='"
                )
            blocks[-1].header[key] = rest.split("\t")[1:] if rest.startswith("\t") else [rest]
        pos = h + 1
    return line_no + len(starts)


def _interval(where, fields) -> float:
    text = (fields or [""])[0].strip()
    parts = text.split()
    try:
        value = float(parts[0])
        unit = parts[1] if len(parts) > 1 else "s"
        seconds = value * conversion_factor(unit, "time")
    except (IndexError, ValueError, UnitError):
        seconds = float("nan")
    if not seconds > 0 or not np.isfinite(seconds):
        raise SessionFormatError(
            f"{where}: header field 'Interval' reads {file_text(text)}, not a sampling interval "
            "> 0 with a unit of time ('0.01 s')"
        )
    return seconds


def _excel_serial(where, fields, n_blocks: int) -> float:
    if not fields or not fields[0].strip():
        if n_blocks == 1:
            return 0.0
        raise SessionFormatError(
            f"{where}: no 'ExcelDateTime=' header line; the blocks cannot be placed in time"
        )
    try:
        return float(fields[0])
    except ValueError:
        raise SessionFormatError(
            f"{where}: header field 'ExcelDateTime' reads {file_text(fields[0])}, not a serial day"
        ) from None


def _row(where, line: bytes, n_fields: int, which: str) -> float:
    """The time of a data row, checking it has a field per channel."""
    fields = line.decode("utf-8", "replace").rstrip("\r\n").split("\t")
    values = [x for x in fields if not x.startswith("#")]
    if len(values) < n_fields:
        raise SessionFormatError(
            f"{where}: the {which} row has {len(values)} fields where the header's "
            f"'ChannelTitle' gives {n_fields} (time + {n_fields - 1} channels): the file "
            "is cut short or not this block's"
        )
    try:
        return float(values[0])
    except ValueError:
        raise SessionFormatError(
            f"{where}: the {which} row's time reads {file_text(values[0])}, not a number"
        ) from None


def _text_units(where, head: dict, n: int) -> list[str | None]:
    """Each channel's unit: UnitName, else (absent or '*') the unit after Range's number."""
    ranges = head.get("Range") or [""] * n
    names = head.get("UnitName")
    out = []
    for j in range(n):
        name = names[j] if names is not None and j < len(names) else "*"
        if name.strip() == "*":
            rng = ranges[j].strip() if j < len(ranges) else ""
            parts = rng.split(None, 1)
            name = parts[1] if len(parts) > 1 else ""
        out.append(name.strip() or None)
    return out


def _text_column(path, start: int, stop: int, n_fields: int, col: int) -> np.ndarray:
    """Column ``col`` of the rows in bytes ``start:stop`` of a text export."""
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(stop - start)
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep="\t",
            header=None,
            usecols=[col],
            comment="#",
            dtype={col: np.float64},
            engine="c",
        )
    except ValueError as err:
        raise SessionFormatError(
            f"{path}: column {col} of the rows at bytes {start}-{stop} is not numeric ({err})"
        ) from None
    return frame[col].to_numpy()


# --- MATLAB exports ----------------------------------------------------------------------


def _open_mat(path: Path) -> _Export:
    if path.stat().st_size == 0:
        raise SessionFormatError(f"{path}: empty file (0 bytes); not a LabChart MATLAB export")
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
        names = set(shapes)
        wanted = sorted(names - {"data"})
        mat = scipy.io.loadmat(str(path), variable_names=wanted, chars_as_strings=True)
    except NotImplementedError:
        raise SessionFormatError(
            f"{path}: a MATLAB v7.3 (HDF5) file; LabChart writes level-5 MAT files, "
            "re-export it from LabChart"
        ) from None
    except Exception as err:  # scipy's parser meets arbitrary bytes: any error
        raise SessionFormatError(
            f"{path}: not a MATLAB level-5 .mat file ({type(err).__name__}: {err})"
        ) from None
    missing = [v for v in _MAT_REQUIRED if v not in names]
    if missing:
        raise SessionFormatError(
            f"{path}: not a LabChart MATLAB export: variable(s) {missing} missing "
            f"(it has {sorted(names)})"
        )
    titles = [str(t).strip() for t in np.atleast_1d(mat["titles"])]
    nch = len(titles)

    def grid(name, default=None):
        if name not in mat:
            if default is None:
                raise SessionFormatError(f"{path}: variable {name!r} missing")
            return np.full((nch, nblk), default, dtype=float)
        value = np.asarray(mat[name], dtype=float)
        if value.shape != (nch, nblk):
            raise SessionFormatError(
                f"{path}: variable {name!r} has shape {value.shape}, expected "
                f"(channels, blocks) = ({nch}, {nblk}) like 'datastart'"
            )
        return value

    start = np.asarray(mat["datastart"], dtype=float)
    if start.size % max(nch, 1):
        raise SessionFormatError(
            f"{path}: variable 'datastart' has {start.size} entries for {nch} channels"
        )
    nblk = start.size // nch
    start = grid("datastart")
    stop = grid("dataend")
    rate = grid("samplerate")
    offset = grid("firstsampleoffset", 0.0)
    unitmap = grid("unittextmap", -1.0)
    units = [str(u).strip() for u in np.atleast_1d(mat.get("unittext", []))]
    scale = grid("scaleunits", 1.0)
    shift = grid("scaleoffset", 0.0)
    blocktimes = np.atleast_1d(np.asarray(mat.get("blocktimes", [0.0]), dtype=float).ravel())
    if blocktimes.size != nblk:
        if nblk > 1 or "blocktimes" in mat:
            raise SessionFormatError(
                f"{path}: variable 'blocktimes' has {blocktimes.size} entries for {nblk} blocks"
            )
    n_data = int(np.prod(shapes["data"]))
    export = _Export(titles=[titles] * nblk)
    raw = dask.delayed(_mat_data, pure=True)(
        path, dask_key_name=f"labchart-mat-data-{file_token(path)}"
    )
    for b in range(nblk):
        t_block = (blocktimes[b] - blocktimes[0]) * _SECONDS_PER_DAY
        for j in range(nch):
            a, z = start[j, b], stop[j, b]
            if a < 1 or z < a:
                continue
            where = f"{path}: channel {titles[j]!r}, block {b}"
            if z > n_data:
                raise SessionFormatError(
                    f"{where}: 'dataend' is {z:g}, past the end of 'data' ({n_data} samples)"
                )
            check_sampling_rate(rate[j, b], source=where, field="variable 'samplerate'")
            if offset[j, b] != 0:
                raise SessionFormatError(
                    f"{where}: 'firstsampleoffset' is {offset[j, b]:g}; exports whose "
                    "channels start after the block's first tick are not read (the unit "
                    "of that offset is not documented)"
                )
            k = int(unitmap[j, b])
            unit = units[k - 1] if 1 <= k <= len(units) else None
            read = (_mat_slice, (raw, int(a) - 1, int(z), scale[j, b], shift[j, b]))
            export.pieces[(b, j)] = _Piece(b, t_block, int(z - a + 1), rate[j, b], unit, read)
    export.comments = _mat_comments(path, mat, titles, rate, blocktimes, nblk)
    return export


def _mat_data(path) -> np.ndarray:
    data = scipy.io.loadmat(str(path), variable_names=["data"])["data"]
    return np.asarray(data).ravel()


def _mat_slice(data, a: int, z: int, scale: float, shift: float) -> np.ndarray:
    values = np.asarray(data[a:z], dtype=np.float64)
    if scale != 1.0 or shift != 0.0:
        values = (values + shift) * scale
    return values


def _mat_comments(path, mat, titles, rate, blocktimes, nblk) -> list[_Comment]:
    if "com" not in mat or np.size(mat["com"]) == 0:
        return []
    com = np.atleast_2d(np.asarray(mat["com"], dtype=float))
    if com.shape[1] != 5:
        raise SessionFormatError(
            f"{path}: variable 'com' has {com.shape[1]} columns, expected 5 (channel, "
            "block, position, type, comtext index)"
        )
    texts = [str(t).strip() for t in np.atleast_1d(mat.get("comtext", []))]
    ticks = np.asarray(mat.get("tickrate", rate.max(axis=0)), dtype=float).ravel()
    out = []
    for i, (channel, block, position, _type, index) in enumerate(com):
        b, k = int(block) - 1, int(index)
        if not 0 <= b < nblk or not 1 <= k <= len(texts):
            raise SessionFormatError(
                f"{path}: variable 'com' row {i}: block {block:g} or comtext index "
                f"{index:g} out of range ({nblk} blocks, {len(texts)} texts)"
            )
        c = int(channel)
        name = "" if c == -1 else (titles[c - 1] if 1 <= c <= len(titles) else str(c))
        t = (blocktimes[b] - blocktimes[0]) * _SECONDS_PER_DAY + position / ticks[b]
        out.append(_Comment(b, float(t), texts[k - 1], name))
    return out


FORMAT = register_format(
    FileFormat(
        name="labchart",
        reader=read_labchart,
        description="ADInstruments LabChart text or MATLAB export",
        suffixes=(".txt", ".mat"),
    )
)
