"""The processing pipeline end to end on simulated campaigns with known truth."""

import json
import os
import shutil
import threading

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cardiolab.catalog import open_catalog
from cardiolab.pipeline import (
    campaign_status,
    features_dataset,
    features_table,
    process_campaign,
    read_session_results,
)
from cardiolab.signals.beats import beat_table


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A 2-subject campaign of 10-minute sessions, processed in this process."""
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("pipe") / "c"
    truth = simulate_campaign(
        path,
        n_subjects=2,
        schedule=["L-30", "R+1"],
        duration_min=10,
        seed=11,
        workers=1,
        progress=False,
    )
    report = process_campaign(path / "data_catalog.yaml", client="sync", progress=False)
    return path, truth, report


def test_every_session_processed_with_provenance(processed):
    path, truth, report = processed
    assert report.n_done == 4 and len(report.failures) == 0, report.sessions
    derived = path / "derived.zarr"
    beats = read_session_results(derived, "S01", "R+1", "beats")
    for key in ("cardiolab_version", "parameters", "parameters_hash", "raw_input_hash"):
        assert beats.attrs[key]
    assert beats["sbp"].attrs["units"] == "mmHg"
    assert (
        beats.sizes["beat"]
        == report.sessions.set_index(["subject", "session"]).loc[("S01", "R+1"), "n_beats"]
    )
    group = derived / "S01" / "R+1"
    assert not list(derived.rglob(".*tmp*"))  # nothing left aside
    # few objects per session: 3 tables under one prefix, the manifest, the run record
    files = [p for p in group.rglob("*") if p.is_file()]
    files += [p for p in (derived / "_runs" / "S01").glob("R+1*") if p.is_file()]
    assert len(files) == 5, files
    assert not list((derived / "_leases").rglob("*.json"))  # every lease released


def test_the_beat_table_reads_with_pandas_alone(processed):
    """The stored beat table is a Parquet object that pandas reads as it is."""
    path, truth, report = processed
    group = path / "derived.zarr" / "S01" / "L-30"
    manifest = json.loads((group / "session.json").read_text())
    table = pd.read_parquet(group / manifest["tables"]["beats"])
    beats = read_session_results(path / "derived.zarr", "S01", "L-30", "beats")
    np.testing.assert_array_equal(table["sbp"].to_numpy(), beats["sbp"].values)
    assert table["valid"].dtype == bool and len(table) == beats.sizes["beat"]


def test_second_run_recomputes_nothing(processed):
    path, truth, report = processed
    group = path / "derived.zarr" / "S01" / "L-30"
    before = (group / "session.json").stat().st_mtime_ns
    again = process_campaign(path / "data_catalog.yaml", client="sync", progress=False)
    assert again.n_cached == 4 and again.n_done == 0
    assert (group / "session.json").stat().st_mtime_ns == before


def test_features_match_truth(processed):
    """Per-epoch HR within 1 bpm, SBP/DBP within 2 mmHg and BRS within 20 % of the
    simulator's truth (supine and stand epochs)."""
    path, truth, report = processed
    table = features_table(path / "data_catalog.yaml")
    assert set(table["epoch"]) >= {"supine", "stand", "stand-supine"}
    assert {"subject", "session", "phase", "day", "hr", "sbp", "brs"} <= set(table.columns)
    rows = table[table["epoch"].isin(["supine", "stand"])].set_index(
        ["subject", "session", "epoch"]
    )
    real = truth.realised.loc[rows.index]
    np.testing.assert_allclose(rows["hr"], real["hr"], atol=1.0)
    np.testing.assert_allclose(rows["sbp"], real["sbp"], atol=2.0)
    np.testing.assert_allclose(rows["dbp"], real["dbp"], atol=2.0)
    sup = rows.xs("supine", level="epoch")
    true_brs = truth.sessions.xs("supine", level="epoch").loc[sup.index, "brs"]
    rel = np.abs(sup["brs"] / true_brs - 1)
    assert rel.max() <= 0.20, rel
    ds = features_dataset(path / "data_catalog.yaml")
    assert ds["hr"].attrs["units"] == "bpm"


