"""On-disk encoding of the data model in zarr: integer samples with a stated resolution.

Signals are stored as int32 counts of a fixed resolution (1 µV, 0.001 mmHg,
0.001 PU, 0.001 cm/s), far finer than any of these instruments resolves, and time
as int32 sample indices with ``scale_factor = 1 / sampling_rate``; both compressed
with Blosc (zstd, bit-shuffle). xarray decodes them back to float on reading, so the
rounding error is at most half the resolution and the time coordinate is exact.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
import zarr

from .schema import RAW_GROUPS

__all__ = ["STORAGE_RESOLUTION", "zarr_encoding", "compressor"]

#: Resolution of stored samples, in each group's canonical unit.
STORAGE_RESOLUTION = {"ecg": 1e-3, "abp": 1e-3, "ldf": 1e-3, "doppler": 1e-3}

_FILL = int(np.iinfo(np.int32).min)


def compressor():
    """The Blosc codec used for every stored array."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


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
    rate = ds.attrs.get("sampling_rate")
    if "time" in ds.coords and rate:
        enc["time"] = {
            "dtype": "int32",
            "scale_factor": 1.0 / float(rate),
            "_FillValue": _FILL,
            "compressors": [compressor()],
        }
    spec = RAW_GROUPS.get(group) if group else None
    if spec is not None and spec.variable in ds:
        enc[spec.variable] = {
            "dtype": "int32",
            "scale_factor": STORAGE_RESOLUTION[group],
            "_FillValue": _FILL,
            "compressors": [compressor()],
        }
    return enc
