"""EDF/EDF+ and BDF/BDF+ files (edfio): signals, and EDF+ annotations as protocol epochs.

Library
    Files are read and written with `edfio <https://github.com/the-siesta-group/edfio>`_
    (pure Python on NumPy). Each candidate was tried on the inputs cardiolab must take
    (edfio 0.4.18, MNE-Python 1.13.2, pyedflib 0.1.42; the first two rows are
    ``shared/data/real_world`` files, the others are written by the tests):

    =============================================  ==========  ===========  ========
    input                                          edfio       MNE          pyedflib
    =============================================  ==========  ===========  ========
    BDF, right-aligned header field (BioSemi)      reads       reads        refuses
    duplicate labels (signals 0 and 2)             reads       renames      reads
    EDF+D, records in fact contiguous              reads       reads        refuses
    EDF+D with a gap                               ignores it  ignores it   refuses
    Latin-1 ``µ`` in a physical dimension          reads       reads        refuses
    data records cut short (truncated file)        warns       warns        refuses
    =============================================  ==========  ===========  ========

    pyedflib refuses three valid kinds. MNE reads them, but renames duplicate labels
    (``-0``, ``-1``), scales voltages to V and keeps the file's labels and physical
    dimensions only in private attributes, and is a large dependency. edfio reads every
    case, keeps labels and dimensions as written, parses EDF+ annotations and writes
    EDF+C, so it replaces pyedflib in the writer too (edfio reads BDF since 0.4.10, the lower bound cardiolab asks for). What
    neither library does, this module adds, by the EDF and EDF+ specifications (Kemp et
    al., Electroencephalogr. Clin. Neurophysiol. 1992; 82:391-3 and Kemp & Olivan, Clin.
    Neurophysiol. 2003; 114:1755-61):

    - a header check whose errors name the field (edfio's are Python's own, e.g.
      ``invalid literal for int()``), with numbers read whatever their alignment; the
      signal headers (labels, dimensions, ranges, samples per record) are read here, so
      opening a file needs no edfio object of it;
    - samples read one signal at a time from a memory map of the data records, advised
      against read-ahead (edfio, to 0.4.18 at least, has no lazy path for BDF:
      ``read_bdf`` decodes every sample of the file; its EDF memory map reads most of
      a cold file from disk for one signal; MNE-Python decodes whole data records);
    - for EDF+D (BDF+D) files, the onset of every data record, from the first TAL of
      the first annotation signal ("timekeeping"): contiguous records read as one
      recording, a gap or overlap is an error naming its onset and length (edfio's
      ``is_continuous`` says whether, not where; MNE reads across gaps silently);
    - header text decoded as UTF-8 where it is valid UTF-8, else as Latin-1, so that
      ``µV`` is reached in either spelling.

Reading
    Opening reads the header and the annotation signals (a few bytes per data record:
    the EDF+D/BDF+D record onsets and the protocol epochs, which edfio parses from
    those bytes alone) and builds, for each mapped signal, a dask array backed by one
    delayed read of that signal: no sample of an ordinary signal is read until compute,
    and computing a signal reads that signal's bytes only, from this module's memory
    map of the data records: 2-byte EDF samples as they are, 3-byte BDF samples
    widened to int32 with their sign, both scaled as edfio scales them (the same
    floats, bit for bit). A signal is found by its label, or by ``index``, its 0-based position among
    the file's signals not counting annotation signals (see
    :func:`~cardiolab.io.channels.locate_channel`). The unit is the signal's physical
    dimension, or the mapping's ``units`` where the dimension is blank.

    A file whose data records are fewer than its header says, or whose last record is
    cut short, is read to its last whole record with a warning naming the header's
    number and the file's, as MNE-Python and edfio do (a recorder stopped before it
    finished its file); a file without one whole record is an error.

Protocol epochs
    An EDF+ annotation (TAL) with a text and a positive duration is the epoch
    ``(text, onset, onset + duration)``; annotations without a duration are events and
    are ignored.

Writing
    :func:`write_edf` writes EDF+C, 16-bit samples, each signal scaled to its own
    physical range and rounded to the nearest digital step,
    ``(physical_max - physical_min) / 65535``, so that a sample is stored to within
    half a step of its value.
"""

