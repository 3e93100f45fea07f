"""A server safe to put in front of a team, tried in chromium against ``cardiolab serve``.

- text from the data (a channel name, an error quoting it), a reviewer's name, the
  signed-in user's name and the campaign's name, all holding HTML that runs a script,
  show as written and run nothing;
- logging out revokes the cookies: replayed, they get the login page;
- on ``--port 0`` a page of another origin cannot open the app's websocket;
- with the network blocked but for loopback, the login and every page render in full;
- closing tabs leaves no ``WebSocketClosedError`` traceback in the server's output;
- 30 wrong passwords lock the login, the right one included, with a clear message
  (last: it locks this machine's address out of that server for 30 s).

Unit tests of the same machinery, without a browser: tests/test_dashboard_access.py.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
import time
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import TIMEOUT_MS, ServedApp  # noqa: E402
from .pages import BEAT_PLOT, wait_for_plots  # noqa: E402

#: Each hostile text sets its own number in ``window.__xss`` if it ever runs.
CAMPAIGN = 'Mars <img src=x onerror="window.__xss=11">'
CHANNEL = '<img src=x onerror="window.__xss=12">'
REVIEWER = '<img src=x onerror="window.__xss=13">'
#: A user name holds no whitespace (``cardiolab passwd``), and may hold markup.
USER = "<img/src=x/onerror=window.__xss=14>"
PASSWORD = "correct horse battery"
#: The signal panels of a simulated session.
N_SIGNALS = 5

#: Nothing hostile ran, and no element of it exists (locators pierce shadow roots).
NOTHING_RAN = "() => window.__xss === undefined"


@pytest.fixture(scope="module")
def hostile_campaign(tmp_path_factory):
    """A processed one-subject campaign whose catalog, data and trail hold HTML.

    The campaign is named with markup; session R+3 is a CSV file whose channel
    mapping names a channel made of markup (opening it fails with an error quoting
    it); two beats of L-30 are flagged by a reviewer whose name is markup.
    """
    import yaml

    from cardiolab.annotations import flag_beats
    from cardiolab.catalog import open_catalog
    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("hostile") / "campaign"
    simulate_campaign(
        path, n_subjects=1, schedule=["L-30", "R+1"], duration_min=2, seed=5, workers=1,
        progress=False,
    )  # fmt: skip
    catalog = path / "data_catalog.yaml"
    doc = yaml.safe_load(catalog.read_text())
    doc["campaign"]["name"] = CAMPAIGN
    samples = "".join(f"{i / 100},{(i % 7) / 10}\n" for i in range(1000))
    (path / "hostile.csv").write_text("time,ECG II\n" + samples)
    doc["sessions"].append(
        {
            "subject": "S01",
            "label": "R+3",
            "files": [
                {
                    "path": "hostile.csv",
                    "format": "csv",
                    "channels": {CHANNEL: {"group": "ecg", "units": "mV"}},
                }
            ],
        }
    )
    catalog.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = process_campaign(catalog, client="sync", progress=False)
    failed = report.failures
    assert failed[["subject", "session"]].values.tolist() == [["S01", "R+3"]], failed
    assert CHANNEL in failed["error"].iloc[0]
    flag_beats(open_catalog(catalog), "S01", "L-30", [2, 3], reviewer=REVIEWER)
    return catalog


@pytest.fixture(scope="module")
def login_app(hostile_campaign, tmp_path_factory):
    """The hostile campaign behind a login: users USER and alice (same password)."""
    from cardiolab.dashboards.auth import hash_password

    creds = tmp_path_factory.mktemp("creds") / "reviewers.json"
    hashed = hash_password(PASSWORD)
    creds.write_text(json.dumps({USER: hashed, "alice": hashed}))
    app = ServedApp(
        hostile_campaign, args=["--credentials", str(creds)], env={"CARDIOLAB_WARMUP": "0"}
    ).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def open_app_on_port_zero(hostile_campaign):
    """The hostile campaign on loopback (no login), ``--port 0``."""
    app = ServedApp(hostile_campaign, env={"CARDIOLAB_WARMUP": "0"})
    app.port = 0
    app.start()
    app.port = int(re.search(r":(\d+)$", app.url).group(1))
    assert app.port > 0
    yield app
    app.stop()


def sign_in(page, app, user, password, next_slug="session"):
    page.goto(app.page_url(next_slug))
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Login").click()


def check_nothing_ran(page):
    assert page.evaluate(NOTHING_RAN), page.evaluate("window.__xss")
    expect(page.locator('img[src="x"]')).to_have_count(0)


# --- escaped text -------------------------------------------------------------------


def test_untrusted_text_is_shown_as_written_and_never_runs(login_app, page):
    sign_in(page, login_app, USER, PASSWORD)
    page.wait_for_url(re.compile(r"/session$"))
    wait_for_plots(page, "S01/L-30", N_SIGNALS)
    wait_for_plots(page, BEAT_PLOT, N_SIGNALS)
    # the nav bar (raw HTML): the campaign's and the user's names, as written
    expect(page.get_by_text(f"signed in as {USER}")).to_be_visible()
    expect(page.get_by_text(CAMPAIGN).first).to_be_visible()
    # the audit trail: the reviewer's name, as written
    page.locator(".bk-tab", has_text="Audit trail").click()
    trail = page.locator(".tabulator").filter(
        has=page.locator(".tabulator-col", has_text="reviewer")
    )
    expect(trail.locator('.tabulator-cell[tabulator-field="reviewer"]')).to_have_text([REVIEWER])
    check_nothing_ran(page)

    # a session that fails to open: its error quotes the channel name, in an alert
    page.get_by_label("Session", exact=True).select_option("R+3")
    alert = page.locator(".alert-warning").filter(has_text="no channel")
    expect(alert).to_contain_text(f"no channel '{CHANNEL}'")
    check_nothing_ran(page)

    # the campaign page: summary and failures table
    page.goto(login_app.page_url("campaign"))
    expect(
        page.get_by_text(re.compile(r"1 subjects, 3 sessions; 2 processed, 1 failed"))
    ).to_be_visible()
    expect(page.get_by_text(CAMPAIGN, exact=True).first).to_be_visible()
    error = page.locator('.tabulator-cell[tabulator-field="error"]')
    expect(error).to_have_count(1)
    expect(error).to_contain_text(f"no channel '{CHANNEL}'")
    check_nothing_ran(page)

    # the cohort page
    page.goto(login_app.page_url("cohort"))
    expect(page.get_by_text(f"signed in as {USER}")).to_be_visible()
    check_nothing_ran(page)


# --- logout, cookies ----------------------------------------------------------------


def test_logout_revokes_the_cookies(login_app, page):
    sign_in(page, login_app, "alice", PASSWORD, "campaign")
    page.wait_for_url(re.compile(r"/campaign$"))
    expect(page.get_by_text("signed in as alice")).to_be_visible()
    cookies = [c for c in page.context.cookies() if c["name"] in ("user", "cardiolab_session")]
    assert sorted(c["name"] for c in cookies) == ["cardiolab_session", "user"]
    for cookie in cookies:
        assert (cookie["sameSite"], cookie["httpOnly"], cookie["secure"]) == ("Lax", True, False)
    jar = "; ".join(f"{c['name']}={c['value']}" for c in cookies)

    def replay():
        conn = http.client.HTTPConnection("127.0.0.1", login_app.port, timeout=60)
        conn.request("GET", "/campaign", headers={"Cookie": jar})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, response.getheader("Location"), body

    status, _, body = replay()
    assert status == 200 and b"cardiolab - Campaign" in body
    # another tab of the same sign-in, left open on a page
    other = page.context.new_page()
    other.goto(login_app.page_url("campaign"))
    expect(other.get_by_text("signed in as alice")).to_be_visible()
    other.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle",
        timeout=TIMEOUT_MS,
    )
    expect(other.get_by_text("Disconnected from the server")).to_have_count(0)

    page.get_by_role("link", name="log out").click()
    page.wait_for_url(re.compile(r"/login"))
    expect(page.locator("input[name=password]")).to_be_visible()
    # the other tab is disconnected by the server, and says so
    notice = other.get_by_text(re.compile(r"Disconnected from the server: signed out"))
    expect(notice.first).to_be_visible()  # (and its copy for screen readers)
    other.close()
    # the old cookies, replayed: the login page, not the app
    assert replay() == (302, "/login?next=%2Fcampaign", b"")
    page.context.add_cookies([{**c, "url": login_app.page_url("")} for c in _strip(cookies)])
    page.goto(login_app.page_url("campaign"))
    assert "/login" in page.url
    expect(page.locator("input[name=password]")).to_be_visible()


def _strip(cookies):
    """Cookies as ``BrowserContext.add_cookies`` takes them with a ``url``."""
    return [{"name": c["name"], "value": c["value"]} for c in cookies]


# --- websocket origin on port 0 -----------------------------------------------------

#: Opens the app's websocket from the page it runs in; "open" or "refused".
OPEN_WEBSOCKET = """([url, token]) => new Promise(resolve => {
  const ws = new WebSocket(url, ["bokeh", token]);
  ws.onopen = () => { ws.close(); resolve("open"); };
  ws.onerror = () => resolve("refused");
  setTimeout(() => resolve("timeout"), 30000);
})"""


def _session_token(app, slug="campaign") -> str:
    with urllib.request.urlopen(app.page_url(slug), timeout=120) as response:
        page = response.read().decode()
    return re.search(r'"token":\s*"([^"]+)"', page).group(1)


@pytest.fixture
def foreign_site():
    """Another web site on this machine (a blank page on another loopback port): its
    pages are of a foreign origin, and chromium's local-network checks let them reach
    loopback, so that only the server's origin check can refuse them."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>another site</body></html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_foreign_origin_cannot_open_the_websocket_on_port_zero(
    open_app_on_port_zero, foreign_site, page
):
    app = open_app_on_port_zero
    ws_url = f"ws://localhost:{app.port}/campaign/ws"
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.goto(f"{foreign_site}/page")
    first = len(app.lines)
    assert page.evaluate(OPEN_WEBSOCKET, [ws_url, _session_token(app)]) == "refused"
    assert any("Unexpected response code: 403" in m for m in messages), messages
    # refused by the server's origin check
    deadline = time.monotonic() + 30
    refusal = f"Refusing websocket connection from Origin '{foreign_site}'"
    while not any(refusal in line for line in app.lines[first:]):
        assert time.monotonic() < deadline, app.output
        time.sleep(0.2)
    # the app's own page opens it
    page.goto(app.page_url("campaign"))
    assert page.evaluate(OPEN_WEBSOCKET, [ws_url, _session_token(app)]) == "open"


