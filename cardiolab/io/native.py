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

A damaged store is an error, never data: a session whose arrays lack chunks (zarr would
read them as the fill value, zeros) is refused on opening (:func:`check_zarr_chunks`),
and a chunk that cannot be decoded is reported, when it is read, with the store, array
and chunk.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

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
from .remote import local_copy

__all__ = [
    "open_campaign_store",
    "read_zarr_session",
    "read_netcdf_session",
    "write_campaign_zarr",
    "write_campaign_netcdf",
    "store_engine",
    "check_zarr_chunks",
    "consolidate_campaign_store",
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
    kwargs: dict = {"chunks": {}}
    target = path
    if is_url(str(path)) and engine != "zarr":
        # netCDF (HDF5) is read from a cached local copy (cardiolab.io.remote)
        target = local_copy(str(path), storage_options)
    if group is not None and engine == "zarr":
        # the group is opened as a store of its own: only its own metadata is read (its
        # consolidated metadata where it has some: consolidate_campaign_store), not the
        # whole campaign's (1.5 MB for the demo's 80 sessions, 0.1-0.4 s to parse, for
        # each session a worker opens)
        target = _group_url(path, group)
        kwargs["consolidated"] = None
        kwargs["zarr_format"] = _zarr_format(path, storage_options)
    if not indexes:
        # time stays a lazy coordinate: no pandas index (a 24-h 1 kHz ECG's would
        # take 0.7 GB, twice while it is built)
        kwargs["create_default_indexes"] = False
    if group is not None and engine != "zarr":
        kwargs["group"] = group
    if storage_options and engine == "zarr":
        kwargs["storage_options"] = dict(storage_options)
    if engine == "zarr":
        # every chunk read names the store, array and chunk it fails on
        kwargs["from_array_kwargs"] = {
            "getitem": functools.partial(
                _checked_getitem, str(path), group or "", _plain_options(storage_options)
            )
        }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        return xr.open_datatree(target, engine=engine, **kwargs)


def _zarr_format(path, storage_options) -> int | None:
    """The zarr format (2 or 3) of a store, from its root metadata (parsed once per
    process, :func:`_root_group`); ``None`` where it cannot be read (the opening then
    says why). Told the format, zarr does not look for the other format's metadata
    files: on object storage, a HEAD and a LIST request for each absent one."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
            return _root_group(str(path), dict(storage_options or {})).metadata.zarr_format
    except Exception:  # zarr and fsspec raise their own kinds
        return None


def _group_url(path, group: str) -> str:
    """The location of a group of a zarr store, to open it as a store of its own."""
    return f"{str(path).rstrip('/')}/{group.strip('/')}"


def _plain_options(storage_options):
    return tuple(sorted((storage_options or {}).items())) or None


def _zarr_arrays(path, group: str, storage_options) -> list[tuple[str, zarr.Array]]:
    """Every array below ``group``, as the store's root metadata lists them (its
    consolidated metadata where it has one: a deleted group or array is still listed
    there), not as the store's listing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        root = _root_group(str(path), dict(storage_options or {}))
        node = root[group] if group else root
        members = node.members(max_depth=None)
    return sorted((name, a) for name, a in members if isinstance(a, zarr.Array))


_ROOT_METADATA = ("zarr.json", ".zmetadata", ".zgroup")


def _root_group(path: str, options: dict) -> zarr.Group:
    """The store's root group with its (consolidated) metadata, parsed once per process
    for each version of the store's root metadata (its size and modification time, or
    its ETag at a URL): every session a worker checks reads that metadata again
    otherwise, 0.1-0.4 s for the demo's 1.5 MB."""
    signature = _metadata_signature(path, options)
    key = (path, json.dumps(options, sort_keys=True, default=str), signature)
    if key not in _ROOTS:
        kwargs = {"storage_options": dict(options)} if options and is_url(path) else {}
        if len(_ROOTS) >= 4:
            _ROOTS.pop(next(iter(_ROOTS)))
        _ROOTS[key] = zarr.open_group(path, mode="r", **kwargs)
    return _ROOTS[key]


_ROOTS: dict = {}


