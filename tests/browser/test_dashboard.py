"""The served dashboard in a real browser: pages, plots, beat flags, logins.

Each test drives chromium against ``cardiolab serve`` running in a subprocess (see
conftest.py) and checks what a reviewer sees against what the package computes in
this process from the same derived store.
"""

from __future__ import annotations

import base64
import getpass
import http.client
import re
import struct
import subprocess

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import (  # noqa: E402
    TIMEOUT_MS,
    TIMINGS,
    ConsoleLog,
    ServedApp,
    free_port,
    served_with_login,
)
from .pages import BEAT_PLOT, wait_for_plots  # noqa: E402

#: Fraction of a PNG's pixels (given as base64) that are not white, decoded by the browser.
INKED_FRACTION = """async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) n++;
  return n / (canvas.width * canvas.height);
}"""

#: Signal panels of a simulated session: ECG, arterial pressure, LDF, two Doppler vessels.
N_SIGNALS = 5


def wait_for_signals(page, title: str) -> dict:
    """Wait until the session view titled ``title`` (``S01/L-60``) shows its signals
    and the beat plot is drawn (on a first page it follows the signals, on load)."""
    wait_for_plots(page, title, N_SIGNALS)
    return wait_for_plots(page, BEAT_PLOT, N_SIGNALS)


def select(page, label: str):
    """The <select> of the Panel widget labelled ``label``."""
    return page.get_by_label(label, exact=True)


def first_processed(catalog) -> tuple[str, str]:
    """The session the review page opens on: the first processed one of the first subject."""
    from cardiolab.pipeline import campaign_status

    status = campaign_status(catalog)
    row = status[status["status"] == "processed"].iloc[0]
    return row["subject"], row["session"]


# --- pages --------------------------------------------------------------------------


def test_session_page_loads_without_console_errors(served_app, page, console):
    from cardiolab.annotations import reviewed_beats

    subject, session = first_processed(served_app.catalog)
    page.goto(served_app.page_url("session"))
    state = wait_for_signals(page, f"{subject}/{session}")
    assert page.locator("canvas").count() >= N_SIGNALS + 1  # signals + the beat plot
    # every signal image spans the session (4 min = 240 s) within one sample of the
    # slowest channel (LDF at 32 Hz: 31 ms)
    assert [im["dw"] for im in state["images"]] == pytest.approx([240.0] * N_SIGNALS, abs=0.035)
    # the summary counts the beats of the stored table
    n = reviewed_beats(served_app.catalog, subject, session).sizes["beat"]
    expect(
        page.get_by_text(re.compile(rf"{subject} {re.escape(session)}.*: {n} beats"))
    ).to_be_visible()
    console.check()


def test_campaign_page_loads_without_console_errors(served_app, page, console):
    page.goto(served_app.page_url("campaign"))
    # 3 subjects x 10 sessions, all processed
    expect(
        page.get_by_text(re.compile(r"3 subjects, 30 sessions; 30 processed, 0 failed"))
    ).to_be_visible()
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle"
    )
    assert page.locator("canvas").count() >= 1  # the quality heat map
    # the root page lists the three pages and needs nothing from the internet
    page.goto(served_app.page_url(""))
    expect(page).to_have_title("cardiolab")
    for title in ("Session review", "Cohort", "Campaign"):
        expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    page.get_by_role("link", name="Campaign", exact=True).click()
    expect(page.get_by_text(re.compile(r"3 subjects, 30 sessions"))).to_be_visible()
    console.check()


def test_choosing_another_session_draws_its_plots(served_app, page, console):
    from cardiolab.annotations import reviewed_beats

    subject, first = first_processed(served_app.catalog)
    page.goto(served_app.page_url("session"))
    wait_for_signals(page, f"{subject}/{first}")
    other = "R+1"
    assert other != first
    select(page, "Session").select_option(other)
    state = wait_for_signals(page, f"{subject}/{other}")
    assert f"{subject}/{first}" not in state["titles"]
    assert page.locator("canvas").count() >= N_SIGNALS + 1
    n = reviewed_beats(served_app.catalog, subject, other).sizes["beat"]
    expect(
        page.get_by_text(re.compile(rf"{subject} R\+1 \(post, day 1\): {n} beats"))
    ).to_be_visible()
    console.check()


