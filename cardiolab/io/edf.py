"""EDF and EDF+ files (pyedflib): signals, and EDF+ annotations as protocol epochs.

Reading
    Each mapped signal becomes a dask array backed by one delayed
    :meth:`pyedflib.EdfReader.readSignal` of that signal: opening reads the header and
    the annotations only. (pyedflib refuses to open one file twice in a process, so the
    reads of one file are serialised by a lock named after the file.) The unit is the
    signal's physical dimension, or the mapping's ``units`` where the dimension is blank.

Protocol epochs
    An EDF+ annotation (TAL) with a text and a positive duration is the epoch
    ``(text, onset, onset + duration)``; annotations without a duration are events and
    are ignored. Annotation times have a resolution of 0.1 ms.

Writing
    :func:`write_edf` writes EDF+C, 16-bit samples, each signal scaled to its own
    physical range and rounded to the nearest digital step,
    ``(physical_max - physical_min) / 65535``, so that a sample is stored to within
    half a step of its value.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pyedflib
from dask.utils import SerializableLock

from ..errors import CardiolabError, SessionFormatError
from .channels import (
    GROUP_VARIABLES,
    assemble,
    file_token,
    lazy_channel,
    missing_channel,
    parse_channels,
    unit_factor,
)

__all__ = ["read_edf", "write_edf", "EDF_LABELS"]

log = logging.getLogger("cardiolab")

#: signal labels written by :func:`write_edf` (doppler: ``"Doppler <vessel>"``)
EDF_LABELS = {"ecg": "ECG", "abp": "ABP", "ldf": "LDF", "doppler": "Doppler {vessel}"}

_DMIN, _DMAX = -32768, 32767

# data record durations tried by the writer, in order of preference (s)
_RECORD_DURATIONS = (1.0, 0.5, 2.0, 0.25, 0.2, 0.1, 4.0, 5.0, 0.05, 0.04, 0.02, 10.0, 0.01)


def _open(path) -> pyedflib.EdfReader:
    try:
        return pyedflib.EdfReader(str(path))
    except Exception as err:  # pyedflib raises OSError, but also others on odd headers
        raise SessionFormatError(f"{path}: not a readable EDF/EDF+ file ({err})") from None


def _read_signal(path, index: int, factor: float, lock) -> np.ndarray:
    """Samples of one signal, in the group's canonical unit (runs on compute)."""
    with lock:
        f = _open(path)
        try:
            values = f.readSignal(index)
        finally:
            f.close()
    return np.asarray(values, dtype=np.float64) * factor


