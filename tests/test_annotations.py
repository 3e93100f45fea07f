"""Reviewer beat flags: audit trail, persistence across reprocessing, recomputed features."""

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from cardiolab.annotations import (
    apply_review,
    flag_beats,
    recompute_features,
    review_state,
    reviewed_beats,
)
from cardiolab.catalog import open_catalog
from cardiolab.errors import CardiolabError, CatalogError
from cardiolab.pipeline import features_table, process_campaign, read_session_results

SESSIONS = [("S01", "L-30"), ("S01", "R+6h")]


@pytest.fixture(scope="module")
def processed_base(small_campaign, tmp_path_factory):
    """A copy of the small campaign with two sessions of S01 processed (no review)."""
    src, _ = small_campaign
    base = tmp_path_factory.mktemp("review") / "c"
    shutil.copytree(src, base, ignore=shutil.ignore_patterns("derived.zarr", "truth"))
    rep = process_campaign(
        base / "data_catalog.yaml", client="sync", sessions=SESSIONS, progress=False
    )
    assert rep.n_done == 2, rep.sessions
    return base


@pytest.fixture
def camp(processed_base, tmp_path):
    """A fresh copy (raw store and derived store) for each test: trails only grow."""
    dst = tmp_path / "c"
    shutil.copytree(processed_base, dst)
    return dst / "data_catalog.yaml"


def _stored(catalog, subject="S01", session="L-30", group="beats"):
    derived = open_catalog(catalog).derived_path
    return read_session_results(derived, subject, session, group)


