"""Cohort plots of mixed-model results: phase contrasts, time courses, likelihood profiles.

They consume the result objects of :mod:`cardiolab.stats`:
:class:`~cardiolab.stats.mixed.PhaseContrasts` (``.table`` indexed by timepoint,
``.baseline``, ``.feature``, ``.epoch``, ``.units``) and
:class:`~cardiolab.stats.timecourse.TimeCourse` (``.params``, ``.curve()``,
``.data``, ``.profile``), and read nothing else from them.
"""

from __future__ import annotations

import logging
import math

import holoviews as hv
import numpy as np
import pandas as pd

from ..errors import CardiolabError
from ..formatting import format_p, wrap_title

__all__ = [
    "BEDREST_LABELS",
    "LR_CUTOFF",
    "PHASE_AXES",
    "PHASE_COLORS",
    "PHASE_NAMES",
    "forest_plot",
    "tau_profile",
    "timeline",
]

log = logging.getLogger("cardiolab")

#: Colour of each mission phase (same in every cohort plot).
PHASE_COLORS = {"pre": "#525252", "in": "#08519c", "post": "#a50f15"}
#: Legend name of each mission phase.
PHASE_NAMES = {"pre": "pre-flight", "in": "in flight", "post": "post-flight"}
#: Day axis of each phase panel of :func:`timeline`: (dimension name, label).
PHASE_AXES = {
    "pre": ("days_to_launch", "Days to launch"),
    "in": ("flight_day", "Flight day"),
    "post": ("days_after_landing", "Days after landing"),
}
#: Axis labels and panel titles of bed-rest campaigns (sessions BDC-n, HDTn, R+n).
BEDREST_LABELS = {
    "pre": ("Days to bed rest", "Baseline (BDC)"),
    "in": ("Head-down tilt day", "Head-down tilt"),
    "post": ("Days after bed rest", "Recovery"),
}
_SPACEFLIGHT_TITLES = {"pre": "Pre-flight", "in": "In flight", "post": "Post-flight"}
#: 95 % cut of the likelihood-ratio statistic (chi-square, 1 degree of freedom).
LR_CUTOFF = 3.841458820694124
_SUBJECT_COLORS = (  # Category10 without its blue and red (the phase colours)
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#98df8a",
    "#ffbb78",
    "#c5b0d5",
    "#c49c94",
)


def _need(obj, names, what):
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise CardiolabError(f"{what}: the result object lacks {missing}")


def _units_text(units) -> str | None:
    return str(units) if units else None


# --------------------------------------------------------------------------------------
# forest plot of phase contrasts
# --------------------------------------------------------------------------------------


