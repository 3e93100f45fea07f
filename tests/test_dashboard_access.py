"""The served app's safety without a browser: escaping, login throttle, sessions, origins,
every route behind the login, CSRF, and quiet closed connections.

The browser side (chromium against ``cardiolab serve``) is in
tests/browser/test_server_hardening.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.client
import json
import logging
import re
import threading
import urllib.parse

import pytest

#: Markup that runs a script wherever it is taken as HTML.
HOSTILE = '<img src=x onerror="window.__xss=1">'


# --- escaping -----------------------------------------------------------------------


def test_escape_html_leaves_no_markup():
    from cardiolab.dashboards.app import escape_html

    out = escape_html(HOSTILE + " & 'it'")
    assert out == ("&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt; &amp; &#x27;it&#x27;")
    assert html.unescape(out) == HOSTILE + " & 'it'"  # shown as written


def test_nav_bar_escapes_the_campaign_name():
    """The nav bar is raw HTML: the campaign name from the catalog goes in escaped."""
    from cardiolab.dashboards.app import _nav

    sent = _nav("session", HOSTILE).object
    assert "<img" not in sent
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in sent
    assert sent.count("<a ") == 3  # the three page links, and no other element of the name


def test_session_review_message_shows_the_data_as_written(small_campaign):
    """An error or name quoted in the Session review message bar is escaped Markdown."""
    from cardiolab.dashboards.session_review import SessionReview

    path, _ = small_campaign
    page = SessionReview(path / "data_catalog.yaml")
    page._say(f"reviewer {HOSTILE} flagged $x$ *beats*", "success")
    text = page._message.object
    assert '\\<img src\\=x onerror\\=\\"window' in text
    assert page._message.disable_math
    # every ASCII punctuation character is backslash-escaped: no markup survives
    assert re.fullmatch(r"(?:[^!-/:-@\[-`{-~]|\\[!-/:-@\[-`{-~])*", text), text


# --- login throttle and sessions ------------------------------------------------------


class Clock:
    """A settable monotonic clock (s)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_locks_after_five_failures_for_a_doubling_delay():
    from cardiolab.dashboards.auth import LoginThrottle

    clock = Clock()
    throttle = LoginThrottle(max_failures=5, window=900, base_delay=30, max_delay=100, clock=clock)
    keys = ("user:alice", "address:10.0.0.7")
    assert [throttle.failed(*keys) for _ in range(4)] == [0.0] * 4
    assert throttle.failed(*keys) == pytest.approx(30.0)  # the 5th failure locks
    clock.now += 29.0
    assert throttle.locked_for(*keys) == pytest.approx(1.0)
    assert throttle.locked_for("user:alice") == pytest.approx(1.0)
    assert throttle.locked_for("user:bob") == 0.0
    # attempts while locked are refused and do not count
    assert throttle.failed(*keys) == pytest.approx(1.0)
    clock.now += 1.5
    assert throttle.locked_for(*keys) == 0.0
    # the next lock-out doubles, then stops at max_delay
    assert [throttle.failed(*keys) for _ in range(5)][-1] == pytest.approx(60.0)
    clock.now += 61.0
    assert [throttle.failed(*keys) for _ in range(5)][-1] == pytest.approx(100.0)
    clock.now += 101.0
    # a success forgets the failures
    throttle.failed(*keys)
    throttle.succeeded(*keys)
    assert [throttle.failed(*keys) for _ in range(4)] == [0.0] * 4


def test_throttle_counts_one_address_across_user_names():
    from cardiolab.dashboards.auth import LoginThrottle

    throttle = LoginThrottle(max_failures=5, clock=Clock())
    for user in ("a", "b", "c", "d", "e"):
        wait = throttle.failed(f"user:{user}", "address:10.0.0.9")
    assert wait == pytest.approx(30.0)
    assert throttle.locked_for("user:zoe", "address:10.0.0.9") == pytest.approx(30.0)
    assert throttle.locked_for("user:zoe", "address:10.0.0.10") == 0.0


