"""The reviewers' audit trail as a record: read, checked, exported.

A session's trail is the append-only list of review events that
:mod:`cardiolab.annotations` writes (flags, beat edits, confirmations), each one JSON
object in the derived store, hash-chained (:func:`cardiolab.derived.event_hash`). This
module reads it as a table (:func:`read_trail`), says which changes are in effect
(:func:`change_status`), checks its chain (:func:`verify_events`, :func:`verify_trail`),
also against an earlier export kept elsewhere (:func:`compare_with_export`), and writes
it as CSV or JSON (:func:`export_trail`). What the trail implies for the beats is
:mod:`cardiolab.annotations`'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import __version__
from .catalog import as_catalog
from .derived import as_store, derived_store, event_hash
from .errors import CardiolabError

__all__ = [
    "TRAIL_COLUMNS",
    "change_status",
    "compare_with_export",
    "export_trail",
    "last_event_id",
    "read_trail",
    "sessions_with_trail",
    "verify_events",
    "verify_trail",
]

#: The columns of :func:`read_trail`'s table, in order.
TRAIL_COLUMNS = [
    "event_id",
    "time",
    "reviewer",
    "action",
    "channel",
    "beats",
    "n_beats",
    "reason",
    "beat_t",
    "beat_table",
    "insert_t",
    "delete_t",
    "move",
    "refers_to",
    "cardiolab_version",
    "previous_hash",
    "hash",
]


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


def _floats(values) -> tuple:
    return tuple(float(x) for x in (values or ()))


def _trail_row(attrs: dict) -> dict:
    beats = tuple(int(b) for b in attrs.get("beats", ()))
    return {
        "event_id": int(attrs["event_id"]),
        "time": attrs["time"],
        "reviewer": str(attrs["reviewer"]),
        "action": str(attrs["action"]),
        "channel": str(attrs.get("channel") or "beat"),
        "beats": beats,
        "n_beats": len(beats) + len(attrs.get("insert_t") or ()),
        "reason": str(attrs.get("reason", "")),
        "beat_t": _floats(attrs.get("beat_t")),
        "beat_table": str(attrs.get("beat_table", "")),
        "insert_t": _floats(attrs.get("insert_t")),
        "delete_t": _floats(attrs.get("delete_t")),
        "move": tuple((float(a), float(b)) for a, b in (attrs.get("move") or ())),
        "refers_to": int(attrs.get("refers_to") or 0),
        "cardiolab_version": str(attrs.get("cardiolab_version", "")),
        "previous_hash": str(attrs.get("previous_hash", "")),
        "hash": str(attrs.get("hash", "")),
    }


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
        ``event_id`` (int, from 1), ``time`` (UTC timestamp), ``reviewer``,
        ``action`` (flag, unflag, edit, confirm, reject), ``channel`` (beat, abp,
        doppler, ldf), ``beats`` (tuple of beat indices in the table the reviewer saw),
        ``n_beats`` (beats named plus beats inserted), ``reason``, ``beat_t`` (their
        R-peak times, s), ``beat_table`` (fingerprint of that table), ``insert_t``,
        ``delete_t`` (s), ``move`` (tuple of (old, new) R-peak times, s),
        ``refers_to`` (the event a confirm or reject answers, else 0),
        ``cardiolab_version``, ``previous_hash`` and ``hash`` ("" for events that
        predate the hash chain). No rows when the session has no trail.

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
            rows.append(_trail_row(attrs))
        except (ValueError, KeyError, TypeError) as err:
            raise CardiolabError(
                f"{store.url}: {subject} {session}: unreadable review event "
                f"{attrs.get('event_id', '?')}: {err}"
            ) from None
    trail = pd.DataFrame(rows, columns=TRAIL_COLUMNS)
    trail["time"] = pd.to_datetime(trail["time"], utc=True, format="ISO8601")
    for col in ("event_id", "n_beats", "refers_to"):
        trail[col] = trail[col].astype("int64")
    return trail


def change_status(trail: pd.DataFrame, confirmations: int = 1) -> pd.Series:
    """Whether each event of a trail is in effect, pending, or disputed.

    A change (flag, unflag, edit) is *in effect* once ``confirmations - 1`` reviewers
    other than its author have confirmed it (event ``confirm`` with ``refers_to``) and
    none has rejected it; *pending* while it waits; a *disagreement* once another
    reviewer has rejected it (it is then not in effect, whatever the confirmations).
    With ``confirmations == 1`` every change is in effect unless rejected. A
    confirmation or rejection by the change's own author does not count. This is the
    four-eyes principle of the two-person rule (e.g. EU GMP Annex 11 §12.4 second
    check of critical data entries).

    Parameters
    ----------
    trail : pandas.DataFrame
        :func:`read_trail`'s table (``event_id``, ``action``; ``reviewer`` and
        ``refers_to`` optional).
    confirmations : int
        Reviewers a change needs (1 or more).

    Returns
    -------
    pandas.Series of str
        Same index as ``trail``: ``in effect``, ``pending``, ``disagreement`` for
        changes, ``confirmation`` / ``rejection`` for the answers.

    Examples
    --------
    >>> t = pd.DataFrame({"event_id": [1, 2], "action": ["flag", "confirm"],
    ...                   "reviewer": ["mh", "jd"], "refers_to": [0, 1]})
    >>> change_status(t, 2).tolist()
    ['in effect', 'confirmation']
    """
    actions = trail["action"].astype(str)
    refers = trail["refers_to"] if "refers_to" in trail else pd.Series(0, index=trail.index)
    reviewers = trail["reviewer"] if "reviewer" in trail else pd.Series("", index=trail.index)
    author = dict(zip(trail["event_id"], reviewers, strict=True))
    confirmed: dict[int, set] = {}
    rejected: dict[int, set] = {}
    for act, who, ref in zip(actions, reviewers, refers, strict=True):
        if act in ("confirm", "reject") and author.get(int(ref)) not in (None, who):
            (confirmed if act == "confirm" else rejected).setdefault(int(ref), set()).add(who)
    status = []
    for ev, act in zip(trail["event_id"], actions, strict=True):
        if act == "confirm":
            status.append("confirmation")
        elif act == "reject":
            status.append("rejection")
        elif rejected.get(int(ev)):
            status.append("disagreement")
        elif len(confirmed.get(int(ev), ())) >= confirmations - 1:
            status.append("in effect")
        else:
            status.append("pending")
    return pd.Series(status, index=trail.index, dtype=object, name="status")


def verify_events(events: list[dict]) -> dict:
    """Check the hash chain of a session's stored events (pure).

    Each chained event must hash to its ``hash`` (:func:`cardiolab.derived.event_hash`)
    and name the previous event's hash as its ``previous_hash`` (``""`` for the
    first); ids must run 1, 2, 3 ... without a gap. Events written before the chain
    (no ``hash``) cannot be verified: they make the trail *unchained* (all of them) or
    *partly chained* (a prefix of them; the first chained event still covers the last
    unchained one), never *verified*. An unchained event after a chained one is a
    break. The chain shows any change of a stored event; removing the *last* events
    leaves a shorter valid chain, which :func:`verify_trail` checks against the
    session's provenance (``review_last_event``).

    Parameters
    ----------
    events : list of dict
        The stored events (:meth:`cardiolab.derived.DerivedStore.read_events`), in id
        order.

    Returns
    -------
    dict
        ``status`` ("verified", "unchained", "partly chained", "broken", "empty"),
        ``n_events``, ``first_broken`` (event id, 0 when none), ``message`` and
        ``head``: the last event's hash (SHA-256, hex), ``""`` unless the chain is
        verified or partly chained. Written down elsewhere (a signed report, a mail, a
        lab book), the head lets a later check find a trail rewritten as a whole
        (:func:`verify_trail` ``against=``).

    Examples
    --------
    >>> verify_events([])["status"]
    'empty'
    """
    n = len(events)
    if not n:
        return {
            "status": "empty",
            "n_events": 0,
            "first_broken": 0,
            "message": "no events",
            "head": "",
        }

    unchained = 0
    previous = None
    for i, event in enumerate(events, 1):
        ev_id = event.get("event_id")
        if ev_id != i:
            return _broken(n, i, f"missing or out of order (found id {ev_id!r} in its place)")
        stored = event.get("hash")
        if not stored:
            if previous is not None and previous.get("hash"):
                return _broken(n, i, "has no hash but follows a chained event (hash removed?)")
            unchained += 1
            previous = event
            continue
        if event_hash(event) != stored:
            return _broken(n, i, "content changed since it was written (hash mismatch)")
        expected = "" if previous is None else previous.get("hash") or event_hash(previous)
        if event.get("previous_hash") != expected:
            return _broken(n, i, f"does not follow event {i - 1} (previous_hash mismatch)")
        previous = event
    if unchained == n:
        status, msg = "unchained", f"{n} event(s) written before the hash chain: not verifiable"
    elif unchained:
        status = "partly chained"
        msg = f"events 1-{unchained} predate the hash chain (unchained); {n - unchained} verified"
    else:
        status, msg = "verified", f"{n} event(s), hash chain intact"
    head = str(events[-1].get("hash") or "") if unchained < n else ""
    return {"status": status, "n_events": n, "first_broken": 0, "message": msg, "head": head}


def _broken(n_events: int, event_id: int, why: str) -> dict:
    """A trail check's result for a trail broken at ``event_id`` (:func:`verify_events`)."""
    return {
        "status": "broken",
        "n_events": int(n_events),
        "first_broken": int(event_id),
        "message": f"event {event_id}: {why}",
        "head": "",
    }