from __future__ import annotations

import logging
import math
import mmap
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import edfio
import numpy as np

from ..errors import CardiolabError, SessionFormatError, file_text
from .channels import (
    GROUP_VARIABLES,
    assemble,
    file_token,
    lazy_channel,
    locate_channel,
    parse_channels,
    unit_factor,
)
from .registry import FileFormat, register_format

__all__ = ["read_edf", "write_edf", "EDF_LABELS", "EDF_MAIN_FIELDS", "EDF_SIGNAL_FIELDS"]

log = logging.getLogger("cardiolab")

#: signal labels written by :func:`write_edf` (doppler: ``"Doppler <vessel>"``)
EDF_LABELS = {
    "ecg": "ECG",
    "abp": "ABP",
    "ldf": "LDF",
    "doppler": "Doppler {vessel}",
    "resp": "Resp",
}

_DMIN, _DMAX = -32768, 32767

# data record durations tried by the writer, in order of preference (s)
_RECORD_DURATIONS = (1.0, 0.5, 2.0, 0.25, 0.2, 0.1, 4.0, 5.0, 0.05, 0.04, 0.02, 10.0, 0.01)

#: The fixed part of an EDF/BDF header (Kemp et al. 1992): field -> (first byte, width).
EDF_MAIN_FIELDS = {
    "version": (0, 8),
    "number of bytes in header record": (184, 8),
    "reserved": (192, 44),
    "number of data records": (236, 8),
    "duration of a data record": (244, 8),
    "number of signals": (252, 4),
}
# the signal headers: field name -> width; each field holds one entry per signal
EDF_SIGNAL_FIELDS = {
    "label": 16,
    "transducer type": 80,
    "physical dimension": 8,
    "physical minimum": 8,
    "physical maximum": 8,
    "digital minimum": 8,
    "digital maximum": 8,
    "prefiltering": 80,
    "number of samples in each data record": 8,
    "reserved": 32,
}
_BDF_VERSION = b"\xffBIOSEMI"

# the first TAL of a data record in the first annotation signal: "+onset" [\x15 duration] \x14
_TIMEKEEPING = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15[\d.]*)?\x14")


@dataclass(frozen=True)
class _Header:
    """What the header check found (every signal, annotation signals included)."""

    fmt: str  # "EDF" or "BDF"
    bytes_per_sample: int
    header_bytes: int
    n_records: int  # whole data records in the file
    record_duration: Decimal
    reserved: str
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    main: bytes  # the fixed part of the header, as read (256 bytes)
    fields: dict  # signal header field name -> tuple of its raw entries, one per signal

    @property
    def annotation_label(self) -> str:
        """The label of this format's annotation signals."""
        return f"{self.fmt} Annotations"

    @property
    def record_bytes(self) -> int:
        """Bytes in one data record (every signal's samples)."""
        return sum(self.samples_per_record) * self.bytes_per_sample

    def signal_bytes(self, j: int) -> _SignalBytes:
        """Where the samples of signal ``j`` (position among all signals) lie."""
        start = sum(self.samples_per_record[:j]) * self.bytes_per_sample
        stop = start + self.samples_per_record[j] * self.bytes_per_sample
        return _SignalBytes(
            self.header_bytes, self.n_records, self.record_bytes, start, stop, self.bytes_per_sample
        )


@dataclass(frozen=True)
class _SignalBytes:
    """Where one signal's samples lie in the file: bytes ``start:stop`` of each of the
    ``n_records`` data records of ``record_bytes`` bytes that follow the header."""

    header_bytes: int
    n_records: int
    record_bytes: int
    start: int
    stop: int
    sample_bytes: int


def _text(field: bytes | str) -> str:
    """A header field as text: UTF-8 where it is valid UTF-8, else Latin-1 (EDF asks
    for ASCII, but recorders write ``µ`` as Latin-1 0xB5 or UTF-8 0xC2 0xB5)."""
    raw = field.encode("latin-1") if isinstance(field, str) else field
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


