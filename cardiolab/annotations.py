"""Beat review: a signed, hash-chained audit trail of flags and beat edits, and what it implies.

A reviewer looking at a session (in a dashboard or a notebook) may judge beats the
automatic detector kept to be artefacts, add a beat it missed, delete a false one or
move a misplaced one (the beat editing of Kubios HRV, systole and PhysioView), or
flag one channel of a beat (a pressure artefact need not void the RR interval). This
module is the persistence and recomputation layer under that review:

* :func:`flag_beats` appends a flag or unflag event (whole beat, or one channel:
  ``abp``, ``doppler``, ``ldf``); :func:`edit_beats` appends a beat edit (insert,
  delete, move R-peaks; an inserted or moved beat is placed on the ECG's largest
  deflection near the given time, :func:`cardiolab.signals.ecg.snap_r_peak`).
* :func:`confirm_change` confirms or rejects another reviewer's change: under the
  catalog's two-reviewer mode (``review: {confirmations: 2}``) a change takes effect
  only once a second, different reviewer has confirmed it; :func:`pending_changes`
  lists the changes still waiting and those another reviewer rejected.
* :func:`review_state` reads the trail and the current per-beat flags;
  :func:`reviewed_beats` is the beat table with the review applied;
  :func:`recompute_features` recomputes and stores the session's beats and features.
* The trail as a record (read, its hash chain checked, exported as CSV or JSON) is
  :mod:`cardiolab.trail`'s; :func:`verify_trail`, :func:`export_trail` and
  :func:`read_trail` are also importable from here.

:func:`write_reviewed_session` is the one home of "detector's beats + trail ->
reviewed beats -> features -> provenance -> derived store", used by
:func:`cardiolab.pipeline.process_session` and :func:`recompute_features`.

Who signs
---------
Every event names its reviewer. The Python functions take ``reviewer=`` and default to
the operating-system user (:func:`default_reviewer`); the served dashboard signs with
the signed-in user when the server has a login, else with the operating-system user of
the server process, and shows who signs on the page: a page cannot sign as anyone else.

Storage
-------
The trail lives in the derived store (:mod:`cardiolab.derived`), beside the session
tables the pipeline replaces wholesale, never inside them::

    <derived>/_annotations/<subject>/<session>/e000001.json   event 1
    <derived>/_annotations/<subject>/<session>/e000002.json   event 2 ...

Each event is one JSON object created only if absent
(:meth:`cardiolab.derived.DerivedStore.append_event`) and never rewritten. It records
``reviewer``, ``time`` (UTC, ISO 8601), ``action`` (``flag``, ``unflag``, ``edit``,
``confirm``, ``reject``), the beats (indices and R-peak times, with a fingerprint of the
beat table they index), ``channel``, ``reason``, the edit's ``insert_t``/``delete_t``/
``move``, ``refers_to`` (for confirmations), ``cardiolab_version``, and the hash chain:
``previous_hash`` (the previous event's hash) and ``hash`` (SHA-256 of the event's own
canonical JSON, :func:`cardiolab.derived.event_hash`), so that any later edit of a stored
event is found by :func:`cardiolab.trail.verify_trail`. Events written before the chain have no hash:
they are read as before and reported as *unchained*, never as verified.

Events are mapped onto the current beats by R-peak time (within
:data:`MATCH_TOLERANCE_S`) when the beat table they were recorded against has changed;
beats without a match are counted (``review_unmatched``) and logged.

Beat edits never change the raw data nor the detector's output: the reviewed beat table
is rebuilt from the detector's R-peaks with the edits applied
(:func:`cardiolab.signals.beats.beat_table` with ``r_peaks=``), so every per-beat value
(RR, HR, pressure, Doppler, LDF) of the beats around an edit is recomputed; when edits
are in effect the detector's own table is stored beside it (table ``detector``).
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .catalog import as_catalog
from .derived import TRAIL_GROUP, DerivedStore, derived_store
from .errors import CardiolabError, SignalQualityError
from .features.session import session_results
from .signals.beats import beat_table
from .signals.ecg import R_PEAK_SNAP_S, qrs_polarity, snap_r_peak
from .trail import (
    change_status,
    compare_with_export,
    export_trail,
    last_event_id,
    read_trail,
    sessions_with_trail,
    verify_events,
    verify_trail,
)

__all__ = [
    "CHANNELS",
    "MATCH_TOLERANCE_S",
    "TRAIL_GROUP",
    "ReviewState",
    "apply_review",
    "change_status",
    "compare_with_export",
    "confirm_change",
    "default_reviewer",
    "detector_beats",
    "edit_beats",
    "export_trail",
    "flag_beats",
    "last_event_id",
    "match_beat_times",
    "pending_changes",
    "read_trail",
    "recompute_features",
    "review_provenance",
    "review_state",
    "reviewed_beats",
    "verify_events",
    "verify_trail",
    "write_reviewed_session",
]

log = logging.getLogger("cardiolab")

#: Largest distance (s) between an event's recorded R-peak time and a beat of a
#: recomputed beat table for the two to be taken as the same beat.
MATCH_TOLERANCE_S = 0.05
#: What a flag can void: the whole beat (its RR intervals and every channel's values),
#: or one channel's values of the beat (name -> the beat table's validity variable).
CHANNELS = {"beat": "valid", "abp": "abp_valid", "doppler": "doppler_valid", "ldf": "ldf_valid"}
#: Actions that change beats (those a second reviewer confirms in two-reviewer mode).
CHANGE_ACTIONS = ("flag", "unflag", "edit")
#: Values of ``beat_edit`` in a reviewed beat table.
BEAT_EDIT = {0: "detector", 1: "inserted by a reviewer", 2: "moved by a reviewer"}

_REVIEW_ATTRS = (
    "review_events",
    "review_last_event",
    "review_flagged",
    "review_unmatched",
    "review_edits",
    "review_pending",
    "review_confirmations",
)


# --- the result object ------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewState:
    """The review of one session: its audit trail and the current beat flags.

    Attributes
    ----------
    subject, session : str
        The session.
    trail : pandas.DataFrame
        One row per event, in the order they were recorded (columns of
        :func:`read_trail`) plus ``status`` (:func:`change_status`).
    flags : pandas.Series
        Boolean, indexed by ``beat`` (the reviewed beat table's index): whether the
        beat is currently flagged as a whole by a reviewer (the last event in effect
        naming it decides).
    applied_event : int
        Last event id applied to the stored features (0: none).
    unmatched : int
        Beats of events recorded against another beat table that match no current
        beat.
    confirmations : int
        Reviewers a change needs (the catalog's ``review: confirmations``).
    """

    subject: str
    session: str
    trail: pd.DataFrame
    flags: pd.Series
    applied_event: int = 0
    unmatched: int = 0
    confirmations: int = 1

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

    @property
    def n_waiting(self) -> int:
        """Changes waiting for a confirmation (two-reviewer mode)."""
        return int((self.trail["status"] == "pending").sum()) if len(self.trail) else 0

    @property
    def n_disagreements(self) -> int:
        """Changes another reviewer rejected (two-reviewer mode)."""
        return int((self.trail["status"] == "disagreement").sum()) if len(self.trail) else 0

    def __repr__(self) -> str:
        who = sorted(set(self.trail["reviewer"])) if len(self.trail) else []
        stale = ", features not yet recomputed" if self.pending else ""
        waiting = f", {self.n_waiting} awaiting confirmation" if self.n_waiting else ""
        return (
            f"<ReviewState {self.subject} {self.session}: {self.n_flagged} of "
            f"{len(self.flags)} beats flagged, {len(self.trail)} event(s) by "
            f"{', '.join(who) or 'nobody'}{waiting}{stale}>"
        )


# --- identity, catalog, session checks --------------------------------------------------


def default_reviewer() -> str:
    """The operating-system user, who signs events when no reviewer is given.

    Returns
    -------
    str
        :func:`getpass.getuser` (``$LOGNAME``, ``$USER``, ..., else the password
        database entry of the process's user id).

    Raises
    ------
    CardiolabError
        If the process has no user name (some containers): pass ``reviewer=``.
    """
    try:
        user = getpass.getuser()
    except Exception as err:  # getpass raises OSError or KeyError without a user name
        raise CardiolabError(
            f"no operating-system user name to sign the review with ({err}): pass reviewer="
        ) from None
    if not user or not user.strip():
        raise CardiolabError("no operating-system user name to sign the review: pass reviewer=")
    return user.strip()


def _reviewer(reviewer, where: str, what: str) -> str:
    if reviewer is None:
        return default_reviewer()
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise CardiolabError(
            f"{where}: {what} needs a reviewer (a non-empty name), got {reviewer!r}"
        )
    return reviewer.strip()


def _confirmations(cat) -> int:
    review = getattr(getattr(cat, "model", None), "review", None)
    return int(review.confirmations) if review is not None else 1


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


def match_beat_times(t_now: np.ndarray, t_event: np.ndarray, tolerance: float = MATCH_TOLERANCE_S):
    """The beats of a beat table that R-peak times recorded earlier name.

    How review events find their beats again when the beat table they were recorded
    against has changed: each recorded time is matched to the nearest beat of
    ``t_now``, if it is within ``tolerance``.

    Parameters
    ----------
    t_now : numpy.ndarray, shape (n_beats,)
        R-peak times of the current beat table (s), increasing.
    t_event : numpy.ndarray, shape (n,)
        Recorded R-peak times (s).
    tolerance : float
        Largest distance (s) for a match (default :data:`MATCH_TOLERANCE_S`).

    Returns
    -------
    indices : numpy.ndarray of int64
        Indices into ``t_now`` of the times matched, in the order of ``t_event``.
    n_unmatched : int
        Recorded times with no beat within ``tolerance``.
    """
    if t_now.size == 0 or t_event.size == 0:
        return np.zeros(0, dtype=np.int64), int(t_event.size)
    k = np.clip(np.searchsorted(t_now, t_event), 1, max(t_now.size - 1, 1))
    left = np.clip(k - 1, 0, t_now.size - 1)
    right = np.clip(k, 0, t_now.size - 1)
    near = np.where(np.abs(t_now[left] - t_event) <= np.abs(t_now[right] - t_event), left, right)
    ok = np.abs(t_now[near] - t_event) <= tolerance
    return near[ok].astype(np.int64), int(np.count_nonzero(~ok))


def _flag_vectors(t_now: np.ndarray, trail: pd.DataFrame, tolerance: float):
    """Per-channel reviewer flags from the flag/unflag events (last event wins)."""
    flags = {c: np.zeros(t_now.size, dtype=bool) for c in CHANNELS}
    table_id = _beat_table_id(t_now)
    unmatched = 0
    channels = trail["channel"] if "channel" in trail else pd.Series("beat", index=trail.index)
    for ev, channel in zip(trail.itertuples(index=False), channels, strict=True):
        if ev.action not in ("flag", "unflag"):
            continue
        if ev.beat_table == table_id:
            idx = np.asarray(ev.beats, dtype=np.int64)
        else:
            idx, missing = match_beat_times(t_now, np.asarray(ev.beat_t, dtype=float), tolerance)
            unmatched += missing
        flags[str(channel or "beat")][idx] = ev.action == "flag"
    return flags, unmatched


def detector_beats(beats: xr.Dataset) -> xr.Dataset:
    """The detector's beat table back from a reviewed one (flags removed).

    Parameters
    ----------
    beats : xarray.Dataset
        A beat table, reviewed (:func:`apply_review`) or not.

    Returns
    -------
    xarray.Dataset
        ``valid`` and the channel validities as the detector left them (from
        ``auto_valid``, ``auto_abp_valid`` ...), without the reviewer's variables and
        attributes. A table that was not reviewed is returned as is.

    Raises
    ------
    CardiolabError
        If the table carries reviewer beat edits (``review_edits`` > 0): the
        detector's table is then the stored ``detector`` table.
    """
    if int(beats.attrs.get("review_edits", 0) or 0):
        raise CardiolabError(
            f"{beats.attrs.get('subject', '?')} {beats.attrs.get('session', '?')}: this beat "
            "table carries reviewer beat edits; the detector's beats are the stored "
            "'detector' table"
        )
    if "auto_valid" not in beats:
        return beats
    out = beats.drop_vars(
        [v for v in beats.data_vars if str(v).startswith("reviewer_flag") or v == "beat_edit"]
    )
    for name in CHANNELS.values():
        if f"auto_{name}" in out:
            out[name] = out[f"auto_{name}"]
            out = out.drop_vars(f"auto_{name}")
    out.attrs = {k: v for k, v in out.attrs.items() if k not in _REVIEW_ATTRS}
    return out


def _ecg(session: xr.DataTree, where: str):
    if session is None or "ecg" not in session.children:
        raise CardiolabError(
            f"{where}: beat edits need the session's ECG (a beat-level session, or no "
            "session given to apply_review)"
        )
    ecg = session["ecg"].to_dataset(inherit=False)
    fs = float(ecg.attrs["sampling_rate"])
    t0 = float(ecg["time"][0]) if ecg.sizes.get("time", 0) else 0.0
    return ecg["ecg"], fs, t0


def _edited_table(detector: xr.Dataset, edits: pd.DataFrame, session, tolerance: float):
    """The beat table on the detector's R-peaks with the edits applied, in order."""
    where = f"{detector.attrs.get('subject', '?')} {detector.attrs.get('session', '?')}"
    _, fs, t0 = _ecg(session, where)
    t = np.asarray(detector["t"].values, dtype=float)
    source = np.zeros(t.size, dtype=np.int8)
    unmatched = 0
    n_changed = 0
    for ev in edits.itertuples(index=False):
        gone, missing = match_beat_times(t, np.asarray(ev.delete_t, dtype=float), tolerance)
        unmatched += missing
        keep = np.ones(t.size, dtype=bool)
        keep[gone] = False
        moved_to = np.asarray([b for _, b in ev.move], dtype=float)
        added = np.asarray(ev.insert_t, dtype=float)
        t = np.r_[t[keep], added, moved_to]
        source = np.r_[source[keep], np.ones(added.size, np.int8), np.full(moved_to.size, 2)]
        order = np.argsort(t, kind="stable")
        t, source = t[order], source[order].astype(np.int8)
        n_changed += int(gone.size) + added.size
    samples = np.round((t - t0) * fs).astype(np.int64)
    samples, first = np.unique(samples, return_index=True)
    table = beat_table(session, r_peaks=samples)
    table.attrs.update(detector.attrs)
    table["beat_edit"] = xr.Variable(
        "beat",
        source[first],
        {
            "units": "1",
            "long_name": "R-peak source: " + ", ".join(f"{k} {v}" for k, v in BEAT_EDIT.items()),
        },
    )
    return table, n_changed, unmatched


def apply_review(
    beats: xr.Dataset,
    trail: pd.DataFrame,
    *,
    session: xr.DataTree | None = None,
    confirmations: int = 1,
    tolerance: float = MATCH_TOLERANCE_S,
) -> xr.Dataset:
    """A beat table with a review applied (pure: the inputs are not changed).

    Parameters
    ----------
    beats : xarray.Dataset
        The detector's beat table (dim ``beat``, ``t`` in s and ``valid``); a table
        the review was applied to before (``auto_valid``) is taken back to the
        detector's (:func:`detector_beats`), so applying twice is harmless.
    trail : pandas.DataFrame
        Audit trail (:func:`read_trail`). Events recorded against another beat table
        are mapped onto this one by R-peak time.
    session : xarray.DataTree, optional
        The session node (raw ECG and other channels): needed when beat edits are in
        effect, to place the R-peaks and recompute every per-beat value.
    confirmations : int
        Reviewers a change needs (:func:`change_status`); only changes in effect
        apply.
    tolerance : float
        Largest R-peak time difference (s) for matching events to beats.

    Returns
    -------
    xarray.Dataset
        The beat table (rebuilt on the edited R-peaks when edits are in effect, with
        ``beat_edit``: 0 detector, 1 inserted, 2 moved), with ``reviewer_flag``
        (bool, units "1"), ``auto_valid`` (the automatic ``valid``) and ``valid`` =
        ``auto_valid & ~reviewer_flag``; for each channel validity present
        (``abp_valid``, ``doppler_valid``, ``ldf_valid``) ``reviewer_flag_<channel>``,
        ``auto_<channel>_valid`` and the validity with the flag applied (a channel
        flag leaves ``valid``, hence the RR intervals, alone); attrs
        ``review_events``, ``review_last_event``, ``review_flagged``,
        ``review_unmatched``, ``review_edits`` (beats inserted, deleted or moved),
        ``review_pending`` (changes not in effect) and ``review_confirmations``.

    Raises
    ------
    CardiolabError
        If edits are in effect and no session with an ECG is given.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> beats = xr.Dataset({"t": ("beat", [0.0, 1.0, 2.0]),
    ...                     "valid": ("beat", [True, True, False])})
    >>> trail = pd.DataFrame({"event_id": [1], "action": ["flag"], "reviewer": ["mh"],
    ...                       "beats": [(0,)], "beat_t": [(0.0,)], "beat_table": ["other"]})
    >>> apply_review(beats, trail)["valid"].values.tolist()
    [False, True, False]
    """
    if "t" not in beats or "valid" not in beats:
        raise CardiolabError("apply_review: the beat table needs variables 't' and 'valid'")
    detector = detector_beats(beats)
    status = change_status(trail, confirmations) if len(trail) else pd.Series(dtype=object)
    effective = trail[status == "in effect"] if len(trail) else trail
    edits = effective[effective["action"] == "edit"] if len(effective) else effective
    n_edits, unmatched = 0, 0
    if len(edits):
        table, n_edits, unmatched = _edited_table(detector, edits, session, tolerance)
    else:
        table = detector.copy()
        table["beat_edit"] = xr.Variable(
            "beat", np.zeros(detector.sizes["beat"], dtype=np.int8), {"units": "1"}
        )
        table["beat_edit"].attrs["long_name"] = "R-peak source: " + ", ".join(
            f"{k} {v}" for k, v in BEAT_EDIT.items()
        )
    t_now = np.asarray(table["t"].values, dtype=float)
    flags, missing = _flag_vectors(t_now, effective, tolerance)
    unmatched += missing
    if unmatched:
        log.warning(
            "review of %s %s: %d beat(s) of events recorded against another beat table "
            "match no current beat within %.3f s",
            beats.attrs.get("subject", "?"),
            beats.attrs.get("session", "?"),
            unmatched,
            tolerance,
        )
    out = table.copy()
    for channel, name in CHANNELS.items():
        if name not in table:
            continue
        base = table[name]
        auto = np.asarray(base.values, dtype=bool)
        flag = flags[channel]
        suffix = "" if channel == "beat" else f"_{channel}"
        out[f"auto_{name}"] = xr.Variable(
            base.dims,
            auto,
            {**base.attrs, "long_name": base.attrs.get("long_name", name) + ", automatic"},
        )
        what = "beat" if channel == "beat" else f"{channel} values of the beat"
        out[f"reviewer_flag{suffix}"] = xr.Variable(
            "beat",
            flag,
            {"units": "1", "long_name": f"{what} flagged as an artefact by a reviewer"},
        )
        mask = flag if base.ndim == 1 else flag[:, None]
        out[name] = xr.Variable(
            base.dims,
            auto & ~mask,
            {
                "units": "1",
                "long_name": base.attrs.get("long_name", name) + ", and not flagged by a reviewer",
            },
        )
    out.attrs.update(
        review_events=int(len(trail)),
        review_last_event=int(trail["event_id"].iloc[-1]) if len(trail) else 0,
        review_flagged=int(flags["beat"].sum()),
        review_unmatched=int(unmatched),
        review_edits=int(n_edits),
        review_pending=int(status.isin(["pending", "disagreement"]).sum()),
        review_confirmations=int(confirmations),
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
        ``review_events``, ``review_last_event``, ``review_flagged``,
        ``review_unmatched``, ``review_edits``, ``review_pending``,
        ``review_confirmations`` (int; 0 where absent).

    Examples
    --------
    >>> import xarray as xr
    >>> review_provenance(xr.Dataset(attrs={"review_events": 2}))["review_events"]
    2
    """
    return {k: int(beats.attrs.get(k, 0)) for k in _REVIEW_ATTRS}


# --- the one path from beats and trail to the stored session ----------------------------


def write_reviewed_session(
    cat, store: DerivedStore, subject: str, session: str, detector, node, provenance: dict
):
    """Apply the trail to the detector's beats, compute the features, store the session.

    The one home of "detector's beats + trail -> reviewed beats
    (:func:`apply_review`) -> features and challenge responses
    (:func:`cardiolab.features.session.session_results`) -> provenance -> derived
    store (:meth:`cardiolab.derived.DerivedStore.write_session`)", used by
    :func:`cardiolab.pipeline.process_session` (fresh beats) and
    :func:`recompute_features` (stored beats). The caller holds the session's lease.

    Parameters
    ----------
    cat : cardiolab.catalog.Catalog
        The catalog (its ``review: confirmations``).
    store : cardiolab.derived.DerivedStore
        The derived store.
    subject, session : str
        The session.
    detector : xarray.Dataset
        The detector's beat table (dim ``beat``).
    node : xarray.DataTree
        The session's raw groups and protocol.
    provenance : dict
        The session's provenance attrs (cardiolab version, parameters, hashes ...);
        ``created`` is kept in the manifest only. Not changed.

    Returns
    -------
    beats : xarray.Dataset
        The reviewed beat table as stored.
    features : xarray.Dataset
        The features as stored.
    provenance : dict
        The provenance written, with :func:`review_provenance`.
    """
    trail = read_trail(store, subject, session)
    beats = apply_review(detector, trail, session=node, confirmations=_confirmations(cat))
    beats = beats.drop_encoding()
    feats, responses = session_results(beats, node)
    provenance = {**provenance, **review_provenance(beats)}
    groups = {"beats": beats, "features": feats, "responses": responses}
    if provenance["review_edits"]:
        groups["detector"] = detector_beats(detector)
    attrs = {k: v for k, v in provenance.items() if k != "created"}
    for name, ds in groups.items():
        if ds is not None:
            ds.attrs.update(
                attrs
                if name != "detector"
                else {k: v for k, v in attrs.items() if k not in _REVIEW_ATTRS}
            )
    store.write_session(subject, session, groups, provenance)
    return beats, feats, provenance


def _detector_table(store: DerivedStore, subject: str, session: str) -> xr.Dataset:
    """The detector's beat table of a processed session (see :func:`detector_beats`)."""
    stored = store.read_session(subject, session, "detector")
    return stored if stored is not None else detector_beats(_stored_beats(store, subject, session))


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


def _event_time(time, what: str = "flag_beats") -> str:
    if time is None:
        stamp = pd.Timestamp.now(tz="UTC")
    else:
        try:
            stamp = pd.Timestamp(time)
        except (ValueError, TypeError) as err:
            raise CardiolabError(f"{what}: time {time!r} is not a date and time: {err}") from None
        if pd.isna(stamp):
            raise CardiolabError(f"{what}: time {time!r} is not a date and time")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def _append(store: DerivedStore, subject, session, action, reviewer, reason, time, what, **fields):
    if not isinstance(reason, str):
        raise CardiolabError(f"{subject} {session}: reason must be text, got {reason!r}")
    event = {
        "time": _event_time(time, what),
        "reviewer": reviewer,
        "action": action,
        "reason": reason,
        "subject": subject,
        "session": session,
        "cardiolab_version": __version__,
        **fields,
    }
    n = store.append_event(subject, session, event)
    log.info("%s %s: event %d, %s: %s (%s)", subject, session, n, reviewer, action, reason)
    return n


def _current(cat, store: DerivedStore, subject: str, session: str):
    """The reviewed beat table the reviewer sees now, and the session node if opened."""
    stored = _stored_beats(store, subject, session)
    last = last_event_id(store, subject, session)
    if (
        int(stored.attrs.get("review_last_event", -1)) == last
        and int(stored.attrs.get("review_confirmations", 1) or 1) == _confirmations(cat)
        and "beat_edit" in stored
    ):
        return stored, None
    detector = _detector_table(store, subject, session)
    trail = read_trail(store, subject, session)
    confirmations = _confirmations(cat)
    status = change_status(trail, confirmations) if len(trail) else pd.Series(dtype=object)
    node = None
    if len(trail) and ((trail["action"] == "edit") & (status == "in effect")).any():
        node = cat.open_session(subject, session)
    return apply_review(detector, trail, session=node, confirmations=confirmations), node


def flag_beats(
    catalog,
    subject: str,
    session: str,
    beats,
    *,
    reviewer: str | None = None,
    flagged: bool = True,
    channel: str = "beat",
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
        Beat indices in the session's reviewed beat table (dim ``beat``, as
        :func:`reviewed_beats` gives it), or a boolean mask with one value per beat.
    reviewer : str, optional
        Who decides (a login); default the operating-system user
        (:func:`default_reviewer`).
    flagged : bool
        ``True`` to flag the beats as artefacts, ``False`` to unflag them.
    channel : {"beat", "abp", "doppler", "ldf"}
        What the flag voids: the whole beat (its RR intervals and every channel's
        values), or only that channel's values of the beat (``abp``: pressures,
        stroke volume, CVC; the RR interval stays).
    reason : str
        Why (free text, e.g. ``"motion artefact"``).
    time : str, datetime or pandas.Timestamp, optional
        When (default now); stored as UTC ISO 8601. A time without a time zone is
        taken as UTC. Events are ordered by their id, not by this time.

    Returns
    -------
    ReviewState
        The session's review after this event.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session (naming it).
    CardiolabError
        If the reviewer is empty, the channel unknown, no beats are given, a beat
        index is out of range (naming it), or the session has not been processed.

    Examples
    --------
    >>> state = flag_beats("data_catalog.yaml", "S01", "R+1", [10, 11, 57],
    ...                    reviewer="mh", reason="motion artefact")  # doctest: +SKIP
    >>> state.n_flagged  # doctest: +SKIP
    3
    >>> flag_beats("data_catalog.yaml", "S01", "R+1", [57], channel="abp",
    ...            reason="finger cuff recalibration")  # doctest: +SKIP
    """
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    who = _reviewer(reviewer, f"{subject} {session}", "flag_beats")
    if channel not in CHANNELS:
        raise CardiolabError(
            f"{subject} {session}: unknown channel {channel!r} (one of {', '.join(CHANNELS)})"
        )
    store = derived_store(cat)
    current, _ = _current(cat, store, subject, session)
    t = np.asarray(current["t"].values, dtype=float)
    idx = _beat_indices(beats, t.size, subject, session)
    _append(
        store,
        subject,
        session,
        "flag" if flagged else "unflag",
        who,
        reason,
        time,
        "flag_beats",
        channel=channel,
        beats=idx.tolist(),
        beat_t=t[idx].tolist(),
        beat_table=_beat_table_id(t),
    )
    return _state(cat, store, subject, session)


def _beats_at(current: xr.Dataset, items, what: str, where: str) -> np.ndarray:
    """Beat indices of ``items``: ints are indices, floats R-peak times (s)."""
    t = np.asarray(current["t"].values, dtype=float)
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer | float | np.floating):
            raise CardiolabError(f"{where}: {what}: {item!r} is neither a beat index nor a time")
        if isinstance(item, int | np.integer):
            if not 0 <= int(item) < t.size:
                raise CardiolabError(
                    f"{where}: {what}: beat index {int(item)} out of range (0 to {t.size - 1})"
                )
            out.append(int(item))
            continue
        idx, missing = match_beat_times(t, np.asarray([float(item)]), MATCH_TOLERANCE_S)
        if missing:
            raise CardiolabError(
                f"{where}: {what}: no beat within {MATCH_TOLERANCE_S * 1000:.0f} ms of "
                f"{float(item):.3f} s"
            )
        out.append(int(idx[0]))
    return np.asarray(out, dtype=np.int64)


def _snap(node, current: xr.Dataset, times, where: str, window_s: float) -> np.ndarray:
    """R-peak times (s) of the beats a reviewer places near ``times``, on the ECG."""
    ecg, fs, t0 = _ecg(node, where)
    times = np.asarray(times, dtype=float)
    if not np.isfinite(times).all():
        raise CardiolabError(f"{where}: beat times must be finite, got {times.tolist()}")
    x = np.asarray(ecg.values)
    beats_now = np.round((np.asarray(current["t"].values, dtype=float) - t0) * fs)
    polarity = qrs_polarity(x, fs, beats_now.astype(np.int64))
    marks = np.round((times - t0) * fs).astype(np.int64)
    try:
        samples = snap_r_peak(x, fs, marks, window_s=window_s, polarity=polarity)
    except SignalQualityError as err:
        raise SignalQualityError(f"{where}: {err}") from None
    return t0 + samples / fs


def edit_beats(
    catalog,
    subject: str,
    session: str,
    *,
    insert=(),
    delete=(),
    move=(),
    reason: str = "",
    reviewer: str | None = None,
    window_s: float = R_PEAK_SNAP_S,
    recompute: bool = True,
    time=None,
) -> ReviewState:
    """Insert, delete or move R-peaks of a session: one event of its audit trail.

    The edit applies on top of the detector's R-peaks (raw data and the detector's
    output are never changed). An inserted or moved beat is placed on the ECG's local
    maximum (of the lead's QRS polarity, :func:`cardiolab.signals.ecg.qrs_polarity`)
    within ``+-window_s`` of the time given
    (:func:`cardiolab.signals.ecg.snap_r_peak`), as the beat editors of Kubios HRV
    (Tarvainen et al. 2014, "Kubios HRV - heart rate variability analysis software",
    Comput Methods Programs Biomed 113:210) and systole (Legrand & Allen 2022) add a
    beat at the local maximum. With ``recompute`` the beat table (RR, HR and every
    channel's per-beat values of the beats around each edit) and the features are
    recomputed and stored (:func:`recompute_features`).

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed and have an ECG.
    insert : sequence of float
        Times (s from the session start) of beats to add.
    delete : sequence of int or float
        Beats to remove: indices in the reviewed beat table (int) or R-peak times
        (float, s; the beat within :data:`MATCH_TOLERANCE_S`).
    move : sequence of (old, new)
        Beats to move: ``old`` an index or R-peak time as for ``delete``, ``new`` the
        time (s) to move it to (placed on the ECG as an insertion).
    reason : str
        Why (free text).
    reviewer : str, optional
        Who (default the operating-system user, :func:`default_reviewer`).
    window_s : float
        Half-width (s) of the window an inserted or moved beat is placed in.
    recompute : bool
        Recompute and store the beats and features now.
    time : str, datetime or pandas.Timestamp, optional
        When (default now), as for :func:`flag_beats`.

    Returns
    -------
    ReviewState
        The session's review after the edit.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session.
    CardiolabError
        If nothing is given, a beat to delete or move is not found, an inserted beat
        falls on an existing one, or the session has no ECG.
    SignalQualityError
        If a time lies outside the ECG.

    Examples
    --------
    >>> edit_beats("data_catalog.yaml", "S01", "R+1", insert=[132.41],
    ...            delete=[57], move=[(80, 171.02)], reason="missed beat")  # doctest: +SKIP
    """
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    where = f"{subject} {session}"
    who = _reviewer(reviewer, where, "edit_beats")
    insert, delete, move = list(insert), list(delete), [tuple(m) for m in move]
    if not (insert or delete or move):
        raise CardiolabError(f"{where}: edit_beats: nothing to insert, delete or move")
    if any(len(m) != 2 for m in move):
        raise CardiolabError(f"{where}: edit_beats: each move is a pair (old, new), got {move}")
    store = derived_store(cat)
    current, node = _current(cat, store, subject, session)
    node = node if node is not None else cat.open_session(subject, session)
    t = np.asarray(current["t"].values, dtype=float)
    gone = _beats_at(current, delete, "delete", where)
    moved = _beats_at(current, [m[0] for m in move], "move", where)
    if (
        np.intersect1d(gone, moved).size
        or np.unique(np.r_[gone, moved]).size < gone.size + moved.size
    ):
        raise CardiolabError(f"{where}: edit_beats: a beat is named twice")
    added = _snap(node, current, insert, where, window_s) if insert else np.zeros(0)
    to = _snap(node, current, [m[1] for m in move], where, window_s) if move else np.zeros(0)
    remaining = np.delete(t, np.r_[gone, moved])
    for new in np.r_[added, to]:
        near = np.abs(remaining - new) <= MATCH_TOLERANCE_S
        if near.any():
            raise CardiolabError(
                f"{where}: edit_beats: the beat placed at {new:.3f} s falls on an existing "
                f"beat at {remaining[near][0]:.3f} s (within {MATCH_TOLERANCE_S * 1000:.0f} ms)"
            )
    changed = np.r_[gone, moved]
    _append(
        store,
        subject,
        session,
        "edit",
        who,
        reason,
        time,
        "edit_beats",
        channel="beat",
        beats=changed.tolist(),
        beat_t=t[changed].tolist(),
        beat_table=_beat_table_id(t),
        insert_t=added.tolist(),
        delete_t=t[changed].tolist(),
        move=[[float(t[i]), float(n)] for i, n in zip(moved, to, strict=True)],
        window_s=float(window_s),
    )
    if recompute:
        recompute_features(cat, subject, session)
    return _state(cat, store, subject, session)


def confirm_change(
    catalog,
    subject: str,
    session: str,
    event_id: int,
    *,
    agree: bool = True,
    reason: str = "",
    reviewer: str | None = None,
    recompute: bool = True,
    time=None,
) -> ReviewState:
    """Confirm (or reject) another reviewer's change: the second pair of eyes.

    Under ``review: {confirmations: 2}`` in the catalog, a flag or beat edit takes
    effect only once a reviewer other than its author confirms it
    (:func:`change_status`); a rejection makes it a disagreement, listed by
    :func:`pending_changes` and on the Campaign page.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session.
    event_id : int
        The change (a flag, unflag or edit event of the session's trail).
    agree : bool
        ``True`` to confirm, ``False`` to reject.
    reason : str
        Why (free text).
    reviewer : str, optional
        Who (default the operating-system user); not the change's author.
    recompute : bool
        Recompute and store the beats and features now.
    time : optional
        When (default now).

    Returns
    -------
    ReviewState

    Raises
    ------
    CardiolabError
        If the event is not a change of this session, or the reviewer is its author.
    """
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    where = f"{subject} {session}"
    who = _reviewer(reviewer, where, "confirm_change")
    store = derived_store(cat)
    trail = read_trail(store, subject, session)
    row = trail[trail["event_id"] == int(event_id)]
    if not len(row) or row["action"].iloc[0] not in CHANGE_ACTIONS:
        changes = trail.loc[trail["action"].isin(CHANGE_ACTIONS), "event_id"].tolist()
        raise CardiolabError(
            f"{where}: event {event_id} is not a change of the trail (its changes: {changes})"
        )
    if row["reviewer"].iloc[0] == who:
        raise CardiolabError(
            f"{where}: event {event_id} is {who}'s own change: another reviewer confirms it"
        )
    _append(
        store,
        subject,
        session,
        "confirm" if agree else "reject",
        who,
        reason,
        time,
        "confirm_change",
        refers_to=int(event_id),
    )
    if recompute:
        recompute_features(cat, subject, session)
    return _state(cat, store, subject, session)


def _state(cat, store: DerivedStore, subject: str, session: str) -> ReviewState:
    current, _ = _current(cat, store, subject, session)
    trail = read_trail(store, subject, session)
    confirmations = _confirmations(cat)
    trail["status"] = change_status(trail, confirmations) if len(trail) else []
    flags = np.asarray(current["reviewer_flag"].values, dtype=bool)
    attrs = store.session_attrs(subject, session) or {}
    return ReviewState(
        subject=subject,
        session=session,
        trail=trail,
        flags=pd.Series(flags, index=pd.RangeIndex(flags.size, name="beat"), name="reviewer_flag"),
        applied_event=int(attrs.get("review_last_event", 0)),
        unmatched=int(current.attrs.get("review_unmatched", 0)),
        confirmations=confirmations,
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
        ``.trail`` (every event, in order, with its ``status``), ``.flags`` (bool
        per beat of the reviewed table), ``.n_flagged``, ``.pending`` (features not
        yet recomputed since the last event), ``.n_waiting``, ``.n_disagreements``.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session.
    CardiolabError
        If the session has not been processed.

    Examples
    --------
    >>> state = review_state("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    >>> state.trail[["event_id", "time", "reviewer", "action", "status"]]  # doctest: +SKIP
    """
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    return _state(cat, derived_store(cat), subject, session)


def reviewed_beats(catalog, subject: str, session: str) -> xr.Dataset:
    """The beat table of a session with its review applied.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed.

    Returns
    -------
    xarray.Dataset
        Dim ``beat``: the stored beat table when it includes the trail's last event,
        else the detector's table with the trail applied (:func:`apply_review`: beat
        edits, ``reviewer_flag``, ``auto_valid``, ``valid``, channel flags).

    Examples
    --------
    >>> beats = reviewed_beats("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    >>> int(beats["reviewer_flag"].sum())  # doctest: +SKIP
    2
    """
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    return _current(cat, derived_store(cat), subject, session)[0]


def recompute_features(catalog, subject: str, session: str) -> xr.Dataset:
    """Recompute a session's reviewed beats and features and store them.

    The detector's beats are not detected again: the trail is applied to the
    detector's stored table (:func:`write_reviewed_session`); beat edits rebuild the
    per-beat values from the raw signals on the edited R-peaks. Reviewer-flagged beats
    are excluded from every per-beat channel (RR intervals bounded by them, pressures,
    Doppler indices and beat LDF flux), channel flags from that channel only; the LDF
    vasomotion band powers come from the continuous raw LDF and are not affected.

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
        :func:`review_provenance`.

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
    cat = as_catalog(catalog)
    cat.check_session(subject, session)
    store = derived_store(cat)
    with store.lease(subject, session):
        for _ in range(5):  # again if an event was appended while we worked
            detector = _detector_table(store, subject, session)
            attrs = dict(store.session_attrs(subject, session) or {})
            attrs = {k: v for k, v in attrs.items() if k not in _REVIEW_ATTRS}
            node = cat.open_session(subject, session)
            _, feats, attrs = write_reviewed_session(
                cat, store, subject, session, detector, node, attrs
            )
            if last_event_id(store, subject, session) == attrs["review_last_event"]:
                break
    log.info(
        "%s %s: beats and features recomputed with %d reviewer event(s): %d beat(s) "
        "flagged, %d edited",
        subject,
        session,
        attrs["review_events"],
        attrs["review_flagged"],
        attrs["review_edits"],
    )
    return feats


# --- two-reviewer mode: what waits ------------------------------------------------------


def pending_changes(catalog) -> pd.DataFrame:
    """Changes of the whole campaign not in effect: waiting, or rejected by a reviewer.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.

    Returns
    -------
    pandas.DataFrame
        One row per change: ``subject``, ``session``, ``event_id``, ``time``,
        ``reviewer``, ``action``, ``channel``, ``n_beats``, ``reason``, ``status``
        (``pending`` or ``disagreement``), ``confirmed_by`` and ``rejected_by``
        (comma-separated reviewers), ``objection`` (the rejections' reasons).
    """
    cat = as_catalog(catalog)
    store = derived_store(cat)
    confirmations = _confirmations(cat)
    rows = []
    for subject, session in sessions_with_trail(cat, store):
        trail = read_trail(store, subject, session)
        if not len(trail):
            continue
        status = change_status(trail, confirmations)
        answers = trail[trail["action"].isin(["confirm", "reject"])]
        for ev, st in zip(trail.itertuples(index=False), status, strict=True):
            if st not in ("pending", "disagreement"):
                continue
            mine = answers[answers["refers_to"] == ev.event_id]
            rows.append(
                {
                    "subject": subject,
                    "session": session,
                    "event_id": ev.event_id,
                    "time": ev.time,
                    "reviewer": ev.reviewer,
                    "action": ev.action,
                    "channel": ev.channel,
                    "n_beats": ev.n_beats,
                    "reason": ev.reason,
                    "status": st,
                    "confirmed_by": ", ".join(mine.loc[mine["action"] == "confirm", "reviewer"]),
                    "rejected_by": ", ".join(mine.loc[mine["action"] == "reject", "reviewer"]),
                    "objection": "; ".join(mine.loc[mine["action"] == "reject", "reason"]),
                }
            )
    columns = [
        "subject", "session", "event_id", "time", "reviewer", "action", "channel",
        "n_beats", "reason", "status", "confirmed_by", "rejected_by", "objection",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
