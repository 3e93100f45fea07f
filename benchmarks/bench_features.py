"""What each declared feature costs: the per-feature cost table of the demo campaign.

Usage: python benchmarks/bench_features.py [--subjects 8] [--repeat 3]

Simulates the demo campaign (10-minute sessions: supine, stand and the stand test's two
windows), builds every session's beat table once, then computes every session's
features and challenge responses ``--repeat`` times in this process (one core) and
prints, per registered feature, its seconds per session (best of the repeats), its
milliseconds per epoch, its share of the feature stage, and the multiple of real time
the feature stage alone runs at; the beat table (R-peaks, pressure, Doppler, LDF,
stroke volume, R amplitude) is timed beside it for scale. The pipeline's end-to-end
throughput is ``benchmarks/bench_pipeline.py``'s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from cardiolab.catalog import open_catalog
    from cardiolab.features import challenge_windows
    from cardiolab.features.registry import features
    from cardiolab.pipeline import session_results
    from cardiolab.signals.beats import beat_table
    from cardiolab.simulate import simulate_campaign

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo"
        truth = simulate_campaign(path, n_subjects=args.subjects, progress=False)
        cat = open_catalog(path / "data_catalog.yaml")
        sessions = []
        t_beats = 0.0
        for row in cat.sessions.itertuples():
            node = cat.open_session(row.subject, row.session, indexes=False)
            node = node.load()
            t0 = time.perf_counter()
            beats = beat_table(node)
            t_beats += time.perf_counter() - t0
            sessions.append((beats, node))
        n = len(sessions)
        recorded_s = n * truth.params["duration_min"] * 60.0
        best: dict[str, float] = {}
        best_total = float("inf")
        for _ in range(args.repeat):
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            for beats, node in sessions:
                feats, _ = session_results(beats, node, timings=timings)
            total = time.perf_counter() - t0
            best_total = min(best_total, total)
            for k, v in timings.items():
                best[k] = min(best.get(k, float("inf")), v)
        proto = sessions[0][1]["protocol"].to_dataset()
        epochs = list(
            zip(proto["label"].values, proto["start"].values, proto["stop"].values, strict=True)
        )
        n_epochs = len(epochs) + len(
            challenge_windows(epochs, json.loads(proto.attrs.get("challenges") or "[]"))
        )

    order = [f.name for f in features()] + ["challenge responses"]
    print(
        f"{n} sessions of {truth.params['duration_min']:g} min, {n_epochs} epochs each "
        f"(protocol epochs and challenge windows); one core; best of {args.repeat}"
    )
    print(f"{'stage':28} {'s/session':>10} {'ms/epoch':>9} {'share':>7}")
    for name in order:
        if name not in best:
            continue
        per_session = best[name] / n
        print(
            f"{name:28} {per_session:10.4f} {1000 * per_session / n_epochs:9.2f} "
            f"{100 * best[name] / best_total:6.1f}%"
        )
    other = best_total - sum(best.values())
    print(
        f"{'(epoch loop, assembly)':28} {other / n:10.4f} {'':9} {100 * other / best_total:6.1f}%"
    )
    print(f"{'feature stage, total':28} {best_total / n:10.4f}")
    print(f"{'beat table (for scale)':28} {t_beats / n:10.4f}")
    print(
        f"feature stage alone: {recorded_s / best_total:.0f}x real time; beat table alone: "
        f"{recorded_s / t_beats:.0f}x real time (one core)"
    )


if __name__ == "__main__":
    main()
