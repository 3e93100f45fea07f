"""R-peak detection: cardiolab vs NeuroKit2 ``ecg_peaks`` (default) vs wfdb XQRS.

Usage: python benchmarks/bench_r_peaks.py [--repeat 3] [--no-xqrs]

On the same signals in one run: throughput (samples per second; for cardiolab and
NeuroKit2 the best of at least ``--repeat`` runs and of at least 0.5 s of runs per
record, timeit's rule; one run for the slow XQRS; one core) and beat-by-beat
sensitivity (Se) and positive predictivity (+P) against the expert annotations (EC57
practice: beat annotations only, 150 ms match window), per record and in aggregate, on
the 10 annotated MIT-BIH Arrhythmia records in ../shared/data/mitdb, on the MIT-BIH
Noise Stress Test records (118 with electrode-motion noise at 24, 12 and 0 dB SNR after
the first 5 min) and on the supraventricular record svdb/800 (128 Hz).

Targets: Se and +P >= 99.5 % on MIT-BIH; on every noise-stress record Se and +P at or
above NeuroKit2's; >= 10x NeuroKit2's throughput on both sets.
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
SETS = {
    "MIT-BIH Arrhythmia, 10 annotated records": (
        "mitdb",
        ["100", "102", "103", "104", "105", "106", "107", "108", "118", "208"],
    ),
    "MIT-BIH Noise Stress Test (record 118, lead 0)": ("nstdb", ["118e24", "118e12", "118e00"]),
    "MIT-BIH Supraventricular Arrhythmia, 128 Hz": ("svdb", ["800"]),
}


def load(folder, rec):
    """Lead 0 (float64), its rate, and the beat annotations' samples."""
    path = DATA / folder / rec
    r = wfdb.rdrecord(str(path), channels=[0])
    a = wfdb.rdann(str(path), "atr")
    ref = np.array([s for s, sym in zip(a.sample, a.symbol, strict=True) if sym in BEAT_SYMBOLS])
    return r.p_signal[:, 0].astype(np.float64), float(r.fs), ref


def detectors(use_xqrs):
    """name: (function(x, fs) -> peaks, whether it is timed best of --repeat)."""
    out = {"cardiolab": (lambda x, fs: detect_r_peaks(x, fs), True)}
    try:
        import neurokit2 as nk

        def nk_peaks(x, fs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, info = nk.ecg_peaks(x, sampling_rate=int(fs))
            return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)

        out["neurokit2"] = (nk_peaks, True)
    except ImportError:
        print("neurokit2 not installed (pip install -e '.[bench]'): skipped")
    if use_xqrs:
        from wfdb import processing

        def xqrs(x, fs):
            return np.asarray(processing.xqrs_detect(x, fs=fs, verbose=False), dtype=np.int64)

        out["wfdb-xqrs"] = (xqrs, False)
    return out


#: Least time (s) spent timing one detector on one record (best run kept).
MIN_TIMED_S = 0.5


def run(signals, dets, repeat):
    """Per detector: aggregate score, throughput, and per record (name, score, seconds)."""
    rows = {}
    for name, (fn, repeated) in dets.items():
        total, samples, seconds, per = None, 0, 0.0, []
        for rec, (x, fs, ref) in signals.items():
            fn(x[: int(10 * fs)], fs)  # warm-up (numba compilation, imports)
            best, det, runs, spent = np.inf, None, 0, 0.0
            # best of at least `repeat` runs and of at least MIN_TIMED_S spent on the
            # record (timeit's rule: a run of a few ms is timed over many), the same
            # rule for every timed detector
            while runs < (repeat if repeated else 1) or (repeated and spent < MIN_TIMED_S):
                t0 = time.perf_counter()
                det = fn(x, fs)
                took = time.perf_counter() - t0
                best, runs, spent = min(best, took), runs + 1, spent + took
            s = score_detections(ref, det, int(round(0.15 * fs)))
            per.append((rec, s, best))
            total = s if total is None else total + s
            samples += x.size
            seconds += best
        rows[name] = (total, samples / seconds, per)
    return rows


def pct(x):
    return f"{100 * x:6.2f}"


def show(title, rows):
    names = list(rows)
    print(f"\n== {title}")
    print(f"{'detector':<12} {'Se %':>7} {'+P %':>7} {'FN':>5} {'FP':>5} {'M samples/s':>12}")
    for name, (total, rate, _) in rows.items():
        print(
            f"{name:<12} {pct(total.sensitivity):>7} {pct(total.positive_predictivity):>7} "
            f"{total.false_negatives:5d} {total.false_positives:5d} {rate / 1e6:12.1f}"
        )
    print(
        "per record, Se / +P (%)" + ("; speed ratio cardiolab / neurokit2" * ("neurokit2" in rows))
    )
    header = "  ".join(f"{n:>15}" for n in names)
    print(f"  {'record':<8}{header}")
    for i, (rec, _, _) in enumerate(rows[names[0]][2]):
        cells = "  ".join(
            f"{pct(rows[n][2][i][1].sensitivity)} /{pct(rows[n][2][i][1].positive_predictivity)}"
            for n in names
        )
        extra = ""
        if "neurokit2" in rows:
            ours, theirs = rows["cardiolab"][2][i], rows["neurokit2"][2][i]
            ratio = theirs[2] / ours[2]
            at_or_above = (
                ours[1].sensitivity >= theirs[1].sensitivity
                and ours[1].positive_predictivity >= theirs[1].positive_predictivity
            )
            extra = f"  {ratio:5.1f}x  {'>= NK on Se and +P' if at_or_above else 'BELOW NK'}"
        print(f"  {rec:<8}{cells}{extra}")
    if "neurokit2" in rows:
        ratio = rows["cardiolab"][1] / rows["neurokit2"][1]
        print(f"speed ratio cardiolab / neurokit2 (throughput, whole set): {ratio:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-xqrs", action="store_true", help="skip the (slow) XQRS run")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the PhysioNet records are needed")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    dets = detectors(not args.no_xqrs)
    for title, (folder, records) in SETS.items():
        signals = {rec: load(folder, rec) for rec in records}
        show(title, run(signals, dets, args.repeat))


if __name__ == "__main__":
    main()
