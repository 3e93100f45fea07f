"""Who reaches what on a served dashboard: the login, every route behind it, origins.

:func:`~cardiolab.dashboards.app.serve` puts these on the server when a login is
configured (``--credentials``) or the app is reachable beyond this machine:

- :class:`HashedAuthProvider`: cardiolab's login page (``/login``, a self-contained
  form with a CSRF token) checked against scrypt hashes
  (:mod:`cardiolab.dashboards.auth`), throttled per user and per client address
  (:class:`~cardiolab.dashboards.auth.LoginThrottle`), with sessions held on the
  server (:class:`~cardiolab.dashboards.auth.SignInSessions`) so that ``/logout``
  revokes the cookie. Cookies are ``HttpOnly``, ``SameSite=Lax`` and, over TLS,
  ``Secure``.
- :func:`require_login`: the login on every route of the server except the login and
  logout pages: Panel's ``/components/<module>/...`` route, the static files, the
  favicon and the websocket as well as the pages; signing out closes the open pages of
  that sign-in too.
- :func:`served_origins`: the origins whose pages may open the app's websocket, for
  the port the server really listens on.
"""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import socket
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlencode

from bokeh.server.auth_provider import AuthProvider

from .auth import (
    AuthError,
    LoginThrottle,
    SignInSessions,
    hash_password,
    is_loopback,
    verify_password,
)
from .routes import RoutesNotFound, mix_into_handlers, server_routes

log = logging.getLogger("cardiolab")

__all__ = [
    "LOGIN_TEMPLATE",
    "SESSION_COOKIE",
    "HashedAuthProvider",
    "bind_free_port",
    "require_login",
    "served_origins",
]

#: cardiolab's login page: self-contained (no script, font or image from elsewhere).
LOGIN_TEMPLATE = Path(__file__).with_name("login.html")
#: The signed cookie naming the browser's session on the server.
SESSION_COOKIE = "cardiolab_session"
#: The signed cookie naming the user: Panel reads it for ``pn.state.user``.
USER_COOKIE = "user"

_INVALID = "Invalid username or password."
_THROTTLED = (
    "Too many failed sign-ins for this user or from this address: sign-in is refused "
    "for {seconds} s, the right password too. Try again later."
)


def _safe_next(url: str | None) -> str:
    """A path of this server to go to after signing in (anything else: ``/``)."""
    if (
        not url
        or not url.startswith("/")
        or url.startswith("//")
        or "\\" in url
        or any(ord(c) < 32 for c in url)
    ):
        return "/"
    return url


def _handler_classes(provider: HashedAuthProvider):
    """The login and logout request handlers of ``provider`` (tornado)."""
    from tornado.template import Template
    from tornado.web import RequestHandler

    # a tornado template: {{ ... }} is HTML-escaped (xhtml_escape), {% raw ... %} is not
    template = Template(provider.login_template.read_text(encoding="utf-8"), name="login.html")

    class LoginHandler(RequestHandler):
        """GET: the login form; POST: check the CSRF token, the throttle, the password."""

        def get(self):
            self._form("", self.get_query_argument("next", "/"))

        def post(self):
            self.check_xsrf_cookie()  # tornado's double-submit token: 403 if absent or wrong
            user = self.get_body_argument("username", "")
            password = self.get_body_argument("password", "")
            next_url = self.get_body_argument("next", "/")
            keys = (f"user:{user.casefold()}", f"address:{self.request.remote_ip}")
            wait = provider.throttle.locked_for(*keys)
            if wait > 0:
                return self._refuse(wait, user, next_url)
            hashed = provider.credentials.get(user)
            # an unknown user costs one scrypt too: the time does not tell who exists
            right = verify_password(password, hashed or provider.decoy_hash)
            if hashed is not None and right:
                provider.throttle.succeeded(*keys)
                self._sign_in(user)
                return self.redirect(_safe_next(next_url))
            wait = provider.throttle.failed(*keys)
            if wait > 0:
                log.warning(
                    "login: sign-in for user %r from %s refused for %.0f s after repeated failures",
                    user,
                    self.request.remote_ip,
                    wait,
                )
                return self._refuse(wait, user, next_url)
            # the form again, with the error (200, as a form page is: a browser would log
            # a 401 as a console error)
            self._form(_INVALID, next_url)

        def _refuse(self, wait, user, next_url):
            seconds = math.ceil(wait)
            self.set_status(429)
            self.set_header("Retry-After", str(seconds))
            self._form(_THROTTLED.format(seconds=seconds), next_url)

        def _sign_in(self, user):
            sid = provider.sessions.open(user)
            for name, value in ((USER_COOKIE, user), (SESSION_COOKIE, sid)):
                self.set_signed_cookie(name, value, **provider.cookie_options)
            self.clear_cookie("is_guest", path="/")

        def _form(self, error, next_url):
            self.set_header("Cache-Control", "no-store")
            self.write(
                template.generate(
                    login_endpoint=provider.login_url,
                    errormessage=error,
                    next=_safe_next(next_url),
                    xsrf_form_html=self.xsrf_form_html(),  # tornado's hidden CSRF field
                )
            )

    class LogoutHandler(RequestHandler):
        """Close the session on the server, clear the cookies, back to the login form."""

        def get(self):
            provider.sessions.close(provider.session_id(self))  # its open pages close too
            for name in (USER_COOKIE, SESSION_COOKIE, "id_token", "is_guest"):
                self.clear_cookie(name, path="/")
            self.redirect(provider.prefix + provider.login_url)

    return LoginHandler, LogoutHandler


