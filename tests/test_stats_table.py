"""The one features-table validator of the stats: every refusal names feature, epoch, column."""

import numpy as np
import pandas as pd
import pytest

from cardiolab.errors import ModelError
from cardiolab.labels import PHASES
from cardiolab.stats.design import simulate_feature_table
from cardiolab.stats.table import ID_COLUMNS, FeatureRows, check_features_table

PREFIX = "'hr' in epoch 'supine': "


def hr_table(n_subjects=3):
    """Three subjects x four sessions of supine (and standing) heart rate, bpm."""
    supine = simulate_feature_table(
        ["L-30", "FD5", "R+0", "R+3"],
        n_subjects,
        pre=62.0,
        A=3.0,
        tau_a=4.0,
        D=8.0,
        tau_r=3.0,
        between_sd=5.0,
        residual_sd=2.0,
        feature="hr",
        units="bpm",
        seed=2,
    )
    stand = supine.assign(epoch="stand", hr=supine["hr"] + 15.0)
    table = pd.concat([supine, stand], ignore_index=True)
    table["sex"] = table["subject"].map({"S01": "F", "S02": "M", "S03": "F"})
    table.attrs["units"] = {"hr": "bpm"}
    return table


def test_rows_of_one_epoch_with_types_and_units():
    table = hr_table()
    table["day"] = table["day"].astype(int)  # integer days are read as float
    before = table.copy()
    checked = check_features_table(table, "hr", "supine", covariates=["sex"])
    pd.testing.assert_frame_equal(table, before)
    assert isinstance(checked, FeatureRows)
    assert list(checked.rows.columns) == ["subject", "session", "phase", "day", "hr", "sex"]
    assert len(checked.rows) == 12 and list(checked.rows.index) == list(range(12))
    assert checked.rows["day"].dtype == float and checked.rows["hr"].dtype == float
    assert checked.rows["day"].tolist()[:4] == [-30.0, 5.0, 0.0, 3.0]
    # the supine rows, not the standing ones (15 bpm higher)
    np.testing.assert_array_equal(checked.rows["hr"], table.loc[:11, "hr"])
    assert checked.flags == [] and checked.units == "bpm"
    assert (checked.feature, checked.epoch) == ("hr", "supine")
    with pytest.raises(AttributeError):
        checked.units = "1/min"  # frozen


def test_numbers_as_text_are_read():
    table = hr_table()
    table["hr"] = table["hr"].map(lambda v: f"{v:.3f}").astype(object)
    table.loc[0, "hr"] = None
    checked = check_features_table(table, "hr", "supine")
    assert checked.rows["hr"].dtype == float and len(checked.rows) == 11
    assert checked.rows.loc[0, "hr"] == pytest.approx(float(table.loc[1, "hr"]), abs=0)


def test_dropped_rows_are_named_in_a_flag_and_input_untouched():
    table = hr_table()
    table.loc[2, "hr"] = np.nan  # S01 R+0
    table.loc[9, "day"] = np.nan  # S03 FD5
    table.loc[7, "sex"] = None  # S02 R+3
    table.loc[14, "hr"] = np.nan  # S01 R+0, standing: not this epoch's business
    before = table.copy()
    plain = check_features_table(table, "hr", "supine")
    assert plain.flags == ["dropped 2 row(s) with a missing hr or day: S01 R+0, S03 FD5"]
    assert len(plain.rows) == 10
    checked = check_features_table(table, "hr", "supine", covariates=["sex"])
    assert checked.flags == [
        "dropped 3 row(s) with a missing hr, day or sex: S01 R+0, S02 R+3, S03 FD5"
    ]
    assert len(checked.rows) == 9 and not checked.rows.isna().any().any()
    pd.testing.assert_frame_equal(table, before)


def test_long_drop_lists_are_cut():
    table = hr_table(n_subjects=3)
    big = pd.concat([table.assign(subject=table["subject"] + f"-{k}") for k in range(4)])
    big.loc[big["session"] == "FD5", "hr"] = np.nan
    flags = check_features_table(big.reset_index(drop=True), "hr", "supine").flags
    assert flags[0].startswith("dropped 12 row(s) with a missing hr or day: ")
    assert flags[0].endswith(" ...") and flags[0].count("FD5") == 10


def cases():
    """(change to the table, keyword arguments, the column the message must name, text)."""
    return [
        (lambda t: t.drop(columns="phase"), {}, "phase", r"lacks column\(s\) \['phase'\]"),
        (lambda t: t.drop(columns="epoch"), {}, "epoch", r"lacks column\(s\) \['epoch'\]"),
        (
            lambda t: t.rename(columns={"hr": "hrv"}).assign(rmssd=40.0),
            {},
            "hr",
            r"no column 'hr'.*close names: \['hrv'\]$",
        ),
        (None, {"covariates": ["age"]}, "age", r"\['age'\] not in the features table; merge"),
        (lambda t: t.assign(epoch="tilt"), {}, "epoch", r"absent.*epochs: \['tilt'\]"),
        (lambda t: t.assign(phase="flight"), {}, "phase", r"unknown phase\(s\) \['flight'\]"),
        (lambda t: t.assign(subject=None), {}, "subject", "missing value"),
        (lambda t: t.assign(hr="fast"), {}, "hr", "not numeric.*'fast'"),
        (lambda t: t.assign(hr=t["hr"] > 60), {}, "hr", "boolean"),
        (lambda t: t.assign(hr=np.nan), {}, "hr", "all NaN"),
        (lambda t: t.assign(day=np.nan), {}, "day", "no row has all of"),
        (lambda t: t.assign(sex=None), {"covariates": ["sex"]}, "sex", "no row has all of"),
        (lambda t: t[t["subject"] == "S01"], {}, "subject", "1 subject"),
        (None, {"min_subjects": 4}, "subject", "3 subject.*at least 4"),
        (lambda t: t.assign(hr=70.0), {}, "hr", "zero variance.*70"),
        (lambda t: t[t["phase"] != "pre"], {}, "phase", "no pre-flight session"),
        (
            lambda t: t[t["phase"] == "pre"],
            {"require_change": True},
            "phase",
            "no in-flight or post-flight session",
        ),
    ]


@pytest.mark.parametrize(("change", "kwargs", "column", "match"), cases())
def test_refusals_name_feature_epoch_and_column(change, kwargs, column, match):
    table = hr_table()
    table = table if change is None else change(table)
    with pytest.raises(ModelError, match=match) as info:
        check_features_table(table, "hr", "supine", **kwargs)
    message = str(info.value)
    assert message.startswith(PREFIX), message
    assert f"'{column}'" in message, message


def test_not_a_dataframe():
    with pytest.raises(ModelError, match="must be a pandas DataFrame, got dict") as info:
        check_features_table({"hr": [1.0]}, "hr", "supine")
    assert str(info.value).startswith(PREFIX)


def test_options_that_relax_the_checks():
    table = hr_table()
    no_pre = table[table["phase"] != "pre"]
    assert len(check_features_table(no_pre, "hr", "supine", require_pre=False).rows) == 9
    only_pre = table[table["phase"] == "pre"]
    assert len(check_features_table(only_pre, "hr", "supine").rows) == 3
    one = table[table["subject"] == "S01"]
    assert len(check_features_table(one, "hr", "supine", min_subjects=1).rows) == 4


def test_constants():
    assert ID_COLUMNS == ("subject", "session", "phase", "day", "epoch")
    assert set(PHASES) == {"pre", "in", "post"}
