"""The bad-input corpus: every kind of bad input is a clear error (issue 13, item 8).

Each case builds one small bad input in ``tmp_path`` (a header field patched, a chunk
deleted, a catalog path outside its data roots...), calls a public entry point
(:func:`cardiolab.io.read_session`, :func:`cardiolab.open_catalog`,
:func:`cardiolab.schema.signal_group`, :func:`cardiolab.pipeline.process_session`...)
and asserts the error class and that the message names the file and the field. The
kinds: sampling rates (0, negative, NaN, inf, absurd) in every reader and the schema;
absurd sizes refused before allocating; native zarr stores with missing or damaged
chunks and deleted groups; protocol epochs past the end of the recording; a full disk;
catalog paths outside the data roots; and messages that would echo a file's text.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.io
import xarray as xr
import yaml
from sessions import make_session

from cardiolab import schema
from cardiolab.catalog import open_catalog
from cardiolab.errors import CatalogError, SessionFormatError, StorageError, storage_error
from cardiolab.io import read_session, write_campaign_zarr, write_csv, write_edf, write_wfdb
from cardiolab.io.edf import EDF_MAIN_FIELDS, EDF_SIGNAL_FIELDS

pytestmark = pytest.mark.filterwarnings("ignore")

ECG = {"ECG": {"group": "ecg"}}
SECRET = "CARDIOLABSECRETMARKER"


# --- small valid inputs, written once -----------------------------------------------------


@pytest.fixture(scope="module")
def node():
    return make_session(seconds=4)


@pytest.fixture(scope="module")
def originals(tmp_path_factory, node):
    """One valid file (or record, or store) of each writable format."""
    folder = tmp_path_factory.mktemp("originals")
    write_edf(node, folder / "rec.edf")
    write_wfdb(node, folder, "rec")
    write_csv(node, folder, "rec")
    tree = xr.DataTree.from_dict({"S01/L-30": make_session(seconds=40)})
    write_campaign_zarr(tree, folder / "store.zarr")
    return folder


def _copy(originals, tmp_path, name):
    src = originals / name
    dst = tmp_path / name
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


# --- EDF ------------------------------------------------------------------------------


def _edf_span(raw: bytes, field: str, signal=None):
    if signal is None:
        return EDF_MAIN_FIELDS[field]
    ns, start = int(raw[252:256]), 256
    for name, width in EDF_SIGNAL_FIELDS.items():
        if name == field:
            return start + signal * width, width
        start += ns * width
    raise KeyError(field)


def _edf(originals, tmp_path, field, value, signal=None):
    raw = (originals / "rec.edf").read_bytes()
    start, width = _edf_span(raw, field, signal)
    text = str(value).encode("latin-1").ljust(width)
    path = tmp_path / "bad.edf"
    path.write_bytes(raw[:start] + text + raw[start + width :])
    return path


EDF_CASES = {
    "record duration 0": ("duration of a data record", "0", None),
    "record duration negative": ("duration of a data record", "-1", None),
    "record duration nan": ("duration of a data record", "nan", None),
    "record duration inf": ("duration of a data record", "inf", None),
    "samples per record 0": ("number of samples in each data record", "0", 0),
    "samples per record negative": ("number of samples in each data record", "-500", 0),
    "samples per record not a number": ("number of samples in each data record", "5OO", 0),
    "signal count 0": ("number of signals", "0", None),
}


@pytest.mark.parametrize("case", EDF_CASES, ids=list(EDF_CASES))
def test_edf(case, originals, tmp_path):
    field, value, signal = EDF_CASES[case]
    path = _edf(originals, tmp_path, field, value, signal)
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "edf", channels=ECG)
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_edf_absurd_rate_is_refused_by_validation(originals, tmp_path):
    """1 µs data records: 5e8 Hz for a 500-sample record. The read is lazy; the catalog's
    validation names the group and 'sampling_rate' (never a 894 GiB allocation)."""
    path = _edf(originals, tmp_path, "duration of a data record", "0.000001")
    cat = _catalog(tmp_path, [{"path": path.name, "format": "edf", "channels": ECG}])
    with pytest.raises(SessionFormatError) as err:
        open_catalog(cat).open_session("S01", "L-30")
    assert str(path) in str(err.value)
    assert "sampling_rate 5e+08 Hz outside the plausible range" in str(err.value)


def test_edf_duplicate_label_is_named_with_both_indices(shared_data):
    """A real EDF+C whose signals 0 and 2 share a label (MNE-Python's test data)."""
    path = shared_data / "real_world" / "duplicate_channel_labels.edf"
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "edf", channels={"EEG F1-Ref": {"group": "ecg", "units": "uV"}})
    assert str(path) in str(err.value)
    assert "channel label 'EEG F1-Ref' appears 2 times, at signal indices [0, 2]" in str(err.value)


