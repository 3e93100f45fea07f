"""The session data model and validate_session."""

import numpy as np
import pytest

from cardiolab import schema
from cardiolab.errors import SessionFormatError, UnitError


def make_session(**overrides):
    rng = np.random.default_rng(1)
    groups = {
        "ecg": schema.signal_group(rng.normal(size=5000), 500.0, "ecg"),
        "abp": schema.signal_group(100 + rng.normal(size=2000), 200.0, "abp"),
        "doppler": schema.signal_group(
            50 + rng.normal(size=(2, 1000)), 100.0, "doppler", vessels=["femoral", "mca"]
        ),
        "protocol": schema.protocol_group([("supine", 0, 5), ("stand", 5, 10)]),
    }
    attrs = dict(
        subject="S01",
        session="L-30",
        phase="pre",
        day=-30.0,
        campaign="test",
        protocol="supine-stand",
        posture="supine",
    )
    attrs.update(overrides)
    return schema.session_node(groups, **attrs)


def test_valid_session_passes():
    node = make_session()
    assert schema.validate_session(node) is node
    assert node["ecg"].ds["time"].attrs["units"] == "s"
    assert node["doppler"].ds["velocity"].dims == ("vessel", "time")
    assert list(node["protocol"].ds["epoch"].values) == ["supine", "stand"]


def test_missing_attribute_and_wrong_phase_are_named():
    node = make_session(phase="in")
    del node.attrs["posture"]
    with pytest.raises(SessionFormatError) as err:
        schema.validate_session(node)
    msg = str(err.value)
    assert "S01/L-30" in msg
    assert "'posture'" in msg
    assert "'phase' is 'in'" in msg
    assert len(err.value.violations) == 2


def test_wrong_units_name_group_and_field():
    node = make_session()
    ds = node["abp"].to_dataset().copy()
    ds["abp"].attrs["units"] = "kPa"
    node["abp"] = ds
    with pytest.raises(SessionFormatError, match=r"group 'abp': field 'abp' has units 'kPa'"):
        schema.validate_session(node)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("Volts", "V"), ("mV", "mV"), ("a.u.", "1"), ("1", "1"), ("l", "L"), ("L/s", "L/s")],
)
def test_respiration_keeps_its_recorded_unit(given, stored):
    node = make_session()
    node["resp"] = schema.signal_group(np.sin(np.arange(100) / 4.0), 10.0, "resp", units=given)
    assert node["resp"].ds["resp"].attrs["units"] == stored
    assert schema.validate_session(node) is node


def test_respiration_units_are_required_and_known():
    with pytest.raises(UnitError, match=r"group 'resp' keeps the unit it was recorded in"):
        schema.signal_group(np.zeros(10), 10.0, "resp")
    with pytest.raises(UnitError, match=r"unknown unit 'furlong'"):
        schema.signal_group(np.zeros(10), 10.0, "resp", units="furlong")
    with pytest.raises(UnitError, match=r"group 'ecg' is stored in 'mV', not 'V'"):
        schema.signal_group(np.zeros(1000), 500.0, "ecg", units="V")
    node = make_session()
    ds = schema.signal_group(np.zeros(100), 10.0, "resp", units="V")
    ds["resp"].attrs["units"] = "Volts"  # not the table's spelling
    node["resp"] = ds
    with pytest.raises(SessionFormatError, match=r"group 'resp': field 'resp' has units 'Volts'"):
        schema.validate_session(node)
    ds["resp"].attrs["units"] = "bananas"
    node["resp"] = ds
    with pytest.raises(SessionFormatError, match=r"field 'resp' has units 'bananas'"):
        schema.validate_session(node)


def test_time_inconsistent_with_sampling_rate():
    node = make_session()
    ds = node["ecg"].to_dataset().copy()
    ds.attrs["sampling_rate"] = 250.0
    node["ecg"] = ds
    with pytest.raises(SessionFormatError, match=r"group 'ecg': 'time' spans"):
        schema.validate_session(node)


def test_bad_protocol_epochs():
    node = make_session()
    node["protocol"] = schema.protocol_group([("supine", 0, 5), ("stand", 6, 6)])
    with pytest.raises(SessionFormatError, match=r"epoch 'stand' has stop 6 s <= start 6 s"):
        schema.validate_session(node)


def test_day_must_match_label():
    with pytest.raises(SessionFormatError, match=r"'day' is -3.0 but session label 'L-30'"):
        schema.validate_session(make_session(day=-3.0))


def test_campaign_validation_collects_all_sessions():
    import xarray as xr

    good = make_session()
    bad = make_session(session="R+1", phase="post", day=1.0)
    del bad.attrs["campaign"]
    tree = xr.DataTree.from_dict({"S01/L-30": good, "S01/R+1": bad})
    with pytest.raises(SessionFormatError) as err:
        schema.validate_campaign(tree)
    assert err.value.violations == [
        "session S01/R+1: missing session attribute 'campaign' (campaign name)"
    ]


def beat_session(t, **values):
    groups = {
        "beats": schema.beats_group(t, values),
        "protocol": schema.protocol_group([("rest", 0, 10)]),
    }
    node = make_session()
    return schema.session_node(groups, **node.attrs)


def test_beat_level_session_passes():
    t = np.array([0.8, 1.6, 2.45])
    node = beat_session(t, rr=[800.0, 800.0, 850.0], sbp=[120.0, 121.0, 119.0])
    assert schema.validate_session(node) is node
    ds = node["beats"].ds
    assert ds["t"].dims == ("beat",)
    assert ds["t"].attrs["units"] == "s" and ds["rr"].attrs["units"] == "ms"
    assert ds["sbp"].attrs["long_name"] == "systolic blood pressure"
    assert "sampling_rate" not in ds.attrs


def test_beats_group_refuses_unknown_variable():
    with pytest.raises(KeyError, match="unknown beat variable 'spo2'"):
        schema.beats_group([1.0, 2.0], {"spo2": [97.0, 98.0]})


def test_beat_group_violations_are_named():
    node = beat_session(np.array([1.0, 2.0, 1.5, 3.0]), rr=[800.0, 0.0, -1.0, 900.0])
    ds = node["beats"].to_dataset()
    ds["sbp"] = ("beat", np.full(4, 16.0), {"units": "kPa", "long_name": "systolic"})
    ds["spo2"] = ("beat", np.full(4, 97.0), {"units": "%", "long_name": "saturation"})
    node["beats"] = ds
    with pytest.raises(SessionFormatError) as err:
        schema.validate_session(node)
    msg = str(err.value)
    assert "group 'beats': field 't' does not increase: beat 2 at 1.5 s follows 2 s" in msg
    assert "group 'beats': field 'rr' is <= 0 ms at beat 1 (0 ms; 2 such beat(s))" in msg
    assert "group 'beats': field 'sbp' has units 'kPa', expected 'mmHg'" in msg
    assert "group 'beats': unknown field 'spo2'" in msg
    assert len(err.value.violations) == 4


def test_session_without_waveform_or_beats_is_refused():
    node = make_session()
    for group in ("ecg", "abp", "doppler"):
        del node[group]
    with pytest.raises(SessionFormatError, match=r"no signal group: .* or 'beats'"):
        schema.validate_session(node)