def forest_plot(contrasts, *, percent: bool = False, width: int = 600, height: int = 320):
    """Change from the pre-flight mean at each timepoint, with its 95 % CI.

    One point per in-flight and post-flight timepoint, in schedule order along x,
    coloured by phase, with asymmetric error bars from ``ci_low`` to ``ci_high``
    and a line at zero (no change). Hover shows the estimate, its CI, ``n``, the raw
    ``p`` and the Holm-adjusted ``p_holm``. The bars are drawn from the table's own
    interval: nothing is recomputed here.

    Parameters
    ----------
    contrasts : cardiolab.stats.mixed.PhaseContrasts
        Result of :func:`cardiolab.stats.mixed.phase_contrasts`.
    percent : bool
        Plot the change in % of the pre-flight mean (``percent``, ``percent_low``,
        ``percent_high``) instead of feature units.
    width, height : int
        Plot area (screen pixels).

    Returns
    -------
    holoviews.Overlay
        ``HLine`` (zero), ``ErrorBars`` and one ``Scatter`` per phase (labelled
        "in flight", "post-flight"); key dimension ``timepoint`` (categorical,
        schedule order), value dimension ``change`` labelled with the feature and its
        units (or %).

    Raises
    ------
    CardiolabError
        If the contrasts lack a documented attribute or column.

    Examples
    --------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> table = pd.DataFrame(
    ...     {"phase": ["in", "post"], "day": [5.0, 0.0], "n": [6, 6],
    ...      "estimate": [3.0, 9.0], "se": [1.0, 1.2], "ci_low": [1.0, 6.6],
    ...      "ci_high": [5.0, 11.4], "percent": [5.0, 15.0], "percent_low": [1.7, 11.0],
    ...      "percent_high": [8.3, 19.0], "p": [0.003, 1e-9], "p_holm": [0.003, 2e-9]},
    ...     index=pd.Index(["FD5", "R+0"], name="timepoint"))
    >>> c = SimpleNamespace(table=table, baseline=60.0, feature="hr", epoch="supine",
    ...                     units="bpm")
    >>> plot = forest_plot(c)
    >>> [(el.label, el.dimension_values("change").tolist()) for el in plot.Scatter]
    [('in flight', [3.0]), ('post-flight', [9.0])]
    """
    _need(contrasts, ("table", "feature", "epoch", "units", "baseline"), "forest_plot")
    tab = contrasts.table
    cols = (
        ["percent", "percent_low", "percent_high"] if percent else ["estimate", "ci_low", "ci_high"]
    )
    missing = [c for c in ["phase", "n", "p", "p_holm", *cols] if c not in tab.columns]
    if missing:
        raise CardiolabError(
            f"forest_plot: contrasts of {contrasts.feature!r} lack columns {missing}"
        )
    est, lo, hi = (tab[c].to_numpy(dtype=float) for c in cols)
    order = [str(t) for t in tab.index]
    unit = "%" if percent else _units_text(contrasts.units)
    tdim = hv.Dimension("timepoint", label="Timepoint", values=order)
    ydim = hv.Dimension("change", label=f"Change in {contrasts.feature} from pre-flight", unit=unit)
    frame = pd.DataFrame(
        {
            "timepoint": order,
            "change": est,
            "ci_low": lo,
            "ci_high": hi,
            "minus": est - lo,
            "plus": hi - est,
            "phase": tab["phase"].astype(str).to_numpy(),
            "n": tab["n"].to_numpy(),
            "p": tab["p"].to_numpy(dtype=float),
            "p_holm": tab["p_holm"].to_numpy(dtype=float),
            "p_text": [format_p(p) for p in tab["p"]],
            "p_holm_text": [format_p(p) for p in tab["p_holm"]],
            "df": tab["df"].to_numpy(dtype=float) if "df" in tab else np.inf,
        }
    )
    hover = ["phase", "ci_low", "ci_high", "n", "df", "p", "p_holm", "p_text", "p_holm_text"]
    tooltips = [
        ("timepoint", "@timepoint"),
        ("change", "@change{0.[000]}"),
        ("95% CI", "@ci_low{0.[000]} to @ci_high{0.[000]}"),
        ("n", "@n"),
        ("df", "@df{0.[0]}"),
        ("p", "@{p_text}"),  # never 0: cardiolab.formatting.format_p
        ("p (Holm)", "@{p_holm_text}"),
    ]
    zero = hv.HLine(0.0).opts(backend="bokeh", color="black", line_dash="dashed", line_width=1)
    bars = hv.ErrorBars(frame, kdims=[tdim], vdims=[ydim, "minus", "plus"]).opts(
        backend="bokeh", line_width=1.5, color="#333333"
    )
    layers = [zero, bars]
    for phase in dict.fromkeys(frame["phase"]):
        layers.append(
            hv.Scatter(
                frame[frame["phase"] == phase],
                kdims=[tdim],
                vdims=[ydim, *hover],
                label=PHASE_NAMES.get(phase, phase),
            ).opts(
                backend="bokeh",
                color=PHASE_COLORS.get(phase, "black"),
                size=9,
                tools=["hover"],
                hover_tooltips=tooltips,
            )
        )
    u = f" {contrasts.units}" if contrasts.units else ""
    title = (
        f"{contrasts.feature} ({contrasts.epoch}): change from pre-flight mean "
        f"{contrasts.baseline:.4g}{u}; 95% CI, {getattr(contrasts, 'inference', 'Wald z')}"
    )
    return hv.Overlay(layers).opts(
        backend="bokeh",
        title=wrap_title(title, width),
        xlabel=tdim.pprint_label,
        ylabel=ydim.pprint_label,
        frame_width=width,
        frame_height=height,
        show_grid=True,
        # outside the frame: inside, it covered the last timepoints' points
        legend_position="right",
    )