# --- WFDB -----------------------------------------------------------------------------


WFDB_RATES = {"rate 0": "0", "rate negative": "-500", "rate nan": "nan", "rate inf": "inf"}


def _wfdb(originals, tmp_path, record_line):
    shutil.copy(originals / "rec_ecg.dat", tmp_path / "rec_ecg.dat")
    lines = (originals / "rec_ecg.hea").read_text().splitlines()
    lines[0] = record_line
    (tmp_path / "rec_ecg.hea").write_text("\n".join(lines) + "\n")
    return tmp_path / "rec_ecg"


@pytest.mark.parametrize("case", WFDB_RATES, ids=list(WFDB_RATES))
def test_wfdb_rate(case, originals, tmp_path):
    record = _wfdb(originals, tmp_path, f"rec_ecg 1 {WFDB_RATES[case]} 2000")
    with pytest.raises(SessionFormatError) as err:
        read_session(record, "wfdb", channels={"ecg": {"group": "ecg"}})
    assert "rec_ecg.hea" in str(err.value)
    assert "sampling frequency" in str(err.value)


def test_wfdb_absurd_header_is_refused_before_allocating(originals, tmp_path):
    """5e8 Hz for 1.2e11 samples (the issue's 894 GiB time coordinate), with a signal
    file of the size the header implies (sparse: no disk used): refused before the
    time coordinate is built."""
    record = _wfdb(originals, tmp_path, "rec_ecg 1 500000000 120000000000")
    os.truncate(tmp_path / "rec_ecg.dat", 120_000_000_000 * 2)  # format 16: 2 bytes
    with pytest.raises(SessionFormatError) as err:
        read_session(record, "wfdb", channels={"ecg": {"group": "ecg"}})
    assert str(record) in str(err.value)
    assert "channel 'ecg': number of samples gives 1.2e+11 samples" in str(err.value)


# --- CSV ------------------------------------------------------------------------------


CSV_RATES = {"0": 0, "negative": -250, "nan": float("nan"), "inf": float("inf"), "bool": True}


@pytest.mark.parametrize("case", CSV_RATES, ids=[f"sampling_rate {k}" for k in CSV_RATES])
def test_csv_sampling_rate_option(case, tmp_path):
    path = tmp_path / "ecg.csv"
    path.write_text("\n".join(f"{v:.3f}" for v in np.sin(np.arange(50))) + "\n")
    with pytest.raises(SessionFormatError) as err:
        read_session(
            path, "csv", channels={"ECG": {"group": "ecg", "index": 0, "units": "mV"}},
            sampling_rate=CSV_RATES[case],
        )  # fmt: skip
    assert str(path) in str(err.value) and "sampling_rate" in str(err.value)


CSV_TIMES = {
    "constant time": "0.0\n" * 6,
    "decreasing time": "".join(f"{1 - 0.002 * k:.3f}\n" for k in range(6)),
    "time not a number": "0.000\n0.002\nabc\n0.006\n0.008\n0.010\n",
}


@pytest.mark.parametrize("case", CSV_TIMES, ids=list(CSV_TIMES))
def test_csv_time_column(case, tmp_path):
    rows = CSV_TIMES[case].splitlines()
    path = tmp_path / "ecg.csv"
    path.write_text("time [s],ecg [mV]\n" + "".join(f"{t},0.1\n" for t in rows))
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "csv", channels={"ecg": {"group": "ecg"}})
    assert str(path) in str(err.value) and "time" in str(err.value)


