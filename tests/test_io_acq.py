"""BIOPAC AcqKnowledge (.acq): bioread's real test files against expected.json.

Every channel of the three files is checked (name, unit, rate, divider, point count,
storage, first 5 scaled values, last value, mean). Only the ECG channels map to a
group of the data model (ecg, mV) and the 4.1 file's respiration belt to ``resp`` (kept
in its recorded unit, V): they are read through :func:`read_acq`; EMG, EDA and the
unlabelled input map to no group (EDA in microsiemens is no voltage, pressure,
perfusion or velocity; EMG is a voltage but no ECG), so their values are checked
through :func:`read_acq_channel`, the function behind read_acq's lazy reads, and
cross-checked against bioread's own full read.
"""

import json
import logging
import struct

import bioread
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sessions import with_attrs

from cardiolab.errors import SessionFormatError, UnitError
from cardiolab.io import acq, registry
from cardiolab.io.acq import read_acq, read_acq_channel, read_acq_header
from cardiolab.schema import protocol_group, validate_session
from cardiolab.signals import detect_r_peaks

FILES = ["r42_test.acq", "nojournal-4.1.0.acq", "physio-5.0.1-c.acq"]
ECG = {
    "r42_test.acq": "ECG (.05 - 150 Hz)",
    "nojournal-4.1.0.acq": "EKG - ERS100C",
    "physio-5.0.1-c.acq": "EKG - ERS100C",
}
# values are bioread's float64 arithmetic, reproduced exactly; the mean allows for
# summation order
EXACT = dict(rtol=1e-14, atol=0)
MEAN = dict(rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def acq_dir(shared_data):
    folder = shared_data / "acq"
    if not (folder / "expected.json").is_file():
        pytest.skip(f"{folder} has no expected.json")
    return folder


@pytest.fixture(scope="module")
def expected(acq_dir):
    return json.loads((acq_dir / "expected.json").read_text())["files"]


@pytest.mark.parametrize("name", FILES)
def test_headers_match_expected(acq_dir, expected, name):
    want = expected[name]
    header = read_acq_header(acq_dir / name)
    assert header.revision == want["file_revision"]
    assert header.compressed is want["compressed"]
    assert header.base_rate == want["base_samples_per_second"]
    assert len(header.channels) == want["channel_count"]
    for got, ch in zip(header.channels, want["channels"], strict=True):
        assert got.index == ch["index"]
        assert got.name == ch["name"]
        assert got.units == ch["units"]
        assert got.samples_per_second == ch["samples_per_second"]
        assert got.frequency_divider == ch["frequency_divider"]
        assert got.point_count == ch["point_count"]
        assert got.storage == ch["storage"]
    # markers: text, type, channel and bioread's sample index (base-rate samples)
    assert len(header.markers) == len(want["markers"])
    for got, m in zip(header.markers, want["markers"], strict=True):
        assert got.text == m["text"]
        assert got.type_code == m["type_code"]
        assert got.channel_number == m["channel_number"]
        # expected.json holds bioread's unsigned wraps of negative indices (5.0 file):
        # compared modulo 2**32, so that a bioread that reads them signed also passes
        assert round(got.time * header.base_rate) % 2**32 == m["bioread_sample_index"]


@pytest.mark.parametrize("name", FILES)
def test_every_channel_values_match_expected(acq_dir, expected, name):
    path = acq_dir / name
    full = bioread.read(str(path))  # bioread's own read of every channel, eagerly
    for ch in expected[name]["channels"]:
        values = read_acq_channel(path, ch["index"])
        assert values.dtype == np.float64
        assert values.shape == (ch["point_count"],)
        np.testing.assert_allclose(values[:5], ch["first5"], **EXACT)
        np.testing.assert_allclose(values[-1], ch["last"], **EXACT)
        np.testing.assert_allclose(values.mean(), ch["mean"], **MEAN)
        # cross-check: the same floats as bioread's full read
        np.testing.assert_array_equal(values, full.channels[ch["index"]].data)


@pytest.mark.parametrize("name", FILES)
def test_ecg_reads_into_the_ecg_group(acq_dir, expected, name):
    path = acq_dir / name
    want = next(c for c in expected[name]["channels"] if c["name"] == ECG[name])
    node = read_acq(path, {ECG[name]: {"group": "ecg"}})
    ds = node["ecg"].to_dataset(inherit=False)
    ecg = ds["ecg"]
    assert isinstance(ecg.data, da.Array)
    assert ecg.attrs["units"] == "mV"
    assert ds.attrs["source_units"] == want["units"] == "mV"
    assert ds.attrs["channel"] == ECG[name]
    assert ds.attrs["source_file"] == str(path)
    # the channel's own rate (1000 Hz), not the file's base rate (2000 Hz in 4.x/5.x)
    assert ds.attrs["sampling_rate"] == want["samples_per_second"] == 1000.0
    assert ds.sizes["time"] == want["point_count"]
    np.testing.assert_allclose(ds["time"].values[[0, -1]], [0.0, (want["point_count"] - 1) / 1e3])
    values = ecg.values
    np.testing.assert_allclose(values[:5], want["first5"], **EXACT)
    np.testing.assert_allclose(values[-1], want["last"], **EXACT)
    np.testing.assert_allclose(values.mean(), want["mean"], **MEAN)
    if "protocol" not in node.children:  # 5.0: no segment epoch; the catalog gives one
        node["protocol"] = xr.DataTree(protocol_group([("rest", 0.0, 61.0)]))
    validate_session(with_attrs(node))


@pytest.mark.parametrize("name", ["nojournal-4.1.0.acq", "physio-5.0.1-c.acq"])
def test_respiration_belt_reads_into_the_resp_group(acq_dir, expected, name):
    """BIOPAC RSP100C at 3.90625 Hz (base rate / 512) beside the EKG at 1 kHz."""
    path = acq_dir / name
    want = next(c for c in expected[name]["channels"] if c["name"] == "RESP - RSP100C")
    node = read_acq(path, {ECG[name]: "ecg", "RESP - RSP100C": "resp"})
    ds = node["resp"].to_dataset(inherit=False)
    assert isinstance(ds["resp"].data, da.Array)
    assert ds["resp"].attrs["units"] == "V"  # kept (no conversion), in the table's spelling
    assert ds.attrs["source_units"] == want["units"] == "Volts"
    assert ds.attrs["sampling_rate"] == want["samples_per_second"] == 3.90625
    assert ds.sizes["time"] == want["point_count"] == 241
    values = ds["resp"].values
    np.testing.assert_allclose(values[:5], want["first5"], **EXACT)
    np.testing.assert_allclose(values[-1], want["last"], **EXACT)
    np.testing.assert_allclose(values.mean(), want["mean"], **MEAN)
    if "protocol" not in node.children:
        node["protocol"] = xr.DataTree(protocol_group([("rest", 0.0, 61.0)]))
    validate_session(with_attrs(node))
    # the catalog may name the unit; it must agree with the file's
    with pytest.raises(UnitError, match=r"'RESP - RSP100C' is in 'Volts' according to the file"):
        read_acq(path, {"RESP - RSP100C": {"group": "resp", "units": "L"}})


def test_by_index_and_registration(acq_dir):
    path = acq_dir / "nojournal-4.1.0.acq"
    by_name = read_acq(path, {"EKG - ERS100C": "ecg"})
    by_index = read_acq(path, {"EKG - ERS100C": {"group": "ecg", "index": 0}})
    np.testing.assert_array_equal(by_index["ecg"].ds["ecg"].values, by_name["ecg"].ds["ecg"].values)
    with pytest.raises(SessionFormatError, match=r"index 1 is labelled 'RESP - RSP100C'"):
        read_acq(path, {"EKG - ERS100C": {"group": "ecg", "index": 1}})
    fmt = registry.get_format("acq")
    assert fmt is acq.FORMAT
    assert fmt.reader is read_acq
    assert fmt.suffixes == (".acq",)
    assert fmt.channels is True
    assert fmt.raw_files(path) == [path]


def test_segment_markers_become_epochs(acq_dir, caplog):
    r42 = read_acq(acq_dir / "r42_test.acq", {"ECG (.05 - 150 Hz)": "ecg"})
    p = r42["protocol"].to_dataset(inherit=False)
    # 3.x: "Segment 1" at sample 0, "Segment 2" at sample 3881 of 7901 at 1000 Hz
    assert list(p["label"].values) == ["Segment 1", "Segment 2"]
    np.testing.assert_allclose(p["start"].values, [0.0, 3.881])
    np.testing.assert_allclose(p["stop"].values, [3.881, 7.901])
    # 4.1: one segment over the recording (123787 samples at the 2000 Hz base rate)
    v41 = read_acq(acq_dir / "nojournal-4.1.0.acq", {"EKG - ERS100C": "ecg"})
    p = v41["protocol"].to_dataset(inherit=False)
    assert list(p["label"].values) == ["Segment 1"]
    np.testing.assert_allclose([p["start"].item(), p["stop"].item()], [0.0, 61.8935])
    # 5.0: the segment marker's index is a wrapped negative (outside the recording),
    # the other markers are events: no protocol, a warning names the markers ignored
    with caplog.at_level(logging.DEBUG, logger="cardiolab"):
        v50 = read_acq(acq_dir / "physio-5.0.1-c.acq", {"EKG - ERS100C": "ecg"})
    assert "protocol" not in v50.children
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "7 marker(s) outside the recording (0-61.8935 s)" in warned[0]
    assert "'Segment 1' at " in warned[0] and "'Deep Breath 2' at " in warned[0]
    events = [r.getMessage() for r in caplog.records if "point event" in r.getMessage()]
    assert len(events) == 3  # EDA Trough (x2), Deep Breath 3


def test_reads_are_lazy_one_channel_at_a_time(acq_dir, monkeypatch):
    calls = []
    real = bioread.read

    def counting(path, channel_indexes=None):
        calls.append(channel_indexes)
        return real(path, channel_indexes=channel_indexes)

    monkeypatch.setattr(bioread, "read", counting)
    for name in ("nojournal-4.1.0.acq", "physio-5.0.1-c.acq"):  # uncompressed, compressed
        calls.clear()
        node = read_acq(acq_dir / name, {"EKG - ERS100C": "ecg"})
        assert calls == []  # opening reads headers only
        index = read_acq_header(acq_dir / name).labels.index("EKG - ERS100C")
        assert node["ecg"].ds["ecg"].values.size == 61893
        assert calls == [[index]]  # one read, of that channel alone


def test_volts_convert_to_millivolts(acq_dir, tmp_path):
    """The r42 file with its ECG channel's unit field rewritten from "mV" to "Volts"."""
    raw = (acq_dir / "r42_test.acq").read_bytes()
    name = raw.index(b"ECG (.05 - 150 Hz)\x00")
    unit = raw.index(b"mV\x00\x00\x00\x00", name)
    assert unit - name < 100  # the units field of the same channel header
    path = tmp_path / "volts.acq"
    path.write_bytes(raw[:unit] + b"Volts\x00" + raw[unit + 6 :])
    assert read_acq_header(path).channels[0].units == "Volts"
    node = read_acq(path, {"ECG (.05 - 150 Hz)": "ecg"})
    assert node["ecg"].ds.attrs["source_units"] == "Volts"
    original = read_acq_channel(acq_dir / "r42_test.acq", 0)
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, original * 1000.0, **EXACT)


