"""Beat editing on the served Session review page, in chromium, and who signs it.

A reviewer deletes a beat and adds it back by clicking on the ECG; the page's Features
table and the derived store follow each change, and the audit trail names the
operating-system user (loopback, no login) or the signed-in user (with a login).
"""

from __future__ import annotations

import getpass
import io
import re

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import served_with_login  # noqa: E402
from .pages import (  # noqa: E402
    N_SIGNALS,
    feature_cell,
    open_session,
    sign_in,
    wait_for_plots,
)

#: Screen position (page coordinates) of time ``t`` on the figure titled ``title``,
#: from bokeh's own scale: the point a reviewer clicks.
TIME_TO_PAGE = """([title, t]) => {
  for (const v of Bokeh.index.all_views()) {
    if (v.model.type == "Figure" && v.model.title && v.model.title.text == title) {
      const r = v.canvas_view.el.getBoundingClientRect();
      return {x: r.left + v.frame.x_scale.compute(t), y: r.top + v.frame.bbox.vcenter};
    }
  }
  return null;
}"""
#: Zoom the figure titled ``title`` (the shared time axis: every panel follows).
ZOOM = """([title, start, end]) => {
  for (const v of Bokeh.index.all_views())
    if (v.model.type == "Figure" && v.model.title && v.model.title.text == title)
      v.model.x_range.setv({start: start, end: end});
}"""
#: Page box (document coordinates) of the legend holding ``label``, and its labels.
LEGEND = """(label) => {
  for (const v of Bokeh.index.all_views()) {
    if (v.model.type == "Legend" && v.model.items.some(it => it.label.value == label)) {
      const r = v.parent.canvas_view.el.getBoundingClientRect();
      return {x: window.scrollX + r.left + v.bbox.left, y: window.scrollY + r.top + v.bbox.top,
              width: v.bbox.width,
              height: v.bbox.height, labels: v.model.items.map(it => it.label.value)};
    }
  }
  return null;
}"""


def _inked(png: bytes, rgb: tuple, tolerance: int = 40) -> int:
    """Pixels of colour ``rgb`` (within ``tolerance`` per channel) in a PNG."""
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return int((np.abs(im - np.asarray(rgb)).max(axis=2) <= tolerance).sum())


