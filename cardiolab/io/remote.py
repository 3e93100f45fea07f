"""Raw files at URLs (``s3://``, ``gs://``, ``az://``, ``https://``): local copies for
the readers that need a file.

EDF, WFDB, CSV, BIOPAC and LabChart readers (pyedflib, wfdb, bioread, pandas) read
local files; the native zarr store reads URLs itself. A file-based session at a URL is
copied to a local cache with fsspec's ``filecache`` (one copy per object and version:
fsspec compares the object's ETag, or size and time, with the cached copy's before it
is used again), and read from there. A WFDB record named without extension
(``s3://bucket/mitdb/100``) brings every object ``100.<extension>`` beside it, as for a
local record.

The cache is ``$CARDIOLAB_CACHE`` (default ``~/.cache/cardiolab``), under ``raw/``; it
may be deleted at any time (files are copied again when next read).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SessionFormatError

__all__ = ["cache_folder", "local_copy", "remote_objects"]


def cache_folder() -> Path:
    """Where local copies of remote raw files are kept (``$CARDIOLAB_CACHE/raw``,
    default ``~/.cache/cardiolab/raw``)."""
    root = os.environ.get("CARDIOLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cardiolab"
    )
    return Path(root) / "raw"


def remote_objects(url: str, storage_options=None) -> list[str]:
    """The objects that hold a remote raw input: the object itself, or where ``url``
    names a record (WFDB ``.../100``), every object ``<url>.<extension>``.

    Parameters
    ----------
    url : str
        fsspec URL of a file or record.
    storage_options : dict, optional
        fsspec options (endpoint, credentials).

    Returns
    -------
    list of str
        Full URLs, sorted; empty when nothing is there.

    Raises
    ------
    SessionFormatError
        The location cannot be listed (no such bucket, no access, no network), naming
        the URL and the cause.
    """
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        fs.invalidate_cache(path)  # another process may have changed it
        if fs.isfile(path):
            found = [path]
        else:
            found = sorted(p for p in fs.glob(path + ".*") if fs.isfile(p))
    except Exception as err:  # fsspec backends raise their own kinds
        raise SessionFormatError(f"{url}: cannot list it ({type(err).__name__}: {err})") from None
    protocol = url.split("://", 1)[0]
    return [p if "://" in p else f"{protocol}://{p}" for p in found]


def local_copy(url: str, storage_options=None) -> Path:
    """A local copy of a remote raw file or record, for the readers of local files.

    Parameters
    ----------
    url : str
        fsspec URL of a file, or of a record without extension (its objects
        ``<url>.<extension>`` are all copied, side by side).
    storage_options : dict, optional
        fsspec options of the URL's protocol.

    Returns
    -------
    pathlib.Path
        The path to give the reader: the copied file, or the record's path without
        extension in the cache folder (:func:`cache_folder`).

    Raises
    ------
    SessionFormatError
        Nothing at the URL, or it cannot be copied, naming the URL.
    """
    import fsspec

    objects = remote_objects(url, storage_options)
    if not objects:
        raise SessionFormatError(f"{url}: no such file or record (nothing at this URL)")
    protocol = url.split("://", 1)[0]
    cache = cache_folder()
    cache.mkdir(parents=True, exist_ok=True)
    local = []
    for obj in objects:
        try:
            local.append(
                fsspec.open_local(
                    f"filecache::{obj}",
                    filecache={"cache_storage": str(cache), "check_files": True},
                    **{protocol: dict(storage_options or {})},
                )
            )
        except Exception as err:  # fsspec backends raise their own kinds
            raise SessionFormatError(
                f"{obj}: cannot copy it for reading ({type(err).__name__}: {err})"
            ) from None
    if len(objects) == 1 and objects[0].rstrip("/") == url.rstrip("/"):
        return Path(local[0])
    # a record: fsspec names each copy by a hash of its URL; the reader needs the
    # record's files side by side under their own names
    return _side_by_side(url, objects, [Path(p) for p in local], cache)


def _side_by_side(url: str, objects: list[str], copies: list[Path], cache: Path) -> Path:
    """Hard links (else copies) of a record's cached files under their own names, in a
    folder of their own; returns the record's path there (without extension)."""
    import hashlib
    import shutil

    folder = cache / "records" / hashlib.sha256(url.encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    for obj, copy in zip(objects, copies, strict=True):
        target = folder / obj.rsplit("/", 1)[-1]
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            os.link(copy, tmp)
        except OSError:
            shutil.copyfile(copy, tmp)
        os.replace(tmp, target)  # atomic: a concurrent reader sees the old or new file
    return folder / url.rstrip("/").rsplit("/", 1)[-1]
