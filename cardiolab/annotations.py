"""Reviewer beat flags: an append-only audit trail and the features it implies.

A reviewer looking at a session (in a dashboard, by clicking or box-selecting beats)
may judge beats the automatic detector kept to be artefacts, or beats it flagged to
be fine to keep flagged no longer. This module is the persistence and recomputation
layer under that review:

* :func:`flag_beats` appends one event (who, when, flag or unflag, which beats, why)
  to the session's audit trail; the trail is never rewritten, only appended to.
* :func:`review_state` reads the trail and the current per-beat flags (the last event
  that names a beat decides its state).
* :func:`reviewed_beats` is the stored beat table with the review applied:
  ``reviewer_flag``, ``auto_valid`` (the detector's verdict) and ``valid`` =
  ``auto_valid and not reviewer_flag``.
* :func:`recompute_features` recomputes the session's features from the reviewed
  beats and stores them back, so that :func:`cardiolab.pipeline.features_table`
  reflects the review.

:func:`cardiolab.pipeline.process_session` applies the trail too, after it has
computed the beat table (so a forced reprocess keeps the review), and its cache
recomputes only the features when the raw input is unchanged but the trail has grown.

Storage
-------
The trail lives in the derived store (:mod:`cardiolab.derived`, on a local folder or
object storage), beside the session tables that the pipeline replaces wholesale, never
inside them, so that reprocessing cannot lose it::

    <derived>/_annotations/<subject>/<session>/e000001.json   event 1
    <derived>/_annotations/<subject>/<session>/e000002.json   event 2 ...

Each event is one small JSON object, created only if absent
(:meth:`cardiolab.derived.DerivedStore.append_event`): if another writer took that id
first, the writer takes the next one, so a crash leaves either the whole event or
nothing, two quick successive (or concurrent) calls both persist, and nothing ever
rewrites an event. Subject codes cannot start with ``_`` (catalog rule), so
``_annotations`` never collides with a subject. Rewriting a session's tables (here and
in the pipeline) holds the session's lease
(:meth:`cardiolab.derived.DerivedStore.lease`).

Each event records the beat indices *and* their R-peak times, with a fingerprint of
the beat table they index. If the beat table changes (new detector parameters), the
events are mapped onto the new beats by R-peak time (within
:data:`MATCH_TOLERANCE_S`); beats without a match are counted in the attribute
``review_unmatched`` and logged, never silently dropped.

The raw store is never written to.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .derived import TRAIL_GROUP, DerivedStore, as_store, derived_store
from .errors import CardiolabError, CatalogError
from .features.session import session_results

__all__ = [
    "MATCH_TOLERANCE_S",
    "TRAIL_GROUP",
    "ReviewState",
    "apply_review",
    "flag_beats",
    "last_event_id",
    "read_trail",
    "recompute_features",
    "review_provenance",
    "review_state",
    "reviewed_beats",
]

log = logging.getLogger("cardiolab")

#: Largest distance (s) between an event's recorded R-peak time and a beat of a
#: recomputed beat table for the two to be taken as the same beat.
MATCH_TOLERANCE_S = 0.05
_TRAIL_COLUMNS = [
    "event_id",
    "time",
    "reviewer",
    "action",
    "beats",
    "n_beats",
    "reason",
    "beat_t",
    "beat_table",
]
_REVIEW_ATTRS = ("review_events", "review_last_event", "review_flagged", "review_unmatched")


# --- the result object ------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewState:
    """The review of one session: its audit trail and the current beat flags.

    Attributes
    ----------
    subject, session : str
        The session.
    trail : pandas.DataFrame
        One row per event, in the order they were recorded: ``event_id`` (int, from
        1), ``time`` (UTC timestamp), ``reviewer``, ``action`` (``"flag"`` or
        ``"unflag"``), ``beats`` (tuple of beat indices), ``n_beats``, ``reason``,
        ``beat_t`` (tuple of the beats' R-peak times, s) and ``beat_table`` (the
        fingerprint of the beat table the indices refer to).
    flags : pandas.Series
        Boolean, indexed by ``beat`` (the stored beat table's index): whether the
        beat is currently flagged by a reviewer (the last event naming it decides).
    applied_event : int
        Last event id applied to the stored features (0: none).
    unmatched : int
        Beats of events recorded against another beat table that match no current
        beat (0 unless the session was reprocessed with other parameters).
    """

    subject: str
    session: str
    trail: pd.DataFrame
    flags: pd.Series
    applied_event: int = 0
    unmatched: int = 0

    @property
    def n_flagged(self) -> int:
        """Number of beats currently flagged by a reviewer."""
        return int(self.flags.sum())

    @property
    def last_event(self) -> int:
        """Id of the last event of the trail (0 when there is none)."""
        return int(self.trail["event_id"].iloc[-1]) if len(self.trail) else 0

    @property
    def pending(self) -> bool:
        """Whether the stored features predate the last event of the trail."""
        return self.applied_event != self.last_event

    def __repr__(self) -> str:
        who = sorted(set(self.trail["reviewer"])) if len(self.trail) else []
        stale = ", features not yet recomputed" if self.pending else ""
        return (
            f"<ReviewState {self.subject} {self.session}: {self.n_flagged} of "
            f"{len(self.flags)} beats flagged, {len(self.trail)} event(s) by "
            f"{', '.join(who) or 'nobody'}{stale}>"
        )


# --- paths, session checks, locking -----------------------------------------------------


def _catalog(catalog):
    from .catalog import Catalog, open_catalog

    return catalog if isinstance(catalog, Catalog) else open_catalog(catalog)


def _check_session(cat, subject: str, session: str) -> None:
    table = cat.sessions
    subjects = list(dict.fromkeys(table["subject"]))
    if subject not in subjects:
        raise CatalogError(
            f"unknown subject {subject!r} (the catalog's subjects: {', '.join(subjects)})",
            file=cat.path,
        )
    labels = list(table.loc[table["subject"] == subject, "session"])
    if session not in labels:
        raise CatalogError(
            f"subject {subject} has no session {session!r} (its sessions: {', '.join(labels)})",
            file=cat.path,
        )


# --- the trail on disk ------------------------------------------------------------------


def last_event_id(derived, subject: str, session: str) -> int:
    """Id of the last event of a session's trail (0 when it has none).

    Parameters
    ----------
    derived : cardiolab.derived.DerivedStore, str or pathlib.Path
        The derived store.
    subject, session : str
        The session.

    Returns
    -------
    int

    Examples
    --------
    >>> last_event_id(cat.derived_path, "S01", "R+1")  # doctest: +SKIP
    3
    """
    ids = as_store(derived).event_ids(subject, session)
    return ids[-1] if ids else 0


def read_trail(derived, subject: str, session: str) -> pd.DataFrame:
    """A session's audit trail, one row per event in id order.

    Parameters
    ----------
    derived : cardiolab.derived.DerivedStore, str or pathlib.Path
        The derived store.
    subject, session : str
        The session.

    Returns
    -------
    pandas.DataFrame
        Columns as :attr:`ReviewState.trail`; no rows when the session has no trail.

    Raises
    ------
    CardiolabError
        If an event file cannot be read (naming it).

    Examples
    --------
    >>> read_trail(cat.derived_path, "S01", "R+1")[["event_id", "reviewer"]]  # doctest: +SKIP
    """
    store = as_store(derived)
    rows = []
    for attrs in store.read_events(subject, session):
        try:
            rows.append(
                {
                    "event_id": int(attrs["event_id"]),
                    "time": attrs["time"],
                    "reviewer": str(attrs["reviewer"]),
                    "action": str(attrs["action"]),
                    "beats": tuple(int(b) for b in attrs["beats"]),
                    "n_beats": len(attrs["beats"]),
                    "reason": str(attrs.get("reason", "")),
                    "beat_t": tuple(float(x) for x in attrs["beat_t"]),
                    "beat_table": str(attrs["beat_table"]),
                }
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CardiolabError(
                f"{store.url}: {subject} {session}: unreadable review event "
                f"{attrs.get('event_id', '?')}: {err}"
            ) from None
    trail = pd.DataFrame(rows, columns=_TRAIL_COLUMNS)
    trail["time"] = pd.to_datetime(trail["time"], utc=True, format="ISO8601")
    trail["event_id"] = trail["event_id"].astype("int64")
    trail["n_beats"] = trail["n_beats"].astype("int64")
    return trail


# --- beats ------------------------------------------------------------------------------


def _beat_table_id(t) -> str:
    """Fingerprint of a beat table: SHA-256 (16 hex digits) of its R-peak times."""
    arr = np.ascontiguousarray(np.asarray(t, dtype="<f8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def _stored_beats(store: DerivedStore, subject: str, session: str) -> xr.Dataset:
    beats = store.read_session(subject, session, "beats")
    if beats is None:
        raise CardiolabError(
            f"{subject} {session}: no beat table in the derived store {store.url}; "
            "process the session first (`cardiolab process <catalog>`)"
        )
    return beats


def _match_times(t_now: np.ndarray, t_event: np.ndarray, tolerance: float):
    """Indices of the beats of ``t_now`` nearest ``t_event`` within ``tolerance``."""
    if t_now.size == 0 or t_event.size == 0:
        return np.zeros(0, dtype=np.int64), int(t_event.size)
    k = np.clip(np.searchsorted(t_now, t_event), 1, max(t_now.size - 1, 1))
    left = np.clip(k - 1, 0, t_now.size - 1)
    right = np.clip(k, 0, t_now.size - 1)
    near = np.where(np.abs(t_now[left] - t_event) <= np.abs(t_now[right] - t_event), left, right)
    ok = np.abs(t_now[near] - t_event) <= tolerance
    return near[ok].astype(np.int64), int(np.count_nonzero(~ok))


def _flag_vector(t_now: np.ndarray, trail: pd.DataFrame, tolerance: float):
    """Per-beat reviewer flags from a trail (last event wins) and unmatched count."""
    flags = np.zeros(t_now.size, dtype=bool)
    table_id = _beat_table_id(t_now)
    unmatched = 0
    for ev in trail.itertuples(index=False):
        if ev.beat_table == table_id:
            idx = np.asarray(ev.beats, dtype=np.int64)
        else:
            idx, missing = _match_times(t_now, np.asarray(ev.beat_t, dtype=float), tolerance)
            unmatched += missing
        flags[idx] = ev.action == "flag"
    return flags, unmatched


def apply_review(
    beats: xr.Dataset, trail: pd.DataFrame, *, tolerance: float = MATCH_TOLERANCE_S
) -> xr.Dataset:
    """A beat table with a reviewer's flags applied (pure: the input is not changed).

    Parameters
    ----------
    beats : xarray.Dataset
        Beat table (dim ``beat``) with ``t`` (s) and ``valid``; when it carries
        ``auto_valid`` (a table the review was applied to before), that is the
        automatic validity the review starts from, so applying twice is harmless.
    trail : pandas.DataFrame
        Audit trail (:attr:`ReviewState.trail`). Events recorded against another
        beat table are mapped onto this one by R-peak time.
    tolerance : float
        Largest R-peak time difference (s) for that mapping.

    Returns
    -------
    xarray.Dataset
        The beat table with ``reviewer_flag`` (bool, units "1"), ``auto_valid`` (the
        automatic ``valid``) and ``valid`` = ``auto_valid & ~reviewer_flag``; attrs
        ``review_events``, ``review_last_event``, ``review_flagged`` and
        ``review_unmatched``. Every per-beat feature (RR, pressures, Doppler, beat
        LDF flux) excludes beats that are not ``valid``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> beats = xr.Dataset({"t": ("beat", [0.0, 1.0, 2.0]),
    ...                     "valid": ("beat", [True, True, False])})
    >>> trail = pd.DataFrame({"event_id": [1], "action": ["flag"], "beats": [(0,)],
    ...                       "beat_t": [(0.0,)], "beat_table": ["other"]})
    >>> apply_review(beats, trail)["valid"].values.tolist()
    [False, True, False]
    """
    if "t" not in beats or "valid" not in beats:
        raise CardiolabError("apply_review: the beat table needs variables 't' and 'valid'")
    t_now = np.asarray(beats["t"].values, dtype=float)
    base = beats["auto_valid"] if "auto_valid" in beats else beats["valid"]
    flags, unmatched = _flag_vector(t_now, trail, tolerance)
    if unmatched:
        log.warning(
            "review of %s %s: %d flagged beat(s) recorded against another beat table "
            "match no current beat within %.3f s",
            beats.attrs.get("subject", "?"),
            beats.attrs.get("session", "?"),
            unmatched,
            tolerance,
        )
    auto = np.asarray(base.values, dtype=bool)
    out = beats.copy()
    out["auto_valid"] = xr.Variable(
        "beat",
        auto,
        {"long_name": base.attrs.get("long_name", "normal beat (automatic)") + ", automatic"}
        if "auto_valid" not in beats
        else dict(base.attrs),
    )
    out["reviewer_flag"] = xr.Variable(
        "beat",
        flags,
        {"units": "1", "long_name": "flagged as an artefact by a reviewer (last event wins)"},
    )
    out["valid"] = xr.Variable(
        "beat",
        auto & ~flags,
        {"long_name": "beat kept: automatically valid and not flagged by a reviewer"},
    )
    out.attrs.update(
        review_events=int(len(trail)),
        review_last_event=int(trail["event_id"].iloc[-1]) if len(trail) else 0,
        review_flagged=int(flags.sum()),
        review_unmatched=int(unmatched),
    )
    return out


def review_provenance(beats: xr.Dataset) -> dict:
    """The review attributes of a reviewed beat table, for provenance attrs.

    Parameters
    ----------
    beats : xarray.Dataset
        Output of :func:`apply_review`.

    Returns
    -------
    dict
        ``review_events``, ``review_last_event``, ``review_flagged`` and
        ``review_unmatched`` (int; 0 where absent).

    Examples
    --------
    >>> import xarray as xr
    >>> review_provenance(xr.Dataset(attrs={"review_events": 2}))["review_events"]
    2
    """
    return {k: int(beats.attrs.get(k, 0)) for k in _REVIEW_ATTRS}


# --- public functions -------------------------------------------------------------------


def _beat_indices(beats, n: int, subject: str, session: str) -> np.ndarray:
    where = f"{subject} {session}"
    arr = np.asarray(beats.values if hasattr(beats, "values") else beats)
    if arr.dtype == bool:
        if arr.ndim != 1 or arr.size != n:
            raise CardiolabError(
                f"{where}: a boolean beat mask must have one value per beat ({n}), "
                f"got shape {arr.shape}"
            )
        arr = np.flatnonzero(arr)
    arr = arr.ravel()
    if arr.size == 0:
        raise CardiolabError(f"{where}: no beats given to flag or unflag")
    if arr.dtype.kind == "f":
        bad = arr[~np.isfinite(arr) | (arr != np.round(arr))]
        if bad.size:
            raise CardiolabError(f"{where}: beat indices must be integers, got {bad[:5].tolist()}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise CardiolabError(
            f"{where}: beat indices must be integers, got {arr.dtype} values {arr[:5].tolist()}"
        )
    out_of_range = arr[(arr < 0) | (arr >= n)]
    if out_of_range.size:
        raise CardiolabError(
            f"{where}: beat index {out_of_range[:5].tolist()} out of range: the session's "
            f"beat table has {n} beats (indices 0 to {n - 1})"
        )
    return np.unique(arr.astype(np.int64))


def _event_time(time) -> str:
    if time is None:
        stamp = pd.Timestamp.now(tz="UTC")
    else:
        try:
            stamp = pd.Timestamp(time)
        except (ValueError, TypeError) as err:
            raise CardiolabError(
                f"flag_beats: time {time!r} is not a date and time: {err}"
            ) from None
        if pd.isna(stamp):
            raise CardiolabError(f"flag_beats: time {time!r} is not a date and time")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def flag_beats(
    catalog,
    subject: str,
    session: str,
    beats,
    *,
    reviewer: str,
    flagged: bool = True,
    reason: str = "artefact",
    time=None,
) -> ReviewState:
    """Record that a reviewer flags (or unflags) beats of a session as artefacts.

    Appends one event to the session's audit trail in the derived store; nothing is
    recomputed (call :func:`recompute_features`, or run the pipeline, for that).

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session (e.g. ``"S01"``, ``"R+1"``); it must have been processed.
    beats : array-like of int, or of bool
        Beat indices in the session's stored beat table (dim ``beat``), or a boolean
        mask with one value per beat.
    reviewer : str
        Who decides (a name or login; required, not empty).
    flagged : bool
        ``True`` to flag the beats as artefacts, ``False`` to unflag them.
    reason : str
        Why (free text, e.g. ``"motion artefact"``).
    time : str, datetime or pandas.Timestamp, optional
        When (default now); stored as UTC ISO 8601. A time without a time zone is
        taken as UTC. Events are ordered by their id (the order they were recorded),
        not by this time.

    Returns
    -------
    ReviewState
        The session's review after this event.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session (naming it).
    CardiolabError
        If the reviewer is empty, no beats are given, a beat index is out of range
        (naming it), or the session has not been processed yet.

    Examples
    --------
    >>> state = flag_beats("data_catalog.yaml", "S01", "R+1", [10, 11, 57],
    ...                    reviewer="mh", reason="motion artefact")  # doctest: +SKIP
    >>> state.n_flagged  # doctest: +SKIP
    3
    >>> flag_beats("data_catalog.yaml", "S01", "R+1", [57], reviewer="mh",
    ...            flagged=False, reason="beat is fine")  # doctest: +SKIP
    <ReviewState S01 R+1: 2 of 712 beats flagged, 2 event(s) by mh, ...>
    """
    cat = _catalog(catalog)
    _check_session(cat, subject, session)
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise CardiolabError(
            f"{subject} {session}: flag_beats needs a reviewer (a non-empty name), got {reviewer!r}"
        )
    if not isinstance(reason, str):
        raise CardiolabError(f"{subject} {session}: reason must be text, got {reason!r}")
    derived = derived_store(cat)
    stored = _stored_beats(derived, subject, session)
    t = np.asarray(stored["t"].values, dtype=float)
    idx = _beat_indices(beats, t.size, subject, session)
    event = {
        "time": _event_time(time),
        "reviewer": reviewer.strip(),
        "action": "flag" if flagged else "unflag",
        "beats": idx.tolist(),
        "reason": reason,
        "beat_t": t[idx].tolist(),
        "beat_table": _beat_table_id(t),
        "subject": subject,
        "session": session,
        "cardiolab_version": __version__,
    }
    n = derived.append_event(subject, session, event)
    log.info(
        "%s %s: event %d, %s %s %d beat(s) (%s)",
        subject,
        session,
        n,
        event["reviewer"],
        event["action"] + "s",
        idx.size,
        reason,
    )
    return _state(derived, subject, session, stored)


def _state(derived: DerivedStore, subject: str, session: str, stored: xr.Dataset) -> ReviewState:
    trail = read_trail(derived, subject, session)
    t = np.asarray(stored["t"].values, dtype=float)
    flags, unmatched = _flag_vector(t, trail, MATCH_TOLERANCE_S)
    attrs = derived.session_attrs(subject, session) or {}
    return ReviewState(
        subject=subject,
        session=session,
        trail=trail,
        flags=pd.Series(flags, index=pd.RangeIndex(t.size, name="beat"), name="reviewer_flag"),
        applied_event=int(attrs.get("review_last_event", 0)),
        unmatched=unmatched,
    )


def review_state(catalog, subject: str, session: str) -> ReviewState:
    """The review of a session: its audit trail and current per-beat flags.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed.

    Returns
    -------
    ReviewState
        ``.trail`` (every event, in order), ``.flags`` (bool per beat, the last event
        naming a beat wins), ``.n_flagged``, ``.pending`` (features not yet
        recomputed since the last event).

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session.
    CardiolabError
        If the session has not been processed.

    Examples
    --------
    >>> state = review_state("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    >>> state.trail[["event_id", "time", "reviewer", "action", "n_beats"]]  # doctest: +SKIP
    """
    cat = _catalog(catalog)
    _check_session(cat, subject, session)
    derived = derived_store(cat)
    return _state(derived, subject, session, _stored_beats(derived, subject, session))


def reviewed_beats(catalog, subject: str, session: str) -> xr.Dataset:
    """The stored beat table of a session with its review applied.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed.

    Returns
    -------
    xarray.Dataset
        Dim ``beat``: the stored beat table (loaded), with ``reviewer_flag`` (bool,
        units "1"), ``auto_valid`` (the detector's validity) and ``valid`` =
        ``auto_valid & ~reviewer_flag``; attrs ``review_events``,
        ``review_last_event``, ``review_flagged``, ``review_unmatched``.

    Examples
    --------
    >>> beats = reviewed_beats("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    >>> int(beats["reviewer_flag"].sum())  # doctest: +SKIP
    2
    """
    cat = _catalog(catalog)
    _check_session(cat, subject, session)
    derived = derived_store(cat)
    beats = _stored_beats(derived, subject, session)
    return apply_review(beats, read_trail(derived, subject, session))


def recompute_features(catalog, subject: str, session: str) -> xr.Dataset:
    """Recompute a session's features from its reviewed beats and store them.

    The stored beat table is not recomputed: the review is applied to it
    (:func:`apply_review`), :func:`cardiolab.features.session.session_results` recomputes
    the per-epoch features (reviewer-flagged beats are excluded from every per-beat
    channel: RR intervals bounded by them, pressures, Doppler indices and beat LDF
    flux; the LDF vasomotion band powers come from the continuous raw LDF and are not
    affected), and the session group is rewritten atomically with the reviewed beat
    table and the new features. :func:`cardiolab.pipeline.features_table` then
    reflects the review.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed.

    Returns
    -------
    xarray.Dataset
        The new features (dim ``epoch``), with the session's provenance attrs plus
        ``review_events`` (number of reviewer events applied), ``review_last_event``
        (id of the last one), ``review_flagged`` and ``review_unmatched``.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session.
    CardiolabError
        If the session has not been processed.

    Examples
    --------
    >>> flag_beats("data_catalog.yaml", "S01", "R+1", [10, 11], reviewer="mh")  # doctest: +SKIP
    >>> feats = recompute_features("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    >>> int(feats.attrs["review_last_event"])  # doctest: +SKIP
    1
    """
    cat = _catalog(catalog)
    _check_session(cat, subject, session)
    derived = derived_store(cat)
    with derived.lease(subject, session):
        for _ in range(5):  # again if an event was appended while we worked
            stored = _stored_beats(derived, subject, session)
            attrs = dict(derived.session_attrs(subject, session) or {})
            trail = read_trail(derived, subject, session)
            beats = apply_review(stored, trail).drop_encoding()
            feats, responses = session_results(beats, cat.open_session(subject, session))
            attrs.update(review_provenance(beats))
            for ds in (beats, feats, responses):
                if ds is not None:
                    ds.attrs.update({k: v for k, v in attrs.items() if k != "created"})
            groups = {"beats": beats, "features": feats, "responses": responses}
            derived.write_session(subject, session, groups, attrs)
            if last_event_id(derived, subject, session) == attrs["review_last_event"]:
                break
    log.info(
        "%s %s: features recomputed with %d reviewer event(s), %d beat(s) flagged",
        subject,
        session,
        attrs["review_events"],
        attrs["review_flagged"],
    )
    return feats
