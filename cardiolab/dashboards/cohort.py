"""Cohort page: one feature across the crew, its phase contrasts and time course.

Pick a feature and an epoch: the page fits the phase contrasts
(:func:`cardiolab.stats.mixed.phase_contrasts`) and the adaptation/recovery time
course (:func:`cardiolab.stats.timecourse.fit_time_course`) and shows each subject
over mission days with the fitted population curve and its band, the forest plot of
changes against the pre-flight mean, the contrast table and the time constants. The
table (CSV) and the figures (PNG, drawn by the browser as shown; or standalone,
interactive HTML) can be downloaded.

The features include the catalog's per-session measurements (carotid IMT, vein
areas: :mod:`cardiolab.measurements`); a feature is shown in an epoch where it has
values, so picking a measurement of whole sessions moves the epoch to ``session``.
"""

from __future__ import annotations

import io
import logging
import textwrap
import threading

import pandas as pd
import panel as pn
import param

from ..errors import CardiolabError
from ..formatting import display_table
from .app import escape_html, escape_markdown, holoviews_pane
from .report_download import report_download

log = logging.getLogger("cardiolab")

__all__ = ["CohortPage", "feature_description", "feature_groups"]

_PREFERRED = [
    "hr",
    "sbp",
    "dbp",
    "map",
    "brs",
    "rmssd",
    "hf",
    "flux",
    "cvc",
    "femoral_ri",
    "mca_psv",
]


def figure_html(obj, title: str) -> str:
    """A HoloViews object as a standalone HTML page (bokeh, resources inline)."""
    import holoviews as hv
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(hv.render(obj, backend="bokeh"), INLINE, title)


#: Browser-side PNG of the page's figures (BokehJS ``export``, as the toolbar's save
#: tool does for one plot): every top-level plot (the timeline grid, the forest plot,
#: the tau profile) is drawn at its place on the page into one canvas, white behind.
_PNG_JS = """
const views = [...Bokeh.index.all_views()];
const inGrid = new Set();
for (const v of views)
  if (v.model.type.endsWith("GridPlot")) for (const [child] of v.model.children) inGrid.add(child);
const tops = views.filter(v => (v.model.type == "Figure" || v.model.type.endsWith("GridPlot"))
                               && !inGrid.has(v.model) && v.el.isConnected
                               && v.el.getBoundingClientRect().width > 0);
if (!tops.length) { alert("No figure to save yet."); return; }
const parts = tops.map(v => ({rect: v.el.getBoundingClientRect(), layer: v.export("png")}));
const scale = parts[0].layer.canvas.width / parts[0].rect.width;
const left = Math.min(...parts.map(p => p.rect.left)), top = Math.min(...parts.map(p => p.rect.top));
const canvas = document.createElement("canvas");
canvas.width = Math.ceil(Math.max(...parts.map(p => (p.rect.right - left) * scale)));
canvas.height = Math.ceil(Math.max(...parts.map(p => (p.rect.bottom - top) * scale)));
const ctx = canvas.getContext("2d");
ctx.fillStyle = "white";
ctx.fillRect(0, 0, canvas.width, canvas.height);
for (const p of parts)
  ctx.drawImage(p.layer.canvas, (p.rect.left - left) * scale, (p.rect.top - top) * scale);
canvas.toBlob(blob => {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${feature.value}_${epoch.value}.png`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}, "image/png");
"""


def feature_groups(columns) -> dict:
    """Features-table columns grouped by the declared feature that computes them.

    Columns no feature declares (the catalog's measurements) form the group
    ``"measurements"``. Groups keep the declaration order of the registry.
    """
    from ..features.registry import describe_output, features

    order = {f.name: i for i, f in enumerate(features())}
    groups: dict[str, list] = {}
    for col in columns:
        found = describe_output(col)
        groups.setdefault(found[0].name if found else "measurements", []).append(col)
    return dict(sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order))))


