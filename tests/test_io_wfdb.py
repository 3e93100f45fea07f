"""WFDB: round trip within 16-bit resolution, protocol annotations, units, errors,
laziness, and PhysioNet reference records (MIT-BIH 100, MIMIC bp/03700181)."""

import re
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import wfdb
import xarray as xr
from reference_data import SHARED_DATA
from session_checks import assert_epochs_equal, assert_group_close
from sessions import make_session, with_attrs

from cardiolab import io, schema
from cardiolab.errors import CardiolabError, SessionFormatError, UnitError
from cardiolab.schema import RAW_GROUPS, validate_session

#: ../shared/data beside the repository

MAPPINGS = {
    "ecg": {"ecg": {"group": "ecg"}},
    "abp": {"abp": {"group": "abp"}},
    "ldf": {"flux": {"group": "ldf"}},
    "doppler": {
        "doppler_femoral": {"group": "doppler", "vessel": "femoral"},
        "doppler_mca": {"group": "doppler", "vessel": "mca"},
    },
    "resp": {"resp": {"group": "resp"}},
}


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: PhysioNet reference records are not available")
    return SHARED_DATA


@pytest.fixture
def session():
    return make_session()


@pytest.fixture
def records(tmp_path, session):
    return io.write_wfdb(session, tmp_path, "s01")


def _record(directory, name, signals, fs=200.0):
    """A WFDB record with ``signals = {name: (units, values)}``."""
    names = list(signals)
    p = np.column_stack([np.asarray(signals[n][1], dtype=float) for n in names])
    wfdb.wrsamp(
        name,
        fs=fs,
        units=[signals[n][0] for n in names],
        sig_name=names,
        p_signal=p,
        fmt=["16"] * len(names),
        write_dir=str(directory),
    )
    return Path(directory) / name


def test_round_trip_within_half_a_digital_step(records, session):
    assert [r.name for r in records] == [
        "s01_ecg",
        "s01_abp",
        "s01_ldf",
        "s01_doppler",
        "s01_resp",
    ]
    parts = {}
    for record, group in zip(records, MAPPINGS, strict=True):
        node = io.read_wfdb(record, MAPPINGS[group], annotations=io.PROTOCOL_EXTENSION)
        header = wfdb.rdheader(str(record))
        # one digital step is 1 / adc_gain, i.e. the signal's range / 65534
        steps = [1.0 / g for g in header.adc_gain]
        var = RAW_GROUPS[group].variable
        values = np.atleast_2d(session[group].ds[var].values)
        for step, row in zip(steps, values, strict=True):
            assert step == pytest.approx(float(row.max() - row.min()) / 65535, rel=1e-3)
        half = [0.5 * s * (1 + 1e-9) for s in steps]
        atol = dict(zip(["femoral", "mca"], half, strict=True)) if group == "doppler" else half[0]
        channel = list(MAPPINGS[group]) if group == "doppler" else next(iter(MAPPINGS[group]))
        assert_group_close(node, session, group, atol, channel=channel)
        # epochs are written at whole samples: exact for times on the sample grid
        assert_epochs_equal(node, session, atol=1e-12)
        parts[group] = node[group].to_dataset()
    merged = with_attrs(xr.DataTree.from_dict({**parts, "protocol": node["protocol"].to_dataset()}))
    validate_session(merged)


def test_protocol_annotation_convention(records, session):
    table = io.read_wfdb_annotations(records[0], io.PROTOCOL_EXTENSION)
    assert list(table.columns) == ["sample", "time", "symbol", "aux_note"]
    assert table["symbol"].tolist() == ["+"] * 4
    assert table["aux_note"].tolist() == ["(supine", "supine)", "(stand", "stand)"]
    assert table["sample"].tolist() == [0, 2000, 2000, 4000]  # 500 Hz; stop = last + 1
    np.testing.assert_array_equal(table["time"], [0.0, 4.0, 4.0, 8.0])


def test_rhythm_notes_that_never_close_are_not_epochs(tmp_path):
    rec = _record(tmp_path, "r", {"ECG": ("mV", np.zeros(1000))})
    wfdb.wrann(
        "r",
        "atr",
        np.array([0, 10, 500]),
        symbol=["+", "N", "+"],
        aux_note=["(N", "", "(AFIB"],
        fs=200,
        write_dir=str(tmp_path),
    )
    node = io.read_wfdb(rec, {"ECG": {"group": "ecg"}}, annotations="atr")
    assert "protocol" not in node.children


