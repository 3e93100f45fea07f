"""Session labels parse both ways."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardiolab.labels import (
    PHASES,
    LabelError,
    format_session_label,
    parse_session_label,
    schedule_order,
)


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


def test_schedule_order_of_labels():
    labels = ["R+30", "R+3", "FD12", "R+0", "L-30", "R+6h", "FD5", "L-180", "R+3", "FD12"]
    assert schedule_order(labels) == ["L-180", "L-30", "FD5", "FD12", "R+0", "R+6h", "R+3", "R+30"]
    # bed rest, and days compared as numbers, not text
    assert schedule_order(("R+10", "HDT21", "BDC-9", "HDT3", "R+2")) == [
        "BDC-9",
        "HDT3",
        "HDT21",
        "R+2",
        "R+10",
    ]
    assert schedule_order([]) == []
    with pytest.raises(LabelError, match="'X1'"):
        schedule_order(["L-30", "X1"])
    with pytest.raises(LabelError, match="list of session labels"):
        schedule_order("L-30")


def test_schedule_order_of_a_table_uses_its_phase_and_day():
    """A table's phase and day are taken as given (first row with a value per
    session); labels that do not parse still order; ties go by label; no day last."""
    table = pd.DataFrame(
        {
            "session": ["post b", "base", "post b", "flight", "post a", "late", "base"],
            "phase": ["post", "pre", "post", "in", "post", "post", "pre"],
            "day": [np.nan, -10.0, 2.0, 5.0, 2.0, np.nan, -10.0],
            "epoch": ["supine"] * 7,
        }
    )
    assert schedule_order(table) == ["base", "flight", "post a", "post b", "late"]
    # the same as ordering the parsed labels, on a real schedule
    labels = ["R+3", "L-30", "FD10", "R+6h", "L-60"]
    parsed = [parse_session_label(lab) for lab in labels]
    real = pd.DataFrame(
        {
            "session": labels * 2,
            "phase": [p.phase for p in parsed] * 2,
            "day": [p.day for p in parsed] * 2,
        }
    )
    assert schedule_order(real) == schedule_order(labels) == ["L-60", "L-30", "FD10", "R+6h", "R+3"]
    with pytest.raises(LabelError, match="session 'x'.*'during'"):
        schedule_order(pd.DataFrame({"session": ["x"], "phase": ["during"], "day": [1.0]}))
    with pytest.raises(LabelError, match=r"no column\(s\) \['day'\]"):
        schedule_order(table.drop(columns="day"))


@given(
    st.lists(
        st.tuples(st.sampled_from(PHASES), st.integers(min_value=0, max_value=400)),
        max_size=12,
    )
)
def test_schedule_order_is_phase_then_day(sessions):
    labels = [format_session_label(p, -d if p == "pre" else d) for p, d in sessions]
    ordered = schedule_order(labels)
    assert sorted(ordered) == sorted(set(labels))
    keys = [
        (PHASES.index(parse_session_label(lab).phase), parse_session_label(lab).day)
        for lab in ordered
    ]
    assert keys == sorted(keys)
