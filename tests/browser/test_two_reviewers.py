"""Two-reviewer mode on the served pages, in chromium: alice changes, bob confirms or rejects.

A campaign whose catalog says ``review: {confirmations: 2}`` is served behind the login
with two reviewers. alice deletes a beat on the Session review page: the change waits
(listed on the page and on the Campaign page) and the beat table and features stay as
they were; alice cannot confirm her own change. bob, signed in in another browser
context, confirms it: the beat table and features follow, equal to what
:mod:`cardiolab.annotations` says in Python, and the trail names both. A second change
of alice's that bob rejects is a disagreement on the Campaign page and has no effect.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import TIMEOUT_MS, TIMINGS, ConsoleLog, served_with_login  # noqa: E402
from .pages import feature_cell, open_session, sign_in  # noqa: E402

SUBJECT = "S01"
PASSWORDS = {"alice": "alice's long passphrase", "bob": "bob's long passphrase"}
#: Where screenshots go when $CARDIOLAB_SCREENSHOTS names a folder (to look at them).
SHOTS = os.environ.get("CARDIOLAB_SCREENSHOTS")
#: The list of changes to confirm when none awaits.
NONE_WAITING = "none: no change of this session awaits confirmation"
#: Rows per page of the Session review page's Beat table.
PAGE_SIZE = 15


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def two_reviewer_campaign(tmp_path_factory) -> Path:
    """Catalog of a processed one-session campaign (2 min) in two-reviewer mode."""
    import yaml

    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("two-reviewers") / "campaign"
    t0 = time.perf_counter()
    simulate_campaign(
        path, n_subjects=1, schedule=["L-30"], duration_min=2, seed=5, workers=1, progress=False
    )
    catalog = path / "data_catalog.yaml"
    spec = yaml.safe_load(catalog.read_text(encoding="utf-8"))
    spec["review"] = {"confirmations": 2}
    catalog.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    report = process_campaign(catalog, client="sync", progress=False)
    assert len(report.failures) == 0, report.failures.to_string()
    TIMINGS["two-reviewer campaign simulated and processed (1 session of 2 min)"] = (
        time.perf_counter() - t0
    )
    return catalog


@pytest.fixture
def served(two_reviewer_campaign, tmp_path):
    """The app behind the login with two reviewers, alice and bob."""
    app = served_with_login(
        two_reviewer_campaign, tmp_path, "alice", PASSWORDS["alice"], {"bob": PASSWORDS["bob"]}
    )
    yield app
    app.stop()


def _trail_rows(page) -> list[tuple[str, ...]]:
    """The Audit trail tab's rows: (event_id, reviewer, action, answers change, status)."""
    page.locator(".bk-tab", has_text="Audit trail").click()
    trail = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="status"))
    fields = ("event_id", "reviewer", "action", "answers change", "status")
    rows = [
        tuple(row.locator(f'[tabulator-field="{f}"]').inner_text() for f in fields)
        for row in trail.locator(".tabulator-row").all()
    ]
    page.locator(".bk-tab", has_text="Features").click()
    return rows


def _assert_beat_table(page, beat: int, t: float, n_beats: int) -> None:
    """The Beat table tab shows R-peak time ``t`` (s) for ``beat``, and ``n_beats`` beats."""
    page.locator(".bk-tab", has_text="Beat table").click()
    table = page.locator(".tabulator").filter(
        has=page.locator(".tabulator-col", has_text="reviewer_flag")
    )

    def row(number):
        return table.locator(
            ".tabulator-row",
            has=page.locator('[tabulator-field="beat"]', has_text=re.compile(rf"^{number}$")),
        )

    table.locator(f'.tabulator-page[data-page="{beat // PAGE_SIZE + 1}"]').click()
    shown = float(row(beat).locator('[tabulator-field="t (s)"]').inner_text())
    assert shown == pytest.approx(t, abs=0.0006), (beat, shown, t)
    table.locator('.tabulator-page[data-page="last"]').click()
    expect(row(n_beats - 1)).to_be_visible()
    expect(row(n_beats)).to_have_count(0)
    table.locator('.tabulator-page[data-page="first"]').click()
    page.locator(".bk-tab", has_text="Features").click()