def test_flagged_beats_persist_across_a_server_restart(served_app, page, console):
    from cardiolab.annotations import review_state

    subject, session = first_processed(served_app.catalog)
    before = review_state(served_app.catalog, subject, session)
    assert before.n_flagged == 0
    page.goto(served_app.page_url("session"))
    wait_for_signals(page, f"{subject}/{session}")
    page.get_by_label("beats (e.g. 12, 15-18)").fill("3, 12")
    page.get_by_label("beats (e.g. 12, 15-18)").press("Enter")
    page.get_by_role("button", name="Flag selected beats", exact=True).click()
    user = getpass.getuser()  # loopback without a login: the server's OS user signs
    expect(
        page.get_by_text(f"2 beat(s) flagged by {user}; beats and features recomputed.")
    ).to_be_visible()
    expect(page.get_by_text("2 flagged by reviewers", exact=True)).to_be_visible()
    page.close()

    served_app.restart()
    TIMINGS["server restart"] = served_app.startup_s

    # the store agrees: two beats flagged by the user, features recomputed after the event
    state = review_state(served_app.catalog, subject, session)
    assert state.n_flagged == 2
    assert np.flatnonzero(state.flags.to_numpy()).tolist() == [3, 12]
    assert state.trail["reviewer"].tolist() == [user]
    assert not state.pending

    # a new browser on the new server shows them
    fresh = page.context.new_page()
    fresh_console = ConsoleLog(fresh)
    fresh.set_default_timeout(TIMEOUT_MS)
    fresh.goto(served_app.page_url("session"))
    wait_for_signals(fresh, f"{subject}/{session}")
    expect(fresh.get_by_text("2 flagged by reviewers", exact=True)).to_be_visible()
    # the beat table (first page: beats 0-14) marks beats 3 and 12, and only them
    fresh.locator(".bk-tab", has_text="Beat table").click()
    table = fresh.locator(".tabulator").filter(
        has=fresh.locator(".tabulator-col", has_text="reviewer_flag")
    )
    flag_cells = table.locator('.tabulator-row .tabulator-cell[tabulator-field="reviewer_flag"]')
    expect(flag_cells).to_have_count(15)
    beats = [
        int(b)
        for b in table.locator(
            '.tabulator-row .tabulator-cell[tabulator-field="beat"]'
        ).all_inner_texts()
    ]
    flags = [text.strip() for text in flag_cells.all_inner_texts()]
    assert beats == list(range(15))
    assert set(flags) == {"true", "false"}, flags
    assert [b for b, f in zip(beats, flags, strict=True) if f == "true"] == [3, 12]
    # the audit trail names the reviewer and the number of beats
    fresh.locator(".bk-tab", has_text="Audit trail").click()
    trail = fresh.locator(".tabulator").filter(
        has=fresh.locator(".tabulator-col", has_text="event_id")
    )
    rows = trail.locator(".tabulator-row")
    expect(rows).to_have_count(1)
    cells = rows.first.locator(".tabulator-cell")
    row = dict(
        zip(
            (c.get_attribute("tabulator-field") for c in cells.all()),
            cells.all_inner_texts(),
            strict=True,
        )
    )
    assert (row["reviewer"], row["action"], row["n_beats"]) == (user, "flag", "2")
    fresh_console.check()
    console.check()


def test_cohort_page_shows_the_timeline_and_switches_feature(served_app, page, console):
    from cardiolab.pipeline import features_table
    from cardiolab.stats.mixed import phase_contrasts

    page.goto(served_app.page_url("cohort"))
    expect(select(page, "Feature")).to_have_value("hr")
    state = wait_for_plots(page, "hr (supine): Pre-flight")
    assert {"In flight", "Post-flight"} <= set(state["titles"]), state["titles"]
    assert page.locator("canvas").count() >= 3  # timeline, forest plot, tau profile

    select(page, "Feature").select_option("sbp")
    expect(page.get_by_role("heading", name="sbp (supine)")).to_be_visible()
    state = wait_for_plots(page, "sbp (supine): Pre-flight")
    assert "hr (supine): Pre-flight" not in state["titles"]
    # the contrast table shows the fit this process makes from the same store
    expected = phase_contrasts(features_table(served_app.catalog), "sbp", epoch="supine").table
    table = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="p_holm"))
    row = table.locator(
        ".tabulator-row",
        has=page.locator('[tabulator-field="timepoint"]', has_text=re.compile(r"^R\+0$")),
    )
    estimate = float(row.locator('[tabulator-field="estimate"]').inner_text())
    assert estimate == pytest.approx(expected.loc["R+0", "estimate"], abs=1e-4)

    # the figure as PNG: drawn by the browser, the plots as laid out on the page
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Download figure (PNG)").click()
    download = info.value
    assert download.suggested_filename == "sbp_supine.png"
    png = download.path().read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    # the timeline's three panels side by side, the forest plot and tau profile below
    assert width >= 1000 and height >= 700, (width, height)
    inked = page.evaluate(INKED_FRACTION, base64.b64encode(png).decode())
    assert 0.02 < inked < 0.8, inked
    console.check()


# --- who may open it ----------------------------------------------------------------


@pytest.fixture
def protected_app(processed_campaign, tmp_path):
    """The app behind a login (alice / her password), no warm-up (nobody reviews beats here)."""
    password = "correct horse battery"
    app = served_with_login(processed_campaign, tmp_path, "alice", password)
    yield app, password
    app.stop()


def test_login_is_required_with_credentials(protected_app, page, console):
    app, password = protected_app
    # without the cookie, the app is not served: a redirect to the login form
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    conn.request("GET", "/session")
    response = conn.getresponse()
    assert response.status == 302
    assert response.getheader("Location").split("?")[0].endswith("login")
    assert b"Session review" not in response.read()
    conn.close()

    page.goto(app.page_url("campaign"))
    assert re.search(r"/login\?next=%2Fcampaign$", page.url), page.url
    expect(page.locator("input[name=password]")).to_be_visible()
    # cardiolab's own login page: nothing fetched from outside, no console error
    expect(page).to_have_title("cardiolab | sign in")
    console.check()
    expect(page.get_by_text("Campaign", exact=True)).to_have_count(0)

    # a wrong password stays on the login form, with an error
    page.locator("input[name=username]").fill("alice")
    page.locator("input[name=password]").fill(password + "!")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Invalid username or password")).to_be_visible()
    assert "/login" in page.url
    expect(page.locator("input[name=password]")).to_be_visible()

    # the right one gets in, and the app says who is signed in
    page.locator("input[name=username]").fill("alice")
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))
    page.goto(app.page_url("campaign"))
    assert "/login" not in page.url
    expect(page.get_by_text("signed in as alice")).to_be_visible()
    expect(page.get_by_text(re.compile(r"3 subjects, 30 sessions"))).to_be_visible()
    console.check()


def test_binding_beyond_loopback_without_login_is_refused(processed_campaign):
    app = ServedApp(processed_campaign, port=free_port(), args=["--address", "0.0.0.0"])
    done = subprocess.run(app.command, env=app.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "refusing to serve" in done.stderr
    assert "on 0.0.0.0" in done.stderr and "--credentials" in done.stderr
    assert "dashboard: http" not in done.stdout
