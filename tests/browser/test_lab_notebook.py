"""``cardiolab lab`` for real: JupyterLab in chromium runs notebook 04 and shows the pages.

``cardiolab lab`` starts JupyterLab on loopback with a token, on a copy of notebook 04
(JupyterLab autosaves outputs into the notebooks it runs; the repository's stay clean)
and on the browser tests' processed campaign as the demo (``--path``: the command sets
``$CARDIOLAB_DEMO_DIR`` for the kernel). Chromium opens the notebook in JupyterLab, runs
every cell, and the Session review, Cohort and Campaign pages must render inline: their
headings in the output area, the session's signals and beat plot drawn by BokehJS
(loaded from the kernel: the browser reports no failed load), no cell in error; the
dask extension's tab is in JupyterLab's side bar.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")
from playwright.sync_api import expect  # noqa: E402

from .conftest import TIMEOUT_MS, TIMINGS, free_port  # noqa: E402
from .pages import BEAT_PLOT, BOKEH_STATE, bokeh_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "04_review_dashboard.ipynb"
#: The session notebook 04 reviews, and the signal plots of a simulated session.
SESSION_TITLE = "S01/R+0"
N_SIGNALS = 5
#: Duration of the browser tests' simulated sessions (4 min), s.
DURATION_S = 240.0
#: BokehJS has drawn plots with these titles and ``n`` rasterised images with signal in
#: them. (A notebook's bokeh documents do not report idle as a served page's do: the
#: views' own state is what counts here.)
DRAWN = """([js, titles, n]) => {
  const s = eval(js)();
  return !!s && s.finished && titles.every(t => s.titles.includes(t))
    && s.images.filter(im => im.inked > 0).length >= n;
}"""
#: Longest run of the whole notebook (kernel start, imports, three pages, a cohort fit).
RUN_TIMEOUT_MS = 180_000

#: JupyterLab's own objects are on ``window.jupyterapp`` with
#: ``--LabApp.expose_app_in_browser=True`` (the setting JupyterLab's UI tests use).
NOTEBOOK_SHOWN = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  return !!(w && w.sessionContext && app.commands.hasCommand("notebook:run-all-cells"));
}"""
#: Wait (a promise: ``page.evaluate`` awaits it) until the notebook and its kernel are
#: ready, and keep the notebook: the shell's current widget follows the focus.
NOTEBOOK_READY = """async () => {
  const app = window.jupyterapp;
  await app.restored;
  const w = app.shell.currentWidget;
  await w.context.ready;
  await w.sessionContext.ready;
  window.__cardiolab_nb = w;
  return w.context.path;
}"""
RUN_ALL = """() => {
  window.__cardiolab_run = undefined;
  window.jupyterapp.commands.execute("notebook:run-all-cells")
    .then(() => { window.__cardiolab_run = "sent"; },
          err => { window.__cardiolab_run = "error: " + err; });
}"""
#: Every code cell has run (an execution count) and the kernel is idle.
ALL_RUN = """() => {
  const w = window.__cardiolab_nb;
  return window.__cardiolab_run !== undefined
    && w.sessionContext.session.kernel.status === "idle"
    && w.content.widgets.every(c => c.model.type !== "code" || c.model.executionCount !== null);
}"""
#: Scroll code cell ``index`` into view (JupyterLab detaches far-off cells) and wait for it.
SHOW_CELL = """async (index) => {
  const nb = window.__cardiolab_nb;
  const cell = nb.content.widgets.filter(c => c.model.type === "code")[index];
  await nb.content.scrollToCell(cell);
}"""
#: What code cell ``index``'s outputs show: whether a heading reads ``heading`` and how
#: many drawn canvases there are (Panel renders into shadow roots: they are walked too).
#: ``null`` until both are there.
CELL_SHOWS = """([index, heading]) => {
  const nb = window.__cardiolab_nb;
  const cell = nb.content.widgets.filter(c => c.model.type === "code")[index];
  const found = {heading: false, canvases: 0};
  const walk = (root) => root.querySelectorAll("*").forEach(el => {
    if (el.shadowRoot) walk(el.shadowRoot);
    // Markdown headings end with an anchor link, "¶"
    const text = el.textContent.replace("\u00b6", "").trim();
    if (/^H[1-6]$/.test(el.tagName) && text === heading) found.heading = true;
    if (el.tagName === "CANVAS" && el.width > 0 && el.height > 0) found.canvases++;
  });
  walk(cell.outputArea.node);
  return found.heading && found.canvases > 0 ? found : null;
}"""
#: Per code cell: its execution count and its outputs' types (``error`` for a traceback).
CELLS = """() => window.__cardiolab_nb.content.widgets
  .filter(c => c.model.type === "code")
  .map(c => ({count: c.model.executionCount,
              outputs: Array.from({length: c.model.outputs.length},
                                  (_, i) => c.model.outputs.get(i).type)}))"""