def _waiting(page) -> list[str]:
    """The changes the Session review page offers to confirm or reject."""
    select = page.get_by_label("change awaiting a second reviewer")
    return [text.strip() for text in select.locator("option").all_inner_texts()]


def _campaign_rows(page) -> list[list[str]]:
    """The Campaign page's table of pending changes and disagreements."""
    fields = ("event_id", "reviewer", "action", "status", "rejected_by", "objection")
    table = page.locator(".tabulator").filter(
        has=page.locator(".tabulator-col", has_text="objection")
    )
    return [
        [row.locator(f'[tabulator-field="{f}"]').inner_text() for f in fields]
        for row in table.locator(".tabulator-row").all()
    ]


def _message(page, text: str):
    return page.locator(".alert").filter(has_text=text)


def _features(cat, session):
    from cardiolab.pipeline import read_session_results

    feats = read_session_results(cat.derived_path, SUBJECT, session)
    return {name: feats[name].values.copy() for name in ("hr", "sdnn", "rmssd", "n_beats")}


def _assert_features_shown(page, feats, epochs) -> None:
    """The page's Features table shows ``feats`` (rounded to 2 decimals)."""
    for i, epoch in enumerate(epochs):
        for name, column in (("hr", "hr (bpm)"), ("sdnn", "sdnn (ms)")):
            assert feature_cell(page, epoch, column) == pytest.approx(
                float(feats[name][i]), abs=0.006
            ), (epoch, name)


