"""Campaign processing with dask: one task per session, cached, atomic, reported.

:func:`process_campaign` turns every session of a catalog into its beat table and its
per-epoch features, in parallel on a dask cluster (a ``distributed.LocalCluster`` sized
to the machine unless given an existing scheduler), and writes them to the derived
store named in the catalog (:mod:`cardiolab.derived`: a local folder or any fsspec URL):
``beats`` (dim beat), ``features`` (dim epoch, incl. the orthostatic response) and
``responses`` per session.

Each session is written aside and published with one manifest object, so a crash never
leaves half a result. The manifest holds the provenance: cardiolab version, parameters
and a hash of the raw input; a second run with the same inputs and parameters finds them
and recomputes nothing. A session that fails is recorded (session, stage, error) and
the others finish. A run takes a session's lease before computing it: a second run at
the same time skips that session and says so (status ``skipped``).

The reviewers' trail (:mod:`cardiolab.annotations`: flags and beat edits, kept in the
derived store outside the session tables) is applied to every beat table before its
features are computed, by the same function as a recomputation after a review
(:func:`cardiolab.annotations.write_reviewed_session`): the stored ``beats`` carry
``reviewer_flag``, ``auto_valid`` and ``valid`` (= ``auto_valid & ~reviewer_flag``), the
channel flags, ``beat_edit``, and the provenance attrs ``review_events`` and
``review_last_event``. A cached session whose trail has grown since gets its beats and
features recomputed from the detector's stored beats, without detecting them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .annotations import recompute_features, write_reviewed_session
from .derived import DerivedStore, derived_store, describe_lease
from .errors import CardiolabError, storage_error
from .features.session import session_features, session_results
from .signals import beats as signal_beats
from .trail import last_event_id

__all__ = [
    "Report",
    "campaign_status",
    "process_campaign",
    "process_session",
    "session_features",
    "session_results",
    "read_session_results",
    "record_run",
    "responses_table",
    "features_table",
    "features_dataset",
    "parameters_hash",
    "raw_input_hash",
]

log = logging.getLogger("cardiolab")


def _parameters() -> dict:
    from .features.registry import feature_parameters
    from .signals.ecg import QRS_PARAMETERS

    return {
        "qrs": dict(QRS_PARAMETERS),
        "features": feature_parameters(),
        "cardiolab": __version__,
    }


def parameters_hash(parameters: dict | None = None) -> str:
    """SHA-256 of the processing parameters (JSON, keys sorted)."""
    params = parameters if parameters is not None else _parameters()
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _file_signature(path: Path, root: Path) -> list:
    st = path.stat()
    return [str(path.relative_to(root)), st.st_size, st.st_mtime_ns]


def _url_signatures(url: str, storage_options, *, record: bool = False) -> list:
    """``[name, size, version]`` of every object at or under a URL (fsspec listing);
    with ``record``, also every object ``<url>.<extension>`` (a WFDB record's files)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.invalidate_cache(root)  # another process may have changed it since the last listing
    found = fs.find(root, detail=True)
    if record:
        found.update({p: fs.info(p) for p in fs.glob(root + ".*")})
    out = [[url]]
    for name in sorted(found):
        info = found[name]
        version = info.get("ETag") or info.get("mtime") or info.get("LastModified")
        out.append([name.removeprefix(root), info.get("size"), str(version)])
    return out


def raw_input_hash(catalog, subject: str, label: str) -> str:
    """Hash of a session's raw input: names, sizes and modification times of its files.

    For a session in the native store, every file under ``<store>/<subject>/<label>``;
    for file-based sessions, the files that hold each entry's raw input, as its format
    declares them (:attr:`cardiolab.io.FileFormat.raw_files`: a file, a WFDB record's
    files, a zarr store's tree). At URLs, every object at or under the session's URL,
    by name, size and version (ETag, else modification time), listed with the
    catalog's storage options. No sample data is read.
    """
    from .io import get_format

    entry = next(s for s in catalog.model.sessions if s.subject == subject and s.label == label)
    items: list = [subject, label]
    if not entry.files:
        store = catalog.store_path
        if isinstance(store, Path):
            folder = store / subject / label
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    items.append(_file_signature(p, store))
        else:
            items += _url_signatures(f"{store}/{subject}/{label}", catalog.storage_options)
    for f in entry.files or []:
        path = catalog.resolve(f.path)
        if isinstance(path, Path):
            # the files that hold the raw input, as the format declares them
            items += [_file_signature(c, path.parent) for c in get_format(f.format).raw_files(path)]
        else:
            items += _url_signatures(str(path), catalog.storage_options, record=True)
        items.append(f.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Report:
    """What a :func:`process_campaign` run did.

    Attributes
    ----------
    sessions : pandas.DataFrame
        One row per session: ``subject``, ``session``, ``status`` (done, cached,
        failed, skipped: another run was computing it; ``error`` says which), ``stage``, ``error``, ``n_beats``, ``review_events`` (reviewer
        events applied), ``seconds``.
    elapsed_s : float
        Wall-clock time of the run (s).
    n_workers : int
        Dask workers used.
    derived : str
        The derived store.
    """

    sessions: pd.DataFrame
    elapsed_s: float
    n_workers: int
    derived: str
    extra: dict = field(default_factory=dict)

    @property
    def failures(self) -> pd.DataFrame:
        """The failure report: session, stage and error of every failed session."""
        return self.sessions.loc[
            self.sessions["status"] == "failed", ["subject", "session", "stage", "error"]
        ].reset_index(drop=True)

    @property
    def n_done(self) -> int:
        return int((self.sessions["status"] == "done").sum())

    @property
    def n_cached(self) -> int:
        return int((self.sessions["status"] == "cached").sum())

    @property
    def n_skipped(self) -> int:
        """Sessions another run was computing at the time (their lease was held)."""
        return int((self.sessions["status"] == "skipped").sum())

    def __repr__(self) -> str:
        return (
            f"<Report: {self.n_done} processed, {self.n_cached} unchanged (cached), "
            f"{len(self.failures)} failed, "
            + (f"{self.n_skipped} skipped (held by another run), " if self.n_skipped else "")
            + f"in {self.elapsed_s:.1f} s on {self.n_workers} "
            f"worker(s); derived store {self.derived}>"
        )


def process_session(catalog_path, subject: str, label: str, *, force: bool = False) -> dict:
    """Process one session (beats, reviewer flags, features, write); never raises.

    ``catalog_path`` is the catalog: a path, URL, :class:`~cardiolab.catalog.CatalogSpec`
    or an open :class:`~cardiolab.catalog.Catalog`.

    The session's reviewer trail (:mod:`cardiolab.annotations`) is applied to the beat
    table before the features are computed. When the raw input and parameters are
    unchanged (and not ``force``) the beats are not recomputed: the session is
    ``cached`` if its features include the trail's last event, otherwise only its
    features are recomputed from the stored beats (status ``done``).

    Returns
    -------
    dict
        ``subject``, ``session``, ``status`` (done / cached / failed), ``stage``,
        ``error``, ``n_beats``, ``review_events``, ``seconds``.
    """
    from .catalog import Catalog, open_catalog

    t0 = time.perf_counter()
    out = {
        "subject": subject,
        "session": label,
        "status": "failed",
        "stage": "catalog",
        "error": "",
        "n_beats": 0,
        "review_events": 0,
        "seconds": 0.0,
    }
    lease = None
    store = None
    try:
        cat = catalog_path if isinstance(catalog_path, Catalog) else open_catalog(catalog_path)
        store = derived_store(cat)
        out["stage"] = "hash"
        params = _parameters()
        provenance = {
            "cardiolab_version": __version__,
            "parameters": json.dumps(params, sort_keys=True),
            "parameters_hash": parameters_hash(params),
            "raw_input_hash": raw_input_hash(cat, subject, label),
            "subject": subject,
            "session": label,
        }

        def current() -> dict | None:
            existing = store.session_attrs(subject, label)
            keys = ("parameters_hash", "raw_input_hash")
            if not force and existing and all(existing.get(k) == provenance[k] for k in keys):
                return existing
            return None

        if (existing := current()) is not None:
            out.update(n_beats=int(existing.get("n_beats", 0)))
            # beats are current; features too unless the reviewer trail has grown
            if existing.get("review_last_event", 0) == last_event_id(store, subject, label):
                out.update(
                    status="cached", stage="", review_events=existing.get("review_events", 0)
                )
                return out
            out["stage"] = "review"
            feats = recompute_features(cat, subject, label)
            out.update(status="done", stage="", review_events=feats.attrs["review_events"])
            return out
        out["stage"] = "lease"
        lease = store.acquire_lease(subject, label, owner=f"process {cat.path}")
        if lease is None:  # another run computes it: do not compute it twice
            holder = describe_lease(store.lease_holder(subject, label))
            out.update(
                status="skipped",
                stage="",
                error=f"another run holds it ({holder}; if that run is dead, delete "
                f"{store.lease_url(subject, label)})",
            )
            log.info("%s %s skipped: another run holds it (%s)", subject, label, holder)
            return out
        if not force and (existing := current()) is not None:  # done meanwhile
            out.update(
                status="cached",
                stage="",
                n_beats=int(existing.get("n_beats", 0)),
                review_events=existing.get("review_events", 0),
            )
            return out
        out["stage"] = "open"
        # no time index: beats and features work by position (bounded memory on long
        # recordings)
        node = cat.open_session(subject, label, indexes=False, load_below=READ_AT_ONCE_BYTES)
        out["stage"] = "beats"
        beats = signal_beats.beat_table(node)
        provenance.update(
            n_beats=int(beats.sizes["beat"]),
            phase=node.attrs["phase"],
            day=float(node.attrs["day"]),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        beats.attrs.update(subject=subject, session=label)
        # reviewer flags and beat edits apply to new beats too
        out["stage"] = "features"
        beats, _, provenance = write_reviewed_session(
            cat, store, subject, label, beats, node, provenance
        )
        out.update(
            status="done",
            stage="",
            n_beats=int(beats.sizes["beat"]),
            review_events=provenance["review_events"],
        )
    except Exception as err:  # a failing session is reported, the others go on
        if isinstance(err, OSError):
            # a full disk, a permission: name the path and the stage, not only the errno
            # (the stages that write the derived store, else the session's raw input)
            where = f"{catalog_path} (session {subject} {label})"
            if out["stage"] in ("lease", "review", "write") and store is not None:
                where = store.session_url(subject, label)
            err = storage_error(err, where, out["stage"])
        kind = "" if isinstance(err, CardiolabError) else f"{type(err).__name__}: "
        out["error"] = f"{kind}{err}"
        log.warning("%s %s failed at %s: %s", subject, label, out["stage"], out["error"])
    finally:
        if lease is not None:
            store.release_lease(lease)
        out["seconds"] = time.perf_counter() - t0
    return out


#: Sessions up to this size (bytes of samples and times) are read in one pass before
#: their beats and features (each signal is then read once, not once per use); longer
#: ones (a 24-hour Holter) stay lazy and are read block by block, in bounded memory.
READ_AT_ONCE_BYTES = 256 * 2**20


def _process_task(options: dict, session: tuple[str, str]) -> dict:
    """One task of :func:`process_campaign`: ``session`` is (subject, label).

    The session's own dask arrays are computed in the task's thread (the synchronous
    scheduler): inside a distributed worker, ``compute`` would otherwise send each of a
    session's some 30 small graphs through the cluster's scheduler (2.7 times slower on
    a 10-minute session).
    """
    import dask

    from .catalog import open_catalog

    subject, label = session
    # the session's own dask arrays are computed in this thread: inside a distributed
    # worker each small compute would otherwise go through the cluster's scheduler
    with dask.config.set(scheduler="synchronous"):
        try:
            # process_campaign checked the catalog's files and tables before sending
            # the tasks; a file gone since is reported when its session is opened
            cat = open_catalog(options["catalog"], check_files=False)
        except Exception:  # process_session reports it, as for any session
            cat = options["catalog"]
        return process_session(cat, subject, label, force=options["force"])


def process_campaign(
    catalog,
    client=None,
    sessions=None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Report:
    """Process every session of a campaign into beats and features, in parallel.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    client : distributed.Client or "sync", optional
        Where to run. ``None`` starts a ``LocalCluster`` with one single-threaded
        worker process per core (or connects to ``scheduler`` /
        ``$CARDIOLAB_SCHEDULER``); ``"sync"`` runs in this process, one session after
        the other.
    sessions : list of (subject, label), optional
        A subset to process (default: all).
    scheduler : str, optional
        Address of an existing dask scheduler.
    workers : int, optional
        Workers of the LocalCluster (default: the machine's cores).
    force : bool
        Recompute even sessions whose inputs and parameters are unchanged.
    progress : bool
        Show a progress bar of sessions done.

    Returns
    -------
    Report

    Raises
    ------
    CardiolabError
        The derived store was written in another format (an older cardiolab's zarr
        layout), before any session is processed; a failing session is a row of the
        report, not an error.
    """
    from .catalog import as_catalog
    from .parallel import run_tasks

    cat = as_catalog(catalog)
    # a store of another format is refused once, before any session is dispatched
    derived_store(cat).check_format()
    todo = (
        list(sessions)
        if sessions is not None
        else list(zip(cat.sessions["subject"], cat.sessions["session"], strict=True))
    )
    t0 = time.perf_counter()
    run = run_tasks(
        _process_task,
        todo,
        shared={"catalog": cat.spec, "force": force},  # with its storage options
        client=client,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        desc="processing sessions",
        unit="session",
    )
    results, n_workers = run.results, run.n_workers
    order = {key: i for i, key in enumerate(todo)}
    table = pd.DataFrame(results)
    table["_order"] = [
        order[(s, lab)] for s, lab in zip(table["subject"], table["session"], strict=True)
    ]
    table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    report = Report(table, time.perf_counter() - t0, n_workers, str(cat.derived_path))
    record_run(derived_store(cat), table)
    return report


def record_run(store: DerivedStore, table: pd.DataFrame) -> None:
    """Keep each session's last outcome (status, stage, error, time) in the derived
    store (:meth:`cardiolab.derived.DerivedStore.record_run`, one object per session),
    so that a failure stays visible after the run (the Campaign dashboard page reads
    it). Bookkeeping never fails a run: an error is logged.

    Parameters
    ----------
    store : cardiolab.derived.DerivedStore
    table : pandas.DataFrame
        :attr:`Report.sessions` (or rows of :func:`process_session` results).
    """
    try:
        store.record_run(table)
    except Exception as err:  # bookkeeping must never fail a run
        log.warning("%s: could not record the run's outcome (%s)", store.url, err)


def campaign_status(catalog) -> pd.DataFrame:
    """Processing status and quality of every session of a campaign.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog

    Returns
    -------
    pandas.DataFrame
        One row per catalog session: ``subject``, ``session``, ``phase``, ``day``,
        ``status`` (``processed``, ``failed``, ``not processed``), ``stage`` and
        ``error`` of the last failure, ``n_beats``, ``valid_fraction`` (share of beats
        the detector and reviewers kept, 0-1), ``review_events``, ``processed_at``.
    """
    from .catalog import as_catalog

    cat = as_catalog(catalog)
    store = derived_store(cat)
    runs = store.runs()
    rows = []
    for row in cat.sessions.itertuples():
        key = f"{row.subject}/{row.session}"
        manifest = store.session_manifest(row.subject, row.session) or {}
        attrs = manifest.get("attrs", {})
        run = runs.get(key, {})
        out = {
            "subject": row.subject,
            "session": row.session,
            "phase": row.phase,
            "day": row.day,
            "status": "not processed",
            "stage": "",
            "error": "",
            "n_beats": 0,
            "valid_fraction": np.nan,
            "review_events": 0,
            "processed_at": "",
        }
        if attrs:
            out.update(
                status="processed",
                n_beats=int(attrs.get("n_beats", 0)),
                processed_at=str(attrs.get("created", "")),
                review_events=int(attrs.get("review_events", 0) or 0),
            )
            fraction = manifest.get("summary", {}).get("valid_fraction")
            out["valid_fraction"] = np.nan if fraction is None else float(fraction)
        if run.get("status") == "failed":
            out.update(status="failed", stage=run.get("stage", ""), error=run.get("error", ""))
        rows.append(out)
    return pd.DataFrame(rows)


def read_session_results(
    derived, subject: str, label: str, group: str = "features", *, storage_options=None
) -> xr.Dataset | None:
    """A processed session's features, challenge responses or beats from the derived store.

    Parameters
    ----------
    derived : str, pathlib.Path or cardiolab.derived.DerivedStore
        The derived store (:attr:`cardiolab.catalog.Catalog.derived_path`: a folder or
        an fsspec URL).
    subject, label : str
        The session.
    group : {"features", "responses", "beats"}
        Which results.
    storage_options : dict, optional
        fsspec options of a URL (as the catalog's).

    Returns
    -------
    xarray.Dataset or None
        One variable per feature (with ``units``, ``long_name``, ``feature``) on dim
        ``epoch`` (features) or ``response`` (responses), loaded; ``None`` if the
        session has no such group (not processed, or no challenges).
    """
    from .derived import as_store

    return as_store(derived, storage_options).read_session(subject, label, group)


def responses_table(catalog) -> pd.DataFrame:
    """Challenge responses of a processed campaign, one row per session x response.

    Columns: ``subject``, ``session``, ``phase``, ``day``, ``response`` (e.g.
    ``stand-supine``, ``stand-supine:initial``), ``challenge_name``, ``kind``,
    ``baseline``, ``challenge``, ``window``, then for every feature ``<f>`` (absolute
    response, the feature's units) and ``<f>_pct`` (%), and the challenge outcomes
    (:data:`cardiolab.features.challenges.OUTCOMES`); units in
    ``DataFrame.attrs["units"]``. Sessions whose protocol declares no challenge have no
    rows.

    Raises
    ------
    CardiolabError
        If no processed session has challenge responses.
    """
    from .catalog import as_catalog

    cat = as_catalog(catalog)
    store = derived_store(cat)
    frames, units = [], {}
    for row in cat.sessions.itertuples():
        ds = store.read_session(row.subject, row.session, "responses")
        if ds is None:
            continue
        for v in ds.data_vars:
            units.setdefault(v, ds[v].attrs.get("units", ""))
        df = ds.to_dataframe().reset_index()
        for i, (name, value) in enumerate(
            (("subject", row.subject), ("session", row.session), ("phase", row.phase),
             ("day", row.day))
        ):  # fmt: skip
            df.insert(i, name, value)
        frames.append(df)
    if not frames:
        raise CardiolabError(
            f"{store.url}: no processed session has challenge responses (declare challenges "
            f"in the catalog's protocols and run `cardiolab process {cat.path}`)"
        )
    table = pd.concat(frames, ignore_index=True)
    table.attrs["units"] = units
    return table


def features_table(catalog) -> pd.DataFrame:
    """All features of a processed campaign and its measurements, one row per session x
    epoch.

    Columns: ``subject``, ``session``, ``phase``, ``day``, ``epoch``, one per feature
    computed from the recordings, then one per quantity of the catalog's measurement
    tables (:attr:`cardiolab.catalog.Catalog.measurements`); the units of every column
    in ``DataFrame.attrs["units"]``.

    A measurement given for an epoch (the table's ``epoch`` column) joins that epoch's
    row. A measurement without an epoch is a value of the whole session: it has its own
    row, epoch ``"session"`` (:data:`cardiolab.measurements.SESSION_EPOCH`), where the
    recorded features are empty, rather than a copy on every epoch row. So the models
    see each measured value once: ``phase_contrasts(table, "carotid_imt",
    epoch="session")`` and ``fit_time_course(table, "carotid_imt", epoch="session")``
    fit one value per subject and session (copies on the ``supine`` and ``stand`` rows
    would be fitted twice by :func:`~cardiolab.stats.fit_all`, and would put an
    absolute value on the ``stand-supine`` row, which holds differences), and
    :func:`~cardiolab.stats.fit_all` fits it in that epoch only. Sessions with
    measurements but no processed recording have their measurement rows; processed
    sessions without measurements have empty measurement columns. Sessions with
    neither are left out (with a log message).

    Raises
    ------
    CardiolabError
        No processed session and no measurement; a measurement named like a feature
        computed from the recordings.
    CatalogError
        A measurement table that does not validate (file, row and column named).
    """
    from .catalog import as_catalog

    cat = as_catalog(catalog)
    store = derived_store(cat)
    measured = cat.measurements
    measured_sessions = set(zip(measured["subject"], measured["session"], strict=True))
    frames, units, missing = [], {}, []
    for row in cat.sessions.itertuples():
        ds = store.read_session(row.subject, row.session)
        if ds is None:
            if (row.subject, row.session) not in measured_sessions:
                missing.append(f"{row.subject}/{row.session}")
            continue
        for v in ds.data_vars:
            units.setdefault(v, ds[v].attrs.get("units", ""))
        df = ds.to_dataframe().reset_index()
        df.insert(0, "day", row.day)
        df.insert(0, "phase", row.phase)
        df.insert(0, "session", row.session)
        df.insert(0, "subject", row.subject)
        frames.append(df)
    if missing:
        log.info("features_table: %d sessions not processed yet: %s", len(missing), missing[:5])
    if not frames and measured.empty:
        raise CardiolabError(
            f"{store.url}: no processed session; run `cardiolab process {cat.path}` first"
        )
    keys = ["subject", "session", "phase", "day", "epoch"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=keys)
    table["epoch"] = table["epoch"].astype(str)
    if len(measured.columns) > 3:
        table, units = _join_measurements(cat, table, units, measured)
    table.attrs["units"] = units
    return table


def _join_measurements(cat, table, units, measured):
    """``table`` with the measurement columns joined on subject, session and epoch."""
    quantities = [c for c in measured.columns if c not in ("subject", "session", "epoch")]
    clash = [q for q in quantities if q in table.columns]
    if clash:
        raise CardiolabError(
            f"{cat.path}: measurement(s) {clash} are named like features computed from the "
            "recordings; rename the column(s) in the measurement table"
        )
    on = ["subject", "session", "epoch"]
    joined = table.merge(measured, on=on, how="left")  # keeps the table's row order
    present = pd.MultiIndex.from_frame(table[on])
    alone = measured[~pd.MultiIndex.from_frame(measured[on]).isin(present)]
    out = pd.concat([joined, alone], ignore_index=True) if len(alone) else joined
    sessions = cat.sessions.set_index(["subject", "session"])
    where = list(zip(out["subject"], out["session"], strict=True))
    out["phase"] = sessions.loc[where, "phase"].to_numpy()
    out["day"] = sessions.loc[where, "day"].to_numpy().astype(float)
    # catalog session order; within a session the recorded epochs, then the measured ones
    order = {key: i for i, key in enumerate(sessions.index)}
    position = np.array([order[key] for key in where])
    out = out.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    units = {**units, **measured.attrs["units"]}
    return out, units


def features_dataset(catalog) -> xr.Dataset:
    """:func:`features_table` as an ``xarray.Dataset`` with dim ``row``."""
    table = features_table(catalog)
    ds = xr.Dataset.from_dataframe(table.rename_axis("row"))
    for v, u in table.attrs.get("units", {}).items():
        if v in ds:
            ds[v].attrs["units"] = u
    return ds
