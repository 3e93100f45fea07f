"""Readers and writers: round trips, units, errors, laziness, PhysioNet records."""

import dask.array as da
import numpy as np
import pyedflib
import pytest
import xarray as xr
from sessions import EDF_CHANNELS, make_session, with_attrs

from cardiolab import io
from cardiolab.errors import SessionFormatError, UnitError
from cardiolab.schema import RAW_GROUPS, validate_session

VARS = {g: spec.variable for g, spec in RAW_GROUPS.items()}


def _assert_close(read, orig, tolerance_of):
    for group, var in VARS.items():
        if group not in orig.children:
            continue
        a = orig[group].ds[var]
        b = read[group].ds[var]
        assert b.attrs["units"] == a.attrs["units"]
        assert read[group].ds.attrs["sampling_rate"] == orig[group].ds.attrs["sampling_rate"]
        np.testing.assert_allclose(read[group].ds["time"], a["time"], atol=1e-9)
        tol = tolerance_of(a)
        np.testing.assert_allclose(b.transpose(*a.dims).values, a.values, atol=tol, rtol=0)
    p_read = read["protocol"].ds
    p_orig = orig["protocol"].ds
    assert [str(x) for x in p_read["epoch"].values] == [str(x) for x in p_orig["epoch"].values]
    np.testing.assert_allclose(p_read["start"], p_orig["start"], atol=0.01)
    np.testing.assert_allclose(p_read["stop"], p_orig["stop"], atol=0.01)


def _sixteen_bit(a):
    """EDF and WFDB store 16-bit samples: half a step of the channel's range."""
    span = float(a.max() - a.min()) * 1.02 + 2e-3
    return span / 65535.0


def test_zarr_round_trip_is_exact_to_the_storage_resolution(tmp_path):
    node = make_session()
    tree = xr.DataTree.from_dict({"S01/L-30": node})
    io.write_campaign_zarr(tree, tmp_path / "c.zarr")
    read = io.read_session(tmp_path / "c.zarr", "zarr", group="S01/L-30")
    assert read.attrs["subject"] == "S01"
    _assert_close(read, node, lambda a: 0.5e-3 + 1e-9)  # int32 counts of 0.001
    validate_session(read)
    with pytest.raises(Exception, match="exists"):
        io.write_campaign_zarr(tree, tmp_path / "c.zarr")


def test_netcdf_round_trip(tmp_path):
    node = make_session()
    tree = xr.DataTree.from_dict({"S01/L-30": node})
    io.write_campaign_netcdf(tree, tmp_path / "c.nc")
    read = io.read_session(tmp_path / "c.nc", "netcdf", group="S01/L-30")
    _assert_close(read, node, lambda a: 1e-12)


def test_zarr_missing_session_lists_what_is_there(tmp_path):
    io.write_campaign_zarr(xr.DataTree.from_dict({"S01/L-30": make_session()}), tmp_path / "c.zarr")
    with pytest.raises(SessionFormatError, match=r"no session group 'S02/R\+1'.*S01/L-30"):
        io.read_zarr_session(tmp_path / "c.zarr", "S02/R+1")


def test_edf_round_trip(tmp_path):
    node = make_session()
    io.write_edf(node, tmp_path / "s.edf")
    read = io.read_edf(tmp_path / "s.edf", EDF_CHANNELS)
    _assert_close(read, node, _sixteen_bit)
    validate_session(with_attrs(read))
    assert read["ecg"].ds.attrs["channel"] == "ECG"


def test_wfdb_round_trip(tmp_path):
    node = make_session()
    records = io.write_wfdb(node, tmp_path, "s01")
    assert [r.name for r in records] == ["s01_ecg", "s01_abp", "s01_ldf", "s01_doppler"]
    parts = [
        io.read_wfdb(tmp_path / "s01_ecg", {"ecg": {"group": "ecg"}}, annotations="prot"),
        io.read_wfdb(tmp_path / "s01_abp", {"abp": {"group": "abp"}}),
        io.read_wfdb(tmp_path / "s01_ldf", {"flux": {"group": "ldf"}}),
        io.read_wfdb(
            tmp_path / "s01_doppler",
            {
                "doppler_femoral": {"group": "doppler", "vessel": "femoral"},
                "doppler_mca": {"group": "doppler", "vessel": "mca"},
            },
        ),
    ]
    merged = xr.DataTree.from_dict(
        {name: child.to_dataset() for p in parts for name, child in p.children.items()}
    )
    _assert_close(merged, node, _sixteen_bit)


