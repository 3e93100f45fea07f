"""JupyterLab on the curated notebooks: the command ``cardiolab lab`` runs.

``cardiolab lab`` makes sure the demo campaign exists (:func:`cardiolab.demo.demo_catalog`),
points the notebooks at it through ``$CARDIOLAB_DEMO_DIR`` (the one setting they read)
and starts JupyterLab on the repository's ``notebooks/`` folder, bound to the loopback
interface. This module builds the command and its environment and starts it; the
demo and the command line's options live in :mod:`cardiolab.demo` and
:mod:`cardiolab.cli`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import CardiolabError

__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK",
    "default_notebook_dir",
    "jupyter_lab_command",
    "launch",
    "notebook_environment",
]

#: JupyterLab's own default port (it tries the next ones when it is taken).
DEFAULT_PORT = 8888
#: The interface JupyterLab binds unless told otherwise: this machine only.
LOOPBACK = "127.0.0.1"


def default_notebook_dir() -> Path:
    """The curated notebooks: ``notebooks/`` of the repository cardiolab runs from.

    Returns
    -------
    pathlib.Path
        The folder beside the ``cardiolab`` package (a clone installed with
        ``pip install -e``).

    Raises
    ------
    CardiolabError
        When cardiolab is installed without the repository (a wheel), so there is no
        such folder; the message says to pass ``--notebook-dir``.
    """
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    if not folder.is_dir():
        raise CardiolabError(
            f"no notebooks folder at {folder} (cardiolab is installed "
            "without its repository): pass --notebook-dir FOLDER"
        )
    return folder


def jupyter_lab_command(
    notebook_dir,
    *,
    port: int = DEFAULT_PORT,
    address: str = LOOPBACK,
    open_browser: bool = True,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command that starts JupyterLab on ``notebook_dir`` with this Python.

    Parameters
    ----------
    notebook_dir : str or pathlib.Path
        Root folder of JupyterLab's file browser (``ServerApp.root_dir``).
    port : int
        TCP port (JupyterLab tries the next ones when it is taken, and prints the URL
        it serves, with its token).
    address : str
        Interface to bind (``ServerApp.ip``); the loopback one by default.
    open_browser : bool
        Open a browser tab (``--no-browser`` when false).
    extra_args : sequence of str
        Further ``jupyter lab`` options, given last so that they win (e.g.
        ``--IdentityProvider.token=...``).

    Returns
    -------
    list of str
        ``[python, "-m", "jupyterlab", ...]``: the same interpreter as cardiolab, so
        the kernel sees the same packages. The option names are Jupyter Server's
        documented configuration (``jupyter lab --help-all``).

    Raises
    ------
    CardiolabError
        When ``notebook_dir`` is not a folder, or JupyterLab is not installed (install
        the ``dev`` extra).
    """
    if not Path(notebook_dir).is_dir():
        raise CardiolabError(f"--notebook-dir {notebook_dir}: no such folder")
    if importlib.util.find_spec("jupyterlab") is None:
        raise CardiolabError(
            "JupyterLab is not installed in this Python "
            f'({sys.executable}): python -m pip install -e ".[dev]"'
        )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={Path(notebook_dir).resolve()}",
        f"--ServerApp.ip={address}",
        f"--ServerApp.port={int(port)}",
    ]
    if not open_browser:
        command.append("--no-browser")
    return command + list(extra_args)


def notebook_environment(demo_dir, variable: str, base: Mapping[str, str] | None = None):
    """The environment of JupyterLab and its kernels: ``base`` with the demo's folder.

    Parameters
    ----------
    demo_dir : str or pathlib.Path
        The demo campaign's folder (made absolute).
    variable : str
        The setting the notebooks read (``CARDIOLAB_DEMO_DIR``).
    base : mapping, optional
        The environment to extend (default: this process's); not modified.

    Returns
    -------
    dict
        A new environment; kernels started by JupyterLab inherit it.
    """
    env = dict(os.environ if base is None else base)
    env[variable] = str(Path(demo_dir).resolve())
    return env


def launch(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command`` (JupyterLab) in the foreground until it ends.

    On POSIX systems the command replaces this process (``os.execve``), so that Ctrl+C
    and a service manager's SIGTERM reach JupyterLab itself, which then shuts its
    kernels down; elsewhere it runs as a child process and this one waits for it.

    Returns
    -------
    int
        Its exit status (POSIX: does not return).
    """
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], list(command), dict(env))
    return subprocess.call(list(command), env=dict(env))
