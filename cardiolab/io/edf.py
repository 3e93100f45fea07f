"""EDF and EDF+ files (pyedflib): signals, and annotations as protocol epochs.

An EDF+ annotation whose text is an epoch label, with an onset and a duration, is read
as a protocol epoch ``(label, onset, onset + duration)``; annotations without a
duration are ignored.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pyedflib

from ..errors import SessionFormatError
from .channels import assemble, parse_channels, unit_factor

__all__ = ["read_edf", "write_edf"]


def _open(path):
    try:
        return pyedflib.EdfReader(str(path))
    except (OSError, ValueError) as err:
        raise SessionFormatError(f"{path}: not a readable EDF/EDF+ file ({err})") from None


def _read_signals(path, indices, factors):
    # pyedflib refuses a second open of one file, so a file is read in one task
    with pyedflib.EdfReader(str(path)) as f:
        return [f.readSignal(i) * k for i, k in zip(indices, factors, strict=True)]


def read_edf(path, channels) -> "xarray.DataTree":  # noqa: F821
    """Read an EDF/EDF+ file into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (opened read-only).
    channels : mapping
        ``{EDF signal label: {"group", "units"?, "vessel"?}}``.

    Returns
    -------
    xarray.DataTree
        Session node with one group per mapped channel and, when the file has
        annotations with durations, a ``protocol`` group.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    f = _open(path)
    try:
        labels = [s.strip() for s in f.getSignalLabels()]
        n_samples = f.getNSamples()
        found = []
        for ch in chans:
            if ch.name not in labels:
                raise SessionFormatError(f"{path}: no channel {ch.name!r} (the file has: {labels})")
            i = labels.index(ch.name)
            factor = unit_factor(ch, f.getPhysicalDimension(i), path)
            found.append((ch, i, factor, float(f.getSampleFrequency(i)), int(n_samples[i])))
        onsets, durations, texts = f.readAnnotations()
    finally:
        f.close()
    everything = dask.delayed(_read_signals, pure=True)(
        path, [c[1] for c in found], [c[2] for c in found]
    )
    signals = [
        (ch, da.from_delayed(everything[k], shape=(n,), dtype=np.float64), fs)
        for k, (ch, _, _, fs, n) in enumerate(found)
    ]
    epochs = [
        (str(t).strip(), float(o), float(o) + float(d))
        for o, d, t in zip(onsets, durations, texts, strict=True)
        if float(d) > 0 and str(t).strip()
    ]
    return assemble(signals, path, epochs or None)


def _edf_label(group, vessel=None):
    return {"ecg": "ECG", "abp": "ABP", "ldf": "LDF"}.get(group) or f"Doppler {vessel}"[:16]


def write_edf(node, path) -> Path:
    """Write a session node as EDF+ (16-bit samples; protocol epochs as annotations).

    Channels are named ``ECG``, ``ABP``, ``LDF`` and ``Doppler <vessel>``, with the
    groups' canonical units.
    """
    from pyedflib import highlevel

    path = Path(path)
    if path.exists():
        raise SessionFormatError(f"{path} exists; refusing to overwrite it")
    signals, headers = [], []
    for group in ("ecg", "abp", "ldf", "doppler"):
        if group not in node.children:
            continue
        ds = node[group].to_dataset(inherit=False)
        fs = float(ds.attrs["sampling_rate"])
        var = {"ecg": "ecg", "abp": "abp", "ldf": "flux", "doppler": "velocity"}[group]
        units = ds[var].attrs["units"]
        rows = (
            [(v, ds[var].sel(vessel=v).values) for v in ds["vessel"].values]
            if group == "doppler"
            else [(None, ds[var].values)]
        )
        for vessel, values in rows:
            values = np.asarray(values, dtype=float)
            lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
            pad = max((hi - lo) * 0.01, 1e-3)
            signals.append(values)
            headers.append(
                highlevel.make_signal_header(
                    _edf_label(group, vessel),
                    dimension=units,
                    sample_frequency=fs,
                    physical_min=round(lo - pad, 3),
                    physical_max=round(hi + pad, 3),
                    digital_min=-32768,
                    digital_max=32767,
                )
            )
    header = highlevel.make_header(patientname="X", patientcode=node.attrs.get("subject", "X"))
    if "protocol" in node.children:
        p = node["protocol"].to_dataset(inherit=False)
        header["annotations"] = [
            [float(a), float(b) - float(a), str(lab)]
            for lab, a, b in zip(
                p["epoch"].values, p["start"].values, p["stop"].values, strict=True
            )
        ]
    highlevel.write_edf(str(path), signals, headers, header)
    return path