def _number(path, raw: bytes, field: str, kind=int, signal: str | None = None):
    """A numeric header field (of ``signal``), read whatever its alignment (``'  1  '`` is 1)."""
    text = raw.decode("latin-1").strip()
    try:
        value = kind(text)
    except (ValueError, InvalidOperation):
        value = None
    if value is None or (kind is Decimal and not value.is_finite()):
        where = f"signal {signal!r}: " if signal is not None else ""
        raise SessionFormatError(
            f"{path}: {where}header field {field!r} reads {file_text(text)}, which is not a number"
        )
    return value


def _read_header(path: Path) -> _Header:
    """Check the header of an EDF/BDF file; every refusal names the file and the field."""
    size = path.stat().st_size
    with path.open("rb") as f:
        main = f.read(256)
        if not main:
            raise SessionFormatError(
                f"{path}: empty file (0 bytes); an EDF/BDF header has 256 bytes or more"
            )
        version = main[:8]
        if version == _BDF_VERSION:
            fmt, bytes_per_sample = "BDF", 3
        elif version.strip() == b"0":
            fmt, bytes_per_sample = "EDF", 2
        else:
            raise SessionFormatError(
                f"{path}: not an EDF or BDF file: its header field 'version' (bytes 0-7) "
                "is neither '0' (EDF) nor '\\xffBIOSEMI' (BDF)"
            )
        if len(main) < 256:
            raise SessionFormatError(
                f"{path}: the file ends inside its header ({size} bytes; the fields up to "
                "'number of signals' take 256)"
            )

        def field(name):
            start, width = EDF_MAIN_FIELDS[name]
            return main[start : start + width]

        ns = _number(path, field("number of signals"), "number of signals")
        if ns < 1:
            raise SessionFormatError(
                f"{path}: header field 'number of signals' is {ns}; the file has no signal"
            )
        header_bytes = _number(
            path, field("number of bytes in header record"), "number of bytes in header record"
        )
        if header_bytes != 256 * (ns + 1):
            raise SessionFormatError(
                f"{path}: header field 'number of bytes in header record' is {header_bytes}, "
                f"but {ns} signals take 256 * ({ns} + 1) = {256 * (ns + 1)}"
            )
        signal_headers = f.read(256 * ns)
    if len(signal_headers) < 256 * ns:
        raise SessionFormatError(
            f"{path}: the file ends inside its header ({size} bytes; the header of its "
            f"{ns} signals ends at byte {header_bytes})"
        )
    entries, start = {}, 0
    for name, width in EDF_SIGNAL_FIELDS.items():
        block = signal_headers[start : start + width * ns]
        entries[name] = [block[i * width : (i + 1) * width] for i in range(ns)]
        start += width * ns
    labels = tuple(_text(label) for label in entries["label"])
    spr_field = "number of samples in each data record"
    samples = []
    for label, raw in zip(labels, entries[spr_field], strict=True):
        n = _number(path, raw, spr_field, signal=label)
        if n < 1:
            raise SessionFormatError(
                f"{path}: signal {label!r}: header field {spr_field!r} is {n}; a signal "
                "needs at least one sample per data record (its sampling rate would be 0 Hz)"
            )
        samples.append(n)
    duration = _number(
        path, field("duration of a data record"), "duration of a data record", Decimal
    )
    if duration <= 0:
        raise SessionFormatError(
            f"{path}: header field 'duration of a data record' is {duration} s; it must be "
            "> 0 for a file with signals (the sampling rates would be zero, negative or "
            "infinite)"
        )
    declared = _number(path, field("number of data records"), "number of data records")
    record_bytes = sum(samples) * bytes_per_sample
    data_bytes = size - header_bytes
    whole, rest = divmod(data_bytes, record_bytes)
    if whole < 1:
        raise SessionFormatError(
            f"{path}: no complete data record: header field 'number of data records' is "
            f"{declared}, of {record_bytes} bytes each, but the file holds {data_bytes} "
            "bytes after its header"
        )
    if whole != declared or rest:
        log.warning(
            "%s: header field 'number of data records' is %d, but the file holds %d whole "
            "data records (%d bytes after the header, %d bytes each%s); reading those %d, "
            "as MNE-Python and edfio do",
            path,
            declared,
            whole,
            data_bytes,
            record_bytes,
            f", and {rest} bytes of a cut record" if rest else "",
            whole,
        )
    return _Header(
        fmt,
        bytes_per_sample,
        header_bytes,
        whole,
        duration,
        _text(field("reserved")),
        labels,
        tuple(samples),
        main,
        {name: tuple(raw) for name, raw in entries.items()},
    )