def compare_with_export(events: list[dict], exported: list[dict]) -> dict | None:
    """Check that a trail still holds, unchanged, every event of an earlier export.

    The hash chain shows an event changed in place, but a trail rewritten as a whole
    (every hash recomputed) is a valid chain again. An earlier export (or only its
    ``head``, the last hash) kept elsewhere catches that: each exported event must be
    in the trail under the same id with the same hash (events added since are fine).

    Parameters
    ----------
    events : list of dict
        The stored events now, in id order.
    exported : list of dict
        The events of the same session in an earlier JSON export
        (:func:`export_trail`), each with ``event_id`` and ``hash``.

    Returns
    -------
    dict or None
        None when every exported event is there unchanged; else a *broken* result as
        :func:`verify_events` gives, at the first exported event missing or changed.
    """
    now = {int(e.get("event_id", 0)): e for e in events}
    for old in exported:
        ev_id = int(old.get("event_id", 0))
        current = now.get(ev_id)
        why = None
        if current is None:
            why = "in the earlier export, missing now"
        elif not old.get("hash"):
            continue  # unchained in the export: nothing to compare
        elif current.get("hash") != old.get("hash"):
            why = "differs from the earlier export (the trail was rewritten)"
        if why:
            return _broken(len(events), ev_id, why)
    return None


