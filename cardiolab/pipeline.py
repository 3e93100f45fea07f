"""Campaign processing with dask: one task per session, cached, atomic, reported.

:func:`process_campaign` turns every session of a catalog into its beat table and its
per-epoch features, in parallel on a dask cluster (a ``distributed.LocalCluster`` sized
to the machine unless given an existing scheduler), and writes them to the derived
store named in the catalog::

    <derived>/<subject>/<session>/beats      dim beat
    <derived>/<subject>/<session>/features   dim epoch (incl. the orthostatic response)

Each session group is written aside and renamed into place, so a crash never leaves
half a result. Its attributes hold the provenance: cardiolab version, parameters and
a hash of the raw input; a second run with the same inputs and parameters finds them
and recomputes nothing. A session that fails is recorded (session, stage, error) and
the others finish.

Reviewer beat flags (:mod:`cardiolab.annotations`, kept in ``<derived>/_annotations``
outside the session groups) are applied to every beat table before its features are
computed: the stored ``beats`` carry ``reviewer_flag``, ``auto_valid`` and ``valid``
(= ``auto_valid & ~reviewer_flag``), and the provenance attrs ``review_events`` and
``review_last_event``. A cached session whose trail has grown since gets its features
recomputed from its stored beats, without recomputing the beats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .errors import CardiolabError
from .paths import atomic_directory

__all__ = [
    "Report",
    "campaign_status",
    "process_campaign",
    "process_session",
    "session_features",
    "session_results",
    "read_session_results",
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


def raw_input_hash(catalog, subject: str, label: str) -> str:
    """Hash of a session's raw input: names, sizes and modification times of its files.

    For a session in the native store, every file under ``<store>/<subject>/<label>``;
    for file-based sessions, the files that hold each entry's raw input, as its format
    declares them (:attr:`cardiolab.io.FileFormat.raw_files`: a file, a WFDB record's
    files, a zarr store's tree). URLs are hashed by name only. No sample data is read.
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
            items.append(str(store))
    for f in entry.files or []:
        path = catalog.resolve(f.path)
        if isinstance(path, Path):
            # the files that hold the raw input, as the format declares them
            items += [_file_signature(c, path.parent) for c in get_format(f.format).raw_files(path)]
        else:
            items.append(str(path))
        items.append(f.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def session_results(
    beats: xr.Dataset, session: xr.DataTree, *, timings: dict | None = None
) -> tuple[xr.Dataset, xr.Dataset | None]:
    """Per-epoch features of a session and its challenge responses.

    Every declared feature (:func:`cardiolab.features.epoch_features`) is computed for
    the protocol's epochs and for its challenges' sub-windows; each challenge of the
    catalog protocol (attr ``challenges`` of the ``protocol`` group, see
    :class:`cardiolab.catalog.Challenge`) then gives its responses
    (:func:`cardiolab.features.challenge_responses`), with the session's marked events
    (attr ``events``) for the tolerance outcome.

    Parameters
    ----------
    beats : xarray.Dataset
        The session's (reviewed) beat table.
    session : xarray.DataTree
        The session node (raw groups, protocol).
    timings : dict, optional
        Accumulates each feature's computing time (s), and ``"challenge responses"``.

    Returns
    -------
    features : xarray.Dataset
        Dim ``epoch``: the protocol epochs, then one row per challenge response (the
        whole challenge epoch; named by :func:`cardiolab.features.challenges.response_names`)
        holding the absolute response of every feature and the challenge's outcomes
        (initial orthostatic response, tolerance, PORH, local heating), NaN elsewhere.
    responses : xarray.Dataset or None
        Dim ``response``: absolute and percent responses of every feature for every
        challenge step and window, and the outcomes; ``None`` without challenges.
    """
    from .features import challenge_responses, challenge_windows, epoch_features
    from .schema import RAW_GROUPS, protocol_group

    protocol = session["protocol"].to_dataset(inherit=False)
    labels = [str(v) for v in protocol["label"].values]
    starts, stops = protocol["start"].values.astype(float), protocol["stop"].values.astype(float)
    epochs = list(zip(labels, starts, stops, strict=True))
    challenges = json.loads(protocol.attrs.get("challenges") or "[]")
    events = json.loads(protocol.attrs.get("events") or "[]")
    signals = {g: session[g].to_dataset(inherit=False) for g in RAW_GROUPS if g in session.children}
    windows = challenge_windows(epochs, challenges)
    feats = epoch_features(
        beats,
        None,
        protocol_group(epochs + windows),
        signals=signals,
        session=dict(session.attrs),
        timings=timings,
    )
    if not challenges:
        return feats, None
    t0 = time.perf_counter()
    responses = challenge_responses(
        feats, epochs, challenges, beats=beats, events=events, signals=signals
    )
    if timings is not None:
        key = "challenge responses"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    # the features rows: protocol epochs, then each whole-challenge response (plain
    # arrays: a few hundred variables through sel/concat cost more than the features)
    whole = np.flatnonzero(responses["window"].values == "")
    position = {str(e): i for i, e in enumerate(feats["epoch"].values)}
    keep = np.asarray([position[lab] for lab in labels], dtype=int)
    data = {}
    for name, var in feats.data_vars.items():
        values = np.asarray(var.values, dtype=float)
        rows = np.asarray(responses.variables[name].values, dtype=float)[whole]
        data[name] = ("epoch", np.concatenate([values[keep], rows]), var.attrs)
    for name, var in responses.data_vars.items():
        if name in data or (name.endswith("_pct") and name[:-4] in feats):
            continue
        rows = np.asarray(var.values, dtype=float)[whole]
        data[name] = ("epoch", np.concatenate([np.full(keep.size, np.nan), rows]), var.attrs)
    epoch_labels = labels + [str(r) for r in responses["response"].values[whole]]
    out = xr.Dataset(data, coords={"epoch": epoch_labels}, attrs=dict(feats.attrs))
    out.attrs["challenges"] = json.dumps(challenges)
    return out, responses


def session_features(beats: xr.Dataset, session: xr.DataTree) -> xr.Dataset:
    """Per-epoch features and challenge response rows of a session (see
    :func:`session_results`, whose first result this is)."""
    return session_results(beats, session)[0]


@dataclass
class Report:
    """What a :func:`process_campaign` run did.

    Attributes
    ----------
    sessions : pandas.DataFrame
        One row per session: ``subject``, ``session``, ``status`` (done, cached,
        failed), ``stage``, ``error``, ``n_beats``, ``review_events`` (reviewer
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

    def __repr__(self) -> str:
        return (
            f"<Report: {self.n_done} processed, {self.n_cached} unchanged (cached), "
            f"{len(self.failures)} failed, in {self.elapsed_s:.1f} s on {self.n_workers} "
            f"worker(s); derived store {self.derived}>"
        )


def _read_attrs(group: Path) -> dict | None:
    meta = group / "zarr.json"
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None


def _ensure_group(path: Path, attrs: dict | None = None) -> None:
    import zarr

    if not (path / "zarr.json").exists():
        g = zarr.open_group(str(path), mode="a")
        if attrs:
            g.attrs.update(attrs)


def _write_atomic(derived: Path, subject: str, label: str, groups: dict, attrs) -> None:
    import zarr

    from .encoding import stack_table, variable_length_strings, zarr_encoding

    parent = derived / subject
    _ensure_group(derived, {"cardiolab": __version__})
    _ensure_group(parent)
    with atomic_directory(parent / label) as tmp:
        root = zarr.open_group(str(tmp), mode="w-")
        root.attrs.update(attrs)
        for name, ds in groups.items():
            if ds is None:
                continue
            # per-epoch tables: one stacked array, not one small array per feature
            ds = stack_table(ds) if name in STACKED_GROUPS else variable_length_strings(ds)
            ds.to_zarr(
                str(tmp), group=name, mode="a", consolidated=False, encoding=zarr_encoding(ds)
            )


def process_session(catalog_path, subject: str, label: str, *, force: bool = False) -> dict:
    """Process one session (beats, reviewer flags, features, write); never raises.

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
    from .annotations import (
        apply_review,
        last_event_id,
        read_trail,
        recompute_features,
        review_provenance,
        session_lock,
    )
    from .catalog import open_catalog
    from .signals.beats import beat_table

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
    try:
        cat = open_catalog(catalog_path)
        derived = cat.derived_path
        if not isinstance(derived, Path):
            raise CardiolabError(f"derived store {derived}: only local folders are written")
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
        existing = _read_attrs(derived / subject / label)
        if (
            not force
            and existing
            and all(existing.get(k) == provenance[k] for k in ("parameters_hash", "raw_input_hash"))
        ):
            out.update(n_beats=int(existing.get("n_beats", 0)))
            # beats are current; features too unless the reviewer trail has grown
            if existing.get("review_last_event", 0) == last_event_id(derived, subject, label):
                out.update(
                    status="cached", stage="", review_events=existing.get("review_events", 0)
                )
                return out
            out["stage"] = "review"
            feats = recompute_features(cat, subject, label)
            out.update(status="done", stage="", review_events=feats.attrs["review_events"])
            return out
        out["stage"] = "open"
        # no time index: beats and features work by position (bounded memory on long
        # recordings)
        node = cat.open_session(subject, label, indexes=False)
        out["stage"] = "beats"
        beats = beat_table(node)
        provenance.update(
            n_beats=int(beats.sizes["beat"]),
            phase=node.attrs["phase"],
            day=float(node.attrs["day"]),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        beats.attrs.update(subject=subject, session=label)
        with session_lock(derived, subject, label):  # reviewer flags apply to new beats too
            out["stage"] = "review"
            beats = apply_review(beats, read_trail(derived, subject, label))
            out["stage"] = "features"
            feats, responses = session_results(beats, node)
            out["stage"] = "write"
            provenance.update(review_provenance(beats))
            for ds in (beats, feats, responses):
                if ds is not None:
                    ds.attrs.update({k: v for k, v in provenance.items() if k != "created"})
            groups = {"beats": beats, "features": feats, "responses": responses}
            _write_atomic(derived, subject, label, groups, provenance)
        out.update(
            status="done",
            stage="",
            n_beats=int(beats.sizes["beat"]),
            review_events=provenance["review_events"],
        )
    except Exception as err:  # a failing session is reported, the others go on
        kind = "" if isinstance(err, CardiolabError) else f"{type(err).__name__}: "
        out["error"] = f"{kind}{err}"
        log.warning("%s %s failed at %s: %s", subject, label, out["stage"], out["error"])
    finally:
        out["seconds"] = time.perf_counter() - t0
    return out


def _process_task(options: dict, session: tuple[str, str]) -> dict:
    """One task of :func:`process_campaign`: ``session`` is (subject, label)."""
    subject, label = session
    return process_session(options["catalog"], subject, label, force=options["force"])


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
    """
    from .catalog import Catalog, open_catalog
    from .parallel import run_tasks

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
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
    if isinstance(cat.derived_path, Path):
        _record_run(cat.derived_path, table)
    return report


#: Attribute of the derived store's root group holding each session's last run.
RUNS_ATTR = "session_runs"


def _record_run(derived: Path, table: pd.DataFrame) -> None:
    """Keep each session's last outcome (status, stage, error, time) in the derived
    store's root attrs, so that a failure stays visible after the run (the Campaign
    dashboard page reads it)."""
    import zarr

    try:
        _ensure_group(derived, {"cardiolab": __version__})
        root = zarr.open_group(str(derived), mode="a")
        runs = dict(root.attrs.get(RUNS_ATTR, {}))
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        for row in table.itertuples():
            runs[f"{row.subject}/{row.session}"] = {
                "status": row.status,
                "stage": row.stage,
                "error": row.error[:2000],
                "time": now,
            }
        root.attrs[RUNS_ATTR] = runs
    except Exception as err:  # bookkeeping must never fail a run
        log.warning("%s: could not record the run's outcome (%s)", derived, err)


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
    import zarr

    from .catalog import Catalog, open_catalog

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    derived = Path(cat.derived_path)
    runs = {}
    if (derived / "zarr.json").exists():
        runs = dict(zarr.open_group(str(derived), mode="r").attrs.get(RUNS_ATTR, {}))
    rows = []
    for row in cat.sessions.itertuples():
        key = f"{row.subject}/{row.session}"
        attrs = _read_attrs(derived / row.subject / row.session) or {}
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
            beats_group = derived / row.subject / row.session / "beats"
            if (beats_group / "valid" / "zarr.json").exists():
                valid = zarr.open_array(str(beats_group / "valid"), mode="r")[:]
                out["valid_fraction"] = float(np.mean(valid)) if valid.size else np.nan
        if run.get("status") == "failed":
            out.update(status="failed", stage=run.get("stage", ""), error=run.get("error", ""))
        rows.append(out)
    return pd.DataFrame(rows)


#: Groups of a processed session stored as one stacked table (:func:`stack_table`).
STACKED_GROUPS = ("features", "responses")


def read_session_results(
    derived, subject: str, label: str, group: str = "features"
) -> xr.Dataset | None:
    """A processed session's features or challenge responses from the derived store.

    Parameters
    ----------
    derived : str or pathlib.Path
        The derived store (:attr:`cardiolab.catalog.Catalog.derived_path`).
    subject, label : str
        The session.
    group : {"features", "responses"}
        Which results.

    Returns
    -------
    xarray.Dataset or None
        One variable per feature (with ``units``, ``long_name``, ``feature``) on dim
        ``epoch`` (features) or ``response`` (responses), loaded; ``None`` if the
        session has no such group (not processed, or no challenges).
    """
    from .encoding import unstack_table

    path = Path(derived) / subject / label
    if not (path / group / "zarr.json").exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(str(path), group=group, engine="zarr", consolidated=False) as ds:
            return unstack_table(ds.load())


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
    from .catalog import Catalog, open_catalog

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    derived = Path(cat.derived_path)
    frames, units = [], {}
    for row in cat.sessions.itertuples():
        ds = read_session_results(derived, row.subject, row.session, "responses")
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
            f"{derived}: no processed session has challenge responses (declare challenges "
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
    from .catalog import Catalog, open_catalog

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    derived = Path(cat.derived_path)
    measured = cat.measurements
    measured_sessions = set(zip(measured["subject"], measured["session"], strict=True))
    frames, units, missing = [], {}, []
    for row in cat.sessions.itertuples():
        ds = read_session_results(derived, row.subject, row.session)
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
            f"{derived}: no processed session; run `cardiolab process {cat.path}` first"
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