def test_csv_round_trip(tmp_path):
    node = make_session()
    files = io.write_csv(node, tmp_path, "s01")
    read = io.read_csv(files["abp"], {"abp": {"group": "abp", "units": "mmHg"}})
    a = node["abp"].ds["abp"]
    np.testing.assert_allclose(read["abp"].ds["abp"].values, a.values, rtol=1e-5)
    assert read["abp"].ds.attrs["sampling_rate"] == 200.0
    dop = io.read_csv(
        files["doppler"],
        {
            "velocity_femoral": {"group": "doppler", "units": "cm/s", "vessel": "femoral"},
            "velocity_mca": {"group": "doppler", "units": "cm/s", "vessel": "mca"},
        },
    )
    np.testing.assert_allclose(
        dop["doppler"].ds["velocity"].values, node["doppler"].ds["velocity"].values, rtol=1e-5
    )


def test_csv_time_in_ms_and_irregular_sampling(tmp_path):
    t = np.arange(100) * 10.0  # ms
    path = tmp_path / "ldf.csv"
    path.write_text(
        "t,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(t, np.ones(100), strict=True)) + "\n"
    )
    node = io.read_csv(
        path, {"flux": {"group": "ldf", "units": "PU"}}, time_column="t", time_units="ms"
    )
    assert node["ldf"].ds.attrs["sampling_rate"] == 100.0
    t[50:] += 3.0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "t,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(t, np.ones(100), strict=True)) + "\n"
    )
    with pytest.raises(SessionFormatError, match=r"bad.csv: column 't' is not regularly sampled"):
        io.read_csv(
            bad, {"flux": {"group": "ldf", "units": "PU"}}, time_column="t", time_units="ms"
        )


def _edf(path, label, dimension, values, fs=200):
    from pyedflib import highlevel

    header = highlevel.make_signal_header(
        label,
        dimension=dimension,
        sample_frequency=fs,
        physical_min=float(values.min()) - 1,
        physical_max=float(values.max()) + 1,
    )
    highlevel.write_edf(str(path), [values], [header])
    return path


def test_units_are_converted_from_the_header(tmp_path):
    kpa = np.full(400, 16.0)  # 16 kPa = 120.0 mmHg
    path = _edf(tmp_path / "p.edf", "BP", "kPa", kpa)
    node = io.read_edf(path, {"BP": {"group": "abp"}})
    np.testing.assert_allclose(node["abp"].ds["abp"].values, 120.0, atol=0.01)
    uv = np.full(1000, 1000.0)
    path = _edf(tmp_path / "e.edf", "ECG II", "uV", uv, fs=500)
    node = io.read_edf(path, {"ECG II": {"group": "ecg"}})
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, 1.0, atol=1e-3)


def test_unknown_and_conflicting_units(tmp_path):
    path = _edf(tmp_path / "p.edf", "BP", "psi", np.full(400, 2.0))
    with pytest.raises(UnitError, match=r"p.edf: channel 'BP': unknown unit 'psi'"):
        io.read_edf(path, {"BP": {"group": "abp"}})
    path = _edf(tmp_path / "q.edf", "BP", "kPa", np.full(400, 16.0))
    with pytest.raises(
        UnitError, match=r"q.edf: channel 'BP' is in 'kPa' according to the file but in 'mmHg'"
    ):
        io.read_edf(path, {"BP": {"group": "abp", "units": "mmHg"}})
    path = _edf(tmp_path / "r.edf", "BP", "mV", np.full(400, 1.0))
    with pytest.raises(UnitError, match="measures voltage, not pressure"):
        io.read_edf(path, {"BP": {"group": "abp"}})


