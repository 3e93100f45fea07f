"""WFDB records (PhysioNet): signals, annotation files and protocol epochs.

Reading
    Each mapped signal becomes a dask array backed by one delayed
    :func:`wfdb.rdrecord` of that signal: opening reads the header (and, if asked, an
    annotation file) only, and checks the signal files' sizes. Signals with several
    samples per frame are read at their own rate (``fs * samps_per_frame``);
    multi-segment records are read through their layout (or first) segment's signal
    list. Signals are found with :func:`~cardiolab.io.channels.locate_channel`: a
    name the header holds twice is an error naming both positions, and ``index``
    says which. Signal files are any wfdb reads, including MATLAB v4 ``.mat`` files
    (``wfdb2mat``: format 16 after a 24-byte header, given as ``16+24``).

Header fields and WFDB's defaults
    The WFDB header format (``header(5)`` of the WFDB Software Package, which
    :func:`wfdb.rdheader` follows) lets fields be omitted, and wfdb then fills in
    defaults; cardiolab does not take a default where it would be a guess:

    - *sampling frequency* (record line, field 3): required, a finite number
      > 0. WFDB assumes 250 Hz where it is missing, and wfdb also reads a negative
      or non-numeric rate as 250 Hz; each is a
      :class:`~cardiolab.errors.SessionFormatError` naming the field.
    - *signal length* (record line, field 4): where omitted, taken from the size of
      the signal file as wfdb does (``(size - byte offset) / (bytes per sample x
      samples per frame)``, whole frames); where given, the signal files must hold
      that many samples (a shorter file is truncated: an error naming the file).
      A length of 0 is an error (no samples).
    - *ADC gain* (signal line, field 3, ``gain(baseline)/units``): zero or missing
      means *uncalibrated* in WFDB (wfdb then assumes 200 ADC units per physical
      unit), so the physical values would be made up: mapping such a signal is an
      error naming the signal and the field. A negative gain (inverted polarity) is
      read as wfdb reads it.
    - *units* (same field, after ``/``): the unit the header declares after the
      gain (``200/mV``). Where the header gives none, the mapping's ``units`` is
      used; failing that, WFDB's documented default mV, if it fits the group (else a
      :class:`~cardiolab.errors.UnitError` asking for ``units``), while ``NU`` or
      ``?`` (no unit) is a :class:`~cardiolab.errors.UnitError`.

Protocol epochs
    An annotation file holds the epochs as rhythm-change annotations (symbol ``+``)
    whose auxiliary note is ``(label`` at the epoch's start sample and ``label)`` at
    its stop sample (``round(time * fs)``), following the WFDB convention that a
    ``+`` annotation's note ``(X`` opens rhythm episode ``X``. Only episodes that are
    both opened and closed are epochs, so the open-ended rhythm notes of PhysioNet
    ``.atr`` files (``(N``, ``(AFIB``) are not mistaken for epochs. (A comment
    annotation ``"`` at sample 0 is dropped by the wfdb reader, so comments are not
    used.)

Writing
    :func:`write_wfdb` writes one record per group, ``<record_name>_<group>``
    (format 16: 16-bit samples with a gain fitted to each signal's range, rounded to
    the nearest digital step ``1 / adc_gain``, about range / 65534, so a sample is
    stored to within half a step), each with the protocol annotation file beside it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ..errors import CardiolabError, SessionFormatError, UnitError, file_text
from .channels import (
    GROUP_VARIABLES,
    assemble,
    file_token,
    lazy_channel,
    locate_channel,
    parse_channels,
    unit_factor,
)
from .registry import (
    FileFormat,
    FormatOption,
    file_or_siblings,
    nonempty_text,
    register_format,
)

__all__ = [
    "read_wfdb",
    "read_wfdb_annotations",
    "write_wfdb",
    "BEAT_SYMBOLS",
    "PROTOCOL_EXTENSION",
]

log = logging.getLogger("cardiolab")

#: WFDB annotation symbols that mark beats (others are rhythm, noise, comments).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")

#: extension of the protocol annotation file written by :func:`write_wfdb`
PROTOCOL_EXTENSION = "prot"

_UNDECLARED = {"", "NU", "?"}
_RECORD_NAME = re.compile(r"[-\w]+")
#: ``gain(baseline)/units``, field 3 of a signal line (header(5))
_GAIN_FIELD = re.compile(r"^(?P<gain>[^(/]*)(?:\((?P<baseline>[^)]*)\))?(?:/(?P<units>.*))?$")
#: bytes per sample of each WFDB signal format with a fixed sample size (signal(5) of
#: the WFDB Software Package: 212 packs 2 samples in 3 bytes, 310 and 311 pack 3 in 4);
#: the FLAC formats 508, 516 and 524 are compressed, so their size says nothing.
_BYTES_PER_SAMPLE = {
    "8": Fraction(1),
    "16": Fraction(2),
    "24": Fraction(3),
    "32": Fraction(4),
    "61": Fraction(2),
    "80": Fraction(1),
    "160": Fraction(2),
    "212": Fraction(3, 2),
    "310": Fraction(4, 3),
    "311": Fraction(4, 3),
}
_RATE_FIELD = "sampling frequency (record line, field 3)"
_LENGTH_FIELD = "signal length (record line, field 4)"


@dataclass(frozen=True)
class _Header:
    """A WFDB header as wfdb parses it, with the raw fields it fills with defaults."""

    path: Path  # the record, without extension
    info: object  # wfdb.Record or wfdb.MultiRecord (no samples)
    record_line: list[str]
    signal_lines: list[list[str]]  # (segment lines of a multi-segment record)

    @property
    def file(self) -> str:
        return f"{self.path}.hea"

    @property
    def multi_segment(self) -> bool:
        return isinstance(self.info, wfdb.MultiRecord)


def _record_path(path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat") else path


def _header(path) -> _Header:
    """Read a header: its lines (comments dropped) and wfdb's parse of it."""
    hea = Path(f"{path}.hea")
    if not hea.is_file():
        raise SessionFormatError(f"{path}: WFDB header {hea.name} not found")
    try:
        text = hea.read_text(errors="replace")
    except OSError as err:
        raise SessionFormatError(f"{hea}: cannot read the WFDB header ({err})") from None
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    lines = [fields for fields in lines if fields]
    if not lines:
        raise SessionFormatError(f"{hea}: the WFDB header is empty (no record line)")
    try:
        info = wfdb.rdheader(str(path))
    except Exception as err:  # the wfdb parser raises many kinds of error on bad headers
        raise SessionFormatError(f"{path}: not a readable WFDB record ({err})") from None
    return _Header(Path(path), info, lines[0], lines[1:])


