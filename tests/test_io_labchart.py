"""LabChart text and MATLAB exports: the real files' expected.json, blocks and gaps,
comments, a MATLAB export written from ADInstruments' documented layout, bad input."""

import json

import dask.array as da
import numpy as np
import pytest
import scipy.io
import xarray as xr

from cardiolab.errors import SessionFormatError, UnitError
from cardiolab.io import labchart, registry
from cardiolab.io.labchart import read_labchart
from cardiolab.schema import protocol_group, validate_session
from cardiolab.units import conversion_factor

CMH2O = conversion_factor("cmH2O", "abp")  # cmH2O -> mmHg

# the real files have no ECG or blood pressure; read a pressure and a voltage channel
# as abp and ecg (resp file), and the flow file with its units patched to mV (below)
MAPPINGS = {
    "resp_emg_pressure_2blocks.txt": (
        {"Pressure": "abp", "PushSWE": "ecg"},
        {"abp": ("Pressure", CMH2O), "ecg": ("PushSWE", 1e3)},  # V -> mV
    ),
    "flow_volume_3blocks.txt": (
        {"Flow": "ecg", "Volume": "abp"},
        {"ecg": ("Flow", 1.0), "abp": ("Volume", 1.0)},  # units patched to mV, mmHg
    ),
}


@pytest.fixture(scope="module")
def labchart_dir(shared_data):
    return shared_data / "labchart"


@pytest.fixture(scope="module")
def expected(labchart_dir):
    return json.loads((labchart_dir / "expected.json").read_text())["files"]


def _open(name, labchart_dir, tmp_path):
    """The real file (the flow file with its Range units L/s, L patched to mV, mmHg)."""
    path = labchart_dir / name
    if name.startswith("flow"):
        raw = path.read_bytes()
        patched = raw.replace(b"2.217 L/s\t6.532 L\r\n", b"2.217 mV\t6.532 mmHg\r\n")
        assert patched.count(b"mmHg") == 3  # one Range line per block
        path = tmp_path / name
        path.write_bytes(patched)
    return read_labchart(path, MAPPINGS[name][0])


def test_registered():
    fmt = registry.get_format("labchart")
    assert fmt.reader is read_labchart
    assert fmt.suffixes == (".txt", ".mat")
    assert labchart.FORMAT is fmt


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_real_export_matches_expected(name, labchart_dir, expected, tmp_path):
    """Per block: count, first and last rows, start from ExcelDateTime; NaN gaps."""
    exp = expected[name]
    blocks = exp["blocks"]
    node = _open(name, labchart_dir, tmp_path)
    serial0 = float(blocks[0]["ExcelDateTime"][0])
    # exact start of each block from the session start (time 0 of block 0)
    exact = [(float(b["ExcelDateTime"][0]) - serial0) * 86400.0 + b["first_time"] for b in blocks]
    for group, (title, factor) in MAPPINGS[name][1].items():
        ds = node[group].to_dataset(inherit=False)
        col = blocks[0]["ChannelTitle"].index(title) + 1  # column 0 is time
        fs = blocks[0]["samples_per_second"]
        assert ds.attrs["sampling_rate"] == fs
        assert ds.attrs["channel"] == title
        assert isinstance(ds[group].data, da.Array)
        values = ds[group].values
        time = ds["time"].values
        assert time[0] == pytest.approx(blocks[0]["first_time"], abs=1e-9)
        np.testing.assert_allclose(np.diff(time), 1.0 / fs, rtol=1e-9)
        starts = ds.attrs["block_starts"]
        assert len(starts) == exp["n_blocks"]
        # each block on the grid within half a sample of where its header puts it
        np.testing.assert_allclose(starts, exact, rtol=0, atol=0.5 / fs + 1e-9)
        total_nan = 0
        for k, b in enumerate(blocks):
            i = int(round((starts[k] - time[0]) * fs))
            n = b["n_samples"]
            block = values[i : i + n]
            assert np.isfinite(block).all()
            # pandas' and Python's float parsing agree to the last bit, or nearly
            np.testing.assert_allclose(block[0], b["first_row"][col] * factor, rtol=1e-12)
            np.testing.assert_allclose(block[-1], b["last_row"][col] * factor, rtol=1e-12)
            stop = starts[k + 1] if k + 1 < len(blocks) else None
            if stop is not None:
                gap = values[i + n : int(round((stop - time[0]) * fs))]
                assert gap.size > 0 and np.isnan(gap).all()
                total_nan += gap.size
        assert np.isnan(values).sum() == total_nan
        assert values.size == total_nan + sum(b["n_samples"] for b in blocks)
        gaps = np.asarray(ds.attrs["gaps"]).reshape(-1, 2)
        assert gaps.shape == (exp["n_blocks"] - 1, 2)
        np.testing.assert_allclose(gaps[:, 1], starts[1:])


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_real_export_comments(name, labchart_dir, expected, tmp_path):
    """Every comment: text, channel (#* all, #N the N-th title), block and row time."""
    blocks = expected[name]["blocks"]
    node = _open(name, labchart_dir, tmp_path)
    serial0 = float(blocks[0]["ExcelDateTime"][0])
    want = []
    for k, b in enumerate(blocks):
        offset = (float(b["ExcelDateTime"][0]) - serial0) * 86400.0
        for c in b["comments"]:
            mark, text = c["text"].split(" ", 1)
            channel = "" if mark == "#*" else b["ChannelTitle"][int(mark[1:]) - 1]
            # the row's time: the block's first time + row / rate, and the file's time
            t = offset + b["first_time"] + c["row_index"] / b["samples_per_second"]
            assert t == pytest.approx(offset + c["time"], abs=1e-9)
            want.append((text.strip(), channel, k, t))
    got = list(
        zip(
            node.attrs["comment_texts"],
            node.attrs["comment_channels"],
            node.attrs["comment_blocks"],
            node.attrs["comment_times"],
            strict=True,
        )
    )
    assert len(got) == len(want) == sum(len(b["comments"]) for b in blocks)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        assert g[3] == pytest.approx(w[3], abs=1e-9)