def _metadata_signature(path: str, options: dict) -> tuple:
    """Size and modification time (ETag at a URL) of the store's root metadata files."""
    if not is_url(path):
        out = []
        for name in _ROOT_METADATA:
            try:
                st = (Path(path) / name).stat()
            except OSError:
                continue
            out.append((name, st.st_size, st.st_mtime_ns))
        return tuple(out)
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **options)
    out = []
    for name in _ROOT_METADATA:
        key = f"{root.rstrip('/')}/{name}"
        fs.invalidate_cache(key)  # a listing cached by this process may be stale
        try:
            info = fs.info(key)
        except (OSError, ValueError):
            continue
        out.append((name, info.get("size"), str(info.get("ETag") or info.get("mtime"))))
        if name == "zarr.json":
            # a zarr v3 store: its zarr.json holds the consolidated metadata. Looking
            # for the v2 files too would cost, on object storage, a HEAD and a LIST
            # request for each (an absent object is looked for as a folder)
            break
    return tuple(out)


def check_zarr_chunks(path, group: str, *, storage_options=None) -> None:
    """Check that every chunk of every array of a session group is in a zarr store.

    zarr reads an absent chunk as the array's fill value (0 for cardiolab's int32
    samples, NaN for float64 times), so a store that lost chunks (a copy cut short, a
    deleted folder) would read as a recording padded with zeros. This lists the objects
    below the session group once (one recursive listing: on object storage, one LIST
    request per 1000 objects, whatever the number of arrays) and looks there, for each
    array the store's root metadata lists, for the key of each of its chunks (each
    shard's, for sharded arrays), as the array's metadata encodes it (zarr v3
    ``chunk_key_encoding``, ``c/0/1`` by default; zarr v2 ``dimension_separator``,
    ``0.1``). No chunk is read. :func:`write_campaign_zarr` writes every chunk
    (``write_empty_chunks=True``), so an absent chunk is always a loss.

    Parameters
    ----------
    path : str or pathlib.Path
        The zarr store (folder or fsspec URL).
    group : str
        The session group, ``"<subject>/<session>"``.
    storage_options : dict, optional
        fsspec options for URLs.

    Raises
    ------
    SessionFormatError
        Naming the store, each array with chunks missing, and how many; or the store's
        metadata or listing cannot be read.

    Notes
    -----
    The keys are those of the Zarr storage specifications: version 3, "Chunk key
    encoding" (``default``: ``c`` then the chunk's grid indices joined by ``/``;
    ``v2``: joined by ``.``), and version 2, "Chunks" (``dimension_separator``); each
    array's metadata encodes them (``zarr.Array.metadata.encode_chunk_key``), as
    zarr-python 3 does for :attr:`zarr.Array.nchunks_initialized`. For an array without
    sharding the count is that of ``nchunks_initialized``, which lists the store once
    per array; a sharded array is counted in shards, its stored objects.
    https://zarr-specs.readthedocs.io/en/latest/v3/core/index.html#chunk-key-encoding
    """
    try:
        arrays = _zarr_arrays(path, group, storage_options)
        stored = _stored_keys(path, group, storage_options)
    except Exception as err:  # zarr and fsspec raise their own kinds
        raise SessionFormatError(f"{path}: cannot list session group {group!r} ({err})") from None
    missing = []
    for name, arr in arrays:
        unit = "shards" if arr.shards else "chunks"
        grid = [range(-(-n // c)) for n, c in zip(arr.shape, arr.shards or arr.chunks, strict=True)]
        keys = [f"{name}/{arr.metadata.encode_chunk_key(i)}" for i in itertools.product(*grid)]
        present = sum(key in stored for key in keys)
        if present < len(keys):
            missing.append(f"array '{group}/{name}' has {present} of its {len(keys)} {unit}")
    if missing:
        raise SessionFormatError(
            f"{path}: chunks missing from the zarr store (zarr would read them as zeros "
            "or NaN): " + "; ".join(missing),
            violations=[f"{path}: {m}" for m in missing],
        )


def _stored_keys(path, group: str, storage_options) -> frozenset[str]:
    """The keys of every object below ``group`` of a zarr store, relative to the group,
    from one recursive listing (fsspec ``find``) of a local folder or a URL. At a URL
    nothing is taken from, or left in, fsspec's listings cache (``use_listings_cache``):
    each check sees the store as it is."""
    import fsspec

    url = _group_url(path, group)
    options = {**(storage_options or {}), "use_listings_cache": False} if is_url(url) else {}
    fs, prefix = fsspec.core.url_to_fs(url, **options)
    prefix = prefix.rstrip("/") + "/"
    return frozenset(
        name.removeprefix(prefix) for name in fs.find(prefix) if name.startswith(prefix)
    )


def _checked_getitem(path: str, group: str, storage_options, array, key, **_):
    """Read one block of a native store's array (dask's ``from_array(getitem=...)``;
    the options dask may pass, ``asarray`` and ``lock``, do not apply); name the store,
    array and chunk of a chunk that cannot be read or decoded (a damaged copy: "error
    during blosc decompression")."""
    try:
        return np.asarray(array[key])
    except Exception as err:
        where = _failing_chunk(path, group, storage_options, np.shape(array), key)
        raise SessionFormatError(
            f"{path}: {where} cannot be read ({type(err).__name__}: {err}); the store is "
            "damaged: copy it again from its source"
        ) from None


def _failing_chunk(path, group, storage_options, shape, key) -> str:
    """Which array and chunk of ``group`` the block ``key`` (slices) fails on."""
    key = key if isinstance(key, tuple) else (key,)
    starts = tuple((k.start or 0) if isinstance(k, slice) else int(k) for k in key)
    try:
        arrays = _zarr_arrays(path, group, dict(storage_options or ()))
    except Exception:
        arrays = []
    for name, arr in arrays:
        if arr.shape != tuple(shape) or len(starts) != arr.ndim:
            continue
        index = tuple(s // c for s, c in zip(starts, arr.chunks, strict=True))
        sel = tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(index, arr.chunks, arr.shape, strict=True)
        )
        try:
            arr[sel]
        except Exception:
            return f"array '{f'{group}/{name}'.strip('/')}', chunk {'.'.join(map(str, index))}"
    return f"a chunk of session group {group!r} at {starts}"


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
        No such store, or no such group (the message lists the store's sessions);
        chunks missing from the store (:func:`check_zarr_chunks`, checked on opening);
        a chunk that cannot be read or decoded (raised when it is computed, naming the
        store, array and chunk).
    """
    node = _read_session(path, group, "zarr", storage_options, indexes)
    check_zarr_chunks(path, str(group).strip("/"), storage_options=storage_options)
    return node


def read_netcdf_session(
    path, group: str, *, storage_options=None, indexes: bool = True
) -> xr.DataTree:
    """One session node of a netCDF campaign file (h5netcdf), lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The file: a local path, or an fsspec URL (read from a cached local copy,
        :func:`cardiolab.io.remote.local_copy`).
    group : str
        ``"<subject>/<session>"``.
    storage_options : dict, optional
        fsspec options of a URL.
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
    return _read_session(path, group, "h5netcdf", storage_options, indexes=indexes)


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
            # every chunk is written, all-zero ones too: an absent chunk is a loss
            # (check_zarr_chunks)
            write_empty_chunks=True,
        )
    except FileExistsError:
        raise CardiolabError(f"{path} exists; pass overwrite=True to replace it") from None
    consolidate_campaign_store(path)
    log.debug("wrote zarr campaign store %s", path)
    return path if is_url(str(path)) else Path(path)


def consolidate_campaign_store(path, *, storage_options=None) -> None:
    """Consolidate a zarr campaign store's metadata: each session group's and the root's.

    A session group's consolidated metadata lets :func:`read_zarr_session` open it with
    one read (on object storage, one request instead of one per group and array); the
    root's lets a reader list the whole campaign at once. :func:`write_campaign_zarr`
    and the simulator call this; call it again after changing a store with other tools
    (stale consolidated metadata hides what was added).

    Parameters
    ----------
    path : str or pathlib.Path
        The store (folder or fsspec URL).
    storage_options : dict, optional
        fsspec options for URLs.
    """
    kwargs = {"storage_options": dict(storage_options)} if storage_options else {}
    if not is_url(str(path)):
        kwargs = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False, **kwargs)
        for subject, node in root.groups():
            for session, _ in node.groups():
                zarr.consolidate_metadata(root.store, path=f"{subject}/{session}")
        zarr.consolidate_metadata(root.store)


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