def _data_records(path, header_bytes: int, n_records: int, record_bytes: int) -> np.ndarray:
    """The data records of the file, memory-mapped as bytes: shape ``(n_records,
    record_bytes)``, read-only.

    Nothing is read until a slice of it is used, and then only the pages that slice
    holds: the map is advised ``MADV_RANDOM`` (where the system has it), because the
    kernel's default read-ahead would read most of the file from disk to take one
    signal's few bytes of each record (measured: all 236 MB of a 64-signal BDF for one
    signal's 3.7 MB, against 7.4 MB advised).
    """
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
            mapped.madvise(mmap.MADV_RANDOM)
        records = np.frombuffer(
            mapped, dtype=np.uint8, count=n_records * record_bytes, offset=header_bytes
        )
    except (OSError, ValueError) as err:  # ValueError: the file is shorter than the map
        raise SessionFormatError(
            f"{path}: its {n_records} data records of {record_bytes} bytes are not "
            f"readable ({err}); has the file changed since it was opened?"
        ) from None
    return records.reshape(n_records, record_bytes)


def _annotation_records(path: Path, header: _Header) -> tuple[list[int], np.ndarray]:
    """The positions of the annotation signals and, for each data record, their bytes
    (concatenated in file order): an array of shape ``(n_records, bytes)``."""
    positions = [j for j, label in enumerate(header.labels) if label == header.annotation_label]
    if not positions:
        return [], np.empty((header.n_records, 0), dtype=np.uint8)
    records = _data_records(path, header.header_bytes, header.n_records, header.record_bytes)
    columns = [records[:, w.start : w.stop] for w in map(header.signal_bytes, positions)]
    return positions, np.concatenate(columns, axis=1)  # a copy: the map is released


def _check_contiguous(path: Path, header: _Header, tals: np.ndarray) -> None:
    """Refuse an EDF+D/BDF+D file whose data records leave a gap or overlap.

    ``tals`` holds the annotation signals' bytes of each data record (see
    :func:`_annotation_records`). The onset of each data record is the first TAL of the
    first annotation signal (EDF+ specification, "time keeping of data records");
    records are contiguous when record ``k`` starts ``k`` record durations after
    record 0.
    """
    if not header.reserved.startswith(("EDF+D", "BDF+D")):
        return
    kind = header.annotation_label
    if kind not in header.labels:
        raise SessionFormatError(
            f"{path}: {header.reserved[:5]} (discontinuous) file without an {kind!r} "
            "signal: the onsets of its data records are unknown"
        )
    onsets = []
    for k, tal in enumerate(tals):
        m = _TIMEKEEPING.match(tal.tobytes())
        if m is None:
            raise SessionFormatError(
                f"{path}: data record {k}: its {kind!r} signal does not start with the "
                "record's onset (timekeeping TAL)"
            )
        onsets.append(Decimal(m.group(1).decode()))
    duration = header.record_duration
    for k in range(1, len(onsets)):
        end = onsets[k - 1] + duration  # where record k should start
        if onsets[k] != end:
            gap = onsets[k] - end
            what = f"a gap of {gap} s" if gap > 0 else f"an overlap of {-gap} s"
            raise SessionFormatError(
                f"{path}: {header.reserved[:5]} data records are not contiguous: {what} "
                f"at {end} s (data record {k} starts at {onsets[k]} s, the previous one "
                f"ends at {end} s; times from the file's start time); cardiolab reads "
                "contiguous recordings only: split the file at the gap"
            )