def test_throttle_forgets_old_failures_and_quiet_keys():
    from cardiolab.dashboards.auth import LoginThrottle

    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, base_delay=10, clock=clock)
    throttle.failed("user:a")
    throttle.failed("user:a")
    clock.now += 61  # out of the window: the count starts again
    assert throttle.failed("user:a") == 0.0
    assert throttle.failed("user:a") == 0.0
    assert throttle.failed("user:a") == pytest.approx(10.0)
    clock.now += 10 + 61 + 61
    throttle.failed("user:other")  # prunes keys quiet for a window
    assert throttle.locked_for("user:a") == 0.0
    assert set(throttle._keys) == {"user:other"}


def test_sign_in_sessions_call_their_watchers_once_at_close():
    from cardiolab.dashboards.auth import SignInSessions

    clock = Clock()
    sessions = SignInSessions(lifetime=3600, clock=clock)
    a, b = sessions.open("alice"), sessions.open("bob")
    calls = []
    sessions.watch(a, lambda: calls.append("a1"))
    stop = sessions.watch(a, lambda: calls.append("a2"))
    sessions.watch(b, lambda: calls.append("b"))
    stop()
    stop()  # idempotent
    sessions.close(a)
    sessions.close(a)
    assert calls == ["a1"]
    with pytest.raises(KeyError, match="no open sign-in session"):
        sessions.watch(a, lambda: None)
    # an expired session's watchers are called when expired sessions are swept: at the
    # next sign-in, and by sweep() (which the served app runs every minute)
    clock.now += 3601
    sessions.open("carol")
    assert calls == ["a1", "b"]
    d = sessions.open("dave")
    sessions.watch(d, lambda: calls.append("d"))
    assert sessions.sweep() == 0 and calls == ["a1", "b"]
    clock.now += 3601
    assert sessions.sweep() == 2 and calls == ["a1", "b", "d"]  # carol's and dave's
    assert sessions.user(d) is None


def test_sign_in_sessions_open_close_and_expire():
    from cardiolab.dashboards.auth import SignInSessions

    clock = Clock()
    sessions = SignInSessions(lifetime=3600, clock=clock)
    a, b = sessions.open("alice"), sessions.open("alice")
    assert a != b and len(a) >= 22  # 128 random bits, URL-safe base64
    assert sessions.user(a) == sessions.user(b) == "alice"
    sessions.close(a)
    assert sessions.user(a) is None and sessions.user(b) == "alice"
    clock.now += 3601
    assert sessions.user(b) is None
    assert sessions.user(None) is None and sessions.user("forged") is None


# --- origins ----------------------------------------------------------------------------


def test_served_origins_name_the_port_and_never_a_wildcard():
    import socket

    from cardiolab.dashboards.access import served_origins

    assert served_origins("127.0.0.1", 41234) == ["127.0.0.1:41234", "localhost:41234"]
    wide = served_origins("0.0.0.0", 5006)
    assert "*" not in "".join(wide) and all(o.endswith(":5006") for o in wide)
    assert f"{socket.gethostname().lower()}:5006" in wide
    assert "0.0.0.0:5006" not in wide
    with pytest.raises(ValueError, match="not 0"):
        served_origins("127.0.0.1", 0)


def test_quiet_closed_connections_drops_only_closed_socket_errors(caplog):
    from tornado.websocket import WebSocketClosedError

    from cardiolab.dashboards.connections import quiet_closed_connections

    loop = asyncio.new_event_loop()
    try:
        quiet_closed_connections(loop)
        with caplog.at_level(logging.DEBUG):
            loop.call_exception_handler(
                {
                    "message": "Task exception was never retrieved",
                    "exception": WebSocketClosedError(),
                }
            )
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "closed its connection" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            loop.call_exception_handler(
                {"message": "Task exception was never retrieved", "exception": KeyError("x")}
            )
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info[0] is KeyError
    finally:
        loop.close()


