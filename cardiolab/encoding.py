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
    "TABLE_DIM",
    "compressor",
    "stack_table",
    "unstack_table",
    "variable_length_strings",
    "zarr_encoding",
]

#: The column dimension of a stacked table (:func:`stack_table`).
TABLE_DIM = "quantity"
_TABLE_ATTRS = ("units", "long_name", "feature")

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


def stack_table(ds: xr.Dataset) -> xr.Dataset:
    """A one-dimensional Dataset of float variables as one 2-D array, for storage.

    A session's features (dim ``epoch``) or challenge responses (dim ``response``)
    are some hundred small variables; written one zarr array each, they cost a few
    milliseconds each to create (most of a session's write time). Stacked, they are
    one array ``value`` (row, ``quantity``) with the variables' names, ``units``,
    ``long_name`` and declaring ``feature`` as coordinates along ``quantity``; xarray,
    pandas (``value.to_pandas()``) or any zarr reader read it without cardiolab.

    Parameters
    ----------
    ds : xarray.Dataset
        Variables all on the same single dimension (the rows), numeric.

    Returns
    -------
    xarray.Dataset
        ``value`` (row, quantity) float64, the row coordinates of ``ds``, ``quantity``
        and its ``units``, ``long_name``, ``feature`` coordinates (``""`` where a
        variable had none); ``ds.attrs``. ``ds`` is not modified.

    Raises
    ------
    ValueError
        If the variables are not all on one and the same dimension.
    """
    names = list(ds.data_vars)
    variables = [ds.variables[n] for n in names]  # Variables: no DataArray per name
    dims = {v.dims for v in variables}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"stack_table: variables must share one dimension, got {sorted(dims)}")
    (row,) = next(iter(dims))
    values = np.column_stack([np.asarray(v.values, dtype=float) for v in variables])
    coords = {k: v for k, v in ds.coords.items()}
    coords[TABLE_DIM] = np.asarray(names, dtype=object)
    for key in _TABLE_ATTRS:
        coords[key] = (
            TABLE_DIM,
            np.asarray([str(v.attrs.get(key, "")) for v in variables], dtype=object),
        )
    out = xr.Dataset({"value": ((row, TABLE_DIM), values)}, coords=coords, attrs=dict(ds.attrs))
    return variable_length_strings(out)


def unstack_table(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset :func:`stack_table` stacked: one variable per ``quantity``.

    A Dataset without a ``value`` (row, quantity) array is returned as it is (the
    one-array-per-variable layout of earlier derived stores).
    """
    if "value" not in ds or TABLE_DIM not in ds["value"].dims:
        return ds
    value = ds["value"]
    (row,) = [d for d in value.dims if d != TABLE_DIM]
    names = [str(n) for n in ds[TABLE_DIM].values]
    meta = {k: [str(x) for x in ds[k].values] for k in _TABLE_ATTRS if k in ds.coords}
    rows = ds.drop_vars(["value", TABLE_DIM, *meta], errors="ignore")
    data = {}
    for i, name in enumerate(names):
        attrs = {k: meta[k][i] for k in meta if meta[k][i] != ""}
        data[name] = (row, np.asarray(value.values[:, i]), attrs)
    return xr.Dataset(data, coords=rows.coords, attrs=dict(ds.attrs))


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
