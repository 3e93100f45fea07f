"""Session review page: the linked signal view, the beat table, and beat flagging.

A reviewer picks a subject and a session, looks at the signals (ECG with R-peaks,
pressure with SBP/DBP, LDF, Doppler, epochs shaded), selects beats on the beat plot
(tap or box select) or types their numbers, and flags them as artefacts (or unflags
them). Each change is appended to the session's audit trail in the derived store
(:mod:`cardiolab.annotations`: reviewer, time, beats; the raw data is never touched)
and the session's features are recomputed on the spot.
"""

from __future__ import annotations

import getpass
import logging
import re

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from ..errors import CardiolabError
from .app import escape_markdown, holoviews_pane

log = logging.getLogger("cardiolab")

__all__ = ["SessionReview", "parse_beat_list"]

_BEAT_VARIABLES = ["rr", "hr", "sbp", "dbp", "map", "flux"]
_FEATURE_COLUMNS = ["hr", "sdnn", "rmssd", "lf", "hf", "sbp", "dbp", "map", "brs", "flux", "cvc"]


def parse_beat_list(text: str) -> list[int]:
    """Beat numbers typed by a reviewer: ``"12, 15-18 40"`` -> [12, 15, 16, 17, 18, 40].

    Raises
    ------
    CardiolabError
        On anything that is not a number or a range ``a-b`` with ``a <= b``.
    """
    beats: list[int] = []
    for token in re.split(r"[\s,;]+", text.strip()):
        if not token:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not m:
            raise CardiolabError(f"beat list: {token!r} is not a beat number or a range a-b")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise CardiolabError(f"beat list: range {token!r} runs backwards")
        beats.extend(range(lo, hi + 1))
    return sorted(set(beats))


def _default_reviewer() -> str:
    user = pn.state.user
    if user and user != "guest":
        return str(user)
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return ""


