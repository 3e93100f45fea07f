"""Where cardiolab's batch work runs: this process or a dask cluster, one progress bar.

Processing a campaign (:func:`cardiolab.pipeline.process_campaign`), fitting every
feature's models (:func:`cardiolab.stats.fit_all`) and simulating power
(:func:`cardiolab.stats.power_curve`) all run many independent tasks. They run them
through :func:`run_tasks`: in this process, one task after the other
(``client="sync"``), or on dask, where a shared input (a features table) is sent to
the workers once and results are gathered as they complete
(``distributed.as_completed``), with one ``tqdm`` progress bar either way.
:func:`dask_client` gives the client: an existing one, one connected to a scheduler
(``scheduler=`` or ``$CARDIOLAB_SCHEDULER``), or a ``distributed.LocalCluster`` sized to
the machine.

A LocalCluster's workers are processes where that is safe and threads of this process
where it is not: see :func:`spawn_rerun_reason`.

This module sits below the pipeline and the stats in the package's flow: it imports
neither, so both can use it.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import CardiolabError

log = logging.getLogger("cardiolab")

__all__ = ["CONNECT_TIMEOUT_S", "SYNC", "TaskRun", "dask_client", "run_tasks", "spawn_rerun_reason"]

#: The ``client`` value that runs the tasks in this process, one after the other.
SYNC = "sync"


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def spawn_rerun_reason(main=None) -> str | None:
    """Why worker processes started from this program would run its top-level code again.

    Dask starts a LocalCluster's worker processes with the ``spawn`` method
    (``distributed.worker.multiprocessing-method``), which, like Python's
    :mod:`multiprocessing`, re-imports the main module in every new process: by name
    when it was run with ``python -m`` (``__main__.__spec__``), else by the path in
    ``__main__.__file__`` (``multiprocessing.spawn.get_preparation_data``). A script
    whose calls are not under ``if __name__ == "__main__":`` then runs again in every
    worker, starts a cluster of its own there, and the worker fails ("Nanny failed to
    start"); a script read from standard input (``python - < script.py``) has a path
    (``<stdin>``) that no worker can read.

    The check is the one the re-import needs: the main module is looked up as spawn
    will look it up; without a name or a file (``python -c``, the interactive
    interpreter, a Jupyter kernel's namespace) nothing is re-run; with a file, its
    source is parsed (:mod:`ast`, not run) for a top-level ``if __name__ ==
    "__main__":`` block. A guard is the convention the :mod:`multiprocessing` docs
    ask for ("Safe importing of main module"); a script that has one but still calls
    the pipeline above it is not caught.

    Parameters
    ----------
    main : module, optional
        The main module (default ``sys.modules["__main__"]``).

    Returns
    -------
    str or None
        ``None`` where worker processes are safe (also when dask is configured to
        ``fork``); otherwise one sentence naming the script and why.

    Examples
    --------
    >>> import types
    >>> spawn_rerun_reason(types.ModuleType("__main__")) is None  # python -c
    True
    """
    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return None
    main = sys.modules["__main__"] if main is None else main
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        path = getattr(main.__spec__, "origin", None)
        what = f"module {name} ({path})"
    else:
        path = getattr(main, "__file__", None)
        if path is None:
            return None
        what = str(path)
    try:
        source = Path(path).read_bytes() if path else None
    except OSError:
        source = None
    if source is None:
        return (
            f"{what} is not a file a worker process can read again (a script from standard input)"
        )
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return f'{what} could not be parsed to look for an `if __name__ == "__main__":` block'
    if any(_is_main_guard(node) for node in tree.body):
        return None
    return (
        f'{what} has no `if __name__ == "__main__":` block, so every worker process '
        "would run it again"
    )


#: Seconds to wait for a dask scheduler to answer before saying it cannot be reached
#: (distributed's own default is 30 s of retries). A slower link can pass its own
#: ``client=distributed.Client(address, timeout=...)``.
CONNECT_TIMEOUT_S = 5


def _connect(address: str, source: str):
    """A client of the scheduler at ``address``, or one line saying it cannot be reached."""
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CardiolabError(
            f"cannot reach the dask scheduler at {address} (given by {source}) within "
            f"{CONNECT_TIMEOUT_S} s: {reason}; start one (`dask scheduler`) or check the "
            "address, or leave it unset to run on this machine"
        ) from None


def _client(client, scheduler, workers):
    """An existing client, one connected to ``scheduler``, or a new LocalCluster.

    Returns the client and whether the caller owns it (and must close it); use
    :func:`dask_client` to have that done.
    """
    if client is not None:
        return client, False
    import dask
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get("CARDIOLAB_SCHEDULER")
    if address:
        return _connect(
            address, "--scheduler / scheduler=" if scheduler else "$CARDIOLAB_SCHEDULER"
        ), True
    n = workers or os.cpu_count() or 1
    unsafe = spawn_rerun_reason()
    if unsafe:
        log.warning(
            "%s: dask workers run as threads of this process; for worker processes put "
            'the script\'s calls under `if __name__ == "__main__":`, or pass scheduler= '
            "(--scheduler) the address of a dask scheduler",
            unsafe,
        )
    if log.getEffectiveLevel() > logging.INFO:
        # the cluster's start/stop chatter only when cardiolab itself logs at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    with warnings.catch_warnings(), dask.config.set(_worker_environ()):
        warnings.simplefilter("ignore")
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=not unsafe,
            # no dashboard; its HTTP server (health, metrics) on loopback, any port
            dashboard_address="127.0.0.1:0",
            # worker processes log nothing below CRITICAL: what fails in a task reaches
            # the failure report or the caller, and at shutdown a worker's heartbeat to
            # the closing scheduler logged a traceback on busy machines
            silence_logs=logging.CRITICAL,
        )
    return Client(cluster), True


#: distributed's default for its worker processes' environment (``MALLOC_TRIM_THRESHOLD_``
#: in ``distributed.nanny.pre-spawn-environ``)
_DISTRIBUTED_TRIM_DEFAULT = 65536


def _worker_environ() -> dict:
    """dask config for a LocalCluster's worker processes: distributed's default
    ``MALLOC_TRIM_THRESHOLD_=65536`` unset (``None``: distributed's documented way to
    unset a variable of ``distributed.nanny.pre-spawn-environ``).

    Setting that variable turns off glibc's adaptive mmap threshold: every array above
    128 KiB is then mapped and unmapped afresh, and a 10-minute demo session took 0.40 s
    instead of 0.26 s in a worker (measured in one process with and without the
    variable). A value the user configured is kept.
    """
    import dask
    import distributed  # noqa: F401 (its import sets its config defaults)

    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    if dask.config.get(key, default=None) == _DISTRIBUTED_TRIM_DEFAULT:
        return {key: None}
    return {}


@contextlib.contextmanager
def dask_client(client=None, scheduler: str | None = None, workers: int | None = None):
    """A dask client for the duration of a ``with`` block.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is and left open.
    scheduler : str, optional
        Without ``client``: the address of an existing dask scheduler to connect to
        (default: ``$CARDIOLAB_SCHEDULER`` if set).
    workers : int, optional
        Without ``client`` or scheduler: the workers of a new ``LocalCluster``, each a
        single-threaded process (default: the machine's cores), or a thread of this
        process where worker processes would run the main script again
        (:func:`spawn_rerun_reason`; logged in one line at WARNING).

    Yields
    ------
    distributed.Client
        What this opened (a client, a cluster) is closed when the block ends.

    Raises
    ------
    CardiolabError
        The scheduler does not answer within :data:`CONNECT_TIMEOUT_S` (or its address
        is not one): one line naming the address and where it came from.

    Notes
    -----
    Threads, not this process alone (``client="sync"``), for the unsafe case: the
    same results, no worker start-up, and the fits (statsmodels' linear algebra) and
    numba kernels release the GIL. Measured on a 16-session campaign of 2-minute
    sessions (4 subjects), 2 workers, a 2-core machine shared with other jobs (load
    average 8 to 15, so the figures are noisy): processing 34 s with threads (range
    33-71 s over 3 runs), 34 s with processes (33-40 s), 30 s in this process; cluster
    start 2-4 s with threads against 18-22 s with processes; ``fit_all`` of 4
    features 2.5-4.3 s with threads, 3.2-5.1 s with processes, 3.3-5.6 s in this
    process; ``power_curve`` (40 simulations) 3.2-7.9 s, 3.2-8.0 s and 8.0-11.1 s.

    Examples
    --------
    >>> with dask_client(workers=2) as client:  # doctest: +SKIP
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    dask, own = _client(client, scheduler, workers)
    try:
        yield dask
    finally:
        if own:
            cluster = getattr(dask, "cluster", None)
            dask.close()
            if cluster is not None:
                cluster.close()


@dataclass(frozen=True)
class TaskRun:
    """What :func:`run_tasks` did.

    Attributes
    ----------
    results : list
        One result per task, in the order the tasks completed (on dask, not the order
        they were given; in this process, the same).
    n_workers : int
        Workers that ran them (1 in this process).
    seconds : float
        Wall-clock time (s), the cluster's start and stop included.
    """

    results: list
    n_workers: int
    seconds: float


def _run_batch(function, shared, batch: list) -> list:
    """Several tasks in one dask task (fewer round trips for short tasks)."""
    return [function(shared, task) for task in batch]


def _batches(tasks: list, batches_per_worker: int | None, n_workers: int) -> list[list]:
    if not batches_per_worker:
        return [[task] for task in tasks]
    size = max(1, len(tasks) // (batches_per_worker * n_workers))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def run_tasks(
    function: Callable,
    tasks: Iterable,
    *,
    shared=None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    desc: str | None = None,
    unit: str = "task",
    size: Callable | None = None,
    batches_per_worker: int | None = None,
) -> TaskRun:
    """Run ``function(shared, task)`` for every task, here or on dask, with a progress bar.

    Parameters
    ----------
    function : callable
        ``function(shared, task) -> result``; on dask it must be picklable (a
        module-level function, or a ``functools.partial`` of one).
    tasks : iterable
        One item per call.
    shared : object, optional
        The input every task needs (a features table): on dask, scattered to every
        worker once (``Client.scatter(..., broadcast=True)``) instead of being sent
        with each task.
    client : distributed.Client or "sync", optional
        ``"sync"`` (:data:`SYNC`): in this process, one task after the other. A
        client: on its cluster. ``None``: on a cluster of :func:`dask_client`
        (``scheduler``, ``$CARDIOLAB_SCHEDULER``, or a ``LocalCluster`` of
        ``workers`` processes, threads where processes would re-run an unguarded
        script: :func:`spawn_rerun_reason`), closed at the end.
    scheduler : str, optional
        Address of an existing dask scheduler (with ``client=None``).
    workers : int, optional
        Workers of the LocalCluster (default: the machine's cores).
    progress : bool
        Show a ``tqdm`` progress bar.
    desc, unit : str
        The bar's label and unit (``"processing sessions"``, ``"session"``).
    size : callable, optional
        ``size(task)``: how many units a task counts for on the bar (default 1).
    batches_per_worker : int, optional
        On dask, group consecutive tasks into about this many dask tasks per worker
        (each runs its group in turn), for many short tasks whose scheduling would
        cost more than their work. Default: one dask task per task.

    Returns
    -------
    TaskRun
        ``.results`` in completion order (callers that need the given order sort
        them), ``.n_workers``, ``.seconds``.

    Raises
    ------
    CardiolabError
        The scheduler cannot be reached (:func:`dask_client`).
    Exception
        The first exception a task raised (on dask, re-raised here); a caller that
        wants a batch to go on past a failing task catches it inside ``function``.

    Examples
    --------
    >>> from operator import add
    >>> run = run_tasks(add, [1, 2, 3], shared=10, client="sync", progress=False)
    >>> sorted(run.results), run.n_workers
    ([11, 12, 13], 1)
    """
    from tqdm.auto import tqdm

    tasks = list(tasks)
    weigh = size if size is not None else (lambda task: 1)
    t0 = time.perf_counter()
    results: list = []
    bar = tqdm(total=sum(weigh(task) for task in tasks), desc=desc, unit=unit, disable=not progress)
    try:
        if isinstance(client, str) and client == SYNC:
            n_workers = 1
            for task in tasks:
                results.append(function(shared, task))
                bar.update(weigh(task))
        else:
            from distributed import as_completed

            with dask_client(client, scheduler, workers) as dask:
                n_workers = len(dask.scheduler_info().get("workers", {})) or 1
                # a key of its own each run (hash=False): with the content's hash, a run
                # right after another on the same input reused the key the first run was
                # releasing, and its tasks were cancelled ("lost dependencies")
                remote = (
                    dask.scatter([shared], broadcast=True, hash=False)[0]
                    if shared is not None
                    else None
                )
                batches = _batches(tasks, batches_per_worker, n_workers)
                futures = {
                    dask.submit(_run_batch, function, remote, batch, pure=False): batch
                    for batch in batches
                }
                for future in as_completed(futures):
                    results.extend(future.result())
                    bar.update(sum(weigh(task) for task in futures[future]))
    finally:
        bar.close()
    return TaskRun(results, n_workers, time.perf_counter() - t0)
