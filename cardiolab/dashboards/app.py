"""The served review app: Session review, Cohort and Campaign pages on one server.

``cardiolab serve CATALOG`` (and the end of ``cardiolab demo``) call :func:`serve`.
Each page is built fresh for every browser session from the catalog; all state that
matters (reviewer flags, results) lives in the derived store, so a restarted server
shows what was there before.
"""

from __future__ import annotations

import html
import logging
import math
import os
import re
import secrets
from pathlib import Path

import panel as pn

from .access import HashedAuthProvider, bind_free_port, require_login, served_origins
from .auth import AuthError, SignInSessions, is_loopback, load_credentials
from .connections import close_connections_cleanly, quiet_closed_connections

log = logging.getLogger("cardiolab")

__all__ = [
    "PAGES",
    "app_pages",
    "escape_html",
    "escape_markdown",
    "holoviews_pane",
    "serve",
    "warm_up",
]

#: URL slug -> title of each page.
PAGES = {"session": "Session review", "cohort": "Cohort", "campaign": "Campaign"}

#: Shown on a page whose connection to the server has gone (Panel's notification).
DISCONNECTED = (
    "Disconnected from the server: signed out, or the server stopped. "
    "Reload the page to go on; nothing you saved is lost."
)

#: The root page listing the app's pages (Panel's own loads assets from the internet).
INDEX_TEMPLATE = Path(__file__).with_name("index.html")

_CSS = """
.cardiolab-nav a { margin-right: 1.2em; font-weight: 600; }
.notyf__message { font-family: system-ui, sans-serif; font-size: 0.95em; }
"""


def holoviews_pane(obj=None, **params) -> pn.pane.HoloViews:
    """A Panel pane of a HoloViews object, drawn on a 2D canvas rather than WebGL.

    HoloViews asks bokeh for WebGL by default. Without a GPU (virtual desktops,
    hospital workstations, this project's CI) chromium emulates WebGL in software
    and bokeh's copy of each WebGL frame to the page (``blit_webgl``) took 1.5 s of
    the 1.9 s the browser spent painting a 1-hour session page (5 signal plots and
    the beat plot, ~30 k markers): the canvas draws the same plots with no such cost.

    Parameters
    ----------
    obj : holoviews object, optional
        What to show.
    **params
        Other :class:`panel.pane.HoloViews` parameters.

    Examples
    --------
    >>> import holoviews as hv
    >>> holoviews_pane(hv.Curve([1, 2, 3])).renderer.webgl
    False
    """
    import holoviews as hv

    return pn.pane.HoloViews(obj, renderer=hv.renderer("bokeh").instance(webgl=False), **params)


#: ASCII punctuation: the characters CommonMark lets a backslash escape.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(text) -> str:
    """Text from the data (a model's flags, an error, a name) to show as written in a
    Markdown pane.

    Every ASCII punctuation character is backslash-escaped (CommonMark 0.31, section
    2.4 "Backslash escapes"), and runs of whitespace, newlines included, become one
    space: the text renders as one plain paragraph, with no HTML tag, entity, link,
    emphasis, list or heading of its own. Show it in a pane with ``disable_math=True``
    (``$$`` would otherwise be typeset by MathJax in the browser).

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    str
        Markdown source.

    Examples
    --------
    >>> print(escape_markdown("tau_r at <b>0.1</b> d"))
    tau\\_r at \\<b\\>0\\.1\\<\\/b\\> d
    """
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def escape_html(text) -> str:
    """Text from the data (a name, an error) to insert into HTML as written.

    ``&``, ``<``, ``>``, ``"`` and ``'`` become character references (Python's
    :func:`html.escape` with ``quote=True``; HTML Living Standard, 13.1.4 "Character
    references"), so the text can open no tag, attribute or entity of its own, in an
    element's content or in a quoted attribute value. Use it for every value that an
    :class:`panel.pane.HTML` (or any raw HTML) shows; Markdown panes, alerts included,
    take :func:`escape_markdown` instead.

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    str
        HTML text.

    Examples
    --------
    >>> escape_html('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    """
    return html.escape(str(text), quote=True)


def _nav(current: str, catalog_name: str) -> pn.pane.HTML:
    links = " ".join(
        f'<a href="./{slug}"{" style=text-decoration:underline" if slug == current else ""}>'
        f"{escape_html(title)}</a>"
        for slug, title in PAGES.items()
    )
    user = pn.state.user if pn.state.user and pn.state.user != "guest" else ""
    who = (
        f" &middot; signed in as {escape_html(user)} (<a href='./logout'>log out</a>)"
        if user
        else ""
    )
    return pn.pane.HTML(
        f'<div class="cardiolab-nav"><b>cardiolab</b> &middot; {escape_html(catalog_name)} '
        f"&middot; {links}{who}</div>",
        sizing_mode="stretch_width",
    )