def feature_description(column: str) -> str:
    """One line on a features-table column: long name, units, declaring feature, source."""
    from ..features.registry import describe_output

    found = describe_output(column)
    if found is None:
        return f"{column}: a per-session measurement of the catalog"
    feature, out = found
    return f"{column}: {out.long_name} ({out.units}); feature {feature.name}, {feature.source}"


def _model_lines(items) -> str:
    """Markdown list of ``(model, text)`` pairs (a flag, an error), the text escaped
    (:func:`~cardiolab.dashboards.app.escape_markdown`): it quotes the data (feature,
    subject and session names) and must show as written, never as markup."""
    return "\n".join(f"- {model}: {escape_markdown(text)}" for model, text in items)


def _layers(obj) -> tuple:
    """What an in-place update of a figure cannot change: the element type of each
    layer and the label of those in the legend (lines and spans, which have no legend
    entry, may carry a value in theirs: the timeline's ``b0 = ...``)."""
    import holoviews as hv

    items = obj.values() if isinstance(obj, hv.Overlay) else [obj]
    annotations = (hv.HLine, hv.VLine, hv.HSpan, hv.VSpan, hv.Text)
    return tuple(
        (type(el).__name__, "" if isinstance(el, annotations) else el.label) for el in items
    )


def _structure(figures) -> tuple:
    """What a DynamicMap of :meth:`CohortPage._show_figures` cannot change: the number
    of timeline panels and the layers of every figure."""
    timeline, forest, profile = figures
    return (
        tuple(_layers(panel) for panel in timeline.values()),
        _layers(forest) if forest is not None else None,
        _layers(profile) if profile is not None else None,
    )


def _choice_stream():
    import holoviews as hv

    return hv.streams.Stream.define("CohortChoice", key=None)


