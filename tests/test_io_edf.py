"""EDF/EDF+ and BDF: round trip within 16-bit resolution, units, errors, laziness."""

import os
import re
import tracemalloc
from pathlib import Path

import dask.array as da
import edfio
import numpy as np
import pytest
from session_checks import assert_epochs_equal, assert_group_close
from sessions import EDF_CHANNELS, make_session, with_attrs

from cardiolab import io
from cardiolab.errors import CardiolabError, SessionFormatError, UnitError
from cardiolab.io.edf import EDF_MAIN_FIELDS, EDF_SIGNAL_FIELDS
from cardiolab.schema import RAW_GROUPS, validate_session
from cardiolab.units import conversion_factor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _edf(path, channels, fs=200.0, n=400, annotations=None):
    """An EDF file with ``channels = {label: (dimension, values)}`` (EDF+C with
    ``annotations``, a list of :class:`edfio.EdfAnnotation`)."""
    signals = []
    for label, (dimension, values) in channels.items():
        values = np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()
        signals.append(
            edfio.EdfSignal(
                values,
                fs,
                label=label,
                physical_dimension=dimension,
                physical_range=(float(values.min()) - 1, float(values.max()) + 1),
            )
        )
    edfio.Edf(signals, annotations=annotations).write(path)
    return path


def _steps(path):
    """One digital step of each signal: (physical max - physical min) / 65535."""
    return {
        s.label: (s.physical_max - s.physical_min) / (s.digital_max - s.digital_min)
        for s in edfio.read_edf(path).signals
    }


def _span(raw: bytes, field: str, signal=None) -> tuple[int, int]:
    """(first byte, width) of a header field: of signal ``signal``, or of the fixed part
    where ``signal`` is None."""
    if signal is None:
        return EDF_MAIN_FIELDS[field]
    ns, start = int(raw[252:256]), 256
    for name, width in EDF_SIGNAL_FIELDS.items():
        if name == field:
            return start + signal * width, width
        start += ns * width
    raise KeyError(field)


def _field(raw: bytes, field: str, signal=None) -> str:
    """A header field's text (Latin-1, stripped)."""
    start, width = _span(raw, field, signal)
    return raw[start : start + width].decode("latin-1").strip()


def _patch(raw: bytes, field: str, value, signal=None, right: bool = False) -> bytes:
    """``raw`` with one header field (of signal ``signal``, or of the fixed part where
    ``signal`` is None) replaced by ``value`` (str or bytes), padded with spaces on the
    right (or on the left: ``right=True``)."""
    start, width = _span(raw, field, signal)
    value = value if isinstance(value, bytes) else str(value).encode("latin-1")
    assert len(value) <= width
    value = value.rjust(width) if right else value.ljust(width)
    return raw[:start] + value + raw[start + width :]