def test_real_session_follows_data_model(labchart_dir, tmp_path):
    """Read into a session (catalog attributes and protocol added): valid, time regular
    across the NaN-filled gap."""
    node = _open("resp_emg_pressure_2blocks.txt", labchart_dir, tmp_path)
    node.attrs.update(
        subject="S01",
        session="L-30",
        phase="pre",
        day=-30.0,
        campaign="labchart",
        protocol="rest",
        posture="supine",
    )
    node["protocol"] = xr.DataTree(dataset=protocol_group([("rest", 0.5, 60.0)]))
    validate_session(node)


def test_opening_parses_no_samples(labchart_dir, monkeypatch):
    """Opening scans headers, row counts and comments; the columns are parsed on compute."""
    calls = []
    real = labchart.pd.read_csv
    monkeypatch.setattr(labchart.pd, "read_csv", lambda *a, **k: calls.append(1) or real(*a, **k))
    node = read_labchart(labchart_dir / "resp_emg_pressure_2blocks.txt", {"Pressure": "abp"})
    assert calls == []
    node["abp"]["abp"].values  # noqa: B018
    assert len(calls) == 2  # one parse per block


# --- MATLAB export, written from ADInstruments' documented layout ---------------------


def _char_rows(strings):
    """A MATLAB char matrix (rows padded with blanks), as LabChart writes its text."""
    width = max(len(s) for s in strings)
    return np.array([s.ljust(width) for s in strings])