def test_writer_refuses_to_overwrite(tmp_path, records, session):
    with pytest.raises(CardiolabError, match=r"s01_ecg.hea exists; refusing to overwrite"):
        io.write_wfdb(session, tmp_path, "s01")
    with pytest.raises(SessionFormatError, match=r"record name 's 01' may hold only"):
        io.write_wfdb(session, tmp_path, "s 01")


def test_units_are_converted_from_the_header(tmp_path):
    rec = _record(
        tmp_path, "u", {"ECG": ("uV", np.full(400, 1500.0)), "BP": ("kPa", np.full(400, 13.0))}
    )
    node = io.read_wfdb(rec, {"ECG": {"group": "ecg"}, "BP": {"group": "abp"}})
    header = wfdb.rdheader(str(rec))
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, 1.5, atol=1e-3 / header.adc_gain[0])
    np.testing.assert_allclose(
        node["abp"].ds["abp"].values, 13.0 * 1000 / 133.322387415, atol=7.6 / header.adc_gain[1]
    )  # 13 kPa = 97.51 mmHg
    assert node["abp"].ds.attrs["source_units"] == "kPa"


def test_unknown_and_conflicting_units(tmp_path):
    rec = _record(tmp_path, "u", {"BP": ("furlong", np.full(400, 3.0))})
    with pytest.raises(UnitError, match=r"u: channel 'BP': unknown unit 'furlong'"):
        io.read_wfdb(rec, {"BP": {"group": "abp"}})
    rec = _record(tmp_path, "k", {"BP": ("kPa", np.full(400, 13.0))})
    with pytest.raises(UnitError, match=r"k: channel 'BP' is in 'kPa' according to the file"):
        io.read_wfdb(rec, {"BP": {"group": "abp", "units": "mmHg"}})


def test_header_without_units(tmp_path):
    rec = _record(tmp_path, "n", {"BP": ("mmHg", np.full(400, 90.0))})
    hea = Path(f"{rec}.hea")
    hea.write_text(hea.read_text().replace("/mmHg", ""))  # WFDB then means mV
    node = io.read_wfdb(rec, {"BP": {"group": "abp", "units": "mmHg"}})
    np.testing.assert_allclose(node["abp"].ds["abp"].values, 90.0, atol=0.01)
    with pytest.raises(UnitError, match=r"n: channel 'BP': the header gives no unit"):
        io.read_wfdb(rec, {"BP": {"group": "abp"}})


def test_missing_channel_and_unreadable_records(tmp_path, records):
    with pytest.raises(
        SessionFormatError, match=r"s01_abp: no channel 'ABP' \(the file has: \['abp'\]\)"
    ):
        io.read_wfdb(records[1], {"ABP": {"group": "abp"}})
    (tmp_path / "bad.hea").write_text("garbage that is no header\n")
    with pytest.raises(SessionFormatError, match=r"bad: not a readable WFDB record"):
        io.read_wfdb(tmp_path / "bad", {"ECG": {"group": "ecg"}})
    with pytest.raises(SessionFormatError, match=r"absent: WFDB header absent.hea not found"):
        io.read_wfdb(tmp_path / "absent", {"ECG": {"group": "ecg"}})
    Path(f"{records[2]}.dat").unlink()
    with pytest.raises(SessionFormatError, match=r"s01_ldf: signal file s01_ldf.dat not found"):
        io.read_wfdb(records[2], MAPPINGS["ldf"])
    (tmp_path / "s01_ecg.xyz").write_bytes(b"\x01\x02\x03")
    with pytest.raises(SessionFormatError, match=r"s01_ecg.xyz: not a readable WFDB annotation"):
        io.read_wfdb_annotations(records[0], "xyz")


def test_reading_is_lazy_and_per_channel(records, monkeypatch):
    calls = []
    real = wfdb.rdrecord

    def counting(*args, **kwargs):
        calls.append(kwargs.get("channels"))
        return real(*args, **kwargs)

    monkeypatch.setattr(wfdb, "rdrecord", counting)
    node = io.read_wfdb(records[3], MAPPINGS["doppler"], annotations="prot")
    assert isinstance(node["doppler"].ds["velocity"].data, da.Array)
    assert calls == []
    assert node["doppler"].ds["velocity"].isel(vessel=1).compute().size == 800
    assert calls == [[1]]  # the mca signal only


def test_read_through_read_session(records):
    node = io.read_session(records[0], "wfdb", channels=MAPPINGS["ecg"], annotations="prot")
    assert list(node.children) == ["ecg", "protocol"]
    assert io.READERS["wfdb"] is io.read_wfdb