def _replace_once(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1 and len(old) == len(new)
    return raw.replace(old, new)


@pytest.fixture
def session():
    return make_session()


@pytest.fixture
def edf_file(tmp_path, session):
    return io.write_edf(session, tmp_path / "s.edf")


def test_round_trip_within_half_a_digital_step(edf_file, session):
    read = io.read_edf(edf_file, EDF_CHANNELS)
    steps = _steps(edf_file)
    # samples are rounded to the nearest of 65536 levels over the physical range
    half = {label: 0.5 * s * (1 + 1e-9) for label, s in steps.items()}
    assert_group_close(read, session, "ecg", half["ECG"], channel="ECG")
    assert_group_close(read, session, "abp", half["ABP"], channel="ABP")
    assert_group_close(read, session, "ldf", half["LDF"], channel="LDF")
    assert_group_close(
        read,
        session,
        "doppler",
        {"femoral": half["Doppler femoral"], "mca": half["Doppler mca"]},
        channel=["Doppler femoral", "Doppler mca"],
    )
    # the 16-bit step is range / 65535 with the range 2 % wider than the signal's
    ecg = session["ecg"].ds["ecg"]
    assert steps["ECG"] == pytest.approx(float(ecg.max() - ecg.min()) * 1.02 / 65535, rel=0.02)
    assert_epochs_equal(read, session, atol=1e-4)  # EDF+ annotations: 0.1 ms
    assert read["ecg"].ds.attrs["source_file"] == str(edf_file)
    validate_session(with_attrs(read))


def test_read_through_read_session(edf_file):
    node = io.read_session(edf_file, "edf", channels={"ABP": {"group": "abp"}})
    assert list(node.children) == ["abp", "protocol"]
    with pytest.raises(SessionFormatError, match=r"option\(s\) \['group'\] do not apply"):
        io.read_session(edf_file, "edf", channels={"ABP": {"group": "abp"}}, group="S01/L-30")


def test_sessions_that_are_not_whole_seconds(tmp_path):
    node = make_session(seconds=8.5)  # 0.5 s data records
    io.write_edf(node, tmp_path / "s.edf")
    read = io.read_edf(tmp_path / "s.edf", EDF_CHANNELS)
    for group in RAW_GROUPS:
        assert read[group].ds.sizes["time"] == node[group].ds.sizes["time"]
    node["ldf"] = node["ldf"].to_dataset().isel(time=slice(0, -1))
    with pytest.raises(SessionFormatError, match=r"t.edf: cannot write as EDF without padding"):
        io.write_edf(node, tmp_path / "t.edf")
    assert not (tmp_path / "t.edf").exists()


def test_writer_refuses_to_overwrite(edf_file, session):
    with pytest.raises(CardiolabError, match=r"s.edf exists; refusing to overwrite"):
        io.write_edf(session, edf_file)


def test_units_are_converted_from_the_header(tmp_path):
    path = _edf(tmp_path / "p.edf", {"BP": ("kPa", 16.0), "ECG II": ("uV", 1000.0)})
    node = io.read_edf(path, {"BP": {"group": "abp"}, "ECG II": {"group": "ecg"}})
    # one digital step, in the canonical unit
    step_kpa, step_uv = _steps(path)["BP"], _steps(path)["ECG II"]
    mmhg_per_kpa = 1000 / 133.322387415
    np.testing.assert_allclose(
        node["abp"].ds["abp"].values, 16.0 * mmhg_per_kpa, rtol=0, atol=step_kpa * mmhg_per_kpa
    )  # 16 kPa = 120.01 mmHg
    np.testing.assert_allclose(node["ecg"].ds["ecg"].values, 1.0, rtol=0, atol=step_uv * 1e-3)
    assert node["abp"].ds.attrs["source_units"] == "kPa"
    assert node["abp"].ds["abp"].attrs["units"] == "mmHg"
    # the same unit, spelt differently in the catalog, is no conflict
    same = io.read_edf(path, {"ECG II": {"group": "ecg", "units": "µV"}})
    assert same["ecg"].ds["ecg"].attrs["units"] == "mV"


def test_blank_dimension_takes_the_catalog_unit(tmp_path):
    path = _edf(tmp_path / "b.edf", {"Flow": ("", 0.5)})
    node = io.read_edf(path, {"Flow": {"group": "doppler", "vessel": "mca", "units": "m/s"}})
    np.testing.assert_allclose(node["doppler"].ds["velocity"].values, 50.0, atol=0.01)
    with pytest.raises(UnitError, match=r"b.edf: channel 'Flow' has no unit in the file"):
        io.read_edf(path, {"Flow": {"group": "doppler", "vessel": "mca"}})


def test_unknown_wrong_and_conflicting_units(tmp_path):
    path = _edf(tmp_path / "p.edf", {"BP": ("psi", 2.0)})
    with pytest.raises(UnitError, match=r"p.edf: channel 'BP': unknown unit 'psi'"):
        io.read_edf(path, {"BP": {"group": "abp"}})
    path = _edf(tmp_path / "q.edf", {"BP": ("kPa", 16.0)})
    with pytest.raises(
        UnitError, match=r"q.edf: channel 'BP' is in 'kPa' according to the file but in 'mmHg'"
    ):
        io.read_edf(path, {"BP": {"group": "abp", "units": "mmHg"}})
    path = _edf(tmp_path / "r.edf", {"BP": ("mV", 1.0)})
    with pytest.raises(UnitError, match=r"r.edf: channel 'BP': .*measures voltage, not pressure"):
        io.read_edf(path, {"BP": {"group": "abp"}})


def test_missing_channel_names_it_and_lists_the_file(edf_file):
    with pytest.raises(
        SessionFormatError, match=r"s.edf: no channel 'ECG I' \(the file has: \['ECG', 'ABP'"
    ):
        io.read_edf(edf_file, {"ECG I": {"group": "ecg"}})


def test_absent_file(tmp_path):
    with pytest.raises(SessionFormatError, match=r"absent.edf: EDF file not found"):
        io.read_edf(tmp_path / "absent.edf", {"ECG": {"group": "ecg"}})


@pytest.mark.parametrize(
    "channels, message",
    [
        (
            {"ECG": {"group": "ecg"}, "ABP": {"group": "ecg"}},
            "'ECG' and 'ABP' both map to group 'ecg'",
        ),
        ({"Doppler mca": {"group": "doppler"}}, "doppler channel 'Doppler mca' needs a 'vessel'"),
        (
            {
                "Doppler mca": {"group": "doppler", "vessel": "mca"},
                "Doppler femoral": {"group": "doppler", "vessel": "mca"},
            },
            "both map to doppler vessel 'mca'",
        ),
        ({"ECG": {"group": "ecg", "vessel": "mca"}}, "'vessel' applies to doppler channels only"),
        ({"ECG": {"group": "eeg"}}, "maps to unknown group 'eeg'"),
        ({"ECG": {"group": "ecg", "unit": "mV"}}, r"unknown key\(s\) \['unit'\]"),
        ({}, "no channel mapping given"),
    ],
)
def test_channel_mapping_errors(edf_file, channels, message):
    with pytest.raises(SessionFormatError, match=rf"s.edf: .*{message}"):
        io.read_edf(edf_file, channels)


def test_doppler_channels_must_share_a_rate(tmp_path):
    signals = [
        edfio.EdfSignal(
            np.ones(n), fs, label=f"V{i}", physical_dimension="cm/s", physical_range=(0, 200)
        )
        for i, (fs, n) in enumerate(((100, 400), (200, 800)))
    ]
    edfio.Edf(signals).write(tmp_path / "d.edf")
    with pytest.raises(SessionFormatError, match=r"d.edf: doppler channels must share one"):
        io.read_edf(
            tmp_path / "d.edf",
            {
                "V0": {"group": "doppler", "vessel": "femoral"},
                "V1": {"group": "doppler", "vessel": "mca"},
            },
        )


def test_reading_is_lazy_and_per_channel(edf_file, monkeypatch):
    from cardiolab.io import edf as edf_module

    calls = []
    read_signal = edf_module._read_signal

    def counting(path, where, *args):
        calls.append(where.start)  # the signal's first byte in each data record
        return read_signal(path, where, *args)

    monkeypatch.setattr(edf_module, "_read_signal", counting)
    node = io.read_edf(edf_file, EDF_CHANNELS)
    for group, spec in RAW_GROUPS.items():
        assert isinstance(node[group].ds[spec.variable].data, da.Array)
    validate_session(with_attrs(node))  # validation reads no sample either
    assert calls == []
    ecg = node["ecg"].ds["ecg"].compute()
    assert ecg.size == 4000
    assert len(calls) == 1  # the ECG signal only
    node["doppler"].ds["velocity"].compute()
    assert len(calls) == 3 and len(set(calls)) == 3


# --- the EDF family as real files come ---------------------------------------------------

# biosemi_test.bdf as MNE-Python 1.13.2 reads it (mne.io.read_raw_bdf, values in mV)
BIOSEMI_LABELS = (
    "Fp1 AF7 AF3 F1 F3 F5 F7 FT7 FC5 FC3 FC1 C1 C3 C5 T7 TP7 CP5 CP3 CP1 P1 P3 P5 P7 P9 "
    "PO7 PO3 O1 Iz Oz POz Pz CPz Fpz Fp2 AF8 AF4 AFz Fz F2 F4 F6 F8 FT8 FC6 FC4 FC2 FCz "
    "Cz C2 C4 C6 T8 TP8 CP6 CP4 CP2 P2 P4 P6 P8 P10 PO8 PO4 O2 EXG1 REOG LEOG IEOG EXG5 "
    "M2 M1 EXG8 Status"
).split()
BIOSEMI_MNE = {  # label: (samples 0, 1, 1000, 2047; mean; standard deviation), mV
    "Fp1": (
        (14.660582285021679, 14.65514479506879, 14.806925764615878, 14.63951982393979),
        14.672686464926718,
        0.0796935899717713,
    ),
    "EXG1": (
        (-259.39547382858234, -259.39513007921755, -259.3935363321624, -259.39556757840916),
        -259.3945344077107,
        0.0008940716499353211,
    ),
}


def test_biosemi_bdf_reads_as_mne_reads_it(shared_data):
    """BioSemi BDF (24-bit) whose 'number of data records' is right-aligned ('  1     '),
    which pyedflib 0.1.42 refuses."""
    path = shared_data / "real_world" / "biosemi_test.bdf"
    assert path.read_bytes()[236:244] == b"  1     "  # the field strict readers refuse
    for label, (values, mean, sd) in BIOSEMI_MNE.items():
        node = io.read_edf(path, {label: {"group": "ecg"}})
        ds = node["ecg"].to_dataset(inherit=False)
        assert ds.attrs["sampling_rate"] == 2048.0
        assert ds.attrs["source_units"] == "uV"
        assert ds.sizes["time"] == 2048  # 1 data record of 1 s
        x = ds["ecg"].values
        # 24-bit counts * gain: MNE and cardiolab agree to rounding
        np.testing.assert_allclose(x[[0, 1, 1000, 2047]], values, rtol=1e-12, atol=0)
        assert float(x.mean()) == pytest.approx(mean, rel=1e-12)
        assert float(x.std()) == pytest.approx(sd, rel=1e-9)
    # the 73 signals, in file order: the unknown-channel error lists them
    with pytest.raises(SessionFormatError) as err:
        io.read_edf(path, {"ECG": {"group": "ecg"}})
    assert str(err.value) == f"{path}: no channel 'ECG' (the file has: {BIOSEMI_LABELS})"
    assert len(BIOSEMI_LABELS) == 73


# duplicate_channel_labels.edf as MNE-Python 1.13.2 (and pyedflib 0.1.42) read it, uV
DUPLICATE_MNE = {  # signal index: (samples 0, 1, 2, 1000, 2499; mean)
    0: ((44.6, 44.8, 44.6, -6.6, -22.6), 15.21088),
    2: ((17.2, 16.8, 17.0, -11.6, -10.8), 11.674),
}


def test_duplicate_labels_are_refused_and_mapped_by_index(shared_data):
    path = shared_data / "real_world" / "duplicate_channel_labels.edf"
    with pytest.raises(
        SessionFormatError,
        match=r"duplicate_channel_labels.edf: channel label 'EEG F1-Ref' appears 2 times, "
        r"at signal indices \[0, 2\]",
    ):
        io.read_edf(path, {"EEG F1-Ref": {"group": "ecg"}})
    for index, (values, mean) in DUPLICATE_MNE.items():
        node = io.read_edf(path, {"EEG F1-Ref": {"group": "ecg", "units": "uV", "index": index}})
        ds = node["ecg"].to_dataset(inherit=False)
        assert ds.attrs["sampling_rate"] == 250.0
        assert ds.sizes["time"] == 2500
        x = ds["ecg"].values * 1e3  # uV
        # the file's step is 0.2 uV; the values read are those steps
        np.testing.assert_allclose(x[[0, 1, 2, 1000, 2499]], values, rtol=0, atol=1e-9)
        assert float(x.mean()) == pytest.approx(mean, rel=1e-12)
    # the other label, and an index whose label is another one
    node = io.read_edf(path, {"EEG F2-Ref": {"group": "ecg"}})
    assert node["ecg"].ds.attrs["channel"] == "EEG F2-Ref"
    with pytest.raises(SessionFormatError, match=r"the signal at index 1 is labelled 'EEG F2-Ref'"):
        io.read_edf(path, {"EEG F1-Ref": {"group": "ecg", "index": 1}})


def test_right_aligned_numbers_read(tmp_path, edf_file, session):
    """Numbers placed anywhere in their fields read (the BioSemi kind)."""
    raw = edf_file.read_bytes()
    for field in (
        "number of bytes in header record",
        "number of data records",
        "duration of a data record",
        "number of signals",
    ):
        start, width = EDF_MAIN_FIELDS[field]
        raw = _patch(raw, field, raw[start : start + width].strip(), right=True)
    spr = "number of samples in each data record"
    ns = int(raw[252:256])
    for i in range(ns):
        start = 256 + ns * 216 + 8 * i  # the fields before it take 216 bytes per signal
        raw = _patch(raw, spr, raw[start : start + 8].strip(), signal=i, right=True)
    assert raw[236:244] == b"       8"
    path = tmp_path / "aligned.edf"
    path.write_bytes(raw)
    assert_reads_like(path, edf_file, session)


def assert_reads_like(path, edf_file, session):
    """``path`` (a patched copy of ``edf_file``) reads the same samples and epochs."""
    read = io.read_edf(path, EDF_CHANNELS)
    ref = io.read_edf(edf_file, EDF_CHANNELS)
    for group, spec in RAW_GROUPS.items():
        np.testing.assert_array_equal(
            read[group].ds[spec.variable].values, ref[group].ds[spec.variable].values
        )
    assert_epochs_equal(read, session, atol=1e-9)


def _record_onsets_shifted(raw: bytes, shifts: dict) -> bytes:
    """EDF+D: the timekeeping TAL of data record k (``+k``) set to ``+shifts[k]``."""
    # move the last record first when onsets move later, the first when they move earlier,
    # so that no new onset is taken for an old one
    later = all(new > k for k, new in shifts.items())
    for k, new in sorted(shifts.items(), reverse=later):
        raw = _replace_once(raw, b"+%d\x14\x14" % k, b"+%d\x14\x14" % new)
    return raw


def test_edf_plus_d_with_contiguous_records_reads(tmp_path, edf_file, session):
    raw = _patch(edf_file.read_bytes(), "reserved", "EDF+D")
    path = tmp_path / "d.edf"
    path.write_bytes(raw)
    assert_reads_like(path, edf_file, session)


@pytest.mark.parametrize(
    "shifts, message",
    [
        ({5: 7, 6: 8, 7: 9}, r"a gap of 2 s at 5 s \(data record 5 starts at 7 s"),
        ({7: 8}, r"a gap of 1 s at 7 s \(data record 7 starts at 8 s"),
        ({5: 4, 6: 5, 7: 6}, r"an overlap of 1 s at 5 s \(data record 5 starts at 4 s"),
    ],
    ids=["gap", "last-record", "overlap"],
)
def test_edf_plus_d_with_a_gap_names_it(tmp_path, edf_file, shifts, message):
    """The session file has 8 data records of 1 s, onsets +0 ... +7."""
    raw = _patch(edf_file.read_bytes(), "reserved", "EDF+D")
    path = tmp_path / "gap.edf"
    path.write_bytes(_record_onsets_shifted(raw, shifts))
    with pytest.raises(
        SessionFormatError, match=rf"gap.edf: EDF\+D data records are not contiguous: {message}"
    ):
        io.read_edf(path, {"ECG": {"group": "ecg"}})
    # the same onsets in an EDF+C file are not looked at (EDF+C is contiguous by definition)
    path.unlink()
    path.write_bytes(_record_onsets_shifted(edf_file.read_bytes(), shifts))
    assert io.read_edf(path, {"ECG": {"group": "ecg"}})["ecg"].ds.sizes["time"] == 4000


def _bdf(path, values, fs=256.0, annotations=()):
    signal = edfio.BdfSignal(
        values, fs, label="ECG", physical_dimension="uV", physical_range=(-5000, 5000)
    )
    edfio.Bdf([signal], annotations=annotations).write(path)
    return path


def test_bdf_plus_reads_and_its_gaps_are_named(tmp_path):
    t = np.arange(4 * 256) / 256
    values = 1000 * np.sin(2 * np.pi * 1.2 * t)
    path = _bdf(tmp_path / "b.bdf", values, annotations=[edfio.EdfAnnotation(1.0, 2.0, "tilt")])
    assert path.read_bytes()[192:197] == b"BDF+C"
    node = io.read_edf(path, {"ECG": {"group": "ecg"}})
    # one 24-bit step: 10000 uV / (2**24 - 1)
    np.testing.assert_allclose(
        node["ecg"].ds["ecg"].values,
        values * 1e-3,
        rtol=0,
        atol=0.5 * 1e4 / (2**24 - 1) * 1e-3 * 1.000001,
    )
    p = node["protocol"].to_dataset(inherit=False)
    assert list(p["label"].values) == ["tilt"]
    assert (float(p["start"][0]), float(p["stop"][0])) == (1.0, 3.0)
    gap = tmp_path / "gap.bdf"
    raw = _patch(path.read_bytes(), "reserved", "BDF+D")
    gap.write_bytes(_record_onsets_shifted(raw, {2: 5, 3: 6}))
    with pytest.raises(
        SessionFormatError,
        match=r"gap.bdf: BDF\+D data records are not contiguous: a gap of 3 s at 2 s",
    ):
        io.read_edf(gap, {"ECG": {"group": "ecg"}})


# --- BDF read lazily: one signal's bytes, nothing at open -----------------------------------

MV_PER_UV = conversion_factor("uV", "ecg")


def _bdf_mixed(path, seconds=4, annotations=()):
    """BDF(+) of 4 signals in uV at 4 rates: full 24-bit ranges, a negative physical
    range and a digital range of its own; each holds its physical minimum and maximum
    (digital -8388608 and 8388607 for the first three)."""
    rng = np.random.default_rng(3)
    specs = [  # label, rate (Hz), physical range, digital range
        ("EXG", 2048.0, (-262144.0, 262143.0), (-8388608, 8388607)),
        ("ECG", 512.0, (-5000.0, 5000.0), (-8388608, 8388607)),
        ("BP", 128.0, (-300.0, -20.5), (-8388608, 8388607)),
        ("Resp", 32.0, (10.0, 990.0), (-1000, 200000)),
    ]
    signals = []
    for label, fs, (lo, hi), digital in specs:
        values = rng.uniform(lo, hi, int(fs * seconds))
        values[:2] = lo, hi
        signals.append(
            edfio.BdfSignal(
                values,
                fs,
                label=label,
                physical_dimension="uV",
                physical_range=(lo, hi),
                digital_range=digital,
            )
        )
    edfio.Bdf(signals, annotations=annotations).write(path)
    return path


def _edfio_full_decode(path):
    """{label: physical values} of every ordinary signal, as edfio decodes a whole BDF."""
    return {s.label: s.data for s in edfio.read_bdf(path, header_encoding="latin-1").signals}


def _signal_headers(raw: bytes):
    """(number of signals, samples per record of each, byte offset of each in a record)."""
    ns = int(raw[252:256])
    spr_at = 256 + ns * 216  # the signal fields before it take 216 bytes per signal
    spr = [int(raw[spr_at + 8 * i : spr_at + 8 * i + 8]) for i in range(ns)]
    return ns, spr, [3 * sum(spr[:i]) for i in range(ns)]


def _with_signal_first(raw: bytes, j: int) -> bytes:
    """A BDF file with its signal ``j`` moved to the first place (header and records)."""
    ns, spr, starts = _signal_headers(raw)
    order = [j] + [i for i in range(ns) if i != j]
    head, pos = [raw[:256]], 256
    for width in EDF_SIGNAL_FIELDS.values():
        block = raw[pos : pos + width * ns]
        head += [block[i * width : (i + 1) * width] for i in order]
        pos += width * ns
    records = np.frombuffer(raw[pos:], dtype=np.uint8).reshape(-1, 3 * sum(spr))
    cols = [records[:, starts[i] : starts[i] + 3 * spr[i]] for i in order]
    return b"".join(head) + np.concatenate(cols, axis=1).tobytes()


def _read_all(path, labels):
    """Each label read alone through read_edf, computed: {label: values in mV}."""
    return {
        label: io.read_edf(path, {label: {"group": "ecg"}})["ecg"].ds["ecg"].values
        for label in labels
    }


def test_biosemi_bdf_equals_edfio_full_decode_for_every_signal(shared_data, tmp_path):
    """All 73 signals of the BioSemi file, bit for bit as edfio decodes the whole file
    (the Status signal's dimension 'Boolean' set to uV in a copy, so that it maps)."""
    raw = (shared_data / "real_world" / "biosemi_test.bdf").read_bytes()
    assert _field(raw, "physical dimension", 72) == "Boolean"
    path = tmp_path / "biosemi.bdf"
    path.write_bytes(_patch(raw, "physical dimension", "uV", signal=72))
    expected = _edfio_full_decode(path)
    assert list(expected) == BIOSEMI_LABELS
    read = _read_all(path, BIOSEMI_LABELS)
    for label in BIOSEMI_LABELS:
        assert read[label].shape == (2048,)
        np.testing.assert_array_equal(read[label], expected[label] * MV_PER_UV, err_msg=label)
    # the 24-bit sign: the file has negative and positive counts
    assert read["EXG1"].max() < 0 < read["Fp1"].min()


def test_edf_equals_edfio_decode_for_every_signal(shared_data, tmp_path):
    """16-bit EDF signals, read one at a time from their own bytes, bit for bit as edfio
    decodes them: the three signals of the real duplicate-label file (taken by index)
    and a written EDF+C of four rates with a negative range."""
    path = shared_data / "real_world" / "duplicate_channel_labels.edf"
    expected = [s.data for s in edfio.read_edf(path).signals]
    assert len(expected) == 3
    for i, label in enumerate(["EEG F1-Ref", "EEG F2-Ref", "EEG F1-Ref"]):
        node = io.read_edf(path, {label: {"group": "ecg", "units": "uV", "index": i}})
        np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, expected[i] * MV_PER_UV)
    rng = np.random.default_rng(3)
    signals = [
        edfio.EdfSignal(
            rng.uniform(-300, -20.5, int(fs * 4)),
            fs,
            label=f"S{fs}",
            physical_dimension="uV",
            physical_range=(-300, -20.5),
        )
        for fs in (500, 250, 100, 25)
    ]
    written = tmp_path / "rates.edf"
    edfio.Edf(signals).write(written)
    expected = {s.label: s.data for s in edfio.read_edf(written).signals}
    read = _read_all(written, list(expected))
    for label, values in expected.items():
        np.testing.assert_array_equal(read[label], values * MV_PER_UV, err_msg=label)


