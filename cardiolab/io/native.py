"""The native formats: zarr (and netCDF) campaign stores ``/<subject>/<session>/<group>``."""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

from ..encoding import zarr_encoding
from ..errors import CardiolabError, SessionFormatError
from ..paths import is_url

__all__ = [
    "open_campaign_store",
    "read_zarr_session",
    "read_netcdf_session",
    "write_campaign_zarr",
    "write_campaign_netcdf",
]


def _missing(path, storage_options=None) -> bool:
    if is_url(str(path)):
        return False
    return not Path(path).exists()


def open_campaign_store(path, *, storage_options=None) -> xr.DataTree:
    """Open a native campaign store lazily (dask-backed; no sample is read).

    Parameters
    ----------
    path : str or pathlib.Path
        A zarr store (folder or fsspec URL) or a netCDF file (``.nc``).
    storage_options : dict, optional
        fsspec options for URLs (``s3://…``).
    """
    if _missing(path):
        raise SessionFormatError(f"{path}: native store not found")
    engine = "h5netcdf" if str(path).endswith((".nc", ".nc4", ".h5")) else "zarr"
    kwargs = {"chunks": {}}
    if engine == "zarr" and storage_options:
        kwargs["storage_options"] = storage_options
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
            return xr.open_datatree(path, engine=engine, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise SessionFormatError(
            f"{path}: not a readable {engine} campaign store ({err})"
        ) from None


def _session(tree: xr.DataTree, path, group: str) -> xr.DataTree:
    try:
        node = tree[group.strip("/")]
    except KeyError:
        listing = ", ".join(f"{s}/{ses}" for s in tree.children for ses in tree[s].children)
        raise SessionFormatError(
            f"{path}: no session group {group!r} (the store has: {listing or 'nothing'})"
        ) from None
    return node.copy()


def read_zarr_session(path, group: str, *, storage_options=None) -> xr.DataTree:
    """One session node of a zarr campaign store, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The store.
    group : str
        ``"<subject>/<session>"``.
    """
    return _session(open_campaign_store(path, storage_options=storage_options), path, group)


def read_netcdf_session(path, group: str) -> xr.DataTree:
    """One session node of a netCDF campaign file, lazily."""
    return _session(open_campaign_store(path), path, group)


def _encoding(tree: xr.DataTree) -> dict:
    enc = {}
    for node in tree.subtree:
        if node.has_data:
            enc[node.path] = zarr_encoding(node.to_dataset(inherit=False), node.name)
    return enc


def write_campaign_zarr(tree: xr.DataTree, path, *, overwrite: bool = False) -> Path:
    """Write a campaign (or session) tree as a native zarr store.

    Samples are stored as int32 counts of :data:`cardiolab.encoding.STORAGE_RESOLUTION`.
    An existing store is refused unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CardiolabError(f"{path} exists; pass overwrite=True to replace it")
    tree.to_zarr(path, mode="w" if overwrite else "w-", encoding=_encoding(tree), consolidated=True)
    return path


def write_campaign_netcdf(tree: xr.DataTree, path, *, overwrite: bool = False) -> Path:
    """Write a campaign tree as one netCDF-4 file (h5netcdf)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CardiolabError(f"{path} exists; pass overwrite=True to replace it")
    tree.to_netcdf(path, engine="h5netcdf", mode="w")
    return path
