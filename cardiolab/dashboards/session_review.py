"""Session review page: the linked signal view, the beat table, beat flags and edits.

A reviewer picks a subject and a session, looks at the signals (ECG with R-peaks,
pressure with SBP/DBP, LDF, Doppler, epochs shaded), selects beats on the beat plot
(tap or box select) or types their numbers, and flags them as artefacts (the whole
beat, or one channel's values), deletes them, nudges a beat's R-peak earlier or later,
or clicks on the ECG to add a missed beat (placed on the local maximum) or to move the
selected beat there. Each change is one signed event of the session's audit trail in
the derived store (:mod:`cardiolab.annotations`; raw data and the detector's output
are never touched) and the session's beat table and features are recomputed on the
spot.

In two-reviewer mode (catalog ``review: {confirmations: 2}``) a change waits for a second
reviewer: the page lists the session's changes awaiting confirmation, each named by
:func:`describe_change`, to confirm or reject. Beat numbers and change ids are those of
the beats and trail the page shows, so a change made on a page that another reviewer's
change has made stale is refused, and the page brought up to date first.

Who signs is not typed on the page: it is the signed-in user when the server has a
login, else the operating-system user of the server process (:func:`page_reviewer`),
shown above the controls.
"""

from __future__ import annotations

import logging
import re

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from ..errors import CardiolabError
from ..formatting import format_day
from ..reports import session_report
from .app import escape_markdown, holoviews_pane
from .report_download import report_download

log = logging.getLogger("cardiolab")

__all__ = ["NUDGE_S", "SessionReview", "describe_change", "page_reviewer", "parse_beat_list"]

_BEAT_VARIABLES = ["rr", "hr", "sbp", "dbp", "map", "flux"]
#: One press of a nudge button moves the selected beat's R-peak by this much (s).
NUDGE_S = 0.004
#: What a click on the ECG does.
_CLICK_MODES = ["select beats", "insert a beat", "move the selected beat here"]
#: Legend of the beat plot: label -> (colour, marker).
_LEGEND = {
    "kept beat": ("#1f3b73", "circle"),
    "rejected by the detector": ("red", "circle"),
    "flagged by a reviewer": ("red", "x"),
    "added or moved by a reviewer": ("#2ca02c", "triangle"),
}
#: Two-reviewer mode: the beats a change awaiting confirmation names (colour, marker).
_PENDING = ("awaiting a second reviewer", ("#ff7f0e", "square"))
#: What the list of changes awaiting a second reviewer shows when there is none.
_NONE_WAITING = "none: no change of this session awaits confirmation"
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


def describe_change(event) -> str:
    """One line naming a change of an audit trail, for the reviewer who confirms it.

    Parameters
    ----------
    event : mapping or pandas.Series
        A row of :func:`cardiolab.annotations.read_trail` (``event_id``, ``reviewer``,
        ``action``, ``channel``, ``beats``, ``beat_t``, ``insert_t``, ``move``,
        ``reason``).

    Returns
    -------
    str
        E.g. ``"change 3 by alice: flag beat 33 (35.234 s), reason: artefact"``; an
        edit names the beats it deletes, the times it inserts at and the moves. Beat
        numbers are those of the beat table the change was made on; the R-peak times
        (s) name the beats whatever changed since.
    """
    action = str(event["action"])
    if action == "edit":
        moves = list(event["move"])
        n_deleted = len(event["beats"]) - len(moves)
        parts = [
            f"delete beat {b} ({t:.3f} s)"
            for b, t in zip(event["beats"][:n_deleted], event["beat_t"][:n_deleted], strict=True)
        ]
        parts += [f"insert a beat at {t:.3f} s" for t in event["insert_t"]]
        parts += [f"move the beat at {a:.3f} s to {b:.3f} s" for a, b in moves]
        what = ", ".join(parts)
    else:
        beats = ", ".join(
            f"{b} ({t:.3f} s)" for b, t in zip(event["beats"], event["beat_t"], strict=True)
        )
        scope = "" if event["channel"] == "beat" else f" {event['channel']} values of"
        what = f"{action}{scope} beat {beats}"
    reason = f", reason: {event['reason']}" if event["reason"] else ""
    return f"change {int(event['event_id'])} by {event['reviewer']}: {what}{reason}"


