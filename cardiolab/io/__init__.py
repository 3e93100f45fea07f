"""Readers and writers, one module per format, all returning the one data model.

=========  =========================  ==========================================
format     reader                     notes
=========  =========================  ==========================================
zarr       :func:`read_zarr_session`  native campaign store (lazy, dask)
netcdf     :func:`read_netcdf_session` native campaign file (h5netcdf)
edf        :func:`read_edf`           EDF/EDF+; annotations -> protocol epochs
wfdb       :func:`read_wfdb`          PhysioNet records; annotation files
csv        :func:`read_csv`           exports with a time column
=========  =========================  ==========================================
"""

from __future__ import annotations

from ..errors import SessionFormatError
from .csv_export import read_csv, write_csv
from .edf import read_edf, write_edf
from .native import (
    open_campaign_store,
    read_netcdf_session,
    read_zarr_session,
    write_campaign_netcdf,
    write_campaign_zarr,
)
from .wfdb_format import BEAT_SYMBOLS, read_wfdb, read_wfdb_annotations, write_wfdb

__all__ = [
    "READERS",
    "BEAT_SYMBOLS",
    "read_session",
    "open_campaign_store",
    "read_zarr_session",
    "read_netcdf_session",
    "read_edf",
    "read_wfdb",
    "read_wfdb_annotations",
    "read_csv",
    "write_campaign_zarr",
    "write_campaign_netcdf",
    "write_edf",
    "write_wfdb",
    "write_csv",
]

READERS = {
    "zarr": read_zarr_session,
    "netcdf": read_netcdf_session,
    "edf": read_edf,
    "wfdb": read_wfdb,
    "csv": read_csv,
}


def read_session(path, format, *, channels=None, storage_options=None, **options):
    """Read one session's file with the reader of its format.

    Parameters
    ----------
    path : str or pathlib.Path
        File, record or store.
    format : {"zarr", "netcdf", "edf", "wfdb", "csv"}
    channels : mapping, optional
        Channel mapping (not for zarr/netcdf).
    storage_options : dict, optional
        fsspec options (zarr URLs).
    **options
        Format options: ``group`` (zarr/netcdf), ``annotations`` (wfdb),
        ``time_column``, ``time_units`` (csv).

    Returns
    -------
    xarray.DataTree
        A session node (session attributes are added by the catalog).
    """
    if format not in READERS:
        raise SessionFormatError(f"{path}: unknown format {format!r} (known: {sorted(READERS)})")
    if format == "zarr":
        return read_zarr_session(path, options["group"], storage_options=storage_options)
    if format == "netcdf":
        return read_netcdf_session(path, options["group"])
    return READERS[format](path, channels, **options)
