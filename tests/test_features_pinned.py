"""Demo feature values are pinned: a refactoring of the feature layer moves nothing.

The pinned file was written by ``tests/pinned_features.py`` from the code before the
feature registry; new features may be added, but every pinned feature of every pinned
epoch must keep its value (relative 1e-9; NaN stays NaN).
"""

import json

import numpy as np
import pytest
from pinned_features import PINNED, as_json, demo_session_features


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    return as_json(demo_session_features(tmp_path_factory.mktemp("pinned") / "demo"))


def test_every_pinned_feature_keeps_its_value(current):
    pinned = json.loads(PINNED.read_text())
    assert sorted(current) == sorted(pinned)
    for session, rec in pinned.items():
        now = current[session]
        epochs = now["epoch"]
        missing = sorted(set(rec) - set(now))
        assert not missing, f"{session}: features gone: {missing}"
        for name, values in rec.items():
            if name == "epoch":
                continue
            got = {e: v for e, v in zip(epochs, now[name], strict=True)}
            for epoch, want in zip(rec["epoch"], values, strict=True):
                assert epoch in got, f"{session}: epoch {epoch!r} gone"
                have = got[epoch]
                if want is None:
                    assert have is None, f"{session} {epoch} {name}: {have} (pinned NaN)"
                else:
                    assert have is not None, f"{session} {epoch} {name}: NaN, pinned {want}"
                    np.testing.assert_allclose(
                        have, want, rtol=1e-9, atol=1e-12, err_msg=f"{session} {epoch} {name}"
                    )
