"""The derived store (cardiolab.derived) on memory:// and a local folder: tables round
trip exactly, a session is a few objects that pandas reads without cardiolab, a
publication is atomic even under kill -9, run records and review events are never
lost, leases keep two runs from computing a session twice."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cardiolab.derived import (
    SESSION_TABLES,
    STORE_FORMAT,
    DerivedStore,
    arrow_to_dataset,
    dataset_to_arrow,
)
from cardiolab.errors import CardiolabError


def _memory_url():
    return f"memory://derived-{uuid.uuid4().hex}/store"


def _tables(n_beats=50, version=0.0, seed=0):
    """A small beat table (one variable on beat x vessel), features and responses."""
    rng = np.random.default_rng(seed)
    beats = xr.Dataset(
        {
            "t": ("beat", np.cumsum(rng.uniform(0.7, 1.1, n_beats)), {"units": "s"}),
            "rr": ("beat", rng.normal(900, 40, n_beats), {"units": "ms", "long_name": "RR"}),
            "valid": ("beat", rng.random(n_beats) > 0.1),
            "rr_flag": ("beat", rng.integers(0, 3, n_beats).astype(np.int8)),
            "r_sample": ("beat", np.arange(n_beats, dtype=np.int64) * 500),
            "epoch": ("beat", np.asarray(["supine", "stand"] * (n_beats // 2), dtype=object)),
            "psv": (("beat", "vessel"), rng.normal(60, 5, (n_beats, 2)), {"units": "cm/s"}),
            "version": ("beat", np.full(n_beats, version)),
        },
        coords={"vessel": np.asarray(["femoral", "mca"], dtype=object)},
        attrs={"subject": "S01", "n_beats": n_beats, "day": -30.0, "parameters": '{"a": 1}'},
    )
    epochs = ["supine", "stand", "stand-supine"]
    features = xr.Dataset(
        {
            "hr": ("epoch", [60.0, 72.0, 12.0], {"units": "bpm", "feature": "heart_rate"}),
            "brs": ("epoch", [14.0, np.nan, np.nan], {"units": "ms/mmHg"}),
            "version": ("epoch", np.full(3, version)),
        },
        coords={"epoch": np.asarray(epochs, dtype=object)},
        attrs={"challenges": "[]", "review_events": 0},
    )
    responses = xr.Dataset(
        {"hr": ("response", [12.0, 20.0], {"units": "bpm"})},
        coords={
            "response": np.asarray(["stand-supine", "stand-supine:initial"], dtype=object),
            "window": ("response", np.asarray(["", "initial"], dtype=object)),
        },
    )
    return {"beats": beats, "features": features, "responses": responses}


def _assert_same(a: xr.Dataset, b: xr.Dataset):
    assert set(a.variables) == set(b.variables)
    assert a.attrs == b.attrs
    for name, var in a.variables.items():
        other = b.variables[name]
        assert var.dims == other.dims and var.attrs == other.attrs, name
        if var.dtype.kind in "OUT":
            assert [str(x) for x in var.values.ravel()] == [str(x) for x in other.values.ravel()]
        else:
            assert var.dtype == other.dtype, name
            np.testing.assert_array_equal(var.values, other.values, err_msg=name)


def test_tables_round_trip_exactly():
    for ds in _tables().values():
        _assert_same(ds, arrow_to_dataset(dataset_to_arrow(ds)))


def test_session_round_trip_on_memory():
    store = DerivedStore(_memory_url())
    tables = _tables()
    attrs = {"n_beats": 50, "raw_input_hash": "abc", "day": -30.0}
    assert store.read_session("S01", "L-30") is None and store.sessions() == []
    store.write_session("S01", "L-30", tables, attrs)
    for name in SESSION_TABLES:
        _assert_same(tables[name], store.read_session("S01", "L-30", name))
    assert store.session_attrs("S01", "L-30") == attrs
    manifest = store.session_manifest("S01", "L-30")
    assert manifest["store_format"] == STORE_FORMAT
    expected = float(np.mean(tables["beats"]["valid"].values))
    assert manifest["summary"]["valid_fraction"] == pytest.approx(expected, abs=1e-15)
    assert store.sessions() == [("S01", "L-30")]
    # a session without challenges has no responses table
    store.write_session("S02", "R+1", {**tables, "responses": None}, attrs)
    assert store.read_session("S02", "R+1", "responses") is None
    assert store.sessions() == [("S01", "L-30"), ("S02", "R+1")]


def test_a_session_is_few_objects_written_once_each(tmp_path):
    """Objects written per session (tables, manifest, run record, lease), counted on
    memory:// by wrapping the file system's writes: at most 12 (here 6)."""
    store = DerivedStore(_memory_url())
    store.write_session("S00", "L-60", _tables(), {})  # the store's marker: once per store
    written = []
    original = store.fs._open  # every write of the memory file system opens a file

    def spy(path, mode="rb", *args, **kwargs):
        if "w" in mode or "x" in mode:
            written.append(path)
        return original(path, mode, *args, **kwargs)

    store.fs._open = spy
    try:
        lease = store.acquire_lease("S01", "L-30")
        store.write_session("S01", "L-30", _tables(), {"n_beats": 50})
        store.release_lease(lease)
        store.record_run(
            pd.DataFrame([dict(subject="S01", session="L-30", status="done", stage="", error="")])
        )
    finally:
        del store.fs._open
    assert len(written) == 6 and len(set(written)) == 6, written
    left = store.fs.find(store.root)
    mine = [p for p in left if "S01" in p]
    assert len(mine) == 5, mine  # 3 tables, manifest, run record; the lease is gone


