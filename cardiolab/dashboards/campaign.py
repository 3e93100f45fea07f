"""Campaign page: which sessions are processed, how good they are, what failed.

A subjects x sessions matrix of processing status, a heat map of beat quality (the
share of beats kept by the detector and the reviewers), the failures with their stage
and error, the reviewers' changes still waiting for a second reviewer or rejected by
one (two-reviewer mode, :func:`cardiolab.annotations.pending_changes`), and a button
that processes what is not processed yet, with a progress bar.
"""

from __future__ import annotations

import asyncio
import logging

import holoviews as hv
import pandas as pd
import panel as pn

from ..labels import schedule_order
from .app import escape_markdown, holoviews_pane

log = logging.getLogger("cardiolab")

__all__ = ["CampaignPage", "status_matrix"]

_SYMBOLS = {"processed": "✔ processed", "failed": "✖ failed", "not processed": "· not processed"}


def status_matrix(status: pd.DataFrame) -> pd.DataFrame:
    """Subjects x sessions table of status (sessions in schedule order)."""
    order = schedule_order(status)
    matrix = status.pivot(index="subject", columns="session", values="status")
    return matrix.reindex(columns=order).fillna("")


def quality_heatmap(status: pd.DataFrame):
    """HoloViews HeatMap of the valid-beat fraction per subject x session."""
    order = schedule_order(status)
    data = status.assign(valid_percent=100 * status["valid_fraction"])
    # HoloViews grids a HeatMap by reshaping its columns, which pandas' Arrow-backed
    # strings (pandas >= 3 with pyarrow installed) cannot do: plain object columns
    text = [c for c in data.columns if pd.api.types.is_string_dtype(data[c])]
    data = data.astype({c: object for c in text})
    return hv.HeatMap(
        data,
        kdims=[hv.Dimension("session", values=order), "subject"],
        vdims=[hv.Dimension("valid_percent", label="valid beats", unit="%"), "n_beats", "status"],
    ).opts(
        cmap="RdYlGn",
        clim=(80, 100),
        colorbar=True,
        tools=["hover"],
        # title, rotated session labels and the colour bar's label need ~170 px
        # whatever the crew size; then a row per subject
        height=170 + 28 * status["subject"].nunique(),
        responsive=True,
        title="Beat quality (valid beats, %)",
        xrotation=45,
    )


class CampaignPage(pn.viewable.Viewer):
    """The campaign page of the dashboard (also usable inline in a notebook)."""

    def __init__(self, catalog, **params):
        from ..catalog import as_catalog

        super().__init__(**params)
        self._cat = as_catalog(catalog)
        self._matrix = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._failures = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._heatmap = holoviews_pane(None, sizing_mode="stretch_width")
        # text quoting the catalog (names, labels) is escaped (escape_markdown); Tabulator's
        # default (plaintext) formatter shows cell text as text, never HTML
        self._pending = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._review_summary = pn.pane.Markdown("", disable_math=True)
        self._summary = pn.pane.Markdown("", disable_math=True)
        self._progress = pn.indicators.Progress(value=0, max=1, visible=False, width=300)
        self._progress_text = pn.pane.Markdown("", disable_math=True)
        self._process = pn.widgets.Button(
            name="Process sessions not yet processed", button_type="primary"
        )
        self._process.on_click(self._run)
        self.refresh()

    def refresh(self):
        """Read the status of every session from the derived store again."""
        from ..pipeline import campaign_status

        status = campaign_status(self._cat)
        self._status = status
        matrix = status_matrix(status).replace(_SYMBOLS)
        self._matrix.value = matrix.reset_index()
        self._heatmap.object = quality_heatmap(status)
        fail = status[status["status"] == "failed"][["subject", "session", "stage", "error"]]
        self._failures.value = fail.reset_index(drop=True)
        counts = status["status"].value_counts()
        self._refresh_review()
        self._summary.object = (
            f"**{escape_markdown(self._cat.campaign.name)}** "
            f"({escape_markdown(self._cat.campaign.kind)}): "
            f"{status['subject'].nunique()} subjects, {len(status)} sessions; "
            + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("processed", "failed", "not processed"))
            + f"; {int(status['review_events'].sum())} reviewer change(s)."
        )

    def _refresh_review(self):
        """The changes waiting for a second reviewer, and those another one rejected."""
        from ..annotations import pending_changes

        table = pending_changes(self._cat)
        needed = self._cat.model.review.confirmations
        mode = (
            f"Two-reviewer mode: a beat change takes effect once {needed - 1} other "
            "reviewer(s) confirm it."
            if needed > 1
            else "Each reviewer's change takes effect at once (catalog: review confirmations 1)."
        )
        waiting = int((table["status"] == "pending").sum())
        disputed = int((table["status"] == "disagreement").sum())
        self._review_summary.object = (
            f"{mode} {waiting} change(s) awaiting confirmation, {disputed} disagreement(s)."
        )
        if len(table):
            table = table.assign(time=table["time"].map(lambda x: x.isoformat(timespec="seconds")))
        self._pending.value = table.reset_index(drop=True)

    async def _run(self, event=None):
        from ..derived import derived_store
        from ..pipeline import process_session, record_run

        todo = self._status[self._status["status"] != "processed"]
        if not len(todo):
            self._progress_text.object = "Every session is processed."
            return
        self._process.disabled = True
        self._progress.max, self._progress.value, self._progress.visible = len(todo), 0, True
        results = []
        try:
            for i, row in enumerate(todo.itertuples(), 1):
                self._progress_text.object = escape_markdown(
                    f"processing {row.subject} {row.session} ({i}/{len(todo)})"
                )
                out = await asyncio.to_thread(
                    process_session, self._cat.spec, row.subject, row.session
                )
                results.append(out)
                self._progress.value = i
            record_run(derived_store(self._cat), pd.DataFrame(results))
            n_failed = sum(r["status"] == "failed" for r in results)
            self._progress_text.object = (
                f"done: {len(results) - n_failed} processed, {n_failed} failed"
            )
        finally:
            self._process.disabled = False
            self._progress.visible = False
            self.refresh()

    def __panel__(self):
        return pn.Column(
            "## Campaign",
            self._summary,
            pn.Row(self._process, self._progress, self._progress_text),
            "### Processing status",
            self._matrix,
            self._heatmap,
            "### Failures",
            self._failures,
            "### Review: pending changes and disagreements",
            self._review_summary,
            self._pending,
            sizing_mode="stretch_width",
        )
