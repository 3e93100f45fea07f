"""WFDB records (PhysioNet): signals, annotation files and protocol epochs.

Reading
    Each mapped signal becomes a dask array backed by one delayed
    :func:`wfdb.rdrecord` of that signal: opening reads the header (and, if asked, an
    annotation file) only. Signals with several samples per frame are read at their
    own rate (``fs * samps_per_frame``); multi-segment records are read through
    their layout (or first) segment's signal list. The unit is the one the header
    declares after the gain (``200/mV``). Where the header gives none, the mapping's
    ``units`` is used; failing that, a header that omits the unit means mV (the WFDB
    default), while ``NU`` or ``?`` is a :class:`~cardiolab.errors.UnitError`.

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
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ..errors import CardiolabError, SessionFormatError, UnitError
from .channels import (
    GROUP_VARIABLES,
    assemble,
    file_token,
    lazy_channel,
    missing_channel,
    parse_channels,
    unit_factor,
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


def _record_path(path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat") else path


def _header(path):
    hea = Path(f"{path}.hea")
    if not hea.is_file():
        raise SessionFormatError(f"{path}: WFDB header {hea.name} not found")
    try:
        return wfdb.rdheader(str(path))
    except Exception as err:  # the wfdb parser raises many kinds of error on bad headers
        raise SessionFormatError(f"{path}: not a readable WFDB record ({err})") from None


def _declared_units(path, hdr) -> list[str | None]:
    """The unit each signal line of the header states.

    ``None`` where the line omits it (WFDB default: mV), ``""`` where it says ``NU``
    or ``?`` (no unit).
    """
    units = list(hdr.units or [None] * hdr.n_sig)
    try:
        lines = [
            line.split("#", 1)[0].strip()
            for line in Path(f"{path}.hea").read_text(errors="replace").splitlines()
        ]
    except OSError:
        return units
    lines = [line for line in lines if line]
    if not lines or "/" in lines[0].split()[0]:  # multi-segment record: trust wfdb
        return units
    out = []
    for i, line in enumerate(lines[1 : 1 + hdr.n_sig]):
        fields = line.split()
        stated = len(fields) >= 3 and "/" in fields[2]
        unit = units[i] if stated else None
        out.append(None if unit is None else ("" if unit.strip() in _UNDECLARED else unit.strip()))
    return out + [None] * (hdr.n_sig - len(out))


def _signal_specs(path, hdr) -> tuple[list[str], list[str | None], list[int]]:
    """Signal names, declared units and samples per frame of a record.

    A multi-segment record takes them from its layout segment (variable layout) or
    its first segment (fixed layout).
    """
    if isinstance(hdr, wfdb.MultiRecord):
        segments = [s for s in (hdr.seg_name or []) if s and s != "~"]
        if not segments:
            raise SessionFormatError(f"{path}: multi-segment record without segments")
        layout = next((s for s in segments if s.endswith("_layout")), segments[0])
        ref = path.parent / layout
        seg = _header(ref)
        names = list(seg.sig_name or [])
        return names, _declared_units(ref, seg), list(seg.samps_per_frame or [1] * len(names))
    names = list(hdr.sig_name or [])
    frames = list(getattr(hdr, "samps_per_frame", None) or [1] * len(names))
    return names, _declared_units(path, hdr), frames


def _read_channel(path, index: int, factor: float, frames: int) -> np.ndarray:
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
    fs = ann.fs or _header(path).fs
    if not fs:
        raise SessionFormatError(f"{target}: no sampling frequency in the file or the header")
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
        ``{signal name: {"group", "units"?, "vessel"?}}``.
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
        Missing or unreadable record, or a mapped channel not in it.
    UnitError
        A unit is unknown, of the wrong quantity, or contradicts the mapping.
    """
    path = _record_path(path)
    chans = parse_channels(channels, path)
    hdr = _header(path)
    if hdr.sig_len is None:
        raise SessionFormatError(f"{path}: the header gives no signal length")
    names, declared, frames = _signal_specs(path, hdr)
    for name in sorted(set(getattr(hdr, "file_name", None) or [])):
        if not (path.parent / name).is_file():
            raise SessionFormatError(f"{path}: signal file {name} not found")
    token = file_token(f"{path}.hea")
    signals = []
    for ch in chans:
        if ch.name not in names:
            raise missing_channel(path, ch.name, names)
        i = names.index(ch.name)
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
        fs = float(hdr.fs) * frames[i]
        n = int(hdr.sig_len) * frames[i]
        arr = lazy_channel(
            _read_channel, (path, i, factor, frames[i]), n, name=f"wfdb-{i}-{token}-{factor}"
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