def test_delete_and_insert_a_beat_on_the_page(served_app, page, console):
    from cardiolab.annotations import review_state, reviewed_beats
    from cardiolab.catalog import open_catalog
    from cardiolab.pipeline import read_session_results

    subject = "S03"  # the other browser tests flag S01's beats
    user = getpass.getuser()
    session, title = open_session(page, served_app, subject)
    expect(
        page.get_by_text(
            f"Changes are signed by {user} (operating-system user of the server; no login)."
        )
    ).to_be_visible()
    assert page.get_by_label("Reviewer", exact=True).count() == 0  # nobody types a name

    # the beat plot's legend: an entry, with its marker drawn, for every kind of beat
    legend = page.evaluate(LEGEND, "kept beat")
    assert legend["labels"] == [
        "kept beat",
        "rejected by the detector",
        "flagged by a reviewer",
        "added or moved by a reviewer",
    ]
    box = {k: legend[k] for k in ("x", "y", "width", "height")}
    png = page.screenshot(full_page=True, clip=box)
    for rgb in ((0x1F, 0x3B, 0x73), (255, 0, 0), (0x2C, 0xA0, 0x2C)):
        assert _inked(png, rgb) >= 10, rgb
    # no blank gap above the Features table: its header row sits under the tab bar
    tab = page.locator(".bk-tab", has_text="Features").bounding_box()
    header = page.locator(".tabulator-header").first.bounding_box()
    assert 0 <= header["y"] - (tab["y"] + tab["height"]) < 20, (tab, header)

    cat = open_catalog(served_app.catalog)
    before = reviewed_beats(cat, subject, session)
    feats0 = read_session_results(cat.derived_path, subject, session)
    t = before["t"].values
    valid = before["valid"].values.astype(bool)
    epoch = "supine"
    ok = valid & np.roll(valid, 1) & np.roll(valid, -1) & (before["epoch"].values == epoch)
    k = int(np.flatnonzero(ok)[len(np.flatnonzero(ok)) // 2])
    assert feature_cell(page, epoch) == pytest.approx(
        float(feats0["hr"].sel(epoch=epoch)), abs=0.006
    )

    # 1. delete beat k (typed): the store and the page's features follow
    page.get_by_label("beats (e.g. 12, 15-18)").fill(str(k))
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_role("button", name="Delete selected beats", exact=True).click()
    expect(
        page.get_by_text(f"1 beat(s) deleted by {user}; beats and features recomputed.")
    ).to_be_visible()
    cut = reviewed_beats(cat, subject, session)
    np.testing.assert_array_equal(cut["t"].values, np.delete(t, k))
    feats1 = read_session_results(cat.derived_path, subject, session)
    hr1 = float(feats1["hr"].sel(epoch=epoch))
    assert hr1 != pytest.approx(float(feats0["hr"].sel(epoch=epoch)), abs=1e-6)
    expect(page.get_by_text(re.compile(rf": {t.size - 1} beats,"))).to_be_visible()
    assert feature_cell(page, epoch) == pytest.approx(hr1, abs=0.006)

    # 2. add it back: zoom on it, "insert a beat", click on the ECG 20 ms after it
    page.get_by_role("button", name="insert a beat", exact=True).click()
    page.evaluate(ZOOM, [title, t[k] - 2.0, t[k] + 2.0])
    wait_for_plots(page, title, N_SIGNALS)
    point = page.evaluate(TIME_TO_PAGE, [title, float(t[k]) + 0.020])
    page.mouse.click(point["x"], point["y"])
    expect(
        page.get_by_text(re.compile(rf"beat inserted near .* by {re.escape(user)}"))
    ).to_be_visible()
    expect(page.get_by_text(re.compile(rf": {t.size} beats,"))).to_be_visible()
    # placed on the R-peak: the detector's beats and features come back exactly
    back = reviewed_beats(cat, subject, session)
    np.testing.assert_array_equal(back["t"].values, t)
    feats2 = read_session_results(cat.derived_path, subject, session)
    for name in ("hr", "sdnn", "rmssd", "n_beats"):
        np.testing.assert_allclose(feats2[name], feats0[name], rtol=1e-12, err_msg=name)
    assert feature_cell(page, epoch) == pytest.approx(
        float(feats0["hr"].sel(epoch=epoch)), abs=0.006
    )

    # the audit trail: two edits, signed by the operating-system user
    state = review_state(cat, subject, session)
    assert state.trail["action"].tolist() == ["edit", "edit"]
    assert state.trail["reviewer"].tolist() == [user, user]
    page.locator(".bk-tab", has_text="Audit trail").click()
    trail = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="status"))
    expect(trail.locator(".tabulator-row")).to_have_count(2)
    reviewers = trail.locator('.tabulator-row [tabulator-field="reviewer"]').all_inner_texts()
    assert reviewers == [user, user]
    console.check()


@pytest.fixture
def signed_in_app(processed_campaign, tmp_path):
    """The app behind a login (bob / his password)."""
    password = "a long enough passphrase"
    app = served_with_login(processed_campaign, tmp_path, "bob", password)
    yield app, password
    app.stop()


def test_the_trail_shows_the_signed_in_user(signed_in_app, page, console):
    from cardiolab.annotations import review_state

    app, password = signed_in_app
    sign_in(page, app, "bob", password)
    subject = "S02"
    session, _ = open_session(page, app, subject)
    expect(page.get_by_text("Changes are signed by bob (signed-in user).")).to_be_visible()
    page.get_by_label("flag applies to").select_option("abp")
    page.get_by_label("beats (e.g. 12, 15-18)").fill("5-7")
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_role("button", name="Flag selected beats", exact=True).click()
    expect(
        page.get_by_text("3 beat(s) flagged (abp values) by bob; beats and features recomputed.")
    ).to_be_visible()
    state = review_state(app.catalog, subject, session)
    last = state.trail.iloc[-1]
    assert (last["reviewer"], last["action"], last["channel"], last["beats"]) == (
        "bob",
        "flag",
        "abp",
        (5, 6, 7),
    )
    assert state.n_flagged == 0  # a pressure flag leaves the beats (and RR) in
    page.locator(".bk-tab", has_text="Audit trail").click()
    trail = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="status"))
    expect(trail.locator('.tabulator-row [tabulator-field="reviewer"]').last).to_have_text("bob")
    console.check()