def sessions_with_trail(cat, store) -> list[tuple[str, str]]:
    """``(subject, session)`` of the catalog's sessions that have a trail, in catalog
    order (``cat``: a :class:`~cardiolab.catalog.Catalog`; ``store``: its derived store)."""
    return [
        (s, lab)
        for s, lab in zip(cat.sessions["subject"], cat.sessions["session"], strict=True)
        if store.event_ids(s, lab)
    ]


def _sessions_of(cat, store, subject, session):
    if session is not None and subject is None:
        raise CardiolabError("a session is named by its subject too (subject=...)")
    if subject is not None:
        cat.check_session(subject, session)
        if session is not None:
            return [(subject, session)]
    return [(s, lab) for s, lab in sessions_with_trail(cat, store) if subject in (None, s)]


def verify_trail(
    catalog, subject=None, session=None, *, strict: bool = False, against=None
) -> pd.DataFrame:
    """Verify the hash chain of a session's audit trail, or of every trail of a campaign.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str, optional
        One session (both), one subject's sessions (``subject``), or every session
        with a trail (neither).
    strict : bool
        Raise when a trail is not verified (broken, unchained or partly chained).
    against : str or pathlib.Path, optional
        An earlier JSON export of the trails (:func:`export_trail`): every event it
        holds must still be in the trail, unchanged (:func:`compare_with_export`);
        this catches a trail rewritten as a whole, which its own chain cannot.
        Sessions of the export are checked even when their trail is gone now.

    Returns
    -------
    pandas.DataFrame
        One row per session: ``subject``, ``session``, ``n_events``, ``status``
        (see :func:`verify_events`), ``first_broken`` (the first broken event's id,
        0 when none), ``message`` and ``head`` (the last event's hash, to write down).
        A session whose provenance says more events were applied than the trail holds
        is broken at the first missing event.

    Raises
    ------
    CardiolabError
        With ``strict``, naming the first session and event that fail; an ``against``
        file that is not a cardiolab trail export (naming the file and what is wrong).

    Examples
    --------
    >>> verify_trail("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
      subject session  n_events    status  first_broken                          message
    0     S01     R+1         3  verified             0  3 event(s), hash chain intact
    """
    cat = as_catalog(catalog)
    store = derived_store(cat)
    exported = _read_export(against, subject, session) if against is not None else {}
    sessions = _sessions_of(cat, store, subject, session)
    sessions += sorted(set(exported) - set(sessions))
    rows = []
    for subj, lab in sessions:
        events = store.read_events(subj, lab)
        result = verify_events(events)
        applied = int((store.session_attrs(subj, lab) or {}).get("review_last_event", 0) or 0)
        if result["status"] != "broken" and applied > result["n_events"]:
            result = _broken(
                result["n_events"],
                result["n_events"] + 1,
                f"missing (the stored results applied events up to {applied})",
            )
        if result["status"] != "broken" and (subj, lab) in exported:
            result = compare_with_export(events, exported[(subj, lab)]) or result
        rows.append({"subject": subj, "session": lab, **result})
    table = pd.DataFrame(
        rows,
        columns=["subject", "session", "n_events", "status", "first_broken", "message", "head"],
    )
    if strict:
        bad = table[~table["status"].isin(["verified", "empty"])]
        if len(bad):
            row = bad.iloc[0]
            raise CardiolabError(
                f"{store.url}: review trail of {row['subject']} {row['session']} is "
                f"{row['status']}: {row['message']}"
            )
    return table