# --- the served app: routes, CSRF, throttle, logout -------------------------------------


@contextlib.contextmanager
def _serving(catalog, **kwargs):
    """``serve(catalog, **kwargs)`` running in a thread of this process, stopped at the
    end. The server is built in the thread whose event loop runs it: this thread's loop
    may be another library's (playwright's sync API leaves its own running)."""
    from cardiolab.dashboards import serve

    built: dict = {}
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            built["server"] = serve(catalog, warm=False, start=False, **kwargs)
            built["server"].start()
        finally:
            ready.set()
        built["server"].io_loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(120) and "server" in built, "the server did not start"
    server = built["server"]
    try:
        yield server
    finally:
        server.io_loop.add_callback(server.io_loop.stop)
        thread.join(10)
        server.stop()


def _run_in_thread(coroutine, timeout: float = 90.0):
    """Run a coroutine to its end in a new event loop, in a thread of its own."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(coroutine)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert box, "the coroutine did not finish"
    return box[0]


@pytest.fixture(scope="module")
def protected_server(small_campaign, tmp_path_factory):
    """``serve`` on port 0 with a login (alice / "correct horse"), in this process."""
    from cardiolab.dashboards.auth import hash_password

    path, _ = small_campaign
    creds = tmp_path_factory.mktemp("creds") / "reviewers.json"
    creds.write_text(json.dumps({"alice": hash_password("correct horse")}))
    with _serving(path / "data_catalog.yaml", port=0, credentials=creds) as server:
        yield server


def _request(server, path, method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def _login_form(server):
    """The login page's CSRF token and the cookie that goes with it."""
    response, data = _request(server, "/login")
    assert response.status == 200
    token = re.search(r'name="_xsrf" value="([^"]+)"', data.decode()).group(1)
    cookie = response.getheader("Set-Cookie")
    assert "samesite=strict" in cookie.lower() and "httponly" in cookie.lower()
    return token, cookie.split(";")[0]


def _post_login(server, token, cookie, user, password):
    body = urllib.parse.urlencode(
        {"_xsrf": token, "username": user, "password": password, "next": "/campaign"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    return _request(server, "/login", "POST", body, headers)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/session",
        "/campaign/metadata",
        "/cohort/autoload.js",
        "/static/js/bokeh.min.js",
        "/session/static/js/bokeh.min.js",
        "/static/extensions/panel/panel.min.js",
        "/components/cardiolab.dashboards.app/PAGES/__css__/x.css",
        "/favicon.ico",
    ],
)
def test_every_route_but_the_login_page_needs_the_login(protected_server, path):
    response, data = _request(protected_server, path)
    assert response.status == 302, (path, response.status)
    location = response.getheader("Location")
    assert location == "/login?" + urllib.parse.urlencode({"next": path})
    assert data == b""


def test_websocket_without_login_is_refused(protected_server):
    response, _ = _request(
        protected_server,
        "/session/ws",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Origin": f"http://localhost:{protected_server.port}",
        },
    )
    assert response.status == 403


def test_login_form_needs_its_csrf_token(protected_server):
    _, cookie = _login_form(protected_server)
    body = urllib.parse.urlencode({"username": "alice", "password": "correct horse"})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    response, _ = _request(protected_server, "/login", "POST", body, headers)
    assert response.status == 403
    assert response.getheader("Set-Cookie") is None  # no session for it