def test_ecg_of_the_41_file_gives_a_plausible_heart_rate(acq_dir):
    node = read_acq(acq_dir / "nojournal-4.1.0.acq", {"EKG - ERS100C": "ecg"})
    peaks = detect_r_peaks(node["ecg"].ds["ecg"].compute())
    rr = np.diff(peaks) / 1000.0
    # measured: 69 peaks, median 67.3 bpm (NeuroKit2's ecg_peaks: 69, 67.6 bpm); the
    # detector's own test of this ECG (deep T waves) is in test_signals_ecg_real.py
    assert 67 <= peaks.size <= 71
    assert 64.0 <= 60.0 / np.median(rr) <= 70.0


def _patched(acq_dir, tmp_path, name, edit):
    path = tmp_path / f"bad-{name}"
    path.write_bytes(edit((acq_dir / name).read_bytes()))
    return path


BAD_FILES = {
    "empty": ("r42_test.acq", lambda raw: b"", r"empty file \(0 bytes\)"),
    "cut in graph header": ("r42_test.acq", lambda raw: raw[:4], r"ends inside its graph header"),
    "cut in channel headers": (
        "nojournal-4.1.0.acq",
        lambda raw: raw[:300],
        r"headers not readable \(file revision 84, 300 bytes\)",
    ),
    "cut in samples (3.7)": (
        "r42_test.acq",
        lambda raw: raw[: len(raw) // 2],
        r"the sample data \(63208 bytes from byte \d+.*\) end at byte \d+, but the file has "
        r"43216 bytes \(cut short\)",
    ),
    "cut in samples (4.1)": (
        "nojournal-4.1.0.acq",
        lambda raw: raw[:200_000],
        r"the sample data \(371842 bytes .*the file has 200000 bytes \(cut short\)",
    ),
    "cut in compressed block (5.0)": (
        "physio-5.0.1-c.acq",
        lambda raw: raw[:500_000],
        r"channel 'EDA - GSR100C': its compressed samples end at byte 532142, but the file "
        r"has 500000 bytes",
    ),
    "wrong version": (
        "r42_test.acq",
        lambda raw: raw[:2] + struct.pack("<I", 20) + raw[6:],
        r"header field 'lVersion' \(file revision, bytes 2-5\) is 20; bioread reads "
        r"revisions 30",
    ),
    "not acq (text)": (
        "r42_test.acq",
        lambda raw: b"Time,ECG\n0.000,0.1\n" * 50,
        r"header field 'lVersion'",
    ),
    "not acq (valid revision, then zeros)": (
        "r42_test.acq",
        lambda raw: raw[:6] + bytes(5000),
        r"AcqKnowledge headers not readable",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files(acq_dir, tmp_path, case):
    name, edit, message = BAD_FILES[case]
    path = _patched(acq_dir, tmp_path, name, edit)
    with pytest.raises(SessionFormatError, match=message) as err:
        read_acq(path, {ECG[name]: "ecg"})
    assert str(path) in str(err.value)


BAD_MAPPINGS = {
    "unknown channel": (
        {"ECG": "ecg"},
        SessionFormatError,
        r"no channel 'ECG' \(the file has: \['EKG - ERS100C', 'RESP - RSP100C', "
        r"'EDA - GSR100C'\]\)",
    ),
    "unknown unit (EDA microsiemens as ecg)": (
        {"EDA - GSR100C": "ecg"},
        UnitError,
        r"channel 'EDA - GSR100C': unknown unit 'microsiemens'",
    ),
    "not convertible (respiration Volts as abp)": (
        {"RESP - RSP100C": "abp"},
        UnitError,
        r"channel 'RESP - RSP100C': unit 'Volts' measures voltage, not pressure",
    ),
    "file and catalog disagree": (
        {"EKG - ERS100C": {"group": "ecg", "units": "uV"}},
        UnitError,
        r"channel 'EKG - ERS100C' is in 'mV' according to the file but in 'uV'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MAPPINGS))
def test_bad_mappings(acq_dir, case):
    mapping, error, message = BAD_MAPPINGS[case]
    path = acq_dir / "nojournal-4.1.0.acq"
    with pytest.raises(error, match=message) as err:
        read_acq(path, mapping)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SessionFormatError, match=r"nope.acq: AcqKnowledge file not found"):
        read_acq(tmp_path / "nope.acq", {"ECG": "ecg"})
