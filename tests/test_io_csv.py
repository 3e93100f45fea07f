"""CSV exports: exact round trip, units in headers, time columns, sampling, laziness,
real-world layouts (PhysioNet's export, header-less files, decimal commas), bad input."""

import re

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from session_checks import assert_epochs_equal, assert_group_close
from sessions import make_session, with_attrs

from cardiolab import io
from cardiolab.errors import CardiolabError, SessionFormatError, UnitError
from cardiolab.io import csv_export
from cardiolab.schema import RAW_GROUPS, validate_session

MAPPINGS = {
    "ecg": {"ecg": {"group": "ecg"}},
    "abp": {"abp": {"group": "abp"}},
    "ldf": {"flux": {"group": "ldf"}},
    "doppler": {
        "velocity_femoral": {"group": "doppler", "vessel": "femoral"},
        "velocity_mca": {"group": "doppler", "vessel": "mca"},
    },
    "resp": {"resp": {"group": "resp"}},
}


@pytest.fixture
def session():
    return make_session()


@pytest.fixture
def files(tmp_path, session):
    return io.write_csv(session, tmp_path, "s01")


def _write(path, columns: dict):
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_round_trip_to_the_last_bit(files, session):
    assert sorted(files) == ["abp", "doppler", "ecg", "ldf", "protocol", "resp"]
    assert files["abp"].read_text().splitlines()[0] == "time [s],abp [mmHg]"
    assert files["doppler"].read_text().splitlines()[0] == (
        "time [s],velocity_femoral [cm/s],velocity_mca [cm/s]"
    )
    parts = {}
    for group, mapping in MAPPINGS.items():
        node = io.read_csv(files[group], mapping)  # units from the column names
        # written in shortest round-trip notation, read by pandas' fast C parser,
        # whose error is a few float64 ulps of the channel's largest value
        values = session[group].ds[RAW_GROUPS[group].variable].values
        assert_group_close(node, session, group, atol=1e-15 * np.abs(values).max())
        assert node[group].ds.attrs["source_file"] == str(files[group])
        parts[group] = node[group].to_dataset()
    protocol = io.read_csv_protocol(files["protocol"])
    merged = with_attrs(xr.DataTree.from_dict({**parts, "protocol": protocol}))
    assert_epochs_equal(merged, session, atol=0)
    validate_session(merged)


def test_catalog_units_agree_or_conflict(files):
    node = io.read_csv(files["ecg"], {"ecg": {"group": "ecg", "units": "mV"}})
    assert node["ecg"].ds["ecg"].attrs["units"] == "mV"
    node = io.read_csv(files["ecg"], {"ecg [mV]": {"group": "ecg"}})  # the full column name
    assert node["ecg"].ds.attrs["channel"] == "ecg [mV]"
    with pytest.raises(
        UnitError, match=r"s01_ecg.csv: channel 'ecg' is in 'mV' according to the file but in 'uV'"
    ):
        io.read_csv(files["ecg"], {"ecg": {"group": "ecg", "units": "uV"}})


def test_units_are_converted(tmp_path):
    t = np.arange(400) / 200
    path = _write(tmp_path / "u.csv", {"time": t, "ECG": np.full(400, 1500.0), "BP": 13.0})
    node = io.read_csv(
        path, {"ECG": {"group": "ecg", "units": "uV"}, "BP": {"group": "abp", "units": "kPa"}}
    )
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, 1.5, rtol=1e-15)
    np.testing.assert_allclose(node["abp"].ds["abp"].values, 13000 / 133.322387415, rtol=1e-15)
    path = _write(tmp_path / "h.csv", {"time [s]": t, "BP [kPa]": 13.0})
    node = io.read_csv(path, {"BP": {"group": "abp"}})
    np.testing.assert_allclose(node["abp"].ds["abp"].values, 97.508005, atol=1e-6)


