"""Fixtures of the browser tests: Debian's chromium, a processed campaign, a served app.

The tests drive the dashboard the way a reviewer does: ``cardiolab serve`` runs in a
subprocess on a free port, and pytest-playwright's ``page`` opens it in chromium.

Chromium is the system one (``/usr/bin/chromium``, installed by ``.ci/run`` with
apt; or the executable named by ``$CARDIOLAB_CHROMIUM``), never a browser downloaded
by ``playwright install``. Without it, or without the ``playwright`` package, every
test of this folder is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: The chromium executable the tests drive.
CHROMIUM = Path(os.environ.get("CARDIOLAB_CHROMIUM", "/usr/bin/chromium"))
#: Longest wait for a page or a server (ms): a cold page on two busy cores takes ~20 s.
TIMEOUT_MS = 90_000
#: What ``cardiolab serve`` prints once it listens.
READY = re.compile(r"dashboard: (http://\S+)/session")

#: Wall-clock figures reported at the end of the run (label -> seconds).
TIMINGS: dict[str, float] = {}


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return (
            f"no chromium at {CHROMIUM}: install Debian's `chromium` (apt) or point "
            "CARDIOLAB_CHROMIUM at a chromium executable"
        )
    try:
        import playwright.sync_api  # noqa: F401
        import pytest_playwright  # noqa: F401
    except ImportError as err:
        return f"pytest-playwright is not installed ({err})"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason is None:
        return
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "browser tests: wall-clock figures")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")


# --- chromium -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options with the system chromium."""
    args = list(browser_type_launch_args.get("args", []))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": args}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A desktop-sized window: the session page stacks five signal plots."""
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


# --- data ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def processed_campaign(tmp_path_factory) -> Path:
    """Catalog path of a processed 3-subject campaign (default schedule, 4-min sessions).

    The default schedule (L-60 ... R+30) gives the cohort page pre-, in- and
    post-flight data to fit.
    """
    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("browser") / "campaign"
    t0 = time.perf_counter()
    simulate_campaign(path, n_subjects=3, duration_min=4, seed=3, workers=1, progress=False)
    catalog = path / "data_catalog.yaml"
    report = process_campaign(catalog, client="sync", progress=False)
    TIMINGS["campaign simulated and processed (3 x 10 sessions of 4 min)"] = (
        time.perf_counter() - t0
    )
    assert len(report.failures) == 0, report.failures.to_string()
    return catalog


# --- the served app -----------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedApp:
    """``cardiolab serve CATALOG`` in a subprocess; start, stop, restart.

    Parameters
    ----------
    catalog : pathlib.Path
        The campaign to serve.
    port : int, optional
        TCP port (default: a free one, kept across restarts).
    args : list of str
        Extra ``cardiolab serve`` arguments (``--credentials FILE`` ...).
    env : dict, optional
        Extra environment variables of the server.
    """

    def __init__(self, catalog, port=None, args=(), env=None):
        self.catalog = Path(catalog)
        self.port = port or free_port()
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.pop("CARDIOLAB_CREDENTIALS", None)
        self.proc = None
        self.url = None
        self.lines: list[str] = []

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cardiolab.cli",
            "serve",
            str(self.catalog),
            "--port",
            str(self.port),
            *self.args,
        ]

    def start(self, timeout: float = TIMEOUT_MS / 1000) -> ServedApp:
        """Start the server and wait until it prints its URL."""
        self.lines = []
        ready = threading.Event()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

        def drain(stream):
            for line in stream:
                self.lines.append(line.rstrip("\n"))
                m = READY.search(line)
                if m:
                    self.url = m.group(1)
                    ready.set()

        threading.Thread(target=drain, args=(self.proc.stdout,), daemon=True).start()
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError(
                    f"`{' '.join(self.command)}` did not print its URL within {timeout:.0f} s "
                    f"(exit status {self.proc.returncode}); its output:\n" + self.output
                )
        self.startup_s = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        """Stop the server (Ctrl+C, then kill after 15 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> ServedApp:
        """A new server process on the same catalog and port."""
        self.stop()
        return self.start()

    def page_url(self, slug: str) -> str:
        return f"http://localhost:{self.port}/{slug}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def served_with_login(
    catalog: Path, folder: Path, user: str, password: str, others: dict | None = None
) -> ServedApp:
    """The app behind a login, started: ``user``'s password (and those of ``others``,
    user -> password) written to a credentials file in ``folder`` by ``cardiolab passwd``
    (the password read from ``$CARDIOLAB_PASSWORD``), no warm-up."""
    creds = folder / "reviewers.json"
    users = {user: password, **(others or {})}
    for name, secret in users.items():
        done = subprocess.run(
            [sys.executable, "-m", "cardiolab.cli", "passwd", str(creds), name],
            env={**ServedApp(catalog).env, "CARDIOLAB_PASSWORD": secret},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert not any(secret in creds.read_text() for secret in users.values())
    return ServedApp(
        catalog,
        args=["--address", "127.0.0.1", "--credentials", str(creds)],
        env={"CARDIOLAB_WARMUP": "0"},
    ).start()


@pytest.fixture(scope="module")
def served_app(processed_campaign):
    """The app on the processed campaign, bound to 127.0.0.1 (no login)."""
    app = ServedApp(processed_campaign).start()
    TIMINGS["server start (imports + warm-up), first"] = app.startup_s
    yield app
    app.stop()


class ConsoleLog:
    """Errors a page reports: console messages of type ``error`` and uncaught exceptions."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message):
        if message.type == "error":
            loc = message.location or {}
            self.errors.append(f"console.error: {message.text} ({loc.get('url', '')})")

    def check(self):
        """Fail, listing them, if the page reported any error."""
        if self.errors:
            for line in self.errors:
                print(line)
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)


@pytest.fixture(autouse=True)
def _page_state_waits(request):
    """Every wait of a browser test follows the page's state for up to TIMEOUT_MS.

    Playwright's ``expect`` assertions retry until the page shows what they expect, but
    give up after their own default of 5 s, which a busy machine overruns while a page
    recomputes. The same limit applies to them as to page waits (``expect.set_options``
    and ``BrowserContext.set_default_timeout`` are Playwright's public settings).
    """
    if "page" not in request.fixturenames:
        yield
        return
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    request.getfixturevalue("context").set_default_timeout(TIMEOUT_MS)
    yield


@pytest.fixture
def console(page) -> ConsoleLog:
    """The console errors of ``page`` (attach before the first navigation)."""
    return ConsoleLog(page)