# --- PhysioNet reference records -----------------------------------------------------


def test_mitdb_record_100(shared_data):
    path = shared_data / "mitdb" / "100"
    header = wfdb.rdheader(str(path))
    node = io.read_wfdb(path, {"MLII": {"group": "ecg"}})
    ecg = node["ecg"].ds
    assert isinstance(ecg["ecg"].data, da.Array)
    assert ecg.sizes["time"] == header.sig_len == 650000
    assert ecg.attrs["sampling_rate"] == 360.0
    ann = io.read_wfdb_annotations(path, "atr")
    beats = ann["symbol"].isin(io.BEAT_SYMBOLS)
    assert int(beats.sum()) == 2273  # the record's published beat count
    assert len(ann) == wfdb.rdann(str(path), "atr").ann_len
    np.testing.assert_allclose(ann["time"], ann["sample"] / 360.0)
    # physical units: the MLII R wave of a normal beat peaks around 1-2 mV
    r = int(ann.loc[ann["symbol"] == "N", "sample"].iloc[10])
    assert 0.5 < float(ecg["ecg"][r - 20 : r + 20].max()) < 3.0


def test_mimic_record_with_arterial_pressure(shared_data):
    path = shared_data / "bp" / "03700181"
    header = wfdb.rdheader(str(path))
    assert header.sig_name[:2] == ["MCL1", "ABP"] and header.units[:2] == ["mV", "mmHg"]
    node = io.read_wfdb(path, {"MCL1": {"group": "ecg"}, "ABP": {"group": "abp"}})
    abp = node["abp"].ds
    assert abp.attrs["sampling_rate"] == 125.0
    assert abp.sizes["time"] == header.sig_len == 75000
    # the ECG is stored with 4 samples per frame: 500 Hz
    assert node["ecg"].ds.attrs["sampling_rate"] == 500.0
    assert node["ecg"].ds.sizes["time"] == 4 * header.sig_len
    p = abp["abp"].values
    assert np.isfinite(p).all()
    # an ICU patient's radial pressure in mmHg: pulsatile, within 10-300 mmHg
    # (this record is hypotensive: 25-65 mmHg)
    assert 10 < p.min() and p.max() < 300
    assert 20 < np.median(p) < 200
    assert np.percentile(p, 99) - np.percentile(p, 1) > 15
    np.testing.assert_allclose(p, wfdb.rdrecord(str(path), channels=[1]).p_signal[:, 0])
    protocol = schema.protocol_group([("all", 0.0, 600.0)])
    validate_session(with_attrs(xr.DataTree.from_dict({**_groups(node), "protocol": protocol})))


def _groups(node):
    return {name: child.to_dataset() for name, child in node.children.items()}


def test_multi_rate_record(shared_data):
    """WFDB multi-frequency record: each signal at its own rate (fs x samps_per_frame)."""
    path = shared_data / "bp" / "mixedsignals"
    node = io.read_wfdb(
        path,
        {"II": {"group": "ecg"}, "ABP": {"group": "abp"}, "Pleth": {"group": "ldf", "units": "PU"}},
    )
    assert node["ecg"].ds.attrs["sampling_rate"] == pytest.approx(4 * 62.4725)
    assert node["abp"].ds.attrs["sampling_rate"] == pytest.approx(2 * 62.4725)
    assert node["ecg"].ds.sizes["time"] == 4 * 14400 and node["abp"].ds.sizes["time"] == 2 * 14400
    assert node["ldf"].ds.attrs["source_units"] == "PU"  # the header says NU: not a unit
    ref = wfdb.rdrecord(str(path), smooth_frames=False).e_p_signal
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, ref[0])
    np.testing.assert_array_equal(node["abp"].ds["abp"].values, ref[3])
    with pytest.raises(UnitError, match=r"mixedsignals: channel 'Pleth' has no unit in the file"):
        io.read_wfdb(path, {"Pleth": {"group": "ldf"}})


def test_multi_segment_record(shared_data):
    path = shared_data / "bp" / "041s" / "041s"
    node = io.read_wfdb(path, {"III": {"group": "ecg"}, "ABP": {"group": "abp"}})
    assert node["abp"].ds.sizes["time"] == 2000 and node["ecg"].ds.sizes["time"] == 8000
    p = node["abp"].ds["abp"].values
    np.testing.assert_array_equal(p, wfdb.rdrecord(str(path), channels=[3]).p_signal[:, 0])
    assert 20 < np.nanmedian(p) < 200


