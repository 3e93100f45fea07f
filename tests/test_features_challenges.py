"""Challenges as the catalog declares them: responses, initial orthostatic response,
orthostatic tolerance, LBNP steps, PORH and local heating through the pipeline."""

import json
import re

import numpy as np
import pytest
import xarray as xr
import yaml

from cardiolab import schema
from cardiolab.catalog import open_catalog
from cardiolab.errors import CatalogError
from cardiolab.features import (
    challenge_windows,
    initial_orthostatic_response,
    orthostatic_tolerance,
)
from cardiolab.features.challenges import response_names
from cardiolab.pipeline import (
    features_table,
    process_campaign,
    responses_table,
    session_results,
)
from cardiolab.signals.beats import beat_table
from cardiolab.simulate.ldf_challenges import simulate_local_heating, simulate_porh


def _catalog(folder, protocol, events=None):
    (folder / "store.zarr").mkdir(exist_ok=True)
    session = {"subject": "S01", "label": "R+1"}
    if events is not None:
        session["events"] = events
    data = {
        "version": 1,
        "campaign": {"name": "t", "kind": "spaceflight"},
        "derived": "derived.zarr",
        "store": "store.zarr",
        "protocols": {"p": protocol},
        "subjects": [{"code": "S01"}],
        "sessions": [session],
    }
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


TILT = {
    "posture": "supine",
    "epochs": [
        {"label": "rest", "start": 0, "stop": 300},
        {"label": "tilt80", "start": 300, "stop": 1500},
    ],
    "challenges": [
        {
            "name": "hut",
            "kind": "tilt",
            "baseline": "rest",
            "challenge": "tilt80",
            "windows": {"first30": [0, 30], "last60": [-60, 0]},
        }
    ],
}


def test_catalog_refuses_a_challenge_naming_an_epoch_the_protocol_lacks(tmp_path):
    bad = json.loads(json.dumps(TILT))
    bad["challenges"][0]["challenge"] = "tilt"
    with pytest.raises(CatalogError) as err:
        open_catalog(_catalog(tmp_path, bad))
    msg = str(err.value)
    assert "protocols.p" in msg
    assert "challenges[0] (hut): epoch 'tilt' is not in the protocol" in msg
    assert "['rest', 'tilt80']" in msg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"windows": {"w": [10, 5]}}, "window 'w' [10, 5] s"),
        ({"windows": {"w": [-10, 5]}}, "window 'w' [-10, 5] s"),
        ({"kind": "porh"}, "names its occlusion epoch"),
        ({"maximal": "rest"}, "'maximal' is for local_heating"),
        ({"kind": "swim"}, "kind"),
        ({"challenge": []}, "non-empty list of steps"),
        ({"name": "rest"}, "also epoch labels"),
    ],
)
def test_catalog_refuses_bad_challenges(tmp_path, change, message):
    bad = json.loads(json.dumps(TILT))
    bad["challenges"][0].update(change)
    with pytest.raises(CatalogError, match=re.escape(message)):
        open_catalog(_catalog(tmp_path, bad))


def test_events_and_challenges_reach_the_protocol_group(tmp_path):
    cat = open_catalog(_catalog(tmp_path, TILT, events=[{"label": "presyncope", "time": 912.5}]))
    entry = cat.model.sessions[0]
    assert entry.events[0].time == 912.5
    assert cat.model.protocols["p"].challenges[0].steps == ["tilt80"]


def test_response_names_and_windows():
    c = TILT["challenges"][0]
    assert response_names(c) == ["hut", "hut:first30", "hut:last60"]
    lbnp = {"baseline": "rest", "challenge": ["lbnp20", "lbnp40"], "windows": {"end": [-30, 0]}}
    assert response_names(lbnp) == [
        "lbnp20-rest",
        "lbnp40-rest",
        "lbnp20-rest:end",
        "lbnp40-rest:end",
    ]
    assert response_names({**lbnp, "name": "lbnp"})[:2] == ["lbnp:lbnp20", "lbnp:lbnp40"]
    epochs = [("rest", 0.0, 300.0), ("tilt80", 300.0, 1500.0)]
    assert challenge_windows(epochs, [c]) == [
        ("tilt80:first30", 300.0, 330.0),
        ("tilt80:last60", 1440.0, 1500.0),
    ]