class HashedAuthProvider(AuthProvider):
    """The bokeh/Panel auth provider of ``cardiolab serve --credentials``.

    Parameters
    ----------
    credentials : dict
        ``{user: scrypt hash}`` (:func:`~cardiolab.dashboards.auth.load_credentials`).
    secure_cookies : bool
        Mark the cookies ``Secure`` (the server speaks TLS).
    throttle : LoginThrottle, optional
        Default: 5 failures in 15 min lock for 30 s, doubling up to 15 min.
    sessions : SignInSessions, optional
        Default: sessions open for 7 days (Panel's cookie lifetime).
    login_template : str or pathlib.Path, optional
        A tornado template of the login page (default :data:`LOGIN_TEMPLATE`), given
        ``login_endpoint``, ``errormessage``, ``next`` and ``xsrf_form_html`` (the
        hidden CSRF field, which the form must hold: ``{% raw xsrf_form_html %}``).
    prefix : str
        The server's URL prefix.
    """

    def __init__(
        self,
        credentials: dict[str, str],
        *,
        secure_cookies: bool = False,
        throttle: LoginThrottle | None = None,
        sessions: SignInSessions | None = None,
        login_template=None,
        prefix: str = "",
    ):
        self.credentials = dict(credentials)
        #: checked for unknown users, so that a sign-in takes one scrypt whoever it names
        self.decoy_hash = hash_password(secrets.token_urlsafe(16))
        self.throttle = throttle or LoginThrottle()
        self.sessions = sessions or SignInSessions()
        self.login_template = Path(login_template or LOGIN_TEMPLATE)
        self.prefix = prefix
        self.cookie_days = self.sessions.lifetime / 86400.0
        self.cookie_options = {
            "expires_days": self.cookie_days,
            "httponly": True,
            "samesite": "Lax",
            "secure": bool(secure_cookies),
            "path": "/",
        }
        self._login_handler, self._logout_handler = _handler_classes(self)
        super().__init__()

    def signed_in_user(self, handler) -> str | None:
        """The user of a request: its signed user cookie, under a session still open."""
        user = handler.get_signed_cookie(USER_COOKIE, max_age_days=self.cookie_days)
        sid = self.session_id(handler)
        if not user or not sid:
            return None
        user = user.decode("utf-8")
        return user if self.sessions.user(sid) == user else None

    def session_id(self, handler) -> str | None:
        """The sign-in session a request names (its signed session cookie), open or not."""
        sid = handler.get_signed_cookie(SESSION_COOKIE, max_age_days=self.cookie_days)
        return sid.decode("ascii", "replace") if sid else None

    @property
    def get_user(self):
        return self.signed_in_user

    @property
    def login_url(self):
        return "/login"

    @property
    def login_handler(self):
        return self._login_handler

    @property
    def logout_url(self):
        return "/logout"

    @property
    def logout_handler(self):
        return self._logout_handler


class _LoginRequired:
    """Mixed into a route's handler: no signed-in user, no response from it.

    A page (GET, HEAD) is redirected to the login form; anything else, websocket
    upgrades included, gets 403.
    """

    _provider = None
    _login_url = "/login"

    async def prepare(self):
        from tornado.web import HTTPError
        from tornado.websocket import WebSocketHandler

        provider = self._provider
        if provider.get_user is not None:
            user = provider.get_user(self)
        else:
            user = await provider.get_user_async(self)
        if not user:
            if isinstance(self, WebSocketHandler) or self.request.method not in ("GET", "HEAD"):
                raise HTTPError(403)
            self.redirect(f"{self._login_url}?{urlencode({'next': self.request.uri})}")
            return
        parent = super().prepare()
        if inspect.isawaitable(parent):
            await parent


