"""A loopback S3-compatible server for the tests: moto's server mode.

:func:`start_s3_server` serves moto's S3 application on 127.0.0.1 (a free port) from a
thread of the test process, as ``moto.server.ThreadedMotoServer`` does, with a log of
the requests it answers (:class:`RequestLog`: how many LIST requests a read costs); dask
worker processes reach it over loopback like any S3 endpoint. Credentials are fake
(moto accepts any); they go through ``storage_options``, never the environment, so
nothing here can reach a real account.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import urllib.parse
import uuid

#: fake credentials: moto accepts any
FAKE_KEY = "cardiolab-test-key"
FAKE_SECRET = "cardiolab-test-secret"  # noqa: S105 (not a secret: moto's fake account)


@dataclasses.dataclass(frozen=True)
class S3Request:
    """One request the server answered: HTTP method, path (``/bucket/key``) and query."""

    method: str
    path: str
    query: dict

    @property
    def is_list(self) -> bool:
        """A LIST request (ListObjects or ListObjectsV2): a GET of a bucket (no key)
        with a listing query (``list-type``, ``prefix`` or ``delimiter``), as the S3 API
        reference defines them."""
        bucket_only = self.path.strip("/").count("/") == 0 and self.path.strip("/") != ""
        listing = {"list-type", "prefix", "delimiter"} & set(self.query)
        return self.method == "GET" and bucket_only and bool(listing)


class RequestLog:
    """A WSGI middleware recording each request to the application it wraps."""

    def __init__(self, app):
        self.app = app
        self._lock = threading.Lock()
        self._requests: list[S3Request] = []

    def __call__(self, environ, start_response):
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        request = S3Request(
            environ["REQUEST_METHOD"], urllib.parse.unquote(environ.get("PATH_INFO", "")), query
        )
        with self._lock:
            self._requests.append(request)
        return self.app(environ, start_response)

    @contextlib.contextmanager
    def recording(self):
        """The requests answered while the ``with`` block runs (a list, filled on exit)."""
        with self._lock:
            start = len(self._requests)
        out: list[S3Request] = []
        try:
            yield out
        finally:
            with self._lock:
                out.extend(self._requests[start:])


class _ThreadedServer:
    """moto's S3 application (wrapped in a :class:`RequestLog`) served by werkzeug
    from a daemon thread, as ``moto.server.ThreadedMotoServer`` serves it."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), port

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@dataclasses.dataclass
class S3Server:
    """A running loopback S3 server: its endpoint, the fsspec options to reach it and
    the log of the requests it answered (``requests.recording()``)."""

    endpoint_url: str
    server: object
    #: None where moto does not let its application be wrapped (see start_s3_server)
    requests: RequestLog | None

    def recording(self):
        """:meth:`RequestLog.recording` of this server; a test that counts requests is
        skipped, saying why, where the server keeps no log."""
        if self.requests is None:
            import pytest

            pytest.skip("this moto release does not expose its S3 application: no request log")
        return self.requests.recording()

    @property
    def storage_options(self) -> dict:
        """s3fs options: the endpoint and the fake credentials (a new dict each time)."""
        return {
            "key": FAKE_KEY,
            "secret": FAKE_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    def filesystem(self):
        """An ``s3fs.S3FileSystem`` on this server (not cached: a fresh listing)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name; returns its name."""
        name = f"cardiolab-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name


def start_s3_server() -> S3Server:
    """Start moto's S3 server on a free loopback port, in a thread, with a request log.

    Raises
    ------
    ImportError
        If moto (with its server extra) or s3fs is not installed.
    """
    import s3fs  # noqa: F401 (the tests need it; fail here, not later)

    # one log line per request would flood a failing test's report
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:  # the application ThreadedMotoServer serves (moto 5), to wrap it in the log
        from moto.server import DomainDispatcherApplication, create_backend_app
    except ImportError:  # a moto that moved them: its documented server, no request log
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return S3Server(f"http://{host}:{port}", server, None)
    log = RequestLog(DomainDispatcherApplication(create_backend_app))
    server = _ThreadedServer(log)
    host, port = server.get_host_and_port()
    return S3Server(f"http://{host}:{port}", server, log)
