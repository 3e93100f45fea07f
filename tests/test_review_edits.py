"""Beat editing, per-channel flags, the signed hash-chained trail, export, two reviewers.

The editing tests run on a real record: MIMIC 03700181 (ECG lead MCL1 at 125 Hz, shown
resampled to 500 Hz by the WFDB reader, and invasive arterial pressure; 10 min) from
../shared/data/bp.
"""

import getpass
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from cardiolab.annotations import (
    compare_with_export,
    confirm_change,
    edit_beats,
    export_trail,
    flag_beats,
    pending_changes,
    read_trail,
    recompute_features,
    review_state,
    reviewed_beats,
    verify_events,
    verify_trail,
)
from cardiolab.catalog import open_catalog
from cardiolab.cli import main as cli_main
from cardiolab.derived import derived_store, event_hash
from cardiolab.errors import CardiolabError
from cardiolab.pipeline import process_campaign, read_session_results
from cardiolab.signals.ecg import qrs_polarity, snap_r_peak

SUBJECT, SESSION = "S01", "R+1"


def _catalog(folder, shared, confirmations=None):
    data = {
        "version": 1,
        "campaign": {
            "name": "real-review",
            "kind": "spaceflight",
            "launch": "2016-09-15",
            "landing": "2016-11-18",
        },
        "data_root": str(shared),
        "derived": str(folder / "derived"),
        "protocols": {
            "rest": {
                "posture": "supine",
                "epochs": [
                    {"label": "early", "start": 0, "stop": 300},
                    {"label": "late", "start": 300, "stop": 600},
                ],
            }
        },
        "subjects": [{"code": SUBJECT}],
        "sessions": [
            {
                "subject": SUBJECT,
                "label": SESSION,
                "protocol": "rest",
                "files": [
                    {
                        "path": "bp/03700181",
                        "format": "wfdb",
                        "channels": {"ABP": {"group": "abp"}, "MCL1": {"group": "ecg"}},
                    }
                ],
            }
        ],
    }
    if confirmations is not None:
        data["review"] = {"confirmations": confirmations}
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def processed(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("edits") / "c"
    folder.mkdir()
    catalog = _catalog(folder, shared_data)
    rep = process_campaign(catalog, client="sync", progress=False)
    assert rep.n_done == 1, rep.sessions
    return folder


@pytest.fixture
def camp(processed, shared_data, tmp_path):
    """A fresh derived store per test (trails only grow); raw data stays in shared."""
    folder = tmp_path / "c"
    shutil.copytree(processed / "derived", folder / "derived")
    return _catalog(folder, shared_data)


@pytest.fixture
def camp2(processed, shared_data, tmp_path):
    """The same, in two-reviewer mode."""
    folder = tmp_path / "c2"
    shutil.copytree(processed / "derived", folder / "derived")
    return _catalog(folder, shared_data, confirmations=2)


def _features(catalog):
    cat = open_catalog(catalog)
    return read_session_results(cat.derived_path, SUBJECT, SESSION)


def _a_normal_beat(beats, start=500):
    """Index of a beat at or after ``start`` whose neighbours are all valid."""
    valid = beats["valid"].values.astype(bool)
    ok = valid & np.roll(valid, 1) & np.roll(valid, -1) & np.roll(valid, -2)
    return int(start + np.flatnonzero(ok[start:])[0])


# --- the R-peak placement ---------------------------------------------------------


def test_snap_r_peak_finds_the_local_extremum_of_the_polarity():
    fs = 500.0
    x = np.zeros(2000)
    x[1000] = -2.0  # an inverted QRS
    x[1020] = 0.5  # its smaller positive deflection
    assert snap_r_peak(x, fs, [990], polarity=-1).tolist() == [1000]
    assert snap_r_peak(x, fs, [1015], polarity=1).tolist() == [1020]
    assert snap_r_peak(x, fs, [990]).tolist() == [1000]  # largest either way
    # out of the +-50 ms window: not found
    assert snap_r_peak(x, fs, [1100], polarity=-1).tolist() != [1000]
    assert qrs_polarity(x, fs, [1000]) == -1
    with pytest.raises(CardiolabError, match=r"sample \[2500\] outside the ECG"):
        snap_r_peak(x, fs, [2500])


@pytest.mark.parametrize("record, within_10ms", [("100", 0.999), ("105", 0.99)])
def test_a_click_30_ms_off_lands_on_the_annotated_r_peak(shared_data, record, within_10ms):
    """MIT-BIH records (MLII, 360 Hz), expert beat annotations: a reviewer's click up to
    +-30 ms off each annotated beat is placed within 10 ms of the annotation (100: all
    2273 beats; 105, noisy: 99.6 % of 2572), on the same sample as the detector's
    (100 %; 99.6 %)."""
    import wfdb

    from cardiolab.signals.ecg import detect_r_peaks

    path = str(shared_data / "mitdb" / record)
    rec = wfdb.rdrecord(path, channel_names=["MLII"])
    fs, x = float(rec.fs), rec.p_signal[:, 0]
    ann = wfdb.rdann(path, "atr")
    truth = ann.sample[np.isin(ann.symbol, list("NLRBAaJSVrFejnE/fQ"))]
    off = np.round(np.random.default_rng(0).uniform(-0.03, 0.03, truth.size) * fs).astype(int)
    detected = detect_r_peaks(x, fs)
    polarity = qrs_polarity(x, fs, detected)
    snapped = snap_r_peak(x, fs, np.clip(truth + off, 0, x.size - 1), polarity=polarity)
    assert polarity == 1
    assert np.mean(np.abs(snapped - truth) / fs <= 0.010) >= within_10ms
    k = np.clip(np.searchsorted(detected, truth), 1, detected.size - 1)
    nearest = np.where(
        np.abs(detected[k - 1] - truth) < np.abs(detected[k] - truth), detected[k - 1], detected[k]
    )
    found = np.abs(nearest - truth) / fs <= 0.050  # beats the detector found
    assert np.mean(snapped[found] == nearest[found]) >= within_10ms


def test_a_click_on_the_ecg_panel_reaches_the_review_page(camp):
    """session_view links a Tap stream to the ECG panel only (bokeh ``tap`` events)."""
    import holoviews as hv
    from bokeh.document import Document
    from bokeh.models import Plot

    from cardiolab.viz import session_view

    hv.extension("bokeh")
    cat = open_catalog(camp)
    node = cat.open_session(SUBJECT, SESSION)
    tap = hv.streams.Tap(x=None, y=None)
    view = session_view(node, reviewed_beats(cat, SUBJECT, SESSION), ecg_streams=[tap])
    plot = hv.renderer("bokeh").instance(mode="server").get_plot(view, doc=Document())
    figures = {f.yaxis[0].axis_label: f for f in plot.state.select({"type": Plot})}
    assert set(figures) == {"ECG (mV)", "Arterial pressure (mmHg)"}
    assert "tap" in figures["ECG (mV)"].subscribed_events
    assert "tap" not in figures["Arterial pressure (mmHg)"].subscribed_events


# --- editing on a real record -----------------------------------------------------


def test_delete_then_insert_restores_the_rr_series(camp):
    before = reviewed_beats(camp, SUBJECT, SESSION)
    feats_before = _features(camp)
    t, rr, sbp = before["t"].values, before["rr"].values, before["sbp"].values
    n = t.size
    k = _a_normal_beat(before)

    # delete a true beat (as a detector's false negative would look)
    state = edit_beats(camp, SUBJECT, SESSION, delete=[k], reason="test", reviewer="mh")
    assert not state.pending and len(state.flags) == n - 1
    cut = reviewed_beats(camp, SUBJECT, SESSION)
    assert cut.sizes["beat"] == n - 1 and cut.attrs["review_edits"] == 1
    # the RR interval across the gap is the sum of the two it replaced (exact)
    assert cut["rr"].values[k] == pytest.approx(rr[k] + rr[k + 1], abs=1e-9)
    assert int(cut["rr_flag"].values[k]) != 0 and not cut["valid"].values[k]  # a long RR
    np.testing.assert_array_equal(cut["t"].values, np.delete(t, k))
    # the stored tables follow: beats, and features from them
    stored = read_session_results(open_catalog(camp).derived_path, SUBJECT, SESSION, "beats")
    assert stored.sizes["beat"] == n - 1
    detector = read_session_results(open_catalog(camp).derived_path, SUBJECT, SESSION, "detector")
    np.testing.assert_array_equal(detector["t"].values, t)  # the detector's output kept

    # insert it back by a click 30 ms off: placed on the R-peak, the series restored
    edit_beats(camp, SUBJECT, SESSION, insert=[t[k] + 0.030], reason="missed beat")
    back = reviewed_beats(camp, SUBJECT, SESSION)
    assert back.sizes["beat"] == n
    np.testing.assert_array_equal(back["t"].values, t)
    np.testing.assert_allclose(back["rr"].values, rr, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(back["sbp"].values, sbp, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(back["valid"].values, before["valid"].values)
    assert back["beat_edit"].values.tolist() == [0] * k + [1] + [0] * (n - k - 1)
    feats = _features(camp)
    for name in ("hr", "mean_nn", "sdnn", "rmssd", "sbp", "n_beats"):
        np.testing.assert_allclose(feats[name], feats_before[name], rtol=1e-12, err_msg=name)
    assert feats.attrs["review_last_event"] == 2


def test_deleting_a_false_beat_recomputes_its_neighbours(camp):
    before = reviewed_beats(camp, SUBJECT, SESSION)
    t = before["t"].values
    k = _a_normal_beat(before, 300)
    # a false beat inserted mid-cycle (on a T wave, say) splits an RR interval ...
    mid = 0.5 * (t[k] + t[k + 1])
    edit_beats(camp, SUBJECT, SESSION, insert=[mid], window_s=0.01, reason="test")
    split = reviewed_beats(camp, SUBJECT, SESSION)
    j = k + 1
    assert split.sizes["beat"] == t.size + 1
    assert split["rr"].values[j] + split["rr"].values[j + 1] == pytest.approx(
        before["rr"].values[k + 1], abs=1e-9
    )
    hr_split = float(_features(camp)["hr"].sel(epoch="late" if t[k] >= 300 else "early"))
    # ... and deleting it by time restores the interval and the features
    edit_beats(camp, SUBJECT, SESSION, delete=[float(split["t"].values[j])], reason="false")
    back = reviewed_beats(camp, SUBJECT, SESSION)
    np.testing.assert_array_equal(back["t"].values, t)
    assert back["rr"].values[k + 1] == pytest.approx(before["rr"].values[k + 1], abs=1e-9)
    assert float(_features(camp)["hr"].sel(epoch="late" if t[k] >= 300 else "early")) != hr_split


def test_moving_a_beat(camp):
    before = reviewed_beats(camp, SUBJECT, SESSION)
    t, rr = before["t"].values, before["rr"].values
    k = _a_normal_beat(before, 700)
    # move beat k 20 ms early, with a 2-ms window: it lands within 2 ms of there
    state = edit_beats(camp, SUBJECT, SESSION, move=[(k, t[k] - 0.020)], window_s=0.002)
    (old, new), = state.trail["move"].iloc[-1]  # fmt: skip
    assert old == t[k] and abs(new - (t[k] - 0.020)) <= 0.002 + 1e-9
    moved = reviewed_beats(camp, SUBJECT, SESSION)
    assert moved.sizes["beat"] == t.size and moved["beat_edit"].values[k] == 2
    shift = (new - old) * 1000.0
    assert moved["rr"].values[k] == pytest.approx(rr[k] + shift, abs=1e-6)
    assert moved["rr"].values[k + 1] == pytest.approx(rr[k + 1] - shift, abs=1e-6)
    np.testing.assert_array_equal(np.delete(moved["t"].values, k), np.delete(t, k))
    # moved back with the default window: on the R-peak again
    edit_beats(camp, SUBJECT, SESSION, move=[(float(new), t[k] + 0.01)])
    np.testing.assert_array_equal(reviewed_beats(camp, SUBJECT, SESSION)["t"].values, t)


def test_edit_errors_name_the_fault(camp):
    t = reviewed_beats(camp, SUBJECT, SESSION)["t"].values
    with pytest.raises(CardiolabError, match="nothing to insert, delete or move"):
        edit_beats(camp, SUBJECT, SESSION)
    with pytest.raises(CardiolabError, match="falls on an existing beat"):
        edit_beats(camp, SUBJECT, SESSION, insert=[t[10] + 0.01])
    with pytest.raises(CardiolabError, match=r"no beat within 50 ms of 1\.000 s|beat index"):
        edit_beats(camp, SUBJECT, SESSION, delete=[t[0] - 1.0 if t[0] > 1.0 else 1.0])
    with pytest.raises(CardiolabError, match="beat index 99999 out of range"):
        edit_beats(camp, SUBJECT, SESSION, delete=[99999])
    with pytest.raises(CardiolabError, match="outside the ECG"):
        edit_beats(camp, SUBJECT, SESSION, insert=[10_000.0])
    assert len(review_state(camp, SUBJECT, SESSION).trail) == 0


def test_a_pressure_flag_keeps_the_rr_interval(camp):
    before = reviewed_beats(camp, SUBJECT, SESSION)
    feats0 = _features(camp)
    k = _a_normal_beat(before, 100)
    beats = list(range(k, k + 20))
    assert before["abp_valid"].values[beats].all()
    flag_beats(camp, SUBJECT, SESSION, beats, channel="abp", reason="cuff", reviewer="mh")
    recompute_features(camp, SUBJECT, SESSION)
    after = reviewed_beats(camp, SUBJECT, SESSION)
    assert not after["abp_valid"].values[beats].any()
    assert after["reviewer_flag_abp"].values[beats].all()
    np.testing.assert_array_equal(after["valid"].values, before["valid"].values)  # RR kept
    np.testing.assert_array_equal(after["auto_abp_valid"].values, before["abp_valid"].values)
    feats = _features(camp)
    epoch = str(before["epoch"].values[k])
    # pressure counts drop by exactly those beats; the heart-rate features do not move
    drop = feats0["n_beats_abp"].sel(epoch=epoch) - feats["n_beats_abp"].sel(epoch=epoch)
    counted = before["valid"].values[beats] & (before["epoch"].values[beats] == epoch)
    assert int(drop) == int(counted.sum()) > 10
    for name in ("hr", "sdnn", "rmssd", "n_beats"):
        np.testing.assert_allclose(feats[name], feats0[name], rtol=1e-12, err_msg=name)
    keep = after["abp_valid"].values & after["valid"].values & (after["epoch"].values == epoch)
    assert float(feats["sbp"].sel(epoch=epoch)) == pytest.approx(
        after["sbp"].values[keep].mean(), rel=1e-9
    )
    with pytest.raises(CardiolabError, match="unknown channel 'ecg'"):
        flag_beats(camp, SUBJECT, SESSION, [1], channel="ecg", reviewer="mh")


def test_reprocessing_keeps_the_edits_and_the_raw_data_is_not_written(camp, shared_data):
    raw = shared_data / "bp"
    stamp = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in raw.iterdir()}
    t = reviewed_beats(camp, SUBJECT, SESSION)["t"].values
    k = 400
    edit_beats(camp, SUBJECT, SESSION, delete=[k], reason="x")
    rep = process_campaign(camp, client="sync", force=True, progress=False)
    assert rep.n_done == 1
    again = reviewed_beats(camp, SUBJECT, SESSION)
    np.testing.assert_array_equal(again["t"].values, np.delete(t, k))
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in raw.iterdir()} == stamp


# --- identity, chain, export -----------------------------------------------------


def test_events_are_signed_by_the_os_user_with_version_and_utc_time(camp):
    state = flag_beats(camp, SUBJECT, SESSION, [3], reason="noise")
    row = state.trail.iloc[-1]
    assert row["reviewer"] == getpass.getuser()
    assert row["cardiolab_version"] == __import__("cardiolab").__version__
    folder = open_catalog(camp).derived_path / "_annotations" / SUBJECT / SESSION
    stored = json.loads((folder / "e000001.json").read_text())
    assert stored["time"].endswith("+00:00") and pd.Timestamp(stored["time"]).tzinfo
    assert stored["previous_hash"] == "" and stored["hash"] == event_hash(stored)
    assert {"reviewer", "action", "beats", "reason", "cardiolab_version"} <= set(stored)


def test_tampering_with_a_stored_event_is_detected(camp):
    for i in range(3):
        flag_beats(camp, SUBJECT, SESSION, [10 + i], reviewer=f"r{i}", reason="artefact")
    recompute_features(camp, SUBJECT, SESSION)
    check = verify_trail(camp, SUBJECT, SESSION)
    assert check["status"].tolist() == ["verified"] and check["n_events"].tolist() == [3]
    folder = open_catalog(camp).derived_path / "_annotations" / SUBJECT / SESSION
    path = folder / "e000002.json"
    original = path.read_text()
    event = json.loads(original)
    event["beats"] = [11, 12]  # a later edit of the stored event
    path.write_text(json.dumps(event))
    check = verify_trail(camp)
    assert check["status"].tolist() == ["broken"] and check["first_broken"].tolist() == [2]
    assert "event 2: content changed" in check["message"].iloc[0]
    with pytest.raises(CardiolabError, match=r"S01 R\+1 is broken: event 2"):
        verify_trail(camp, strict=True)
    # recomputing the hash too does not help: the next event names the old one
    event["hash"] = event_hash(event)
    path.write_text(json.dumps(event))
    check = verify_trail(camp)
    assert check["first_broken"].tolist() == [3] and "does not follow event 2" in str(
        check["message"].iloc[0]
    )
    # the last event removed: the stored results say 3 events were applied
    path.write_text(original)
    (folder / "e000003.json").unlink()
    check = verify_trail(camp)
    assert check["status"].tolist() == ["broken"] and check["first_broken"].tolist() == [3]
    assert cli_main(["trail", "verify", str(camp)]) == 1


def test_a_trail_rewritten_as_a_whole_is_caught_against_an_earlier_export(camp, tmp_path):
    """Every hash recomputed after an edit makes a valid chain again; an earlier export
    (kept elsewhere) still shows the rewrite, and the head printed by ``trail verify``
    is the last event's hash."""
    for i in range(3):
        flag_beats(camp, SUBJECT, SESSION, [10 + i], reviewer=f"r{i}", reason="artefact")
    earlier = export_trail(camp, tmp_path / "earlier.json")
    check = verify_trail(camp, against=earlier)
    folder = open_catalog(camp).derived_path / "_annotations" / SUBJECT / SESSION
    events = [json.loads((folder / f"e{n:06d}.json").read_text()) for n in (1, 2, 3)]
    assert check["status"].tolist() == ["verified"]
    assert check["head"].tolist() == [events[2]["hash"]]
    # a later event is fine: the export's events are all there, unchanged
    flag_beats(camp, SUBJECT, SESSION, [20], reviewer="r3", reason="artefact")
    assert verify_trail(camp, against=earlier)["status"].tolist() == ["verified"]
    # rewrite event 2 and re-chain every event after it
    events = [json.loads((folder / f"e{n:06d}.json").read_text()) for n in (1, 2, 3, 4)]
    events[1]["reviewer"] = "someone else"
    for k in range(1, 4):
        events[k]["previous_hash"] = events[k - 1]["hash"]
        events[k]["hash"] = event_hash(events[k])
        (folder / f"e{k + 1:06d}.json").write_text(json.dumps(events[k]))
    assert verify_trail(camp)["status"].tolist() == ["verified"]  # its own chain holds
    check = verify_trail(camp, against=earlier)
    assert check["status"].tolist() == ["broken"] and check["first_broken"].tolist() == [2]
    assert "differs from the earlier export (the trail was rewritten)" in check["message"][0]
    assert cli_main(["trail", "verify", str(camp), "--against", str(earlier)]) == 1
    # an event of the export gone since (pure check on the events)
    (entry,) = json.loads(earlier.read_text(encoding="utf-8"))["sessions"]
    exported = entry["events"]
    assert compare_with_export(events, exported)["status"] == "broken"  # rewritten 2
    kept = [json.loads((folder / "e000001.json").read_text())]
    result = compare_with_export(kept, exported[:1] + [{"event_id": 2, "hash": "ab"}])
    assert result["first_broken"] == 2 and "missing now" in result["message"]
    assert compare_with_export(kept, exported[:1]) is None
    bad = tmp_path / "not_an_export.json"
    bad.write_text('{"sessions": [{"subject": "S01"}]}')
    with pytest.raises(CardiolabError, match=r"not_an_export.json: not a JSON trail export"):
        verify_trail(camp, against=bad)


def test_verify_trail_names_what_the_catalog_has(camp):
    from cardiolab.errors import CatalogError

    with pytest.raises(CatalogError, match=r"unknown subject 'S99' \(the catalog's subjects: S01"):
        verify_trail(camp, "S99")
    with pytest.raises(CatalogError, match=r"subject S01 has no session 'X' \(its sessions: "):
        verify_trail(camp, SUBJECT, "X")
    with pytest.raises(CardiolabError, match="named by its subject too"):
        verify_trail(camp, session=SESSION)
    assert verify_trail(camp, SUBJECT).empty  # a known subject without a trail


def test_old_trails_read_but_are_never_verified(camp):
    folder = open_catalog(camp).derived_path / "_annotations" / SUBJECT / SESSION
    folder.mkdir(parents=True)
    t = reviewed_beats(camp, SUBJECT, SESSION)["t"].values
    old = {  # an event as cardiolab wrote them before the chain
        "event_id": 1,
        "time": "2026-05-01T08:00:00+00:00",
        "reviewer": "mh",
        "action": "flag",
        "beats": [5],
        "reason": "artefact",
        "beat_t": [float(t[5])],
        "beat_table": "older",
        "subject": SUBJECT,
        "session": SESSION,
        "cardiolab_version": "0.0.9",
    }
    (folder / "e000001.json").write_text(json.dumps(old))
    assert review_state(camp, SUBJECT, SESSION).flags.iloc[5]
    check = verify_trail(camp)
    assert check["status"].tolist() == ["unchained"] and check["first_broken"].tolist() == [0]
    with pytest.raises(CardiolabError, match="is unchained"):
        verify_trail(camp, strict=True)
    flag_beats(camp, SUBJECT, SESSION, [6], reviewer="jd")
    stored = json.loads((folder / "e000002.json").read_text())
    assert stored["previous_hash"] == event_hash(old)
    assert verify_trail(camp)["status"].tolist() == ["partly chained"]
    old["reason"] = "changed later"  # the first chained event covers the last old one
    (folder / "e000001.json").write_text(json.dumps(old))
    assert verify_trail(camp)["first_broken"].tolist() == [2]


def test_export_round_trip(camp, tmp_path):
    flag_beats(camp, SUBJECT, SESSION, [3, 4], reviewer="mh", reason='a "quoted", reason')
    flag_beats(camp, SUBJECT, SESSION, [4], reviewer="jd", flagged=False, channel="abp")
    t = reviewed_beats(camp, SUBJECT, SESSION)["t"].values
    edit_beats(camp, SUBJECT, SESSION, delete=[8], move=[(9, t[9] + 0.01)], reviewer="ak")
    store = derived_store(open_catalog(camp))
    trail = read_trail(store, SUBJECT, SESSION)

    doc = json.loads(export_trail(camp, tmp_path / "trail.json").read_text(encoding="utf-8"))
    (entry,) = doc["sessions"]
    assert entry["events"] == store.read_events(SUBJECT, SESSION)  # as stored
    assert verify_events(entry["events"])["status"] == "verified"  # verifiable from the file
    assert entry["verification"]["status"] == "verified"

    assert cli_main(["trail", "export", str(camp), str(tmp_path / "trail.csv")]) == 0
    csv = pd.read_csv(tmp_path / "trail.csv", keep_default_na=False)
    assert csv["event_id"].tolist() == trail["event_id"].tolist() == [1, 2, 3]
    for col in ("reviewer", "action", "channel", "reason", "hash", "previous_hash"):
        assert csv[col].tolist() == trail[col].tolist(), col
    assert pd.to_datetime(csv["time"], utc=True, format="ISO8601").tolist() == list(trail["time"])
    beats = csv["beats"].map(lambda s: tuple(int(x) for x in str(s).split()))
    assert beats.tolist() == trail["beats"].tolist()
    moves = csv["move"].iloc[2].split(">")
    assert (float(moves[0]), float(moves[1])) == trail["move"].iloc[2][0]
    assert set(csv["chain_status"]) == {"verified"}
    with pytest.raises(CardiolabError, match="as .csv or .json"):
        export_trail(camp, tmp_path / "trail.xlsx")


# --- two reviewers ----------------------------------------------------------------


def test_a_change_is_named_for_its_confirmation():
    from cardiolab.dashboards.session_review import describe_change

    edit = {
        "event_id": 9,
        "reviewer": "mh",
        "action": "edit",
        "channel": "beat",
        "beats": (4, 7),
        "beat_t": (3.0, 5.5),
        "insert_t": (8.25,),
        "move": ((5.5, 5.52),),
        "reason": "",
    }
    assert describe_change(edit) == (
        "change 9 by mh: delete beat 4 (3.000 s), insert a beat at 8.250 s, "
        "move the beat at 5.500 s to 5.520 s"
    )
    flag = {**edit, "action": "flag", "channel": "abp", "beats": (12, 13)}
    flag.update(beat_t=(10.0, 10.8), insert_t=(), move=(), reason="cuff")
    assert describe_change(flag) == (
        "change 9 by mh: flag abp values of beat 12 (10.000 s), 13 (10.800 s), reason: cuff"
    )


def test_two_reviewer_mode(camp2):
    state = flag_beats(camp2, SUBJECT, SESSION, [20, 21], reviewer="mh", reason="noise")
    assert state.confirmations == 2 and state.n_flagged == 0 and state.n_waiting == 1
    waiting = pending_changes(camp2)
    assert waiting[["event_id", "reviewer", "status"]].values.tolist() == [[1, "mh", "pending"]]
    with pytest.raises(CardiolabError, match="mh's own change"):
        confirm_change(camp2, SUBJECT, SESSION, 1, reviewer="mh")
    state = confirm_change(camp2, SUBJECT, SESSION, 1, reviewer="jd", reason="agreed")
    assert list(np.flatnonzero(state.flags.to_numpy())) == [20, 21]
    assert len(pending_changes(camp2)) == 0
    stored = read_session_results(open_catalog(camp2).derived_path, SUBJECT, SESSION, "beats")
    assert stored["reviewer_flag"].values[[20, 21]].all()

    # a beat edit waits too; a rejection makes it a disagreement, never applied
    n = len(state.flags)
    state = edit_beats(camp2, SUBJECT, SESSION, delete=[30], reviewer="jd", reason="false")
    assert len(state.flags) == n
    confirm_change(camp2, SUBJECT, SESSION, 3, reviewer="mh", agree=False, reason="<b>real</b>")
    table = pending_changes(camp2)
    assert table[["event_id", "status", "rejected_by", "objection"]].values.tolist() == [
        [3, "disagreement", "mh", "<b>real</b>"]
    ]
    assert len(reviewed_beats(camp2, SUBJECT, SESSION)["t"]) == n
    with pytest.raises(CardiolabError, match="event 2 is not a change"):
        confirm_change(camp2, SUBJECT, SESSION, 2, reviewer="ak")
    assert verify_trail(camp2)["status"].tolist() == ["verified"]

    # the Session page answers a change too, signed by its reviewer (here: the OS user)
    from cardiolab.dashboards.session_review import SessionReview

    flag_beats(camp2, SUBJECT, SESSION, [40], reviewer="someone-else")
    review = SessionReview(camp2, subject=SUBJECT, session=SESSION)
    review.change_id = 5
    review.answer_change(True)
    last = review_state(camp2, SUBJECT, SESSION).trail.iloc[-1]
    assert (last["action"], last["refers_to"], last["reviewer"]) == (
        "confirm",
        5,
        getpass.getuser(),
    )
    assert review_state(camp2, SUBJECT, SESSION).flags.iloc[40]

    # a page another reviewer's change made stale refuses, and brings itself up to date
    flag_beats(camp2, SUBJECT, SESSION, [50], reviewer="ak")  # event 7: the page shows 6
    review.answer_change(True)
    assert review_state(camp2, SUBJECT, SESSION).trail["event_id"].tolist()[-1] == 7
    said = review._message.object.replace("\\", "")  # markdown-escaped text, as shown
    assert "changed since this page showed it (flag (event 7) by ak)" in said
    t50 = float(reviewed_beats(camp2, SUBJECT, SESSION)["t"].values[50])
    assert list(review._waiting.options.items()) == [
        (f"change 7 by ak: flag beat 50 ({t50:.3f} s), reason: artefact", 7)
    ]
    assert review.change_id == 7

    def pending_on_the_plot():
        """The points of the beat plot's layer of beats awaiting a second reviewer."""
        (layer,) = [el for el in review._points.object if el.label == "awaiting a second reviewer"]
        return layer.dframe().iloc[:, 0].dropna().tolist()

    # the beat plot marks the beat the change waiting names, and only it
    assert pending_on_the_plot() == [t50]
    review._draw_points()  # another variable drawn: the same beats marked
    assert pending_on_the_plot() == [t50]
    review.answer_change(True)
    last = review_state(camp2, SUBJECT, SESSION).trail.iloc[-1]
    assert (last["event_id"], last["action"], last["refers_to"]) == (8, "confirm", 7)
    assert pending_on_the_plot() == []  # confirmed: no longer waiting
    assert "in effect: beats and features recomputed" in review._message.object.replace("\\", "")

    # the Campaign page lists the disagreement, its text as text
    from cardiolab.dashboards.campaign import CampaignPage

    page = CampaignPage(camp2)
    shown = page._pending.value
    assert shown[["subject", "session", "event_id", "reviewer", "status"]].values.tolist() == [
        [SUBJECT, SESSION, 3, "jd", "disagreement"]
    ]
    assert shown["objection"].tolist() == ["<b>real</b>"]  # plaintext cells: shown, not run
    assert "0 change(s) awaiting confirmation, 1 disagreement(s)" in page._review_summary.object