def test_unknown_and_missing_units(tmp_path):
    t = np.arange(400) / 200
    path = _write(tmp_path / "u.csv", {"time": t, "BP [furlong]": 1.0, "ECG": 0.0})
    with pytest.raises(UnitError, match=r"u.csv: channel 'BP': unknown unit 'furlong'"):
        io.read_csv(path, {"BP": {"group": "abp"}})
    with pytest.raises(UnitError, match=r"u.csv: channel 'ECG' has no unit in the file"):
        io.read_csv(path, {"ECG": {"group": "ecg"}})
    with pytest.raises(UnitError, match=r"u.csv: channel 'ECG': unknown unit 'mvolt'"):
        io.read_csv(path, {"ECG": {"group": "ecg", "units": "mvolt"}})


def test_time_column_name_units_and_start(tmp_path):
    t_ms = 2000.0 + np.arange(100) * 10.0  # 100 Hz, from 2 s
    path = _write(tmp_path / "ldf.csv", {"t": t_ms, "flux": np.linspace(5, 6, 100)})
    node = io.read_csv(
        path, {"flux": {"group": "ldf", "units": "PU"}}, time_column="t", time_units="ms"
    )
    ds = node["ldf"].ds
    assert ds.attrs["sampling_rate"] == 100.0
    np.testing.assert_allclose(ds["time"].values, t_ms / 1000, rtol=0, atol=1e-12)
    node = io.read_csv(
        path,
        {"flux": {"group": "ldf", "units": "PU"}},
        time_column="t",
        time_units="ms",
        sampling_rate=100,
    )
    assert node["ldf"].ds.attrs["sampling_rate"] == 100.0
    with pytest.raises(SessionFormatError, match=r"ldf.csv: no time column 'time' \(the file"):
        io.read_csv(path, {"flux": {"group": "ldf", "units": "PU"}})
    bracketed = _write(tmp_path / "b.csv", {"t [ms]": t_ms, "flux [PU]": 1.0})
    with pytest.raises(
        UnitError, match=r"b.csv: column 't \[ms\]' is in 'ms' according to the file"
    ):
        io.read_csv(bracketed, {"flux": {"group": "ldf"}}, time_column="t")
    with pytest.raises(UnitError, match=r"b.csv: time column 't \[ms\]': unknown unit 'fortnight'"):
        io.read_csv(bracketed, {"flux": {"group": "ldf"}}, time_column="t", time_units="fortnight")


def test_irregular_sampling_is_an_error(tmp_path):
    t = np.arange(100) * 0.01
    t[50:] += 0.003  # one step of 13 ms among 10 ms steps
    path = _write(tmp_path / "bad.csv", {"time": t, "flux": 1.0})
    with pytest.raises(
        SessionFormatError,
        match=r"bad.csv: column 'time' is not regularly sampled at any one rate \(the periods "
        r"that fit the rows before it: 0.0099\d+ to 0.0100\d+ s\): data row 51 \(at 0.503 s\) "
        r"is off the grid .* to 0.013 s \(before data row 51\)",
    ):
        io.read_csv(path, {"flux": {"group": "ldf", "units": "PU"}})
    # a given rate must fit the steps too
    good = _write(tmp_path / "good.csv", {"time": np.arange(100) * 0.01, "flux": 1.0})
    with pytest.raises(SessionFormatError, match=r"good.csv: column 'time' is not regularly"):
        io.read_csv(good, {"flux": {"group": "ldf", "units": "PU"}}, sampling_rate=50)
    # steps within 1 % that drift away from the grid
    drift = _write(tmp_path / "drift.csv", {"time": np.arange(1000) * 0.01 * 1.005, "flux": 1.0})
    with pytest.raises(
        SessionFormatError,
        match=r"drift.csv: column 'time' is not regularly sampled at 100 Hz: data row 2",
    ):
        io.read_csv(drift, {"flux": {"group": "ldf", "units": "PU"}}, sampling_rate=100)
    missing = tmp_path / "missing.csv"
    missing.write_text("time,flux\n0,1\n0.01,1\n,1\n0.03,1\n")
    with pytest.raises(SessionFormatError, match=r"missing.csv: column 'time' has a missing time"):
        io.read_csv(missing, {"flux": {"group": "ldf", "units": "PU"}})