# --- BIOPAC .acq ----------------------------------------------------------------------


ACQ_SAMPLE_TIMES = {"0 ms": 0.0, "negative": -1.0, "nan": float("nan"), "inf": float("inf")}


@pytest.mark.parametrize(
    "case", ACQ_SAMPLE_TIMES, ids=[f"dSampleTime {k}" for k in ACQ_SAMPLE_TIMES]
)
def test_acq_sample_time(case, shared_data, tmp_path):
    """The graph header's dSampleTime (ms per sample, a double at byte 16 of r42_test)."""
    raw = bytearray((shared_data / "acq" / "r42_test.acq").read_bytes())
    assert struct.unpack("<d", raw[16:24])[0] == 1.0  # 1 ms: 1000 Hz
    raw[16:24] = struct.pack("<d", ACQ_SAMPLE_TIMES[case])
    path = tmp_path / "bad.acq"
    path.write_bytes(bytes(raw))
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "acq", channels={"ECG (.05 - 150 Hz)": {"group": "ecg"}})
    assert str(path) in str(err.value) and "dSampleTime" in str(err.value)


# --- LabChart -------------------------------------------------------------------------


LABCHART_INTERVALS = {"0 s": "0 s", "negative": "-0.001 s", "nan": "nan s", "inf": "inf s"}


@pytest.mark.parametrize(
    "case", LABCHART_INTERVALS, ids=[f"Interval {k}" for k in LABCHART_INTERVALS]
)
def test_labchart_text_interval(case, tmp_path):
    path = tmp_path / "bad.txt"
    rows = "".join(f"{0.001 * k:.3f}\t{0.1 * k:.3f}\n" for k in range(20))
    path.write_text(
        f"Interval=\t{LABCHART_INTERVALS[case]}\nExcelDateTime=\t4.5e4\nTimeFormat=\tStartOfBlock\n"
        "DateFormat=\t\nChannelTitle=\tECG\nRange=\t2 V\n" + rows
    )  # fmt: skip
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "labchart", channels=ECG)
    assert str(path) in str(err.value) and "'Interval'" in str(err.value)


LABCHART_MAT_RATES = {"0": 0.0, "negative": -1000.0, "nan": float("nan"), "inf": float("inf")}


@pytest.mark.parametrize(
    "case", LABCHART_MAT_RATES, ids=[f"samplerate {k}" for k in LABCHART_MAT_RATES]
)
def test_labchart_mat_samplerate(case, tmp_path):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(
        path,
        {
            "data": np.linspace(0, 1, 100)[None, :],
            "datastart": np.array([[1.0]]),
            "dataend": np.array([[100.0]]),
            "titles": np.array(["ECG"]),
            "samplerate": np.array([[LABCHART_MAT_RATES[case]]]),
            "unittext": np.array(["mV"]),
            "unittextmap": np.array([[1.0]]),
        },
    )
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "labchart", channels=ECG)
    assert str(path) in str(err.value) and "'samplerate'" in str(err.value)


# --- R-R and beat exports (no sampling rate: their values are checked) ----------------


RR_TEXTS = {
    "interval 0": ("800\n0\n810\n", "line 2"),
    "interval negative": ("800\n-790\n810\n", "line 2"),
    "interval nan": ("800\nnan\n810\n", "line 2"),
    "interval inf": ("800\ninf\n810\n", "line 2"),
    "interval not a number": ("800\nabc\n810\n", "line 2"),
}


@pytest.mark.parametrize("case", RR_TEXTS, ids=list(RR_TEXTS))
def test_rr_text(case, tmp_path):
    text, where = RR_TEXTS[case]
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(SessionFormatError) as err:
        read_session(path, "rr")
    assert str(path) in str(err.value) and where in str(err.value)
    assert "R-R interval" in str(err.value)


