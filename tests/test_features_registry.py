"""The feature registry: declarations, unit checks at the door, flags, skips, overrides,
and the per-epoch cerebral autoregulation against CARNet's reference script."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cardiolab import schema
from cardiolab.errors import UnitError
from cardiolab.features import epoch_features
from cardiolab.features.registry import (
    BEAT_INPUTS,
    Output,
    Parameter,
    feature_outputs,
    feature_parameters,
    features,
    get_feature,
    register_feature,
)


def _beats(n=400, seed=0, vessels=("mca",)):
    rng = np.random.default_rng(seed)
    rr = 900.0 + 40.0 * np.sin(np.arange(n) / 5.0) + rng.normal(0, 15, n)
    t = np.cumsum(rr) / 1000.0
    sbp = 120.0 + 5.0 * np.sin(np.arange(n) / 5.0) + rng.normal(0, 2, n)
    vel = 60.0 + 0.8 * (sbp - 120.0)[:, None] + rng.normal(0, 1, (n, len(vessels)))
    ds = xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", rr, {"units": "ms"}),
            "sbp": ("beat", sbp, {"units": "mmHg"}),
            "dbp": ("beat", sbp - 40.0, {"units": "mmHg"}),
            "map": ("beat", sbp - 27.0, {"units": "mmHg"}),
            "valid": ("beat", np.ones(n, bool)),
            "tamv": (("beat", "vessel"), vel, {"units": "cm/s"}),
        },
        coords={"vessel": list(vessels)},
    )
    proto = schema.protocol_group(
        [("rest", 0.0, float(t[n // 2])), ("stand", float(t[n // 2]), float(t[-1]) + 1)]
    )
    return ds, proto


def test_every_feature_declares_units_long_names_and_sourced_parameters():
    seen = {}
    for f in features():
        assert f.source, f.name
        assert f.outputs, f.name
        for name, out in f.outputs.items():
            assert out.units and out.long_name, (f.name, name)
            assert name not in seen, f"{name} declared by {seen.get(name)} and {f.name}"
            seen[name] = f.name
        for pname, p in f.parameters.items():
            assert p.source and p.description and p.units, (f.name, pname)
    assert feature_outputs()["sampen"][0] == "hrv_nonlinear"
    assert feature_outputs()["{vessel}_tfa_gain_lf"][1].units == "cm/s/mmHg"


def test_declaring_a_bad_feature_is_refused():
    with pytest.raises(ValueError, match="unknown input 'sv_typo'"):
        register_feature("x1", inputs={"sv_typo": "mL"}, outputs={}, source="s")(lambda e: {})
    with pytest.raises(ValueError, match="in 'mmHg' in the data model, declared 'kPa'"):
        register_feature("x2", inputs={"sbp": "kPa"}, outputs={}, source="s")(lambda e: {})
    with pytest.raises(ValueError, match="outputs already declared: {'hr': 'hrv_time'}"):
        register_feature("x3", inputs={"rr": "ms"}, outputs={"hr": Output("bpm", "h")}, source="s")(
            lambda e: {}
        )
    with pytest.raises(ValueError, match="already registered"):
        register_feature("hrv_time", inputs={}, outputs={}, source="s")(lambda e: {})
    assert "x1" not in {f.name for f in features()}


def test_input_units_are_checked_at_the_door():
    beats, proto = _beats()
    bad = beats.assign(tamv=beats["tamv"].assign_attrs(units="m/s"))
    with pytest.raises(UnitError, match="input 'tamv' is in 'm/s', expected 'cm/s'"):
        epoch_features(bad, None, proto)


def test_missing_inputs_skip_the_feature_and_say_why():
    beats, proto = _beats()
    feats = epoch_features(beats.drop_vars(["sbp", "dbp", "map"]), None, proto)
    skipped = json.loads(feats.attrs["skipped"])
    assert skipped["blood_pressure"] == "no sbp, dbp, map in this session"
    assert "cerebral_autoregulation" in skipped and "sbp" not in feats
    assert skipped["ldf_vasomotion"] == "no ldf in this session"
    assert np.isfinite(feats["sdnn"]).all()


def test_too_short_an_epoch_is_nan_with_a_flag_naming_feature_epoch_and_reason():
    beats, _ = _beats()
    t = beats["t"].values
    proto = schema.protocol_group([("short", 0.0, 60.0), ("long", 60.0, float(t[-1]) + 1)])
    feats = epoch_features(beats, None, proto)
    flags = json.loads(feats.attrs["flags"])
    tfa = [f for f in flags if f["feature"] == "cerebral_autoregulation"]
    assert [f["epoch"] for f in tfa] == ["short"]
    assert tfa[0]["vessel"] == "mca" and "TFA" in tfa[0]["reason"] and "window" in tfa[0]["reason"]
    assert np.isnan(feats["mca_tfa_gain_lf"].sel(epoch="short"))
    assert np.isfinite(feats["mca_tfa_gain_lf"].sel(epoch="long"))


def test_parameters_are_overridable_stored_and_in_the_provenance():
    beats, proto = _beats()
    feats = epoch_features(beats, None, proto, parameters={"hrv_frequency": {"lf": (0.05, 0.15)}})
    base = epoch_features(beats, None, proto)
    assert json.loads(feats.attrs["parameters"])["hrv_frequency"]["lf"] == [0.05, 0.15]
    assert json.loads(base.attrs["parameters"])["hrv_frequency"]["lf"] == [0.04, 0.15]
    assert float(feats["lf"][0]) < float(base["lf"][0])
    with pytest.raises(KeyError, match="has no parameter"):
        epoch_features(beats, None, proto, parameters={"hrv_frequency": {"lff": 1}})
    with pytest.raises(KeyError, match="unknown feature"):
        epoch_features(beats, None, proto, parameters={"hrv_freq": {}})
    prov = feature_parameters()
    assert prov["baroreflex_sequence"]["parameters"]["min_r"] == 0.85
    assert prov["cerebral_autoregulation"]["parameters"]["tfa"]["window_length"] == 102.4


def test_each_output_carries_units_long_name_and_feature():
    beats, proto = _beats()
    feats = epoch_features(beats, None, proto, select=["hrv_time", "cerebral_autoregulation"])
    assert feats["rmssd"].attrs == {
        "units": "ms",
        "long_name": "root mean square of successive NN differences",
        "feature": "hrv_time",
    }
    assert feats["mca_tfa_phase_lf"].attrs["units"] == "degree"
    assert feats["mca_tfa_phase_lf"].attrs["long_name"].startswith("mca MAP-to-CBFV")
    assert "sdnn" in feats and "sbp" not in feats


def test_only_cerebral_vessels_get_autoregulation():
    beats, proto = _beats(vessels=("femoral", "mca_r"))
    feats = epoch_features(beats, None, proto, select=["cerebral_autoregulation"])
    assert "mca_r_tfa_gain_lf" in feats and "femoral_tfa_gain_lf" not in feats


def test_a_feature_reads_earlier_outputs_and_new_ones_plug_in():
    calls = []

    @register_feature(
        "test_pulse_pressure_ratio",
        inputs={"sbp": "mmHg", "dbp": "mmHg"},
        outputs={"test_ppr": Output("1", "pulse pressure over MAP")},
        parameters={"scale": Parameter(1.0, "1", "scale", "test")},
        uses=("map",),
        source="test",
    )
    def _ppr(epoch, *, scale):
        calls.append(epoch.label)
        return {
            "test_ppr": scale
            * float(np.nanmean(epoch["sbp"] - epoch["dbp"]))
            / epoch.results["map"]
        }

    try:
        beats, proto = _beats()
        feats = epoch_features(
            beats, None, proto, parameters={"test_pulse_pressure_ratio": {"scale": 2}}
        )
        want = 2 * 40.0 / feats["map"].values
        np.testing.assert_allclose(feats["test_ppr"].values, want, rtol=1e-12)
        assert calls == ["rest", "stand"]
    finally:
        from cardiolab.features import registry

        registry._REGISTRY.pop("test_pulse_pressure_ratio")


def test_beat_inputs_match_the_data_model_units():
    shared = sorted(set(BEAT_INPUTS) & set(schema.BEAT_FIELDS))
    assert {"t", "rr", "sbp", "map"} <= set(shared)
    for name in shared:
        assert BEAT_INPUTS[name].units == schema.BEAT_FIELDS[name][0], name
    assert get_feature("hrv_time").inputs == {"rr": "ms"}


@pytest.fixture(scope="module")
def carnet(shared_data):
    folder = shared_data / "carnet"
    data = pd.read_csv(folder / "tfa_sample_data.csv")
    ref = json.loads((folder / "reference_tfa.json").read_text())
    return data, ref["results"]["tfa_sample_data"]


@pytest.mark.parametrize(("side", "column"), [("left", "mcav_l"), ("right", "mcav_r")])
def test_per_epoch_autoregulation_matches_carnet(carnet, side, column):
    """CARNet's 10 Hz beat-to-beat series as a beat table (one beat per sample): the
    epoch loop's resampling is then the identity and the per-epoch feature must give
    CARNet's reference values (gain, normalised gain, coherence within 1 %, phase 1 deg)."""
    data, ref = carnet
    n = len(data)
    t = np.arange(n) / 10.0
    beats = xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", np.full(n, 100.0), {"units": "ms"}),
            "map": ("beat", data["abp"].to_numpy(), {"units": "mmHg"}),
            "valid": ("beat", np.ones(n, bool)),
            "tamv": (("beat", "vessel"), data[[column]].to_numpy(), {"units": "cm/s"}),
        },
        coords={"vessel": ["mca"]},
    )
    proto = schema.protocol_group([("rest", 0.0, t[-1] + 1.0)])
    feats = epoch_features(beats, None, proto, select=["cerebral_autoregulation"])
    r = ref[side]
    assert int(feats["mca_tfa_n_windows"][0]) == r["n_windows"]
    for band in ("vlf", "lf", "hf"):
        pairs = (
            ("gain", "gain"),
            ("gain_norm", "gain_norm"),
            ("gain_pct", "gain_pct_per_pct"),
            ("coherence", "coh2"),
        )
        for ours, key in pairs:
            got = float(feats[f"mca_tfa_{ours}_{band}"][0])
            assert got == pytest.approx(r[band][key], rel=0.01), (band, ours)
        got = float(feats[f"mca_tfa_phase_{band}"][0])
        assert got == pytest.approx(r[band]["phase_deg"], abs=1.0), (band, "phase")