def test_time_is_scanned_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_export, "_CHUNK_ROWS", 64)
    t = np.arange(1000) / 250
    path = _write(tmp_path / "ok.csv", {"time": t, "flux": np.arange(1000.0)})
    node = io.read_csv(path, {"flux": {"group": "ldf", "units": "PU"}})
    assert node["ldf"].ds.sizes["time"] == 1000
    np.testing.assert_array_equal(node["ldf"].ds["flux"].values, np.arange(1000.0))
    t[128:] += 0.002  # a bad step exactly at a block boundary
    path = _write(tmp_path / "edge.csv", {"time": t, "flux": 1.0})
    with pytest.raises(
        SessionFormatError, match=r"edge.csv: .* to 0.006 s \(before data row 129\)"
    ):
        io.read_csv(path, {"flux": {"group": "ldf", "units": "PU"}})
    # times printed coarser than the period: blocks of 64 give the rate of one pass
    coarse = tmp_path / "coarse.csv"
    pd.DataFrame({"time": np.arange(1000) / 360, "flux": 1.0}).to_csv(
        coarse, index=False, float_format="%.3f"
    )
    node = io.read_csv(coarse, {"flux": {"group": "ldf", "units": "PU"}})
    assert node["ldf"].ds.attrs["sampling_rate"] == 360.0
    assert node["ldf"].ds.sizes["time"] == 1000


def test_missing_column_and_unreadable_files(tmp_path, files):
    with pytest.raises(
        SessionFormatError,
        match=r"s01_abp.csv: no channel 'bp' \(the file has: \['time \[s\]', 'abp \[mmHg\]'\]\)",
    ):
        io.read_csv(files["abp"], {"bp": {"group": "abp"}})
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SessionFormatError, match=r"binary.csv: "):
        io.read_csv(binary, {"x": {"group": "abp", "units": "mmHg"}})
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SessionFormatError, match=r"empty.csv: not a readable CSV file"):
        io.read_csv(empty, {"x": {"group": "abp", "units": "mmHg"}})
    with pytest.raises(SessionFormatError, match=r"absent.csv: CSV file not found"):
        io.read_csv(tmp_path / "absent.csv", {"x": {"group": "abp", "units": "mmHg"}})
    text = tmp_path / "text.csv"
    text.write_text("time,abp\n0,80\n0.01,eighty\n0.02,81\n")
    node = io.read_csv(text, {"abp": {"group": "abp", "units": "mmHg"}})  # opens: time is fine
    with pytest.raises(SessionFormatError, match=r"text.csv: cannot read column 'abp'"):
        node["abp"].ds["abp"].compute()


def test_writer_refuses_to_overwrite(tmp_path, files, session):
    before = files["ecg"].read_bytes()
    with pytest.raises(CardiolabError, match=r"s01_ecg.csv exists; refusing to overwrite"):
        io.write_csv(session, tmp_path, "s01")
    assert files["ecg"].read_bytes() == before


def test_reading_is_lazy(files, monkeypatch):
    calls = []
    real = pd.read_csv

    def counting(*args, **kwargs):
        calls.append(tuple(kwargs.get("usecols") or ()))
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counting)
    node = io.read_csv(files["doppler"], MAPPINGS["doppler"])
    velocity = node["doppler"].ds["velocity"]
    assert isinstance(velocity.data, da.Array)
    # opening parses the time column (position 0) only
    assert calls == [(0,)]
    calls.clear()
    velocity.isel(vessel=0).compute()
    assert calls == [(1,)]  # velocity_femoral [cm/s]


def test_read_through_read_session(files):
    node = io.read_session(
        files["abp"], "csv", channels=MAPPINGS["abp"], time_column="time", time_units="s"
    )
    assert list(node.children) == ["abp"]
    assert io.READERS["csv"] is io.read_csv
    with pytest.raises(SessionFormatError, match=r"option\(s\) \['annotations'\] do not apply"):
        io.read_session(files["abp"], "csv", channels=MAPPINGS["abp"], annotations="atr")
    for group in RAW_GROUPS:
        assert group in files


# --- real-world layouts: PhysioNet's export, header-less files, European CSV ----------