def _sampling_frequency(header: _Header) -> float:
    """The record's sampling frequency (Hz); required, finite and > 0."""
    fields = header.record_line
    if len(fields) < 3:
        raise SessionFormatError(
            f"{header.file}: no {_RATE_FIELD}; WFDB would assume 250 Hz, which cardiolab "
            "does not guess: write the record's rate into its header"
        )
    try:
        fs = float(fields[2].split("/", 1)[0])
    except ValueError:
        fs = float("nan")
    if not (np.isfinite(fs) and fs > 0):
        raise SessionFormatError(
            f"{header.file}: {_RATE_FIELD} is {file_text(fields[2])}; it must be a number of Hz > 0"
        )
    if not np.isclose(float(header.info.fs or 0.0), fs, rtol=1e-9, atol=0.0):
        raise SessionFormatError(
            f"{header.file}: {_RATE_FIELD} reads {file_text(fields[2])} but wfdb parses "
            f"{header.info.fs!r}: fix the record line"
        )
    return fs


def _stated_length(header: _Header) -> int | None:
    """The signal length the record line states (frames), ``None`` where omitted."""
    fields = header.record_line
    if len(fields) < 4:
        return None
    if not fields[3].isdigit() or int(fields[3]) == 0:
        raise SessionFormatError(
            f"{header.file}: {_LENGTH_FIELD} is {file_text(fields[3])}; it must be a whole "
            "number "
            "of samples > 0"
        )
    return int(fields[3])


def _frames_on_disk(header: _Header) -> dict[str, int | None]:
    """Whole frames each signal file holds (``None``: compressed, size says nothing)."""
    info = header.info
    files: dict[str, list] = {}
    for name, fmt, spf, offset in zip(
        info.file_name,
        info.fmt,
        info.samps_per_frame,
        info.byte_offset or [None] * info.n_sig,
        strict=True,
    ):
        entry = files.setdefault(name, [str(fmt), offset or 0, 0])
        entry[2] += int(spf)
    frames: dict[str, int | None] = {}
    for name, (fmt, offset, per_frame) in files.items():
        if name == "~":  # a layout segment's placeholder
            continue
        target = header.path.parent / name
        if not target.is_file():
            raise SessionFormatError(f"{header.path}: signal file {name} not found")
        size = target.stat().st_size
        if size == 0:
            raise SessionFormatError(f"{target}: the signal file is empty")
        if fmt not in _BYTES_PER_SAMPLE:
            frames[name] = None
            continue
        frames[name] = int(Fraction(max(size - offset, 0)) / (_BYTES_PER_SAMPLE[fmt] * per_frame))
    return frames


