"""Session and cohort reports: one self-contained HTML file a team can file and sign.

A report holds what a reviewer signs off: the plots, the numbers (a session's
features; a cohort's phase contrasts and time-course parameters), the flags of the
feature computations and of the models, the provenance of every result (cardiolab
version, parameters hash, raw input hash) and the audit-trail summary (reviewer
events, flagged beats, reviewers).

The file is self-contained: the plots are bokeh documents with BokehJS inlined
(:class:`bokeh.resources.Resources` in ``inline`` mode), so a report opens offline and years later without a
CDN. Every text that comes from the data (subject, session, feature, channel and
reviewer names, flags, reasons) is escaped (:func:`html.escape`): a report never
carries markup of its own from a data file.

PDF is not written: the plots are drawn by BokehJS in a browser, and no maintained
library renders them to PDF without one (WeasyPrint and xhtml2pdf run no JavaScript;
HoloViews' matplotlib backend drops the plots' bokeh styling, so the plots would need
a second implementation). A report prints to PDF from any browser (print stylesheet
included: one plot per page, tables not split mid-row).

``cardiolab report CATALOG [--subject S --session L]`` writes one
(:mod:`cardiolab.cli`); the Cohort page has a download button and the Session review
page can call :func:`session_report`.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import __version__
from .errors import CardiolabError
from .formatting import display_table, format_day

log = logging.getLogger("cardiolab")

__all__ = [
    "REPORT_FORMATS",
    "audit_summary",
    "cohort_report",
    "session_report",
    "write_report",
]

#: File formats :func:`write_report` writes.
REPORT_FORMATS = ("html",)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.flags li { color: #8a4b00; } .meta td { text-align: left; font-family: monospace; }
.plot { margin: 1em 0; }
@media print { .plot { break-inside: avoid; page-break-inside: avoid; }
               tr { break-inside: avoid; } body { margin: 0; } }
"""


def _e(text) -> str:
    """Text from the data, escaped for HTML (quotes too: it may end in an attribute)."""
    return html.escape(str(text), quote=True)


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    """A table as HTML: numbers as :func:`cardiolab.formatting.display_table` writes them,
    every cell and header escaped."""
    shown = display_table(frame)
    return shown.to_html(index=index, escape=True, na_rep="", border=0)


