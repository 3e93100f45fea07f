"""The processing pipeline: demo campaign throughput and memory on a 24-hour session.

Usage: python benchmarks/bench_pipeline.py [--skip-24h] [--skip-s3] [--hours 24] [--profile]

1. The demo campaign (8 subjects x 10 sessions of 10 min) processed end to end
   (beats and features, written to the derived store) with 1 and with 2 dask workers:
   seconds, multiple of real time per core, parallel efficiency; objects and bytes the
   derived store holds per processed session; the same on a loopback S3 server (moto),
   raw and derived stores in a bucket (``--skip-s3`` to leave it out). With
   ``--profile``, where one session's time goes (cProfile, in this process, after a
   warm-up session).
   Targets: >= 1500x real time per core, efficiency >= 0.85, <= 12 objects per session.
2. Peak resident memory of processing one simulated 24-hour session with a 1 kHz ECG
   and 200 Hz finger pressure (beat table and features), in a fresh process.
   Target: < 1.5 GB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def demo_throughput(tmp: Path) -> tuple[Path, int, float]:
    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    path = tmp / "demo"
    t0 = time.perf_counter()
    truth = simulate_campaign(path, progress=False)
    print(f"demo campaign generated in {time.perf_counter() - t0:.1f} s")
    n_sessions = len(truth.sessions.index.droplevel("epoch").unique())
    recorded_s = n_sessions * truth.params["duration_min"] * 60.0
    catalog = path / "data_catalog.yaml"
    times, warm = {}, {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        report = process_campaign(catalog, workers=workers, force=True, progress=False)
        times[workers] = time.perf_counter() - t0
        print(
            f"{workers} worker(s), cold (cluster start + imports included): "
            f"{times[workers]:.1f} s for {n_sessions} sessions "
            f"({report.n_done} done, {len(report.failures)} failed); "
            f"{recorded_s / times[workers] / workers:.0f}x real time per core"
        )
        warm[workers] = _warm_run(catalog, workers, n_sessions, recorded_s)
    t0 = time.perf_counter()
    report = process_campaign(catalog, workers=2, progress=False)
    print(
        f"second run, unchanged inputs: {time.perf_counter() - t0:.1f} s "
        f"({report.n_cached} sessions cached)"
    )
    objects_per_session(catalog)
    print(
        f"parallel efficiency (2 workers), cold: {times[1] / (2 * times[2]):.2f}; "
        f"warm cluster: {warm[1] / (2 * warm[2]):.2f} (target >= 0.85)"
    )
    return path, n_sessions, recorded_s


def s3_throughput(path: Path, n_sessions: int, recorded_s: float) -> None:
    """The demo campaign processed from and into a loopback S3 server (moto's server
    mode, in a thread of this process): raw store and catalog uploaded to a bucket, the
    derived store in the same bucket; 1 worker process, warm cluster, as above."""
    import logging
    import uuid

    import s3fs
    from moto.server import ThreadedMotoServer

    from cardiolab.catalog import open_catalog
    from cardiolab.parallel import dask_client
    from cardiolab.pipeline import process_campaign

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {
            "key": "bench",  # moto accepts any credentials
            "secret": "bench",
            "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
        }
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        bucket = f"cardiolab-bench-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        t0 = time.perf_counter()
        for name in ("data_catalog.yaml", "measurements.csv"):
            fs.put_file(str(path / name), f"{bucket}/demo/{name}")
        fs.put(str(path / "campaign.zarr"), f"{bucket}/demo/campaign.zarr", recursive=True)
        print(f"S3 (moto on {host}:{port}): demo uploaded in {time.perf_counter() - t0:.0f} s")
        cat = open_catalog(f"s3://{bucket}/demo/data_catalog.yaml", storage_options=options)
        with dask_client(workers=1) as client:
            first = [("S01", "L-60")]
            process_campaign(cat, client=client, sessions=first, force=True, progress=False)
            t0 = time.perf_counter()
            report = process_campaign(cat, client=client, force=True, progress=False)
            elapsed = time.perf_counter() - t0
        print(
            f"S3, 1 worker, warm cluster: {elapsed:.1f} s for {n_sessions} sessions "
            f"({report.n_done} done, {len(report.failures)} failed); "
            f"{recorded_s / elapsed:.0f}x real time per core"
        )
        objects_per_session(cat)
    finally:
        server.stop()


def objects_per_session(catalog) -> None:
    """Objects (and their bytes) the derived store holds per processed session: the
    session's own objects and its run record (any fsspec store)."""
    from cardiolab.catalog import Catalog, open_catalog
    from cardiolab.derived import derived_store

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    store = derived_store(cat)
    counts, sizes = [], []
    for subject, label in zip(cat.sessions["subject"], cat.sessions["session"], strict=True):
        found = store.fs.find(f"{store.root}/{subject}/{label}", detail=True)
        run = f"{store.root}/_runs/{subject}/{label}.json"
        if store.fs.exists(run):
            found[run] = store.fs.info(run)
        counts.append(len(found))
        sizes.append(sum(info["size"] for info in found.values()))
    print(
        f"derived store {store.url}: {np.mean(counts):.1f} objects per session "
        f"(max {max(counts)}; target <= 12), {np.mean(sizes) / 1024:.0f} KiB per session"
    )