def _signal_length(header: _Header) -> int:
    """Frames in a single-segment record, checked against its signal files.

    The record line's length where stated (each signal file must hold it), else the
    whole frames of the first signal file, as :func:`wfdb.rdrecord` infers it.
    """
    stated = _stated_length(header)
    if header.info.n_sig == 0:
        raise SessionFormatError(f"{header.file}: the record has no signals")
    frames = _frames_on_disk(header)
    n = stated
    if n is None:
        first = header.info.file_name[0]
        n = frames.get(first)
        if n is None:
            raise SessionFormatError(
                f"{header.file}: no {_LENGTH_FIELD}, and the length of compressed signal "
                f"file {first} cannot be told from its size: state it in the header"
            )
        if n == 0:
            raise SessionFormatError(
                f"{header.path.parent / first}: holds less than one frame of samples"
            )
    for name, held in frames.items():
        if held is not None and held < n:
            where = "the header's " + _LENGTH_FIELD if stated else f"{first}'s length"
            raise SessionFormatError(
                f"{header.path.parent / name}: the signal file holds {held} frames, but "
                f"{where} is {n}: the file is truncated"
            )
    return n


def _signal_fields(header: _Header) -> list[tuple[str, str | None]]:
    """Raw ADC gain and stated unit of each signal line.

    The unit is ``None`` where the line omits it (WFDB default: mV) and ``""`` where
    it says ``NU`` or ``?`` (no unit).
    """
    out = []
    for fields in header.signal_lines[: header.info.n_sig]:
        m = _GAIN_FIELD.match(fields[2]) if len(fields) >= 3 else None
        gain = m.group("gain") if m else ""
        unit = m.group("units") if m else None
        out.append((gain, None if unit is None else ("" if unit in _UNDECLARED else unit)))
    return out + [("", None)] * (header.info.n_sig - len(out))


def _check_calibrated(header: _Header, names: set[str]) -> None:
    """A mapped signal with ADC gain 0 or none is uncalibrated: an error."""
    for i, (name, (gain, _)) in enumerate(
        zip(header.info.sig_name, _signal_fields(header), strict=True)
    ):
        if name not in names:
            continue
        try:
            value = float(gain)
        except ValueError:
            value = 0.0
        if value == 0.0 or not np.isfinite(value):
            raise SessionFormatError(
                f"{header.file}: signal {name!r}: ADC gain (signal line {i + 1}, field 3) "
                f"is {gain or 'missing'!r}: WFDB then calls the signal uncalibrated (wfdb "
                "would assume 200 units per mV), so its physical values are unknown"
            )


def _signal_specs(header: _Header, names_wanted: set[str]):
    """Signal names, declared units, samples per frame and length of a record.

    A multi-segment record takes its signal list from its layout segment (variable
    layout) or its first segment (fixed layout); each segment's calibration and
    signal files are checked.
    """
    path = header.path
    if header.multi_segment:
        segments = [s for s in (header.info.seg_name or []) if s and s != "~"]
        if not segments:
            raise SessionFormatError(f"{path}: multi-segment record without segments")
        n = header.info.sig_len or _stated_length(header)
        if not n:
            raise SessionFormatError(f"{header.file}: no {_LENGTH_FIELD}")
        layout = next((s for s in segments if s.endswith("_layout")), segments[0])
        for name in segments:
            seg = _header(path.parent / name)
            _check_calibrated(seg, names_wanted)
            if not name.endswith("_layout"):
                _signal_length(seg)
        ref = _header(path.parent / layout)
        names = list(ref.info.sig_name or [])
        units = [u for _, u in _signal_fields(ref)]
        return names, units, list(ref.info.samps_per_frame or [1] * len(names)), int(n)
    _check_calibrated(header, names_wanted)
    n = _signal_length(header)
    names = list(header.info.sig_name or [])
    units = [u for _, u in _signal_fields(header)]
    return names, units, list(header.info.samps_per_frame or [1] * len(names)), n


