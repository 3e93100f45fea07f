"""EDF/EDF+: round trip within 16-bit resolution, units, errors, laziness."""

import dask.array as da
import numpy as np
import pyedflib
import pytest
from pyedflib import highlevel
from session_checks import assert_epochs_equal, assert_group_close
from sessions import EDF_CHANNELS, make_session, with_attrs

from cardiolab import io
from cardiolab.errors import CardiolabError, SessionFormatError, UnitError
from cardiolab.schema import RAW_GROUPS, validate_session

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _edf(path, channels, fs=200.0, n=400):
    """An EDF file with ``channels = {label: (dimension, values)}``."""
    signals, headers = [], []
    for label, (dimension, values) in channels.items():
        values = np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()
        signals.append(values)
        headers.append(
            highlevel.make_signal_header(
                label,
                dimension=dimension,
                sample_frequency=fs,
                physical_min=float(values.min()) - 1,
                physical_max=float(values.max()) + 1,
            )
        )
    highlevel.write_edf(str(path), signals, headers)
    return path


def _steps(path):
    """One digital step of each signal: (physical max - physical min) / 65535."""
    with pyedflib.EdfReader(str(path)) as f:
        return {
            label.strip(): (f.getPhysicalMaximum(i) - f.getPhysicalMinimum(i))
            / (f.getDigitalMaximum(i) - f.getDigitalMinimum(i))
            for i, label in enumerate(f.getSignalLabels())
        }


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
    # one digital step (pyedflib's writer truncates), in the canonical unit
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


@pytest.mark.parametrize(
    "content",
    [
        b"0       this is not an EDF header" + bytes(200),
        b"",
        "truncated",
    ],
    ids=["garbage", "empty", "truncated"],
)
def test_unreadable_file_names_the_file(tmp_path, edf_file, content):
    bad = tmp_path / "bad.edf"
    if content == "truncated":
        content = edf_file.read_bytes()[: 256 * 3 + 100]  # header cut short, no data
    bad.write_bytes(content)
    with pytest.raises(SessionFormatError, match=r"bad.edf: not a readable EDF"):
        io.read_edf(bad, {"ECG": {"group": "ecg"}})


def test_truncated_data_records_are_refused(tmp_path, edf_file):
    bad = tmp_path / "short.edf"
    bad.write_bytes(edf_file.read_bytes()[:-5000])  # full header, records cut
    with pytest.raises(SessionFormatError, match=r"short.edf: not a readable EDF"):
        io.read_edf(bad, {"ECG": {"group": "ecg"}})


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
    from pyedflib import highlevel

    headers = [
        highlevel.make_signal_header(f"V{i}", "cm/s", sample_frequency=fs, physical_max=200)
        for i, fs in enumerate((100, 200))
    ]
    highlevel.write_edf(str(tmp_path / "d.edf"), [np.ones(400), np.ones(800)], headers)
    with pytest.raises(SessionFormatError, match=r"d.edf: doppler channels must share one"):
        io.read_edf(
            tmp_path / "d.edf",
            {
                "V0": {"group": "doppler", "vessel": "femoral"},
                "V1": {"group": "doppler", "vessel": "mca"},
            },
        )


def test_reading_is_lazy_and_per_channel(edf_file, monkeypatch):
    calls = []
    real = pyedflib.EdfReader.readSignal

    def counting(self, chn, *args, **kwargs):
        calls.append(chn)
        return real(self, chn, *args, **kwargs)

    monkeypatch.setattr(pyedflib.EdfReader, "readSignal", counting)
    node = io.read_edf(edf_file, EDF_CHANNELS)
    for group, spec in RAW_GROUPS.items():
        assert isinstance(node[group].ds[spec.variable].data, da.Array)
    validate_session(with_attrs(node))  # validation reads no sample either
    assert calls == []
    ecg = node["ecg"].ds["ecg"].compute()
    assert ecg.size == 4000
    assert calls == [0]  # the ECG signal only
    node["doppler"].ds["velocity"].compute()
    assert sorted(calls) == [0, 3, 4]