def _page(slug: str, source):
    from ..catalog import open_catalog
    from ..errors import CardiolabError
    from .campaign import CampaignPage
    from .cohort import CohortPage
    from .session_review import SessionReview

    pn.extension(
        "tabulator", raw_css=[_CSS], notifications=True, disconnect_notification=DISCONNECTED
    )
    builders = {"session": SessionReview, "cohort": CohortPage, "campaign": CampaignPage}
    try:
        cat = open_catalog(source)  # a CatalogSpec: the catalog with its storage options
        body = builders[slug](cat)
        name = cat.campaign.name
    except CardiolabError as err:
        body = pn.pane.Alert(
            escape_markdown(f"{PAGES[slug]}: {err}"), alert_type="danger", disable_math=True
        )
        name = Path(str(source)).name
    return pn.Column(_nav(slug, name), body, sizing_mode="stretch_width")


def app_pages(catalog) -> dict:
    """The app's pages as ``{slug: callable}`` for :func:`panel.serve`.

    Each callable builds its page for one browser session.
    """
    source = catalog.spec if hasattr(catalog, "spec") else str(Path(catalog).resolve())
    return {slug: (lambda slug=slug: _page(slug, source)) for slug in PAGES}


def warm_up(catalog) -> float:
    """Build the Session review page once, off-screen, so that the first reviewer does not wait.

    The first page built in a process pays for imports and for datashader's numba
    compilation of the rasterised signal traces (one compilation per channel; ~10 s
    on two cores, against ~2-3 s for every later page). :func:`serve` calls this
    before it starts listening. Nothing is written; a failure is logged, not raised
    (the page itself will show the error).

    Parameters
    ----------
    catalog : Catalog
        The campaign to serve.

    Returns
    -------
    float
        Seconds spent (wall clock).

    Examples
    --------
    >>> warm_up(open_catalog("data_catalog.yaml"))  # doctest: +SKIP
    9.8
    """
    import time

    from bokeh.document import Document

    from .session_review import SessionReview

    t0 = time.perf_counter()
    try:
        pn.extension("tabulator", raw_css=[_CSS], notifications=False)
        view = SessionReview(catalog).__panel__()
        view._cleanup(view.get_root(Document()))  # drop the models: nobody views them
    except Exception as err:  # noqa: BLE001 - a warm-up must never stop the server
        log.warning("dashboard warm-up failed (%s: %s); serving anyway", type(err).__name__, err)
    seconds = time.perf_counter() - t0
    log.info("dashboard warm-up: Session review page built in %.1f s", seconds)
    return seconds