def _read_channel(path, index: int, factor: float, frames: int, n: int) -> np.ndarray:
    """Samples of one signal, in the group's canonical unit (runs on compute)."""
    try:
        if frames == 1:
            rec = wfdb.rdrecord(str(path), channels=[index], physical=True)
            values = rec.p_signal[:, 0]
        else:
            rec = wfdb.rdrecord(str(path), channels=[index], physical=True, smooth_frames=False)
            values = rec.e_p_signal[0]
    except Exception as err:
        raise SessionFormatError(f"{path}: cannot read signal {index} ({err})") from None
    if len(values) != n:
        raise SessionFormatError(
            f"{path}: signal {index} holds {len(values)} samples, the header {n}"
        )
    return np.asarray(values, dtype=np.float64) * factor


def read_wfdb_annotations(path, extension: str = "atr") -> pd.DataFrame:
    """Read a WFDB annotation file as a table.

    Parameters
    ----------
    path : str or pathlib.Path
        Record path without extension (``.../mitdb/100``).
    extension : str
        Annotation file extension (``atr``, ``qrs``, ``prot``...).

    Returns
    -------
    pandas.DataFrame
        One row per annotation: ``sample`` (int), ``time`` (s from the record
        start), ``symbol`` and ``aux_note`` (empty string where none).

    Raises
    ------
    SessionFormatError
        The annotation file is missing or unreadable.
    """
    path = _record_path(path)
    target = Path(f"{path}.{extension}")
    if not target.is_file():
        raise SessionFormatError(f"{target}: WFDB annotation file not found")
    try:
        ann = wfdb.rdann(str(path), extension)
    except Exception as err:
        raise SessionFormatError(f"{target}: not a readable WFDB annotation file ({err})") from None
    fs = ann.fs or _sampling_frequency(_header(path))
    sample = np.asarray(ann.sample, dtype=np.int64)
    notes = ann.aux_note if ann.aux_note is not None else [""] * sample.size
    return pd.DataFrame(
        {
            "sample": sample,
            "time": sample / float(fs),
            "symbol": list(ann.symbol),
            "aux_note": [(a or "").rstrip("\x00") for a in notes],
        }
    )


