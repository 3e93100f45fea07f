"""Readers and writers, one module per format, all returning the one data model.

One module per format declares it in the registry (:mod:`cardiolab.io.registry`):
:func:`file_formats` lists them (zarr, netcdf, edf, wfdb, csv, acq, labchart, rr,
beats), :func:`read_session` reads any of them, and ``xr.open_datatree(path,
engine="cardiolab")`` does the same through xarray (:mod:`cardiolab.io.backend`).

File readers take a channel mapping ``{name in the file: {"group", "units"?,
"vessel"?}}`` (see :mod:`cardiolab.io.channels`) and return a session node whose
groups are in canonical units (ECG mV, ABP mmHg, LDF PU, Doppler cm/s) and whose
samples are dask arrays, read only on compute. Session attributes (subject, session,
phase...) are the catalog's to add. Writers never overwrite an existing file.
"""

from __future__ import annotations

from ..errors import SessionFormatError
from ..paths import is_url
from .acq import read_acq
from .beats_export import read_beats
from .csv_export import read_csv, read_csv_protocol, write_csv
from .edf import read_edf, write_edf
from .labchart import read_labchart
from .native import (
    open_campaign_store,
    read_netcdf_session,
    read_zarr_session,
    write_campaign_netcdf,
    write_campaign_zarr,
)
from .registry import FileFormat, FormatOption, file_formats, get_format, register_format
from .remote import local_copy
from .rr import read_rr
from .wfdb_format import (
    BEAT_SYMBOLS,
    PROTOCOL_EXTENSION,
    read_wfdb,
    read_wfdb_annotations,
    write_wfdb,
)

__all__ = [
    "READERS",
    "FileFormat",
    "FormatOption",
    "file_formats",
    "get_format",
    "register_format",
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
    "read_acq",
    "read_labchart",
    "read_rr",
    "read_beats",
    "read_csv_protocol",
    "write_campaign_zarr",
    "write_campaign_netcdf",
    "write_edf",
    "write_wfdb",
    "write_csv",
]

#: format name -> reader, from the registry (every module above registers its formats)
READERS = {fmt.name: fmt.reader for fmt in file_formats()}


def read_session(path, format, *, channels=None, storage_options=None, indexes=True, **options):
    """Read one session's file with the reader of its format.

    Parameters
    ----------
    path : str or pathlib.Path
        File, record (WFDB: without extension) or store.
    format : str
        The file's format: a name in the registry (:func:`file_formats`).
    channels : mapping, optional
        Channel mapping ``{name: {"group", "units"?, "vessel"?}}``; required for
        edf, wfdb and csv, not used by the native formats.
    storage_options : dict, optional
        fsspec options of a URL: zarr stores are read there, files of the other
        formats from a cached local copy (:mod:`cardiolab.io.remote`).
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
    fmt = get_format(format, path)
    unknown = sorted(set(options) - set(fmt.option_names))
    if unknown:
        raise SessionFormatError(
            f"{path}: option(s) {unknown} do not apply to format {format!r} "
            f"(its options: {fmt.option_names or 'none'})"
        )
    if fmt.native:
        if channels:
            raise SessionFormatError(
                f"{path}: a channel mapping does not apply to a native {format} store"
            )
        if not options.get("group"):
            raise SessionFormatError(
                f"{path}: a {format} store needs the session 'group' ('<subject>/<session>')"
            )
        return fmt.reader(path, options["group"], storage_options=storage_options, indexes=indexes)
    if is_url(str(path)):
        # the readers of these formats read local files: a cached local copy
        local = local_copy(str(path), storage_options)
        try:
            return fmt.reader(local, channels if fmt.channels else None, **options)
        except SessionFormatError as err:  # name the URL, not the cache
            raise type(err)(
                str(err).replace(str(local), str(path)),
                violations=[v.replace(str(local), str(path)) for v in err.violations],
            ) from None
    return fmt.reader(path, channels if fmt.channels else None, **options)