def test_features_table_carries_the_simulated_measurements(processed):
    """The simulator's measurement table joins the processed features: one ``session``
    row per session with the written values and units, next to the recorded epochs."""
    path, truth, report = processed
    table = features_table(path / "data_catalog.yaml")
    assert table.attrs["units"]["carotid_imt"] == "mm"
    assert table.attrs["units"]["jugular_vein_area"] == "cm2"
    assert table.attrs["units"]["hr"] == "bpm"
    rows = table[table["epoch"] == "session"].set_index(["subject", "session", "epoch"])
    assert len(rows) == 4 and rows["hr"].isna().all()
    written = truth.realised.loc[rows.index]
    for q in ("carotid_imt", "jugular_vein_area"):
        np.testing.assert_allclose(rows[q], written[q], rtol=0, atol=1e-12)
        assert table.loc[table["epoch"] != "session", q].isna().all()
    assert list(table.loc[table["subject"] == "S01", "epoch"]) == [
        "supine", "stand", "stand-supine", "session"
    ] * 2  # fmt: skip


def test_beat_pressures_against_truth(processed):
    """Per-beat SBP and DBP within 2 mmHg RMS of the truth (valid beats)."""
    path, truth, report = processed
    cat = open_catalog(path / "data_catalog.yaml")
    for subject, session in [("S01", "L-30"), ("S02", "R+1")]:
        beats = beat_table(cat.open_session(subject, session))
        ref = truth.beats(subject, session)
        k = np.searchsorted(ref["t"].values, beats["t"].values)
        k = np.clip(k, 1, ref.sizes["beat"] - 1)
        left = ref["t"].values[k - 1]
        near = np.where(
            np.abs(beats["t"].values - left) < np.abs(ref["t"].values[k] - beats["t"].values),
            k - 1,
            k,
        )
        close = np.abs(ref["t"].values[near] - beats["t"].values) < 0.05
        ok = close & beats["abp_valid"].values & ref["abp_valid"].values[near]
        for var in ("sbp", "dbp"):
            err = beats[var].values[ok] - ref[var].values[near][ok]
            assert np.sqrt(np.mean(err**2)) <= 2.0, (subject, session, var)