# --- offline --------------------------------------------------------------------------


def test_pages_render_with_the_network_blocked_but_loopback(
    open_app_on_port_zero, login_app, page, console
):
    blocked: list[str] = []

    def only_loopback(route):
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host in ("localhost", "127.0.0.1"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_loopback)
    # the login page, a page behind it, and the way out
    sign_in(page, login_app, "alice", PASSWORD, "campaign")
    page.wait_for_url(re.compile(r"/campaign$"))
    expect(page.get_by_text(re.compile(r"2 processed, 1 failed"))).to_be_visible()
    page.get_by_role("link", name="log out").click()
    page.wait_for_url(re.compile(r"/login"))
    expect(page).to_have_title("cardiolab | sign in")
    app = open_app_on_port_zero
    page.goto(app.page_url(""))
    expect(page.get_by_role("link", name="Cohort", exact=True)).to_be_visible()
    page.goto(app.page_url("session"))
    wait_for_plots(page, "S01/L-30", N_SIGNALS)
    wait_for_plots(page, BEAT_PLOT, N_SIGNALS)
    page.goto(app.page_url("cohort"))
    expect(page.get_by_role("heading", name=re.compile(r"^hr \("))).to_be_visible()
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle"
    )
    page.goto(app.page_url("campaign"))
    expect(page.get_by_text(re.compile(r"2 processed, 1 failed"))).to_be_visible()
    assert blocked == []
    console.check()