def _paced_breathing(rate_hz=0.1, with_resp=True, n=600):
    """Beats whose RR oscillates at the breathing rate (RSA of +-40 ms), with a belt."""
    t = np.cumsum(np.full(n, 0.9)) + 0.0
    rr = 900.0 - 40.0 * np.sin(2 * np.pi * rate_hz * t)  # shorter in inspiration
    t = np.cumsum(rr) / 1000.0
    beats = xr.Dataset(
        {
            "t": ("beat", t, {"units": "s"}),
            "rr": ("beat", rr, {"units": "ms"}),
            "valid": ("beat", np.ones(n, bool)),
            "r_amplitude": ("beat", 1.0 + 0.1 * np.sin(2 * np.pi * rate_hz * t), {"units": "mV"}),
        }
    )
    proto = schema.protocol_group([("paced", 0.0, float(t[-1]))])
    signals = {}
    if with_resp:
        fs = 25.0
        ts = np.arange(0, t[-1], 1 / fs)
        signals["resp"] = schema.signal_group(
            np.sin(2 * np.pi * rate_hz * ts - np.pi / 2).astype("float32"), fs, "resp", units="V"
        )
    return beats, proto, signals


def test_hf_band_follows_paced_breathing_at_6_per_minute():
    beats, proto, signals = _paced_breathing()
    feats = epoch_features(beats, None, proto, signals=signals)
    assert float(feats["resp_rate"][0]) == pytest.approx(6.0, abs=0.1)
    assert (float(feats["hf_lo"][0]), float(feats["hf_hi"][0])) == pytest.approx(
        (0.05, 0.15), abs=2e-3
    )
    fixed = epoch_features(
        beats,
        None,
        proto,
        signals=signals,
        parameters={"hrv_frequency": {"hf_follows_breathing": False}},
    )
    assert (float(fixed["hf_lo"][0]), float(fixed["hf_hi"][0])) == (0.15, 0.4)
    # the 0.1 Hz RSA is HF power when the band follows breathing, LF power when it does not
    assert float(feats["hf_nu"][0]) > 90 and float(fixed["hf_nu"][0]) < 10
    assert float(feats["rsa_p2t"][0]) == pytest.approx(80.0, rel=0.1)
    assert json.loads(feats.attrs["skipped"])["ecg_derived_respiration"] == (
        "not needed: the session has resp"
    )


def test_ecg_derived_respiration_without_a_belt():
    beats, proto, _ = _paced_breathing(rate_hz=0.25, with_resp=False)
    feats = epoch_features(beats, None, proto)
    assert float(feats["edr_rate"][0]) == pytest.approx(15.0, abs=0.3)
    assert "resp_rate" not in feats