class CohortPage(pn.viewable.Viewer):
    """The cohort page of the dashboard (also usable inline in a notebook).

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        A processed campaign.
    table : pandas.DataFrame, optional
        A features table (default: :func:`cardiolab.pipeline.features_table`).
    """

    feature = param.Selector(doc="Feature to model")
    epoch = param.Selector(doc="Protocol epoch")

    def __init__(self, catalog=None, table=None, feature=None, epoch=None, **params):
        from ..pipeline import features_table
        from ..stats.results import feature_columns

        if table is None:
            if catalog is None:
                raise CardiolabError("CohortPage needs a catalog or a features table")
            table = features_table(catalog)
        self._table = table
        self._catalog = catalog
        feats = feature_columns(table)
        feats = [f for f in _PREFERRED if f in feats] + [f for f in feats if f not in _PREFERRED]
        epochs = list(dict.fromkeys(table["epoch"].astype(str)))
        super().__init__(**params)
        self.param.feature.objects = feats
        self.param.epoch.objects = epochs
        self._message = pn.pane.Alert(
            "", alert_type="light", visible=False, sizing_mode="stretch_width", disable_math=True
        )
        # the models' flags (not converged, boundary, tau at an edge...), one per line
        self._flags = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", disable_math=True
        )
        self._progress = pn.indicators.Progress(active=False, visible=False, width=200)
        # shown as soon as another feature or epoch is chosen, until its plots are drawn
        self._loading = pn.pane.Alert(
            "", alert_type="info", visible=False, sizing_mode="stretch_width", disable_math=True
        )
        self._fits: dict = {}  # (feature, epoch) -> (contrasts, time course, errors)
        self._built: dict = {}  # (feature, epoch) -> (timeline, forest plot, tau profile)
        self._lock = threading.Lock()
        self._key_locks: dict = {}
        self._closed = False
        self._choice = _choice_stream()()  # the stream of the shown (feature, epoch)
        self._structure = None  # layers of the figures the panes' DynamicMaps draw
        self._shown = None  # the (feature, epoch) the plots show
        self._timeline = holoviews_pane(None, sizing_mode="stretch_width")
        self._forest = holoviews_pane(None)
        self._profile = holoviews_pane(None)
        self._contrasts = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._params = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._summary = pn.pane.Markdown("", sizing_mode="stretch_width", disable_math=True)
        self._csv = pn.widgets.FileDownload(
            callback=self._csv_bytes,
            filename="contrasts.csv",
            button_type="primary",
            label="Download table (CSV)",
        )
        self._html = pn.widgets.FileDownload(
            callback=self._html_bytes,
            filename="figure.html",
            button_type="primary",
            label="Download figure (HTML)",
        )
        # the shown feature's report: plots, contrasts, flags, provenance, audit trail
        self._report = report_download(
            self.report,
            lambda: f"report_{self.feature}_{self.epoch}.html",
            disabled=catalog is None,
        )
        # options grouped by the declared feature that computes them (the registry)
        self._feature_select = pn.widgets.Select(
            name="Feature", groups=feature_groups(feats), width=200
        )
        self._feature_select.link(self, value="feature", bidirectional=True)
        self._about = pn.pane.Str("", sizing_mode="stretch_width")
        self._epoch_select = pn.widgets.Select.from_param(self.param.epoch, width=150)
        # drawn in the browser: the PNG is the figures as the reviewer sees them
        self._png = pn.widgets.Button(name="Download figure (PNG)", button_type="primary")
        self._png.js_on_click(
            args={"feature": self._feature_select, "epoch": self._epoch_select}, code=_PNG_JS
        )
        self._tabs = pn.Tabs(("Phase contrasts", self._contrasts), ("Time course", self._params))
        # what a feature switch replaces: each dimmed under a spinner while it is redrawn
        # (Panel's ``loading``; one wrapping Column instead kept bokeh from ever
        # finishing the timeline's grid in the browser)
        self._results = [
            self._summary,
            self._timeline,
            self._forest,
            self._profile,
            self._tabs,
        ]
        self._contrast_result = None
        self._time_course = None
        self._figure = None
        with param.parameterized.discard_events(self):
            self.feature = feature if feature in feats else (feats[0] if feats else None)
            self.epoch = (
                epoch if epoch in epochs else ("supine" if "supine" in epochs else epochs[0])
            )
        self._fit()
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            # served: once the page is shown, the usual features are fitted in the
            # background, so that choosing one only draws its figures
            doc.on_session_destroyed(self._close)
            pn.state.onload(self._start_prefetch)

    #: Features readied in the background on a served page (those present).
    PREFETCH = tuple(_PREFERRED)

    def _start_prefetch(self) -> None:
        from ..stats.results import feature_epochs

        keys = [
            (f, self.epoch)
            for f in self.PREFETCH
            if f in self.param.feature.objects
            and f != self.feature
            and self.epoch in feature_epochs(self._table, f)
        ]
        threading.Thread(
            target=self._prefetch, args=(keys,), name="cardiolab-cohort-prefetch", daemon=True
        ).start()

    def _close(self, session_context) -> None:
        self._closed = True

    @param.depends("feature", "epoch", watch=True)
    def _fit(self):
        """A new feature or epoch: show the loading state now, draw the plots next.

        On a served page the models are fitted and the plots built in a callback of the
        next tick of the server's event loop (:meth:`panel.io.state.State.execute`), so
        that the loading state reaches the browser first; inline, at once.
        """
        from ..stats.results import feature_epochs

        having = feature_epochs(self._table, self.feature) if self.feature else []
        if having and self.epoch not in having:
            # a measurement of the whole session has values in epoch "session" only, a
            # recorded feature in the protocol epochs: show the epoch that has values
            # (setting it runs this method again)
            self.epoch = "supine" if "supine" in having else having[0]
            return
        about = feature_description(self.feature) if self.feature else ""
        # a Str pane does not wrap, and puts its text into a <pre> element as HTML: escaped
        self._about.object = escape_html(textwrap.fill(about, 140))
        if self._shown is not None:
            self._loading.object = (
                f"Fitting the models of **{escape_markdown(self.feature)}** "
                f"({escape_markdown(self.epoch)}) and drawing its plots..."
            )
            self._loading.visible = True
            for pane in self._results:
                pane.loading = True
        self._progress.visible = self._progress.active = True
        # the page's first plots are built with the page; a switch defers them
        pn.state.execute(self._refresh, schedule=self._shown is not None)

    def fitted(self, feature: str, epoch: str):
        """The models of ``feature`` in ``epoch``, fitted once per page.

        Returns
        -------
        tuple
            ``(contrasts, time_course, errors)``: the
            :class:`~cardiolab.stats.mixed.PhaseContrasts` and
            :class:`~cardiolab.stats.timecourse.TimeCourse` (None where a model could
            not be fitted) and a list of ``(model, message)`` of those failures.
        """
        from ..stats.results import feature_models

        return self._once(
            self._fits, (feature, epoch), lambda: feature_models(self._table, feature, epoch)
        )

    def _once(self, store: dict, key, make):
        """``store[key]``, made by ``make()`` the first time: once, whichever of the page
        and its prefetch thread asks first (the other waits for it)."""
        with self._lock:
            lock = self._key_locks.setdefault((id(store), key), threading.Lock())
        with lock:
            if key not in store:
                store[key] = make()
        return store[key]

    def _prefetch(self, keys) -> None:
        """Fit the models of ``keys`` ahead of a switch, and draw their time courses'
        bands (a thread of the served page, stopped when its session ends). Only the
        statistics: the HoloViews figures are built on the page's own thread (their
        option trees are global state of HoloViews)."""
        for key in keys:
            if self._closed:
                return
            try:
                _, tc, _ = self.fitted(*key)
                if tc is not None:
                    tc.curve()  # the band's parameter draws, kept by the result
            except Exception as err:  # shown (and raised) when the key is chosen
                log.debug("cohort prefetch of %s: %r", key, err)

    def _figures_of(self, key):
        """The timeline, forest plot and tau profile of a (feature, epoch), built once
        (static HoloViews objects, also what the HTML download and the report show)."""
        from ..viz import forest_plot, tau_profile, timeline

        def build():
            contrasts, tc, _ = self.fitted(*key)
            return (
                timeline(tc, table=self._table, feature=key[0], epoch=key[1]),
                forest_plot(contrasts) if contrasts is not None else None,
                tau_profile(tc, "tau_r") if tc is not None and "tau_r" in tc.profile else None,
            )

        return self._once(self._built, key, build)

    def _show_figures(self, key) -> None:
        """Show the figures of ``key``: in place when they have the layers of those shown.

        The panes hold DynamicMaps on one stream (:attr:`_choice`): a feature switch is
        a stream event, and HoloViews updates the existing bokeh figures' data, ranges
        and titles instead of building new ones (the bokeh models, and the browser's
        views of them, were most of a switch's 7-9 s). Figures of another structure (a
        model that could not be fitted, a phase without data) are built anew.
        """
        import holoviews as hv

        figures = self._figures_of(key)
        structure = _structure(figures)
        if structure == self._structure:
            self._choice.event(key=key)
            return
        self._choice.update(key=key)

        def frame(pick):
            def callback(key):
                return pick(self._figures_of(key)).map(
                    lambda el: el.opts(framewise=True, clone=True), hv.Element
                )

            return hv.DynamicMap(callback, streams=[self._choice])

        timeline, forest, profile = figures
        panels = [
            frame(lambda figs, k=k: figs[0].values()[k]) for k in range(len(timeline.values()))
        ]
        self._timeline.object = (
            hv.Layout(panels).opts(shared_axes=True).cols(len(panels)) if panels else None
        )
        self._forest.object = frame(lambda figs: figs[1]) if forest is not None else None
        self._profile.object = frame(lambda figs: figs[2]) if profile is not None else None
        self._structure = structure

    def _refresh(self):
        """Fit (or reuse the fits of) the chosen feature and epoch and show its plots."""
        import holoviews as hv

        key = (self.feature, self.epoch)
        if key == self._shown:  # a second event of the same choice
            self._end_loading()
            return
        self._message.visible = False
        try:
            contrasts, tc, errors = self.fitted(*key)
            if errors:
                self._say(_model_lines(errors), "warning")
            self._show_flags(contrasts, tc)
            self._contrast_result, self._time_course = contrasts, tc
            self._show_figures(key)
            timeline, forest, _ = self._figures_of(key)
            parts = [p for p in (timeline, forest) if p is not None]
            self._figure = hv.Layout(parts).cols(1) if parts else None
            self._contrasts.value = (
                display_table(contrasts.table.reset_index())
                if contrasts is not None
                else pd.DataFrame()
            )
            self._params.value = (
                display_table(tc.params.reset_index()) if tc is not None else pd.DataFrame()
            )
            self._summary.object = self._describe(contrasts, tc)
            self._shown = key
        finally:
            self._end_loading()

    def _end_loading(self) -> None:
        self._progress.visible = self._progress.active = False
        self._loading.visible = False
        for pane in self._results:
            pane.loading = False

    def _show_flags(self, contrasts, tc) -> None:
        """The models' flags under the summary, escaped (they quote the data)."""
        flags = [
            (what, flag)
            for what, result in (("phase contrasts", contrasts), ("time course", tc))
            if result is not None
            for flag in result.flags
        ]
        self._flags.object = (
            f"**{len(flags)} flag{'s' if len(flags) > 1 else ''}**: read the estimates "
            f"with them in mind\n\n{_model_lines(flags)}"
            if flags
            else ""
        )
        self._flags.visible = bool(flags)

    def _describe(self, contrasts, tc) -> str:
        lines = [f"### {escape_markdown(self.feature)} ({escape_markdown(self.epoch)})"]
        if tc is not None:
            p = tc.params
            units = escape_markdown(tc.units)
            lines.append(
                f"Change at landing **D = {p.loc['D', 'estimate']:.3g} {units}** "
                f"[{p.loc['D', 'ci_low']:.3g}, {p.loc['D', 'ci_high']:.3g}]; recovery time "
                f"constant **tau_r = {p.loc['tau_r', 'estimate']:.3g} d** "
                f"[{p.loc['tau_r', 'ci_low']:.3g}, {p.loc['tau_r', 'ci_high']:.3g}]"
                f"{' (open-ended)' if bool(p.loc['tau_r', 'ci_open']) else ''}."
            )
        if contrasts is not None:
            lines.append(
                f"Phase contrasts: 95 % CIs and p values by **{contrasts.inference}**"
                + (
                    " (Satterthwaite degrees of freedom, as lmerTest reports them)"
                    if "Satterthwaite" in contrasts.inference
                    else ""
                )
                + "; time course: profile-likelihood intervals."
            )
        return "\n\n".join(lines)

    def _say(self, text, kind):
        self._message.object = text
        self._message.alert_type = kind
        self._message.visible = True

    def report(self) -> str:
        """The cohort report of the shown feature and epoch (HTML): its plots, phase
        contrasts, time course, the models' flags, the campaign's provenance and audit
        trail (:func:`cardiolab.reports.cohort_report`, with this page's fits)."""
        from ..reports import cohort_report

        if self._catalog is None:
            raise CardiolabError("CohortPage: a report needs the catalog (the page has a table)")
        return cohort_report(
            self._catalog, [self.feature], self.epoch, table=self._table, fits=self.fitted
        )

    def _csv_bytes(self):
        frames = []
        for result in (self._contrast_result, self._time_course):
            if result is not None:
                frames.append(result.to_frame())
        self._csv.filename = f"{self.feature}_{self.epoch}_models.csv"
        data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return io.BytesIO(data.to_csv(index=False).encode())

    def _html_bytes(self):
        self._html.filename = f"{self.feature}_{self.epoch}.html"
        if self._figure is None:
            return io.BytesIO(b"")
        return io.BytesIO(figure_html(self._figure, f"{self.feature} {self.epoch}").encode())

    def __panel__(self):
        return pn.Column(
            "## Cohort",
            pn.Row(
                self._feature_select,
                self._epoch_select,
                self._progress,
                self._csv,
                self._png,
                self._html,
                self._report,
            ),
            self._about,
            self._loading,
            self._message,
            self._summary,
            self._flags,
            self._timeline,
            self._forest,
            self._profile,
            self._tabs,
            sizing_mode="stretch_width",
        )