def test_a_change_takes_effect_once_a_second_reviewer_confirms_it(
    served, page, console, browser, browser_context_args
):
    from cardiolab.annotations import pending_changes, review_state, reviewed_beats
    from cardiolab.catalog import open_catalog
    from cardiolab.pipeline import read_session_results

    cat = open_catalog(served.catalog)
    t0 = time.perf_counter()
    sign_in(page, served, "alice", PASSWORDS["alice"])
    session, _ = open_session(page, served, SUBJECT)
    expect(page.get_by_text("Changes are signed by alice (signed-in user).")).to_be_visible()
    assert _waiting(page) == [NONE_WAITING]

    before = reviewed_beats(cat, SUBJECT, session)
    t = before["t"].values
    n = t.size
    feats0 = _features(cat, session)
    epochs = [
        str(e) for e in read_session_results(cat.derived_path, SUBJECT, session)["epoch"].values
    ]
    valid = before["valid"].values.astype(bool)
    ok = valid & np.roll(valid, 1) & np.roll(valid, -1) & (before["epoch"].values == "supine")
    k = int(np.flatnonzero(ok)[len(np.flatnonzero(ok)) // 2])
    _assert_features_shown(page, feats0, epochs)

    # 1. alice deletes beat k: the change waits; beats and features stay as they were
    page.get_by_label("beats (e.g. 12, 15-18)").fill(str(k))
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_label("reason", exact=True).fill("false beat")
    page.get_by_role("button", name="Delete selected beats", exact=True).click()
    expect(
        _message(
            page,
            "1 beat(s) deleted by alice; awaiting confirmation by another reviewer: the "
            "beats and features are unchanged until then.",
        )
    ).to_be_visible()
    expect(page.get_by_text(f": {n} beats,")).to_be_visible()
    expect(page.get_by_text("in 1 change(s), 1 awaiting a second reviewer.")).to_be_visible()
    change1 = f"change 1 by alice: delete beat {k} ({t[k]:.3f} s), reason: false beat"
    assert _waiting(page) == [change1]
    assert _trail_rows(page) == [("1", "alice", "edit", "", "pending")]
    _assert_beat_table(page, k, t[k], n)
    np.testing.assert_array_equal(reviewed_beats(cat, SUBJECT, session)["t"].values, t)
    for name, values in _features(cat, session).items():
        np.testing.assert_array_equal(values, feats0[name], err_msg=name)
    _assert_features_shown(page, feats0, epochs)
    waiting = pending_changes(cat)
    assert waiting[["event_id", "reviewer", "action", "status"]].values.tolist() == [
        [1, "alice", "edit", "pending"]
    ]
    # ... and listed on the Campaign page (alice's second tab)
    campaign = page.context.new_page()
    campaign_console = ConsoleLog(campaign)
    campaign.goto(served.page_url("campaign"))
    expect(
        campaign.get_by_text("1 change(s) awaiting confirmation, 0 disagreement(s).")
    ).to_be_visible()
    assert _campaign_rows(campaign) == [["1", "alice", "edit", "pending", "", ""]]
    _shot(campaign, "1-campaign-pending")

    # 2. alice cannot confirm her own change: refused, and nothing is recorded
    page.get_by_role("button", name="Confirm change", exact=True).click()
    expect(
        _message(
            page, f"S01 {session}: event 1 is alice's own change: another reviewer confirms it"
        )
    ).to_be_visible()
    _shot(page, "2-alice-confirms-her-own-change")
    assert review_state(cat, SUBJECT, session).trail["event_id"].tolist() == [1]

    # 3. bob, signed in in another browser context, confirms it: it takes effect
    bob_context = browser.new_context(**browser_context_args)
    bob_context.set_default_timeout(TIMEOUT_MS)
    bob = bob_context.new_page()
    bob_console = ConsoleLog(bob)
    sign_in(bob, served, "bob", PASSWORDS["bob"])
    open_session(bob, served, SUBJECT)
    expect(bob.get_by_text("Changes are signed by bob (signed-in user).")).to_be_visible()
    assert _waiting(bob) == [change1]
    _shot(bob, "3-bob-sees-the-change")
    bob.get_by_role("button", name="Confirm change", exact=True).click()
    expect(
        _message(bob, "change 1 confirmed by bob; in effect: beats and features recomputed.")
    ).to_be_visible()
    expect(bob.get_by_text(f": {n - 1} beats,")).to_be_visible()
    cut = reviewed_beats(cat, SUBJECT, session)
    np.testing.assert_array_equal(cut["t"].values, np.delete(t, k))
    state = review_state(cat, SUBJECT, session)
    assert state.trail[["reviewer", "action", "refers_to", "status"]].values.tolist() == [
        ["alice", "edit", 0, "in effect"],
        ["bob", "confirm", 1, "confirmation"],
    ]
    assert state.applied_event == 2 and state.n_waiting == 0
    feats1 = _features(cat, session)
    supine = epochs.index("supine")
    assert feats1["n_beats"][supine] < feats0["n_beats"][supine]
    assert abs(feats1["hr"][supine] - feats0["hr"][supine]) > 0.01
    _assert_features_shown(bob, feats1, epochs)
    _assert_beat_table(bob, k, t[k + 1], n - 1)
    assert _trail_rows(bob) == [
        ("1", "alice", "edit", "", "in effect"),
        ("2", "bob", "confirm", "1", "confirmation"),
    ]
    assert _waiting(bob) == [NONE_WAITING]
    assert len(pending_changes(cat)) == 0
    _shot(bob, "4-bob-confirmed")

    # 4. alice's page still shows the beats before the confirmation: what she selects
    # there is refused, the page brought up to date; then she flags the beat she meant
    meant = k + 5  # its number on her stale page; k + 4 in the current beat table
    page.get_by_label("beats (e.g. 12, 15-18)").fill(str(meant))
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_label("reason", exact=True).fill("noise")
    page.get_by_role("button", name="Flag selected beats", exact=True).click()
    expect(
        _message(
            page,
            "Not applied: S01 " + session + " changed since this page showed it "
            "(confirm (event 2) by bob).",
        )
    ).to_be_visible()
    _shot(page, "5-alice-stale-page-refused")
    assert len(review_state(cat, SUBJECT, session).trail) == 2
    expect(page.get_by_text(f": {n - 1} beats,")).to_be_visible()
    _assert_features_shown(page, feats1, epochs)
    page.get_by_label("beats (e.g. 12, 15-18)").fill(str(meant - 1))
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_role("button", name="Flag selected beats", exact=True).click()
    expect(
        _message(
            page,
            "1 beat(s) flagged by alice; awaiting confirmation by another reviewer: the "
            "beats and features are unchanged until then.",
        )
    ).to_be_visible()
    last = review_state(cat, SUBJECT, session).trail.iloc[-1]
    assert (last["event_id"], last["action"], last["beats"], last["beat_t"]) == (
        3,
        "flag",
        (meant - 1,),
        (float(t[meant]),),
    )

    # 5. bob rejects it: his page, stale too, is brought up to date first
    bob.get_by_label("reason", exact=True).fill("a real beat")
    bob.get_by_role("button", name="Reject change", exact=True).click()
    expect(
        _message(
            bob,
            "Not applied: S01 " + session + " changed since this page showed it "
            "(flag (event 3) by alice).",
        )
    ).to_be_visible()
    change3 = f"change 3 by alice: flag beat {meant - 1} ({t[meant]:.3f} s), reason: noise"
    assert _waiting(bob) == [change3]
    bob.get_by_label("reason", exact=True).fill("a real beat")
    bob.get_by_role("button", name="Reject change", exact=True).click()
    expect(
        _message(
            bob,
            "change 3 rejected by bob; a disagreement (listed on the Campaign page): it has "
            "no effect on the beats and features.",
        )
    ).to_be_visible()
    expect(bob.get_by_text("1 rejected by a second reviewer.")).to_be_visible()
    _shot(bob, "6-bob-rejected")
    state = review_state(cat, SUBJECT, session)
    assert state.trail[["reviewer", "action", "refers_to", "status"]].values.tolist() == [
        ["alice", "edit", 0, "in effect"],
        ["bob", "confirm", 1, "confirmation"],
        ["alice", "flag", 0, "disagreement"],
        ["bob", "reject", 3, "rejection"],
    ]
    assert state.n_flagged == 0 and state.n_disagreements == 1
    after = reviewed_beats(cat, SUBJECT, session)
    np.testing.assert_array_equal(after["t"].values, cut["t"].values)
    np.testing.assert_array_equal(after["valid"].values, cut["valid"].values)
    for name, values in _features(cat, session).items():
        np.testing.assert_array_equal(values, feats1[name], err_msg=name)
    _assert_features_shown(bob, feats1, epochs)
    assert _trail_rows(bob) == [
        ("1", "alice", "edit", "", "in effect"),
        ("2", "bob", "confirm", "1", "confirmation"),
        ("3", "alice", "flag", "", "disagreement"),
        ("4", "bob", "reject", "3", "rejection"),
    ]
    table = pending_changes(cat)
    assert table[
        ["event_id", "reviewer", "status", "rejected_by", "objection"]
    ].values.tolist() == [[3, "alice", "disagreement", "bob", "a real beat"]]
    campaign.reload()
    expect(
        campaign.get_by_text("0 change(s) awaiting confirmation, 1 disagreement(s).")
    ).to_be_visible()
    assert _campaign_rows(campaign) == [
        ["3", "alice", "flag", "disagreement", "bob", "a real beat"]
    ]
    _shot(campaign, "7-campaign-disagreement")
    TIMINGS["two reviewers: sign in, change, confirm, reject (2 browser contexts)"] = (
        time.perf_counter() - t0
    )
    for log in (console, campaign_console, bob_console):
        log.check()
    bob_context.close()