def profile_session(tmp: Path, top: int = 10) -> None:
    """cProfile of one demo session processed in this process (after a warm-up one)."""
    import cProfile
    import pstats

    from cardiolab.pipeline import process_session
    from cardiolab.simulate import simulate_campaign

    path = tmp / "profile"
    simulate_campaign(path, n_subjects=1, schedule=["L-60", "L-30"], progress=False, workers=1)
    catalog = str(path / "data_catalog.yaml")
    process_session(catalog, "S01", "L-60", force=True)  # numba compilation, imports
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    out = process_session(catalog, "S01", "L-30", force=True)
    profiler.disable()
    print(
        f"one 10-minute session in this process: {time.perf_counter() - t0:.2f} s "
        f"({out['status']}); where its time goes (cumulative, top {top}):"
    )
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    stats.print_stats(top + 8)  # the first rows are the call itself and its wrappers


def _warm_run(catalog, workers, n_sessions, recorded_s) -> float:
    """The same run on a cluster that is already up (cardiolab's own LocalCluster, as
    ``process_campaign`` starts it), its workers warmed by one session."""
    from cardiolab.parallel import dask_client
    from cardiolab.pipeline import process_campaign

    with dask_client(workers=workers) as client:
        first = [("S01", "L-60"), ("S01", "L-30")][:workers]
        process_campaign(catalog, client=client, sessions=first, force=True, progress=False)
        t0 = time.perf_counter()
        process_campaign(catalog, client=client, force=True, progress=False)
        elapsed = time.perf_counter() - t0
    print(
        f"{workers} worker(s), warm cluster: {elapsed:.1f} s; "
        f"{recorded_s / elapsed / workers:.0f}x real time per core"
    )
    return elapsed


def write_long_session(path: Path, hours: float) -> None:
    """A 24-hour ECG (1 kHz) + ABP (200 Hz) session, simulated hour by hour."""
    import pandas as pd
    import zarr

    from cardiolab import schema
    from cardiolab.encoding import zarr_encoding
    from cardiolab.simulate.effects import default_effects
    from cardiolab.simulate.session import draw_subject_traits, simulate_session

    eff = default_effects()["pre"].unstack("quantity")
    targets = pd.DataFrame([eff.loc["supine"]], index=["rest"])
    rng = np.random.default_rng(0)
    traits = draw_subject_traits(rng)
    store = path / "long.zarr"
    root = zarr.open_group(str(store), mode="w-")
    root.create_group("S01/L-10").attrs.update(
        subject="S01",
        session="L-10",
        phase="pre",
        day=-10.0,
        campaign="bench",
        protocol="holter",
        posture="supine",
    )
    block = 3600.0
    for h in range(int(np.ceil(hours))):
        groups, _, _ = simulate_session(
            targets,
            block,
            [("rest", 0.0, block)],
            traits,
            rng,
            rates={"ecg": 1000.0, "abp": 200.0},
        )
        for g in ("ecg", "abp"):
            ds = groups[g].assign_coords(time=groups[g]["time"] + h * block)
            if h == 0:
                ds.to_zarr(
                    store,
                    group=f"S01/L-10/{g}",
                    mode="w",
                    consolidated=False,
                    encoding=zarr_encoding(ds, g),
                )
            else:
                ds.to_zarr(store, group=f"S01/L-10/{g}", append_dim="time", consolidated=False)
        print(f"  simulated hour {h + 1}", flush=True)
    schema.protocol_group([("rest", 0.0, hours * 3600.0)]).to_zarr(
        store, group="S01/L-10/protocol", mode="w", consolidated=False
    )
    zarr.consolidate_metadata(str(store))
    (path / "catalog.yaml").write_text(
        "version: 1\n"
        "campaign: {name: bench, kind: spaceflight}\n"
        "derived: derived.zarr\n"
        "store: long.zarr\n"
        "protocols:\n  holter:\n    posture: supine\n"
        f"    epochs: [{{label: rest, start: 0, stop: {hours * 3600.0}}}]\n"
        "subjects: [{code: S01}]\n"
        "sessions: [{subject: S01, label: L-10}]\n"
    )


CHILD = """
import sys, time, resource
from cardiolab.pipeline import process_session
t0 = time.perf_counter()
out = process_session(sys.argv[1], "S01", "L-10", force=True)
print(out["status"], out["stage"], out["error"][:300], out["n_beats"], f"{time.perf_counter() - t0:.1f}")
"""


def long_session_memory(tmp: Path, hours: float) -> None:
    path = tmp / "long"
    path.mkdir()
    t0 = time.perf_counter()
    write_long_session(path, hours)
    print(f"{hours:g}-hour session written in {time.perf_counter() - t0:.0f} s")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(path / "catalog.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"child: {res.stdout.strip()} {res.stderr.strip()[-500:]}")
    print(
        f"peak RSS processing the {hours:g}-hour 1 kHz ECG + ABP session: "
        f"{max(peak_kb, before) / 1024**2:.2f} GB (target < 1.5 GB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-24h", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-s3", action="store_true", help="no loopback S3 run")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--profile", action="store_true", help="profile one session")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.profile:
            profile_session(tmp)
        if not args.skip_demo:
            demo = demo_throughput(tmp)
            if not args.skip_s3:
                s3_throughput(*demo)
        if not args.skip_24h:
            long_session_memory(tmp, args.hours)


if __name__ == "__main__":
    main()
