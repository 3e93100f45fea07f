"""Format 'rr': R-R interval files (plain text, Polar HRM) and beat-level sessions."""

import json

import numpy as np
import pytest
from sessions import ATTRS

from cardiolab import schema
from cardiolab.errors import SessionFormatError, UnitError
from cardiolab.features import epoch_features
from cardiolab.io import registry
from cardiolab.io.rr import FORMAT, read_rr
from cardiolab.pipeline import session_features
from cardiolab.signals.beats import BEAT_VARIABLES, beat_table

FILES = ["rest_rri.txt", "exercise_rri.hrm"]


@pytest.fixture(scope="module")
def beat_exports(shared_data):
    folder = shared_data / "beat_exports"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder, json.loads((folder / "expected.json").read_text())["files"]


def with_protocol(node, epochs):
    """A whole session node: the reader's beats group, a protocol and the attributes."""
    groups = {"beats": node["beats"].to_dataset(), "protocol": schema.protocol_group(epochs)}
    return schema.session_node(groups, **ATTRS)


@pytest.mark.parametrize("name", FILES)
def test_expected_values(beat_exports, name):
    folder, expected = beat_exports
    exp = expected[name]
    node = read_rr(folder / name)
    beats = node["beats"].to_dataset()
    rr = beats["rr"].values
    assert beats["rr"].attrs["units"] == "ms"
    assert rr.size == exp["n_rr"]
    np.testing.assert_array_equal(rr[:5], exp["first5_rr_ms"])
    assert rr[-1] == exp["last_rr_ms"]
    # integers in ms: the sums are exact up to float rounding
    assert rr.sum() / 1000.0 == pytest.approx(exp["sum_rr_s"], abs=1e-9)
    assert rr.mean() == pytest.approx(exp["mean_rr_ms"], rel=1e-12)
    assert rr.min() == exp["min_rr_ms"]
    assert rr.max() == exp["max_rr_ms"]
    # beat k at the end of interval k: the cumulative sum, first beat at rr[0]
    t = beats["t"].values
    assert t[0] == pytest.approx(rr[0] / 1000.0)
    np.testing.assert_allclose(np.diff(t) * 1000.0, rr[1:], atol=1e-6)
    assert t[-1] == pytest.approx(exp["sum_rr_s"], abs=1e-9)
    assert beats.attrs["source_file"] == str(folder / name)
    schema.validate_session(with_protocol(node, [("rest", 0.0, float(t[-1]) + 1.0)]))


def test_hrm_header_fields(beat_exports):
    folder, expected = beat_exports
    exp = expected["exercise_rri.hrm"]
    attrs = read_rr(folder / "exercise_rri.hrm")["beats"].attrs
    for key, value in exp["params"].items():
        assert attrs[f"hrm_{key}"] == value, key
    assert attrs["start_datetime"] == "2008-02-08T08:50:31"
    assert attrs["source_format"] == "Polar HRM 106"


def test_registration():
    fmt = registry.get_format("rr")
    assert fmt is FORMAT
    assert fmt.reader is read_rr
    assert fmt.channels is False
    assert fmt.option_names == ["unit"]
    assert fmt.option("unit").check("s") == "s"
    with pytest.raises(ValueError):
        fmt.option("unit").check("mmHg")
    assert ".hrm" in fmt.suffixes


def test_unit_seconds(tmp_path):
    path = tmp_path / "rr_s.txt"
    path.write_text("0.800\n\n0.825\r\n0.79\n")
    rr = read_rr(path, unit="s")["beats"]
    np.testing.assert_allclose(rr["rr"].values, [800.0, 825.0, 790.0])
    np.testing.assert_allclose(rr["t"].values, [0.8, 1.625, 2.415])
    assert rr.attrs["source_units"] == "s"


def _hrm_variant(folder, tmp_path, edit):
    text = (folder / "exercise_rri.hrm").read_bytes().decode("latin-1")  # CRLF kept
    path = tmp_path / "variant.hrm"
    path.write_text(edit(text), encoding="latin-1", newline="")
    return path


HRM_BAD = {
    "wrong version": (
        lambda s: s.replace("Version=106", "Version=999"),
        SessionFormatError,
        r"\[Params\] Version is '999'",
    ),
    "heart-rate samples, not R-R": (
        lambda s: s.replace("Interval=238", "Interval=5"),
        SessionFormatError,
        r"Interval is '5'.*not R-R",
    ),
    "truncated [HRData]": (
        lambda s: s[: s.index("[HRData]") + 2000],
        SessionFormatError,
        r"summing to .* but \[Params\] Length is 00:42:41.7",
    ),
    "no [HRData]": (
        lambda s: s[: s.index("[HRData]")],
        SessionFormatError,
        r"no \[HRData\] section",
    ),
    "several columns": (
        lambda s: s.replace("[HRData]\r\n1589\r\n", "[HRData]\r\n1589\t0\r\n"),
        SessionFormatError,
        r"\[HRData\] lines have several columns \(SMode '000000000'",
    ),
    "zero interval": (
        lambda s: s.replace("[HRData]\r\n1589\r\n783\r\n", "[HRData]\r\n1589\r\n0\r\n"),
        SessionFormatError,
        r"line \d+ \(\[HRData\]\): R-R interval '0' is not a positive number",
    ),
}


