"""Baroreflex sensitivity against the simulator's known gain."""

import numpy as np
import pytest

from cardiolab.features import baroreflex_sequence, baroreflex_transfer
from cardiolab.simulate import Artefacts, simulate_campaign


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brs")
    return simulate_campaign(
        tmp / "c",
        n_subjects=2,
        schedule=["L-30", "R+1"],
        duration_min=6,
        seed=5,
        workers=1,
        progress=False,
        artefacts=Artefacts.none(),
    )


SESSIONS = [("S01", "L-30"), ("S01", "R+1"), ("S02", "L-30"), ("S02", "R+1")]


@pytest.mark.parametrize(("subject", "session"), SESSIONS)
def test_brs_sequence_and_transfer_match_truth(truth, subject, session):
    b = truth.beats(subject, session)
    sel = b["epoch"].values == "supine"
    t, sbp, rr = (b[k].values[sel] for k in ("t", "sbp", "rr"))
    true = truth.sessions.loc[(subject, session, "supine"), "brs"]
    seq = baroreflex_sequence(sbp, rr)
    # measured (seed 5): 12.18/11.64, 9.58/9.32, 13.57/13.53, 10.32/9.88 ms/mmHg
    assert seq["brs"] == pytest.approx(true, rel=0.20)
    assert seq["n_sequences"] >= 20
    assert seq["n_up"] + seq["n_down"] == seq["n_sequences"]
    assert 0.5 < seq["bei"] <= 1.0
    tf = baroreflex_transfer(t, sbp, rr)
    # measured: 11.51, 9.13, 12.82, 10.87 ms/mmHg; coherence 0.87-0.94
    assert tf["gain"] == pytest.approx(true, rel=0.30)
    assert tf["coherence"] > 0.5 and tf["n_bins"] >= 3


def test_brs_sequence_lag_matters(truth):
    """At lag 0 the simulator's pressure-to-interval coupling is not seen."""
    b = truth.beats("S01", "L-30")
    sel = b["epoch"].values == "supine"
    lag1 = baroreflex_sequence(b["sbp"].values[sel], b["rr"].values[sel], lag=1)
    lag0 = baroreflex_sequence(b["sbp"].values[sel], b["rr"].values[sel], lag=0)
    assert lag1["n_sequences"] > lag0["n_sequences"]


def test_brs_sequence_hand_example():
    """One up and one down sequence of exact slope 10 ms/mmHg at lag 1."""
    sbp = np.array([100.0, 102, 104, 106, 106, 106, 104, 101, 99, 99])
    rr = np.full(10, 800.0)
    rr[1:] = 800.0 + 10.0 * (sbp[:-1] - 100.0)  # rr[i+1] follows sbp[i]
    out = baroreflex_sequence(sbp, rr)
    assert out["n_up"] == 1 and out["n_down"] == 1
    assert out["brs"] == pytest.approx(10.0)
    assert out["bei"] == pytest.approx(1.0)
    nan = sbp.copy()
    nan[2] = np.nan  # breaks the up ramp into runs of 2 beats
    assert baroreflex_sequence(nan, rr)["n_up"] == 0
    assert sbp[2] == 104.0  # input not mutated


def test_brs_no_sequences_gives_nan():
    out = baroreflex_sequence(np.full(50, 120.0), np.full(50, 900.0))
    assert np.isnan(out["brs"]) and out["n_sequences"] == 0 and np.isnan(out["bei"])
    tf = baroreflex_transfer(np.arange(5.0), np.ones(5), np.ones(5))
    assert np.isnan(tf["gain"]) and tf["n_bins"] == 0
