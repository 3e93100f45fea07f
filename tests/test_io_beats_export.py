"""Format 'beats': Finapres BeatScope exports and beat CSVs, through to features.

No licensed BeatScope export is public (see ../shared/data/beat_exports/README.md), so
the tests write one from the layout that README describes (BeatScope Easy v02.10:
preamble, ``;``-separated header with units in parentheses, decimal commas, times of
day ``hh:mm:ss,mmm``), with values whose truth the test knows.
"""

import numpy as np
import pytest
from sessions import ATTRS

from cardiolab import schema
from cardiolab.errors import SessionFormatError, UnitError
from cardiolab.features import epoch_features
from cardiolab.io import registry
from cardiolab.io.beats_export import FORMAT, read_beats
from cardiolab.signals.beats import BEAT_VARIABLES, beat_table
from cardiolab.signals.pressure import PRESSURE_LIMITS

HEADER = (
    "Time (s);Systolic Pressure (mmHg);Diastolic Pressure (mmHg);Mean Pressure (mmHg);"
    "Heart rate (bpm);Stroke Volume (ml);Left Ventricular Ejection Time (ms);"
    "Pulse Interval (ms);Maximum Slope (mmHg/s);Cardiac Output (l/min);"
    "Total Peripheral Resistance Medical Unit (mmHg.min/l);"
    "Total Peripheral Resistance CGS (dyn.s/cm5);Markers;"
)
PREAMBLE = [
    "BeatScope Easy - v02.10 build 004",
    "",
    "Identification;Identification;Age (yrs);Height (cm);Weight (kg);Gender;Procedure;Model number",
    "test.fpf;;30;180;70;Male;;9715",
    "",
    "Reconstructed pressure level: ",
    "brachial",
    "",
]
#: 1 mmHg.s/mL in dyn.s/cm5 (133.322 Pa * 1 s / 1e-6 m3 = 1.33322e8 Pa.s/m3 = 1333.22)
PRU_DYN = 1333.22387415


def _comma(x, decimals):
    return f"{x:.{decimals}f}".replace(".", ",")