class _ClosedAtSignOut:
    """Mixed into the websocket handler of the pages behind a login: a page's
    connection is closed when the sign-in session it was opened under closes
    (``/logout`` in any tab, :meth:`~cardiolab.dashboards.auth.SignInSessions.close`).

    Without it a tab left open keeps its websocket, and with it the signed-out user's
    name on every flag or beat edit made there (OWASP Session Management Cheat Sheet,
    "Session Expiration": a session ended on the server ends everywhere). The browser
    shows the page disconnected; reconnecting is refused, its cookie names a closed
    session.
    """

    _provider = None
    _cardiolab_stop_watching = None

    #: The close code (RFC 6455 section 7.4.2: 4000-4999 are the application's).
    SIGNED_OUT = 4001

    def open(self, *args, **kwargs):
        sid = self._provider.session_id(self)
        try:
            self._cardiolab_stop_watching = self._provider.sessions.watch(sid, self._signed_out)
        except KeyError:  # signed out between the login check and now
            self.close(self.SIGNED_OUT, "signed out")
            return None
        return super().open(*args, **kwargs)

    def _signed_out(self):
        log.info("login: closing a page of a session signed out (%s)", self.request.remote_ip)
        self.close(self.SIGNED_OUT, "signed out")

    def on_close(self):
        if self._cardiolab_stop_watching is not None:
            self._cardiolab_stop_watching()
        super().on_close()


def require_login(server) -> int:
    """Put the login in front of every route of a bokeh/Panel server but the login
    and logout pages.

    Bokeh and Panel check the login on the pages and their websocket only: their
    static files, the favicon and Panel's ``/components/<module>/...`` route (which
    imports the module it names) answer anybody. Each route's handler class is
    replaced by a subclass that first asks the server's auth provider for the user
    (:class:`_LoginRequired`): a page without one is sent to the login form, any
    other request gets 403. With cardiolab's own login (:class:`HashedAuthProvider`),
    a page's websocket is also closed when its user signs out (:class:`_ClosedAtSignOut`).

    Parameters
    ----------
    server : bokeh.server.server.Server
        Built with an auth provider, not started (``panel.serve(..., start=False)``).

    Returns
    -------
    int
        Routes put behind the login.

    Raises
    ------
    AuthError
        The server's routes or auth provider cannot be reached (a bokeh or tornado
        release that changed them): serving would leave routes open, so nothing is
        served.
    """
    from tornado.web import RequestHandler
    from tornado.websocket import WebSocketHandler

    try:
        app, rules = server_routes(server)
    except RoutesNotFound as err:
        raise AuthError(f"{err}: refusing to serve with routes open") from None
    provider = getattr(app, "auth_provider", None)
    if provider is None or provider.login_url is None:
        raise AuthError(
            f"this server (bokeh {version('bokeh')}) has no login page: refusing to serve"
        )
    exempt = {provider.login_handler, provider.logout_handler} - {None}
    count = mix_into_handlers(
        rules,
        RequestHandler,
        _LoginRequired,
        skip=exempt,
        _provider=provider,
        _login_url=server.prefix + provider.login_url,
    )
    if isinstance(provider, HashedAuthProvider):  # sign-in sessions held here
        mix_into_handlers(rules, WebSocketHandler, _ClosedAtSignOut, _provider=provider)
        server.io_loop.add_callback(_sweep_sign_ins, provider.sessions)
    return count


def _sweep_sign_ins(sessions) -> None:
    """Close expired sign-in sessions (and so their open pages) every minute, or more
    often for a short lifetime; started on the server's event loop."""
    from tornado.ioloop import PeriodicCallback

    every_ms = min(60.0, sessions.lifetime / 4) * 1000.0
    PeriodicCallback(sessions.sweep, every_ms).start()


def served_origins(address: str, port: int) -> list[str]:
    """The ``host:port`` origins whose pages may open the app's websocket.

    ``localhost`` and ``127.0.0.1`` always; the bound address itself unless it is a
    wildcard (``0.0.0.0``, ``::``, empty); beyond loopback, this machine's host name
    and fully qualified name too, as the team's browsers name it. Never ``*``: a page
    of any other origin is refused (bokeh's ``allow_websocket_origin``), whatever the
    port.

    Parameters
    ----------
    address : str
        The bound address.
    port : int
        The port the server listens on (not 0).

    Examples
    --------
    >>> served_origins("127.0.0.1", 5006)
    ['127.0.0.1:5006', 'localhost:5006']
    """
    if not port:
        raise ValueError("served_origins needs the port the server listens on, not 0")
    hosts = {"localhost", "127.0.0.1"}
    if address not in ("", "0.0.0.0", "::"):
        hosts.add(f"[{address}]" if ":" in address else address)
    if not is_loopback(address):
        hosts |= {socket.gethostname(), socket.getfqdn()}
    return sorted(f"{host.lower()}:{port}" for host in hosts if host)


def bind_free_port(address: str) -> int:
    """A TCP port free on ``address`` now (the system's choice, as for port 0)."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.bind(sockaddr)
        return sock.getsockname()[1]
