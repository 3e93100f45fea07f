"""Feature values of demo sessions, pinned so that refactoring moves nothing by accident.

``python tests/pinned_features.py`` writes ``tests/data/pinned_demo_features.json`` from
the current code; run it only when a feature's values are meant to change, and say why
in the commit. :func:`demo_session_features` is what the test and the writer share.
"""

from __future__ import annotations

import json
from pathlib import Path

PINNED = Path(__file__).parent / "data" / "pinned_demo_features.json"
#: demo campaign settings (the demo's defaults: 10-minute sessions, seed 0), two
#: subjects and one session of each phase
SETTINGS = {"n_subjects": 2, "schedule": ["L-30", "FD10", "R+1"], "seed": 0}


def demo_session_features(folder) -> dict:
    """``{"<subject>/<session>": xarray.Dataset}`` of the pipeline's session features."""
    from cardiolab.catalog import open_catalog
    from cardiolab.pipeline import session_features
    from cardiolab.signals.beats import beat_table
    from cardiolab.simulate import simulate_campaign

    simulate_campaign(folder, workers=1, progress=False, **SETTINGS)
    cat = open_catalog(Path(folder) / "data_catalog.yaml")
    out = {}
    for row in cat.sessions.itertuples():
        node = cat.open_session(row.subject, row.session, indexes=False)
        out[f"{row.subject}/{row.session}"] = session_features(beat_table(node), node)
    return out


def as_json(features: dict) -> dict:
    """Plain values: ``{session: {"epoch": [...], "<feature>": [...]}}`` (NaN as None)."""
    import numpy as np

    out = {}
    for key, ds in features.items():
        rec = {"epoch": [str(e) for e in ds["epoch"].values]}
        for name, var in ds.data_vars.items():
            vals = np.asarray(var.values, dtype=float)
            rec[name] = [None if not np.isfinite(v) else float(v) for v in vals]
        out[key] = rec
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        values = as_json(demo_session_features(Path(tmp) / "demo"))
    PINNED.parent.mkdir(exist_ok=True)
    PINNED.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}: {len(values)} sessions")