@pytest.mark.parametrize("annotation_first", [False, True], ids=["bdf+c", "annotations-first"])
def test_written_bdf_equals_edfio_full_decode(tmp_path, annotation_first):
    """Rates 2048, 512, 128 and 32 Hz, a negative range and a digital range of its own,
    with the annotation signal last (as edfio writes it) or first."""
    path = _bdf_mixed(tmp_path / "m.bdf", annotations=[edfio.EdfAnnotation(0.5, 2.0, "tilt")])
    if annotation_first:
        raw = path.read_bytes()
        assert _field(raw, "label", 4) == "BDF Annotations"
        path.write_bytes(_with_signal_first(raw, 4))
        assert _field(path.read_bytes(), "label", 0) == "BDF Annotations"
    expected = _edfio_full_decode(path)
    read = _read_all(path, ["EXG", "ECG", "BP", "Resp"])
    for label, fs in (("EXG", 2048), ("ECG", 512), ("BP", 128), ("Resp", 32)):
        assert read[label].size == 4 * fs
        np.testing.assert_array_equal(read[label], expected[label] * MV_PER_UV, err_msg=label)
    # each physical range is reached at both ends (digital minimum and maximum)
    np.testing.assert_allclose(read["BP"][:2], [-0.3, -0.0205], rtol=1e-12)
    np.testing.assert_allclose(read["EXG"][:2], [-262.144, 262.143], rtol=1e-12)
    assert read["BP"].max() < 0
    node = io.read_edf(path, {"ECG": {"group": "ecg"}})
    assert node["ecg"].ds.attrs["sampling_rate"] == 512.0
    p = node["protocol"].to_dataset(inherit=False)
    assert (list(p["label"].values), float(p["start"][0]), float(p["stop"][0])) == (
        ["tilt"],
        0.5,
        2.5,
    )