def test_sign_in_cookies_and_logout_revokes_them(protected_server):
    token, cookie = _login_form(protected_server)
    response, _ = _post_login(protected_server, token, cookie, "alice", "correct horse")
    assert response.status == 302 and response.getheader("Location") == "/campaign"
    set_cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    signed = {c.split("=", 1)[0]: c for c in set_cookies if '=""' not in c.split(";")[0]}
    assert set(signed) == {"user", "cardiolab_session"}
    for attrs in signed.values():
        low = attrs.lower()
        assert "httponly" in low and "samesite=lax" in low and "secure" not in low
    jar = "; ".join(c.split(";")[0] for c in signed.values())
    assert _request(protected_server, "/campaign", headers={"Cookie": jar})[0].status == 200
    response, _ = _request(protected_server, "/logout", headers={"Cookie": jar})
    assert response.status == 302 and response.getheader("Location") == "/login"
    # the same cookies, replayed: the session is closed on the server
    response, _ = _request(protected_server, "/campaign", headers={"Cookie": jar})
    assert response.status == 302
    assert response.getheader("Location") == "/login?next=%2Fcampaign"


def _signed_in_cookies(server) -> str:
    """Sign in as alice; the ``Cookie`` header of the signed-in browser."""
    token, cookie = _login_form(server)
    response, _ = _post_login(server, token, cookie, "alice", "correct horse")
    assert response.status == 302
    set_cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return "; ".join(c.split(";")[0] for c in set_cookies if '=""' not in c.split(";")[0])