def _annotations(path: Path, header: _Header, positions: list[int], tals: np.ndarray):
    """The file's EDF+ annotations (:class:`edfio.EdfAnnotation`), parsed by edfio.

    edfio is given the annotation signals alone: the header's fixed part with the
    number of signals and header bytes they take, their own signal headers, and
    ``tals``, their bytes of every data record. It so reads a few bytes per record,
    never a sample of an ordinary signal (edfio would decode every BDF sample).
    """
    if not positions:
        return ()
    k = len(positions)
    main = header.main
    head = (
        main[:184]
        + f"{256 * (k + 1):<8d}".encode()
        + main[192:236]
        + f"{header.n_records:<8d}".encode()
        + main[244:252]
        + f"{k:<4d}".encode()
    )
    signal_headers = b"".join(
        header.fields[name][j] for name in EDF_SIGNAL_FIELDS for j in positions
    )
    read = edfio.read_bdf if header.fmt == "BDF" else edfio.read_edf
    try:
        rec = read(head + signal_headers + tals.tobytes(), header_encoding="latin-1")
        return rec.annotations
    except Exception as err:  # edfio: ValueError on a TAL it cannot parse
        raise SessionFormatError(
            f"{path}: its {header.annotation_label} signal is not readable "
            f"({type(err).__name__}: {err})"
        ) from None


def _calibration(path: Path, header: _Header, j: int) -> tuple[float, float]:
    """Gain and offset of signal ``j``, physical = (digital + offset) * gain.

    gain = (physical max - physical min) / (digital max - digital min) and offset =
    physical max / gain - digital max (EDF specification; written as edfio computes
    them, so that both give the same floats).
    """
    label = header.labels[j]
    ranges = {}
    for name, kind in (("physical", float), ("digital", int)):
        lo, hi = (
            _number(path, header.fields[f"{name} {end}"][j], f"{name} {end}", kind, label)
            for end in ("minimum", "maximum")
        )
        if not (math.isfinite(lo) and math.isfinite(hi)) or (
            lo == hi if name == "physical" else hi <= lo
        ):
            need = "differ" if name == "physical" else "have maximum > minimum"
            raise SessionFormatError(
                f"{path}: signal {label!r}: header fields '{name} minimum' ({lo:g}) and "
                f"'{name} maximum' ({hi:g}) must {need}"
            )
        ranges[name] = (lo, hi)
    (pmin, pmax), (dmin, dmax) = ranges["physical"], ranges["digital"]
    gain = (pmax - pmin) / (dmax - dmin)
    return gain, pmax / gain - dmax