def test_pandas_and_pyarrow_read_the_tables_without_cardiolab(tmp_path):
    store = DerivedStore(tmp_path / "derived")
    tables = _tables()
    store.write_session("S01", "L-30", tables, {})
    folder = tmp_path / "derived" / "S01" / "L-30"
    manifest = json.loads((folder / "session.json").read_text())
    paths = {k: str(folder / v) for k, v in manifest["tables"].items()}
    code = textwrap.dedent(
        f"""
        import json, sys
        import pandas as pd, pyarrow.parquet as pq
        paths = {paths!r}
        beats = pd.read_parquet(paths["beats"])
        feats = pd.read_parquet(paths["features"]).set_index("epoch")
        meta = json.loads(pq.read_schema(paths["features"]).metadata[b"cardiolab"])
        units = {{v["name"]: v["attrs"].get("units") for v in meta["variables"]}}
        assert "cardiolab" not in sys.modules
        print(json.dumps({{
            "columns": list(beats.columns), "psv_mca": beats["psv[mca]"].tolist(),
            "valid": beats["valid"].dtype.name, "rr_flag": beats["rr_flag"].dtype.name,
            "hr_stand": feats.loc["stand", "hr"], "hr_units": units["hr"],
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    got = json.loads(out.stdout)
    assert {"t", "rr", "valid", "epoch", "psv[femoral]", "psv[mca]"} <= set(got["columns"])
    np.testing.assert_array_equal(got["psv_mca"], tables["beats"]["psv"].values[:, 1])
    assert got["valid"] == "bool" and got["rr_flag"] == "int8"
    assert got["hr_stand"] == 72.0 and got["hr_units"] == "bpm"


def test_rewrite_replaces_and_collects_old_objects(tmp_path):
    store = DerivedStore(tmp_path / "d")
    store.write_session("S01", "L-30", _tables(version=1.0), {"v": 1})
    folder = tmp_path / "d" / "S01" / "L-30"
    (folder / "v-0123456789abcdef0123456789abcdef").mkdir()  # a killed writer's prefix
    store.write_session("S01", "L-30", _tables(version=2.0), {"v": 2})
    prefixes = [p.name for p in folder.iterdir() if p.name.startswith("v-")]
    assert len(prefixes) == 1
    assert store.read_session("S01", "L-30", "beats")["version"].values[0] == 2.0
    assert not [p for p in folder.rglob(".*tmp*")]


_WRITER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_derived import _tables
from cardiolab.derived import DerivedStore
store = DerivedStore({root!r})
store.write_session("S01", "warm-up", _tables(n_beats=400), {{}})
print("ready", flush=True)
v = 0.0
while True:
    v += 1
    for label in ("L-30", "R+1"):
        store.write_session("S01", label, _tables(n_beats=400, version=v), {{"v": v}})
"""


def test_kill_9_never_leaves_half_a_session(tmp_path):
    """A writer rewriting two sessions in a loop is killed (SIGKILL) at random times:
    every published session reads back whole (all its tables from the same write)."""
    root = str(tmp_path / "derived")
    code = _WRITER.format(tests=os.path.dirname(__file__), root=root)
    rng = np.random.default_rng(3)
    store = DerivedStore(root)
    seen = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 0.8)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for label in ("L-30", "R+1"):
            attrs = store.session_attrs("S01", label)
            if attrs is None:
                continue
            beats = store.read_session("S01", label, "beats")
            feats = store.read_session("S01", label, "features")
            assert beats.sizes["beat"] == 400
            assert set(beats["version"].values) == {attrs["v"]}
            assert set(feats["version"].values) == {attrs["v"]}
            seen.add(attrs["v"])
    assert seen, "the writer never published a session"
    # the next write collects whatever the killed writers left
    store.write_session("S01", "L-30", _tables(), {})
    folder = tmp_path / "derived" / "S01" / "L-30"
    assert len([p for p in folder.iterdir() if p.name.startswith("v-")]) == 1