BEAT_CSVS = {
    "time not increasing": ("time,SBP\n0.0,120\n0.9,121\n0.5,119\n", "'time'"),
    "time missing": ("t0,SBP\n0.0,120\n0.9,121\n", "time column 'time'"),
    "value not a number": ("time,SBP\n0.0,120\n0.9,high\n", "column 'SBP'"),
}


@pytest.mark.parametrize("case", BEAT_CSVS, ids=list(BEAT_CSVS))
def test_beats_export(case, tmp_path):
    text, field = BEAT_CSVS[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SessionFormatError) as err:
        read_session(
            path, "beats", channels={"SBP": {"group": "beats", "variable": "sbp", "units": "mmHg"}}
        )
    assert str(path) in str(err.value) and field in str(err.value)


# --- native zarr stores ---------------------------------------------------------------


GROUP = "S01/L-30"


def test_zarr_missing_chunk_is_not_read_as_zeros(originals, tmp_path):
    store = _copy(originals, tmp_path, "store.zarr")
    chunks = sorted((store / GROUP / "ecg" / "ecg" / "c").rglob("*"))
    chunks[0].unlink()
    with pytest.raises(SessionFormatError) as err:
        read_session(store, "zarr", group=GROUP)
    assert str(store) in str(err.value)
    assert f"array '{GROUP}/ecg/ecg' has 0 of its 1 chunks" in str(err.value)


def test_zarr_damaged_chunk_names_store_array_and_chunk(originals, tmp_path):
    store = _copy(originals, tmp_path, "store.zarr")
    chunk = store / GROUP / "abp" / "abp" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[16:48] = bytes(32)
    chunk.write_bytes(bytes(raw))
    session = read_session(store, "zarr", group=GROUP)  # lazy: nothing read yet
    with pytest.raises(SessionFormatError) as err:
        session["abp"]["abp"].load()
    assert str(store) in str(err.value)
    assert f"array '{GROUP}/abp/abp', chunk 0 cannot be read" in str(err.value)


@pytest.mark.parametrize("group", ["abp", "ecg/time", "protocol"], ids=lambda g: f"deleted {g}")
def test_zarr_deleted_group_or_array_is_named(group, originals, tmp_path):
    """Not "'time' spans nan s": the store's metadata still lists what was deleted."""
    store = _copy(originals, tmp_path, "store.zarr")
    shutil.rmtree(store / GROUP / group)
    with pytest.raises(SessionFormatError) as err:
        read_session(store, "zarr", group=GROUP)
    assert str(store) in str(err.value) and f"array '{GROUP}/{group}" in str(err.value)
    assert "nan" not in str(err.value)


def test_zarr_store_not_found(tmp_path):
    store = tmp_path / "nowhere.zarr"
    with pytest.raises(SessionFormatError, match="native store not found") as err:
        read_session(store, "zarr", group=GROUP)
    assert str(store) in str(err.value)


def test_zarr_no_such_session_group(originals, tmp_path):
    store = _copy(originals, tmp_path, "store.zarr")
    with pytest.raises(SessionFormatError) as err:
        read_session(store, "zarr", group="S09/L-30")
    assert str(store) in str(err.value) and "no session group 'S09/L-30'" in str(err.value)


@pytest.mark.parametrize("rate", [0.0, -500.0, float("nan"), float("inf")], ids=str)
def test_zarr_sampling_rate_attribute(rate, tmp_path):
    """A stored group's sampling_rate: validation names it (no ZeroDivisionError)."""
    session = make_session(seconds=4)
    session["ecg"].attrs["sampling_rate"] = rate
    store = tmp_path / "store.zarr"
    write_campaign_zarr(xr.DataTree.from_dict({GROUP: session}), store)
    cat = _catalog(tmp_path, None, store="store.zarr")
    with pytest.raises(SessionFormatError) as err:
        open_catalog(cat).open_session("S01", "L-30")
    assert str(store) in str(err.value)
    assert "group 'ecg'" in str(err.value) and "'sampling_rate'" in str(err.value)


# --- the schema -----------------------------------------------------------------------


SCHEMA_RATES = {"0": 0.0, "negative": -1.0, "nan": float("nan"), "inf": float("inf"), "bool": True}