def _write_mat(path, drop=(), **changes):
    """Two blocks, 90 s apart: ECG (V, 200 Hz), BP (mmHg, 100 Hz), LDF (PU, 10 Hz;
    empty in block 2); comments "Start" (all channels, block 1, tick 400) and "Tilt" (BP,
    block 2, tick 100), tick rate 200 Hz."""
    rng = np.random.default_rng(3)
    ecg = [rng.normal(0, 1e-3, 2000), rng.normal(0, 1e-3, 1000)]  # V
    bp = [rng.normal(90, 10, 1000), rng.normal(95, 10, 500)]  # mmHg
    temp = [rng.normal(36, 0.1, 100)]
    pieces = [ecg[0], bp[0], temp[0], ecg[1], bp[1]]
    data = np.concatenate(pieces)[None, :]
    ends = np.cumsum([p.size for p in pieces])
    starts = ends - [p.size for p in pieces] + 1
    datastart = np.array([[starts[0], starts[3]], [starts[1], starts[4]], [starts[2], -1]])
    dataend = np.array([[ends[0], ends[3]], [ends[1], ends[4]], [ends[2], -1]])
    mat = {
        "data": data,
        "datastart": datastart.astype(float),
        "dataend": dataend.astype(float),
        "titles": _char_rows(["ECG", "BP", "LDF"]),
        "unittext": _char_rows(["V", "mmHg", "PU"]),
        "unittextmap": np.array([[1, 1], [2, 2], [3, -1]], dtype=float),
        "samplerate": np.array([[200, 200], [100, 100], [10, 0]], dtype=float),
        "firstsampleoffset": np.zeros((3, 2)),
        "blocktimes": np.array([[738000.25, 738000.25 + 90 / 86400]]),
        "tickrate": np.array([[200.0, 200.0]]),
        "com": np.array([[-1, 1, 400, 1, 1], [2, 2, 100, 1, 2]], dtype=float),
        "comtext": _char_rows(["Start", "Tilt"]),
    }
    for name in drop:
        del mat[name]
    mat.update(changes)
    scipy.io.savemat(path, mat)
    return path, ecg, bp


def test_mat_export(tmp_path):
    path, ecg, bp = _write_mat(tmp_path / "rec.mat")
    node = read_labchart(path, {"ECG": "ecg", "BP": {"group": "abp", "index": 1}})
    e = node["ecg"].to_dataset(inherit=False)
    p = node["abp"].to_dataset(inherit=False)
    assert e.attrs["sampling_rate"] == 200.0 and p.attrs["sampling_rate"] == 100.0
    assert e.attrs["source_units"] == "V" and p.attrs["source_units"] == "mmHg"
    assert e.attrs["block_starts"] == pytest.approx([0.0, 90.0], abs=1e-6)
    assert e.attrs["gaps"] == pytest.approx([10.0, 90.0], abs=1e-6)
    ev = e["ecg"].values
    assert ev.size == 90 * 200 + 1000
    np.testing.assert_array_equal(ev[:2000], ecg[0] * 1e3)  # V -> mV
    assert np.isnan(ev[2000:18000]).all()
    np.testing.assert_array_equal(ev[18000:], ecg[1] * 1e3)
    pv = p["abp"].values
    np.testing.assert_array_equal(pv[:1000], bp[0])
    np.testing.assert_array_equal(pv[9000:], bp[1])
    assert p["time"].values[9000] == pytest.approx(90.0, abs=1e-9)
    assert node.attrs["comment_texts"] == ["Start", "Tilt"]
    assert node.attrs["comment_channels"] == ["", "BP"]
    assert node.attrs["comment_blocks"] == [0, 1]
    # a serial date near 738000 days resolves 1.2e-10 days = 1e-5 s
    assert node.attrs["comment_times"] == pytest.approx([2.0, 90.5], abs=5e-5)


def test_mat_channel_empty_in_a_block(tmp_path):
    """A channel without samples in a block (datastart -1) has only its other blocks."""
    path, _, _ = _write_mat(tmp_path / "rec.mat")
    ds = read_labchart(path, {"LDF": "ldf"})["ldf"].to_dataset(inherit=False)
    assert ds["flux"].shape == (100,)
    assert ds.attrs["sampling_rate"] == 10.0
    assert ds.attrs["block_starts"] == [0.0] and ds.attrs["gaps"] == []
    np.testing.assert_allclose(ds["flux"].values.mean(), 36, atol=0.1)


# --- bad input --------------------------------------------------------------------------