def test_run_records_from_concurrent_runs_all_kept():
    """40 runs at once (threads), each recording two sessions: all 80 records kept."""
    store = DerivedStore(_memory_url())

    def run(i):
        rows = [
            dict(subject=f"S{i:02d}", session=s, status="done", stage="", error="")
            for s in ("L-30", "R+1")
        ]
        DerivedStore(store.url).record_run(pd.DataFrame(rows))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, range(40)))
    runs = store.runs()
    assert len(runs) == 80 and {r["status"] for r in runs.values()} == {"done"}
    # a later failure replaces that session's record; a skipped row records nothing
    rows = pd.DataFrame(
        [
            dict(subject="S03", session="L-30", status="failed", stage="beats", error="no ECG"),
            dict(subject="S04", session="L-30", status="skipped", stage="", error="held"),
        ]
    )
    store.record_run(rows)
    runs = store.runs()
    assert runs["S03/L-30"]["status"] == "failed" and runs["S03/L-30"]["error"] == "no ECG"
    assert runs["S04/L-30"]["status"] == "done" and len(runs) == 80


@pytest.mark.parametrize("where", ["memory", "local"])
def test_leases(where, tmp_path):
    store = DerivedStore(_memory_url() if where == "memory" else tmp_path / "d")
    first = store.acquire_lease("S01", "L-30", owner="run A")
    assert first is not None
    assert store.acquire_lease("S01", "L-30", owner="run B") is None
    assert store.lease_holder("S01", "L-30")["owner"] == "run A"
    other = store.acquire_lease("S01", "R+1")  # another session is free
    assert other is not None
    store.release_lease(first)
    assert store.lease_holder("S01", "L-30") is None
    again = store.acquire_lease("S01", "L-30", owner="run B")
    assert again is not None and again.token != first.token
    # a lease that expired (its run was killed) is taken over
    expired = store.acquire_lease("S02", "L-30", ttl=-1.0)
    assert expired is not None and store.lease_holder("S02", "L-30") is None
    assert store.acquire_lease("S02", "L-30") is not None