class SessionReview(pn.viewable.Viewer):
    """The session review page of the dashboard (also usable inline in a notebook).

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        A processed campaign.
    subject, session : str, optional
        What to show first (default: the first processed session).
    """

    subject = param.Selector(doc="Subject code")
    session = param.Selector(doc="Session label")
    variable = param.Selector(
        default="rr", objects=_BEAT_VARIABLES, doc="Beat variable to select on"
    )
    reviewer = param.String(default="", doc="Who flags (stored with each change)")
    beat_text = param.String(default="", doc="Beat numbers to flag, e.g. 12, 15-18")

    def __init__(self, catalog, subject=None, session=None, **params):
        from ..catalog import Catalog, open_catalog

        self._cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        sessions = self._cat.sessions
        subjects = list(dict.fromkeys(sessions["subject"]))
        super().__init__(**params)
        self.param.subject.objects = subjects
        self.reviewer = self.reviewer or _default_reviewer()
        self._selection = hv.streams.Selection1D()
        # text quoting the data (names, errors) is escaped (escape_markdown)
        self._message = pn.pane.Alert(
            "", alert_type="light", visible=False, sizing_mode="stretch_width", disable_math=True
        )
        self._summary = pn.pane.Markdown("", sizing_mode="stretch_width", disable_math=True)
        self._signals = holoviews_pane(None, sizing_mode="stretch_width", linked_axes=False)
        self._points = holoviews_pane(None, sizing_mode="stretch_width", linked_axes=False)
        self._features = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width", height=140
        )
        self._beats_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            pagination="remote",
            page_size=15,
            show_index=False,
            sizing_mode="stretch_width",
        )
        self._trail = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width", height=160
        )
        self._flag = pn.widgets.Button(name="Flag selected beats", button_type="danger")
        self._unflag = pn.widgets.Button(name="Unflag selected beats", button_type="success")
        self._flag.on_click(lambda event: self._apply(True))
        self._unflag.on_click(lambda event: self._apply(False))
        self._beats = None
        self._tabs = pn.Tabs(
            ("Features", self._features),
            ("Beat table", self._beats_table),
            ("Audit trail", self._trail),
            dynamic=True,  # only the visible table is sent to the browser
        )
        #: filled after the first paint (see _load)
        self._deferred = [self._points, self._tabs]
        # set the first subject and session without firing the watchers: the page is
        # loaded once below (the watchers would load it twice, ~1 s each on a long session)
        with param.parameterized.discard_events(self):
            self.subject = subject if subject in subjects else subjects[0] if subjects else None
            self._update_sessions()
            if session is not None and session in self.param.session.objects:
                self.session = session
        self._load(first=True)

    # --- data -----------------------------------------------------------------------
    @param.depends("subject", watch=True)
    def _update_sessions(self):
        rows = self._cat.sessions[self._cat.sessions["subject"] == self.subject]
        labels = list(rows["session"])
        self.param.session.objects = labels
        if self.session not in labels:
            # prefer the first processed session
            from ..pipeline import campaign_status

            status = campaign_status(self._cat)
            done = status[(status["subject"] == self.subject) & (status["status"] == "processed")]
            self.session = done["session"].iloc[0] if len(done) else (labels[0] if labels else None)

    @param.depends("session", watch=True)
    def _load(self, first=False):
        """Show the chosen session.

        On the first page of a served app the beat plot and the tables are filled
        once the browser has drawn the page (``pn.state.onload``): the signals paint
        first (1-hour session: 2.5 s instead of 2.9 s), the rest follows (complete at
        3.4 s). Building them while the browser loads the page (next tick) only moved
        the time about, on two cores. In a notebook they are built at once.
        """
        from ..annotations import review_state, reviewed_beats

        self._selection.event(index=[])
        if self.subject is None or self.session is None:
            return
        try:
            node = self._cat.open_session(self.subject, self.session)
            beats = reviewed_beats(self._cat, self.subject, self.session)
            view = self._signal_view(node, beats)
        except CardiolabError as err:
            # never leave the last session's plots under this session's name
            self._beats = None
            self._signals.object = None
            self._points.object = None
            self._say(f"{self.subject} {self.session}: {err}", "warning")
            return
        self._node = node
        self._beats = beats
        self._say("", None)
        self._signals.object = view
        subject, session = self.subject, self.session

        def rest():
            self._refresh(review_state(self._cat, subject, session))
            for part in self._deferred:
                part.loading = False

        if first:
            for part in self._deferred:
                part.loading = True
            pn.state.onload(rest)
        else:
            rest()

    def _signal_view(self, node, beats):
        """The session's signals; a beat-level session (R-R or beat-to-beat export, no
        waveform) shows its beat series instead, titled as the signals are."""
        from ..schema import RAW_GROUPS
        from ..viz import beat_series, session_view

        if any(group in node.children for group in RAW_GROUPS):
            return session_view(node, beats)
        shown = [v for v in ("rr", "sbp", "dbp") if np.isfinite(beats[v].values).any()]
        title = f"{self.subject}/{self.session} (beat-level session: no waveform)"
        return beat_series(beats, shown).opts(title=title)

    @param.depends("variable", watch=True)
    def _draw_points(self):
        from ..viz import beat_points

        if self._beats is None:
            return
        points = beat_points(self._beats, self.variable).opts(
            tools=["tap", "box_select", "hover"],
            active_tools=["box_select"],
            responsive=True,
            height=220,
        )
        flagged = self._beats["reviewer_flag"].values.astype(bool)
        t = self._beats["t"].values
        y = self._beats[self.variable].values
        marks = hv.Scatter(
            (t[flagged], y[flagged]), points.kdims, points.vdims[:1], label="flagged by reviewer"
        ).opts(color="red", marker="x", size=10, line_width=2)
        self._selection = hv.streams.Selection1D(source=points)
        self._points.object = (points * marks).opts(show_legend=True)

    def _refresh(self, state):
        from ..pipeline import read_session_results

        beats = self._beats
        self._draw_points()
        table = pd.DataFrame(
            {
                "beat": np.arange(beats.sizes["beat"]),
                "t (s)": beats["t"].values.round(3),
                "epoch": beats["epoch"].values.astype(str),
                **{
                    f"{v} ({beats[v].attrs.get('units', '')})": beats[v].values.round(2)
                    for v in ("rr", "hr", "sbp", "dbp", "map", "flux")
                    if v in beats
                },
                "auto_valid": beats["auto_valid"].values.astype(bool),
                "reviewer_flag": beats["reviewer_flag"].values.astype(bool),
            }
        )
        self._beats_table.value = table
        feats = read_session_results(
            self._cat.derived_path,
            self.subject,
            self.session,
            storage_options=self._cat.storage_options,
        )
        if feats is not None:
            cols = [c for c in _FEATURE_COLUMNS if c in feats]
            df = feats[cols].to_dataframe().reset_index()
            df.columns = [
                c if c == "epoch" else f"{c} ({feats[c].attrs.get('units', '')})"
                for c in df.columns
            ]
            self._features.value = df.round(2)
        trail = state.trail
        if len(trail):
            trail = trail[["event_id", "time", "reviewer", "action", "n_beats", "reason"]].copy()
            trail["time"] = trail["time"].astype(str)
        self._trail.value = pd.DataFrame(trail)
        n = beats.sizes["beat"]
        attrs = self._node.attrs
        subject, session, phase, day = map(
            escape_markdown, (self.subject, self.session, attrs.get("phase"), attrs.get("day"))
        )
        self._summary.object = (
            f"**{subject} {session}** ({phase}, day {day}): {n} beats, "
            f"{int((~beats['auto_valid'].values.astype(bool)).sum())} rejected by the detector, "
            f"**{state.n_flagged} flagged by reviewers** in {len(state.trail)} change(s)."
        )

    # --- actions --------------------------------------------------------------------
    def _say(self, text, kind):
        """Show ``text`` (plain text: escaped, it may quote the data) in the message bar."""
        self._message.object = escape_markdown(text)
        self._message.alert_type = kind or "light"
        self._message.visible = bool(text)

    def selected_beats(self) -> list[int]:
        """Beats selected on the plot plus those typed in the beat box."""
        chosen = set(int(i) for i in (self._selection.index or []))
        chosen |= set(parse_beat_list(self.beat_text)) if self.beat_text.strip() else set()
        return sorted(chosen)

    def _apply(self, flagged: bool):
        from ..annotations import flag_beats, recompute_features, review_state

        try:
            beats = self.selected_beats()
            if not beats:
                raise CardiolabError("select beats on the plot or type their numbers first")
            if not self.reviewer.strip():
                raise CardiolabError("enter the reviewer's name first: every change is signed")
            with self._features.param.update(loading=True):
                flag_beats(
                    self._cat,
                    self.subject,
                    self.session,
                    beats,
                    reviewer=self.reviewer.strip(),
                    flagged=flagged,
                )
                recompute_features(self._cat, self.subject, self.session)
        except CardiolabError as err:
            self._say(str(err), "danger")
            return
        from ..annotations import reviewed_beats

        self._beats = reviewed_beats(self._cat, self.subject, self.session)
        self.beat_text = ""
        self._refresh(review_state(self._cat, self.subject, self.session))
        verb = "flagged" if flagged else "unflagged"
        self._say(
            f"{len(beats)} beat(s) {verb} by {self.reviewer.strip()}; features recomputed.",
            "success",
        )

    def __panel__(self):
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.subject, width=120),
            pn.widgets.Select.from_param(self.param.session, width=120),
            pn.widgets.Select.from_param(self.param.variable, name="beat variable", width=130),
            pn.widgets.TextInput.from_param(self.param.reviewer, width=160),
            pn.widgets.TextInput.from_param(
                self.param.beat_text, name="beats (e.g. 12, 15-18)", width=200
            ),
            pn.Column(self._flag, self._unflag),
        )
        return pn.Column(
            "## Session review",
            controls,
            self._message,
            self._summary,
            self._signals,
            "### Beats (tap or box-select to choose beats to flag)",
            self._points,
            self._tabs,
            sizing_mode="stretch_width",
        )
