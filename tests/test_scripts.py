"""Scripts as scientists write them: no main guard, ``python -c``, ``python - < script``,
and a script saved beside a clone folder named ``cardiolab/``.

A LocalCluster's workers are spawned processes, which re-import the main script
(``multiprocessing`` "safe importing of main module"): an unguarded script re-ran in
every worker and died with "Nanny failed to start", a script read from standard input
could not be re-read at all. :func:`cardiolab.parallel.spawn_rerun_reason` finds those
cases and the cluster's workers are then threads of the script's process.
"""

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from processes import REPO, checkout_env

import cardiolab
from cardiolab.parallel import dask_client, spawn_rerun_reason

SCHEDULE = ["L-30", "R+1"]
POWER = dict(
    design={"schedule": ["L-30", "L-10", "R+0", "R+3"], "pre": 62, "between_sd": 0.12},
    effect=4.0,
    n_subjects=[3],
    n_sim=3,
    seed=5,
)

# The unguarded script: top-level calls of the three parallel entry points, with their
# default client (None: a LocalCluster); it records each run of its top-level code.
UNGUARDED = """
import json, os
from cardiolab.pipeline import features_table, process_campaign
from cardiolab.stats import fit_all, power_curve

with open({runs!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
report = process_campaign({catalog!r}, workers=2, progress=False, force=True)
print(repr(report))
table = features_table({catalog!r})
table.to_csv({out!r} + ".features.csv", index=False)
results = fit_all(table, features=["hr"], workers=2, progress=False)
results.to_csv({out!r} + ".fit.csv", index=False)
curve = power_curve(**json.loads({power!r}), workers=2, progress=False)
curve.table.to_csv({out!r} + ".power.csv", index=False)
print("done", len(table), len(results))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-subject x 2-session campaign of 1-minute sessions, and what this process
    computes from it in order (client="sync"): the reference of every script run."""
    from cardiolab.pipeline import features_table, process_campaign
    from cardiolab.simulate import simulate_campaign
    from cardiolab.stats import fit_all, power_curve

    path = tmp_path_factory.mktemp("scripts") / "sim"
    simulate_campaign(
        path, n_subjects=3, schedule=SCHEDULE, duration_min=1, seed=3, workers=1, progress=False
    )
    catalog = path / "data_catalog.yaml"
    report = process_campaign(catalog, client="sync", progress=False)
    assert len(report.failures) == 0
    table = features_table(catalog)
    reference = {
        "features": table,
        "fit": fit_all(table, features=["hr"], client="sync", progress=False),
        "power": power_curve(**POWER, client="sync", progress=False).table,
    }
    return catalog, reference