def test_lease_of_a_dead_process_on_this_machine_is_taken_over(tmp_path):
    """A run killed while it held a lease (its process gone) does not block the session
    until the lease expires; a living holder, or one on another machine, does."""
    import json
    import subprocess
    import sys

    from processes import checkout_env

    store = DerivedStore(tmp_path / "d")
    take = (
        "import sys; from cardiolab.derived import DerivedStore; "
        "DerivedStore(sys.argv[1]).acquire_lease(sys.argv[2], 'L-30', owner='killed run'); "
        "print('taken', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", take, str(tmp_path / "d"), "S01"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=checkout_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "taken"
        assert store.acquire_lease("S01", "L-30") is None  # its holder is alive
        holder.kill()  # kill -9: the lease is never released
        holder.wait(timeout=30)
        assert store.lease_holder("S01", "L-30")["owner"] == "killed run"
        assert store.acquire_lease("S01", "L-30", owner="next run") is not None
    finally:
        if holder.poll() is None:
            holder.kill()
    # a holder on another machine: presumed alive until its lease expires
    path = tmp_path / "d" / "_leases" / "S02" / "L-30.json"
    assert store.acquire_lease("S02", "L-30") is not None
    held = json.loads(path.read_text())
    path.write_text(json.dumps({**held, "host": "another-host", "pid": 999999999}))
    assert store.acquire_lease("S02", "L-30") is None


def test_lease_context_waits_then_names_the_holder(tmp_path):
    store = DerivedStore(tmp_path / "d")
    held = store.acquire_lease("S01", "L-30", owner="process catalog.yaml")
    with pytest.raises(CardiolabError, match="S01 L-30: another run holds.*process catalog"):
        with store.lease("S01", "L-30", wait=0.2):
            pass
    threading.Timer(0.3, store.release_lease, args=(held,)).start()
    with store.lease("S01", "L-30", wait=5.0) as lease:
        assert store.lease_holder("S01", "L-30")["token"] == lease.token
    assert store.lease_holder("S01", "L-30") is None


def test_concurrent_review_events_all_persist(tmp_path):
    """16 events appended at once (threads) on a local folder get 16 distinct ids; a
    torn temporary file left by a crash is ignored."""
    store = DerivedStore(tmp_path / "d")
    folder = tmp_path / "d" / "_annotations" / "S01" / "L-30"
    folder.mkdir(parents=True)
    (folder / ".e000001.json.tmp-crashed").write_text('{"reviewer": "x", "act')

    def one(i):
        return store.append_event("S01", "L-30", {"reviewer": f"r{i}"})

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(16)))
    assert sorted(ids) == list(range(1, 17))
    events = store.read_events("S01", "L-30")
    assert [e["event_id"] for e in events] == list(range(1, 17))
    assert sorted(e["reviewer"] for e in events) == sorted(f"r{i}" for i in range(16))


def test_results_round_trip_on_memory():
    store = DerivedStore(_memory_url())
    assert store.read_results() is None
    table = pd.DataFrame(
        {"feature": ["hr", "brs"], "estimate": [8.0, np.nan], "converged": [True, False]}
    )
    store.write_results(table, {"n_features": 2, "created": "2026-01-01T00:00:00"})
    back = store.read_results()
    pd.testing.assert_frame_equal(back, table)
    assert back.attrs == {"n_features": 2, "created": "2026-01-01T00:00:00"}


def test_an_old_zarr_store_is_a_clear_error(tmp_path):
    old = tmp_path / "derived.zarr"
    old.mkdir()
    (old / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    store = DerivedStore(old)
    with pytest.raises(CardiolabError, match=r"older cardiolab.*cardiolab process --force"):
        store.read_session("S01", "L-30")
    fs = fsspec.filesystem("memory")
    url = _memory_url()
    fs.pipe_file(url + "/cardiolab-derived.json", b'{"store_format": 99}')
    with pytest.raises(CardiolabError, match="store format 99"):
        DerivedStore(url).sessions()
