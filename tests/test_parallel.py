"""The one parallel runner (in this process and on dask) and the layering it allows."""

import ast
import os
from pathlib import Path

import pytest

import cardiolab
from cardiolab.parallel import dask_client, run_tasks

PACKAGE = Path(cardiolab.__file__).parent


def _scaled(shared, task):
    """A task that needs the shared input and says which process ran it."""
    return task, shared["factor"] * task, os.getpid()


def _fails_on_three(shared, task):
    if task == 3:
        raise ValueError("task 3 is broken")
    return task


def test_sync_runs_every_task_here_in_order_with_the_shared_input():
    progress = []
    run = run_tasks(
        _scaled,
        [1, 2, 3, 4],
        shared={"factor": 10},
        client="sync",
        progress=False,
        size=lambda task: progress.append(task) or task,
    )
    assert [r[:2] for r in run.results] == [(1, 10), (2, 20), (3, 30), (4, 40)]
    assert {r[2] for r in run.results} == {os.getpid()}
    assert run.n_workers == 1 and run.seconds >= 0
    # the bar's total is the tasks' sizes, counted once each, then once per task done
    assert sorted(progress) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_sync_raises_the_first_failing_task():
    with pytest.raises(ValueError, match="task 3 is broken"):
        run_tasks(_fails_on_three, [1, 2, 3, 4], client="sync", progress=False)


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 cores for a 2-worker cluster")
def test_dask_runs_every_task_once_on_the_workers():
    tasks = list(range(40))
    with dask_client(workers=2) as client:
        # one dask task per task, or 2 batches per worker; runs back to back on the same
        # input (each run's copy of it on the workers is its own)
        for batches in (None, 2, None, 2, None, 2):
            run = run_tasks(
                _scaled,
                tasks,
                shared={"factor": 3},
                client=client,
                progress=False,
                batches_per_worker=batches,
            )
            assert run.n_workers == 2
            assert sorted(r[:2] for r in run.results) == [(t, 3 * t) for t in tasks]
            assert os.getpid() not in {r[2] for r in run.results}
        with pytest.raises(ValueError, match="task 3 is broken"):
            run_tasks(_fails_on_three, [1, 2, 3, 4], client=client, progress=False)
        # a client given is left open
        assert client.submit(sum, [1, 2]).result() == 3
        # glibc's adaptive mmap threshold is kept in the workers: distributed's default
        # MALLOC_TRIM_THRESHOLD_ made every session some 1.5 times slower
        environ = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        assert list(environ.values()) == [None, None]


def test_a_configured_malloc_setting_reaches_the_workers():
    """Only distributed's default is unset: a value the user configured is kept."""
    import dask

    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    with dask.config.set({key: 131072}), dask_client(workers=1) as client:
        environ = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert list(environ.values()) == ["131072"]


def _imports(source: str, package: str) -> set[str]:
    """Modules (and names) a module of ``package`` imports, anywhere in its code, with
    relative imports resolved."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("stats", ("cardiolab.pipeline",)),
        (".", ("cardiolab.pipeline", "cardiolab.stats")),
    ],
)
def test_layers_do_not_reach_up(folder, forbidden):
    """stats takes tables in and never imports the pipeline (DESIGN.md); the runner
    they share imports neither (at module level or inside a function)."""
    files = sorted((PACKAGE / folder).glob("*.py")) if folder != "." else [PACKAGE / "parallel.py"]
    assert files
    for path in files:
        package = ".".join(("cardiolab", *path.parent.relative_to(PACKAGE).parts))
        bad = sorted(
            name
            for name in _imports(path.read_text(), package)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_layering_check_sees_relative_imports_inside_functions():
    source = "import numpy\ndef f():\n    from ..pipeline import features_table\n"
    found = _imports(source, "cardiolab.stats")
    assert {"numpy", "cardiolab.pipeline", "cardiolab.pipeline.features_table"} <= found
    assert "cardiolab.labels" in _imports("from .. import labels", "cardiolab.stats")