def _tilt_beats(presyncope=None):
    """Beats of a tilt with a known initial response: MAP falls by 18 mmHg to its
    nadir 9 s after the tilt and HR peaks 30 bpm above rest 12 s after it."""
    t = np.arange(0.5, 1500.0, 0.8)
    hr = np.full(t.size, 60.0)
    map_ = np.full(t.size, 90.0)
    after = t - 300.0
    bump = (after >= 0) & (after < 30)
    map_[bump] -= 18.0 * np.exp(-(((after[bump] - 9.0) / 3.0) ** 2))
    hr[bump] += 30.0 * np.exp(-(((after[bump] - 12.0) / 3.0) ** 2))
    hr[after >= 30] = 80.0
    rr = 60000.0 / hr
    return xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", rr, {"units": "ms"}),
            "map": ("beat", map_, {"units": "mmHg"}),
            "sbp": ("beat", map_ + 30, {"units": "mmHg"}),
            "dbp": ("beat", map_ - 15, {"units": "mmHg"}),
            "valid": ("beat", np.ones(t.size, bool)),
        }
    )


def test_initial_orthostatic_response_finds_the_nadir_and_peak():
    b = _tilt_beats()
    out = initial_orthostatic_response(
        b["t"].values,
        b["map"].values,
        b["rr"].values,
        change_s=300.0,
        baseline_map=90.0,
        baseline_hr=60.0,
    )
    i = np.argmin(np.abs(b["t"].values - 309.0))
    assert out["initial_map_nadir"] == pytest.approx(float(b["map"][i]), abs=1e-9)
    assert out["initial_map_drop"] == pytest.approx(-18.0, abs=0.3)
    assert out["initial_map_nadir_time"] == pytest.approx(9.0, abs=0.4)
    assert out["initial_hr_rise"] == pytest.approx(30.0, abs=0.5)
    assert out["initial_hr_peak_time"] == pytest.approx(12.0, abs=0.4)
    nan = initial_orthostatic_response(
        b["t"].values,
        np.full(b.sizes["beat"], np.nan),
        b["rr"].values,
        change_s=300.0,
        baseline_map=90.0,
        baseline_hr=60.0,
    )
    assert np.isnan(nan["initial_map_nadir"]) and "no valid pressure beat" in nan["reason"]


@pytest.mark.parametrize(
    ("events", "time", "completed"),
    [
        ([], 1200.0, 1.0),
        ([{"label": "presyncope", "time": 912.5}], 612.5, 0.0),
        ([{"label": "presyncope", "time": 100.0}], 1200.0, 1.0),  # before the tilt
        ([{"label": "nausea", "time": 912.5}], 1200.0, 1.0),
    ],
)
def test_orthostatic_tolerance(events, time, completed):
    out = orthostatic_tolerance(300.0, 1500.0, events)
    assert out == {"tolerance_time": time, "tolerance_completed": completed}


def _node(protocol, events=(), **groups):
    proto = schema.protocol_group([(e["label"], e["start"], e["stop"]) for e in protocol["epochs"]])
    proto.attrs["challenges"] = json.dumps(protocol["challenges"])
    if events:
        proto.attrs["events"] = json.dumps(list(events))
    node = schema.session_node({"protocol": proto, **groups}, subject="S01", session="R+1")
    return node