def _real_world(shared_data, name):
    path = shared_data / "real_world" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _physionet_reference(shared_data, sampto):
    import wfdb  # the reference reader of the record the export was written from

    return wfdb.rdrecord(str(shared_data / "mitdb" / "100"), sampto=sampto).p_signal


def test_physionet_export_reads_at_360_hz(shared_data):
    """PhysioNet's CSV: quoted names and units line, seconds printed to 3 decimals."""
    path = _real_world(shared_data, "physionet_export_360hz.csv")
    ref = _physionet_reference(shared_data, 43200)
    for column, index in (("MLII", 0), ("V5", 1)):
        node = io.read_csv(path, {column: {"group": "ecg"}})  # units from the units line
        ds = node["ecg"].ds
        assert ds.attrs["sampling_rate"] == 360.0  # inferred: 43 200 samples in 119.997 s
        assert ds.attrs["source_units"] == "mV"
        assert ds.sizes["time"] == 43200
        # values printed to 3 decimals of mV
        np.testing.assert_allclose(ds["ecg"].values, ref[:, index], rtol=0, atol=0.0005)
    # the printed times are the grid k / 360 s rounded to 3 decimals
    printed = pd.read_csv(path, quotechar="'", skiprows=[1])["Elapsed time"].to_numpy()
    np.testing.assert_allclose(ds["time"].values, printed, rtol=0, atol=0.0005 + 1e-12)
    np.testing.assert_allclose(ds["time"].values, np.arange(43200) / 360, rtol=0, atol=1e-9)
    # the excerpt holds 148 annotated beats (mitdb/100.atr, first 43 200 samples)
    ann = io.read_wfdb_annotations(shared_data / "mitdb" / "100", "atr")
    assert int((ann["symbol"].isin(io.BEAT_SYMBOLS) & (ann["sample"] < 43200)).sum()) == 148
    # the stated rate is checked against the times
    stated = io.read_csv(path, {"MLII": {"group": "ecg"}}, sampling_rate=360)
    assert stated["ecg"].ds.attrs["sampling_rate"] == 360.0
    for wrong in (361, 359.99):
        with pytest.raises(
            SessionFormatError,
            match=rf"physionet_export_360hz.csv: column 'Elapsed time' is not regularly "
            rf"sampled at {wrong:g} Hz: data row \d+ ",
        ):
            io.read_csv(path, {"MLII": {"group": "ecg"}}, sampling_rate=wrong)
    # the units line is the file's unit, checked against the mapping's
    with pytest.raises(
        UnitError, match=r"physionet_export_360hz.csv: channel 'MLII' is in 'mV' according to"
    ):
        io.read_csv(path, {"MLII": {"group": "ecg", "units": "uV"}})


@pytest.mark.parametrize(
    ("rate", "decimals"), [(360, 3), (250, 2), (1000, 2), (128, 3), (62.5, 1), (500, 6)]
)
def test_times_printed_coarser_than_the_period_give_the_rate(tmp_path, rate, decimals):
    n = 5000
    t = np.round(3.0 + np.arange(n) / rate, decimals)
    path = tmp_path / "coarse.csv"
    frame = pd.DataFrame({"time": t, "abp": np.linspace(60, 120, n)})
    frame.to_csv(path, index=False, float_format=f"%.{decimals}f")
    node = io.read_csv(path, {"abp": {"group": "abp", "units": "mmHg"}})
    ds = node["abp"].ds
    assert ds.attrs["sampling_rate"] == rate
    assert ds.sizes["time"] == n
    assert ds["time"].values[0] == pytest.approx(3.0, abs=0.5 * 10.0**-decimals)
    np.testing.assert_allclose(np.diff(ds["time"].values), 1 / rate, rtol=1e-9)


