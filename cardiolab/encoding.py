"""On-disk encoding of the data model in zarr: integer samples with a stated resolution.

Signals are stored as int32 counts of a fixed resolution (1 µV, 0.001 mmHg,
0.001 PU, 0.001 cm/s; respiration, in its recorded unit, as float32), far finer than any of these instruments resolves; xarray
decodes them back to float on reading, so the rounding error is at most half the
resolution. Time is stored as it is (float64 seconds): bit-shuffled, a regular time
axis compresses about 20-fold, and reading it needs no decoding copy (which for a
24-hour 1 kHz ECG would cost another 0.35 GB at opening). Everything is compressed
with Blosc (zstd, bit-shuffle). Text (epoch labels, vessel names) is stored as
variable-length UTF-8, the string type that the zarr v3 specification defines; NumPy's
fixed-width unicode has no zarr v3 specification (zarr warns that such arrays may
become unreadable), so it is never written.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
import zarr

from .schema import RAW_GROUPS

__all__ = [
    "STORAGE_RESOLUTION",
    "compressor",
    "variable_length_strings",
    "zarr_encoding",
]

#: Resolution of stored samples, in each group's canonical unit. ``resp`` keeps the unit
#: it was recorded in (V, L, arbitrary units), so no one resolution fits it: it is
#: stored as float32 (7 significant digits, far finer than any belt or spirometer).
STORAGE_RESOLUTION = {"ecg": 1e-3, "abp": 1e-3, "ldf": 1e-3, "doppler": 1e-3}

_FILL = int(np.iinfo(np.int32).min)


def compressor():
    """The Blosc codec used for every stored array."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """A copy of ``ds`` whose fixed-width unicode variables hold Python strings.

    xarray writes object-dtype text as zarr's variable-length UTF-8 strings (in the
    zarr v3 specification); fixed-width ``<U`` arrays would be written as a data type
    that zarr v3 does not specify. Values are unchanged; ``ds`` is not modified.

    Parameters
    ----------
    ds : xarray.Dataset

    Returns
    -------
    xarray.Dataset
    """
    text = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    if not text:
        return ds
    out = ds.copy()
    for name in text:
        var = ds.variables[name]
        out[name] = var.copy(data=np.asarray(var.values, dtype=object))
    return out


def zarr_encoding(ds: xr.Dataset, group: str | None = None) -> dict:
    """Encoding for writing one group of the data model to zarr.

    Parameters
    ----------
    ds : xarray.Dataset
        A raw group (``ecg``, ``abp``, ``ldf``, ``doppler``) or any other Dataset.
    group : str, optional
        The group's name; other groups only get compression.

    Returns
    -------
    dict
        ``{variable: encoding}`` for :meth:`xarray.Dataset.to_zarr`.
    """
    enc = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "fiub":
            enc[name] = {"compressors": [compressor()]}
    spec = RAW_GROUPS.get(group) if group else None
    if spec is not None and spec.variable in ds and group not in STORAGE_RESOLUTION:
        enc[spec.variable] = {"dtype": "float32", "compressors": [compressor()]}
    elif spec is not None and spec.variable in ds:
        enc[spec.variable] = {
            "dtype": "int32",
            "scale_factor": STORAGE_RESOLUTION[group],
            "_FillValue": _FILL,
            "compressors": [compressor()],
        }
    return enc