def test_tilt_through_session_results():
    beats = _tilt_beats()
    node = _node(TILT, events=[{"label": "presyncope", "time": 912.5}])
    feats, resp = session_results(beats, node)
    assert feats["epoch"].values.tolist() == ["rest", "tilt80", "hut"]
    hut = feats.sel(epoch="hut")
    want = float(feats["hr"].sel(epoch="tilt80") - feats["hr"].sel(epoch="rest"))
    assert float(hut["hr"]) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(20.0, abs=0.5)  # 80 - 60 bpm, and the first 30 s
    assert float(hut["tolerance_time"]) == 612.5 and float(hut["tolerance_completed"]) == 0
    assert float(hut["initial_map_drop"]) == pytest.approx(-18.0, abs=0.3)
    assert np.isnan(feats["tolerance_time"].sel(epoch="rest"))
    assert resp["response"].values.tolist() == ["hut", "hut:first30", "hut:last60"]
    last = resp.sel(response="hut:last60")
    assert float(last["hr"]) == pytest.approx(20.0, abs=1e-6)
    assert float(last["hr_pct"]) == pytest.approx(100 * 20.0 / float(feats["hr"][0]), rel=1e-9)
    assert str(last["window"].values) == "last60" and str(last["challenge"].values) == "tilt80"
    assert np.isnan(float(last["tolerance_time"]))  # outcomes on the whole-challenge row
    assert resp["hr_pct"].attrs["units"] == "%"


def test_lbnp_gives_one_response_per_step_and_tolerance_over_all_steps():
    steps = [f"lbnp{p}" for p in (20, 30, 40, 50)]
    protocol = {
        "epochs": [{"label": "rest", "start": 0, "stop": 300}]
        + [
            {"label": s, "start": 300 + 180 * i, "stop": 480 + 180 * i} for i, s in enumerate(steps)
        ],
        "challenges": [{"kind": "lbnp", "baseline": "rest", "challenge": steps}],
    }
    t = np.arange(0.5, 1020.0, 0.8)
    level = np.digitize(t, [300, 480, 660, 840])  # 0 rest, 1..4 the steps
    rr = 1000.0 - 60.0 * level
    beats = xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", rr, {"units": "ms"}),
            "valid": ("beat", np.ones(t.size, bool)),
        }
    )
    node = _node(protocol, events=[{"label": "presyncope", "time": 950.0}])
    feats, resp = session_results(beats, node)
    names = [f"{s}-rest" for s in steps]
    assert feats["epoch"].values.tolist()[5:] == names
    for k, name in enumerate(names, start=1):
        assert float(resp["mean_nn"].sel(response=name)) == pytest.approx(-60.0 * k, abs=1e-6)
    assert np.isnan(float(feats["tolerance_time"].sel(epoch=names[0])))
    assert float(feats["tolerance_time"].sel(epoch=names[-1])) == 650.0
    assert float(feats["tolerance_completed"].sel(epoch=names[-1])) == 0.0


def _ldf_node(sim, challenge):
    protocol = {
        "epochs": [{"label": lab, "start": a, "stop": b} for lab, a, b in sim.epochs],
        "challenges": [challenge],
    }
    ldf = schema.signal_group(sim.flux.astype("float32"), sim.fs, "ldf")
    node = _node(protocol, ldf=ldf)
    return node


@pytest.mark.parametrize("seed", [3, 4])
def test_porh_in_an_ldf_only_session_matches_the_simulated_truth(seed):
    sim = simulate_porh(seed, vasomotion=False)
    labels = [e[0] for e in sim.epochs]
    challenge = {
        "kind": "porh",
        "baseline": labels[0],
        "occlusion": labels[1],
        "challenge": labels[2],
    }
    node = _ldf_node(sim, challenge)
    beats = beat_table(node)
    assert beats.sizes["beat"] == 0 and "no ECG" in beats.attrs["beats"]
    feats, _ = session_results(beats, node)
    row = feats.isel(epoch=-1)
    truth = sim.truth
    assert float(row["porh_peak_flux"]) == pytest.approx(truth["peak_flux"], rel=0.05)
    assert float(row["porh_bz_flux"]) == pytest.approx(truth["bz_flux"], rel=0.05)
    assert float(row["porh_time_to_peak"]) == pytest.approx(truth["time_to_peak"], abs=2.0)
    assert float(row["porh_hyperaemic_area"]) == pytest.approx(truth["hyperaemic_area"], rel=0.1)
    assert "hrv_time" in json.loads(feats.attrs["skipped"])


