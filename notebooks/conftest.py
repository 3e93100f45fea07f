"""Notebooks executed by pytest (nbmake) use a throwaway demo campaign.

Every notebook starts with ``demo_catalog()``, which generates and processes the demo
campaign in ``$CARDIOLAB_DEMO_DIR`` (default: the user's cache,
``~/.cache/cardiolab/demo``). Under pytest that variable is pointed at a temporary
folder before the first notebook's kernel starts: nbmake's kernels are child
processes that inherit this process's environment, so a test run never writes to the
user's cache (``tests/test_notebooks_clean.py`` checks the inheritance). The first
notebook to run generates and processes the campaign there; the others reuse it; the
folder is removed at the end of the run.

Set ``CARDIOLAB_NOTEBOOK_DEMO_DIR`` to keep the notebooks' demo in a folder of your
choice across runs (e.g. a CI cache): it is used as is and never removed.

nbmake's notebook items take no fixtures, so this is done with hooks rather than an
autouse fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile

#: Environment variable read by :func:`cardiolab.cli.default_demo_dir`.
DEMO_DIR_VARIABLE = "CARDIOLAB_DEMO_DIR"
#: Optional fixed folder for the notebooks' demo (kept between runs).
KEEP_VARIABLE = "CARDIOLAB_NOTEBOOK_DEMO_DIR"

_state: dict = {}


def notebook_demo_dir() -> str:
    """Point ``$CARDIOLAB_DEMO_DIR`` at the notebooks' demo folder (once per run).

    Returns
    -------
    str
        The folder: ``$CARDIOLAB_NOTEBOOK_DEMO_DIR`` if set, else a new temporary
        folder (removed by :func:`pytest_sessionfinish`).
    """
    if "dir" not in _state:
        _state["previous"] = os.environ.get(DEMO_DIR_VARIABLE)
        keep = os.environ.get(KEEP_VARIABLE)
        if keep:
            _state["dir"], _state["remove"] = os.path.abspath(os.path.expanduser(keep)), False
        else:
            _state["dir"] = tempfile.mkdtemp(prefix="cardiolab-notebooks-")
            _state["remove"] = True
        os.environ[DEMO_DIR_VARIABLE] = os.path.join(_state["dir"], "demo")
    return _state["dir"]


def pytest_runtest_setup(item):
    """Before each item of this folder (the notebooks), set the demo folder."""
    notebook_demo_dir()


def pytest_sessionfinish(session, exitstatus):
    """Restore ``$CARDIOLAB_DEMO_DIR`` and remove the temporary demo."""
    if "dir" not in _state:
        return
    previous = _state.pop("previous")
    if previous is None:
        os.environ.pop(DEMO_DIR_VARIABLE, None)
    else:
        os.environ[DEMO_DIR_VARIABLE] = previous
    folder, remove = _state.pop("dir"), _state.pop("remove")
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