def test_missing_channel_and_corrupt_file(tmp_path):
    node = make_session()
    io.write_edf(node, tmp_path / "s.edf")
    with pytest.raises(
        SessionFormatError, match=r"s.edf: no channel 'ECG I' \(the file has: \['ECG'"
    ):
        io.read_edf(tmp_path / "s.edf", {"ECG I": {"group": "ecg"}})
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"0       this is not an EDF header" + bytes(200))
    with pytest.raises(SessionFormatError, match=r"bad.edf: not a readable EDF"):
        io.read_edf(bad, {"ECG": {"group": "ecg"}})
    (tmp_path / "bad.hea").write_text("garbage\n")
    with pytest.raises(SessionFormatError, match=r"bad: not a readable WFDB record"):
        io.read_wfdb(tmp_path / "bad", {"ECG": {"group": "ecg"}})


def test_channel_mapping_errors(tmp_path):
    node = make_session()
    io.write_edf(node, tmp_path / "s.edf")
    with pytest.raises(SessionFormatError, match="both map to group 'ecg'"):
        io.read_edf(tmp_path / "s.edf", {"ECG": {"group": "ecg"}, "ABP": {"group": "ecg"}})
    with pytest.raises(SessionFormatError, match="needs a 'vessel'"):
        io.read_edf(tmp_path / "s.edf", {"Doppler mca": {"group": "doppler"}})


def test_readers_are_lazy(tmp_path, monkeypatch):
    node = make_session()
    io.write_edf(node, tmp_path / "s.edf")
    io.write_wfdb(node, tmp_path, "s")
    calls = []
    real = pyedflib.EdfReader.readSignal

    def counting(self, *a, **k):
        calls.append("edf")
        return real(self, *a, **k)

    monkeypatch.setattr(pyedflib.EdfReader, "readSignal", counting)
    import wfdb

    real_rd = wfdb.rdrecord

    def counting_rd(*a, **k):
        calls.append("wfdb")
        return real_rd(*a, **k)

    monkeypatch.setattr(wfdb, "rdrecord", counting_rd)
    edf = io.read_edf(tmp_path / "s.edf", EDF_CHANNELS)
    rec = io.read_wfdb(tmp_path / "s_ecg", {"ecg": {"group": "ecg"}})
    assert isinstance(edf["ecg"].ds["ecg"].data, da.Array)
    assert isinstance(rec["ecg"].ds["ecg"].data, da.Array)
    assert calls == []
    assert edf["ecg"].ds["ecg"].compute().size == 4000
    assert rec["ecg"].ds["ecg"].compute().size == 4000
    assert "edf" in calls and "wfdb" in calls


# --- PhysioNet reference records -----------------------------------------------------


def test_mitdb_record_100(shared_data):
    import wfdb

    path = shared_data / "mitdb" / "100"
    header = wfdb.rdheader(str(path))
    node = io.read_wfdb(path, {"MLII": {"group": "ecg"}})
    ecg = node["ecg"].ds
    assert ecg.sizes["time"] == header.sig_len == 650000
    assert ecg.attrs["sampling_rate"] == 360.0
    ann = io.read_wfdb_annotations(path, "atr")
    beats = ann["symbol"].isin(io.BEAT_SYMBOLS)
    assert int(beats.sum()) == 2273  # the record's published beat count
    assert len(ann) == wfdb.rdann(str(path), "atr").ann_len
    assert ann["time"].iloc[-1] <= ecg["time"].values[-1]
    # physical units: the MLII lead of a normal beat peaks around 1-2 mV
    r = int(ann.loc[ann["symbol"] == "N", "sample"].iloc[10])
    assert 0.5 < float(ecg["ecg"][r - 20 : r + 20].max()) < 3.0


def test_mimic_record_with_arterial_pressure(shared_data):
    import wfdb

    path = shared_data / "bp" / "03700181"
    header = wfdb.rdheader(str(path))
    names = header.sig_name
    abp = next(n for n in names if "ABP" in n.upper())
    ecg = next(n for n in names if n.upper() in ("II", "I", "V", "III", "AVR", "MCL1"))
    node = io.read_wfdb(path, {ecg: {"group": "ecg"}, abp: {"group": "abp"}})
    p = node["abp"].ds["abp"].values
    assert node["abp"].ds.attrs["sampling_rate"] == 125.0
    assert node["abp"].ds.sizes["time"] == header.sig_len
    finite = p[np.isfinite(p)]
    assert 30 < np.median(finite) < 150  # mmHg
    assert np.percentile(finite, 99) < 250
