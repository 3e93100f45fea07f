"""The derived store: every result cardiolab writes, on any fsspec file system.

One class, :class:`DerivedStore`, reads and writes everything that goes to the derived
store named in a catalog (``derived:``): the processed sessions (beat table, per-epoch
features, challenge responses and their provenance), the outcome of each session's last
run, the per-session leases that keep two runs from computing a session twice, the
reviewers' audit trails and the model results of :func:`cardiolab.stats.fit_all`. It
takes a local folder or any fsspec URL (``s3://bucket/derived``, ``gs://``, ``az://``,
``memory://``) with its ``storage_options``, and works the same on each; nothing else in
cardiolab touches the store's objects.

Layout (store format 2)
-----------------------
::

    <root>/cardiolab-derived.json               the store's format and version
    <root>/<subject>/<session>/session.json     the session's manifest (commit object)
    <root>/<subject>/<session>/v-<id>/beats.parquet       dim beat
    <root>/<subject>/<session>/v-<id>/features.parquet    dim epoch
    <root>/<subject>/<session>/v-<id>/responses.parquet   dim response (challenges)
    <root>/<subject>/<session>/v-<id>/detector.parquet    the detector's beats, kept
                                                          while reviewer beat edits apply
    <root>/_runs/<subject>/<session>.json       the session's last run outcome
    <root>/_leases/<subject>/<session>.json     held while a run computes the session
    <root>/_annotations/<subject>/<session>/e000001.json  review event 1, 2, ... (hash-chained)
    <root>/stats/results.parquet                fit_all's results table

A processed session is 4 objects (3 tables and the manifest), plus its run record and a
lease created and deleted while it is computed: 6 objects written per session.

Why Parquet. Each table is one object, so a session costs a handful of requests on
object storage (the zarr layout of format 1 wrote some 100 objects per session, one
small array each), and Parquet is read without cardiolab by pandas
(``pandas.read_parquet``), pyarrow, polars, DuckDB, Spark or R's arrow. Its types (float64,
int64, bool, UTF-8 strings) are all in the Parquet specification. A beat-table variable
with a second dimension (``psv`` per ``vessel``) is one column per coordinate value,
named ``psv[femoral]``. The file's key-value metadata ``cardiolab`` holds a JSON text
with every variable's ``units`` and ``long_name`` and what rebuilds the exact
``xarray.Dataset`` (dims, coordinates, attributes), which :meth:`DerivedStore.read_session`
does.

Atomic publication. A session is written under a fresh prefix ``v-<id>``, then published by
writing its manifest ``session.json``, one small object naming the prefix (one PUT on
object storage, write-aside and ``os.replace`` on a local disk). Readers read the manifest
first, so they see the old session or the new one, never half of one; a run killed at any
point leaves at most an unpublished prefix, which the next write of the session deletes
(with the prefix the new manifest replaced).

Concurrency. Run records are one object per session (no read-modify-write of a shared
object, so two runs never lose each other's records). A run takes a session's lease
before computing it: an object created only if absent (``open(mode="xb")``: ``O_EXCL`` on
a local disk, a conditional PUT ``If-None-Match: *`` on S3), checked by reading it back;
a lease whose expiry has passed (a killed run), or taken on this machine by a process
that no longer exists, is taken over. Review events are also
created only if absent, so two reviewers never overwrite each other's event.

Format 1 stores (zarr groups, cardiolab before this layout) are recognised and refused
with :class:`cardiolab.errors.CardiolabError` naming the command that rewrites them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr
from fsspec.implementations.local import LocalFileSystem

from . import __version__
from .errors import CardiolabError

__all__ = [
    "LEASE_TTL_S",
    "SESSION_TABLES",
    "STORE_FORMAT",
    "TRAIL_GROUP",
    "DerivedStore",
    "Lease",
    "dataset_to_arrow",
    "arrow_to_dataset",
    "as_store",
    "derived_store",
    "describe_lease",
    "event_hash",
]

log = logging.getLogger("cardiolab")

#: Version of the store's layout (root object ``cardiolab-derived.json``).
STORE_FORMAT = 2
#: The tables of a processed session, each one Parquet object.
SESSION_TABLES = ("beats", "features", "responses")
#: Folder of the store that holds the reviewers' audit trails.
TRAIL_GROUP = "_annotations"
#: Default lifetime (s) of a session lease: a run killed while it held the lease blocks
#: the session for at most this long (a run on another machine; on the same machine, a
#: lease whose process is gone is taken over at once).
LEASE_TTL_S = 3600.0

_MARKER = "cardiolab-derived.json"
_MANIFEST = "session.json"
_PREFIX = re.compile(r"^v-[0-9a-f]{32}$")
_EVENT = re.compile(r"^e(\d{6,})\.json$")
_RUNS = "_runs"
_LEASES = "_leases"
_STATS = "stats"
_META_KEY = b"cardiolab"


# --- xarray tables <-> Arrow ------------------------------------------------------------


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default)


#: The keys of a stored review event that chain it to the trail (not hashed as content).
EVENT_HASH_KEY = "hash"
EVENT_PREVIOUS_KEY = "previous_hash"


def event_hash(event: dict) -> str:
    """SHA-256 (hex) of a review event's canonical JSON, without its own ``hash`` key.

    The canonical form is RFC 8785-like: keys sorted, no insignificant whitespace,
    UTF-8 (``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
    An event's ``previous_hash`` is part of what is hashed, so each event's hash
    covers the whole trail before it (a hash chain, as in Haber & Stornetta 1991,
    "How to time-stamp a digital document"): changing any stored event changes its
    hash, which no longer matches the ``hash`` it stores nor the ``previous_hash``
    the next event stores.

    Parameters
    ----------
    event : dict
        A stored event (JSON types only).

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> event_hash({"action": "flag", "beats": [3]})[:12]
    '2f3f91f4061a'
    """
    content = {k: v for k, v in event.items() if k != EVENT_HASH_KEY}
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _column(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in "OUT":
        return pa.array(np.asarray(values, dtype=object), type=pa.string())
    return pa.array(values)


def dataset_to_arrow(ds: xr.Dataset) -> pa.Table:
    """A one-table Dataset (one row dimension) as an Arrow table, losslessly.

    Each variable on the row dimension is a column; a variable with one more dimension
    (``psv`` on ``beat`` x ``vessel``) is one column per value of that dimension, named
    ``psv[femoral]``. Schema metadata ``cardiolab``: JSON with the row dimension, the
    Dataset's attrs, each variable's dims, attrs (``units``, ``long_name``...), dtype and
    columns, and the coordinates not on the row dimension, from which
    :func:`arrow_to_dataset` rebuilds ``ds``. (Field metadata ``units`` and
    ``long_name`` too, for Arrow IPC; Parquet files are written without it.)

    Parameters
    ----------
    ds : xarray.Dataset
        Every variable has the row dimension first (the first data variable's first
        dimension) and at most one other dimension.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    ValueError
        A variable with more than two dimensions, or not on the row dimension.
    """
    names = list(ds.data_vars) or list(ds.coords)
    row = ds[names[0]].dims[0] if names and ds[names[0]].dims else next(iter(ds.dims), "row")
    columns, fields, variables, coords = [], [], [], {}
    for name, var in ds.variables.items():
        role = "coord" if name in ds.coords else "data"
        if row not in var.dims:
            coords[name] = {
                "dims": list(var.dims),
                "values": np.asarray(var.values, dtype=object).tolist()
                if var.dtype.kind in "OUT"
                else var.values.tolist(),
                "dtype": "str" if var.dtype.kind in "OUT" else str(var.dtype),
                "attrs": dict(var.attrs),
            }
            continue
        if len(var.dims) > 2:
            raise ValueError(f"{name}: dims {var.dims}: at most the row dim and one other")
        if var.dims[0] != row:
            var = var.transpose(row, ...)
        values = np.asarray(var.values)
        names_here = []
        if var.ndim == 1:
            names_here.append(str(name))
            columns.append(_column(values))
        else:
            other = [d for d in var.dims if d != row][0]
            labels = (
                [str(v) for v in ds[other].values] if other in ds.coords else range(values.shape[1])
            )
            for j, label in enumerate(labels):
                names_here.append(f"{name}[{label}]")
                columns.append(_column(values[:, j]))
        meta = {k: str(var.attrs[k]) for k in ("units", "long_name") if k in var.attrs}
        for col in names_here:
            fields.append(pa.field(col, columns[len(fields)].type, metadata=meta or None))
        variables.append(
            {
                "name": str(name),
                "role": role,
                "dims": list(var.dims),
                "dtype": "str" if var.dtype.kind in "OUT" else str(var.dtype),
                "attrs": dict(var.attrs),
                "columns": names_here,
            }
        )
    meta = {"dim": row, "sizes": dict(ds.sizes), "attrs": dict(ds.attrs)}
    meta.update(variables=variables, coords=coords)
    schema = pa.schema(fields, metadata={_META_KEY: _dumps(meta).encode()})
    return pa.Table.from_arrays(columns, schema=schema)


def _values(column: pa.ChunkedArray, dtype: str) -> np.ndarray:
    if dtype == "str":
        return np.asarray(column.to_pylist(), dtype=object)
    return column.to_numpy().astype(dtype, copy=False)


def arrow_to_dataset(table: pa.Table) -> xr.Dataset:
    """The Dataset :func:`dataset_to_arrow` wrote (values, dtypes, dims and attrs).

    Text comes back as Python ``str`` objects (dtype ``object``).

    Raises
    ------
    ValueError
        The table has no ``cardiolab`` schema metadata (not written by cardiolab).
    """
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ValueError("not a cardiolab table: no 'cardiolab' schema metadata")
    meta = json.loads(raw)
    row, sizes = meta["dim"], meta["sizes"]
    data, coords = {}, {}
    for name, c in meta["coords"].items():
        values = np.asarray(c["values"], dtype=object if c["dtype"] == "str" else c["dtype"])
        coords[name] = xr.Variable(tuple(c["dims"]), values, c["attrs"])
    for v in meta["variables"]:
        dims = tuple(v["dims"])
        if len(dims) == 1:
            values = _values(table.column(v["columns"][0]), v["dtype"])
        else:
            shape = (sizes[row], sizes[dims[1]])
            cols = [_values(table.column(c), v["dtype"]) for c in v["columns"]]
            dtype = object if v["dtype"] == "str" else v["dtype"]
            values = np.column_stack(cols) if cols else np.empty(shape, dtype=dtype)
        target = coords if v["role"] == "coord" else data
        target[v["name"]] = xr.Variable(dims, values, v["attrs"])
    return xr.Dataset(data, coords=coords, attrs=meta["attrs"])


def _parquet_bytes(table: pa.Table) -> bytes:
    # no Arrow schema copy (it repeats every column's metadata, base64: 3/4 of a small
    # table's bytes) and no column statistics (tables of a few rows): Parquet's own
    # types and the key-value metadata (``cardiolab``) describe the table
    buf = io.BytesIO()
    meta = table.schema.metadata or {}
    options = dict(compression="zstd", write_statistics=False, store_schema=False)
    with pq.ParquetWriter(buf, table.schema, **options) as writer:
        writer.write_table(table)
        if meta:
            writer.add_key_value_metadata(meta)
    return buf.getvalue()


def _read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


# --- the store --------------------------------------------------------------------------


def _write_synced(path: str, data: bytes) -> None:
    """Write ``data`` to a local file and flush it to the disk (before it is published)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Lease:
    """A held session lease (:meth:`DerivedStore.acquire_lease`).

    Attributes
    ----------
    subject, session : str
    token : str
        Unique id of this holder.
    expires : float
        POSIX time (s) after which another run may take the session over.
    """

    subject: str
    session: str
    token: str
    expires: float


class DerivedStore:
    """The derived store of a campaign, on a local folder or any fsspec URL.

    Parameters
    ----------
    url : str or pathlib.Path
        A local folder (``derived.zarr``) or an fsspec URL (``s3://bucket/derived``,
        ``memory://camp/derived``).
    storage_options : dict, optional
        fsspec options for the URL's file system (``endpoint_url``, ``key``, ``anon``...).

    Examples
    --------
    >>> store = DerivedStore("memory://doc/derived")
    >>> ds = xr.Dataset({"hr": ("epoch", [60.0, 72.0], {"units": "bpm"})},
    ...                 coords={"epoch": ["supine", "stand"]})
    >>> store.write_session("S01", "L-30", {"features": ds}, {"n_beats": 0})
    >>> float(store.read_session("S01", "L-30")["hr"].sel(epoch="stand"))
    72.0
    >>> store.sessions()
    [('S01', 'L-30')]
    """

    def __init__(self, url, storage_options: dict | None = None):
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root = self.root.rstrip("/")
        self._checked = self._marked = False

    def __repr__(self) -> str:
        return f"<DerivedStore {self.url}>"

    # -- objects -------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder on a local disk (atomic renames, ``flock``)."""
        return isinstance(self.fs, LocalFileSystem)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _get(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _get_json(self, path: str) -> dict | None:
        data = self._get(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as err:
            raise CardiolabError(
                f"{path}: unreadable JSON object in the derived store: {err}"
            ) from None

    def _put(self, path: str, data: bytes, *, atomic: bool = True) -> None:
        """Write one object; ``atomic``: a reader sees the old or the new bytes, never part.

        Object stores replace an object in one PUT; on a local disk the bytes are
        written beside the target, flushed, and renamed over it.
        """
        parent = path.rsplit("/", 1)[0]
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        os.makedirs(parent, exist_ok=True)
        if not atomic:  # a new name under a fresh prefix: flushed, no rename needed
            _write_synced(path, data)
            return
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
        try:
            _write_synced(tmp, data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _create(self, path: str, data: bytes) -> bool:
        """Create an object only if absent; ``True`` if this call created it.

        On a local disk the bytes are written aside, flushed, then hard-linked to
        ``path`` (``link`` fails if ``path`` exists), so a crash leaves the whole object
        or none. Elsewhere ``open(mode="xb")`` (a conditional PUT ``If-None-Match: *``
        on S3); where a file system has no exclusive create, written only if absent.
        Then read back to check that these bytes are the ones stored.
        """
        if self.is_local:
            parent, name = path.rsplit("/", 1)
            os.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
            try:
                _write_synced(tmp, data)
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
            return True
        try:
            with self.fs.open(path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError, TypeError):
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
        return self._get(path) == data

    def _ls(self, path: str) -> list[str]:
        """Names (not paths) of the entries of a folder; ``[]`` if it does not exist."""
        try:
            entries = self.fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except TypeError:  # file systems without the refresh option
            entries = self.fs.ls(path, detail=False)
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def _rm(self, path: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=recursive)

    # -- format --------------------------------------------------------------------------

    def check_format(self) -> None:
        """Refuse a derived store of another format (e.g. cardiolab's zarr layout).

        Raises
        ------
        CardiolabError
            The store holds format-1 (zarr) results or an unknown format; names the
            store and how to rewrite it.
        """
        if self._checked:
            return
        marker = self._get_json(self._path(_MARKER))
        if marker is None:
            if self._get(self._path("zarr.json")) is not None:
                raise CardiolabError(
                    f"derived store {self.url} was written by an older cardiolab (zarr "
                    f"layout, store format 1; this cardiolab reads format {STORE_FORMAT}): "
                    "reprocess with `cardiolab process --force CATALOG` into a new derived "
                    "folder (or delete this one)"
                )
        elif marker.get("store_format") != STORE_FORMAT:
            raise CardiolabError(
                f"derived store {self.url}: store format {marker.get('store_format')!r}, "
                f"this cardiolab reads format {STORE_FORMAT}; reprocess with "
                "`cardiolab process --force CATALOG` into a new derived folder"
            )
        self._checked = True

    def _ensure_marker(self) -> None:
        self.check_format()
        path = self._path(_MARKER)
        if not self._marked and self._get(path) is None:
            content = {
                "store_format": STORE_FORMAT,
                "description": "cardiolab derived store (layout: cardiolab.derived)",
                "cardiolab": __version__,
            }
            self._create(path, json.dumps(content, indent=1).encode())
        self._marked = True

    # -- sessions ------------------------------------------------------------------------

    def write_session(self, subject: str, session: str, groups: dict, attrs: dict) -> None:
        """Write a processed session and publish it atomically.

        Parameters
        ----------
        subject, session : str
            The session (``"S01"``, ``"R+1"``).
        groups : dict of str to xarray.Dataset or None
            Tables by name (:data:`SESSION_TABLES`: ``beats``, ``features``,
            ``responses``); ``None`` entries are skipped.
        attrs : dict
            The session's provenance (JSON-serialisable): kept in the manifest and
            returned by :meth:`session_attrs`.

        Notes
        -----
        The tables go under a fresh prefix ``v-<id>``, then the manifest naming it
        replaces the old one in one write; the old prefix (and any left by a killed
        writer) is deleted after.
        """
        self._ensure_marker()
        folder = self._path(subject, session)
        prefix = f"v-{uuid.uuid4().hex}"
        tables = {}
        for name, ds in groups.items():
            if ds is None:
                continue
            key = f"{prefix}/{name}.parquet"
            self._put(f"{folder}/{key}", _parquet_bytes(dataset_to_arrow(ds)), atomic=False)
            tables[name] = key
        summary = {}
        beats = groups.get("beats")
        if beats is not None and "valid" in beats:
            valid = np.asarray(beats["valid"].values, dtype=bool)
            summary["valid_fraction"] = float(valid.mean()) if valid.size else None
        manifest = {
            "store_format": STORE_FORMAT,
            "subject": subject,
            "session": session,
            "prefix": prefix,
            "tables": tables,
            "summary": summary,
            "attrs": attrs,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._put(f"{folder}/{_MANIFEST}", _dumps(manifest).encode())
        for name in self._ls(folder):  # superseded and orphaned prefixes
            if _PREFIX.match(name) and name != prefix:
                self._rm(f"{folder}/{name}", recursive=True)

    def session_manifest(self, subject: str, session: str) -> dict | None:
        """The manifest of a processed session (``prefix``, ``tables``, ``summary``
        with ``valid_fraction``, ``attrs``); ``None`` if it is not processed."""
        self.check_format()
        return self._get_json(self._path(subject, session, _MANIFEST))

    def session_attrs(self, subject: str, session: str) -> dict | None:
        """The provenance attrs of a processed session; ``None`` if not processed."""
        manifest = self.session_manifest(subject, session)
        return None if manifest is None else dict(manifest["attrs"])

    def read_session(self, subject: str, session: str, group: str = "features"):
        """One table of a processed session.

        Parameters
        ----------
        subject, session : str
        group : {"features", "beats", "responses"}

        Returns
        -------
        xarray.Dataset or None
            Loaded, with its variables' ``units``/``long_name`` and the provenance
            attrs; ``None`` when the session is not processed or has no such table
            (``responses`` without challenges).
        """
        for _ in range(3):  # the manifest may be replaced (and its prefix deleted) meanwhile
            manifest = self.session_manifest(subject, session)
            if manifest is None or group not in manifest["tables"]:
                return None
            path = self._path(subject, session, manifest["tables"][group])
            data = self._get(path)
            if data is not None:
                try:
                    return arrow_to_dataset(_read_parquet(data))
                except (pa.ArrowException, ValueError, KeyError) as err:
                    raise CardiolabError(f"{path}: unreadable {group} table: {err}") from None
        raise CardiolabError(
            f"{self._path(subject, session, _MANIFEST)}: names {group} objects that are "
            "missing (the store was changed by hand?); reprocess the session"
        )

    def sessions(self) -> list[tuple[str, str]]:
        """Every processed session (subject, session), sorted."""
        self.check_format()
        out = []
        for subject in self._ls(self.root):
            if subject.startswith(("_", ".")) or subject in (_STATS, _MARKER):
                continue
            for session in self._ls(self._path(subject)):
                if self.fs.exists(self._path(subject, session, _MANIFEST)):
                    out.append((subject, session))
        return out

    # -- leases --------------------------------------------------------------------------

    def session_url(self, subject: str, session: str) -> str:
        """Where a session's objects live (its manifest and table prefixes): a local
        path or a URL, for messages."""
        path = self._path(subject, session)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def lease_url(self, subject: str, session: str) -> str:
        """Where a session's lease object lives (delete it to free the session of a run
        that is known dead before the lease expires)."""
        path = self._path(_LEASES, subject, f"{session}.json")
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def lease_holder(self, subject: str, session: str) -> dict | None:
        """Who holds a session's lease (``owner``, ``host``, ``pid``, ``expires``,
        ``token``), or ``None`` when nobody does or the lease has expired."""
        lease = self._get_json(self._path(_LEASES, subject, f"{session}.json"))
        if lease is None or lease.get("expires", 0) < time.time():
            return None
        return lease

    def acquire_lease(
        self, subject: str, session: str, *, ttl: float = LEASE_TTL_S, owner: str = ""
    ) -> Lease | None:
        """Take a session's lease without waiting; ``None`` if another holder has it.

        Parameters
        ----------
        subject, session : str
        ttl : float
            Seconds until the lease expires (then another run may take it over).
        owner : str
            Who takes it (shown to the runs that find it held).

        Returns
        -------
        Lease or None
        """
        path = self._path(_LEASES, subject, f"{session}.json")
        token = uuid.uuid4().hex
        expires = time.time() + ttl
        content = {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": token,
            "expires": expires,
            "taken": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        data = _dumps(content).encode()
        for _ in range(2):
            if self._create(path, data):
                return Lease(subject, session, token, expires)
            held = self._get_json(path)
            if held is not None and held.get("expires", 0) >= time.time() and _alive(held):
                return None
            self._rm(path)  # expired, or its process on this machine is gone: take it over
        return None

    def release_lease(self, lease: Lease) -> None:
        """Give a lease back (deletes it if it is still this holder's)."""
        path = self._path(_LEASES, lease.subject, f"{lease.session}.json")
        held = self._get_json(path)
        if held is not None and held.get("token") == lease.token:
            self._rm(path)

    @contextlib.contextmanager
    def lease(self, subject: str, session: str, *, wait: float = 600.0, ttl: float = LEASE_TTL_S):
        """Hold a session's lease for a ``with`` block, waiting for it if held.

        Raises
        ------
        CardiolabError
            The lease is still held by another after ``wait`` seconds (naming it).
        """
        deadline = time.monotonic() + wait
        delay = 0.05
        while (held := self.acquire_lease(subject, session, ttl=ttl)) is None:
            if time.monotonic() > deadline:
                holder = self.lease_holder(subject, session)
                raise CardiolabError(
                    f"{subject} {session}: another run holds the session "
                    f"({describe_lease(holder)}); try again later"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        try:
            yield held
        finally:
            self.release_lease(held)

    # -- run records ---------------------------------------------------------------------

    def record_run(self, table: pd.DataFrame) -> None:
        """Keep each session's last run outcome, one object per session.

        Parameters
        ----------
        table : pandas.DataFrame
            Rows with ``subject``, ``session``, ``status``, ``stage``, ``error``
            (:attr:`cardiolab.pipeline.Report.sessions`). Rows with status
            ``skipped`` (another run held the session) are not recorded: that run's
            record stands.
        """
        self._ensure_marker()
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        for row in table.itertuples():
            if row.status == "skipped":
                continue
            record = {
                "subject": row.subject,
                "session": row.session,
                "status": row.status,
                "stage": row.stage,
                "error": str(row.error)[:2000],
                "time": now,
            }
            path = self._path(_RUNS, row.subject, f"{row.session}.json")
            self._put(path, _dumps(record).encode())

    def runs(self) -> dict[str, dict]:
        """The last recorded run outcome of every session, keyed ``"<subject>/<session>"``
        (``status``, ``stage``, ``error``, ``time``)."""
        self.check_format()
        paths = [
            self._path(_RUNS, subject, name)
            for subject in self._ls(self._path(_RUNS))
            for name in self._ls(self._path(_RUNS, subject))
            if name.endswith(".json")
        ]
        if not paths:
            return {}
        out = {}
        for data in self.fs.cat(paths, on_error="omit").values():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(data)
                out[f"{record['subject']}/{record['session']}"] = record
        return out

    # -- the reviewers' audit trail ------------------------------------------------------

    def _trail(self, subject: str, session: str) -> str:
        return self._path(TRAIL_GROUP, subject, session)

    def event_ids(self, subject: str, session: str) -> list[int]:
        """Ids of a session's review events, in order (``[]`` without a trail)."""
        names = self._ls(self._trail(subject, session))
        return sorted(int(m.group(1)) for n in names if (m := _EVENT.match(n)))

    def append_event(self, subject: str, session: str, event: dict) -> int:
        """Append a review event to a session's trail; returns its id (from 1).

        The event object ``e<id>.json`` is created only if absent: two writers at once
        get two ids, and no event is ever rewritten. It is chained to the event before
        it: ``previous_hash`` is that event's ``hash`` (its :func:`event_hash` when it
        predates the chain; ``""`` for the first event) and ``hash`` is this event's
        :func:`event_hash`, computed for the id it is created under.
        """
        self._ensure_marker()
        folder = self._trail(subject, session)
        for _ in range(10_000):
            ids = self.event_ids(subject, session)
            n = (ids[-1] if ids else 0) + 1
            previous = self._read_event(folder, ids[-1]) if ids else None
            stored = {
                "event_id": n,
                **{k: v for k, v in event.items() if k not in (EVENT_HASH_KEY, "event_id")},
                EVENT_PREVIOUS_KEY: ""
                if previous is None
                else previous.get(EVENT_HASH_KEY) or event_hash(previous),
            }
            stored[EVENT_HASH_KEY] = event_hash(stored)
            if self._create(f"{folder}/e{n:06d}.json", _dumps(stored).encode()):
                return n
        raise CardiolabError(f"{folder}: could not append an event (10000 attempts)")

    def _read_event(self, folder: str, n: int) -> dict:
        path = f"{folder}/e{n:06d}.json"
        event = self._get_json(path)
        if event is None:
            raise CardiolabError(f"{path}: review event missing")
        return event

    def read_events(self, subject: str, session: str) -> list[dict]:
        """A session's review events (as :meth:`append_event` stored them), in id order.

        Raises
        ------
        CardiolabError
            An event object that cannot be read (naming it).
        """
        folder = self._trail(subject, session)
        paths = [f"{folder}/e{n:06d}.json" for n in self.event_ids(subject, session)]
        if not paths:
            return []
        found = self.fs.cat(paths, on_error="return")
        events = []
        for path in paths:
            data = found.get(path)
            try:
                if isinstance(data, Exception) or data is None:
                    raise OSError(data)
                events.append(json.loads(data))
            except (OSError, ValueError) as err:
                raise CardiolabError(f"{path}: unreadable review event: {err}") from None
        return events

    # -- model results -------------------------------------------------------------------

    def write_results(self, results: pd.DataFrame, attrs: dict) -> str:
        """Write a model results table (one Parquet object, replaced in one write).

        Returns the object's path.
        """
        self._ensure_marker()
        table = pa.Table.from_pandas(results.reset_index(drop=True), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = _dumps({"attrs": attrs}).encode()
        path = self._path(_STATS, "results.parquet")
        self._put(path, _parquet_bytes(table.replace_schema_metadata(meta)))
        return path

    def read_results(self) -> pd.DataFrame | None:
        """The stored model results table (attrs in ``DataFrame.attrs``), or ``None``."""
        self.check_format()
        data = self._get(self._path(_STATS, "results.parquet"))
        if data is None:
            return None
        table = _read_parquet(data)
        frame = table.to_pandas()
        raw = (table.schema.metadata or {}).get(_META_KEY)
        frame.attrs.update(json.loads(raw)["attrs"] if raw else {})
        return frame


def _alive(holder: dict) -> bool:
    """Whether a lease's holder may still be running: ``False`` only when it was taken
    on this machine by a process that no longer exists (a run killed or crashed), so
    that the next run need not wait for the lease to expire; a holder on another
    machine is presumed alive until its lease expires."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        pid = int(holder.get("pid"))
    except (TypeError, ValueError):
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists but is another user's (PermissionError), or no such call
        return True
    return True


def describe_lease(holder: dict | None) -> str:
    """One line saying who holds a lease (:meth:`DerivedStore.lease_holder`) and until
    when."""
    if not holder:
        return "lease just released"
    until = time.strftime("%H:%M:%S", time.localtime(holder.get("expires", 0)))
    who = f"{holder.get('owner') or 'a run'} on {holder.get('host')} pid {holder.get('pid')}"
    return f"{who}, lease until {until}"


def derived_store(catalog) -> DerivedStore:
    """The derived store of a catalog, with the catalog's ``storage_options``.

    Parameters
    ----------
    catalog : cardiolab.catalog.Catalog
        Its ``derived_path`` (a local path or an fsspec URL) and ``storage_options``.

    Returns
    -------
    DerivedStore
    """
    return DerivedStore(catalog.derived_path, getattr(catalog, "storage_options", None))


def as_store(store, storage_options: dict | None = None) -> DerivedStore:
    """``store`` if it is a :class:`DerivedStore`, else the store at that path or URL."""
    if isinstance(store, DerivedStore):
        return store
    if isinstance(store, Path):
        store = str(store)
    return DerivedStore(store, storage_options)
