"""A real dask cluster on loopback (``dask scheduler`` + two ``dask worker`` processes),
and a scheduler that cannot be reached: one line naming the address, within 10 s."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from processes import checkout_env

from cardiolab.cli import main
from cardiolab.errors import CardiolabError
from cardiolab.parallel import run_tasks

SCHEDULE = ["L-30", "R+1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A processed 3-subject x 2-session campaign of 1-minute sessions (in this process,
    client="sync"), its features table and the features' fits: the local reference."""
    from cardiolab.pipeline import features_table, process_campaign
    from cardiolab.simulate import simulate_campaign
    from cardiolab.stats import fit_all

    path = tmp_path_factory.mktemp("cluster") / "sim"
    simulate_campaign(
        path, n_subjects=3, schedule=SCHEDULE, duration_min=1, seed=11, workers=1, progress=False
    )
    catalog = path / "data_catalog.yaml"
    report = process_campaign(catalog, client="sync", progress=False)
    assert len(report.failures) == 0
    table = features_table(catalog)
    return catalog, table, fit_all(table, features=["hr"], client="sync", progress=False)


def _closed_port() -> str:
    """The address of a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def _one(shared, task):
    return task


def _assert_one_line_naming(message: str, address: str, source: str) -> None:
    assert address in message and source in message, message
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message


def test_unreachable_scheduler_from_python_is_one_line_within_10_s(monkeypatch):
    address = _closed_port()
    monkeypatch.delenv("CARDIOLAB_SCHEDULER", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(CardiolabError) as err:
        run_tasks(_one, [1], scheduler=address, progress=False)
    assert time.perf_counter() - t0 < 10
    _assert_one_line_naming(str(err.value), address, "scheduler=")
    monkeypatch.setenv("CARDIOLAB_SCHEDULER", address)
    t0 = time.perf_counter()
    with pytest.raises(CardiolabError) as err:
        run_tasks(_one, [1], progress=False)
    assert time.perf_counter() - t0 < 10
    _assert_one_line_naming(str(err.value), address, "$CARDIOLAB_SCHEDULER")
    # an address that is not one is said the same way
    with pytest.raises(CardiolabError, match="nonsense://host"):
        run_tasks(_one, [1], scheduler="nonsense://host", progress=False)


@pytest.mark.parametrize("command", ["process", "fit"])
def test_unreachable_scheduler_from_the_command_line(tiny, command, capsys, monkeypatch):
    catalog, _, _ = tiny
    address = _closed_port()
    monkeypatch.delenv("CARDIOLAB_SCHEDULER", raising=False)
    t0 = time.perf_counter()
    assert main([command, str(catalog), "--scheduler", address, "--quiet"]) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err
    assert err.startswith(f"cardiolab {command}: error: cannot reach the dask scheduler")
    _assert_one_line_naming(err, address, "scheduler")


@pytest.fixture(scope="module")
def loopback_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes (one single-threaded worker
    each) on 127.0.0.1, the scheduler on a port the system picks; stopped at the end
    whatever happens."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = checkout_env()  # the workers import this checkout's package, as the tests do
    started: list[subprocess.Popen] = []
    logs = []

    def start(*args: str) -> subprocess.Popen:
        logs.append((folder / f"{args[0]}-{len(started)}.log").open("w"))
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logs[-1],
            start_new_session=True,
        )
        started.append(process)
        return process

    try:
        start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        )
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if started[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dask scheduler did not start: {_logs(folder)}")
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            start(
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--local-directory",
                str(folder),
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            try:
                client.wait_for_workers(2, timeout=180)
            except TimeoutError:
                pytest.fail(f"2 dask workers did not join: {_logs(folder)}")
        yield address
    finally:
        for process in reversed(started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
        for log in logs:
            log.close()


def _logs(folder: Path) -> str:
    return " | ".join(f"{p.name}: {p.read_text()[-800:]}" for p in sorted(folder.glob("*.log")))


def _assert_tables_close(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same columns and rows in the same order; numbers within 1e-9, the rest equal."""
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want) > 0, what
    for column in want.columns:
        a, b = got[column], want[column]
        if pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(b):
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=1e-12, err_msg=column
            )
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), f"{what} {column}"


@pytest.mark.slow
def test_loopback_cluster_gives_the_local_results(tiny, loopback_cluster, monkeypatch, capsys):
    from cardiolab.pipeline import features_table, process_campaign
    from cardiolab.stats import fit_all

    catalog, local_table, local_fit = tiny
    monkeypatch.delenv("CARDIOLAB_SCHEDULER", raising=False)
    report = process_campaign(catalog, scheduler=loopback_cluster, force=True, progress=False)
    assert report.n_workers == 2
    assert len(report.failures) == 0
    assert f"{3 * len(SCHEDULE)} processed, 0 unchanged (cached), 0 failed" in repr(report)
    table = features_table(catalog)
    _assert_tables_close(table, local_table, "features")
    assert np.isfinite(table["hr"].astype(float)).sum() >= 3 * len(SCHEDULE)
    # the command line on the same cluster (the sessions are now cached)
    assert main(["process", str(catalog), "--scheduler", loopback_cluster, "--quiet"]) == 0
    assert (
        f"0 processed, {3 * len(SCHEDULE)} unchanged (cached), 0 failed" in capsys.readouterr().out
    )
    # $CARDIOLAB_SCHEDULER is the same cluster
    monkeypatch.setenv("CARDIOLAB_SCHEDULER", loopback_cluster)
    fit = fit_all(table, features=["hr"], progress=False)
    _assert_tables_close(fit, local_fit, "fit_all")