def _read_signal(
    path, where: _SignalBytes, gain: float, offset: float, factor: float
) -> np.ndarray:
    """Samples of one EDF or BDF signal, in the group's canonical unit (runs on compute).

    Only the signal's own bytes are read: the data records are memory-mapped
    (:func:`_data_records`) and the signal's ``start:stop`` bytes of each record taken.
    EDF samples are 2-byte little-endian two's complement integers, read as ``<i2``;
    BDF (BioSemi) samples are 3-byte ones, widened to int32 with their sign,
    vectorised: the 3 bytes go to the high bytes of a little-endian int32, which an
    arithmetic shift right by 8 brings back with the sign extended. Then physical =
    (digital + offset) * gain (:func:`_calibration`).

    Hand-written because no library reads one signal without reading all: edfio (to
    0.4.18 at least) decodes every sample of a BDF file at open (``read_bdf`` has no
    lazy mode) and memory-maps EDF with the kernel's read-ahead (one signal of a
    cold 79 MB EDF read 78 MB from disk), MNE-Python's reader decodes whole data
    records, and pyedflib refuses BioSemi headers with right-aligned fields. The
    values are those of edfio's full decode, bit for bit (tested).
    """
    path = Path(path)
    n_records, n_bytes = where.n_records, where.stop - where.start
    records = _data_records(path, where.header_bytes, n_records, where.record_bytes)
    if where.sample_bytes == 2:
        digital = np.ascontiguousarray(records[:, where.start : where.stop]).view("<i2")
        digital = digital.reshape(-1)
    else:
        signal = records[:, where.start : where.stop].reshape(n_records, n_bytes // 3, 3)
        quad = np.zeros((n_records, n_bytes // 3, 4), dtype=np.uint8)
        quad[:, :, 1:] = signal  # reads the signal's bytes (the pages that hold them)
        del signal
        digital = quad.reshape(-1).view("<i4")
        np.right_shift(digital, 8, out=digital)
    del records
    values = digital + offset  # float64, as edfio computes it
    values *= gain
    values *= factor
    return values


def read_edf(path, channels):
    """Read an EDF/EDF+ or BDF/BDF+ file into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (EDF, EDF+C, EDF+D with contiguous records, BDF, BDF+); opened
        read-only.
    channels : mapping
        ``{signal label: {"group", "units"?, "vessel"?, "index"?}}``; ``units`` is
        needed only where the file's physical dimension is blank, ``index`` (0-based
        position among the file's signals, annotation signals not counted) where a
        label is not unique.

    Returns
    -------
    xarray.DataTree
        Session node: one group per mapped group (ECG in mV, ABP in mmHg, LDF in PU,
        Doppler velocity in cm/s; samples dask-backed, not read) and, when the file has
        annotations with durations, a ``protocol`` group.

    Raises
    ------
    SessionFormatError
        The file is missing, empty, not EDF/BDF, cut inside its header or before its
        first whole data record, has a header field that is not a number or gives a
        sampling rate <= 0, is EDF+D with a gap between records, or a mapped channel is
        not in it (the message lists the labels it has) or its label is there twice
        without an ``index``.
    UnitError
        A unit is unknown, of the wrong quantity, or contradicts the mapping.

    Notes
    -----
    See the module docstring for the choice of library and what is checked. Opening
    reads the header and the annotation signals only. A file with fewer whole data
    records than its header says is read to its last whole record, with a warning.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: EDF file not found")
    header = _read_header(path)
    positions, tals = _annotation_records(path, header)
    _check_contiguous(path, header, tals)
    ordinary = [j for j, label in enumerate(header.labels) if label != header.annotation_label]
    labels = [header.labels[j] for j in ordinary]
    token = file_token(path)
    lazy = []
    for ch in chans:
        i = locate_channel(ch, labels, path)
        j = ordinary[i]
        gain, offset = _calibration(path, header, j)
        factor, unit = unit_factor(ch, _text(header.fields["physical dimension"][j]), path)
        n = header.samples_per_record[j] * header.n_records
        args = (path, header.signal_bytes(j), gain, offset, factor)
        samples = lazy_channel(_read_signal, args, n, name=f"edf-{i}-{ch.name}-{token}-{factor}")
        fs = header.samples_per_record[j] / float(header.record_duration)
        lazy.append((ch, samples, fs, unit))
    epochs = [
        (a.text.strip(), float(a.onset), float(a.onset) + float(a.duration))
        for a in _annotations(path, header, positions, tals)
        if a.duration is not None and float(a.duration) > 0 and a.text.strip()
    ]
    return assemble(lazy, path, epochs or None)


def _edf_number(x: float, up: bool) -> float:
    """``x`` rounded outwards to a number that fits the 8 characters of an EDF field."""
    for decimals in range(6, -1, -1):
        scale = 10.0**decimals
        v = (math.ceil if up else math.floor)(x * scale) / scale
        text = f"{v:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{v:.0f}"
        if len(text) <= 8:
            return float(text)
    raise SessionFormatError(f"value {x!r} does not fit an EDF header field (8 characters)")


def _record_duration(rates, lengths, path) -> float:
    """A data record duration that holds every signal in a whole number of records."""
    for d in _RECORD_DURATIONS:
        per_record = [fs * d for fs in rates]
        if not all(abs(k - round(k)) < 1e-9 and round(k) >= 1 for k in per_record):
            continue
        n_records = {n / round(k) for n, k in zip(lengths, per_record, strict=True)}
        if len(n_records) == 1 and float(next(iter(n_records))).is_integer():
            return d
    spans = ", ".join(f"{n / fs:g} s at {fs:g} Hz" for n, fs in zip(lengths, rates, strict=True))
    raise SessionFormatError(
        f"{path}: cannot write as EDF without padding: the signals ({spans}) do not fill "
        "a whole number of equal data records; trim the groups to one common duration"
    )


def write_edf(node, path) -> Path:
    """Write a session node as an EDF+ file (16-bit samples; epochs as annotations).

    Parameters
    ----------
    node : xarray.DataTree
        Session node in the data model. Signals are labelled ``ECG``, ``ABP``,
        ``LDF``, ``Doppler <vessel>`` and ``Resp`` (see :data:`EDF_LABELS`), with the
        groups' canonical units (mV, mmHg, PU, cm/s; respiration its recorded unit)
        as physical dimensions.
    path : str or pathlib.Path
        The file to create; an existing file is never overwritten.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CardiolabError
        The file exists.
    SessionFormatError
        Missing samples (NaN; EDF cannot store them), groups whose durations cannot
        be written as whole data records, or a label, unit or subject code that is not
        ASCII (EDF headers are ASCII).

    Notes
    -----
    Each signal's physical range is its minimum and maximum, widened by 1 % and
    rounded outwards to what the 8-character header fields hold; one digital step is
    that range / 65535, and samples are rounded to the nearest step. Protocol epochs
    become EDF+ annotations (onset, duration, label), their times written as the
    shortest decimals that read back as the same floats (edfio). All groups must span one duration, written as whole
    data records (1 s where the rates allow).
    """
    path = Path(path)
    if path.exists():
        raise CardiolabError(f"{path} exists; refusing to overwrite it")
    signals = []
    for group, var in GROUP_VARIABLES.items():
        if group not in node.children:
            continue
        ds = node[group].to_dataset(inherit=False)
        fs = float(ds.attrs["sampling_rate"])
        units = ds[var].attrs["units"]
        if group == "doppler":
            rows = [
                (EDF_LABELS[group].format(vessel=v), ds[var].sel(vessel=v).values)
                for v in ds["vessel"].values
            ]
        else:
            rows = [(EDF_LABELS[group], ds[var].values)]
        for label, values in rows:
            if len(label) > 16:
                raise SessionFormatError(
                    f"{path}: EDF signal label {label!r} is longer than 16 characters"
                )
            values = np.ascontiguousarray(values, dtype=np.float64)
            if not np.all(np.isfinite(values)):
                raise SessionFormatError(
                    f"{path}: group {group!r} ({label}) has missing (NaN) samples, which "
                    "EDF cannot store"
                )
            lo, hi = float(values.min()), float(values.max())
            pad = max((hi - lo) * 0.01, 1e-3)
            pmin, pmax = _edf_number(lo - pad, up=False), _edf_number(hi + pad, up=True)
            try:
                # edfio rounds each value to the nearest digital step
                signal = edfio.EdfSignal(
                    values,
                    fs,
                    label=label,
                    physical_dimension=units,
                    physical_range=(pmin, pmax),
                    digital_range=(_DMIN, _DMAX),
                )
            except ValueError as err:  # a header field that is not ASCII
                raise SessionFormatError(f"{path}: signal {label!r}: {err}") from None
            signals.append(signal)
    if not signals:
        raise SessionFormatError(f"{path}: the session node has no signal group to write")
    duration = _record_duration(
        [s.sampling_frequency for s in signals], [s.digital.size for s in signals], path
    )
    annotations = []
    if "protocol" in node.children:
        p = node["protocol"].to_dataset(inherit=False)
        annotations = [
            edfio.EdfAnnotation(float(start), float(stop) - float(start), str(label))
            for label, start, stop in zip(
                p["epoch"].values, p["start"].values, p["stop"].values, strict=True
            )
        ]
    # EDF+ patient code: one word, spaces as underscores
    code = str(node.attrs.get("subject", "X")).strip().replace(" ", "_") or "X"
    try:
        rec = edfio.Edf(
            signals,
            patient=edfio.Patient(code=code),
            data_record_duration=duration,
            annotations=annotations,  # always EDF+C, with record timekeeping
        )
    except ValueError as err:  # includes UnicodeEncodeError
        raise SessionFormatError(f"{path}: cannot write as EDF ({err})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    rec.write(path)
    log.debug("wrote %s (%d signals, %g s data records)", path, len(signals), duration)
    return path


FORMAT = register_format(
    FileFormat(
        name="edf",
        reader=read_edf,
        description="EDF, EDF+ and BioSemi BDF/BDF+ (edfio); EDF+ annotations -> epochs",
        suffixes=(".edf", ".bdf"),
    )
)
