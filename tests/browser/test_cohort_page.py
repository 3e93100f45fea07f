"""The Cohort page in chromium: a feature switch shows its loading state at once, then
the new feature's plots; p values never read 0; the report downloads self-contained."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import TIMEOUT_MS, TIMINGS  # noqa: E402
from .pages import BOKEH_STATE, wait_for_plots  # noqa: E402

#: Watches every animation frame from now on: the first time (performance.now(), ms) a
#: bokeh view carries Panel's loading class (``pn-loading``), the first time the plot
#: titled ``title`` is drawn, and whether the loading state was still shown then.
WATCH = """([js, title]) => {
  const state = eval(js);
  const w = window.__watch = {t0: performance.now(), loading: null, drawn: null};
  const frame = () => {
    const now = performance.now();
    let loading = false;
    for (const view of Bokeh.index.all_views())
      if ((view.model.css_classes || []).includes("pn-loading")) loading = true;
    if (loading && w.loading === null) w.loading = now - w.t0;
    const s = state();
    if (s && s.idle && s.finished && s.titles.includes(title) && !loading) {
      w.drawn = now - w.t0;
      return;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""


def select(page, label: str):
    return page.get_by_label(label, exact=True)


def test_feature_switch_shows_loading_then_new_plots(served_app, page, console):
    page.goto(served_app.page_url("cohort"))
    expect(select(page, "Feature")).to_have_value("hr")
    wait_for_plots(page, "hr (supine): Pre-flight")

    page.evaluate(WATCH, [BOKEH_STATE, "sbp (supine): Pre-flight"])
    select(page, "Feature").select_option("sbp")
    # the message says what is being done, while the old plots are dimmed
    expect(page.get_by_text("Fitting the models of sbp (supine)")).to_be_visible()
    page.wait_for_function("() => window.__watch.drawn !== null", timeout=TIMEOUT_MS)
    watch = page.evaluate("() => window.__watch")
    assert watch["loading"] is not None, "no loading state was shown"
    assert watch["loading"] < watch["drawn"], watch
    TIMINGS["Cohort switch hr -> sbp: loading state shown"] = watch["loading"] / 1000
    TIMINGS["Cohort switch hr -> sbp: new plots drawn"] = watch["drawn"] / 1000
    expect(page.get_by_text("Fitting the models of sbp (supine)")).to_be_hidden()
    state = wait_for_plots(page, "sbp (supine): Pre-flight")
    assert "hr (supine): Pre-flight" not in state["titles"]

    # the p values of the contrast table are written, never 0 or 0.0
    table = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="p_holm"))
    cells = table.locator('.tabulator-cell[tabulator-field="p"]')
    expect(cells.first).to_be_visible()
    texts = [t.strip() for t in cells.all_inner_texts()]
    assert len(texts) >= 6, texts  # FD5 ... R+30
    assert all(re.fullmatch(r"< 0\.001|0\.\d+|1", t) for t in texts), texts
    days = [
        t.strip() for t in table.locator('.tabulator-cell[tabulator-field="day"]').all_inner_texts()
    ]
    assert days and not any(t.endswith(".0") for t in days), days

    # back to hr: its fits are kept, the plots come back
    select(page, "Feature").select_option("hr")
    wait_for_plots(page, "hr (supine): Pre-flight")

    # the report of the shown feature: self-contained HTML
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Download report (HTML)").click()
    download = info.value
    assert download.suggested_filename == "report_hr_supine.html"
    text = download.path().read_text()
    assert "<h2>hr (supine)</h2>" in text
    assert "Provenance" in text and "Audit trail" in text
    assert not re.findall(r"<(?:script|link|img)\b[^>]*(?:src|href)\s*=", text)
    assert html.escape("cardiolab cohort report") in text
    console.check()
