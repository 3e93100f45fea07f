"""The routes of a served bokeh/Panel app, and how cardiolab adds to their handlers.

bokeh keeps its tornado application private (``Server._tornado``) and has no hook to
wrap a route's handler; cardiolab needs two: the login in front of every route
(:func:`~cardiolab.dashboards.access.require_login`) and a websocket that closes
cleanly (:func:`~cardiolab.dashboards.connections.close_connections_cleanly`). This is
the one place that reaches into bokeh's server for them.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["RoutesNotFound", "mix_into_handlers", "server_routes"]


class RoutesNotFound(LookupError):
    """A bokeh or tornado release keeps the server's routes elsewhere."""


def server_routes(server):
    """The tornado application of a bokeh/Panel server and its routing rules.

    Parameters
    ----------
    server : bokeh.server.server.Server
        Built, not necessarily started (``panel.serve(..., start=False)``).

    Returns
    -------
    app : bokeh.server.tornado.BokehTornado
    rules : list of tornado.routing.Rule
        The rules of every path, in order; a rule's ``target`` is its handler class.

    Raises
    ------
    RoutesNotFound
        The application or its rules are not where bokeh 3.x / tornado 6.x keep them.
    """
    app = getattr(server, "_tornado", None)
    rules = getattr(getattr(app, "wildcard_router", None), "rules", None)
    if not rules:
        raise RoutesNotFound(
            f"cannot reach the routes of this server (bokeh {version('bokeh')}, "
            f"tornado {version('tornado')})"
        )
    return app, rules


def mix_into_handlers(rules, base: type, mixin: type, *, skip=(), **attributes) -> int:
    """Replace each route's handler class that derives from ``base`` by a subclass with
    ``mixin`` first in its bases (its methods run first and reach the handler's own by
    ``super()``).

    Parameters
    ----------
    rules : list of tornado.routing.Rule
        From :func:`server_routes`; changed in place (a server's routes, before it starts).
    base : type
        Handlers of this class or its subclasses get the mixin.
    mixin : type
        The class mixed in. A handler that already has it is left as it is.
    skip : collection of type
        Handler classes left as they are.
    **attributes
        Class attributes of the new subclasses.

    Returns
    -------
    int
        Routes whose handler was replaced.
    """
    count = 0
    for rule in rules:
        target = rule.target
        if not (isinstance(target, type) and issubclass(target, base)):
            continue
        if target in skip or issubclass(target, mixin):
            continue
        name = mixin.__name__.lstrip("_") + target.__name__
        rule.target = type(name, (mixin, target), dict(attributes))
        count += 1
    return count