def test_local_heating_in_an_ldf_only_session_matches_the_simulated_truth():
    sim = simulate_local_heating(5, vasomotion=False)
    labels = [e[0] for e in sim.epochs]
    challenge = {
        "kind": "local_heating",
        "baseline": labels[0],
        "challenge": labels[1],
        "maximal": labels[2],
    }
    node = _ldf_node(sim, challenge)
    feats, _ = session_results(beat_table(node), node)
    row = feats.isel(epoch=-1)
    for key in ("initial_peak_flux", "plateau_flux", "max_flux"):
        assert float(row[f"heating_{key}"]) == pytest.approx(sim.truth[key], rel=0.05), key
    assert float(row["heating_plateau_pct_max"]) == pytest.approx(
        100 * sim.truth["plateau_flux"] / sim.truth["max_flux"], abs=2.0
    )


def test_ldf_challenge_without_ldf_is_a_flag_not_a_crash():
    beats = _tilt_beats()
    protocol = {
        "epochs": [
            {"label": "base", "start": 0, "stop": 300},
            {"label": "occl", "start": 300, "stop": 600},
            {"label": "rel", "start": 600, "stop": 1200},
        ],
        "challenges": [
            {"kind": "porh", "baseline": "base", "occlusion": "occl", "challenge": "rel"}
        ],
    }
    feats, resp = session_results(beats, _node(protocol))
    flags = json.loads(resp.attrs["flags"])
    assert flags == [
        {
            "challenge": "rel-base",
            "response": "rel-base",
            "reason": "porh: no ldf group in this session",
        }
    ]
    assert "porh_peak_flux" not in feats


def test_demo_campaign_declares_the_stand_test(small_campaign, tmp_path):
    """The simulated campaign declares its stand test in the catalog: processed, every
    session has the stand-supine row (with tolerance: the whole 60-s stand) and the
    responses table its windows, with percent responses that agree with the features."""
    path, _ = small_campaign
    cat = open_catalog(path / "data_catalog.yaml")
    proto = cat.model.protocols["supine-stand"]
    assert proto.challenges[0].kind == "orthostatic"
    report = process_campaign(path / "data_catalog.yaml", client="sync", progress=False)
    assert len(report.failures) == 0
    table = features_table(cat)
    stand = table[table["epoch"] == "stand-supine"]
    assert len(stand) == len(cat.sessions)
    assert (stand["tolerance_time"] == 60.0).all() and (stand["tolerance_completed"] == 1).all()
    assert stand["initial_hr_peak"].notna().all()
    resp = responses_table(cat)
    assert sorted(set(resp["response"])) == [
        "stand-supine",
        "stand-supine:initial",
        "stand-supine:late",
    ]
    assert resp.attrs["units"]["hr_pct"] == "%"
    sup = table[table["epoch"] == "supine"].set_index(["subject", "session"])["hr"]
    whole = resp[resp["window"] == ""].set_index(["subject", "session"])
    np.testing.assert_allclose(whole["hr_pct"], 100 * whole["hr"] / sup.loc[whole.index].abs())


def test_valsalva_ratio_through_the_catalog_declaration():
    """A 15-s strain (HR up to 100 bpm) then a bradycardia to 50 bpm: ratio 1200/600 = 2."""
    t = np.arange(0.5, 200.0, 0.8)
    rr = np.full(t.size, 900.0)
    rr[(t >= 60) & (t < 75)] = 600.0
    rr[(t >= 80) & (t < 84)] = 1200.0
    beats = xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", rr, {"units": "ms"}),
            "valid": ("beat", np.ones(t.size, bool)),
        }
    )
    protocol = {
        "epochs": [
            {"label": "rest", "start": 0, "stop": 60},
            {"label": "strain", "start": 60, "stop": 75},
            {"label": "recovery", "start": 75, "stop": 200},
        ],
        "challenges": [
            {"name": "valsalva", "kind": "valsalva", "baseline": "rest", "challenge": "strain"}
        ],
    }
    feats, _ = session_results(beats, _node(protocol))
    assert float(feats["valsalva_ratio"].sel(epoch="valsalva")) == pytest.approx(2.0)
    assert np.isnan(feats["valsalva_ratio"].sel(epoch="rest"))
