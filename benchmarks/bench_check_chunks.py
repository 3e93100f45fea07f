"""The chunk check of a session opened from a zarr store: requests and time, local and S3.

Usage: PYTHONPATH=$PWD python benchmarks/bench_check_chunks.py [--subjects 8] [--repeats 20]

:func:`cardiolab.io.native.check_zarr_chunks` runs each time a session of a zarr campaign
store is opened. The demo campaign (``--subjects`` x 10 sessions of 10 min) is simulated,
uploaded to a loopback S3 server (moto's server mode, with the request log of
``tests/s3.py``), and one session's check is measured, warm (the store's root metadata
already parsed, as on a worker that has opened a session before):

- the LIST requests (ListObjectsV2) and all requests of one check on S3;
- its wall time on S3 and on the local folder (median of ``--repeats``);
- the same for the whole opening of the session (:func:`read_zarr_session`: the lazy
  open of the session group, then the check).

Side by side: the per-array count of the stored chunks, one listing per array
(:attr:`zarr.Array.nchunks_initialized`, what ``check_zarr_chunks`` used up to
commit 0c88c64), and ``check_zarr_chunks`` as it is now.
Target: 1 LIST request per session, whatever its number of arrays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SUBJECT, SESSION = "S01", "L-60"


def per_array_listing(path, group: str, storage_options=None):
    """The previous check: each array's ``nchunks_initialized`` (one listing each), on
    the session's arrays opened once (the metadata is not read again in each call)."""
    kwargs = {"storage_options": storage_options} if storage_options else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        node = zarr.open_group(str(path), mode="r", **kwargs)[group]
        arrays = [a for _, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]

    def check():
        for arr in arrays:
            if arr.nchunks_initialized < arr.nchunks:
                raise RuntimeError(f"{group}: chunks missing")

    return check


def _median_time(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from s3 import start_s3_server

    from cardiolab.io.native import check_zarr_chunks, read_zarr_session
    from cardiolab.simulate import simulate_campaign

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    group = f"{SUBJECT}/{SESSION}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo"
        t0 = time.perf_counter()
        simulate_campaign(path, n_subjects=args.subjects, progress=False)
        local = path / "campaign.zarr"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
            node = zarr.open_group(str(local), mode="r")[group]
            arrays = [a for _, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]
        print(
            f"demo campaign ({args.subjects} subjects) simulated in "
            f"{time.perf_counter() - t0:.0f} s; session {group}: {len(arrays)} arrays, "
            f"{sum(a.nchunks for a in arrays)} chunks"
        )
        server = start_s3_server()
        try:
            fs = server.filesystem()
            bucket = server.new_bucket()
            fs.put(str(local), f"{bucket}/demo/campaign.zarr", recursive=True)
            url, options = f"s3://{bucket}/demo/campaign.zarr", server.storage_options
            checks = {
                "per array (nchunks_initialized)": (
                    per_array_listing(url, group, options),
                    per_array_listing(local, group),
                ),
                "check_zarr_chunks": (
                    lambda: check_zarr_chunks(url, group, storage_options=options),
                    lambda: check_zarr_chunks(local, group),
                ),
                "read_zarr_session (open + check)": (
                    lambda: read_zarr_session(url, group, storage_options=options),
                    lambda: read_zarr_session(local, group),
                ),
            }
            rows = []
            for name, (on_s3, on_disk) in checks.items():
                on_s3()  # warm: the root metadata parsed, the S3 clients made
                on_disk()
                with server.requests.recording() as requests:
                    on_s3()
                lists = sum(r.is_list for r in requests)
                s3_s = _median_time(on_s3, args.repeats)
                local_s = _median_time(on_disk, args.repeats)
                rows.append((name, lists, len(requests), s3_s, local_s))
        finally:
            server.server.stop()
    print(
        f"{'one session, warm':34s} {'LIST req':>9s} {'all req':>8s} "
        f"{'S3 (moto) ms':>13s} {'local ms':>9s}"
    )
    for name, lists, total, s3_s, local_s in rows:
        print(f"{name:34s} {lists:9d} {total:8d} {s3_s * 1e3:13.1f} {local_s * 1e3:9.2f}")
    print("target: 1 LIST request per session")


if __name__ == "__main__":
    main()