# --- header fields, signal files and bad input ----------------------------------------


def _set_signal_field(record, line: int, field: int, value: str):
    """Set field ``field`` (0-based) of signal line ``line`` (1-based) of a header."""
    hea = Path(f"{record}.hea")
    lines = hea.read_text().splitlines()
    fields = lines[line].split()
    fields[field] = value
    lines[line] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")


def _edit_header(record, old, new):
    hea = Path(f"{record}.hea")
    text = hea.read_text()
    assert old in text
    hea.write_text(text.replace(old, new, 1))


def test_duplicate_signal_names_need_an_index(tmp_path):
    ecg_a, ecg_b = np.linspace(-1, 1, 400), np.linspace(2, 3, 400)
    rec = _record(
        tmp_path, "d", {"ECG": ("mV", ecg_a), "BP": ("mmHg", 90.0 + ecg_a), "ECG2": ("mV", ecg_b)}
    )
    _edit_header(rec, " ECG2", " ECG")  # wfdb writes unique names only; PhysioNet has such files
    with pytest.raises(
        SessionFormatError,
        match=r"d: channel label 'ECG' appears 2 times, at signal indices \[0, 2\]; say which",
    ):
        io.read_wfdb(rec, {"ECG": {"group": "ecg"}})
    step = 3.0 / 65535  # one digital step of the wider of the two ranges, about
    for index, expected in ((0, ecg_a), (2, ecg_b)):
        node = io.read_wfdb(rec, {"ECG": {"group": "ecg", "index": index}})
        np.testing.assert_allclose(node["ecg"].ds["ecg"].values, expected, atol=step)
    with pytest.raises(SessionFormatError, match=r"d: channel 'ECG': the signal at index 1 is"):
        io.read_wfdb(rec, {"ECG": {"group": "ecg", "index": 1}})


def test_mat_signal_file_reads_lazily_with_wfdb_values(shared_data, monkeypatch):
    """PhysioNet/CinC 2015 a103l: format 16 in a MATLAB v4 file (``16+24``)."""
    path = shared_data / "real_world" / "a103l"
    ref = wfdb.rdrecord(str(path)).p_signal
    calls = []
    real = wfdb.rdrecord

    def counting(*args, **kwargs):
        calls.append(kwargs.get("channels"))
        return real(*args, **kwargs)

    monkeypatch.setattr(wfdb, "rdrecord", counting)
    # PLETH: the header says NU (no unit), so the mapping gives one
    mapping = {"II": {"group": "ecg"}, "PLETH": {"group": "ldf", "units": "PU"}}
    node = io.read_wfdb(path, mapping)
    assert calls == []
    assert isinstance(node["ecg"].ds["ecg"].data, da.Array)
    assert node["ecg"].ds.sizes["time"] == 82500 and node["ecg"].ds.attrs["sampling_rate"] == 250
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, ref[:, 0])
    assert calls == [[0]]
    np.testing.assert_array_equal(node["ldf"].ds["flux"].values, ref[:, 2])
    # the values are the stored integers over the header's gain: II is 7247 units per mV
    assert np.nanmax(np.abs(ref[:, 0] * 7247 - np.round(ref[:, 0] * 7247))) < 1e-6


def test_header_without_signal_length_reads_as_wfdb_reads_it(shared_data):
    """a103l-no-len.hea omits the length: it comes from the .mat file's size."""
    base = shared_data / "real_world"
    assert wfdb.rdheader(str(base / "a103l-no-len")).sig_len is None
    ref = wfdb.rdrecord(str(base / "a103l-no-len")).p_signal
    assert ref.shape == (82500, 3)
    mapping = {"V": {"group": "ecg"}}
    node = io.read_wfdb(base / "a103l-no-len", mapping)
    assert node["ecg"].ds.sizes["time"] == 82500
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, ref[:, 1])
    full = io.read_wfdb(base / "a103l", mapping)
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, full["ecg"].ds["ecg"].values)


