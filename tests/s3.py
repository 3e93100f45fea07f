"""A loopback S3-compatible server for the tests: moto's server mode.

:func:`start_s3_server` starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (a free
port) in a thread of the test process; dask worker processes reach it over loopback
like any S3 endpoint. Credentials are fake (moto accepts any); they go through
``storage_options``, never the environment, so nothing here can reach a real account.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

#: fake credentials: moto accepts any
FAKE_KEY = "cardiolab-test-key"
FAKE_SECRET = "cardiolab-test-secret"  # noqa: S105 (not a secret: moto's fake account)


@dataclasses.dataclass
class S3Server:
    """A running loopback S3 server: its endpoint and the fsspec options to reach it."""

    endpoint_url: str
    server: object

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
    """Start moto's threaded S3 server on a free loopback port.

    Raises
    ------
    ImportError
        If moto (with its server extra) or s3fs is not installed.
    """
    import s3fs  # noqa: F401 (the tests need it; fail here, not later)
    from moto.server import ThreadedMotoServer

    # one log line per request would flood a failing test's report
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return S3Server(f"http://{host}:{port}", server)