# --- closing tabs -----------------------------------------------------------------------


def test_closing_tabs_logs_no_websocket_traceback(open_app_on_port_zero, page):
    """Tabs closed while the server writes to them (loading, switching a session or a
    feature) leave no ``WebSocketClosedError`` traceback in the server's output."""
    app = open_app_on_port_zero
    context = page.context
    first = len(app.lines)
    for delay in (0.3, 1.0, 2.5):
        for slug in ("session", "cohort"):
            tab = context.new_page()
            tab.goto(app.page_url(slug), wait_until="commit")
            time.sleep(delay)
            tab.close()
    tab = context.new_page()
    tab.goto(app.page_url("session"))
    wait_for_plots(tab, "S01/L-30", N_SIGNALS)
    tab.get_by_label("Session", exact=True).select_option("R+1")
    time.sleep(0.5)
    tab.close()
    tab = context.new_page()
    tab.goto(app.page_url("cohort"))
    tab.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle",
        timeout=TIMEOUT_MS,
    )
    tab.get_by_label("Feature", exact=True).select_option("sbp")
    time.sleep(0.5)
    tab.close()
    # the server is still serving, and has had time to clean the sessions up
    page.goto(app.page_url("campaign"))
    expect(page.get_by_text(re.compile(r"2 processed, 1 failed"))).to_be_visible()
    time.sleep(3)
    out = "\n".join(app.lines[first:])
    assert "WebSocketClosedError" not in out, out
    assert "Traceback" not in out, out


# --- throttled login (the last test: it locks 127.0.0.1 out of login_app for 30 s) ---


def test_thirty_wrong_passwords_then_the_right_one_is_refused(login_app, page):
    page.goto(login_app.page_url("campaign"))
    t0 = time.perf_counter()
    for i in range(30):
        page.locator("input[name=username]").fill("alice")
        page.locator("input[name=password]").fill(f"guess {i}")
        page.get_by_role("button", name="Login").click()
        page.wait_for_load_state()
    seconds = time.perf_counter() - t0
    expect(page.get_by_text("Too many failed sign-ins")).to_be_visible()
    page.locator("input[name=username]").fill("alice")
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_load_state()
    expect(
        page.get_by_text(re.compile(r"Too many failed sign-ins .* the right password too"))
    ).to_be_visible()
    assert "/login" in page.url
    page.goto(login_app.page_url("campaign"))
    assert "/login" in page.url, f"signed in after 30 wrong passwords in {seconds:.1f} s"
    assert "refused for 30 s after repeated failures" in login_app.output, login_app.output