def test_logout_closes_the_open_pages_of_that_sign_in(protected_server):
    """A tab left open when its user signs out (in another tab) is disconnected: its
    websocket is closed by the server (code 4001); a page of another sign-in of the same
    user (another browser) stays connected."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    port = protected_server.port
    signing_out, staying = (
        _signed_in_cookies(protected_server),
        _signed_in_cookies(protected_server),
    )

    async def open_page(jar):
        _, page = _request(protected_server, "/campaign", headers={"Cookie": jar})
        token = re.search(r'"token":\s*"([^"]+)"', page.decode()).group(1)
        request = HTTPRequest(
            f"ws://127.0.0.1:{port}/campaign/ws",
            headers={"Origin": f"http://localhost:{port}", "Cookie": jar},
        )
        ws = await websocket_connect(request, subprotocols=["bokeh", token])
        for _ in range(3):  # bokeh's ACK: header, metadata, content
            assert await ws.read_message() is not None
        return ws

    async def sign_out_in_another_tab():
        gone, kept = await open_page(signing_out), await open_page(staying)
        response, _ = await asyncio.to_thread(
            _request, protected_server, "/logout", headers={"Cookie": signing_out}
        )
        assert response.status == 302
        while await asyncio.wait_for(gone.read_message(), 30) is not None:
            pass
        try:  # the other sign-in's page: nothing closes it
            await asyncio.wait_for(kept.read_message(), 1.0)
            still_open = False
        except asyncio.TimeoutError:
            still_open = kept.close_code is None
        kept.close()
        return gone.close_code, gone.close_reason, still_open

    assert _run_in_thread(sign_out_in_another_tab()) == (4001, "signed out", True)
    # the closed page cannot come back: its cookie names a closed session
    response, _ = _request(protected_server, "/campaign", headers={"Cookie": signing_out})
    assert response.status == 302


def test_an_expired_sign_in_disconnects_its_pages(small_campaign, tmp_path):
    """``serve(sign_in_hours=...)``: when a sign-in ends, its open pages are closed by
    the server (code 4001), without anybody signing in or out (the periodic sweep)."""
    import time

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    from cardiolab.dashboards.auth import AuthError, hash_password

    path, _ = small_campaign
    creds = tmp_path / "reviewers.json"
    creds.write_text(json.dumps({"alice": hash_password("correct horse")}))
    catalog = path / "data_catalog.yaml"
    from cardiolab.dashboards import serve

    for hours in (0, -1.0, float("nan"), "12"):
        with pytest.raises(AuthError, match="sign-in hours must be a positive number"):
            serve(catalog, port=0, credentials=creds, sign_in_hours=hours, warm=False, start=False)
    lifetime = 4.0  # s
    with _serving(catalog, port=0, credentials=creds, sign_in_hours=lifetime / 3600) as server:
        port = server.port
        jar = _signed_in_cookies(server)
        signed_in = time.monotonic()
        _, page = _request(server, "/campaign", headers={"Cookie": jar})
        token = re.search(r'"token":\s*"([^"]+)"', page.decode()).group(1)

        async def wait_for_the_close():
            request = HTTPRequest(
                f"ws://127.0.0.1:{port}/campaign/ws",
                headers={"Origin": f"http://localhost:{port}", "Cookie": jar},
            )
            ws = await websocket_connect(request, subprotocols=["bokeh", token])
            while await asyncio.wait_for(ws.read_message(), 30) is not None:
                pass
            return ws.close_code, ws.close_reason, time.monotonic() - signed_in

        code, reason, after = _run_in_thread(wait_for_the_close())
        assert (code, reason) == (4001, "signed out")
        # closed once the sign-in ended, by the sweep (every lifetime / 4 s)
        assert lifetime - 0.5 <= after <= lifetime + 10, after
        response, _ = _request(server, "/campaign", headers={"Cookie": jar})
        assert response.status == 302


def test_thirty_wrong_passwords_lock_the_right_one_out(protected_server):
    token, cookie = _login_form(protected_server)
    # another client address is not locked by alice's failures from 127.0.0.1 alone,
    # but the user key is: her right password is refused, from anywhere, for 30 s
    statuses = [
        _post_login(protected_server, token, cookie, "alice", f"guess {i}")[0].status
        for i in range(30)
    ]
    assert statuses[:4] == [200] * 4 and set(statuses[4:]) == {429}
    response, data = _post_login(protected_server, token, cookie, "alice", "correct horse")
    assert response.status == 429
    assert 25 <= int(response.getheader("Retry-After")) <= 30
    assert "Too many failed sign-ins" in html.unescape(data.decode())
    assert not [v for k, v in response.getheaders() if k.lower() == "set-cookie" and "user=" in v]


def test_secure_cookies_over_tls():
    from cardiolab.dashboards.access import HashedAuthProvider

    assert HashedAuthProvider({}, secure_cookies=True).cookie_options["secure"] is True
    plain = HashedAuthProvider({}).cookie_options
    assert plain["secure"] is False and plain["samesite"] == "Lax" and plain["httponly"]


def test_port_zero_allows_only_the_served_origin(small_campaign):
    """``serve(port=0)`` listens on a free port, and its websocket takes pages of that
    port only: a foreign origin gets 403 at the upgrade, the served one 101."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    path, _ = small_campaign
    with _serving(path / "data_catalog.yaml", port=0) as server:
        port = server.port
        assert port > 0
        _, page = _request(server, "/campaign")
        token = re.search(r'"token":\s*"([^"]+)"', page.decode()).group(1)

        async def upgrade(origin):
            request = HTTPRequest(f"ws://127.0.0.1:{port}/campaign/ws", headers={"Origin": origin})
            try:
                ws = await websocket_connect(request, subprotocols=["bokeh", token])
            except HTTPClientError as err:
                return err.code
            ws.close()
            return 101

        # the client runs in a thread of its own: this thread's event loop may be
        # another library's, running (playwright's sync API)
        foreign = _run_in_thread(upgrade("http://evil.example:8080"))
        other_port = _run_in_thread(upgrade(f"http://localhost:{port + 1}"))
        served = _run_in_thread(upgrade(f"http://localhost:{port}"))
        assert (foreign, other_port, served) == (403, 403, 101)