def wait_until(page, predicate, arg, what: str, console, timeout=TIMEOUT_MS) -> None:
    """Wait for ``predicate``; on a timeout, fail naming ``what`` and the page's errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(predicate, arg=arg, polling=250, timeout=timeout)
    except PlaywrightTimeout:
        errors = "\n".join(console.errors[:10]) or "(none)"
        pytest.fail(f"{what} not shown within {timeout / 1000:.0f} s; the page's errors:\n{errors}")


class JupyterLab:
    """``cardiolab lab`` in a subprocess, on loopback with a token.

    Parameters
    ----------
    demo_dir : pathlib.Path
        The demo campaign's folder (``cardiolab lab --path``).
    notebook_dir : pathlib.Path
        The folder JupyterLab opens.
    home : pathlib.Path
        Folder for JupyterLab's settings, workspaces and runtime files.
    """

    def __init__(self, demo_dir, notebook_dir, home):
        self.demo_dir = Path(demo_dir)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "cardiolab.cli", "lab",
            "--path", str(self.demo_dir), "--notebook-dir", str(notebook_dir),
            "--port", str(self.port), "--no-browser", "--workers", "0", "--quiet",
            "--",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.port_retries=0",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.command.append("--allow-root")  # Jupyter refuses root without it (CI)
        env = {k: v for k, v in os.environ.items() if k != "CARDIOLAB_DEMO_DIR"}
        # the kernel imports this repository's cardiolab, whatever is installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for name, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ]:
            env[name] = str(home / sub)
        self.env = env
        self.lines: list[str] = []
        self.proc = None

    def start(self, timeout: float = TIMEOUT_MS / 1000) -> JupyterLab:
        """Start it and wait until its REST API answers with the token."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        while self.status(self.token) != 200:
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError(
                    f"`{' '.join(self.command)}` did not answer within {timeout:.0f} s "
                    f"(exit status {self.proc.returncode}); its output:\n" + self.output
                )
            time.sleep(0.25)
        self.startup_s = time.perf_counter() - t0
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def status(self, token: str | None) -> int | None:
        """HTTP status of the contents API with ``token`` (None: without one)."""
        query = f"?token={token}" if token else ""
        try:
            with urllib.request.urlopen(f"{self.base}/api/contents{query}", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def stop(self) -> None:
        """Stop JupyterLab and its kernels (SIGTERM, then kill after 20 s).

        ``cardiolab lab`` has become JupyterLab (exec), so the signal reaches it.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def jupyter_lab(processed_campaign, tmp_path_factory):
    """``cardiolab lab`` on a copy of notebook 04 and the processed campaign."""
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, notebooks / NOTEBOOK)
    lab = JupyterLab(processed_campaign.parent, notebooks, home).start()
    TIMINGS["cardiolab lab: demo checked and JupyterLab answering"] = lab.startup_s
    yield lab
    lab.stop()


def test_lab_serves_loopback_with_a_token(jupyter_lab):
    assert jupyter_lab.status(jupyter_lab.token) == 200
    assert jupyter_lab.status(None) == 403  # no token, no notebooks
    assert jupyter_lab.status("wrong") == 403
    out = jupyter_lab.output
    assert f"CARDIOLAB_DEMO_DIR={jupyter_lab.demo_dir}" in out
    assert f"http://127.0.0.1:{jupyter_lab.port}/lab" in out


def test_notebook_04_renders_the_pages_inline(jupyter_lab, page, console):
    t0 = time.perf_counter()
    page.goto(f"{jupyter_lab.base}/lab/tree/{NOTEBOOK}?token={jupyter_lab.token}")
    page.wait_for_function(NOTEBOOK_SHOWN, polling=250, timeout=TIMEOUT_MS)
    assert page.evaluate(NOTEBOOK_READY) == NOTEBOOK
    t_open = time.perf_counter()
    # the dask JupyterLab extension installed with the dev extra is in the side bar
    expect(page.get_by_role("tab", name="Dask")).to_be_visible()
    page.evaluate(RUN_ALL)
    page.wait_for_function(ALL_RUN, polling=500, timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.__cardiolab_run") == "sent"
    cells = page.evaluate(CELLS)
    assert [c["count"] for c in cells] == list(range(1, len(cells) + 1)), cells
    assert not any("error" in c["outputs"] for c in cells), (cells, jupyter_lab.output)

    for index, heading in [(3, "Campaign"), (2, "Cohort"), (1, "Session review")]:
        page.evaluate(SHOW_CELL, index)
        wait_until(page, CELL_SHOWS, [index, heading], f"the {heading} page", console)
    # the session's five signals are drawn (rasterised by datashader in the kernel)
    # and the beat plot under them, by BokehJS in the notebook page
    drawn = [BOKEH_STATE, [SESSION_TITLE, BEAT_PLOT], N_SIGNALS]
    wait_until(page, DRAWN, drawn, "the session's signals and beat plot", console)
    state = bokeh_state(page)
    # one raster per signal of the session (ECG, pressure, LDF, two Doppler vessels),
    # each 240 s wide, and the cohort page's plots of the feature it opens on
    assert len(state["images"]) == N_SIGNALS, state["images"]
    assert all(im["inked"] > 0 and im["x"] == 0 for im in state["images"]), state["images"]
    assert all(abs(im["dw"] - DURATION_S) < 0.1 for im in state["images"]), state["images"]
    assert any(title.startswith("hr (supine)") for title in state["titles"]), state["titles"]
    TIMINGS["notebook 04 in JupyterLab: opened"] = t_open - t0
    TIMINGS["notebook 04 in JupyterLab: run and drawn"] = time.perf_counter() - t_open
    console.check()  # nothing failed to load (BokehJS and Panel come from the kernel)