def _assert_frames_equal(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same columns and rows; numbers within 1e-9 (relative), the rest equal."""
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want), what
    for column in want.columns:
        a, b = got[column], want[column]
        if pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(b):
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=0, err_msg=f"{what} {column}"
            )
        else:
            assert a.fillna("").astype(str).tolist() == b.fillna("").astype(str).tolist(), (
                f"{what} {column}"
            )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["script", "-c", "stdin"])
def test_unguarded_script_runs_once_and_matches_a_local_run(tiny, tmp_path, form):
    catalog, reference = tiny
    runs, out = tmp_path / "runs.txt", tmp_path / "out"
    source = UNGUARDED.format(
        runs=str(runs), catalog=str(catalog), out=str(out), power=json.dumps(POWER)
    )
    script = tmp_path / "analysis.py"
    script.write_text(source)
    command = {
        "script": [sys.executable, str(script)],
        "-c": [sys.executable, "-c", source],
        "stdin": [sys.executable, "-"],
    }[form]
    done = subprocess.run(
        command,
        input=source if form == "stdin" else None,
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Nanny failed" not in done.stderr
    assert f"{3 * len(SCHEDULE)} processed, 0 unchanged (cached), 0 failed" in done.stdout
    assert f"done {len(reference['features'])} {len(reference['fit'])}" in done.stdout
    # the top-level code ran once: in this process, not again in a worker
    assert len(runs.read_text().split()) == 1
    features = pd.read_csv(f"{out}.features.csv")
    want = reference["features"].reset_index(drop=True)
    _assert_frames_equal(features, pd.read_csv(_round_trip(want, tmp_path)), "features")
    fit = pd.read_csv(f"{out}.fit.csv")
    _assert_frames_equal(fit, pd.read_csv(_round_trip(reference["fit"], tmp_path)), "fit_all")
    power = pd.read_csv(f"{out}.power.csv")
    _assert_frames_equal(power, pd.read_csv(_round_trip(reference["power"], tmp_path)), "power")


def _round_trip(frame: pd.DataFrame, folder: Path) -> Path:
    """The reference written as the script writes its tables (CSV), to compare alike."""
    path = folder / "reference.csv"
    frame.to_csv(path, index=False)
    return path


GUARDED = """
import os
from cardiolab.parallel import run_tasks

def pid(shared, task):
    return os.getpid()

if __name__ == "__main__":
    with open({runs!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    run = run_tasks(pid, [1, 2], workers=1, progress=False)
    print("main", os.getpid(), "workers", sorted(set(run.results)))
"""


@pytest.mark.slow
def test_guarded_script_keeps_worker_processes(tmp_path):
    runs = tmp_path / "runs.txt"
    script = tmp_path / "guarded.py"
    script.write_text(GUARDED.format(runs=str(runs)))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    main_pid = int(words[1])
    workers = json.loads(done.stdout.split("workers", 1)[1].strip())
    assert len(workers) == 1 and workers[0] != main_pid
    assert runs.read_text().split() == [str(main_pid)]


def _main_module(tmp_path, source: str | None, *, name: str = "analysis.py"):
    """A stand-in for ``sys.modules["__main__"]`` run from a file (or from ``-c``)."""
    module = types.ModuleType("__main__")
    module.__spec__ = None
    if source is not None:
        path = tmp_path / name
        path.write_text(source)
        module.__file__ = str(path)
    return module


@pytest.mark.parametrize(
    ("source", "unsafe"),
    [
        ("import cardiolab\nprint(1)\n", True),
        ("def main():\n    pass\n\nif __name__ == '__main__':\n    main()\n", False),
        ("if '__main__' == __name__:\n    pass\n", False),
        # a guard nested in a function is not the module's guard
        ("def f():\n    if __name__ == '__main__':\n        pass\n", True),
        ("if __name__ != '__main__':\n    pass\n", True),
        ("this is not python(\n", True),
    ],
)
def test_spawn_rerun_reason_reads_the_script_for_a_main_guard(tmp_path, source, unsafe):
    module = _main_module(tmp_path, source)
    reason = spawn_rerun_reason(module)
    assert (reason is not None) is unsafe
    if unsafe:
        assert str(tmp_path / "analysis.py") in reason


def test_spawn_rerun_reason_of_stdin_and_of_python_c(tmp_path):
    stdin = types.ModuleType("__main__")
    stdin.__spec__ = None
    stdin.__file__ = "<stdin>"
    assert "<stdin>" in spawn_rerun_reason(stdin)
    assert "standard input" in spawn_rerun_reason(stdin)
    # python -c and the interactive interpreter: no file, nothing re-run by a worker
    assert spawn_rerun_reason(_main_module(tmp_path, None)) is None
    # python -m: the module is re-imported by name, its source is what counts
    path = tmp_path / "tool.py"
    path.write_text("print(1)\n")
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="tool", origin=str(path))
    assert "module tool" in spawn_rerun_reason(module)
    path.write_text("if __name__ == '__main__':\n    print(1)\n")
    assert spawn_rerun_reason(module) is None


def test_local_cluster_is_threads_for_an_unguarded_main_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("CARDIOLAB_SCHEDULER", raising=False)
    monkeypatch.setitem(sys.modules, "__main__", _main_module(tmp_path, "print(1)\n"))
    with caplog.at_level(logging.WARNING, logger="cardiolab"):
        with dask_client(workers=1) as client:
            assert client.cluster.processes is False
            assert client.submit(os.getpid).result() == os.getpid()
    lines = [r.getMessage() for r in caplog.records if r.name == "cardiolab"]
    assert len(lines) == 1
    assert str(tmp_path / "analysis.py") in lines[0]
    assert "threads" in lines[0] and 'if __name__ == "__main__":' in lines[0]
    assert "scheduler" in lines[0] and "\n" not in lines[0]


def test_a_clone_folder_named_cardiolab_does_not_shadow_the_installed_package(tmp_path):
    """``git clone .../cardiolab`` then a script saved beside the clone: the folder
    ``cardiolab/`` (no ``__init__.py`` at its top) is on the script's path first; the
    installed package must still be the one imported, not an empty namespace package.

    This checks the install of this checkout as the README makes it (``pip install -e
    .``): setuptools' editable install of a flat layout used an import finder placed
    after the path search, which the namespace folder beat; ``package-dir = {"" =
    "."}`` (pyproject.toml) makes it a path entry, which a regular package on the path
    wins over a namespace folder (PEP 420).
    """
    try:
        importlib.metadata.distribution("cardiolab")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("cardiolab is not installed (pip install -e .)")
    env = checkout_env()
    env.pop("PYTHONPATH")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "import cardiolab; print(cardiolab.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert where.returncode == 0, where.stderr
    installed = Path(where.stdout.strip()).resolve()
    if installed.parents[1] != REPO:
        pytest.skip(f"cardiolab is installed from {installed.parent}, not from this checkout")
    clone = tmp_path / "cardiolab"
    (clone / "cardiolab").mkdir(parents=True)
    (clone / "README.md").write_text("# cardiolab\n")
    (tmp_path / "analysis.py").write_text(
        "import cardiolab\nprint(cardiolab.__version__, cardiolab.__file__)\n"
    )
    for command in ([sys.executable, "analysis.py"], [sys.executable, "-c", probe]):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "unknown location" not in done.stderr
        assert Path(done.stdout.split()[-1]).resolve() == installed
    done = subprocess.run(
        [sys.executable, "analysis.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.stdout.split()[0] == cardiolab.__version__