def _tree_digest(folder):
    """SHA-256 of every file's relative path and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _expected_epoch(beats, flagged, epoch):
    """HR, mean NN, SBP and valid-beat count of one epoch, computed here from the beat
    table: an NN interval counts when both beats bounding it are kept and in the epoch;
    a beat is kept when automatically valid and not flagged."""
    df = pd.DataFrame(
        {
            "rr": beats["rr"].values,
            "sbp": beats["sbp"].values,
            "abp_ok": beats["abp_valid"].values,
            "epoch": beats["epoch"].values.astype(object).astype(str),
        }
    )
    keep = pd.Series(beats["valid"].values, dtype=bool) & ~pd.Series(flagged, dtype=bool)
    here = df["epoch"] == epoch
    nn = keep & keep.shift(1, fill_value=False) & here & here.shift(1, fill_value=False)
    rr = df.loc[nn, "rr"]
    sbp = df.loc[keep & here & df["abp_ok"], "sbp"]
    return {
        "mean_nn": rr.mean(),
        "hr": (60000.0 / rr).mean(),
        "sbp": sbp.mean(),
        "n_beats": int((keep & here).sum()),
    }


def test_flag_then_unflag_round_trip(camp):
    auto = _stored(camp)["valid"].values
    n = auto.size
    state = flag_beats(camp, "S01", "L-30", [3, 4, 5, 40], reviewer="mh")
    assert state.n_flagged == 4 and state.pending and state.applied_event == 0
    assert list(np.flatnonzero(state.flags.to_numpy())) == [3, 4, 5, 40]
    state = flag_beats(camp, "S01", "L-30", [4, 40], reviewer="jd", flagged=False, reason="ok")
    assert list(np.flatnonzero(state.flags.to_numpy())) == [3, 5]
    assert len(state.flags) == n and state.flags.index.name == "beat"

    beats = reviewed_beats(camp, "S01", "L-30")
    flag = beats["reviewer_flag"].values
    assert list(np.flatnonzero(flag)) == [3, 5]
    assert (
        beats["reviewer_flag"].attrs["units"] == "1" and beats["reviewer_flag"].attrs["long_name"]
    )
    np.testing.assert_array_equal(beats["auto_valid"].values, auto)
    np.testing.assert_array_equal(beats["valid"].values, auto & ~flag)
    assert beats.attrs["review_events"] == 2 and beats.attrs["review_last_event"] == 2

    # unflagging everything restores the automatic validity exactly
    flag_beats(camp, "S01", "L-30", np.arange(n), reviewer="mh", flagged=False)
    beats = reviewed_beats(camp, "S01", "L-30")
    np.testing.assert_array_equal(beats["valid"].values, auto)
    assert review_state(camp, "S01", "L-30").n_flagged == 0


def test_trail_keeps_every_event_in_order(camp):
    before = pd.Timestamp.now(tz="UTC")
    flag_beats(camp, "S01", "L-30", [7, 2], reviewer="mh", time="2026-05-01T10:00:00+02:00")
    folder = open_catalog(camp).derived_path / "_annotations" / "S01" / "L-30"
    first = (folder / "e000001.json").read_bytes()
    flag_beats(camp, "S01", "L-30", [2], reviewer="jd", flagged=False, reason="sinus beat",
               time="2026-05-01 07:30:00")  # fmt: skip
    flag_beats(camp, "S01", "L-30", [9], reviewer="  ak ", reason="motion")
    after = pd.Timestamp.now(tz="UTC")

    trail = review_state(camp, "S01", "L-30").trail
    assert list(trail["event_id"]) == [1, 2, 3]
    assert list(trail["reviewer"]) == ["mh", "jd", "ak"]
    assert list(trail["action"]) == ["flag", "unflag", "flag"]
    assert list(trail["beats"]) == [(2, 7), (2,), (9,)]
    assert list(trail["n_beats"]) == [2, 1, 1]
    assert list(trail["reason"]) == ["artefact", "sinus beat", "motion"]
    assert trail["time"].iloc[0] == pd.Timestamp("2026-05-01T08:00:00Z")
    assert trail["time"].iloc[1] == pd.Timestamp("2026-05-01T07:30:00Z")  # naive = UTC
    assert before <= trail["time"].iloc[2] <= after
    t = _stored(camp)["t"].values
    np.testing.assert_array_equal(trail["beat_t"].iloc[0], t[[2, 7]])
    # appended, never rewritten: the first event's file is byte-identical
    assert (folder / "e000001.json").read_bytes() == first
    assert json.loads(first)["time"] == "2026-05-01T08:00:00+00:00"
    # and each event is a plain JSON object, readable without cardiolab
    assert json.loads((folder / "e000002.json").read_text())["reviewer"] == "jd"


def test_successive_and_concurrent_events_all_persist(camp):
    """Eight reviewers flag at once (threads), and a crashed write left a half event."""
    folder = open_catalog(camp).derived_path / "_annotations" / "S01" / "L-30"
    flag_beats(camp, "S01", "L-30", [0], reviewer="r0")
    (folder / ".e000002.json.tmp-crashed").write_text('{"event_id": 2, "revi')  # torn write

    def one(i):
        return flag_beats(camp, "S01", "L-30", [10 + i], reviewer=f"r{i + 1}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    state = review_state(camp, "S01", "L-30")
    assert list(state.trail["event_id"]) == list(range(1, 10))
    assert sorted(state.trail["reviewer"]) == sorted(f"r{i}" for i in range(9))
    assert list(np.flatnonzero(state.flags.to_numpy())) == [0] + list(range(10, 18))


def test_flagged_beats_change_features_as_computed(camp):
    """Flag the 20 shortest supine NN intervals' closing beats and the 10 highest
    standing SBP beats: supine mean NN rises and HR falls, standing SBP falls, each
    to the value computed here from the beat table (1e-9 relative)."""
    beats = _stored(camp)
    before = _stored(camp, group="features")
    none = np.zeros(beats.sizes["beat"], dtype=bool)
    for ep in ("supine", "stand"):  # the reference computation agrees with the pipeline
        exp = _expected_epoch(beats, none, ep)
        for k, v in exp.items():
            np.testing.assert_allclose(before[k].sel(epoch=ep), v, rtol=1e-9, err_msg=k)

    valid = beats["valid"].values
    epoch = beats["epoch"].values.astype(object).astype(str)
    rr = beats["rr"].values
    nn = (
        valid
        & np.r_[False, valid[:-1]]
        & (epoch == "supine")
        & np.r_[False, epoch[:-1] == "supine"]
    )
    shortest = np.flatnonzero(nn)[np.argsort(rr[nn])[:20]]
    stand = np.flatnonzero(valid & beats["abp_valid"].values & (epoch == "stand"))
    highest = stand[np.argsort(beats["sbp"].values[stand])[-10:]]
    flag_beats(camp, "S01", "L-30", shortest, reviewer="mh", reason="short RR")
    flag_beats(camp, "S01", "L-30", highest, reviewer="mh", reason="pressure spike")
    feats = recompute_features(camp, "S01", "L-30")

    flagged = none.copy()
    flagged[shortest] = flagged[highest] = True
    sup, std = _expected_epoch(beats, flagged, "supine"), _expected_epoch(beats, flagged, "stand")
    got = feats.sel(epoch="supine")
    for k in ("mean_nn", "hr", "n_beats"):
        np.testing.assert_allclose(got[k], sup[k], rtol=1e-9, err_msg=k)
    np.testing.assert_allclose(feats["sbp"].sel(epoch="stand"), std["sbp"], rtol=1e-9)
    assert float(got["mean_nn"] - before["mean_nn"].sel(epoch="supine")) > 5.0  # ms
    assert float(got["hr"] - before["hr"].sel(epoch="supine")) < -0.3  # bpm
    assert float(feats["sbp"].sel(epoch="stand") - before["sbp"].sel(epoch="stand")) < -0.5
    assert int(got["n_beats"]) == int(before["n_beats"].sel(epoch="supine")) - 20
    np.testing.assert_allclose(
        feats["sbp"].sel(epoch="stand-supine"),
        feats["sbp"].sel(epoch="stand") - feats["sbp"].sel(epoch="supine"),
        rtol=1e-12,
    )
    assert feats.attrs["review_events"] == 2 and feats.attrs["review_last_event"] == 2

    table = features_table(camp).set_index(["subject", "session", "epoch"])
    np.testing.assert_allclose(table.loc[("S01", "L-30", "supine"), "hr"], sup["hr"], rtol=1e-9)
    other = _stored(camp, session="R+6h", group="features")  # untouched session
    np.testing.assert_allclose(
        table.loc[("S01", "R+6h", "supine"), "hr"], other["hr"].sel(epoch="supine"), rtol=1e-12
    )
    assert not review_state(camp, "S01", "L-30").pending


def test_review_survives_reprocessing_and_restart(camp, monkeypatch):
    flag_beats(camp, "S01", "L-30", list(range(5, 15)), reviewer="mh")
    reviewed = recompute_features(camp, "S01", "L-30")

    # a forced reprocess recomputes the beats and applies the trail again
    rep = process_campaign(camp, client="sync", force=True, sessions=SESSIONS, progress=False)
    assert rep.n_done == 2 and list(rep.sessions["review_events"]) == [1, 0]
    cat = open_catalog(camp)  # a fresh catalog: as after a server restart
    state = review_state(cat, "S01", "L-30")
    assert list(np.flatnonzero(state.flags.to_numpy())) == list(range(5, 15))
    assert not state.pending
    stored = _stored(camp)
    assert int(stored["reviewer_flag"].sum()) == 10 and stored.attrs["review_last_event"] == 1
    again = _stored(camp, group="features")
    for k in ("hr", "mean_nn", "sdnn", "sbp", "n_beats"):
        np.testing.assert_allclose(again[k], reviewed[k], rtol=1e-12, err_msg=k)

    # unchanged raw input: a second run is cached ...
    rep = process_campaign(camp, client="sync", sessions=SESSIONS, progress=False)
    assert list(rep.sessions["status"]) == ["cached", "cached"]
    # ... and a new review event recomputes the features only, never the beats
    import cardiolab.signals.beats as beats_module

    def no_beats(*args, **kwargs):
        raise AssertionError("beats recomputed")

    monkeypatch.setattr(beats_module, "beat_table", no_beats)
    flag_beats(cat, "S01", "L-30", [5], reviewer="jd", flagged=False)
    rep = process_campaign(camp, client="sync", sessions=SESSIONS, progress=False)
    assert list(rep.sessions["status"]) == ["done", "cached"], rep.sessions
    feats = _stored(camp, group="features")
    assert feats.attrs["review_events"] == 2 and feats.attrs["review_last_event"] == 2
    assert bool(stored["auto_valid"][5]) and stored["epoch"].values[5] == "supine"
    back = feats["n_beats"].sel(epoch="supine") - again["n_beats"].sel(epoch="supine")
    assert int(back) == 1  # beat 5 is kept again


def test_raw_store_is_never_written(camp):
    raw = camp.parent / "campaign.zarr"
    digest = _tree_digest(raw)
    flag_beats(camp, "S01", "L-30", [1, 2, 3], reviewer="mh")
    flag_beats(camp, "S01", "L-30", [2], reviewer="mh", flagged=False)
    recompute_features(camp, "S01", "L-30")
    process_campaign(camp, client="sync", force=True, sessions=SESSIONS[:1], progress=False)
    assert _tree_digest(raw) == digest


def test_events_follow_beats_when_the_beat_table_changes(camp):
    """Events recorded against another beat table map onto the beats by R-peak time."""
    beats = _stored(camp)
    t = beats["t"].values
    trail = pd.DataFrame(
        {
            "event_id": [1, 2],
            "action": ["flag", "unflag"],
            "beats": [(0, 1, 2), (0,)],
            # 20 ms off the current beats 10, 11, 12; one time far from any beat
            "beat_t": [tuple(t[[10, 11, 12]] + 0.02), (t[11] - 0.02,)],
            "beat_table": ["an-older-table", "an-older-table"],
        }
    )
    extra = pd.DataFrame(
        {
            "event_id": [3],
            "action": ["flag"],
            "beats": [(0,)],
            "beat_t": [(t[-1] + 5.0,)],
            "beat_table": ["an-older-table"],
        }  # fmt: skip
    )
    original = beats.copy(deep=True)
    out = apply_review(beats, pd.concat([trail, extra], ignore_index=True))
    assert list(np.flatnonzero(out["reviewer_flag"].values)) == [10, 12]
    assert out.attrs["review_unmatched"] == 1 and out.attrs["review_last_event"] == 3
    assert beats.identical(original)  # the input is not changed


def test_errors_name_the_fault(camp):
    n = _stored(camp).sizes["beat"]
    with pytest.raises(CatalogError, match="unknown subject 'S99'"):
        flag_beats(camp, "S99", "L-30", [1], reviewer="mh")
    with pytest.raises(CatalogError, match="subject S01 has no session 'L-99'"):
        flag_beats(camp, "S01", "L-99", [1], reviewer="mh")
    with pytest.raises(CardiolabError, match=rf"beat index \[{n}\] out of range.*{n} beats"):
        flag_beats(camp, "S01", "L-30", [0, n], reviewer="mh")
    with pytest.raises(CardiolabError, match=r"beat index \[-1\] out of range"):
        flag_beats(camp, "S01", "L-30", [-1], reviewer="mh")
    for who in ("", "   "):
        with pytest.raises(CardiolabError, match="S01 L-30: flag_beats needs a reviewer"):
            flag_beats(camp, "S01", "L-30", [1], reviewer=who)
    with pytest.raises(CardiolabError, match="no beats given"):
        flag_beats(camp, "S01", "L-30", [], reviewer="mh")
    with pytest.raises(CardiolabError, match=r"must be integers, got \[1.5\]"):
        flag_beats(camp, "S01", "L-30", [1.5], reviewer="mh")
    with pytest.raises(CardiolabError, match="time 'not a date'"):
        flag_beats(camp, "S01", "L-30", [1], reviewer="mh", time="not a date")
    with pytest.raises(CardiolabError, match="S02 L-30: no beat table.*process the session"):
        flag_beats(camp, "S02", "L-30", [1], reviewer="mh")
    with pytest.raises(CardiolabError, match="S02 L-30: no beat table"):
        recompute_features(camp, "S02", "L-30")
    assert len(review_state(camp, "S01", "L-30").trail) == 0  # nothing was recorded
