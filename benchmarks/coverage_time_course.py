"""Coverage of fit_time_course's 95 % intervals on campaigns with known truth, and its speed.

Usage: python benchmarks/coverage_time_course.py [--n-sim 100] [--n-subjects 12]
       [--workers 2] [--seed 0] [--random-slopes SD] [--set tau_r=12 ...]
       [--schedule L-60 L-30 R+0 ...]

Each simulation draws a campaign from the time-course model
(:func:`cardiolab.stats.design.simulate_feature_table`, demo schedule L-60 L-30 FD5 FD15
FD25 R+0 R+1 R+3 R+10 R+30) with the supine heart-rate truth of SCIENCE.md (pre 62 bpm,
A +3 bpm, tau_a 4 d, D +8 bpm, tau_r 3 d, between-subject SD 12 % of pre, residual SD
2 bpm), fits it, and records whether each interval holds the truth. Targets: coverage
0.90-0.98 for tau_r, D and A (a Monte-Carlo SE of ~0.02 at 100 simulations), and a
median fit time <= 0.5 s on the demo campaign's shape (8 subjects x 10 sessions), which
is timed separately in this process.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from cardiolab.stats.design import DEFAULT_SCHEDULE, simulate_feature_table
from cardiolab.stats.timecourse import fit_time_course

TRUTH = dict(pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0, between_sd=0.12 * 62.0, residual_sd=2.0)
PARAMS = {
    "b0": "pre",
    "A": "A",
    "tau_a": "tau_a",
    "D": "D",
    "tau_r": "tau_r",
    "subject_sd": "between_sd",
    "residual_sd": "residual_sd",
}


def one(args):
    seed, n_subjects, random_sd, truth, schedule = args
    table = simulate_feature_table(
        schedule,
        n_subjects=n_subjects,
        feature="hr",
        units="bpm",
        seed=seed,
        random_D_sd=random_sd,
        **truth,
    )
    random = ("intercept", "D") if random_sd > 0 else ("intercept",)
    t0, c0 = time.perf_counter(), time.process_time()
    tc = fit_time_course(table, "hr", random=random)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"seed": seed, "seconds": elapsed, "cpu": cpu, "converged": tc.converged}
    truth = dict(truth, random_D_sd=random_sd)
    names = dict(PARAMS, D_sd="random_D_sd") if random_sd > 0 else PARAMS
    for name, key in names.items():
        if np.isnan(tc.params.loc[name, "estimate"]):
            continue  # a phase without sessions
        est, lo, hi, is_open = tc.params.loc[name, ["estimate", "ci_low", "ci_high", "ci_open"]]
        row[f"{name}_covered"] = bool(lo <= truth[key] <= hi)
        row[f"{name}_open"] = bool(is_open)
        row[f"{name}_estimate"] = float(est)
    if not np.isnan(tc.params.loc["tau_r", "estimate"]):
        # recovery day, default margin 5 % of |b0|: tau_r ln(|D| / (0.05 |pre|)) in truth
        margin = 0.05 * abs(truth["pre"])
        true_day = truth["tau_r"] * np.log(max(abs(truth["D"]) / margin, 1.0))
        rec = tc.recovery_day(ci=True)
        row["recovery_day_covered"] = bool(rec["ci_low"] <= true_day <= rec["ci_high"])
        row["recovery_day_open"] = bool(np.isinf(rec["ci_high"]))
        row["recovery_day_estimate"] = float(rec["estimate"])
    return row


def demo_timing(n_fits: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU fit times (s) on demo-shaped tables: 8 subjects x 10 sessions."""
    wall, cpu = [], []
    for seed in range(n_fits):
        table = simulate_feature_table(n_subjects=8, feature="hr", seed=1000 + seed, **TRUTH)
        t0, c0 = time.perf_counter(), time.process_time()
        fit_time_course(table, "hr")
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return np.array(wall), np.array(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=100)
    parser.add_argument("--n-subjects", type=int, default=12)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-fits", type=int, default=20)
    parser.add_argument(
        "--random-slopes",
        type=float,
        default=0.0,
        metavar="SD",
        help="simulate a between-subject SD of D (bpm) and fit random=('intercept', 'D')",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"override the truth {sorted(TRUTH)}",
    )
    parser.add_argument("--schedule", nargs="*", default=None, help="session labels")
    args = parser.parse_args()
    truth = dict(TRUTH)
    for item in args.set:
        key, value = item.split("=")
        if key not in truth:
            parser.error(f"--set {item}: unknown key {key!r}")
        truth[key] = float(value)
    schedule = tuple(args.schedule) if args.schedule else DEFAULT_SCHEDULE

    t0 = time.perf_counter()
    jobs = [
        (args.seed + i, args.n_subjects, args.random_slopes, truth, schedule)
        for i in range(args.n_sim)
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(one, jobs, chunksize=4))
    wall = time.perf_counter() - t0
    res = pd.DataFrame(rows)

    print(
        f"{args.n_sim} simulated campaigns, {args.n_subjects} subjects x {len(schedule)} "
        f"sessions ({' '.join(schedule)}), truth {truth}"
        + (f", random D SD {args.random_slopes}" if args.random_slopes else "")
    )
    mc_se = np.sqrt(0.95 * 0.05 / args.n_sim)
    print(f"coverage of the 95 % intervals (Monte-Carlo SE {mc_se:.3f}; target 0.90-0.98):")
    names = [c[: -len("_covered")] for c in res.columns if c.endswith("_covered")]
    for name in names:
        cov = res[f"{name}_covered"].astype(float).mean()
        open_ = res[f"{name}_open"].astype(float).mean()
        med = res[f"{name}_estimate"].median()
        mark = "" if 0.90 <= cov <= 0.98 else "   <-- outside 0.90-0.98"
        print(
            f"  {name:12s} {cov:5.3f}   (open-ended {open_:4.2f}, median estimate {med:.3g}){mark}"
        )
    print(f"converged: {res['converged'].mean():.3f}")
    print(
        f"fit time, {args.n_subjects} subjects, in {args.workers} worker(s): "
        f"median {res['seconds'].median():.3f} s wall, {res['cpu'].median():.3f} s CPU; "
        f"90th pct {res['seconds'].quantile(0.9):.3f} s wall; total wall {wall:.1f} s"
    )
    times, cpu = demo_timing(args.timing_fits)
    print(
        f"fit time, demo shape (8 subjects x 10 sessions, {args.timing_fits} fits, this "
        f"process): median {np.median(times):.3f} s wall ({np.median(cpu):.3f} s CPU), "
        f"max {times.max():.3f} s (target <= 0.5 s)"
    )


if __name__ == "__main__":
    main()