def serve(
    catalog,
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    credentials=None,
    oauth_provider: str | None = None,
    show: bool = False,
    threaded: bool = False,
    warm: bool | None = None,
    sign_in_hours: float = 168.0,
    **kwargs,
):
    """Serve the review app for a campaign.

    Parameters
    ----------
    catalog : str, pathlib.Path or Catalog
        The campaign (processed with ``cardiolab process`` for pages to show data).
    address : str
        Interface to bind. Loopback (``127.0.0.1``, the default) needs no login; any
        other address requires ``credentials`` or ``oauth_provider``.
    port : int
        TCP port (0: any free port; the websocket then accepts the pages of the port
        chosen, :func:`~cardiolab.dashboards.access.served_origins`).
    credentials : str or pathlib.Path, optional
        JSON file of scrypt-hashed passwords (``cardiolab passwd``); default
        ``$CARDIOLAB_CREDENTIALS``. With it, every route asks for a login
        (:class:`~cardiolab.dashboards.access.HashedAuthProvider`: throttled sign-in,
        CSRF-protected form, sessions revoked at ``/logout``).
    oauth_provider : str, optional
        A Panel OAuth provider name (``github``, ``azure``, ``google``, ...),
        configured through Panel's ``PANEL_OAUTH_*`` environment variables.
    show : bool
        Open a browser tab.
    threaded : bool
        Run the server in a background thread and return it (notebooks, tests).
    warm : bool, optional
        Build one Session review page before listening (:func:`warm_up`), so that
        the first browser does not wait for compilation. Default: yes, unless the
        environment sets ``CARDIOLAB_WARMUP=0``.
    sign_in_hours : float
        With ``credentials``: hours a sign-in lasts (default 7 days, Panel's cookie
        lifetime). Its open pages are disconnected when it ends, as at ``/logout``.
    **kwargs
        Other :func:`panel.serve` / bokeh server options (``start=False`` returns the
        server unstarted; ``ssl_certfile`` and ``ssl_keyfile`` serve over TLS, and the
        login cookies are then ``Secure``). Every script and style is served by this
        server, whatever ``BOKEH_RESOURCES`` says: the pages work offline.

    Returns
    -------
    panel.io.server.Server or panel.io.threads.StoppableThread

    Raises
    ------
    AuthError
        A non-loopback address without any login configured.
    """
    from ..catalog import as_catalog

    cat = as_catalog(catalog)
    credentials = credentials or os.environ.get("CARDIOLAB_CREDENTIALS") or None
    tls = bool(kwargs.get("ssl_certfile"))
    opts: dict = {}
    if credentials:
        if not (isinstance(sign_in_hours, int | float) and 0 < sign_in_hours < math.inf):
            raise AuthError(f"sign-in hours must be a positive number, got {sign_in_hours!r}")
        opts["auth_provider"] = HashedAuthProvider(
            load_credentials(credentials),
            secure_cookies=tls,
            sessions=SignInSessions(lifetime=sign_in_hours * 3600.0),
        )
    elif oauth_provider:
        opts["oauth_provider"] = oauth_provider
    elif not is_loopback(address):
        raise AuthError(
            f"refusing to serve {cat.path} on {address}: recordings of named crew would be "
            "open to the network. Give --credentials FILE (hashed passwords, made with "
            "`cardiolab passwd FILE USER`) or --oauth-provider, or bind to 127.0.0.1."
        )
    login = bool(credentials or oauth_provider)
    if login:
        opts["cookie_secret"] = os.environ.get("CARDIOLAB_COOKIE_SECRET") or secrets.token_hex(32)
        # tornado's CSRF cookie (the login form's token): not readable by scripts
        opts["xsrf_cookie_kwargs"] = {"httponly": True, "samesite": "Strict", "secure": tls}
    if warm is None:
        warm = os.environ.get("CARDIOLAB_WARMUP", "1").strip().lower() not in ("0", "no", "false")
    if warm:
        warm_up(cat)
    # the root page: cardiolab's, self-contained (where a login lands without a next page)
    kwargs.setdefault("index", str(INDEX_TEMPLATE))
    _serve_resources_locally()
    pn.config.index_titles = {f"/{slug}": title for slug, title in PAGES.items()}
    start = kwargs.pop("start", True)
    kwargs.pop("threaded", None)

    def build(**extra):
        server = _listen(cat, address, port, {**opts, **kwargs, **extra})
        if login:
            require_login(server)
        close_connections_cleanly(server)
        quiet_closed_connections(server.io_loop.asyncio_loop)
        if show:
            server.io_loop.add_callback(server.show, "/login" if login else "/")
        return server

    if threaded:
        return _serve_in_thread(build)
    server = build()
    if start:
        server.start()
        server.io_loop.start()
    return server


def _serve_resources_locally() -> None:
    """BokehJS and Panel's scripts and styles from this server, never from a CDN.

    That is bokeh's default for a server (``resources="server"``), unless the
    environment asks for another (``BOKEH_RESOURCES=cdn``): the review app must work
    on a network without internet, so the server's own copy is set, for this process
    (bokeh's ``settings.resources.set_value``, which outranks the environment).
    """
    from bokeh.settings import settings

    mode = settings.resources(default="server")
    if mode != "server":
        log.info("dashboard: serving BokehJS and Panel's assets locally (was %r)", mode)
        settings.resources.set_value("server")


def _listen(cat, address: str, port: int, opts: dict):
    """``panel.serve`` (not started) on ``port``; port 0: a free port, chosen first so
    that the websocket's allowed origins name it (a port taken meanwhile: another)."""
    explicit_origins = "websocket_origin" in opts
    for attempt in range(5):
        bound = port or bind_free_port(address)
        if not explicit_origins:
            opts["websocket_origin"] = served_origins(address, bound)
        try:
            return pn.serve(
                app_pages(cat),
                address=address,
                port=bound,
                show=False,
                start=False,
                threaded=False,
                title={slug: f"cardiolab - {title}" for slug, title in PAGES.items()},
                **opts,
            )
        except OSError as err:  # the chosen port was taken before the server bound it
            if port or attempt == 4:
                raise
            log.debug("dashboard: port %d taken meanwhile (%s); choosing another", bound, err)
    raise AssertionError("unreachable")


def _serve_in_thread(build):
    """Run ``build()``'s server on its own event loop in a daemon thread (Panel's
    :class:`~panel.io.threads.StoppableThread`, stopped with ``.stop()``)."""
    import uuid

    from panel.io.threads import StoppableThread
    from tornado.ioloop import IOLoop

    loop = IOLoop(make_current=False)

    def run(server_id):
        server = build(loop=loop, server_id=server_id)
        server.start()
        server.io_loop.start()
        return server

    thread = StoppableThread(
        target=run,
        io_loop=loop,
        owns_loop=True,
        kwargs={"server_id": uuid.uuid4().hex},
        daemon=True,
    )
    thread.start()
    return thread