@pytest.mark.parametrize("case", SCHEMA_RATES, ids=[f"signal_group rate {k}" for k in SCHEMA_RATES])
def test_signal_group_rate(case):
    with pytest.raises(SessionFormatError) as err:
        schema.signal_group(
            np.zeros(10), SCHEMA_RATES[case], "ecg",
            attrs={"source_file": "rec.edf", "channel": "ECG"},
        )  # fmt: skip
    assert "rec.edf" in str(err.value) and "channel 'ECG': sampling_rate" in str(err.value)


def test_signal_group_refuses_absurd_size_before_allocating():
    """A lazy array of MAX_SAMPLES + 1 samples: refused before its time coordinate."""
    values = da.zeros(schema.MAX_SAMPLES + 1, chunks=2**28)
    with pytest.raises(SessionFormatError) as err:
        schema.signal_group(values, 1000.0, "ecg", attrs={"source_file": "rec.edf"})
    assert "rec.edf" in str(err.value) and "number of samples" in str(err.value)


def test_time_coordinate_refuses_the_issues_header():
    with pytest.raises(SessionFormatError, match="n_samples gives 1.2e\\+11 samples"):
        schema.time_coordinate(int(1.2e11), 5e8)


@pytest.mark.parametrize("rate", [0, -1.0, float("nan"), float("inf"), "fast"], ids=str)
def test_validate_session_rate(rate):
    session = make_session(seconds=2)
    session["abp"].attrs["sampling_rate"] = rate
    with pytest.raises(SessionFormatError) as err:
        schema.validate_session(session, name="rec.edf (S01 L-30)")
    assert "rec.edf" in str(err.value)
    assert "group 'abp'" in str(err.value) and "'sampling_rate'" in str(err.value)


# --- catalogs: paths outside the data roots ------------------------------------------


