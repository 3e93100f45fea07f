"""Session labels of spaceflight and bed-rest schedules, parsed both ways.

Spaceflight schedules name sessions relative to launch and landing:

=========  ======  ==========================================================
label      phase   day
=========  ======  ==========================================================
``L-30``   pre     -30 (days before launch)
``FD12``   in      12 (flight day 12, counted from launch)
``R+3``    post    3 (days after landing)
``R+0``    post    0 (landing day)
``R+4h``   post    4/24 (sub-day time on landing day: hours after landing)
=========  ======  ==========================================================

Bed-rest (head-down tilt) schedules use ``BDC-9`` (baseline data collection, pre,
-9), ``HDT21`` (in, 21) and ``R+4`` (post, 4). Confinement campaigns use the
spaceflight labels.

The day is in days relative to the phase anchor: launch (or the start of bed rest)
for ``pre`` and ``in``, landing (or the end of bed rest) for ``post``. Sessions run in
schedule order, :func:`schedule_order`: phase (pre, in, post), then day, then label.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from .errors import CardiolabError

__all__ = [
    "PHASES",
    "CAMPAIGN_KINDS",
    "SessionLabel",
    "parse_session_label",
    "format_session_label",
    "schedule_order",
]

PHASES = ("pre", "in", "post")
CAMPAIGN_KINDS = ("spaceflight", "bedrest", "confinement")

_PATTERNS = [
    # (regex, phase, kind, sign)
    (re.compile(r"^L-(\d+(?:\.\d+)?)$"), "pre", "spaceflight", -1),
    (re.compile(r"^FD(\d+(?:\.\d+)?)$"), "in", "spaceflight", 1),
    (re.compile(r"^BDC-(\d+(?:\.\d+)?)$"), "pre", "bedrest", -1),
    (re.compile(r"^HDT(\d+(?:\.\d+)?)$"), "in", "bedrest", 1),
    (re.compile(r"^R\+(\d+(?:\.\d+)?)$"), "post", None, 1),
]
_HOURS = re.compile(r"^R\+(\d+(?:\.\d+)?)h$")

_PREFIX = {
    ("pre", "spaceflight"): "L-",
    ("in", "spaceflight"): "FD",
    ("pre", "bedrest"): "BDC-",
    ("in", "bedrest"): "HDT",
}


class SessionLabel(NamedTuple):
    """A parsed session label.

    Attributes
    ----------
    label : str
        The label as written (canonical form).
    phase : str
        ``"pre"``, ``"in"`` or ``"post"``.
    day : float
        Days relative to the phase anchor (launch for pre/in, landing for post).
        Sub-day times after landing are fractions of a day (``R+6h`` is 0.25).
    kind : str or None
        ``"spaceflight"`` or ``"bedrest"`` where the label tells; ``None`` for
        post-phase labels, which both schedules share.
    """

    label: str
    phase: str
    day: float
    kind: str | None


class LabelError(CardiolabError, ValueError):
    """A session label that no schedule knows."""


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_session_label(label: str) -> SessionLabel:
    """Parse a session label into its phase and day.

    Parameters
    ----------
    label : str
        A label such as ``"L-30"``, ``"FD12"``, ``"R+3"``, ``"R+4h"``, ``"BDC-9"`` or
        ``"HDT21"``.

    Returns
    -------
    SessionLabel
        ``(label, phase, day, kind)``; ``day`` in days.

    Raises
    ------
    LabelError
        If the label fits no known schedule.

    Examples
    --------
    >>> parse_session_label("L-30")
    SessionLabel(label='L-30', phase='pre', day=-30, kind='spaceflight')
    >>> parse_session_label("R+6h").day
    0.25
    """
    if not isinstance(label, str):
        raise LabelError(f"session label must be a string, got {label!r}")
    text = label.strip()
    m = _HOURS.match(text)
    if m:
        hours = float(m.group(1))
        if hours >= 24:
            raise LabelError(
                f"session label {label!r}: sub-day times after landing must be under "
                f"24 h; write R+{int(hours // 24)} for later days"
            )
        return SessionLabel(text, "post", hours / 24.0, None)
    for pattern, phase, kind, sign in _PATTERNS:
        m = pattern.match(text)
        if m:
            return SessionLabel(text, phase, sign * _number(m.group(1)), kind)
    raise LabelError(
        f"unknown session label {label!r}: expected L-<days>, FD<day>, R+<days>, "
        "R+<hours>h, BDC-<days> or HDT<day>"
    )


def _format_number(value: float) -> str:
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return f"{value:g}"


def format_session_label(phase: str, day: float, kind: str = "spaceflight") -> str:
    """Write the canonical session label for a phase and day.

    Parameters
    ----------
    phase : {"pre", "in", "post"}
        Mission phase.
    day : float
        Days relative to the phase anchor; must be <= 0 before launch and >= 0 in
        flight and after landing. A post-flight day under 1 that is not 0 is written
        in hours (``R+6h`` for 0.25 d).
    kind : {"spaceflight", "bedrest", "confinement"}
        The schedule the label belongs to.

    Returns
    -------
    str

    Examples
    --------
    >>> format_session_label("in", 12)
    'FD12'
    >>> format_session_label("pre", -9, kind="bedrest")
    'BDC-9'
    """
    if phase not in PHASES:
        raise LabelError(f"unknown phase {phase!r}: expected one of {PHASES}")
    if kind not in CAMPAIGN_KINDS:
        raise LabelError(f"unknown campaign kind {kind!r}: expected one of {CAMPAIGN_KINDS}")
    if not math.isfinite(day):
        raise LabelError(f"day must be finite, got {day!r}")
    schedule = "bedrest" if kind == "bedrest" else "spaceflight"
    if phase == "post":
        if day < 0:
            raise LabelError(f"post-phase day must be >= 0, got {day}")
        if 0 < day < 1:
            return f"R+{_format_number(round(day * 24, 6))}h"
        return f"R+{_format_number(day)}"
    if phase == "pre":
        if day > 0:
            raise LabelError(f"pre-phase day must be <= 0, got {day}")
        return f"{_PREFIX[(phase, schedule)]}{_format_number(-day)}"
    if day < 0:
        raise LabelError(f"in-phase day must be >= 0, got {day}")
    return f"{_PREFIX[(phase, schedule)]}{_format_number(day)}"


def _schedule_key(label: str, phase, day, where: str) -> tuple:
    """Sort key of a session: phase rank, then day (a missing day last), then label."""
    if phase not in PHASES:
        raise LabelError(f"{where}: unknown phase {phase!r}: expected one of {PHASES}")
    day = float(day)
    missing = math.isnan(day)
    return (PHASES.index(phase), missing, 0.0 if missing else day, label)


def schedule_order(sessions) -> list[str]:
    """Session labels in schedule order: by phase (pre < in < post), then day, then label.

    Parameters
    ----------
    sessions : iterable of str, or pandas.DataFrame
        Session labels (``"L-30"``, ``"FD12"``, ``"R+6h"``...), each parsed with
        :func:`parse_session_label` for its phase and day; or a table with columns
        ``session``, ``phase`` and ``day`` (days from the phase anchor), one row or more
        per session (a features table, a campaign status table): each session's phase
        and day are those of its first row with a value, as the table says (its labels
        are not parsed).

    Returns
    -------
    list of str
        Every session label once (as given), in schedule order. A session whose day is
        missing (NaN) comes last in its phase; labels of the same phase and day in
        alphabetical order.

    Raises
    ------
    LabelError
        A label no schedule knows; a string instead of a list of labels; a table
        without a ``session``, ``phase`` or ``day`` column, or with an unknown phase
        (the session is named).

    Examples
    --------
    >>> schedule_order(["R+3", "FD12", "L-30", "R+6h", "L-60", "R+3"])
    ['L-60', 'L-30', 'FD12', 'R+6h', 'R+3']
    >>> import pandas as pd
    >>> table = pd.DataFrame({"session": ["R+1", "pre1", "R+1", "FD5"],
    ...                       "phase": ["post", "pre", "post", "in"],
    ...                       "day": [1, -10, 1, 5]})
    >>> schedule_order(table)
    ['pre1', 'FD5', 'R+1']
    """
    if isinstance(sessions, str):
        raise LabelError(
            f"schedule_order needs a list of session labels, not the string {sessions!r}"
        )
    if hasattr(sessions, "columns"):  # a table: phase and day as it gives them
        missing = [c for c in ("session", "phase", "day") if c not in sessions.columns]
        if missing:
            raise LabelError(f"schedule_order: the table has no column(s) {missing}")
        first = sessions.groupby("session", sort=False)[["phase", "day"]].first()
        keys = {
            str(label): _schedule_key(str(label), phase, day, f"session {label!r}")
            for label, phase, day in zip(first.index, first["phase"], first["day"], strict=True)
        }
    else:
        keys = {}
        for label in sessions:
            parsed = parse_session_label(label)
            keys[str(label)] = _schedule_key(str(label), parsed.phase, parsed.day, repr(label))
    return sorted(keys, key=keys.__getitem__)
