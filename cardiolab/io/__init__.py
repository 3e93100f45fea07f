"""Readers and writers, one module per format, all returning the one data model.

=========  ============================  =============================================
format     reader                        notes
=========  ============================  =============================================
zarr       :func:`read_zarr_session`     native campaign store (lazy, dask; fsspec URLs)
netcdf     :func:`read_netcdf_session`   native campaign file (h5netcdf)
edf        :func:`read_edf`              EDF/EDF+, BDF/BDF+ (edfio); annotations -> epochs
wfdb       :func:`read_wfdb`             PhysioNet records; ``(label``/``label)`` epochs
csv        :func:`read_csv`              a column per channel; a time column, or a rate
=========  ============================  =============================================

File readers take a channel mapping ``{name in the file: {"group", "units"?,
"vessel"?}}`` (see :mod:`cardiolab.io.channels`) and return a session node whose
groups are in canonical units (ECG mV, ABP mmHg, LDF PU, Doppler cm/s) and whose
samples are dask arrays, read only on compute. Session attributes (subject, session,
phase...) are the catalog's to add. Writers never overwrite an existing file.
"""

from __future__ import annotations

from ..errors import SessionFormatError
from ..paths import is_url
from .csv_export import read_csv, read_csv_protocol, write_csv
from .edf import read_edf, write_edf
from .native import (
    open_campaign_store,
    read_netcdf_session,
    read_zarr_session,
    write_campaign_netcdf,
    write_campaign_zarr,
)
from .wfdb_format import (
    BEAT_SYMBOLS,
    PROTOCOL_EXTENSION,
    read_wfdb,
    read_wfdb_annotations,
    write_wfdb,
)

__all__ = [
    "READERS",
    "BEAT_SYMBOLS",
    "PROTOCOL_EXTENSION",
    "read_session",
    "open_campaign_store",
    "read_zarr_session",
    "read_netcdf_session",
    "read_edf",
    "read_wfdb",
    "read_wfdb_annotations",
    "read_csv",
    "read_csv_protocol",
    "write_campaign_zarr",
    "write_campaign_netcdf",
    "write_edf",
    "write_wfdb",
    "write_csv",
]

#: format name -> reader
READERS = {
    "zarr": read_zarr_session,
    "netcdf": read_netcdf_session,
    "edf": read_edf,
    "wfdb": read_wfdb,
    "csv": read_csv,
}

#: the options each format's reader takes through :func:`read_session`
FORMAT_OPTIONS = {
    "zarr": {"group"},
    "netcdf": {"group"},
    "edf": set(),
    "wfdb": {"annotations"},
    "csv": {"time_column", "time_units", "sampling_rate", "decimal", "separator"},
}


def read_session(path, format, *, channels=None, storage_options=None, indexes=True, **options):
    """Read one session's file with the reader of its format.

    Parameters
    ----------
    path : str or pathlib.Path
        File, record (WFDB: without extension) or store.
    format : {"zarr", "netcdf", "edf", "wfdb", "csv"}
        The file's format.
    channels : mapping, optional
        Channel mapping ``{name: {"group", "units"?, "vessel"?}}``; required for
        edf, wfdb and csv, not used by the native formats.
    storage_options : dict, optional
        fsspec options (zarr stores behind URLs).
    indexes : bool
        Native stores: build the ``time`` indexes (default); ``False`` keeps ``time``
        lazy without an index (see :func:`read_zarr_session`). Other formats build
        their time coordinates in memory either way.
    **options
        Format options: ``group`` (zarr, netcdf: ``"<subject>/<session>"``),
        ``annotations`` (wfdb: annotation extension), ``time_column``,
        ``time_units``, ``sampling_rate`` (Hz), ``decimal`` (``"."`` or ``","``),
        ``separator`` (csv).

    Returns
    -------
    xarray.DataTree
        A session node, dask-backed (session attributes are added by the catalog;
        native stores keep theirs).

    Raises
    ------
    SessionFormatError
        Unknown format or option, a missing ``group``, or whatever the reader raises.
    """
    if format not in READERS:
        raise SessionFormatError(f"{path}: unknown format {format!r} (known: {sorted(READERS)})")
    unknown = sorted(set(options) - FORMAT_OPTIONS[format])
    if unknown:
        raise SessionFormatError(
            f"{path}: option(s) {unknown} do not apply to format {format!r} "
            f"(its options: {sorted(FORMAT_OPTIONS[format]) or 'none'})"
        )
    if format in ("zarr", "netcdf"):
        if channels:
            raise SessionFormatError(
                f"{path}: a channel mapping does not apply to a native {format} store"
            )
        if not options.get("group"):
            raise SessionFormatError(
                f"{path}: a {format} store needs the session 'group' ('<subject>/<session>')"
            )
        if format == "zarr":
            return read_zarr_session(
                path, options["group"], storage_options=storage_options, indexes=indexes
            )
        return read_netcdf_session(path, options["group"], indexes=indexes)
    if is_url(str(path)):
        raise SessionFormatError(
            f"{path}: {format} files are read from local paths only (URLs: zarr stores)"
        )
    return READERS[format](path, channels, **options)