def _meta(rows: Sequence[tuple[str, object]]) -> str:
    """Key-value rows (provenance, audit summary) as an escaped two-column table."""
    body = "".join(f"<tr><th class='text'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table class='meta'>{body}</table>"


def _flags(lines: Sequence[str]) -> str:
    if not lines:
        return "<p>No flag.</p>"
    return "<ul class='flags'>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"


def _plots(objects: Sequence) -> tuple[str, str]:
    """(script, divs) of HoloViews objects rendered as bokeh documents (one each)."""
    import holoviews as hv
    from bokeh.embed import components

    # drawn on a 2D canvas (no WebGL: no GPU needed, and BokehJS without its GL part)
    renderer = hv.renderer("bokeh").instance(webgl=False)
    models = [renderer.get_plot(obj).state for obj in objects if obj is not None]
    if not models:
        return "", "<p>No plot.</p>"
    script, divs = components(models)
    return script, "".join(f"<div class='plot'>{div}</div>" for div in divs)


def _page(title: str, sections: Sequence[tuple[str, str]], script: str) -> str:
    """The whole document: BokehJS inlined, the plots' script, the sections."""
    from bokeh.resources import Resources

    # BokehJS itself, inlined (1.3 MB): the plots need no widget, table, GL or MathJax
    # part. Its raw text only: the files list also names the JS of extensions
    # registered in this process (Panel's), as URLs relative to a server
    bokehjs = "\n".join(
        f'<script type="text/javascript">\n{js}\n</script>'
        for js in Resources(mode="inline", components=["bokeh"]).js_raw
    )
    made = datetime.now(UTC).isoformat(timespec="seconds")
    body = "".join(f"<h2>{_e(head)}</h2>\n{content}\n" for head, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n{bokehjs}\n{script}\n"
        f"</head>\n<body>\n<h1>{_e(title)}</h1>\n"
        f"<p>Made by cardiolab {_e(__version__)} on {_e(made)} (UTC).</p>\n{body}"
        "</body>\n</html>\n"
    )


def audit_summary(trail: pd.DataFrame, n_flagged: int) -> dict:
    """The audit trail of a review in three numbers and a list.

    Parameters
    ----------
    trail : pandas.DataFrame
        An audit trail (:func:`cardiolab.annotations.read_trail`): one row per event,
        columns ``reviewer``, ``time``.
    n_flagged : int
        Beats currently flagged by a reviewer.

    Returns
    -------
    dict
        ``events`` (number of reviewer events), ``flagged_beats``, ``reviewers``
        (sorted names), ``last_event`` (ISO 8601 UTC time, or ``""``) and ``head``
        (the last event's hash, ``""`` if none: a report that prints it anchors the
        trail, :func:`cardiolab.annotations.verify_trail`).
    """
    reviewers = sorted({str(r) for r in trail["reviewer"]}) if len(trail) else []
    last = ""
    if len(trail) and "time" in trail:
        last = pd.Timestamp(trail["time"].max()).isoformat()
    head = str(trail["hash"].iloc[-1] or "") if len(trail) and "hash" in trail else ""
    return {
        "events": int(len(trail)),
        "flagged_beats": int(n_flagged),
        "reviewers": reviewers,
        "last_event": last,
        "head": head,
    }


def _provenance_rows(attrs: dict) -> list[tuple[str, object]]:
    return [
        ("cardiolab version of the results", attrs.get("cardiolab_version", "")),
        ("parameters hash", attrs.get("parameters_hash", "")),
        ("raw input hash", attrs.get("raw_input_hash", "")),
        ("processed at", attrs.get("created", "")),
    ]


def _session_flags(features) -> list[str]:
    """The feature computations' flags of a session (features attrs ``flags``, JSON)."""
    raw = features.attrs.get("flags", "[]") if features is not None else "[]"
    try:
        flags = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        return [str(raw)]
    lines = []
    for flag in flags:
        if isinstance(flag, dict):
            where = " ".join(str(flag.get(k, "")) for k in ("feature", "epoch") if flag.get(k))
            text = "; ".join(f"{k}: {v}" for k, v in flag.items() if k not in ("feature", "epoch"))
            lines.append(f"{where}: {text}" if where else text)
        else:
            lines.append(str(flag))
    return lines


def _features_frame(features) -> pd.DataFrame:
    """A session's features as rows: feature, units, long name, one column per epoch."""
    epochs = [str(e) for e in features["epoch"].values]
    rows = []
    for name, da in features.data_vars.items():
        row = {"feature": str(name), "units": da.attrs.get("units", "")}
        row.update(dict(zip(epochs, da.values.astype(float), strict=True)))
        row["long_name"] = da.attrs.get("long_name", "")
        rows.append(row)
    return pd.DataFrame(rows, columns=["feature", "units", *epochs, "long_name"])


def session_report(catalog, subject: str, session: str) -> str:
    """A processed session's report: beat plots, features, flags, provenance, audit trail.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign catalog.
    subject, session : str
        The session; it must have been processed (``cardiolab process``).

    Returns
    -------
    str
        A self-contained HTML document (BokehJS inlined). Sections: the session
        (subject, session, phase, day), the beat-to-beat series (RR, systolic
        pressure, skin flux where recorded; detector-rejected beats as crosses,
        reviewer-flagged beats ringed: :func:`cardiolab.viz.beat_series`), the features
        per epoch with their units, the feature computations' flags, the
        provenance (the results' cardiolab version, parameters hash, raw input hash)
        and the audit-trail summary (:func:`audit_summary`), with the state of its
        hash chain and its head hash.

    Raises
    ------
    CatalogError
        If the catalog has no such subject or session.
    CardiolabError
        If the session has not been processed.

    Examples
    --------
    >>> text = session_report("data_catalog.yaml", "S01", "R+1")  # doctest: +SKIP
    """
    from .annotations import review_state, reviewed_beats
    from .catalog import as_catalog
    from .derived import derived_store
    from .trail import verify_trail
    from .viz import beat_series

    cat = as_catalog(catalog)
    state = review_state(cat, subject, session)  # checks the session exists, is processed
    store = derived_store(cat)
    attrs = store.session_attrs(subject, session) or {}
    features = store.read_session(subject, session, "features")
    beats = reviewed_beats(cat, subject, session)
    shown = [v for v in ("rr", "sbp", "flux") if v in beats]
    plot = beat_series(beats, shown, flagged=state.flags.to_numpy()) if shown else None
    script, plots = _plots([plot])
    audit = audit_summary(state.trail, state.n_flagged)
    chain = verify_trail(cat, subject, session).iloc[0].to_dict()
    n_beats = int(beats.sizes.get("beat", 0))
    rejected = int((~beats["auto_valid"].values.astype(bool)).sum()) if "auto_valid" in beats else 0
    about = [
        ("subject", subject),
        ("session", session),
        ("phase", attrs.get("phase", "")),
        ("day", format_day(attrs["day"]) if "day" in attrs else ""),
        ("campaign", getattr(cat.campaign, "name", "")),
        ("beats", n_beats),
        ("beats rejected by the detector", rejected),
        ("beats flagged by reviewers", audit["flagged_beats"]),
    ]
    review = [
        ("reviewer events", audit["events"]),
        ("flagged beats", audit["flagged_beats"]),
        ("reviewers", ", ".join(audit["reviewers"]) or "none"),
        ("last event (UTC)", audit["last_event"] or "none"),
        ("hash chain", "{status}: {message}".format(**chain)),
        ("trail head (SHA-256 of the last event)", audit["head"] or "none"),
        (
            "features",
            "recomputed after the last event"
            if not state.pending
            else "not yet recomputed after the last event",
        ),
    ]
    sections = [
        ("Session", _meta(about)),
        ("Beat-to-beat series", plots),
        (
            "Features",
            _table(_features_frame(features))
            if features is not None
            else "<p>No features stored.</p>",
        ),
        ("Flags of the feature computations", _flags(_session_flags(features))),
        ("Provenance", _meta(_provenance_rows(attrs))),
        ("Audit trail", _meta(review)),
    ]
    return _page(f"cardiolab session report: {subject} {session}", sections, script)


#: ``fits(feature, epoch) -> (contrasts, time_course, errors)``, as
#: :meth:`cardiolab.dashboards.CohortPage.fitted` returns them.
Fits = Callable[[str, str], tuple]


def _campaign_provenance(cat) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-session provenance and review counts of a processed campaign."""
    from .derived import derived_store
    from .trail import read_trail

    store = derived_store(cat)
    prov, review = [], []
    for row in cat.sessions.itertuples():
        attrs = store.session_attrs(row.subject, row.session)
        if not attrs:
            continue
        prov.append(
            {
                "subject": row.subject,
                "session": row.session,
                "cardiolab_version": attrs.get("cardiolab_version", ""),
                "parameters_hash": attrs.get("parameters_hash", ""),
                "raw_input_hash": attrs.get("raw_input_hash", ""),
            }
        )
        trail = read_trail(store, row.subject, row.session)
        summary = audit_summary(trail, int(attrs.get("review_flagged", 0) or 0))
        review.append(
            {
                "subject": row.subject,
                "session": row.session,
                "events": summary["events"],
                "flagged_beats": summary["flagged_beats"],
                "reviewers": ", ".join(summary["reviewers"]),
                "trail_head": summary["head"],
            }
        )
    return pd.DataFrame(prov), pd.DataFrame(review)


def _digest(values) -> str:
    """SHA-256 of sorted strings joined by newlines: one hash for a set of hashes."""
    return hashlib.sha256("\n".join(sorted(map(str, values))).encode()).hexdigest()


def cohort_report(
    catalog,
    features: Sequence[str] | None = None,
    epoch: str = "supine",
    *,
    table: pd.DataFrame | None = None,
    fits: Fits | None = None,
) -> str:
    """A cohort report: per feature, the plots, phase contrasts, time course and flags.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        A processed campaign.
    features : sequence of str, optional
        Features to report (default: ``["hr"]``, or the table's first feature).
    epoch : str
        Protocol epoch of the features.
    table : pandas.DataFrame, optional
        The features table (default: :func:`cardiolab.pipeline.features_table`).
    fits : callable, optional
        ``fits(feature, epoch) -> (contrasts, time_course, errors)``: the models of a
        feature (e.g. the Cohort page's, fitted once); default: fitted here with
        :func:`cardiolab.stats.results.feature_models`.

    Returns
    -------
    str
        A self-contained HTML document. Per feature: the timeline, forest plot and
        likelihood profile of ``tau_r`` (:mod:`cardiolab.viz`), the phase-contrast
        table (change from the pre-flight mean, CI, Satterthwaite df, ``p``, Holm
        ``p_holm``), the time-course parameters, the models' flags and errors. For
        the campaign: the provenance of every session's results (cardiolab version,
        parameters hash, raw input hash; and one SHA-256 over all raw input hashes)
        and the audit trail per session (events, flagged beats, reviewers).

    Raises
    ------
    CardiolabError
        If a feature or the epoch is not in the features table.
    """
    from .catalog import as_catalog
    from .pipeline import features_table
    from .stats.results import feature_columns
    from .viz import forest_plot, tau_profile, timeline

    cat = as_catalog(catalog)
    table = features_table(cat) if table is None else table
    available = feature_columns(table)
    if features is None:
        features = ["hr"] if "hr" in available else available[:1]
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise CardiolabError(f"cohort_report: the features table has no feature {missing}")
    if epoch not in set(table["epoch"].astype(str)):
        raise CardiolabError(f"cohort_report: the features table has no epoch {epoch!r}")
    if fits is None:
        from .stats.results import feature_models

        def fits(feature, epoch):
            return feature_models(table, feature, epoch)

    sections, scripts = [], []
    for feature in features:
        contrasts, tc, errors = fits(feature, epoch)
        objects = [timeline(tc, table=table, feature=feature, epoch=epoch)]
        if contrasts is not None:
            objects.append(forest_plot(contrasts))
        if tc is not None and "tau_r" in tc.profile:
            objects.append(tau_profile(tc, "tau_r"))
        script, plots = _plots(objects)
        scripts.append(script)
        flags = [
            f"{what}: {flag}"
            for what, result in (("phase contrasts", contrasts), ("time course", tc))
            if result is not None
            for flag in result.flags
        ] + [f"{what} not fitted: {err}" for what, err in errors]
        parts = [plots]
        if contrasts is not None:
            parts.append(
                f"<h3>Phase contrasts ({_e(contrasts.inference)})</h3>"
                + _table(contrasts.table.reset_index())
            )
        if tc is not None:
            parts.append("<h3>Time course</h3>" + _table(tc.params.reset_index()))
        parts.append("<h3>Flags of the models</h3>" + _flags(flags))
        sections.append((f"{feature} ({epoch})", "\n".join(parts)))
    prov, review = _campaign_provenance(cat)
    totals = [
        ("sessions", len(prov)),
        (
            "cardiolab versions of the results",
            ", ".join(sorted(set(prov["cardiolab_version"]))) if len(prov) else "",
        ),
        (
            "parameters hashes",
            ", ".join(sorted(set(prov["parameters_hash"]))) if len(prov) else "",
        ),
        (
            "raw input hash of the campaign (SHA-256 of the sessions')",
            _digest(prov["raw_input_hash"]) if len(prov) else "",
        ),
    ]
    reviewers = sorted(
        {r for cell in review.get("reviewers", []) for r in str(cell).split(", ") if r}
    )
    audit = [
        ("reviewer events", int(review["events"].sum()) if len(review) else 0),
        ("flagged beats", int(review["flagged_beats"].sum()) if len(review) else 0),
        ("reviewers", ", ".join(reviewers) or "none"),
        (
            "review trails digest (SHA-256 of the sessions' trail heads)",
            _digest(
                f"{r.subject} {r.session} {r.trail_head}"
                for r in review.itertuples()
                if r.trail_head
            )
            if len(review) and review["trail_head"].astype(bool).any()
            else "none",
        ),
    ]
    sections += [
        ("Provenance", _meta(totals) + _table(prov)),
        ("Audit trail", _meta(audit) + _table(review)),
    ]
    name = getattr(cat.campaign, "name", "") or "campaign"
    return _page(f"cardiolab cohort report: {name}", sections, "\n".join(scripts))


def write_report(text: str, path, *, overwrite: bool = False) -> Path:
    """Write a report to ``path``; an existing file is kept unless ``overwrite``.

    Parameters
    ----------
    text : str
        The report (:func:`session_report`, :func:`cohort_report`).
    path : str or pathlib.Path
        Where to write it (``.html``).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CardiolabError
        If ``path`` exists and ``overwrite`` is false, or its folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CardiolabError(f"{path}: no folder {path.parent} to write the report in")
    try:
        with open(path, "w" if overwrite else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise CardiolabError(
            f"{path}: a file is already there (pass --overwrite to replace it)"
        ) from None
    return path
