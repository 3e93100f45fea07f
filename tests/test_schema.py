"""The session data model and validate_session."""

import numpy as np
import pytest

from cardiolab import schema
from cardiolab.errors import SessionFormatError


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