def _cut(labchart_dir, tmp_path):
    raw = (labchart_dir / "flow_volume_3blocks.txt").read_bytes()
    path = tmp_path / "cut.txt"
    path.write_bytes(raw[: len(raw) // 2 + 5])
    return path


def _patched(old, new):
    def make(labchart_dir, tmp_path):
        raw = (labchart_dir / "flow_volume_3blocks.txt").read_bytes()
        path = tmp_path / "patched.txt"
        path.write_bytes(raw.replace(old, new, 1))
        return path

    return make


def _written(name, content):
    def make(labchart_dir, tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


def _real(name):
    return lambda labchart_dir, tmp_path: labchart_dir / name


def _mat_without(variable):
    return lambda labchart_dir, tmp_path: _write_mat(tmp_path / "rec.mat", drop=(variable,))[0]


def _mat_with(**changes):
    return lambda labchart_dir, tmp_path: _write_mat(tmp_path / "rec.mat", **changes)[0]


RESP = "resp_emg_pressure_2blocks.txt"

BAD = {
    "truncated": (_cut, {"Flow": "ecg"}, SessionFormatError, "cut short"),
    "not labchart": (
        _written("x.txt", b"time,ecg\r\n0,1\r\n"),
        {"ecg": "ecg"},
        SessionFormatError,
        "Interval=",
    ),
    "unknown channel": (
        _real(RESP),
        {"ECG": "ecg"},
        SessionFormatError,
        r"no channel 'ECG'.*'PushSWE', 'Flow', 'EMG', 'Pressure'",
    ),
    "unit of another quantity (flow as pressure)": (
        _real("flow_volume_3blocks.txt"),
        {"Flow": "abp"},
        UnitError,
        r"'Flow'.*unit 'L/s' measures flow, not pressure",
    ),
    "unit of another quantity": (
        _real(RESP),
        {"EMG": "abp"},
        UnitError,
        r"'EMG'.*'mV' measures voltage, not pressure",
    ),
    "no unit": (_real(RESP), {"Flow": "abp"}, UnitError, r"'Flow' has no unit"),
    "empty text": (_written("e.txt", b""), {"Flow": "ecg"}, SessionFormatError, "empty file"),
    "empty mat": (_written("e.mat", b""), {"ECG": "ecg"}, SessionFormatError, "empty file"),
    "mat without datastart": (
        _mat_without("datastart"),
        {"ECG": "ecg"},
        SessionFormatError,
        r"\['datastart'\] missing",
    ),
    "mat blocks overlap": (
        _mat_with(blocktimes=np.array([[738000.25, 738000.25 + 5 / 86400]])),
        {"ECG": "ecg"},
        SessionFormatError,
        r"channel 'ECG': block 1 starts at 5 s, before the previous block ends \(10 s\)",
    ),
    "mat rates differ": (
        _mat_with(samplerate=np.array([[200, 250], [100, 100], [10, 0]], dtype=float)),
        {"ECG": "ecg"},
        SessionFormatError,
        r"'ECG' is sampled at different rates in its blocks \(block 0: 200 Hz, block 1: 250",
    ),
    "mat first sample offset": (
        _mat_with(firstsampleoffset=np.array([[0, 0], [0, 3], [0, 0]], dtype=float)),
        {"BP": "abp"},
        SessionFormatError,
        r"channel 'BP', block 1: 'firstsampleoffset' is 3",
    ),
    "mat index past data": (
        _mat_with(dataend=np.array([[2000, 9000], [3000, 5600], [3100, -1]], dtype=float)),
        {"ECG": "ecg"},
        SessionFormatError,
        r"channel 'ECG', block 1: 'dataend' is 9000, past the end of 'data' \(4600 samples",
    ),
    "not a mat file": (
        _written("x.mat", b"Interval=\t0.01 s\r\n"),
        {"ECG": "ecg"},
        SessionFormatError,
        "not a MATLAB level-5 .mat file",
    ),
    "time format": (
        _patched(b"StartOfBlock", b"TimeOfDay"),
        {"Flow": "ecg"},
        SessionFormatError,
        r"block 0 \(line 1\): header field 'TimeFormat' is 'TimeOfDay'",
    ),
    "interval": (
        _patched(b"Interval=\t0.01 s", b"Interval=\tfast"),
        {"Flow": "ecg"},
        SessionFormatError,
        "header field 'Interval' reads a text of 4 characters",
    ),
    "rows missing": (
        _patched(b"0.01\t-0.07769377\t-0.0008645448\r\n", b""),
        {"Flow": "ecg"},
        SessionFormatError,
        r"block 0 \(line 1\): 8361 rows at 'Interval' 0.01 s should span 83.6 s.*rows missing",
    ),
    "suffix": (
        _written("x.csv", b"Interval=\t0.01 s\r\n"),
        {"ECG": "ecg"},
        SessionFormatError,
        r"\.txt.*\.mat",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case, labchart_dir, tmp_path):
    make, mapping, error, pattern = BAD[case]
    path = make(labchart_dir, tmp_path)
    with pytest.raises(error, match=pattern) as info:
        read_labchart(path, mapping)
    assert str(path) in str(info.value)
