"""What the served app does when a browser goes away: nothing loud.

A reviewer closes a tab, a laptop sleeps, a page is reloaded: the server lets the
connection go and writes no traceback to its log, so that the errors that remain in
the log are real ones.

- :func:`close_connections_cleanly`: the websocket handler of every page closes without
  the race between bokeh's keep-alive ping and tornado's close.
- :func:`quiet_closed_connections`: updates written to a tab that has gone end in
  silence.
"""

from __future__ import annotations

import logging

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from .routes import RoutesNotFound, mix_into_handlers, server_routes

log = logging.getLogger("cardiolab")

__all__ = ["close_connections_cleanly", "quiet_closed_connections"]


class _ClosesCleanly:
    """Mixed into bokeh's websocket handler (``bokeh.server.views.ws.WSHandler``).

    bokeh's keep-alive job pings every connection every 37 s, and drops a connection
    whose ping fails (``client_lost``: out of the server's clients, its session
    detached). A ping fails as soon as tornado sees the connection closing, which can
    be well before tornado calls ``on_close``: while the server waits (up to 5 s) for
    the browser to answer its close, or while a message from the tab is still being
    handled when the tab goes. ``on_close`` then finds the session detached and fails
    (bokeh 3.x: ``assert self._session is not None``, logged by tornado as "Uncaught
    exception GET /<page>/ws" with a traceback).

    Here a failed ping of a connection that is closing but not closed yet is let be:
    ``on_close``, which tornado calls for every closing connection, drops it with
    bokeh's whole clean-up (the page is told the connection is lost). A connection
    whose ``on_close`` has run already (a tab closed before bokeh had attached its
    session) still gets its failed ping, and is dropped by the keep-alive as before.
    """

    _cardiolab_on_close_ran = False

    def on_close(self):
        self._cardiolab_on_close_ran = True
        super().on_close()

    def ping(self, data: bytes = b"") -> None:
        try:
            super().ping(data)
        except WebSocketClosedError:
            if self._cardiolab_on_close_ran:
                raise
            log.debug("dashboard: keep-alive ping to a closing connection (on_close follows)")


def close_connections_cleanly(server) -> int:
    """Give every page's websocket a close without traceback (:class:`_ClosesCleanly`).

    Parameters
    ----------
    server : bokeh.server.server.Server
        Built, not started (``panel.serve(..., start=False)``).

    Returns
    -------
    int
        Websocket routes changed (one per page); 0, with a warning in the log, where a
        bokeh release keeps its routes elsewhere (the server works as bokeh made it).
    """
    from bokeh.server.views.ws import WSHandler

    try:
        _, rules = server_routes(server)
    except RoutesNotFound as err:
        log.warning("dashboard: %s; closed tabs may leave tracebacks in the log", err)
        return 0
    return mix_into_handlers(rules, WSHandler, _ClosesCleanly)


def quiet_closed_connections(loop) -> None:
    """Let a browser that closes its tab go without a traceback in the server's log.

    Panel writes each update to the websocket as a few separate asyncio tasks; when
    the tab is closed meanwhile, the tasks not awaited any more end in tornado's
    ``WebSocketClosedError`` (or ``StreamClosedError``), which asyncio logs as "Task
    exception was never retrieved" with a traceback. Nothing failed: the reader has
    gone. This exception handler of the event loop (:meth:`asyncio.loop.set_exception_handler`)
    logs those at debug level and hands everything else to the handler that was there
    before (asyncio's default one).

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The server's event loop (``server.io_loop.asyncio_loop``).
    """
    previous = loop.get_exception_handler()

    def handle(loop, context):
        if isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            log.debug("dashboard: a browser closed its connection during an update")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