def page_reviewer() -> tuple[str, str]:
    """Who signs the changes made on this page, and why it is that user.

    Returns
    -------
    (str, str)
        The signed-in user (``pn.state.user``) when the server has a login, else the
        operating-system user of the server process
        (:func:`cardiolab.annotations.default_reviewer`); and a phrase saying which.

    Raises
    ------
    CardiolabError
        If there is no login and the process has no user name.
    """
    from ..annotations import default_reviewer

    user = pn.state.user
    if user and user != "guest":
        return str(user), "signed-in user"
    return default_reviewer(), "operating-system user of the server; no login"


def _outcome(state) -> str:
    """What the last event of a review did to the beats, said to the reviewer."""
    last = state.trail.iloc[-1]
    if last["action"] in ("confirm", "reject"):
        answered = state.trail[state.trail["event_id"] == last["refers_to"]]
        status = answered["status"].iloc[0] if len(answered) else ""
    else:
        status = last["status"]
    if status == "pending":
        return (
            "awaiting confirmation by another reviewer: the beats and features are "
            "unchanged until then."
        )
    if status == "disagreement":
        return (
            "a disagreement (listed on the Campaign page): it has no effect on the beats "
            "and features."
        )
    # with one reviewer every change is in effect at once: nothing to say about it
    return ("in effect: " if state.confirmations > 1 else "") + "beats and features recomputed."


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
    beat_text = param.String(default="", doc="Beat numbers to flag, e.g. 12, 15-18")
    channel = param.Selector(
        default="beat", objects=["beat", "abp", "doppler", "ldf"], doc="What a flag voids"
    )
    reason = param.String(default="", doc="Why (stored with each change)")
    click_mode = param.Selector(
        default=_CLICK_MODES[0], objects=_CLICK_MODES, doc="What a click on the ECG does"
    )
    change_id = param.Integer(default=0, bounds=(0, None), doc="A change of the audit trail")

    def __init__(self, catalog, subject=None, session=None, **params):
        from ..catalog import as_catalog

        self._cat = as_catalog(catalog)
        sessions = self._cat.sessions
        subjects = list(dict.fromkeys(sessions["subject"]))
        super().__init__(**params)
        self.param.subject.objects = subjects
        try:
            self._reviewer, why = page_reviewer()
            signer = f"Changes are signed by **{escape_markdown(self._reviewer)}** ({why})."
        except CardiolabError as err:
            self._reviewer = None
            signer = f"No one to sign changes: {escape_markdown(err)}"
        self._signer = pn.pane.Markdown(signer, disable_math=True, margin=(0, 10))
        # the shown session's report: plots, features, provenance, audit trail
        self._report = report_download(
            lambda: session_report(self._cat, self.subject, self.session),
            lambda: f"report_{self.subject}_{self.session}.html",
        )
        self._selection = hv.streams.Selection1D()
        self._tap = None
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
        self._delete = pn.widgets.Button(name="Delete selected beats", button_type="warning")
        self._earlier = pn.widgets.Button(name=f"◀ {NUDGE_S * 1000:.0f} ms", width=80)
        self._later = pn.widgets.Button(name=f"{NUDGE_S * 1000:.0f} ms ▶", width=80)
        self._flag.on_click(lambda event: self._apply(True))
        self._unflag.on_click(lambda event: self._apply(False))
        self._delete.on_click(lambda event: self._delete_selected())
        self._earlier.on_click(lambda event: self._nudge(-NUDGE_S))
        self._later.on_click(lambda event: self._nudge(NUDGE_S))
        # two-reviewer mode: confirm or reject another reviewer's change
        self._confirm = pn.widgets.Button(name="Confirm change", button_type="success")
        self._reject = pn.widgets.Button(name="Reject change", button_type="danger")
        self._confirm.on_click(lambda event: self.answer_change(True))
        self._reject.on_click(lambda event: self.answer_change(False))
        # the changes awaiting confirmation, each named (describe_change): the one chosen
        # is change_id
        self._waiting = pn.widgets.Select(
            name="change awaiting a second reviewer", options={}, width=520
        )
        self._waiting.param.watch(lambda e: setattr(self, "change_id", int(e.new or 0)), "value")
        #: the last trail event this page shows (a change is refused if the trail has moved on)
        self._shown_event = 0
        #: R-peak times (s) of the beats named by changes awaiting a second reviewer
        self._pending_t: list[float] = []
        self._beats = None
        self._built = False
        self._tabs = pn.Tabs(
            ("Features", self._features),
            ("Beat table", self._beats_table),
            ("Audit trail", self._trail),
            # not dynamic: Panel 1.9's dynamic Tabs draws a spacer as tall as each hidden
            # table above the shown one (a blank ~200 px gap above the Features table);
            # the beat table is paginated on the server, so all three are small
            dynamic=False,
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
        self._built = True

    # --- data -----------------------------------------------------------------------
    @param.depends("subject", watch=True)
    def _update_sessions(self):
        rows = self._cat.sessions[self._cat.sessions["subject"] == self.subject]
        labels = list(rows["session"])
        self.param.session.objects = labels
        if self.session in labels:
            # the same label of another subject: no session event, so load it here
            # (not while the page is built: it loads once, at the end of __init__)
            if self._built:
                self._load()
        else:
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
        waveform) shows its beat series instead, titled as the signals are. A click on
        the ECG panel inserts or moves a beat (``click_mode``)."""
        from ..schema import RAW_GROUPS
        from ..viz import beat_series, session_view

        self._tap = hv.streams.Tap(x=None, y=None)
        self._tap.add_subscriber(self._on_ecg_click)
        if any(group in node.children for group in RAW_GROUPS):
            return session_view(node, beats, ecg_streams=[self._tap])
        shown = [v for v in ("rr", "sbp", "dbp") if np.isfinite(beats[v].values).any()]
        title = f"{self.subject}/{self.session} (beat-level session: no waveform)"
        return beat_series(beats, shown).opts(title=title)

    @param.depends("variable", watch=True)
    def _draw_points(self):
        """The beat plot: every beat selectable (row ``i`` is beat ``i``), reviewer
        flags and edits marked on top, and a legend with a marker for each kind."""
        from ..viz import beat_points

        if self._beats is None:
            return
        points = beat_points(self._beats, self.variable)
        points = points.relabel("").opts(
            tools=["tap", "box_select", "hover"],
            active_tools=["box_select"],
            responsive=True,
            height=220,
        )
        t = self._beats["t"].values
        y = self._beats[self.variable].values
        if y.ndim > 1:
            y = y[:, 0]
        flagged = self._beats["reviewer_flag"].values.astype(bool)
        edited = (
            self._beats["beat_edit"].values != 0
            if "beat_edit" in self._beats
            else np.zeros(t.size, dtype=bool)
        )
        masks = {
            "kept beat": np.zeros(t.size, dtype=bool),  # legend only: the points show them
            "rejected by the detector": np.zeros(t.size, dtype=bool),
            "flagged by a reviewer": flagged,
            "added or moved by a reviewer": edited,
        }
        legend = dict(_LEGEND)
        if self._cat.model.review.confirmations > 1:
            masks[_PENDING[0]] = self._pending_beats(t)
            legend[_PENDING[0]] = _PENDING[1]
        layers = [points]
        for label, (color, marker) in legend.items():
            mask = masks[label]
            # bokeh draws no legend marker for a glyph without data: a layer with no
            # beat of its kind holds one point off the plot (NaN), for its legend entry
            xy = (t[mask], y[mask]) if mask.any() else ([np.nan], [np.nan])
            size = {"circle": 5, "square": 13}.get(marker, 10)
            fill = {} if marker in ("circle", "x") else {"fill_alpha": 0.0}
            layers.append(
                hv.Scatter(xy, points.kdims, points.vdims[:1], label=label).opts(
                    color=color, marker=marker, size=size, line_width=2, **fill
                )
            )
        overlay = hv.Overlay(layers).opts(show_legend=True, legend_position="right")
        self._selection = hv.streams.Selection1D(source=points)
        self._points.object = overlay

    def _pending_beats(self, t: np.ndarray) -> np.ndarray:
        """Which beats of the table (R-peak times ``t``, s) a change awaiting a second
        reviewer names (by R-peak time,
        :func:`~cardiolab.annotations.match_beat_times`): the beats it flags, deletes
        or moves. Boolean, one per beat."""
        from ..annotations import match_beat_times

        out = np.zeros(t.size, dtype=bool)
        out[match_beat_times(t, np.asarray(self._pending_t, dtype=float))[0]] = True
        return out

    def _refresh(self, state):
        from ..pipeline import read_session_results

        beats = self._beats
        trail = state.trail
        waiting = trail[trail["status"] == "pending"] if len(trail) else trail
        self._pending_t = [float(x) for times in waiting.get("beat_t", []) for x in times]
        self._draw_points()
        columns = {
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
        for channel in ("abp", "doppler", "ldf"):
            if f"reviewer_flag_{channel}" in beats:
                columns[f"{channel} flag"] = beats[f"reviewer_flag_{channel}"].values.astype(bool)
        if "beat_edit" in beats:
            columns["edit"] = np.asarray(["", "inserted", "moved"], dtype=object)[
                beats["beat_edit"].values.astype(int)
            ]
        self._beats_table.value = pd.DataFrame(columns)
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
        self._shown_event = state.last_event
        waiting = trail[trail["status"] == "pending"] if len(trail) else trail
        options = {describe_change(row): int(row["event_id"]) for _, row in waiting.iterrows()}
        self._waiting.options = options or {_NONE_WAITING: 0}
        self._waiting.value = next(iter(self._waiting.options.values()))
        self.change_id = self._waiting.value
        if len(trail):
            trail = trail[
                [
                    "event_id",
                    "time",
                    "reviewer",
                    "action",
                    "channel",
                    "n_beats",
                    "reason",
                    "refers_to",
                    "status",
                ]
            ].copy()
            trail["time"] = trail["time"].map(lambda x: x.isoformat(timespec="seconds"))
            # a confirmation or rejection names the change it answers; a change, nothing
            trail["refers_to"] = trail["refers_to"].map(lambda ev: str(ev) if ev else "")
            trail = trail.rename(columns={"refers_to": "answers change"})
        self._trail.value = pd.DataFrame(trail)
        n = beats.sizes["beat"]
        edits = int(beats.attrs.get("review_edits", 0))
        waiting = f", {state.n_waiting} awaiting a second reviewer" if state.n_waiting else ""
        if state.n_disagreements:
            waiting += f", {state.n_disagreements} rejected by a second reviewer"
        self._summary.object = (
            f"**{escape_markdown(self.subject)} {escape_markdown(self.session)}** "
            f"({escape_markdown(self._node.attrs.get('phase'))}, "
            f"{escape_markdown(format_day(self._node.attrs.get('day')))}): {n} beats, "
            f"{int((~beats['auto_valid'].values.astype(bool)).sum())} rejected by the detector, "
            f"**{state.n_flagged} flagged by reviewers**, {edits} edited, in "
            f"{len(state.trail)} change(s){waiting}."
        )

    # --- actions --------------------------------------------------------------------
    def _say(self, text, kind):
        """Show ``text`` (plain text: escaped, it may quote the data) in the message bar."""
        self._message.object = escape_markdown(text) if text else ""
        self._message.alert_type = kind or "light"
        self._message.visible = bool(text)

    def selected_beats(self) -> list[int]:
        """Beats selected on the plot plus those typed in the beat box."""
        chosen = set(int(i) for i in (self._selection.index or []))
        chosen |= set(parse_beat_list(self.beat_text)) if self.beat_text.strip() else set()
        return sorted(chosen)

    def _moved_on(self) -> str:
        """Who changed the session's trail since this page showed it ("" if no one).

        Beat numbers and change ids on the page are those of the trail it shows: a
        change made on a page another reviewer's change has made stale would name other
        beats than the ones the reviewer saw.
        """
        from ..derived import derived_store
        from ..trail import last_event_id, read_trail

        store = derived_store(self._cat)
        if last_event_id(store, self.subject, self.session) == self._shown_event:
            return ""
        trail = read_trail(store, self.subject, self.session)
        new = trail[trail["event_id"] > self._shown_event]
        if not len(new):
            return ""
        return ", ".join(
            f"{r.action} (event {r.event_id}) by {r.reviewer}" for r in new.itertuples()
        )

    def _change(self, what, done):
        """Run one signed change (``what(reviewer)``), then show the recomputed session.

        Refused, with the page brought up to date, when the session's trail has moved on
        since the page showed it (another reviewer's change): the reviewer checks the
        current beats and applies again.
        """
        from ..annotations import review_state, reviewed_beats

        try:
            if self._reviewer is None:
                raise CardiolabError("no reviewer to sign the change (see above)")
            news = self._moved_on()
            if news:
                self.beat_text = ""
                self._load()
                self._say(
                    f"Not applied: {self.subject} {self.session} changed since this page "
                    f"showed it ({news}). The page now shows the current beats and changes: "
                    "check them, select again and apply again.",
                    "warning",
                )
                return
            with self._features.param.update(loading=True):
                what(self._reviewer)
                self._beats = reviewed_beats(self._cat, self.subject, self.session)
        except CardiolabError as err:
            self._say(str(err), "danger")
            return
        self.beat_text = ""
        self._signals.object = self._signal_view(self._node, self._beats)
        state = review_state(self._cat, self.subject, self.session)
        self._refresh(state)
        self._say(f"{done} by {self._reviewer}; {_outcome(state)}", "success")

    def _apply(self, flagged: bool):
        from ..annotations import flag_beats, recompute_features

        try:
            beats = self.selected_beats()
            if not beats:
                raise CardiolabError("select beats on the plot or type their numbers first")
        except CardiolabError as err:
            self._say(str(err), "danger")
            return
        channel = self.channel

        def what(reviewer):
            flag_beats(
                self._cat,
                self.subject,
                self.session,
                beats,
                reviewer=reviewer,
                flagged=flagged,
                channel=channel,
                reason=self.reason or ("artefact" if flagged else ""),
            )
            recompute_features(self._cat, self.subject, self.session)

        verb = "flagged" if flagged else "unflagged"
        scope = "" if channel == "beat" else f" ({channel} values)"
        self._change(what, f"{len(beats)} beat(s) {verb}{scope}")

    def _edit(self, done, **edit):
        from ..annotations import edit_beats

        def what(reviewer):
            edit_beats(
                self._cat,
                self.subject,
                self.session,
                reason=self.reason,
                reviewer=reviewer,
                **edit,
            )

        self._change(what, done)

    def answer_change(self, agree: bool):
        """Confirm (or reject) the change numbered ``change_id`` of the audit trail,
        signed by this page's reviewer (two-reviewer mode)."""
        from ..annotations import confirm_change

        event = int(self.change_id)

        def what(reviewer):
            if not event:
                raise CardiolabError("no change of this session awaits confirmation")
            confirm_change(
                self._cat,
                self.subject,
                self.session,
                event,
                agree=agree,
                reason=self.reason,
                reviewer=reviewer,
            )

        self._change(what, f"change {event} {'confirmed' if agree else 'rejected'}")

    def _delete_selected(self):
        beats = self.selected_beats()
        if not beats:
            self._say("select beats on the plot or type their numbers first", "danger")
            return
        self._edit(f"{len(beats)} beat(s) deleted", delete=beats)

    def _one_selected(self):
        beats = self.selected_beats()
        if len(beats) != 1:
            self._say(f"select one beat to move ({len(beats)} selected)", "danger")
            return None
        return beats[0]

    def _nudge(self, step: float):
        beat = self._one_selected()
        if beat is None:
            return
        t = float(self._beats["t"].values[beat])
        self._selection.event(index=[beat])
        self._edit(
            f"beat {beat} moved by {step * 1000:+.0f} ms", move=[(beat, t + step)], window_s=0.0
        )
        self._selection.event(index=[beat])

    def _on_ecg_click(self, x=None, y=None, **_):
        """A click on the ECG: insert a beat there, or move the selected beat there."""
        if x is None or self._beats is None or self.click_mode == _CLICK_MODES[0]:
            return
        if self.click_mode == _CLICK_MODES[1]:
            self._edit(f"beat inserted near {x:.3f} s", insert=[float(x)])
            return
        beat = self._one_selected()
        if beat is not None:
            self._edit(f"beat {beat} moved to near {x:.3f} s", move=[(beat, float(x))])

    def __panel__(self):
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.subject, width=120),
            pn.widgets.Select.from_param(self.param.session, width=120),
            pn.widgets.Select.from_param(self.param.variable, name="beat variable", width=130),
            pn.widgets.TextInput.from_param(
                self.param.beat_text, name="beats (e.g. 12, 15-18)", width=180
            ),
            pn.widgets.TextInput.from_param(self.param.reason, name="reason", width=160),
        )
        edits = pn.Row(
            pn.widgets.Select.from_param(self.param.channel, name="flag applies to", width=120),
            pn.Column(self._flag, self._unflag),
            pn.Column(self._delete, pn.Row(self._earlier, self._later)),
            pn.widgets.RadioButtonGroup.from_param(
                self.param.click_mode, name="a click on the ECG", button_type="light"
            ),
        )
        confirmations = self._cat.model.review.confirmations
        second = pn.Row(
            self._waiting,
            pn.Column(self._confirm, self._reject),
            visible=confirmations > 1,
        )
        return pn.Column(
            "## Session review",
            pn.Row(self._signer, self._report),
            controls,
            edits,
            second,
            self._message,
            self._summary,
            self._signals,
            "### Beats (tap or box-select beats to flag, delete or move)",
            self._points,
            self._tabs,
            sizing_mode="stretch_width",
        )