# --------------------------------------------------------------------------------------
# timeline: subjects and the population curve over mission days
# --------------------------------------------------------------------------------------


def _timeline_data(time_course, table, feature, epoch):
    """(data, feature, epoch, units) with data columns subject, session, phase, day, value."""
    if time_course is not None:
        _need(time_course, ("data", "feature", "epoch", "units"), "timeline")
        data = time_course.data
        missing = [c for c in ("subject", "phase", "day", "value") if c not in data.columns]
        if missing:
            raise CardiolabError(f"timeline: time course data lack columns {missing}")
        return data, time_course.feature, time_course.epoch, time_course.units
    if table is None or feature is None:
        raise CardiolabError("timeline: give a time course, or a features table and a feature")
    missing = [c for c in ("subject", "phase", "day", "epoch", feature) if c not in table.columns]
    if missing:
        raise CardiolabError(f"timeline: features table lacks columns {missing}")
    rows = table[table["epoch"] == epoch]
    if rows.empty:
        epochs = sorted(table["epoch"].astype(str).unique())
        raise CardiolabError(f"timeline: no {feature!r} row for epoch {epoch!r} (epochs: {epochs})")
    data = pd.DataFrame(
        {
            "subject": rows["subject"].astype(str).to_numpy(),
            "session": rows["session"].astype(str).to_numpy()
            if "session" in rows
            else np.full(len(rows), ""),
            "phase": rows["phase"].astype(str).to_numpy(),
            "day": rows["day"].to_numpy(dtype=float),
            "value": rows[feature].to_numpy(dtype=float),
        }
    )
    units = table.attrs.get("units", {}).get(feature, "")
    return data, feature, epoch, units


def _is_bedrest(data: pd.DataFrame) -> bool:
    """True when the sessions are labelled as a bed-rest schedule (BDC-n, HDTn)."""
    from ..labels import parse_session_label

    if "session" not in data.columns:
        return False
    kinds = set()
    for label in data["session"].astype(str).unique():
        try:
            kinds.add(parse_session_label(label).kind)
        except CardiolabError:
            continue
    return "bedrest" in kinds


def _pre_flight_mean(data: pd.DataFrame) -> float:
    """Mean over subjects of each subject's pre-flight mean (NaN without pre data)."""
    pre = data[(data["phase"] == "pre") & np.isfinite(data["value"])]
    if pre.empty:
        return math.nan
    return float(pre.groupby("subject")["value"].mean().mean())