def _read_export(path, subject, session) -> dict:
    """``{(subject, session): events}`` of a JSON trail export (:func:`export_trail`),
    for the sessions asked."""
    path = Path(path)
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
        entries = doc["sessions"]
        out = {
            (str(e["subject"]), str(e["session"])): [
                {"event_id": int(ev["event_id"]), "hash": ev.get("hash") or ""}
                for ev in e["events"]
            ]
            for e in entries
        }
    except OSError as err:
        raise CardiolabError(f"{path}: cannot read the earlier trail export ({err})") from None
    except (ValueError, KeyError, TypeError) as err:
        raise CardiolabError(
            f"{path}: not a JSON trail export of cardiolab (`cardiolab trail export "
            f"... x.json`): {type(err).__name__}: {err}"
        ) from None
    return {
        key: events
        for key, events in out.items()
        if (subject is None or key[0] == subject) and (session is None or key[1] == session)
    }


def export_trail(catalog, path, *, subject=None, session=None, format=None) -> Path:
    """Write the audit trail of a session, a subject or the campaign as CSV or JSON.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    path : str or pathlib.Path
        The file to write (replaced if it exists).
    subject, session : str, optional
        As for :func:`verify_trail`.
    format : {"csv", "json"}, optional
        Default from the suffix of ``path``.

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    JSON (UTF-8): ``{"campaign", "exported", "cardiolab_version", "sessions": [{"subject",
    "session", "verification": {...}, "events": [...]}]}`` with each event exactly as
    stored, so that the chain can be verified again from the file
    (:func:`verify_events`). CSV (RFC 4180, UTF-8): one row per event, ``subject``,
    ``session`` and the columns of :func:`read_trail` (time in UTC ISO 8601; tuples of
    beats and times as space-separated numbers; moves as ``old>new``), plus
    ``chain_status`` of the session.

    Raises
    ------
    CardiolabError
        If the format is neither CSV nor JSON.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise CardiolabError(f"{path}: export the trail as .csv or .json, not {fmt!r}")
    cat = as_catalog(catalog)
    store = derived_store(cat)
    checks = verify_trail(cat, subject, session)
    if fmt == "json":
        doc = {
            "campaign": cat.campaign.name,
            "exported": pd.Timestamp.now(tz="UTC").isoformat(),
            "cardiolab_version": __version__,
            "sessions": [
                {
                    "subject": row.subject,
                    "session": row.session,
                    "verification": {
                        k: getattr(row, k) for k in ("status", "first_broken", "message", "head")
                    },
                    "events": store.read_events(row.subject, row.session),
                }
                for row in checks.itertuples(index=False)
            ],
        }
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str), "utf-8")
        return path
    frames = []
    for row in checks.itertuples(index=False):
        trail = read_trail(store, row.subject, row.session)
        trail.insert(0, "session", row.session)
        trail.insert(0, "subject", row.subject)
        trail["chain_status"] = row.status
        frames.append(trail)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["subject", "session", *TRAIL_COLUMNS, "chain_status"]
    )  # fmt: skip
    table["time"] = pd.to_datetime(table["time"], utc=True).map(lambda x: x.isoformat())
    for col in ("beats", "beat_t", "insert_t", "delete_t"):
        table[col] = table[col].map(lambda v: " ".join(repr(x) for x in v))
    table["move"] = table["move"].map(lambda v: " ".join(f"{a!r}>{b!r}" for a, b in v))
    table.to_csv(path, index=False, encoding="utf-8")
    return path
