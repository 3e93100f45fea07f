"""CSV exports: exact round trip, units in headers, time columns, sampling, laziness."""

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
    assert sorted(files) == ["abp", "doppler", "ecg", "ldf", "protocol"]
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