def _subject_layers(rows: pd.DataFrame, xdim, ydim, colors: dict) -> list:
    """Each subject's values of one phase: one ``Segments`` (a line per subject) and one
    ``Scatter`` (the points, coloured by subject, with a legend entry per subject).

    Two glyphs for the whole crew, not two per subject: bokeh builds and the browser
    draws a glyph renderer per element, and 8 subjects x 3 phases x 2 made the
    Cohort page's timeline most of its 7-9 s redraw on a feature switch.
    """
    rows = rows.sort_values(["subject", "day"])
    pts = pd.DataFrame(
        {
            xdim.name: rows["day"].to_numpy(dtype=float),
            ydim.name: rows["value"].to_numpy(dtype=float),
            "subject": rows["subject"].astype(str).to_numpy(),
            "session": rows["session"].astype(str).to_numpy() if "session" in rows else "",
        }
    )
    present = [s for s in colors if (pts["subject"] == s).any()]
    if not present:
        return []
    cmap = {s: colors[s] for s in present}
    # consecutive points of one subject joined: one segment per pair
    nxt = pts.groupby("subject", sort=False).shift(-1)
    joined = nxt[xdim.name].notna()
    segments = pd.DataFrame(
        {
            "x0": pts.loc[joined, xdim.name],
            "y0": pts.loc[joined, ydim.name],
            "x1": nxt.loc[joined, xdim.name],
            "y1": nxt.loc[joined, ydim.name],
            "subject": pts.loc[joined, "subject"],
        }
    )
    lines = hv.Segments(
        segments,
        kdims=[hv.Dimension("x0", label=xdim.label, unit=xdim.unit), ydim.clone("y0"), "x1", "y1"],
        vdims=["subject"],
    ).opts(backend="bokeh", color="subject", cmap=cmap, line_width=1, alpha=0.7, show_legend=False)
    points = hv.Scatter(pts, kdims=[xdim], vdims=[ydim, "subject", "session"]).opts(
        backend="bokeh", color="subject", cmap=cmap, size=5, tools=["hover"]
    )
    return [lines, points]


def timeline(
    time_course=None,
    table: pd.DataFrame | None = None,
    feature: str | None = None,
    epoch: str = "supine",
    *,
    width: int = 260,
    height: int = 300,
):
    """A feature over mission days: subjects, fitted population curve and baseline.

    Three panels side by side, one per phase, each with its own day axis (days to
    launch, flight day, days after landing; for a bed-rest schedule, days to bed
    rest, head-down tilt day, days after bed rest) and a shared y axis: each subject's
    values joined by a line, the fitted population curve
    (``time_course.curve()``) with its 95 % band, and the baseline dashed (the fitted
    ``b0``; without a fit, the mean over subjects of their pre-flight means).

    Parameters
    ----------
    time_course : cardiolab.stats.timecourse.TimeCourse, optional
        Result of :func:`cardiolab.stats.timecourse.fit_time_course`; its ``data``
        are the subjects' points.
    table : pandas.DataFrame, optional
        A features table (:func:`cardiolab.pipeline.features_table`), used when no
        time course is given.
    feature : str, optional
        Column of ``table`` to plot (ignored with a time course).
    epoch : str
        Protocol epoch of ``table`` to plot (ignored with a time course).
    width, height : int
        Plot area of each phase panel (screen pixels).

    Returns
    -------
    holoviews.Layout
        One ``Overlay`` per phase with data or curve, in phase order; the x
        dimension of each is named after the phase (:data:`PHASE_AXES`, in days),
        the y dimension after the feature (with its units).

    Raises
    ------
    CardiolabError
        If neither a time course nor a table and feature are given, or a column is
        missing.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame(
    ...     {"subject": ["S01", "S01", "S01", "S02", "S02", "S02"],
    ...      "session": ["L-30", "FD5", "R+1"] * 2, "phase": ["pre", "in", "post"] * 2,
    ...      "day": [-30.0, 5.0, 1.0] * 2, "epoch": "supine",
    ...      "hr": [60.0, 63.0, 70.0, 64.0, 66.0, 75.0]})
    >>> table.attrs["units"] = {"hr": "bpm"}
    >>> plot = timeline(table=table, feature="hr")
    >>> [panel.values()[0].kdims[0].name for panel in plot.values()]
    ['days_to_launch', 'flight_day', 'days_after_landing']
    """
    data, feature, epoch, units = _timeline_data(time_course, table, feature, epoch)
    ydim = hv.Dimension(str(feature), label=str(feature), unit=_units_text(units))
    curve = None
    if time_course is not None:
        _need(time_course, ("curve", "params"), "timeline")
        curve = time_course.curve()
        b0 = float(time_course.params.loc["b0", "estimate"])
        base_label = f"b0 = {b0:.4g}"
    else:
        b0 = _pre_flight_mean(data)
        base_label = "pre-flight mean"
    subjects = list(dict.fromkeys(sorted(data["subject"].astype(str))))
    colors = {s: _SUBJECT_COLORS[i % len(_SUBJECT_COLORS)] for i, s in enumerate(subjects)}
    panels = []
    phases = [
        p
        for p in PHASE_AXES
        if (data["phase"] == p).any() or (curve is not None and (curve["phase"] == p).any())
    ]
    bedrest = _is_bedrest(data)
    for k, phase in enumerate(phases):
        name, label = PHASE_AXES[phase]
        title = _SPACEFLIGHT_TITLES[phase]
        if bedrest:
            label, title = BEDREST_LABELS[phase]
        xdim = hv.Dimension(name, label=label, unit="d")
        layers = []
        if curve is not None:
            cp = curve[curve["phase"] == phase].sort_values("day")
            if len(cp):
                band = pd.DataFrame(
                    {name: cp["day"], ydim.name: cp["ci_low"], "ci_high": cp["ci_high"]}
                )
                layers.append(
                    hv.Area(band, kdims=[xdim], vdims=[ydim, "ci_high"], label="95% CI").opts(
                        backend="bokeh", color=PHASE_COLORS[phase], alpha=0.2, line_width=0
                    )
                )
                pop = pd.DataFrame({name: cp["day"], ydim.name: cp["estimate"]})
                layers.append(
                    hv.Curve(pop, kdims=[xdim], vdims=[ydim], label="population fit").opts(
                        backend="bokeh", color=PHASE_COLORS[phase], line_width=3
                    )
                )
        layers.extend(_subject_layers(data[data["phase"] == phase], xdim, ydim, colors))
        if np.isfinite(b0):
            layers.append(
                hv.HLine(b0, label=base_label).opts(
                    backend="bokeh", color="black", line_dash="dashed", line_width=1.5
                )
            )
        last = k == len(phases) - 1
        if k == 0:
            title = f"{feature} ({epoch}): {title}"
        panels.append(
            hv.Overlay(layers).opts(
                backend="bokeh",
                title=wrap_title(title, width),
                frame_width=width,
                frame_height=height,
                show_legend=last,
                legend_position="right",
                show_grid=True,
                padding=0.05,
            )
        )
    if not panels:
        raise CardiolabError(f"timeline: no data for {feature!r} ({epoch})")
    return hv.Layout(panels).opts(backend="bokeh", shared_axes=True).cols(len(panels))