def test_header_less_file_reads_at_the_given_rate(shared_data):
    """e0103.csv: one value per line, no header (European ST-T e0103, 250 Hz, mV)."""
    path = _real_world(shared_data, "e0103.csv")
    expected = np.loadtxt(path)
    mapping = {"ECG": {"group": "ecg", "units": "mV", "index": 0}}
    node = io.read_csv(path, mapping, sampling_rate=250)
    ds = node["ecg"].ds
    assert ds.sizes["time"] == expected.size == 30000
    assert ds.attrs["sampling_rate"] == 250.0
    np.testing.assert_allclose(ds["time"].values, np.arange(30000) / 250, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["ecg"].values, expected)
    with pytest.raises(
        SessionFormatError, match=r"e0103.csv: the file has no header line .* give sampling_rate"
    ):
        io.read_csv(path, mapping)
    with pytest.raises(
        SessionFormatError, match=r"e0103.csv: the file has no channel names; give channel 'ECG'"
    ):
        io.read_csv(path, {"ECG": {"group": "ecg", "units": "mV"}}, sampling_rate=250)
    with pytest.raises(SessionFormatError, match=r"e0103.csv: channel 'ECG': index 1 is past"):
        io.read_csv(path, {"ECG": {"group": "ecg", "units": "mV", "index": 1}}, sampling_rate=250)


@pytest.mark.parametrize("missing", ["nan", '""', ""])
def test_header_less_file_with_missing_samples_first(tmp_path, missing):
    """A lead-off stretch before the signal: NaN however it is written (pandas: "")."""
    path = tmp_path / "lead_off.csv"
    path.write_text("\n".join([missing] * 750 + ["0.455", "0.46", "0.45"]) + "\n")
    node = io.read_csv(
        path, {"ECG": {"group": "ecg", "units": "mV", "index": 0}}, sampling_rate=250
    )
    values = node["ecg"].ds["ecg"].values
    assert values.size == 753 and np.isnan(values[:750]).all()
    np.testing.assert_array_equal(values[750:], [0.455, 0.46, 0.45])


def test_file_with_a_header_but_no_time_column(tmp_path):
    path = _write(tmp_path / "flux.csv", {"flux [PU]": np.linspace(5, 6, 80), "other": 1.0})
    node = io.read_csv(path, {"flux": {"group": "ldf"}}, sampling_rate=40)
    ds = node["ldf"].ds
    assert ds.attrs["sampling_rate"] == 40.0 and ds.sizes["time"] == 80
    np.testing.assert_allclose(ds["time"].values, np.arange(80) / 40, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["flux"].values, np.linspace(5, 6, 80))
    with pytest.raises(
        SessionFormatError,
        match=r"flux.csv: no time column 'time' \(the file's columns: \['flux \[PU\]', "
        r"'other'\]\); give time_column, or sampling_rate",
    ):
        io.read_csv(path, {"flux": {"group": "ldf"}})


_EUROPEAN = "time;ecg [mV];abp [mmHg]\n" + "".join(
    f"{k / 100:.2f};{0.001 * k:.3f};{80 + k / 10:.1f}\n".replace(".", ",") for k in range(200)
)


def test_decimal_commas_and_semicolons_when_the_catalog_says_so(tmp_path):
    path = tmp_path / "european.csv"
    path.write_text(_EUROPEAN)
    mapping = {"ecg": {"group": "ecg"}, "abp": {"group": "abp"}}
    node = io.read_csv(path, mapping, decimal=",", separator=";")
    assert node["ecg"].ds.attrs["sampling_rate"] == 100.0
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, 0.001 * np.arange(200), atol=1e-12)
    np.testing.assert_allclose(node["abp"].ds["abp"].values, 80 + np.arange(200) / 10, atol=1e-9)
    with pytest.raises(
        SessionFormatError,
        match=r"european.csv: the first line has no separator ',' but has ';': give "
        r"separator: ';' and decimal: ',' for this file",
    ):
        io.read_csv(path, mapping)
    with pytest.raises(
        SessionFormatError,
        match=r"european.csv: values such as '0,00' use a decimal comma: give decimal: ','",
    ):
        io.read_csv(path, mapping, separator=";")
    with pytest.raises(SessionFormatError, match=r"european.csv: decimal and separator are both"):
        io.read_csv(path, mapping, decimal=",", separator=",")
    # through read_session, as the catalog passes its file entry's keys
    node = io.read_session(path, "csv", channels=mapping, decimal=",", separator=";")
    assert node["abp"].ds.sizes["time"] == 200