def _catalog(folder, files, *, store=None, **extra):
    data = {
        "version": 1,
        "campaign": {
            "name": "bad",
            "kind": "spaceflight",
            "launch": "2026-03-02",
            "landing": "2026-04-01",
        },
        "derived": "derived.zarr",
        "subjects": [{"code": "S01"}],
        "sessions": [{"subject": "S01", "label": "L-30"}],
        **extra,
    }
    if files is not None:
        data["sessions"][0]["files"] = files
    if store is not None:
        data["store"] = store
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _secret_file(folder):
    """A file whose first line is a secret, outside the campaign folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "passwd"
    path.write_text(f"root:x:0:0:{SECRET}:/root:/bin/bash\n")
    return path


OUTSIDE = {
    "relative escape": lambda secret, camp: "../" * 12 + str(secret).lstrip("/"),
    "absolute": lambda secret, camp: str(secret),
    "file URL": lambda secret, camp: f"file://{secret}",
    "dotdot into sibling": lambda secret, camp: f"../{secret.parent.name}/{secret.name}",
}


@pytest.mark.parametrize("case", OUTSIDE, ids=list(OUTSIDE))
def test_catalog_file_outside_the_data_roots(case, tmp_path):
    secret = _secret_file(tmp_path / "etc")
    camp = tmp_path / "campaign"
    camp.mkdir()
    cat = _catalog(camp, [{"path": OUTSIDE[case](secret, camp), "format": "csv", "channels": ECG}])
    with pytest.raises(CatalogError) as err:
        open_catalog(cat)
    message = str(err.value)
    assert str(cat) in message and "files[0].path" in message
    assert "outside the catalog's data roots" in message and SECRET not in message


@pytest.mark.parametrize("field", ["store", "derived", "measurements"])
def test_catalog_other_paths_outside_the_data_roots(field, tmp_path):
    camp = tmp_path / "campaign"
    camp.mkdir()
    outside = str(tmp_path / "elsewhere" / ("t.csv" if field == "measurements" else "x.zarr"))
    extra = {"measurements": [{"path": outside}]} if field == "measurements" else {}
    cat = _catalog(camp, [{"path": "rec.csv", "format": "csv", "channels": ECG}], **extra)
    data = yaml.safe_load(cat.read_text())
    if field != "measurements":
        data[field] = outside
    cat.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as err:
        open_catalog(cat, check_files=False)
    assert str(cat) in str(err.value) and field in str(err.value)
    assert "outside the catalog's data roots" in str(err.value)


def test_catalog_data_roots_let_a_listed_folder_in(originals, tmp_path):
    """The explicit way: 'data_roots' lists the folder; the file then reads."""
    camp = tmp_path / "campaign"
    camp.mkdir()
    path = str(originals / "rec_ecg.csv")
    cat = _catalog(camp, [{"path": path, "format": "csv", "channels": {"ecg": {"group": "ecg"}}}])
    with pytest.raises(CatalogError, match="outside the catalog's data roots"):
        open_catalog(cat)
    _catalog(
        camp,
        [{"path": path, "format": "csv", "channels": {"ecg": {"group": "ecg"}}}],
        data_roots=[str(originals)],
    )
    assert open_catalog(cat).resolve(path) == originals / "rec_ecg.csv"


# --- messages never echo a file's text ------------------------------------------------


SECRET_LINES = {
    "passwd": f"root:x:0:0:{SECRET}:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/bin/false\n",
    "env": f"API_TOKEN={SECRET}\nOTHER=1\n",
    "key": f"-----BEGIN OPENSSH PRIVATE KEY----- {SECRET}\nAAAAB3NzaC1yc2E\n",
}
SECRET_READERS = {
    "edf": ("x.edf", {"channels": ECG}),
    "wfdb": ("x.hea", {"channels": ECG}),
    "csv": ("x.csv", {"channels": ECG}),
    "csv with rate": ("x.csv", {"channels": ECG, "sampling_rate": 250}),
    "acq": ("x.acq", {"channels": ECG}),
    "labchart text": ("x.txt", {"channels": ECG}),
    "labchart mat": ("x.mat", {"channels": ECG}),
    "rr text": ("x.txt", {}),
    "rr hrm": ("x.hrm", {}),
    "beats": (
        "x.csv",
        {"channels": {"SBP": {"group": "beats", "variable": "sbp", "units": "mmHg"}}},
    ),
    "zarr": ("x.zarr", {"group": GROUP}),
    "netcdf": ("x.nc", {"group": GROUP}),
}


@pytest.mark.parametrize("reader", SECRET_READERS, ids=list(SECRET_READERS))
def test_no_error_echoes_a_files_first_line(reader, tmp_path):
    name, options = SECRET_READERS[reader]
    fmt = reader.split()[0]
    for kind, text in SECRET_LINES.items():
        path = tmp_path / f"{kind}_{name}"
        path.write_text(text)
        target = path.with_suffix("") if fmt == "wfdb" else path
        options = dict(options)
        channels = options.pop("channels", None)
        with pytest.raises(SessionFormatError) as err:
            read_session(target, fmt, channels=channels, **options).load()
        assert str(target) in str(err.value), kind
        assert SECRET not in str(err.value), (kind, str(err.value))


# --- protocol epochs past the end of the recording ------------------------------------


def _epochs_session(epochs, challenges=None):
    session = make_session(seconds=20)
    protocol = schema.protocol_group(epochs)
    if challenges:
        protocol.attrs["challenges"] = json.dumps(challenges)
    session["protocol"] = xr.DataTree(dataset=protocol)
    return session


def _flags(features, epoch):
    return [f["reason"] for f in json.loads(features.attrs["flags"]) if f["epoch"] == epoch]


def test_epoch_after_the_recording_is_nan_and_flagged():
    from cardiolab.pipeline import session_results
    from cardiolab.signals.beats import beat_table

    session = _epochs_session([("supine", 0.0, 10.0), ("stand", 30.0, 40.0)])
    features, _ = session_results(beat_table(session), session)
    assert features["n_beats"].sel(epoch="supine") > 5
    assert np.isnan(features["n_beats"].sel(epoch="stand"))
    assert np.isnan(features["hr"].sel(epoch="stand"))
    (reason,) = _flags(features, "stand")
    assert reason == "epoch 'stand' starts at 30 s, after the recording ends (20 s): no data"


def test_epoch_cut_short_is_clipped_and_says_how_much_is_missing():
    from cardiolab.pipeline import session_results
    from cardiolab.signals.beats import beat_table

    session = _epochs_session([("supine", 0.0, 10.0), ("stand", 10.0, 40.0)])
    features, _ = session_results(beat_table(session), session)
    (reason,) = [r for r in _flags(features, "stand") if "cut short" in r]
    assert reason == (
        "epoch 'stand' (10-40 s) is cut short: the recording ends at 20 s, 20 s (67 %) of "
        "the epoch are missing"
    )
    # the 10 s that were recorded: ~11 beats at the session's 0.9 s period
    assert 9 <= features["n_beats"].sel(epoch="stand") <= 12


def test_response_to_an_epoch_after_the_recording_is_nan_not_negative():
    from cardiolab.pipeline import session_results
    from cardiolab.signals.beats import beat_table

    challenge = {"name": "stand", "kind": "generic", "baseline": "supine", "challenge": "stand"}
    session = _epochs_session([("supine", 0.0, 10.0), ("stand", 30.0, 40.0)], [challenge])
    features, responses = session_results(beat_table(session), session)
    assert features["n_beats"].sel(epoch="supine") > 5
    assert np.isnan(responses["n_beats"].values).all()


@pytest.mark.parametrize("stand", [(10.0, 40.0), (30.0, 60.0)], ids=["cut short", "after the end"])
def test_tolerance_is_unknown_when_the_recording_stops_first(stand):
    """Not "completed": the 20 s recording stops before the stand ends, no event."""
    from cardiolab.pipeline import session_results
    from cardiolab.signals.beats import beat_table

    challenge = {"name": "st", "kind": "orthostatic", "baseline": "supine", "challenge": "stand"}
    session = _epochs_session([("supine", 0.0, 10.0), ("stand", *stand)], [challenge])
    _, responses = session_results(beat_table(session), session)
    assert np.isnan(responses["tolerance_time"].values).all()
    assert np.isnan(responses["tolerance_completed"].values).all()
    reasons = [f["reason"] for f in json.loads(responses.attrs["flags"])]
    assert (
        f"tolerance unknown: the recording ends at 20 s, before the challenge ends "
        f"({stand[1]:g} s), with no 'presyncope' event"
    ) in reasons


# --- a full disk ----------------------------------------------------------------------


def test_storage_error_names_the_path_and_stage():
    err = storage_error(OSError(errno.ENOSPC, "No space left on device"), "/d/S01/L-30", "write")
    assert isinstance(err, StorageError) and err.errno == errno.ENOSPC
    assert str(err) == (
        "/d/S01/L-30: write: No space left on device (ENOSPC): the disk is full: free space "
        "there or point the catalog's 'derived' elsewhere"
    )


def test_full_disk_names_the_derived_path_and_stage(originals, tmp_path, monkeypatch):
    """Every write below the derived store fails with ENOSPC (as os.write does: no file
    name): the report names the session's derived group and a writing stage."""
    import builtins
    import io

    from cardiolab.pipeline import process_session

    shutil.copy(originals / "rec.edf", tmp_path / "rec.edf")
    cat = _catalog(
        tmp_path,
        [{"path": "rec.edf", "format": "edf", "channels": {"ECG": {"group": "ecg"}}}],
        protocols={
            "p": {"posture": "supine", "epochs": [{"label": "supine", "start": 0, "stop": 4}]}
        },
    )
    derived = tmp_path / "derived.zarr"
    real_open = io.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and str(file).startswith(str(derived)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", full_disk_open)
    monkeypatch.setattr(builtins, "open", full_disk_open)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = process_session(cat, "S01", "L-30")
    assert row["status"] == "failed"
    assert row["stage"] in ("lease", "write"), row
    assert row["error"].startswith(f"{derived}"), row["error"]
    assert "No space left on device (ENOSPC)" in row["error"]
