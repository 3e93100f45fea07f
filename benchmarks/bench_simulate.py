"""Time the generation of the default demo campaign and report the store's size.

Usage: python benchmarks/bench_simulate.py [--workers N]

Target (issue: foundation): the demo campaign (8 subjects x 10 sessions of 10 min,
ECG 500 Hz, ABP 200 Hz, LDF 32 Hz, Doppler 100 Hz) generates in under 60 s on
2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cardiolab.simulate import simulate_campaign


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo"
        t0 = time.perf_counter()
        truth = simulate_campaign(path, workers=args.workers, progress=False)
        elapsed = time.perf_counter() - t0
        n_sessions = len(truth.sessions.index.droplevel("epoch").unique())
        recorded_h = n_sessions * truth.params["duration_min"] / 60.0
        store = folder_size(path / "campaign.zarr")
        truth_size = folder_size(path / "truth")
        print(f"cores available        : {os.cpu_count()}")
        print(f"sessions               : {n_sessions} ({recorded_h:.1f} h of recording)")
        print(f"generation time        : {elapsed:.1f} s (target < 60 s)")
        print(f"per session            : {elapsed / n_sessions * 1000:.0f} ms")
        print(f"raw store (bytes)      : {store / 1e6:.1f} MB")
        print(f"truth (bytes)          : {truth_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