def test_a_failing_session_is_reported_and_the_rest_finish(processed, tmp_path):
    path, truth, report = processed
    work = tmp_path / "c"
    shutil.copytree(path, work, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    # break one session: its ECG group disappears
    shutil.rmtree(work / "campaign.zarr" / "S02" / "L-30" / "ecg")
    import zarr

    zarr.consolidate_metadata(str(work / "campaign.zarr"))
    rep = process_campaign(work / "data_catalog.yaml", client="sync", progress=False)
    assert rep.n_done == 3
    fail = rep.failures
    assert list(fail["subject"]) == ["S02"] and list(fail["session"]) == ["L-30"]
    assert fail["stage"].iloc[0] in ("open", "beats")
    assert "ecg" in fail["error"].iloc[0].lower()
    # the failure stays visible after the run (Campaign page), the rest is processed
    status = campaign_status(work / "data_catalog.yaml").set_index(["subject", "session"])
    assert status.loc[("S02", "L-30"), "status"] == "failed"
    assert "ecg" in status.loc[("S02", "L-30"), "error"].lower()
    ok = status.drop(index=("S02", "L-30"))
    assert (ok["status"] == "processed").all() and (ok["n_beats"] > 200).all()
    assert ok["valid_fraction"].between(0.9, 1.0).all()


def _with_an_old_derived_store(path, work):
    """A copy of the campaign whose derived folder is an older cardiolab's zarr store."""
    shutil.copytree(path, work, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    old = work / "derived.zarr"
    old.mkdir()
    (old / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    return old


def test_an_old_derived_store_is_refused_once_before_any_session(processed, tmp_path):
    from cardiolab.errors import CardiolabError

    path, truth, report = processed
    old = _with_an_old_derived_store(path, tmp_path / "c")
    with pytest.raises(CardiolabError, match="older cardiolab") as info:
        process_campaign(tmp_path / "c" / "data_catalog.yaml", client="sync", progress=False)
    assert str(old) in str(info.value) and "--force" in str(info.value)
    assert sorted(p.name for p in old.iterdir()) == ["zarr.json"]  # nothing written


def test_the_demo_rebuilds_its_own_old_derived_store(processed, tmp_path):
    from cardiolab.demo import demo_catalog

    path, truth, report = processed
    _with_an_old_derived_store(path, tmp_path / "c")
    catalog = demo_catalog(tmp_path / "c", workers=0, progress=False)
    status = campaign_status(catalog)
    assert (status["status"] == "processed").all() and len(status) == report.n_done

    # the README's `cardiolab demo` does the same
    from cardiolab.cli import main

    _with_an_old_derived_store(path, tmp_path / "d")
    args = ["demo", "--path", str(tmp_path / "d"), "--workers", "0", "--no-fit", "--no-serve"]
    args.append("--quiet")
    assert main(args) == 0
    status = campaign_status(tmp_path / "d" / "data_catalog.yaml")
    assert (status["status"] == "processed").all() and len(status) == report.n_done


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 cores for a 2-worker cluster")
def test_distributed_cluster_two_workers(processed):
    path, truth, report = processed
    rep = process_campaign(
        path / "data_catalog.yaml",
        workers=2,
        force=True,
        progress=False,
        sessions=[("S01", "L-30"), ("S02", "R+1")],
    )
    assert rep.n_workers == 2 and rep.n_done == 2


def test_pipeline_opens_sessions_without_a_time_index(processed):
    """The pipeline's open (indexes=False) keeps time lazy, yet gives the same beats and
    a session that passes the data model's checks."""
    from cardiolab.catalog import open_catalog

    path, truth, report = processed
    cat = open_catalog(path / "data_catalog.yaml")
    lazy = cat.open_session("S01", "L-30", indexes=False)
    ecg = lazy["ecg"].to_dataset(inherit=False)
    assert "time" not in ecg.xindexes  # no pandas index built
    assert isinstance(ecg["time"].data, da.Array)  # the coordinate is not loaded
    indexed = cat.open_session("S01", "L-30")
    assert "time" in indexed["ecg"].to_dataset(inherit=False).xindexes
    a, b = beat_table(lazy), beat_table(indexed)
    xr.testing.assert_identical(a, b)


def test_two_runs_at_once_compute_each_session_once(processed, tmp_path):
    """Two process_campaign runs on one catalog at the same time (threads): every
    session is computed by one of them; the other skips it (another run holds its
    lease) or finds it done; the run records keep every session."""
    path, truth, report = processed
    work = tmp_path / "c"
    shutil.copytree(path, work, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    catalog = work / "data_catalog.yaml"
    reports = [None, None]
    start = threading.Barrier(2)

    def run(i):
        start.wait()
        reports[i] = process_campaign(catalog, client="sync", progress=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = pd.concat([r.sessions for r in reports], ignore_index=True)
    done = both[both["status"] == "done"]
    assert sorted(zip(done["subject"], done["session"], strict=True)) == [
        ("S01", "L-30"), ("S01", "R+1"), ("S02", "L-30"), ("S02", "R+1")
    ]  # fmt: skip
    rest = both[both["status"] != "done"]
    assert set(rest["status"]) <= {"skipped", "cached"} and len(rest) == 4
    skipped = rest[rest["status"] == "skipped"]
    assert skipped["error"].str.contains("another run holds it").all()
    status = campaign_status(catalog)
    assert (status["status"] == "processed").all()
    features = features_table(path / "data_catalog.yaml").set_index(["subject", "session", "epoch"])
    again = features_table(catalog).set_index(["subject", "session", "epoch"])
    np.testing.assert_allclose(again["hr"], features.loc[again.index, "hr"], rtol=1e-12)


CLI = "import sys; from cardiolab.cli import main; sys.exit(main(sys.argv[1:]))"


def test_two_cli_processes_at_once_compute_each_session_once(processed, tmp_path):
    """Two ``cardiolab process`` commands (two processes) on one catalog at the same
    time: between them every session is computed once; a session the other process
    holds is reported as skipped (or found done), never computed twice or lost."""
    import re
    import subprocess
    import sys

    from processes import checkout_env

    path, truth, report = processed
    work = tmp_path / "c"
    shutil.copytree(path, work, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    command = [sys.executable, "-c", CLI, "process", str(work / "data_catalog.yaml")]
    runs = [
        subprocess.Popen(
            [*command, "--workers", "0", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=checkout_env(),
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    counts = []
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-2000:]
        found = re.search(r"(\d+) processed, (\d+) unchanged \(cached\), (\d+) failed", out)
        assert found, out
        skipped = re.search(r"(\d+) skipped \(held by another run\)", out)
        counts.append([int(g) for g in found.groups()] + [int(skipped[1]) if skipped else 0])
    done, cached, failed, skipped = (sum(c[i] for c in counts) for i in range(4))
    assert (done, failed) == (4, 0), outputs  # each session computed exactly once
    assert cached + skipped == 4, outputs  # the other process skipped it or found it done
    status = campaign_status(work / "data_catalog.yaml")
    assert (status["status"] == "processed").all(), status
    from cardiolab.derived import derived_store

    records = derived_store(open_catalog(work / "data_catalog.yaml")).runs()
    assert sorted(records) == ["S01/L-30", "S01/R+1", "S02/L-30", "S02/R+1"], records