def _self_signed_certificate(folder):
    """A certificate and key for 127.0.0.1, valid for a day (cryptography)."""
    import datetime as dt
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def test_cookies_are_secure_over_tls(small_campaign, tmp_path):
    """Served over TLS, the session, user and CSRF cookies are ``Secure``."""
    import ssl

    from cardiolab.dashboards.auth import hash_password

    certfile, keyfile = _self_signed_certificate(tmp_path)
    path, _ = small_campaign
    creds = tmp_path / "reviewers.json"
    creds.write_text(json.dumps({"alice": hash_password("correct horse")}))
    with _serving(
        path / "data_catalog.yaml",
        port=0,
        credentials=creds,
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
    ) as server:
        context = ssl.create_default_context(cafile=str(certfile))

        def request(method, path, body=None, headers=None):
            conn = http.client.HTTPSConnection(
                "127.0.0.1", server.port, timeout=60, context=context
            )
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read().decode()
            conn.close()
            return response, data

        form, page = request("GET", "/login")
        xsrf = form.getheader("Set-Cookie")
        assert "; secure" in xsrf.lower()
        token = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode(
            {"_xsrf": token, "username": "alice", "password": "correct horse"}
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": xsrf.split(";")[0],
        }
        signed_in, _ = request("POST", "/login", body, headers)
        assert signed_in.status == 302
        cookies = [v for k, v in signed_in.getheaders() if k.lower() == "set-cookie"]
        set_ = [c for c in cookies if c.split("=", 1)[0] in ("user", "cardiolab_session")]
        assert len(set_) == 2
        assert all("; secure" in c.lower() and "samesite=lax" in c.lower() for c in set_)


def test_a_closed_connection_still_fails_its_ping():
    """A failed keep-alive ping is let be only while ``on_close`` is still to come; a
    connection whose ``on_close`` has run (a tab closed before bokeh attached its
    session) fails it, so that bokeh's keep-alive drops it as before."""
    from bokeh.server.views.ws import WSHandler
    from tornado.websocket import WebSocketClosedError

    from cardiolab.dashboards.connections import _ClosesCleanly

    class Socket(WSHandler):
        def __init__(self):  # no tornado application: only ping and on_close
            self.closed = []

        def ping(self, data=b""):
            raise WebSocketClosedError()

        def on_close(self):
            self.closed.append(True)

    socket = type("Socket", (_ClosesCleanly, Socket), {})()
    socket.ping(b"0")  # closing, on_close to come: no error
    socket.on_close()
    assert socket.closed == [True]
    with pytest.raises(WebSocketClosedError):
        socket.ping(b"1")


def test_keep_alive_ping_during_a_close_leaves_no_traceback(small_campaign, caplog):
    """bokeh's keep-alive pings a connection that is closing but whose ``on_close`` has
    not run yet (here: the server closed it on a protocol error and waits for the
    browser's answer). The ping fails; bokeh then detaches the connection's session,
    and ``on_close`` used to fail on that detached session (an ``AssertionError``
    traceback, "Uncaught exception GET /campaign/ws"). Deterministic: pings every
    50 ms, and the client answers the close only after 1 s."""
    import time

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    path, _ = small_campaign
    with caplog.at_level(logging.INFO):
        with _serving(path / "data_catalog.yaml", port=0, keep_alive_milliseconds=50) as server:
            port = server.port
            _, page = _request(server, "/campaign")
            token = re.search(r'"token":\s*"([^"]+)"', page.decode()).group(1)

            async def close_slowly():
                request = HTTPRequest(
                    f"ws://127.0.0.1:{port}/campaign/ws",
                    headers={"Origin": f"http://localhost:{port}"},
                )
                ws = await websocket_connect(request, subprotocols=["bokeh", token])
                for _ in range(3):  # bokeh's ACK: header, metadata, content
                    await ws.read_message()
                # a binary header breaks bokeh's protocol: the server closes ...
                await ws.write_message(b"\x00", binary=True)
                time.sleep(1.0)  # ... and this client does not answer for a while
                while await ws.read_message() is not None:
                    pass
                return ws.close_code

            code = _run_in_thread(close_slowly())
            # the server is still serving, and has had time to let the connection go
            time.sleep(0.5)
            response, _ = _request(server, "/campaign")
            assert response.status == 200
    assert code == 10001  # bokeh's protocol-error close: the close this test meant
    assert "protocol error" in caplog.text
    failures = [r for r in caplog.records if r.exc_info]
    assert not failures, [r.getMessage() for r in failures]
    assert "Uncaught exception" not in caplog.text
