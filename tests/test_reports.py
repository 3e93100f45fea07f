"""Session and cohort reports (cardiolab.reports) and ``cardiolab report``: content,
provenance, audit trail, escaping, self-containment, no overwrite."""

from __future__ import annotations

import html
import re
import shutil

import numpy as np
import pytest

from cardiolab.annotations import flag_beats
from cardiolab.catalog import open_catalog
from cardiolab.cli import main
from cardiolab.errors import CardiolabError
from cardiolab.pipeline import features_table, process_campaign, read_session_results
from cardiolab.reports import cohort_report, session_report, write_report

#: Text a data file or a reviewer may carry: it must show as written, never run.
HOSTILE = '<img src=x onerror="alert(1)"></td><script>alert(2)</script>'


@pytest.fixture(scope="module")
def processed(small_campaign, tmp_path_factory):
    """A processed copy of the small campaign (3 subjects x L-30, FD10, R+6h, R+3)."""
    src, _ = small_campaign
    base = tmp_path_factory.mktemp("reports") / "c"
    shutil.copytree(src, base, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    report = process_campaign(base / "data_catalog.yaml", client="sync", progress=False)
    assert len(report.failures) == 0, report.failures.to_string()
    return base / "data_catalog.yaml"


@pytest.fixture
def reviewed(processed, tmp_path):
    """A fresh copy of the processed campaign in which a hostile reviewer flagged two
    beats of S01 L-30 (trails only grow: one copy per test)."""
    dst = tmp_path / "c"
    shutil.copytree(processed.parent, dst)
    catalog = dst / "data_catalog.yaml"
    flag_beats(catalog, "S01", "L-30", [3, 7], reviewer=HOSTILE, reason=HOSTILE)
    return catalog


def _external_resources(text: str) -> list[str]:
    """Tags that would fetch something when the report is opened: scripts, styles,
    images or frames with a URL."""
    return re.findall(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*[^>]*>", text)


def _row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell`` (unescaped)."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", text, flags=re.S):
        cells = [html.unescape(c.strip()) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starts with {first_cell!r}")


def test_session_report_content(reviewed):
    cat = open_catalog(reviewed)
    text = session_report(cat, "S01", "L-30")
    assert "<title>cardiolab session report: S01 L-30</title>" in text
    assert _row(text, "day")[1] == "day -30"
    # every feature of every epoch, as stored (4 decimals)
    features = read_session_results(cat.derived_path, "S01", "L-30")
    epochs = [str(e) for e in features["epoch"].values]
    header = _row(text, "feature")
    assert header[:2] == ["feature", "units"] and header[2 : 2 + len(epochs)] == epochs
    for name in ("hr", "rmssd", "sbp"):
        cells = _row(text, name)
        assert cells[1] == features[name].attrs["units"]
        shown = np.array([float(c) if c else np.nan for c in cells[2 : 2 + len(epochs)]])
        np.testing.assert_allclose(shown, features[name].values, atol=5.1e-5, rtol=0)
    # provenance: the stored results' hashes, word for word
    attrs = features.attrs
    assert _row(text, "parameters hash")[1] == attrs["parameters_hash"]
    assert _row(text, "raw input hash")[1] == attrs["raw_input_hash"]
    assert len(attrs["raw_input_hash"]) >= 32
    # audit trail: one event, two beats flagged, the reviewer named (escaped)
    assert _row(text, "reviewer events")[1] == "1"
    assert _row(text, "flagged beats")[1] == "2"
    assert _row(text, "reviewers")[1] == HOSTILE
    assert _row(text, "beats flagged by reviewers")[1] == "2"
    # the trail's state and head (the report anchors the trail), as verify_trail says
    from cardiolab.annotations import verify_trail

    check = verify_trail(cat, "S01", "L-30").iloc[0]
    assert _row(text, "hash chain")[1] == "verified: 1 event(s), hash chain intact"
    assert _row(text, "trail head (SHA-256 of the last event)")[1] == check["head"]
    assert len(check["head"]) == 64
    # the hostile text never reaches the page as markup
    assert HOSTILE not in text
    assert "<script>alert(2)" not in text and "<img src=x" not in text
    assert html.escape(HOSTILE) in text
    # self-contained: no external resource; BokehJS and the plot inline
    assert _external_resources(text) == []
    assert "Bokeh.embed.embed_items" in text and text.count("class='plot'") == 1


def test_session_report_of_an_unprocessed_or_unknown_session(processed, tmp_path):
    with pytest.raises(CardiolabError, match="S09"):
        session_report(processed, "S09", "L-30")


def test_cohort_report_content_and_hostile_feature_name(processed):
    cat = open_catalog(processed)
    table = features_table(cat)
    hostile = table.rename(columns={"hr": HOSTILE})
    hostile.attrs = {**table.attrs, "units": {**table.attrs.get("units", {}), HOSTILE: "bpm"}}
    text = cohort_report(cat, ["sbp", HOSTILE], "supine", table=hostile)
    assert HOSTILE not in text and "<script>alert(2)" not in text and "<img src=x" not in text
    assert html.escape(f"{HOSTILE} (supine)") in text  # the section heading, escaped
    # the contrasts of sbp, as phase_contrasts computes them; p values never 0.0
    from cardiolab.stats.mixed import phase_contrasts

    expected = phase_contrasts(table, "sbp", epoch="supine").table
    header = _row(text, "timepoint")
    assert header[:5] == ["timepoint", "phase", "day", "n", "estimate"]
    assert header[-2:] == ["p", "p_holm"]
    for timepoint, row in expected.iterrows():
        cells = _row(text, timepoint)
        assert float(cells[4]) == pytest.approx(row["estimate"], abs=5.1e-5)
        assert cells[2] == f"{row['day']:g}"  # days without ".0"
        assert cells[-2] != "0.0" and cells[-1] != "0.0"
        assert cells[-2] == ("< 0.001" if row["p"] < 1e-3 else f"{row['p']:.2g}")
    # provenance: every processed session's hashes, and one hash over the raw inputs
    for subject, session in [("S01", "L-30"), ("S03", "R+3")]:
        attrs = read_session_results(cat.derived_path, subject, session).attrs
        assert attrs["raw_input_hash"] in text and attrs["parameters_hash"] in text
    assert _row(text, "sessions")[1] == "12"
    assert _row(text, "review trails digest (SHA-256 of the sessions' trail heads)")[1] == "none"
    assert _external_resources(text) == []


def test_cohort_report_anchors_the_review_trails(reviewed):
    """One digest over every session's trail head: "S01 L-30 <head>" lines, sorted."""
    import hashlib

    from cardiolab.annotations import verify_trail

    cat = open_catalog(reviewed)
    text = cohort_report(cat, ["hr"], "supine")
    heads = verify_trail(cat)
    assert heads["status"].tolist() == ["verified"]
    lines = sorted(f"{r.subject} {r.session} {r.head}" for r in heads.itertuples())
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert _row(text, "review trails digest (SHA-256 of the sessions' trail heads)")[1] == digest
    assert _row(text, "S01")[:2] == ["S01", "L-30"]


def test_write_report_never_overwrites(tmp_path):
    path = write_report("<html>one</html>", tmp_path / "r.html")
    with pytest.raises(CardiolabError, match="--overwrite"):
        write_report("<html>two</html>", path)
    assert path.read_text() == "<html>one</html>"
    write_report("<html>two</html>", path, overwrite=True)
    assert path.read_text() == "<html>two</html>"
    with pytest.raises(CardiolabError, match="no folder"):
        write_report("x", tmp_path / "absent" / "r.html")


def test_report_command_round_trip(reviewed, tmp_path, capsys):
    out = tmp_path / "s.html"
    argv = ["report", str(reviewed), "--subject", "S01", "--session", "L-30", "--output", str(out)]
    assert main(argv) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    text = out.read_text()
    assert "cardiolab session report: S01 L-30" in text and html.escape(HOSTILE) in text
    # an existing file is kept, with a clear error and status 2
    out.write_text("kept")
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "kept"
    assert main([*argv, "--overwrite"]) == 0
    assert "cardiolab session report" in out.read_text()
    # the cohort report, its default name in the working folder
    cohort = tmp_path / "c.html"
    assert main(["report", str(reviewed), "--feature", "sbp", "--output", str(cohort)]) == 0
    assert "sbp (supine)" in cohort.read_text()
    # half a session is a usage error
    assert main(["report", str(reviewed), "--subject", "S01"]) == 2
    assert "both --subject and --session" in capsys.readouterr().err


def test_session_review_page_downloads_the_report_of_its_session(processed):
    """The Session review page's report button makes the shown session's report when it
    is clicked (its FileDownload callback), named after it; the page prints whole days."""
    import panel as pn

    from cardiolab.dashboards.session_review import SessionReview

    page = SessionReview(processed, subject="S02", session="R+3")
    (button,) = [w for w in page.__panel__().select(pn.widgets.FileDownload) if "report" in w.label]
    text = button.callback().read().decode("utf-8")
    assert button.filename == "report_S02_R+3.html"
    assert "S02" in text and "R+3" in text and "<!DOCTYPE html>" in text
    assert "day 3" in page._summary.object and "day 3.0" not in page._summary.object
