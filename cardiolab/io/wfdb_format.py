"""WFDB records (PhysioNet): signals, annotation files and protocol epochs.

Protocol epochs are stored in an annotation file as rhythm-change annotations (symbol
``+``) whose auxiliary note is ``(label`` at the epoch's start and ``label)`` at its
stop, following the WFDB convention for rhythm episodes. (A comment annotation ``"``
at sample 0 is dropped by the wfdb reader, so comments are not used.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ..errors import SessionFormatError
from .channels import assemble, lazy_channel, parse_channels, unit_factor

__all__ = ["read_wfdb", "read_wfdb_annotations", "write_wfdb", "BEAT_SYMBOLS"]

#: WFDB annotation symbols that mark beats (others are rhythm, noise, comments).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


def _header(path):
    try:
        return wfdb.rdheader(str(path))
    except (OSError, ValueError) as err:
        raise SessionFormatError(f"{path}: not a readable WFDB record ({err})") from None


def _read_channel(path, index, factor, frames):
    if frames == 1:
        rec = wfdb.rdrecord(str(path), channels=[index], physical=True)
        return rec.p_signal[:, 0] * factor
    rec = wfdb.rdrecord(str(path), channels=[index], physical=True, smooth_frames=False)
    return np.asarray(rec.e_p_signal[0], dtype=float) * factor


def read_wfdb_annotations(path, extension: str = "atr") -> pd.DataFrame:
    """An annotation file as a table.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample``, ``time`` (s), ``symbol``, ``aux_note``.
    """
    try:
        ann = wfdb.rdann(str(path), extension)
    except (OSError, ValueError) as err:
        raise SessionFormatError(
            f"{path}.{extension}: not a readable annotation file ({err})"
        ) from None
    fs = ann.fs or _header(path).fs
    sample = np.asarray(ann.sample, dtype=np.int64)
    return pd.DataFrame(
        {
            "sample": sample,
            "time": sample / float(fs),
            "symbol": list(ann.symbol),
            "aux_note": [a.rstrip("\x00") for a in (ann.aux_note or [""] * sample.size)],
        }
    )


def _epochs(table: pd.DataFrame):
    opened, epochs = {}, []
    for t, note in zip(table["time"], table["aux_note"], strict=True):
        note = note.strip()
        if note.startswith("(") and len(note) > 1:
            opened[note[1:]] = t
        elif note.endswith(")") and note[:-1] in opened:
            label = note[:-1]
            epochs.append((label, opened.pop(label), t))
    return sorted(epochs, key=lambda e: e[1])


def read_wfdb(path, channels, *, annotations: str | None = None):
    """Read a WFDB record into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        Record path without extension (``.../mitdb/100``).
    channels : mapping
        ``{signal name: {"group", "units"?, "vessel"?}}``.
    annotations : str, optional
        Extension of an annotation file whose ``(label`` / ``label)`` notes give
        the protocol epochs.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    hdr = _header(path)
    names = list(hdr.sig_name or [])
    frames = list(getattr(hdr, "samps_per_frame", None) or [1] * len(names))
    signals = []
    for ch in chans:
        if ch.name not in names:
            raise SessionFormatError(f"{path}: no channel {ch.name!r} (the record has: {names})")
        i = names.index(ch.name)
        units = (hdr.units or [None] * len(names))[i]
        if units in ("NU", "?"):  # WFDB "not given"
            units = None
        factor = unit_factor(ch, units, path)
        fs = float(hdr.fs) * frames[i]
        n = int(hdr.sig_len) * frames[i]
        arr = lazy_channel(_read_channel, (n,), np.float64, path, i, factor, frames[i])
        signals.append((ch, arr, fs))
    epochs = None
    if annotations:
        epochs = _epochs(read_wfdb_annotations(path, annotations)) or None
    return assemble(signals, path, epochs)


def write_wfdb(node, directory, record_name: str, *, annotation: str = "prot") -> list[Path]:
    """Write a session node as WFDB records, one per group (16-bit samples).

    Records are named ``<record_name>_<group>``; protocol epochs are written as an
    annotation file with extension ``annotation`` beside each record.

    Returns
    -------
    list of pathlib.Path
        The record paths (without extension).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for group in ("ecg", "abp", "ldf", "doppler"):
        if group not in node.children:
            continue
        ds = node[group].to_dataset(inherit=False)
        var = {"ecg": "ecg", "abp": "abp", "ldf": "flux", "doppler": "velocity"}[group]
        if group == "doppler":
            names = [f"doppler_{v}" for v in ds["vessel"].values]
            sig = np.asarray(ds[var].transpose("time", "vessel").values, dtype=float)
        else:
            names = [var]
            sig = np.asarray(ds[var].values, dtype=float)[:, None]
        rec = f"{record_name}_{group}"
        if (directory / f"{rec}.hea").exists():
            raise SessionFormatError(f"{directory / rec}.hea exists; refusing to overwrite it")
        fs = float(ds.attrs["sampling_rate"])
        wfdb.wrsamp(
            rec,
            fs=fs,
            units=[ds[var].attrs["units"]] * len(names),
            sig_name=names,
            p_signal=sig,
            fmt=["16"] * len(names),
            write_dir=str(directory),
        )
        if "protocol" in node.children:
            p = node["protocol"].to_dataset(inherit=False)
            samples, notes = [], []
            for lab, a, b in zip(
                p["epoch"].values, p["start"].values, p["stop"].values, strict=True
            ):
                samples += [int(round(a * fs)), min(int(round(b * fs)), sig.shape[0] - 1)]
                notes += [f"({lab}", f"{lab})"]
            order = np.argsort(samples, kind="stable")
            wfdb.wrann(
                rec,
                annotation,
                np.asarray(samples)[order],
                symbol=["+"] * len(samples),
                aux_note=[notes[k] for k in order],
                fs=fs,
                write_dir=str(directory),
            )
        out.append(directory / rec)
    return out
