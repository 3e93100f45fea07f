"""Session labels parse both ways."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardiolab.labels import LabelError, format_session_label, parse_session_label


@pytest.mark.parametrize(
    ("label", "phase", "day", "kind"),
    [
        ("L-30", "pre", -30, "spaceflight"),
        ("L-180", "pre", -180, "spaceflight"),
        ("FD12", "in", 12, "spaceflight"),
        ("R+3", "post", 3, None),
        ("R+0", "post", 0, None),
        ("R+6h", "post", 0.25, None),
        ("R+1.5h", "post", 1.5 / 24, None),
        ("BDC-9", "pre", -9, "bedrest"),
        ("HDT21", "in", 21, "bedrest"),
    ],
)
def test_parse_known_labels(label, phase, day, kind):
    parsed = parse_session_label(label)
    assert parsed.phase == phase
    assert parsed.day == pytest.approx(day, abs=1e-12)
    assert parsed.kind == kind
    assert format_session_label(phase, day, kind or "spaceflight") == label


@pytest.mark.parametrize("bad", ["", "L+3", "FD-2", "R-1", "X12", "R+30h", "fd12", "L-", 12])
def test_unknown_labels_are_refused(bad):
    with pytest.raises(LabelError):
        parse_session_label(bad)


@given(
    phase=st.sampled_from(["pre", "in", "post"]),
    day=st.integers(min_value=0, max_value=2000),
    kind=st.sampled_from(["spaceflight", "bedrest", "confinement"]),
)
def test_round_trip_whole_days(phase, day, kind):
    signed = -day if phase == "pre" else day
    label = format_session_label(phase, signed, kind)
    parsed = parse_session_label(label)
    assert (parsed.phase, parsed.day) == (phase, signed)
    assert format_session_label(parsed.phase, parsed.day, kind) == label


@given(hours=st.integers(min_value=1, max_value=23))
def test_round_trip_hours_after_landing(hours):
    label = format_session_label("post", hours / 24)
    assert label == f"R+{hours}h"
    parsed = parse_session_label(label)
    assert parsed.phase == "post"
    assert parsed.day * 24 == pytest.approx(hours)


def test_wrong_sign_is_refused():
    with pytest.raises(LabelError):
        format_session_label("pre", 3)
    with pytest.raises(LabelError):
        format_session_label("in", -1)
    with pytest.raises(LabelError):
        format_session_label("during", 1)