def beatscope_truth(n=160, start_s=23 * 3600 + 58 * 60 + 30.0, uncalibrated=3, seed=3):
    """Per-beat truth of a BeatScope export whose clock passes midnight."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    pi = np.round(800 + 40 * np.sin(2 * np.pi * k / 12) + rng.normal(0, 8, n)).astype(int)
    sbp = np.round(120 + 6 * np.sin(2 * np.pi * k / 25) + rng.normal(0, 2, n))
    dbp = np.round(78 + 3 * np.sin(2 * np.pi * k / 25) + rng.normal(0, 1.5, n))
    map_ = np.round((sbp + 2 * dbp) / 3)
    sv = np.round(70 + rng.normal(0, 3, n), 1)
    hr = np.round(60000.0 / pi)
    co = np.round(sv * hr / 1000.0, 1)
    pru = np.round(map_ / (co * 1000.0 / 60.0), 3)  # what BeatScope labels mmHg.min/l
    cgs = np.round(map_ / (co * 1000.0 / 60.0) * PRU_DYN)
    for a in (sbp, dbp, map_, sv, co, pru, cgs):
        a[:uncalibrated] = 0.0  # BeatScope's "no value" before the first calibration
    clock = start_s + np.r_[0.0, np.cumsum(pi[:-1]) / 1000.0]
    return dict(
        pi=pi, sbp=sbp, dbp=dbp, map=map_, sv=sv, hr=hr, co=co, pru=pru, cgs=cgs, clock=clock
    )


def write_beatscope(path, truth, *, cut_last=False):
    rows = []
    for i in range(truth["pi"].size):
        c = round(truth["clock"][i] * 1000) % (86400 * 1000)
        hh, rem = divmod(c, 3600 * 1000)
        mm, rem = divmod(rem, 60 * 1000)
        ss, ms = divmod(rem, 1000)
        marker = "Physiocal OFF" if i == 10 else ""
        rows.append(
            f"{hh:02d}:{mm:02d}:{ss:02d},{ms:03d};{truth['sbp'][i]:.0f};{truth['dbp'][i]:.0f};"
            f"{truth['map'][i]:.0f};{truth['hr'][i]:.0f};{_comma(truth['sv'][i], 1)};270;"
            f"{truth['pi'][i]};950;{_comma(truth['co'][i], 1)};{_comma(truth['pru'][i], 3)};"
            f"{truth['cgs'][i]:.0f};{marker};"
        )
    text = "\r\n".join([*PREAMBLE, HEADER, *rows]) + "\r\n"
    if cut_last:
        text = text[:-40]
    path.write_bytes(text.encode("latin-1"))
    return path


@pytest.fixture
def beatscope(tmp_path):
    truth = beatscope_truth()
    return write_beatscope(tmp_path / "beats.txt", truth), truth


def test_beatscope_values(beatscope):
    path, truth = beatscope
    ds = read_beats(path)["beats"].to_dataset()
    n = truth["pi"].size
    assert ds.sizes["beat"] == n
    # seconds from the first beat, through midnight (23:58:30 -> 00:00:xx)
    t = ds["t"].values
    assert t[0] == 0.0
    np.testing.assert_allclose(t, truth["clock"] - truth["clock"][0], atol=5e-4)
    assert truth["clock"][-1] > 86400  # the test does cross midnight
    assert ds.attrs["start_time_of_day"] == "23:58:30,000"
    # the pulse interval runs to the next beat; rr ends at the beat
    rr = ds["rr"].values
    assert np.isnan(rr[0])
    np.testing.assert_array_equal(rr[1:], truth["pi"][:-1])
    np.testing.assert_allclose(rr[1:], np.diff(t) * 1000.0, atol=1.0)
    for name in ("sbp", "dbp", "map", "hr", "sv", "co"):
        np.testing.assert_array_equal(ds[name].values, truth[name], err_msg=name)
        assert ds[name].attrs["units"] == schema.BEAT_FIELDS[name][0]
    # TPR from the CGS column, in mmHg.min/L; it is MAP / CO, and 60/1000 of the
    # column BeatScope labels "mmHg.min/l" (which holds mmHg.s/mL)
    tpr = ds["tpr"].values
    np.testing.assert_allclose(tpr, truth["cgs"] / 79.993432449, rtol=1e-9)
    cal = slice(3, None)
    np.testing.assert_allclose(tpr[cal], truth["map"][cal] / truth["co"][cal], rtol=0.002)
    np.testing.assert_allclose(tpr[cal], truth["pru"][cal] * 1000.0 / 60.0, rtol=0.002)
    assert ds["tpr"].attrs["units"] == "mmHg.min/L"
    assert "Total Peripheral Resistance CGS (dyn.s/cm5)" in ds.attrs["channel"]
    assert ds.attrs["source_format"] == "BeatScope Easy - v02.10 build 004"
    # the identification line is not read
    assert not any("test.fpf" in str(v) for v in ds.attrs.values())


def test_registration():
    fmt = registry.get_format("beats")
    assert fmt is FORMAT
    assert fmt.reader is read_beats
    assert fmt.channels is True
    assert set(fmt.option_names) == {"time_column", "time_units", "separator", "decimal"}
    with pytest.raises(ValueError):
        fmt.option("decimal").check(";")


def test_generic_csv_with_column_map(tmp_path):
    path = tmp_path / "beats.csv"
    path.write_text(
        "time [s],SYS [kPa],DIA,RRI,CO\n"
        "10.0,16.0,10.0,0.800,5.0\n"
        "10.8,16.5,10.5,0.800,5.2\n"
        "11.65,16.2,10.2,0.850,5.1\n"
    )
    channels = {
        "SYS": {"group": "beats", "variable": "sbp"},
        "DIA": {"group": "beats", "variable": "dbp", "units": "kPa"},
        "RRI": {"group": "beats", "variable": "rr", "units": "s"},
        "CO": {"group": "beats", "variable": "co", "units": "l/min"},
    }
    ds = read_beats(path, channels)["beats"].to_dataset()
    kpa = 1000.0 / 133.322387415
    np.testing.assert_allclose(ds["t"].values, [10.0, 10.8, 11.65])
    np.testing.assert_allclose(ds["sbp"].values, np.array([16.0, 16.5, 16.2]) * kpa)
    np.testing.assert_allclose(ds["dbp"].values, np.array([10.0, 10.5, 10.2]) * kpa)
    np.testing.assert_allclose(ds["rr"].values, [800.0, 800.0, 850.0])
    np.testing.assert_allclose(ds["co"].values, [5.0, 5.2, 5.1])
    assert ds.attrs["source_units"] == ["kPa", "kPa", "s", "l/min"]
    assert ds.attrs["channel"] == ["SYS [kPa]", "DIA", "RRI", "CO"]


def test_generic_csv_separator_decimal_and_time_column(tmp_path):
    path = tmp_path / "beats.csv"
    path.write_text("beat_ms;SBP\n1000;120,5\n1800;121,0\n2650;119,5\n")
    ds = read_beats(
        path,
        {"SBP": {"group": "beats", "variable": "sbp", "units": "mmHg"}},
        time_column="beat_ms",
        time_units="ms",
        separator=";",
        decimal=",",
    )["beats"].to_dataset()
    np.testing.assert_allclose(ds["t"].values, [1.0, 1.8, 2.65])
    np.testing.assert_allclose(ds["sbp"].values, [120.5, 121.0, 119.5])


def test_generic_csv_times_of_day(tmp_path):
    path = tmp_path / "beats.csv"
    path.write_text("time,SBP [mmHg]\n09:15:00.250,120\n09:15:01.050,121\n09:15:01.900,119\n")
    ds = read_beats(path, {"SBP": {"group": "beats", "variable": "sbp"}})["beats"].to_dataset()
    np.testing.assert_allclose(ds["t"].values, [0.0, 0.8, 1.65])
    assert ds.attrs["start_time_of_day"] == "09:15:00.250"


SBP = {"SBP": {"group": "beats", "variable": "sbp", "units": "mmHg"}}
RR = {"RR": {"group": "beats", "variable": "rr", "units": "ms"}}
GENERIC_BAD = {
    "times go backwards": (
        "time,SBP\n1.0,120\n1.8,121\n1.5,119\n",
        SBP,
        {},
        SessionFormatError,
        r"line 4, column 'time': beat time 1.5 s is not after the previous beat's 1.8 s",
    ),
    "time repeats": (
        "time,SBP\n1.0,120\n1.0,121\n",
        SBP,
        {},
        SessionFormatError,
        r"line 3, column 'time'.*not after",
    ),
    "times of day go backwards": (
        "time,SBP\n10:00:01.000,120\n10:00:00.500,121\n",
        SBP,
        {},
        SessionFormatError,
        r"line 3, column 'time'.*not after",
    ),
    "R-R of 0": (
        "time,RR\n1.0,800\n1.8,0\n",
        RR,
        {},
        SessionFormatError,
        r"line 3, column 'RR': R-R interval '0' is not positive",
    ),
    "negative R-R": (
        "time,RR\n1.0,-800\n1.8,800\n",
        RR,
        {},
        SessionFormatError,
        r"line 2, column 'RR': R-R interval '-800' is not positive",
    ),
    "empty file": ("", SBP, {}, SessionFormatError, r"the file is empty"),
    "header only": ("time,SBP\n", SBP, {}, SessionFormatError, r"header but no beats"),
    "unknown column": (
        "time,SYS,DIA\n1.0,120,80\n",
        SBP,
        {},
        SessionFormatError,
        r"no channel 'SBP' \(the file has: \['time', 'SYS', 'DIA'\]\)",
    ),
    "unit not convertible": (
        "time,SBP [mV]\n1.0,120\n",
        {"SBP": {"group": "beats", "variable": "sbp"}},
        {},
        UnitError,
        r"channel 'SBP'.*measures voltage, not pressure",
    ),
    "unknown unit": (
        "time,SBP\n1.0,120\n",
        {"SBP": {"group": "beats", "variable": "sbp", "units": "torrents"}},
        {},
        UnitError,
        r"channel 'SBP'.*unknown unit 'torrents'",
    ),
    "time unit not convertible": (
        "time [mmHg],SBP\n1.0,120\n",
        SBP,
        {},
        UnitError,
        r"time column 'time \[mmHg\]'.*measures pressure",
    ),
    "no mapping": (
        "time,SBP\n1.0,120\n",
        None,
        {},
        SessionFormatError,
        r"needs a channel mapping.*\['time', 'SBP'\]",
    ),
    "no variable": (
        "time,SBP\n1.0,120\n",
        {"SBP": {"group": "beats"}},
        {},
        SessionFormatError,
        r"beats channel 'SBP': 'variable' is None",
    ),
    "waveform group": (
        "time,SBP\n1.0,120\n",
        {"SBP": {"group": "abp"}},
        {},
        SessionFormatError,
        r"\['SBP'\] map to waveform groups",
    ),
    "row cut mid-line": (
        "time,SBP,DIA\n1.0,120,80\n1.8,12",
        {**SBP, "DIA": {"group": "beats", "variable": "dbp", "units": "mmHg"}},
        {},
        SessionFormatError,
        r"line 3 has 2 fields, the header 3",
    ),
    "decimal comma not declared": (
        "time;SBP\n1;120,5\n",
        SBP,
        {"separator": ";"},
        SessionFormatError,
        r"line 2, column 'SBP': a text of 5 characters \(not shown\) is not a number \(a decimal comma",
    ),
    "wrong separator": (
        "time;SBP\n1;120\n",
        SBP,
        {},
        SessionFormatError,
        r"no separator ','; give separator: ';'",
    ),
    "no time column": (
        "t,SBP\n1.0,120\n",
        SBP,
        {},
        SessionFormatError,
        r"no time column 'time' \(the file has: \['t', 'SBP'\]\)",
    ),
    "not a number": (
        "time,SBP\n1.0,high\n",
        SBP,
        {},
        SessionFormatError,
        r"line 2, column 'SBP': a text of 4 characters \(not shown\) is not a number",
    ),
}


@pytest.mark.parametrize("case", sorted(GENERIC_BAD))
def test_bad_generic(tmp_path, case):
    content, channels, options, error, pattern = GENERIC_BAD[case]
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(error, match=pattern) as err:
        read_beats(path, channels, **options)
    assert str(path) in str(err.value)


def test_bad_beatscope(tmp_path):
    truth = beatscope_truth(n=20)
    cut = write_beatscope(tmp_path / "cut.txt", truth, cut_last=True)
    with pytest.raises(SessionFormatError, match=r"line 29 has \d+ fields, the header 14"):
        read_beats(cut)
    ok = write_beatscope(tmp_path / "ok.txt", truth)
    with pytest.raises(SessionFormatError, match=r"BeatScope export has separator ';'"):
        read_beats(ok, separator=",")
    back = dict(truth, clock=truth["clock"].copy())
    back["clock"][5] = back["clock"][4] - 0.3  # 0.3 s earlier: not a day boundary
    path = write_beatscope(tmp_path / "back.txt", back)
    with pytest.raises(SessionFormatError, match=r"line 15, column 'Time \(s\)'.*not after"):
        read_beats(path)


def test_beatscope_session_to_features(beatscope):
    """A BeatScope session through beat_table and epoch_features."""
    path, truth = beatscope
    node = read_beats(path)
    t_end = float(node["beats"]["t"].values[-1])
    half = round(t_end / 2, 1)
    epochs = [("supine", 0.0, half), ("stand", half, t_end + 1.0)]
    groups = {"beats": node["beats"].to_dataset(), "protocol": schema.protocol_group(epochs)}
    session = schema.session_node(groups, **ATTRS)
    schema.validate_session(session)
    beats = beat_table(session)
    for name in ("sv", "co", "tpr", "sbp", "pp", "rr"):
        assert beats[name].attrs == dict(
            zip(("units", "long_name"), BEAT_VARIABLES[name], strict=True)
        )
    sbp, dbp, map_ = truth["sbp"], truth["dbp"], truth["map"]
    abp_ok = (sbp <= PRESSURE_LIMITS["sbp_max"]) & (dbp >= PRESSURE_LIMITS["dbp_min"])
    abp_ok &= sbp - dbp >= PRESSURE_LIMITS["pp_min"]
    np.testing.assert_array_equal(beats["abp_valid"].values, abp_ok)
    assert not abp_ok[:3].any() and abp_ok[3:].all()  # BeatScope's zeros are not trusted
    np.testing.assert_array_equal(beats["pp"].values, sbp - dbp)
    valid = beats["valid"].values
    np.testing.assert_array_equal(valid, beats["rr_flag"].values == 0)
    assert valid.mean() > 0.9

    feats = epoch_features(beats, None, session["protocol"].to_dataset())
    t = beats["t"].values
    rr = beats["rr"].values
    for label, a, b in epochs:
        f = feats.sel(epoch=label)
        sel = (t >= a) & (t < b)
        use = sel & valid & abp_ok
        assert float(f["sbp"]) == pytest.approx(sbp[use].mean(), rel=1e-12)
        assert float(f["dbp"]) == pytest.approx(dbp[use].mean(), rel=1e-12)
        assert float(f["map"]) == pytest.approx(map_[use].mean(), rel=1e-12)
        assert int(f["n_beats_abp"]) == use.sum()
        # NN intervals: both bounding beats valid and inside the epoch
        idx = np.flatnonzero(sel)
        nn_ok = np.zeros(t.size, dtype=bool)
        nn_ok[idx[1:]] = valid[idx[1:]] & valid[idx[1:] - 1] & np.isfinite(rr[idx[1:]])
        nn = rr[nn_ok]
        assert int(f["n_nn"]) == nn_ok.sum()
        assert float(f["mean_nn"]) == pytest.approx(nn.mean(), rel=1e-12)
        assert float(f["sdnn"]) == pytest.approx(np.std(nn, ddof=1), rel=1e-12)
        # a sequence-method BRS needs pressure and RR: it is computed or NaN, not absent
        assert "brs" in f
    assert "stand" in feats["epoch"].values
