"""Notebooks executed by pytest (nbmake) find the demo by the one setting they read.

Every notebook starts with ``catalog = demo_catalog()``, which opens (and on first use
generates and processes) the demo campaign in ``$CARDIOLAB_DEMO_DIR`` (default: the
user's cache, ``~/.cache/cardiolab/demo``): the same setting ``cardiolab demo`` and
``cardiolab lab`` use, documented in the README and in each notebook's first cell.

Under pytest:

- ``CARDIOLAB_DEMO_DIR`` set: the notebooks use that demo, as they would in JupyterLab
  (a CI cache, or your own demo, is reused between runs and never removed);
- not set: it is pointed at a throwaway folder before the first notebook's kernel
  starts, so a test run never writes to the user's cache; the first notebook to run
  generates and processes the demo there, the others reuse it, and the folder is
  removed at the end of the run.

nbmake's kernels are child processes that inherit this process's environment
(``tests/test_notebooks_clean.py`` checks both cases). nbmake's notebook items take no
fixtures, so this is done with hooks rather than an autouse fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from cardiolab.cli import DEMO_DIR_VARIABLE

_state: dict = {}


def notebook_demo_dir() -> str:
    """The notebooks' demo folder: ``$CARDIOLAB_DEMO_DIR``, set if absent (once per run).

    Returns
    -------
    str
        ``$CARDIOLAB_DEMO_DIR`` if set, else ``<new temporary folder>/demo`` (the
        temporary folder is removed by :func:`pytest_sessionfinish`).
    """
    if "dir" not in _state:
        given = os.environ.get(DEMO_DIR_VARIABLE)
        if given:
            _state["dir"], _state["remove"] = given, None
        else:
            throwaway = tempfile.mkdtemp(prefix="cardiolab-notebooks-")
            _state["dir"], _state["remove"] = os.path.join(throwaway, "demo"), throwaway
            os.environ[DEMO_DIR_VARIABLE] = _state["dir"]
    return _state["dir"]


def pytest_runtest_setup(item):
    """Before each item of this folder (the notebooks), settle the demo folder."""
    notebook_demo_dir()


def pytest_sessionfinish(session, exitstatus):
    """Unset ``$CARDIOLAB_DEMO_DIR`` and remove the throwaway demo, if this run made one."""
    if "dir" not in _state:
        return
    _state.pop("dir")
    throwaway = _state.pop("remove")
    if throwaway is not None:
        os.environ.pop(DEMO_DIR_VARIABLE, None)
        shutil.rmtree(throwaway, ignore_errors=True)