def _epochs(table: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Protocol epochs from ``(label`` / ``label)`` notes of ``+`` annotations."""
    opened: dict[str, float] = {}
    epochs = []
    rows = table[table["symbol"] == "+"]
    for t, note in zip(rows["time"], rows["aux_note"], strict=True):
        note = note.strip()
        if len(note) > 1 and note.startswith("("):
            opened[note[1:]] = float(t)
        elif len(note) > 1 and note.endswith(")") and note[:-1] in opened:
            label = note[:-1]
            epochs.append((label, opened.pop(label), float(t)))
    return sorted(epochs, key=lambda e: e[1])


def read_wfdb(path, channels, *, annotations: str | None = None):
    """Read a WFDB record into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        Record path without extension (``.../mitdb/100``); opened read-only.
    channels : mapping
        ``{signal name: {"group", "units"?, "vessel"?, "index"?}}``; ``index`` (0-based
        signal number) picks one of several signals with the same name.
    annotations : str, optional
        Extension of an annotation file whose ``(label`` / ``label)`` notes give the
        protocol epochs (see the module notes).

    Returns
    -------
    xarray.DataTree
        Session node with one group per mapped group (canonical units; samples
        dask-backed, not read) and a ``protocol`` group if epochs were found.

    Raises
    ------
    SessionFormatError
        Missing, empty or unreadable header; a sampling frequency that is missing or
        not > 0; a signal length of 0; a signal file that is missing, empty or
        shorter than the header says (truncated); a mapped signal that is
        uncalibrated (ADC gain 0 or none), not in the record (the message lists the
        signals it has) or named twice without ``index``. Each message names the
        file and the header field.
    UnitError
        A unit is unknown, of the wrong quantity, or contradicts the mapping.
    """
    path = _record_path(path)
    chans = parse_channels(channels, path)
    header = _header(path)
    fs_record = _sampling_frequency(header)
    names, declared, frames, n_frames = _signal_specs(header, {c.name for c in chans})
    token = file_token(f"{path}.hea")
    signals = []
    for ch in chans:
        i = locate_channel(ch, names, path)
        if declared[i] is None and ch.units is None:
            # the WFDB default where a header omits the unit
            try:
                factor, unit = unit_factor(ch, "mV", path)
            except UnitError:
                raise UnitError(
                    f"{path}: channel {ch.name!r}: the header gives no unit (WFDB then "
                    f"assumes mV, which does not fit group {ch.group!r}); give 'units' in "
                    "the channel mapping"
                ) from None
        else:
            factor, unit = unit_factor(ch, declared[i], path)
        fs = fs_record * frames[i]
        n = n_frames * frames[i]
        arr = lazy_channel(
            _read_channel,
            (path, i, factor, frames[i], n),
            n,
            name=f"wfdb-{i}-{token}-{factor}",
        )
        signals.append((ch, arr, fs, unit))
    epochs = None
    if annotations:
        epochs = _epochs(read_wfdb_annotations(path, annotations)) or None
        if epochs is None:
            log.info("%s.%s: no protocol epochs ('(label' ... 'label)' notes)", path, annotations)
    return assemble(signals, path, epochs)


def write_wfdb(node, directory, record_name: str) -> list[Path]:
    """Write a session node as WFDB records, one per group (16-bit samples).

    Parameters
    ----------
    node : xarray.DataTree
        Session node in the data model.
    directory : str or pathlib.Path
        Folder for the records (created if needed).
    record_name : str
        Stem of the record names: records are ``<record_name>_<group>`` (letters,
        digits, ``_`` and ``-``). Signal names are ``ecg``, ``abp``, ``flux`` and
        ``doppler_<vessel>``, in the groups' canonical units.

    Returns
    -------
    list of pathlib.Path
        The record paths (without extension), in the order ecg, abp, ldf, doppler.

    Raises
    ------
    CardiolabError
        A file of one of the records exists (nothing is written then).
    SessionFormatError
        Invalid record name, or no signal group.

    Notes
    -----
    One record per group, because the groups have different sampling rates. Protocol
    epochs are written beside each record as annotation file ``.prot``
    (:data:`PROTOCOL_EXTENSION`): ``+`` annotations with notes ``(label`` at the start
    sample and ``label)`` at the stop sample, so epoch times are kept to 1 / fs.
    Missing samples (NaN) are stored as the format's invalid value and read back as
    NaN.
    """
    directory = Path(directory)
    if not _RECORD_NAME.fullmatch(str(record_name)):
        raise SessionFormatError(
            f"{directory}: WFDB record name {record_name!r} may hold only letters, digits, "
            "'_' and '-'"
        )
    groups = [g for g in GROUP_VARIABLES if g in node.children]
    if not groups:
        raise SessionFormatError(f"{directory}: the session node has no signal group to write")
    has_protocol = "protocol" in node.children
    for group in groups:
        rec = directory / f"{record_name}_{group}"
        for ext in ("hea", "dat", *((PROTOCOL_EXTENSION,) if has_protocol else ())):
            if Path(f"{rec}.{ext}").exists():
                raise CardiolabError(f"{rec}.{ext} exists; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for group in groups:
        var = GROUP_VARIABLES[group]
        ds = node[group].to_dataset(inherit=False)
        if group == "doppler":
            names = [f"doppler_{v}" for v in ds["vessel"].values]
            sig = np.asarray(ds[var].transpose("time", "vessel").values, dtype=np.float64)
        else:
            names = [var]
            sig = np.asarray(ds[var].values, dtype=np.float64)[:, None]
        rec = f"{record_name}_{group}"
        fs = float(ds.attrs["sampling_rate"])
        wfdb.wrsamp(
            rec,
            fs=fs,
            units=[ds[var].attrs["units"]] * len(names),
            sig_name=names,
            p_signal=np.ascontiguousarray(sig),
            fmt=["16"] * len(names),
            write_dir=str(directory),
        )
        if has_protocol:
            p = node["protocol"].to_dataset(inherit=False)
            samples, notes = [], []
            for label, start, stop in zip(
                p["epoch"].values, p["start"].values, p["stop"].values, strict=True
            ):
                samples += [int(round(float(start) * fs)), int(round(float(stop) * fs))]
                notes += [f"({label}", f"{label})"]
            order = np.argsort(samples, kind="stable")
            wfdb.wrann(
                rec,
                PROTOCOL_EXTENSION,
                np.asarray(samples, dtype=np.int64)[order],
                symbol=["+"] * len(samples),
                aux_note=[notes[k] for k in order],
                fs=fs,
                write_dir=str(directory),
            )
        out.append(directory / rec)
    log.debug("wrote WFDB records %s", [str(r) for r in out])
    return out


FORMAT = register_format(
    FileFormat(
        name="wfdb",
        reader=read_wfdb,
        description="PhysioNet WFDB records (.dat or .mat signals); ``(label``/``label)`` epochs",
        suffixes=(".hea",),
        options=(
            FormatOption(
                "annotations",
                nonempty_text,
                "annotation file extension whose (label ... label) marks are epochs",
            ),
        ),
        raw_files=file_or_siblings,
        missing="record (no .hea header)",
    )
)