def read_edf(path, channels):
    """Read an EDF/EDF+ (or BDF) file into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The file; opened read-only.
    channels : mapping
        ``{EDF signal label: {"group", "units"?, "vessel"?}}``; ``units`` is needed
        only where the file's physical dimension is blank.

    Returns
    -------
    xarray.DataTree
        Session node: one group per mapped group (ECG in mV, ABP in mmHg, LDF in PU,
        Doppler velocity in cm/s; samples dask-backed, not read) and, when the file has
        annotations with durations, a ``protocol`` group.

    Raises
    ------
    SessionFormatError
        The file is missing or unreadable, or a mapped channel is not in it.
    UnitError
        A unit is unknown, of the wrong quantity, or contradicts the mapping.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: EDF file not found")
    f = _open(path)
    try:
        labels = [s.strip() for s in f.getSignalLabels()]
        n_samples = f.getNSamples()
        found = []
        for ch in chans:
            if ch.name not in labels:
                raise missing_channel(path, ch.name, labels)
            i = labels.index(ch.name)
            factor, unit = unit_factor(ch, f.getPhysicalDimension(i), path)
            found.append((ch, i, factor, unit, float(f.getSampleFrequency(i)), int(n_samples[i])))
        onsets, durations, texts = f.readAnnotations()
    except SessionFormatError:
        raise
    except Exception as err:
        raise SessionFormatError(f"{path}: not a readable EDF/EDF+ file ({err})") from None
    finally:
        f.close()
    token = file_token(path)
    lock = SerializableLock(f"cardiolab-edf-{token}")
    signals = [
        (
            ch,
            lazy_channel(
                _read_signal, (path, i, factor, lock), n, name=f"edf-{ch.name}-{token}-{factor}"
            ),
            fs,
            unit,
        )
        for ch, i, factor, unit, fs, n in found
    ]
    epochs = [
        (str(text).strip(), float(onset), float(onset) + float(duration))
        for onset, duration, text in zip(onsets, durations, texts, strict=True)
        if float(duration) > 0 and str(text).strip()
    ]
    return assemble(signals, path, epochs or None)


def _edf_number(x: float, up: bool) -> float:
    """``x`` rounded outwards to a number that fits the 8 characters of an EDF field."""
    for decimals in range(6, -1, -1):
        scale = 10.0**decimals
        v = (math.ceil if up else math.floor)(x * scale) / scale
        text = f"{v:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{v:.0f}"
        if len(text) <= 8:
            return float(text)
    raise SessionFormatError(f"value {x!r} does not fit an EDF header field (8 characters)")


def _digital(values: np.ndarray, pmin: float, pmax: float) -> np.ndarray:
    """Physical values to 16-bit EDF counts, rounded to the nearest step.

    (pyedflib's own conversion truncates, an error of up to one step; rounding
    halves it.)
    """
    step = (pmax - pmin) / (_DMAX - _DMIN)
    counts = np.rint((values - pmin) / step + _DMIN)
    return np.clip(counts, _DMIN, _DMAX).astype(np.int32)


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
        ``LDF`` and ``Doppler <vessel>`` (see :data:`EDF_LABELS`), with the groups'
        canonical units (mV, mmHg, PU, cm/s) as physical dimensions.
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
        Missing samples (NaN; EDF cannot store them), or groups whose durations cannot
        be written as whole data records.

    Notes
    -----
    Each signal's physical range is its minimum and maximum, widened by 1 % and
    rounded outwards to what the 8-character header fields hold; one digital step is
    that range / 65535, and samples are rounded to the nearest step. Protocol epochs become EDF+ annotations (onset, duration,
    label) at 0.1 ms resolution. All groups must span one duration, written as whole
    data records (1 s where the rates allow).
    """
    path = Path(path)
    if path.exists():
        raise CardiolabError(f"{path} exists; refusing to overwrite it")
    signals, headers = [], []
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
            signals.append(_digital(values, pmin, pmax))
            headers.append(
                {
                    "label": label,
                    "dimension": units,
                    "sample_frequency": fs,
                    "physical_min": pmin,
                    "physical_max": pmax,
                    "digital_min": _DMIN,
                    "digital_max": _DMAX,
                    "transducer": "",
                    "prefilter": "",
                }
            )
    if not signals:
        raise SessionFormatError(f"{path}: the session node has no signal group to write")
    duration = _record_duration(
        [h["sample_frequency"] for h in headers], [s.size for s in signals], path
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyedflib warns whenever a record duration is set
        with pyedflib.EdfWriter(
            str(path), n_channels=len(signals), file_type=pyedflib.FILETYPE_EDFPLUS
        ) as f:
            f.setPatientCode(str(node.attrs.get("subject", "X")))
            f.setDatarecordDuration(duration)
            f.setSignalHeaders(headers)
            f.writeSamples(signals, digital=True)
            if "protocol" in node.children:
                p = node["protocol"].to_dataset(inherit=False)
                for label, start, stop in zip(
                    p["epoch"].values, p["start"].values, p["stop"].values, strict=True
                ):
                    f.writeAnnotation(float(start), float(stop) - float(start), str(label))
    log.debug("wrote %s (%d signals, %g s data records)", path, len(signals), duration)
    return path
