"""Coverage of phase_contrasts' 95 % intervals with 4, 6 and 12 subjects: Wald z vs Satterthwaite t.

Usage: python benchmarks/coverage_contrasts.py [--n-sim 400] [--sizes 4 6 12]
       [--workers 2] [--seed 0] [--random-slope SD]

Each simulation draws a campaign from the adaptation/recovery model
(:func:`cardiolab.stats.design.simulate_feature_table`, demo schedule L-60 L-30 FD5 FD15
FD25 R+0 R+1 R+3 R+10 R+30) with the supine heart-rate truth of SCIENCE.md (pre 62 bpm,
A +3 bpm, tau_a 4 d, D +8 bpm, tau_r 3 d, between-subject SD 12 % of pre, residual SD
2 bpm), fits :func:`cardiolab.stats.mixed.phase_contrasts` once with each inference
(``"wald"``: today's z intervals; ``"satterthwaite"``: t with Satterthwaite df, the
default), and records whether the 95 % interval of every in-flight and post-flight
contrast holds the true change from the pre-flight level (the model's mean at that
session minus ``pre``). Coverage is pooled over the 8 contrasts of each campaign; the
Monte-Carlo SE of a coverage of 0.95 from 400 campaigns x 8 contrasts is about 0.005
if the contrasts were independent (they are not: they share the baseline; ~0.011 for
400 independent intervals). Target: 0.93-0.97 for each size with Satterthwaite.
Also printed: the coverage of the percent changes (truth: change / pre x 100), the
share of campaigns whose every contrast is covered, the median df, and the mean
interval width relative to Wald's. With ``--random-slope SD`` each subject's change at
landing varies (``random_D_sd = SD`` bpm) and the contrasts are fitted with
``random_slope=True`` (lme4 ``(1 | subject) + (1 | subject:phase)``): the case where
the between-subject variance enters the contrasts and few subjects give few df.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from cardiolab.labels import parse_session_label
from cardiolab.simulate.effects import time_course
from cardiolab.stats.design import DEFAULT_SCHEDULE, simulate_feature_table
from cardiolab.stats.mixed import phase_contrasts

TRUTH = dict(pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0, between_sd=0.12 * 62.0, residual_sd=2.0)
METHODS = ("wald", "satterthwaite")


def true_changes(schedule) -> pd.Series:
    """The population change from the pre-flight level at every in/post session."""
    out = {}
    for label in schedule:
        lab = parse_session_label(label)
        if lab.phase == "pre":
            continue
        mean = time_course(
            TRUTH["pre"], TRUTH["A"], TRUTH["tau_a"], TRUTH["D"], TRUTH["tau_r"],
            np.array([lab.phase]), np.array([float(lab.day)]),
        )  # fmt: skip
        out[lab.label] = float(np.asarray(mean).ravel()[0]) - TRUTH["pre"]
    return pd.Series(out)


def one(args):
    seed, n_subjects, slope_sd = args
    table = simulate_feature_table(
        DEFAULT_SCHEDULE, n_subjects=n_subjects, feature="hr", units="bpm", seed=seed,
        random_D_sd=slope_sd, **TRUTH,
    )  # fmt: skip
    truth = true_changes(DEFAULT_SCHEDULE)
    rows = []
    for method in METHODS:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = phase_contrasts(table, "hr", inference=method, random_slope=slope_sd > 0)
        seconds = time.perf_counter() - t0
        t = res.table
        true = truth[t.index]
        cover = (t["ci_low"] <= true) & (true <= t["ci_high"])
        pct = 100 * true / TRUTH["pre"]
        cover_pct = (t["percent_low"] <= pct) & (pct <= t["percent_high"])
        rows.append(
            {
                "n_subjects": n_subjects,
                "seed": seed,
                "method": method,
                "covered": int(cover.sum()),
                "covered_pct": int(cover_pct.sum()),
                "n": int(len(cover)),
                "all": bool(cover.all()),
                "width": float((t["ci_high"] - t["ci_low"]).mean()),
                "df": float(t["df"].median()),
                "seconds": seconds,
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-sim", type=int, default=400)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 12])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-slope", type=float, default=0.0, metavar="SD")
    args = parser.parse_args(argv)

    jobs = [(args.seed + i, n, args.random_slope) for n in args.sizes for i in range(args.n_sim)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for batch in pool.map(one, jobs, chunksize=20) for r in batch]
    wall = time.perf_counter() - t0
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["n_subjects", "method"]).agg(
        coverage=("covered", "sum"), coverage_pct=("covered_pct", "sum"), n=("n", "sum"),
        all_covered=("all", "mean"),
        width=("width", "mean"), df=("df", "median"), seconds=("seconds", "median"),
    )  # fmt: skip
    summary["coverage"] = summary["coverage"] / summary["n"]
    summary["coverage_pct"] = summary["coverage_pct"] / summary["n"]
    wide = summary["coverage"].unstack("method")[list(METHODS)]
    wide.columns = [f"coverage {m}" for m in METHODS]
    pct = summary["coverage_pct"].unstack("method")[list(METHODS)]
    for m in METHODS:
        wide[f"percent {m}"] = pct[m]
    wide["all 8 covered, satterthwaite"] = summary["all_covered"].xs("satterthwaite", level=1)
    wide["median df"] = summary["df"].xs("satterthwaite", level=1)
    wide["width ratio t/z"] = summary["width"].xs("satterthwaite", level=1) / summary["width"].xs(
        "wald", level=1
    )
    wide["s per fit (t)"] = summary["seconds"].xs("satterthwaite", level=1)
    print(
        f"phase_contrasts coverage of 95 % CIs: {args.n_sim} campaigns per size x 8 "
        f"contrasts, demo schedule, seed {args.seed}, random slope SD {args.random_slope:g}; "
        f"{wall:.0f} s on {args.workers} workers"
    )
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    ok = wide["coverage satterthwaite"].between(0.93, 0.97).all()
    print("target 0.93-0.97 (Satterthwaite):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