@pytest.mark.parametrize("case", sorted(HRM_BAD))
def test_bad_hrm(beat_exports, tmp_path, case):
    folder, _ = beat_exports
    edit, error, pattern = HRM_BAD[case]
    path = _hrm_variant(folder, tmp_path, edit)
    assert path.read_bytes() != (folder / "exercise_rri.hrm").read_bytes()
    with pytest.raises(error, match=pattern) as err:
        read_rr(path)
    assert str(path) in str(err.value)


TEXT_BAD = {
    "empty file": ("", {}, SessionFormatError, r"the file is empty"),
    "blank lines only": ("\r\n\r\n  \n", {}, SessionFormatError, r"the file is empty"),
    "zero interval": ("800\n0\n810\n", {}, SessionFormatError, r"line 2 .*'0' is not a positive"),
    "negative interval": (
        "800\n810\n-790\n",
        {},
        SessionFormatError,
        r"line 3 .*'-790' is not a positive",
    ),
    "not a number": (
        "800\nabc\n",
        {},
        SessionFormatError,
        r"line 2 .*a text of 3 characters \(not shown\) is not an R-R",
    ),
    "two columns": ("0.8 800\n", {}, SessionFormatError, r"line 1 .* has 2 fields"),
    "unit not convertible": ("800\n", {"unit": "mmHg"}, UnitError, r"option 'unit'.*pressure"),
    "unknown unit": ("800\n", {"unit": "beats"}, UnitError, r"option 'unit'.*unknown unit"),
    "channel mapping": (
        "800\n",
        {"channels": {"RR": {"group": "ecg"}}},
        SessionFormatError,
        r"takes no channel mapping",
    ),
}


@pytest.mark.parametrize("case", sorted(TEXT_BAD))
def test_bad_text(tmp_path, case):
    content, options, error, pattern = TEXT_BAD[case]
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(error, match=pattern) as err:
        read_rr(path, **options)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SessionFormatError, match="no such R-R file"):
        read_rr(tmp_path / "nothing.txt")


def test_rr_session_to_hrv_features(beat_exports):
    """rest_rri.txt through beat_table and epoch_features: HRV from the file's RR."""
    folder, expected = beat_exports
    exp = expected["rest_rri.txt"]
    node = with_protocol(read_rr(folder / "rest_rri.txt"), [("rest", 0.0, 1000.0)])
    schema.validate_session(node)
    beats = beat_table(node)
    rr = beats["rr"].values
    # the table's RR is the file's, in ms, first interval included
    assert beats["rr"].attrs["units"] == "ms"
    assert rr.mean() == pytest.approx(exp["mean_rr_ms"], rel=1e-12)
    assert rr.size == exp["n_rr"]
    np.testing.assert_allclose(beats["hr"].values, 60000.0 / rr)
    for name in ("t", "rr", "rr_corrected", "rr_flag", "hr", "sbp", "dbp", "map", "pp"):
        assert beats[name].attrs == dict(
            zip(("units", "long_name"), BEAT_VARIABLES[name], strict=True)
        )
    # no waveform to judge: the ECG flag is true, its quality unknown; no pressure
    assert beats["ecg_valid"].values.all()
    assert np.isnan(beats["ecg_quality"].values).all()
    assert not beats["abp_valid"].values.any()
    flag = beats["rr_flag"].values
    np.testing.assert_array_equal(beats["valid"].values, flag == 0)
    assert (beats["epoch"].values == "rest").all()
    # the artefact detector keeps nearly all of a clean resting recording
    assert 0.95 < np.mean(flag == 0) < 1.0

    feats = epoch_features(beats, None, node["protocol"].to_dataset())
    # independent NN series: an interval counts where both its beats are normal, and
    # not the epoch's first (its earlier beat lies before the epoch)
    ok = flag == 0
    nn_ok = ok & np.r_[False, ok[:-1]]
    nn_ok[0] = False
    nn = np.where(nn_ok, rr, np.nan)
    both = np.isfinite(nn[1:]) & np.isfinite(nn[:-1])
    sdnn = np.std(nn[nn_ok], ddof=1)
    rmssd = np.sqrt(np.mean(np.diff(nn)[both] ** 2))
    f = feats.sel(epoch="rest")
    assert int(f["n_nn"]) == nn_ok.sum()
    assert float(f["mean_nn"]) == pytest.approx(rr[nn_ok].mean(), rel=1e-12)
    assert float(f["sdnn"]) == pytest.approx(sdnn, rel=1e-12)
    assert float(f["rmssd"]) == pytest.approx(rmssd, rel=1e-12)
    assert float(f["hr"]) == pytest.approx(np.mean(60000.0 / rr[nn_ok]), rel=1e-12)
    # a resting adult: plausible ranges, and frequency-domain HRV exists
    assert 1000.0 < float(f["mean_nn"]) < 1100.0
    assert float(f["lf"]) > 0 and float(f["hf"]) > 0
    # no pressure in an R-R file
    assert np.isnan(float(f["sbp"])) and int(f["n_beats_abp"]) == 0
    # the pipeline's per-session step (no ldf group: read only where present)
    piped = session_features(beats, node).sel(epoch="rest")
    for name in ("n_nn", "mean_nn", "sdnn", "rmssd", "lf", "hf"):
        assert float(piped[name]) == float(f[name]), name