def test_duplicate_column_names_need_an_index(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("time,ecg,ecg\n" + "".join(f"{k / 10},{k},{-k}\n" for k in range(20)))
    with pytest.raises(
        SessionFormatError,
        match=r"dup.csv: channel label 'ecg' appears 2 times, at signal indices \[1, 2\]",
    ):
        io.read_csv(path, {"ecg": {"group": "ecg", "units": "mV"}})
    node = io.read_csv(path, {"ecg": {"group": "ecg", "units": "mV", "index": 2}})
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, -np.arange(20.0))


def test_units_line_and_bracketed_unit_must_agree(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text("time,abp [mmHg]\ns,kPa\n0,90\n0.01,91\n")
    with pytest.raises(
        UnitError,
        match=r"units.csv: column 'abp \[mmHg\]' is in 'mmHg' according to its name but in "
        r"'kPa' according to the units line",
    ):
        io.read_csv(path, {"abp": {"group": "abp"}})


def _cut_mid_line(path):
    text = path.read_text()
    path.write_text(text[: text.rindex(",")])  # the last line loses its last field


#: case -> (file text, mapping, options, error, message after "<file>: ")
BAD_INPUT = {
    "truncated (cut mid-line)": (
        "time,ecg,abp\n" + "".join(f"{k / 100},{k},{80 + k}\n" for k in range(50)),
        {"ecg": {"group": "ecg", "units": "mV"}},
        {},
        SessionFormatError,
        r"the last line has 2 of the 3 fields of the first \(no line break after it; line "
        r"not shown\): the file is cut mid-line \(truncated\)",
    ),
    "unknown channel": (
        "time,ecg\n0,1\n0.01,2\n",
        {"ECG II": {"group": "ecg", "units": "mV"}},
        {},
        SessionFormatError,
        r"no channel 'ECG II' \(the file has: \['time', 'ecg'\]\)",
    ),
    "unknown unit": (
        "time,ecg [mvolt]\n0,1\n0.01,2\n",
        {"ecg": {"group": "ecg"}},
        {},
        UnitError,
        r"channel 'ecg': unknown unit 'mvolt'",
    ),
    "unknown unit in the units line": (
        "time,ecg\nseconds,millivolts\n0,1\n0.01,2\n",
        {"ecg": {"group": "ecg"}},
        {},
        UnitError,
        r"channel 'ecg': unknown unit 'millivolts'",
    ),
    "zero sampling_rate": (
        "ecg\n1\n2\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {"sampling_rate": 0},
        SessionFormatError,
        r"sampling_rate is 0; it must be a number of Hz > 0",
    ),
    "negative sampling_rate": (
        "ecg\n1\n2\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {"sampling_rate": -250.0},
        SessionFormatError,
        r"sampling_rate is -250.0; it must be a number of Hz > 0",
    ),
    "sampling_rate not a number": (
        "ecg\n1\n2\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {"sampling_rate": "fast"},
        SessionFormatError,
        r"sampling_rate is 'fast'; it must be a number of Hz > 0",
    ),
    "empty file": (
        "",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {},
        SessionFormatError,
        r"not a readable CSV file \(the file is empty\)",
    ),
    "header only": (
        "time,ecg\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {},
        SessionFormatError,
        r"fewer than 2 samples in time column 'time'",
    ),
    "header only, no time column": (
        "ecg\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {"sampling_rate": 100},
        SessionFormatError,
        r"no samples after the header",
    ),
    "time column that does not increase": (
        "time,ecg\n0,1\n0,2\n0,3\n",
        {"ecg": {"group": "ecg", "units": "mV"}},
        {},
        SessionFormatError,
        r"column 'time' does not increase",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_names_the_file_and_the_field(tmp_path, case):
    text, mapping, options, error, message = BAD_INPUT[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    if case.startswith("truncated"):
        _cut_mid_line(path)
    with pytest.raises(error, match=re.escape(f"{path}: ") + message):
        io.read_csv(path, mapping, **options)
