"""The native formats: zarr and netCDF campaign stores ``/<subject>/<session>/<group>``.

A store holds a campaign :class:`xarray.DataTree` as the data model defines it: session
attributes on the session nodes, one group per raw group. Opening is lazy
(``chunks={}``: dask arrays over the stored chunks), and zarr stores may sit behind an
fsspec URL (``s3://...``; ``storage_options`` go to fsspec).

Zarr stores written by :func:`write_campaign_zarr` hold samples as int32 counts of
:data:`cardiolab.encoding.STORAGE_RESOLUTION` (0.001 in each group's canonical unit)
and time as int32 sample indices: a round trip returns each sample rounded to that
resolution (within 0.0005) and the time coordinate exactly. netCDF files written by
:func:`write_campaign_netcdf` keep float64 as is.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import xarray as xr

from ..encoding import variable_length_strings, zarr_encoding
from ..errors import CardiolabError, SessionFormatError
from ..paths import is_url
from .registry import (
    FileFormat,
    FormatOption,
    directory_tree,
    nonempty_text,
    register_format,
    single_file,
)

__all__ = [
    "open_campaign_store",
    "read_zarr_session",
    "read_netcdf_session",
    "write_campaign_zarr",
    "write_campaign_netcdf",
    "store_engine",
]

log = logging.getLogger("cardiolab")

_NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".netcdf")


def store_engine(path) -> str:
    """``"h5netcdf"`` for netCDF files (``.nc``, ``.nc4``, ``.h5``), else ``"zarr"``."""
    return "h5netcdf" if str(path).lower().endswith(_NETCDF_SUFFIXES) else "zarr"


def _open(
    path, engine: str, group: str | None = None, storage_options=None, indexes: bool = True
) -> xr.DataTree:
    if not is_url(str(path)) and not Path(path).exists():
        raise SessionFormatError(f"{path}: native store not found")
    if is_url(str(path)) and engine != "zarr":
        raise SessionFormatError(
            f"{path}: fsspec URLs are supported for zarr stores only, not {engine} files"
        )
    kwargs: dict = {"chunks": {}}
    if not indexes:
        # time stays a lazy coordinate: no pandas index (a 24-h 1 kHz ECG's would
        # take 0.7 GB, twice while it is built)
        kwargs["create_default_indexes"] = False
    if group is not None:
        kwargs["group"] = group
    if storage_options and engine == "zarr":
        kwargs["storage_options"] = dict(storage_options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        return xr.open_datatree(path, engine=engine, **kwargs)


def open_campaign_store(path, *, storage_options=None) -> xr.DataTree:
    """Open a whole native campaign store lazily (dask-backed; no sample is read).

    Parameters
    ----------
    path : str or pathlib.Path
        A zarr store (folder or fsspec URL) or a netCDF file (``.nc``).
    storage_options : dict, optional
        fsspec options for URLs (``s3://...``).

    Returns
    -------
    xarray.DataTree
        The campaign ``/<subject>/<session>/<group>``.

    Raises
    ------
    SessionFormatError
        The store is missing or not a readable store.
    """
    engine = store_engine(path)
    try:
        return _open(path, engine, storage_options=storage_options)
    except SessionFormatError:
        raise
    except Exception as err:  # zarr, h5py and fsspec raise their own kinds
        raise SessionFormatError(
            f"{path}: not a readable {engine} campaign store ({err})"
        ) from None


def _read_session(
    path, group: str, engine: str, storage_options=None, indexes: bool = True
) -> xr.DataTree:
    key = str(group).strip("/")
    if not key:
        raise SessionFormatError(f"{path}: no session group given ('<subject>/<session>')")
    try:
        return _open(path, engine, group=key, storage_options=storage_options, indexes=indexes)
    except SessionFormatError:
        raise
    except Exception as err:
        first = err
    # the group could not be opened alone: open the store to say why
    tree = open_campaign_store(path, storage_options=storage_options)
    if key in tree:
        raise SessionFormatError(f"{path}: cannot open session group {key!r} ({first})")
    listing = ", ".join(
        f"{subject}/{session}" for subject in tree.children for session in tree[subject].children
    )
    raise SessionFormatError(
        f"{path}: no session group {key!r} (the store has: {listing or 'no sessions'})"
    )


def read_zarr_session(
    path, group: str, *, storage_options=None, indexes: bool = True
) -> xr.DataTree:
    """One session node of a zarr campaign store, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The store (folder or fsspec URL).
    group : str
        ``"<subject>/<session>"``, e.g. ``"S01/L-60"``.
    storage_options : dict, optional
        fsspec options for URLs.
    indexes : bool
        Build the ``time`` indexes (default). ``False`` leaves ``time`` a lazy
        coordinate without an index: positional ``isel`` only, no ``sel``; for batch
        processing of long recordings, where the index would cost 8 bytes a sample.

    Returns
    -------
    xarray.DataTree
        The session node (a root; its attributes as stored), dask-backed.

    Raises
    ------
    SessionFormatError
        No such store, or no such group (the message lists the store's sessions).
    """
    return _read_session(path, group, "zarr", storage_options, indexes)


def read_netcdf_session(
    path, group: str, *, storage_options=None, indexes: bool = True
) -> xr.DataTree:
    """One session node of a netCDF campaign file (h5netcdf), lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (a local path).
    group : str
        ``"<subject>/<session>"``.
    storage_options : dict, optional
        Accepted for the native readers' common signature; a netCDF file is local.
    indexes : bool
        Build the ``time`` indexes (default), as :func:`read_zarr_session`.

    Returns
    -------
    xarray.DataTree
        The session node, dask-backed.

    Raises
    ------
    SessionFormatError
        No such file, or no such group (the message lists the file's sessions).
    """
    return _read_session(path, group, "h5netcdf", indexes=indexes)


def _encoding(tree: xr.DataTree) -> dict:
    return {
        node.path: zarr_encoding(node.to_dataset(inherit=False), node.name)
        for node in tree.subtree
        if node.has_data
    }


def _refuse_existing(path, overwrite: bool) -> None:
    if not overwrite and not is_url(str(path)) and Path(path).exists():
        raise CardiolabError(f"{path} exists; pass overwrite=True to replace it")


def write_campaign_zarr(tree: xr.DataTree, path, *, overwrite: bool = False):
    """Write a campaign (or session) tree as a native zarr store.

    Parameters
    ----------
    tree : xarray.DataTree
        ``/<subject>/<session>/<group>``.
    path : str or pathlib.Path
        The store to create (a folder, or an fsspec URL).
    overwrite : bool
        Replace an existing store; otherwise an existing store is refused.

    Returns
    -------
    pathlib.Path or str
        The store.

    Raises
    ------
    CardiolabError
        The store exists and ``overwrite`` is false.

    Notes
    -----
    Samples are stored as int32 counts of
    :data:`cardiolab.encoding.STORAGE_RESOLUTION` (0.001 in the canonical unit; a
    round trip is exact to within half of it), time as int32 sample indices (exact).
    """
    _refuse_existing(path, overwrite)
    tree = tree.map_over_datasets(variable_length_strings)
    try:
        tree.to_zarr(
            str(path) if is_url(str(path)) else Path(path),
            mode="w" if overwrite else "w-",
            encoding=_encoding(tree),
            consolidated=True,
        )
    except FileExistsError:
        raise CardiolabError(f"{path} exists; pass overwrite=True to replace it") from None
    log.debug("wrote zarr campaign store %s", path)
    return path if is_url(str(path)) else Path(path)


def write_campaign_netcdf(tree: xr.DataTree, path, *, overwrite: bool = False) -> Path:
    """Write a campaign (or session) tree as one netCDF-4 file (h5netcdf).

    Parameters
    ----------
    tree : xarray.DataTree
        ``/<subject>/<session>/<group>``.
    path : str or pathlib.Path
        The file to create.
    overwrite : bool
        Replace an existing file; otherwise an existing file is refused.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CardiolabError
        The file exists and ``overwrite`` is false.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    tree.to_netcdf(path, engine="h5netcdf", mode="w")
    log.debug("wrote netCDF campaign file %s", path)
    return path


_GROUP = FormatOption(
    "group", nonempty_text, "the session's group in the store: '<subject>/<session>'"
)
ZARR = register_format(
    FileFormat(
        name="zarr",
        reader=read_zarr_session,
        description="cardiolab's native campaign store (zarr; lazy, dask; fsspec URLs)",
        suffixes=(".zarr",),
        options=(_GROUP,),
        channels=False,
        native=True,
        raw_files=directory_tree,
    )
)
NETCDF = register_format(
    FileFormat(
        name="netcdf",
        reader=read_netcdf_session,
        description="cardiolab's native campaign file (netCDF-4, h5netcdf)",
        suffixes=_NETCDF_SUFFIXES,
        options=(_GROUP,),
        channels=False,
        native=True,
        raw_files=single_file,
    )
)
