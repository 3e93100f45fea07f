"""The environment of the processes tests start: scripts, CLI commands, dask workers."""

from __future__ import annotations

import os
from pathlib import Path

import cardiolab

#: the checkout the tests import cardiolab from
REPO = Path(cardiolab.__file__).resolve().parents[1]


def checkout_env() -> dict:
    """``os.environ`` with this checkout's package first on ``PYTHONPATH`` (a child
    process imports the code under test, as the tests do) and no
    ``CARDIOLAB_SCHEDULER`` (a child starts its own cluster, if any)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("CARDIOLAB_SCHEDULER", None)
    return env