def test_truncated_bdf_reads_whole_records_as_edfio_does(tmp_path, caplog):
    path = _bdf_mixed(tmp_path / "m.bdf")  # 4 records of 1 s
    raw = path.read_bytes()
    _, spr, _ = _signal_headers(raw)
    record = 3 * sum(spr)
    cut = tmp_path / "cut.bdf"
    cut.write_bytes(raw[: len(raw) - record - record // 2])  # 2 whole records and a half
    with caplog.at_level("WARNING", logger="cardiolab"):
        read = _read_all(cut, ["EXG", "Resp"])
    assert "holds 2 whole data records" in caplog.text
    with pytest.warns(UserWarning):  # edfio: "Incomplete data record ... truncated"
        expected = _edfio_full_decode(cut)
    assert (read["EXG"].size, read["Resp"].size) == (2 * 2048, 2 * 32)
    for label in ("EXG", "Resp"):
        np.testing.assert_array_equal(read[label], expected[label] * MV_PER_UV)


def test_a_bdf_signal_is_read_from_its_own_bytes_only(tmp_path):
    """Every byte of the other signals replaced: the mapped signal reads the same; its own
    bytes replaced: it reads differently, and the others are unchanged."""
    path = _bdf_mixed(tmp_path / "m.bdf", annotations=[edfio.EdfAnnotation(1.0, 1.5, "rest")])
    raw = path.read_bytes()
    ns, spr, starts = _signal_headers(raw)
    labels = [_field(raw, "label", i) for i in range(ns)]
    header = 256 * (ns + 1)
    before = _read_all(path, ["ECG", "BP"])
    rng = np.random.default_rng(11)

    def scrambled(signals, name):
        records = np.frombuffer(raw[header:], dtype=np.uint8).reshape(-1, 3 * sum(spr)).copy()
        for i in (labels.index(s) for s in signals):
            cols = slice(starts[i], starts[i] + 3 * spr[i])
            records[:, cols] = rng.integers(0, 256, records[:, cols].shape, dtype=np.uint8)
        out = tmp_path / name
        out.write_bytes(raw[:header] + records.tobytes())
        return out

    others = scrambled(["EXG", "BP", "Resp"], "others.bdf")
    node = io.read_edf(others, {"ECG": {"group": "ecg"}})
    np.testing.assert_array_equal(node["ecg"].ds["ecg"].values, before["ECG"])
    assert list(node["protocol"].ds["label"].values) == ["rest"]
    assert not np.array_equal(_read_all(others, ["BP"])["BP"], before["BP"])  # scrambled
    own = scrambled(["ECG"], "own.bdf")
    after = _read_all(own, ["ECG", "BP"])
    assert np.mean(after["ECG"] != before["ECG"]) > 0.99
    np.testing.assert_array_equal(after["BP"], before["BP"])


def _traced_peak(func):
    """(result, peak bytes allocated while ``func()`` ran, above what was allocated
    before), by tracemalloc (NumPy reports its buffers to it)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = func()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


@pytest.fixture
def large_bdf(tmp_path):
    """A plain BDF of 64 signals ``C0`` ... ``C63`` in uV (range -500 to 500) at
    2048 Hz, 30 s (11.8 MB of random samples); ``(path, samples as (record, signal,
    sample, byte), a one-record file of the same signals)``."""
    n_signals, fs, seconds = 64, 2048, 30
    small = tmp_path / "one.bdf"
    edfio.Bdf(
        [
            edfio.BdfSignal(
                np.zeros(fs),
                fs,
                label=f"C{i}",
                physical_dimension="uV",
                physical_range=(-500.0, 500.0),
            )
            for i in range(n_signals)
        ]
    ).write(small)
    raw = small.read_bytes()
    header = 256 * (n_signals + 1)
    assert len(raw) == header + 3 * n_signals * fs  # one data record, no annotation signal
    path = tmp_path / "big.bdf"
    samples = np.random.default_rng(5).integers(0, 256, (seconds, n_signals, fs, 3), dtype=np.uint8)
    path.write_bytes(_patch(raw[:header], "number of data records", seconds) + samples.tobytes())
    return path, samples, small


def test_opening_a_bdf_allocates_no_sample_and_computing_one_signal_its_own(large_bdf):
    """Decoding every sample takes at least 4 bytes each (int32, 15.7 MB here); a lazy
    open allocates the group's time coordinate (8 bytes per sample of one signal, and a
    copy of it) and no sample, and computing one signal a few arrays of its length."""
    path, samples, small = large_bdf
    seconds, n_signals, fs, _ = samples.shape
    n = fs * seconds  # samples of one signal
    all_int32 = 4 * n_signals * n
    # the first open and compute of a process import modules (dask imports distributed)
    _read_all(small, ["C7"])

    node, opened = _traced_peak(lambda: io.read_edf(path, {"C7": {"group": "ecg"}}))
    assert opened < 4 * 8 * n < all_int32 / 5  # 1.97 MB against 15.7 MB (1.05 MB measured)
    ecg, computed = _traced_peak(lambda: node["ecg"].ds["ecg"].values)
    assert computed < 5 * 8 * n < all_int32 / 6  # 2.46 MB against 15.7 MB (1.02 MB measured)
    # and the values are signal 7's samples (a data record holds each signal's 2048 in
    # turn), scaled by the specification's formula
    triplets = samples[:, 7].reshape(-1, 3).astype(np.int64)
    digital = triplets[:, 0] | triplets[:, 1] << 8 | triplets[:, 2] << 16
    digital = np.where(digital >= 2**23, digital - 2**24, digital)
    gain = 1000.0 / (2**24 - 1)
    np.testing.assert_allclose(ecg, ((digital + 8388608) * gain - 500.0) * MV_PER_UV, atol=1e-12)


def _disk_bytes_read() -> int:
    """Bytes this process has made the system fetch from storage (Linux /proc/self/io)."""
    fields = dict(line.split(":") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["read_bytes"])


def _evict(path) -> None:
    """Drop a file's pages from the page cache, so that reading it reads the disk
    (written out first: pages not yet on disk stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_opening_a_bdf_reads_its_header_and_computing_one_signal_its_bytes(large_bdf):
    """From a cold page cache: the storage reads of opening (the header, 16.6 kB, and
    the system's read-ahead) and of computing one signal (3 bytes of 61 440 samples,
    184 kB, in whole pages: at most 3 pages of 4 kB for each record's 6 kB)."""
    path, samples, small = large_bdf
    if not (Path("/proc/self/io").is_file() and hasattr(os, "posix_fadvise")):
        pytest.skip("storage reads are measured with Linux /proc/self/io and posix_fadvise")
    size = path.stat().st_size
    _read_all(small, ["C7"])  # the first open and compute import modules
    _evict(path)
    before = _disk_bytes_read()
    path.read_bytes()
    if _disk_bytes_read() - before < 0.9 * size:
        pytest.skip(f"reading {path} from a cold cache was not counted (a RAM file system?)")
    _evict(path)
    before = _disk_bytes_read()
    node = io.read_edf(path, {"C7": {"group": "ecg"}})
    opened = _disk_bytes_read() - before
    before = _disk_bytes_read()
    ecg = node["ecg"].ds["ecg"].values
    computed = _disk_bytes_read() - before
    seconds = samples.shape[0]
    assert ecg.size == seconds * 2048
    assert opened < size / 20  # 0.59 MB of 11.8 MB (0.33 MB measured)
    assert computed < 3 * 4096 * seconds < size / 30  # 0.37 MB (0.36 MB measured)


def test_bdf_changed_after_opening_is_an_error(tmp_path):
    path = _bdf_mixed(tmp_path / "m.bdf")
    node = io.read_edf(path, {"ECG": {"group": "ecg"}})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SessionFormatError, match=r"m.bdf: its 4 data records .* has the file"):
        node["ecg"].ds["ecg"].compute()


@pytest.mark.parametrize(
    "dimension, label, unit",
    [
        (b"\xb5V", b"ECG", "\u00b5V"),
        (b"\xc2\xb5V", b"ECG", "\u00b5V"),
        (b"\xb5V", b"EKG \xe4", "\u00b5V"),
        (b"\xce\xbcV", b"ECG", "\u03bcV"),
    ],
    ids=["latin-1 micro", "utf-8 micro", "latin-1 label", "utf-8 greek mu"],
)
def test_non_ascii_header_text_reads(tmp_path, dimension, label, unit):
    """pyedflib 0.1.42 refuses these files ('Physical Dimension'), so cardiolab's µV
    alias could not be reached."""
    path = _edf(tmp_path / "mu.edf", {"ECG": ("uV", 1000.0)})
    raw = _patch(path.read_bytes(), "physical dimension", dimension, signal=0)
    path.write_bytes(_patch(raw, "label", label, signal=0))
    name = label.decode("latin-1")
    node = io.read_edf(path, {name: {"group": "ecg"}})
    ds = node["ecg"].to_dataset(inherit=False)
    assert ds.attrs["source_units"] == unit
    assert ds.attrs["channel"] == name
    np.testing.assert_allclose(ds["ecg"].values, 1.0, rtol=0, atol=_steps_of(raw)[0] * 1e-3)


def _steps_of(raw: bytes):
    """One digital step of each ordinary signal of an EDF file given as bytes."""
    return [
        (s.physical_max - s.physical_min) / (s.digital_max - s.digital_min)
        for s in edfio.read_edf(raw, header_encoding="latin-1").signals
    ]


# --- bad input: each refusal names the file and the field ----------------------------------

SPR = "number of samples in each data record"


def _bad_base(tmp_path) -> bytes:
    """Plain EDF, 2 signals (ECG in mV, BP in psi), 200 Hz, 2 data records of 1 s."""
    path = _edf(tmp_path / "base.edf", {"ECG": ("mV", 1.0), "BP": ("psi", 2.0)})
    raw = path.read_bytes()
    assert (raw[236:244].strip(), raw[244:252].strip(), len(raw)) == (b"2", b"1", 768 + 1600)
    return raw


@pytest.mark.parametrize(
    "mutate, channels, error, field",
    [
        (lambda raw: b"", None, r"empty file \(0 bytes\)", "256 bytes"),
        (lambda raw: b"time,ecg\n0,1\n" * 40, None, "not an EDF or BDF file", "'version'"),
        (lambda raw: bytes(1000), None, "not an EDF or BDF file", "'version'"),
        (lambda raw: raw[:100], None, "ends inside its header", "'number of signals'"),
        (lambda raw: raw[:300], None, "ends inside its header", "header of its 2 signals"),
        (
            lambda raw: raw[: 768 + 10],
            None,
            "no complete data record",
            "'number of data records' is 2",
        ),
        (lambda raw: _patch(raw, SPR, "0", signal=0), None, "signal 'ECG'", f"'{SPR}' is 0"),
        (lambda raw: _patch(raw, SPR, "-200", signal=0), None, "signal 'ECG'", f"'{SPR}' is -200"),
        (
            lambda raw: _patch(raw, SPR, "2OO", signal=1),
            None,
            "signal 'BP'",
            f"'{SPR}' reads a text of 3 characters (not shown)",
        ),
        (
            lambda raw: _patch(raw, "duration of a data record", "0"),
            None,
            "must be > 0",
            "'duration of a data record' is 0 s",
        ),
        (
            lambda raw: _patch(raw, "duration of a data record", "-1"),
            None,
            "must be > 0",
            "'duration of a data record' is -1 s",
        ),
        (
            lambda raw: _patch(raw, "duration of a data record", "one"),
            None,
            "reads a text of 3 characters \\(not shown\\), which is not a number",
            "'duration of a data record'",
        ),
        (
            lambda raw: _patch(raw, "number of data records", "many"),
            None,
            "reads a text of 4 characters \\(not shown\\), which is not a number",
            "'number of data records'",
        ),
        (
            lambda raw: _patch(raw, "number of signals", "0"),
            None,
            "the file has no signal",
            "'number of signals' is 0",
        ),
        (
            lambda raw: _patch(raw, "number of bytes in header record", "512"),
            None,
            r"but 2 signals take 256 \* \(2 \+ 1\) = 768",
            "'number of bytes in header record' is 512",
        ),
        (
            lambda raw: _patch(raw, "digital minimum", "32767", signal=0),
            None,
            "must have maximum > minimum",
            "'digital minimum' (32767) and 'digital maximum' (32767)",
        ),
        (
            lambda raw: _patch(
                _patch(raw, "physical minimum", "3", signal=0), "physical maximum", "3", signal=0
            ),
            None,
            "must differ",
            "'physical minimum' (3) and 'physical maximum' (3)",
        ),
        (
            lambda raw: _patch(raw, "physical maximum", "abc", signal=0),
            None,
            "signal 'ECG': header field 'physical maximum' reads a text of 3 characters",
            "which is not a number",
        ),
        (
            lambda raw: raw,
            {"ECG I": {"group": "ecg"}},
            r"no channel 'ECG I' \(the file has: \['ECG', 'BP'\]\)",
            "'ECG I'",
        ),
        (lambda raw: raw, {"BP": {"group": "abp"}}, "unknown unit 'psi'", "channel 'BP'"),
    ],
    ids=[
        "empty",
        "csv",
        "zeros",
        "cut-in-fixed-header",
        "cut-in-signal-headers",
        "no-whole-record",
        "zero-samples-per-record",
        "negative-samples-per-record",
        "samples-per-record-not-a-number",
        "zero-record-duration",
        "negative-record-duration",
        "record-duration-not-a-number",
        "record-count-not-a-number",
        "no-signals",
        "header-size",
        "digital-range",
        "physical-range",
        "physical-maximum-not-a-number",
        "unknown-channel",
        "unknown-unit",
    ],
)
def test_bad_input_names_the_file_and_the_field(tmp_path, mutate, channels, error, field):
    bad = tmp_path / "bad.edf"
    bad.write_bytes(mutate(_bad_base(tmp_path)))
    channels = channels or {"ECG": {"group": "ecg"}}
    with pytest.raises(SessionFormatError, match=rf"^{bad}: .*{error}") as err:
        io.read_edf(bad, channels).compute()
    assert field in str(err.value)
    if "unit" in error:
        assert isinstance(err.value, UnitError)


@pytest.mark.parametrize(
    "cut, declared, message",
    [
        (
            300,
            b"2",
            r"is 2, but the file holds 1 whole data records \(1300 bytes after the "
            r"header, 800 bytes each, and 500 bytes of a cut record\); reading those 1",
        ),
        (
            800,
            b"2",
            r"is 2, but the file holds 1 whole data records \(800 bytes after the "
            r"header, 800 bytes each\); reading those 1",
        ),
        (0, b"-1", r"is -1, but the file holds 2 whole data records"),
    ],
    ids=["record-cut", "record-missing", "count-unknown"],
)
def test_record_count_disagreeing_with_the_file_reads_whole_records(
    tmp_path, caplog, cut, declared, message
):
    """As MNE-Python and edfio do: the whole records are read, with a warning."""
    raw = _patch(_bad_base(tmp_path), "number of data records", declared)
    short = tmp_path / "short.edf"
    short.write_bytes(raw[: len(raw) - cut])
    with caplog.at_level("WARNING", logger="cardiolab"):
        node = io.read_edf(short, {"ECG": {"group": "ecg"}})
    assert re.search(rf"short.edf: header field 'number of data records' {message}", caplog.text)
    n = 200 * (2 - cut // 800 - (cut % 800 > 0))
    ecg = node["ecg"].ds["ecg"]
    assert ecg.size == n
    np.testing.assert_allclose(ecg.values, 1.0, rtol=0, atol=_steps_of(raw)[0])