# --------------------------------------------------------------------------------------
# likelihood profile of a time constant
# --------------------------------------------------------------------------------------


def tau_profile(time_course, parameter: str = "tau_r", *, width: int = 450, height: int = 300):
    """Likelihood-ratio profile of a time constant, with its 95 % cut and CI.

    The profile ``2 (max log L - log L)`` over the grid of ``tau`` (days, log axis),
    the 95 % cut at 3.84 (chi-square, 1 df), the profile-likelihood interval shaded
    (``params.loc[parameter, ["ci_low", "ci_high"]]``; an open side, ``ci_open``,
    runs to the grid edge and is said in the title) and the estimate as a vertical
    line.

    Parameters
    ----------
    time_course : cardiolab.stats.timecourse.TimeCourse
        Result of :func:`cardiolab.stats.timecourse.fit_time_course`.
    parameter : {"tau_r", "tau_a"}
        Recovery (post-flight) or adaptation (in-flight) time constant.
    width, height : int
        Plot area (screen pixels).

    Returns
    -------
    holoviews.Overlay
        ``VSpan`` (CI), ``Curve`` (``tau`` vs ``lr``), ``Scatter`` (grid points),
        ``HLine`` (3.84) and ``VLine`` (estimate); log x axis.

    Raises
    ------
    CardiolabError
        If the time course has no profile of ``parameter``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from types import SimpleNamespace
    >>> tau = np.geomspace(0.5, 50, 9)
    >>> prof = pd.DataFrame({"tau": tau, "loglik": -(np.log(tau / 5)) ** 2,
    ...                      "lr": 2 * np.log(tau / 5) ** 2})
    >>> params = pd.DataFrame({"estimate": [5.0], "ci_low": [1.3], "ci_high": [19.0],
    ...                        "ci_open": [False]}, index=["tau_r"])
    >>> tc = SimpleNamespace(profile={"tau_r": prof}, params=params, feature="hr",
    ...                      epoch="supine")
    >>> plot = tau_profile(tc)
    >>> plot.HLine.I.data
    3.841458820694124
    """
    _need(time_course, ("profile", "params", "feature", "epoch"), "tau_profile")
    profiles = time_course.profile or {}
    if parameter not in profiles:
        raise CardiolabError(
            f"tau_profile: the {time_course.feature!r} time course has no profile of "
            f"{parameter!r} (it has {sorted(profiles)})"
        )
    prof = profiles[parameter].sort_values("tau")
    missing = [c for c in ("tau", "lr") if c not in prof.columns]
    if missing:
        raise CardiolabError(f"tau_profile: profile of {parameter!r} lacks columns {missing}")
    what = {"tau_r": "recovery", "tau_a": "adaptation"}.get(parameter, parameter)
    xdim = hv.Dimension("tau", label=f"{parameter}, {what} time constant", unit="d")
    ydim = hv.Dimension("lr", label="2 Δ log-likelihood")
    frame = pd.DataFrame({"tau": prof["tau"].to_numpy(float), "lr": prof["lr"].to_numpy(float)})
    frame = frame[np.isfinite(frame["tau"]) & (frame["tau"] > 0)]
    if frame.empty:
        raise CardiolabError(
            f"tau_profile: the profile of {parameter!r} ({time_course.feature}) has no "
            "positive finite tau"
        )
    grid_lo, grid_hi = float(frame["tau"].min()), float(frame["tau"].max())
    row = time_course.params.loc[parameter] if parameter in time_course.params.index else None
    layers = []
    title = f"{time_course.feature} ({time_course.epoch}): profile of {parameter}"
    if row is not None:
        est, lo, hi = (float(row[c]) for c in ("estimate", "ci_low", "ci_high"))
        lo_s = lo if np.isfinite(lo) and lo > 0 else grid_lo
        hi_s = min(hi, grid_hi) if np.isfinite(hi) else grid_hi
        if hi_s > lo_s:
            layers.append(
                hv.VSpan(lo_s, hi_s).opts(
                    backend="bokeh",
                    color=PHASE_COLORS["post" if parameter == "tau_r" else "in"],
                    alpha=0.15,
                )
            )
        hi_txt = "∞" if not np.isfinite(hi) else f"{hi:.3g}"
        title += f"\nτ = {est:.3g} d, 95% CI {lo:.3g} to {hi_txt} d"
        if bool(row.get("ci_open", False)):
            title += " (open: not reached within the bounds)"
    layers.append(
        hv.Curve(frame, kdims=[xdim], vdims=[ydim]).opts(
            backend="bokeh", color="black", line_width=2
        )
    )
    layers.append(
        hv.Scatter(frame, kdims=[xdim], vdims=[ydim]).opts(
            backend="bokeh", color="black", size=4, tools=["hover"]
        )
    )
    layers.append(
        hv.HLine(LR_CUTOFF).opts(backend="bokeh", color="red", line_dash="dashed", line_width=1)
    )
    layers.append(
        hv.Text(grid_hi, LR_CUTOFF, "95% cut (3.84)", halign="right", valign="bottom").opts(
            backend="bokeh", color="red", text_font_size="9pt"
        )
    )
    if row is not None and np.isfinite(est):
        layers.append(hv.VLine(est).opts(backend="bokeh", color="black", line_dash="dotted"))
    return hv.Overlay(layers).opts(
        backend="bokeh",
        title=wrap_title(title, width),
        xlabel=xdim.pprint_label,
        ylabel=ydim.pprint_label,
        logx=True,
        frame_width=width,
        frame_height=height,
        show_grid=True,
    )