def test_length_from_a_signal_file_of_whole_frames(tmp_path):
    """Format 212 (2 samples in 3 bytes), 2 signals per frame: 401 frames on disk."""
    values = np.column_stack([np.linspace(0, 1, 401), np.linspace(50, 150, 401)])
    wfdb.wrsamp(
        "f",
        fs=200,
        units=["mV", "mmHg"],
        sig_name=["ECG", "BP"],
        p_signal=values,
        fmt=["212", "212"],
        adc_gain=[1000.0, 10.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    rec = tmp_path / "f"
    _edit_header(rec, "f 2 200 401", "f 2 200")
    node = io.read_wfdb(rec, {"BP": {"group": "abp"}})
    assert node["abp"].ds.sizes["time"] == 401
    np.testing.assert_allclose(node["abp"].ds["abp"].values, values[:, 1], atol=0.05)


def _bad_input_record(tmp_path):
    return _record(
        tmp_path,
        "bad",
        {"ECG": ("mV", np.sin(np.arange(500) / 10)), "BP": ("mmHg", np.full(500, 90.0))},
        fs=250.0,
    )


def _truncate(rec):
    dat = Path(f"{rec}.dat")
    dat.write_bytes(dat.read_bytes()[:1000])  # 250 of 500 frames (2 signals x 2 bytes)


#: case -> (how the record is spoiled, mapping, error, file named, field named)
BAD_INPUT = {
    "truncated signal file": (
        _truncate,
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.dat",
        r"the signal file holds 250 frames, but the header's signal length \(record line, field 4\) is "
        r"500: the file is truncated",
    ),
    "empty signal file": (
        lambda rec: Path(f"{rec}.dat").write_bytes(b""),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.dat",
        "the signal file is empty",
    ),
    "empty header": (
        lambda rec: Path(f"{rec}.hea").write_text(""),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"the WFDB header is empty \(no record line\)",
    ),
    "unknown channel": (
        lambda rec: None,
        {"II": {"group": "ecg"}},
        SessionFormatError,
        "bad",
        r"no channel 'II' \(the file has: \['ECG', 'BP'\]\)",
    ),
    "unknown unit": (
        lambda rec: _edit_header(rec, "/mmHg", "/mmHq"),
        {"BP": {"group": "abp"}},
        UnitError,
        "bad",
        r"channel 'BP': unknown unit 'mmHq'",
    ),
    "zero sampling frequency": (
        lambda rec: _edit_header(rec, "bad 2 250 500", "bad 2 0 500"),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"sampling frequency \(record line, field 3\) is '0'; it must be a number of Hz > 0",
    ),
    "negative sampling frequency": (
        lambda rec: _edit_header(rec, "bad 2 250 500", "bad 2 -500 500"),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"sampling frequency \(record line, field 3\) is '-500'",
    ),
    "no sampling frequency": (
        lambda rec: _edit_header(rec, "bad 2 250 500", "bad 2"),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"no sampling frequency \(record line, field 3\); WFDB would assume 250 Hz",
    ),
    "zero signal length": (
        lambda rec: _edit_header(rec, "bad 2 250 500", "bad 2 250 0"),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"signal length \(record line, field 4\) is '0'",
    ),
    "uncalibrated signal (gain 0)": (
        lambda rec: _set_signal_field(rec, 1, 2, "0/mV"),
        {"ECG": {"group": "ecg"}},
        SessionFormatError,
        "bad.hea",
        r"signal 'ECG': ADC gain \(signal line 1, field 3\) is '0': WFDB then calls the "
        "signal uncalibrated",
    ),
    "uncalibrated signal (gain 0, no unit)": (
        lambda rec: _set_signal_field(rec, 2, 2, "0"),
        {"BP": {"group": "abp", "units": "mmHg"}},
        SessionFormatError,
        "bad.hea",
        r"signal 'BP': ADC gain \(signal line 2, field 3\) is '0'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_names_the_file_and_the_field(tmp_path, case):
    spoil, mapping, error, file, message = BAD_INPUT[case]
    rec = _bad_input_record(tmp_path)
    spoil(rec)
    with pytest.raises(error, match=re.escape(f"{tmp_path / file}: ") + message):
        io.read_wfdb(rec, mapping)


def test_physionet_record_with_two_signals_of_one_name(shared_data):
    """svdb/800 names both of its leads ``ECG``: mapping that name says which to pick."""
    path = shared_data / "svdb" / "800"
    with pytest.raises(
        SessionFormatError, match=r"svdb/800: channel label 'ECG' appears 2 times, at signal"
    ):
        io.read_wfdb(path, {"ECG": {"group": "ecg"}})
    node = io.read_wfdb(path, {"ECG": {"group": "ecg", "index": 1}})
    ref = wfdb.rdrecord(str(path), channels=[1], sampto=10000).p_signal[:, 0]
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values[:10000], ref)
    assert node["ecg"].ds.sizes["time"] == 230400
