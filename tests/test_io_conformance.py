"""One conformance test for every registered reader (MNE-Python's ``_test_raw_reader``).

Every format in the registry must have a sample below (a test fails for a format that
has none, so a new reader cannot skip this file). For each, through
:func:`cardiolab.io.read_session` as the catalog calls it:

- the node is a session of the data model, every sample still lazy (no dask graph is
  computed while reading), each group's variable in its canonical unit;
- where a writer exists, the values written come back within the format's resolution
  (round trip); otherwise the sample is a real file read from ../shared/data;
- the format's declared raw files exist for the sample (what the catalog checks and
  the pipeline hashes);
- a missing file, and (for formats with channel mappings) an unknown channel, is a
  ``SessionFormatError`` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import pytest
import xarray as xr
from dask.callbacks import Callback
from reference_data import SHARED_DATA
from session_checks import assert_group_close
from sessions import EDF_CHANNELS, make_session, with_attrs

from cardiolab import io
from cardiolab.errors import SessionFormatError
from cardiolab.schema import BEAT_FIELDS, RAW_GROUPS, protocol_group, validate_session

#: the groups' canonical units
UNITS = {group: spec.units for group, spec in RAW_GROUPS.items()}


@dataclass
class Sample:
    """A file of one format, how to read it, and what it holds."""

    path: Path
    channels: dict | None
    options: dict = field(default_factory=dict)
    written: xr.DataTree | None = None  # the node written, for a round trip
    atol: dict = field(default_factory=dict)  # group -> tolerance of the round trip


def _zarr(tmp_path, shared):
    node = make_session()
    path = io.write_campaign_zarr(xr.DataTree.from_dict({"S01/L-30": node}), tmp_path / "c.zarr")
    return Sample(path, None, {"group": "S01/L-30"}, node, dict.fromkeys(UNITS, 1e-3))


def _netcdf(tmp_path, shared):
    node = make_session()
    path = io.write_campaign_netcdf(xr.DataTree.from_dict({"S01/L-30": node}), tmp_path / "c.nc")
    return Sample(path, None, {"group": "S01/L-30"}, node, dict.fromkeys(UNITS, 1e-9))


def _edf(tmp_path, shared):
    node = make_session()
    path = io.write_edf(node, tmp_path / "s.edf")
    # 16-bit samples: half a digital step of each signal's range (1 % wider)
    atol = {"ecg": 2e-5, "abp": 1e-3, "ldf": 1e-4, "doppler": 1e-3}
    return Sample(path, EDF_CHANNELS, {}, node, atol)


def _wfdb(tmp_path, shared):
    node = make_session()
    records = io.write_wfdb(node, tmp_path, "s01")
    return Sample(records[0], {"ecg": {"group": "ecg"}}, {}, node, {"ecg": 2e-5})


def _csv(tmp_path, shared):
    node = make_session()
    files = io.write_csv(node, tmp_path, "s01")
    return Sample(files["abp"], {"abp": {"group": "abp"}}, {}, node, {"abp": 1e-9})


def _shared(shared, relative):
    """A real file of ../shared/data; the test skips where the folder is absent."""
    path = shared / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the reference recordings are not available")
    return path


def _acq(tmp_path, shared):
    path = _shared(shared, "acq/nojournal-4.1.0.acq")
    return Sample(path, {"EKG - ERS100C": {"group": "ecg"}})


def _labchart(tmp_path, shared):
    path = _shared(shared, "labchart/resp_emg_pressure_2blocks.txt")
    return Sample(path, {"Pressure": {"group": "abp"}})


def _rr(tmp_path, shared):
    return Sample(_shared(shared, "beat_exports/rest_rri.txt"), None)


def _beats(tmp_path, shared):
    path = tmp_path / "beats.csv"
    path.write_text("time,SYS,DIA\n0.8,120,80\n1.6,122,79\n2.45,118,81\n3.3,121,80\n")
    channels = {
        "SYS": {"group": "beats", "variable": "sbp", "units": "mmHg"},
        "DIA": {"group": "beats", "variable": "dbp", "units": "mmHg"},
    }
    return Sample(path, channels)


#: format -> sample factory (tmp_path, shared data folder) -> Sample
SAMPLES = {
    "zarr": _zarr,
    "netcdf": _netcdf,
    "edf": _edf,
    "wfdb": _wfdb,
    "csv": _csv,
    "acq": _acq,
    "labchart": _labchart,
    "rr": _rr,
    "beats": _beats,
}

FORMATS = [fmt.name for fmt in io.file_formats()]


def test_every_registered_format_has_a_sample():
    assert sorted(SAMPLES) == sorted(FORMATS)


@pytest.fixture
def sample(request, tmp_path):
    return SAMPLES[request.param](tmp_path, SHARED_DATA)


def _read(name, s: Sample):
    return io.read_session(s.path, name, channels=s.channels, **s.options)


@pytest.mark.parametrize("sample", FORMATS, indirect=True, ids=FORMATS)
def test_reader_conformance(request, sample):
    name = request.node.callspec.params["sample"]
    fmt = io.get_format(name)
    started = []
    with Callback(start=lambda dsk: started.append(len(dsk))):
        node = _read(name, sample)
    assert started == [], "reading computed samples"
    groups = [g for g in node.children if g in RAW_GROUPS or g == "beats"]
    assert groups
    for group in groups:
        ds = node[group].to_dataset(inherit=False)
        if group == "beats":
            # beat files are read whole at open (the beat times are the data the
            # catalog checks); each variable in its beat unit
            for variable, da_ in ds.data_vars.items():
                assert da_.attrs["units"] == BEAT_FIELDS[variable][0]
            continue
        var = ds[RAW_GROUPS[group].variable]
        assert isinstance(var.data, da.Array), f"{name}: group {group} is not lazy"
        # the canonical unit; respiration keeps the one it was written in (V)
        assert var.attrs["units"] == (UNITS[group] or "V")
    session = with_attrs(node)
    if "protocol" not in session.children:  # the catalog gives it, as here
        session["protocol"] = xr.DataTree(protocol_group([("rest", 0.0, 1.0)]))
    validate_session(session)
    if sample.written is not None:
        for group, atol in sample.atol.items():
            assert_group_close(node, sample.written, group, atol)
    assert fmt.raw_files(Path(sample.path)), f"{name}: no raw files found for the sample"


@pytest.mark.parametrize("sample", FORMATS, indirect=True, ids=FORMATS)
def test_reader_errors_name_the_file_and_field(request, sample, tmp_path):
    name = request.node.callspec.params["sample"]
    fmt = io.get_format(name)
    missing = tmp_path / "absent" / ("none" + (fmt.suffixes[0] if fmt.suffixes else ""))
    with pytest.raises(SessionFormatError, match="absent"):
        io.read_session(missing, name, channels=sample.channels, **sample.options)
    if fmt.channels:
        spec = dict(next(iter(sample.channels.values())))
        spec.setdefault("units", UNITS.get(spec["group"]))
        with pytest.raises(SessionFormatError) as err:
            io.read_session(sample.path, name, channels={"no such channel": spec}, **sample.options)
        assert str(sample.path) in str(err.value)
        assert "no such channel" in str(err.value)


def test_readme_lists_every_registered_format():
    """The README's format table has a row naming each registered format."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| format | module | what it reads |") :].split("\n\n")[0]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    named = {name.strip(" `") for row in rows for name in row.split(",")}
    assert set(FORMATS) <= named, sorted(set(FORMATS) - named)


# --- the readers as an xarray backend -----------------------------------------------------


def test_xarray_backend_opens_any_registered_format(tmp_path):
    """``engine="cardiolab"`` (the entry point) reads through the registry, lazily;
    the file's ending picks the format where one format owns it."""
    node = make_session()
    edf = io.write_edf(node, tmp_path / "s.edf")
    tree = xr.open_datatree(edf, engine="cardiolab", channels=EDF_CHANNELS)  # .edf -> edf
    assert isinstance(tree["ecg"].ds["ecg"].data, da.Array)
    assert_group_close(tree, node, "abp", 1e-3)
    abp = xr.open_dataset(edf, engine="cardiolab", channels=EDF_CHANNELS, group="abp")
    assert abp["abp"].attrs["units"] == "mmHg"
    record = io.write_wfdb(node, tmp_path, "s01")[0]
    ecg = xr.open_dataset(record, engine="cardiolab", format="wfdb", channels={"ecg": "ecg"})
    assert_group_close(xr.DataTree.from_dict({"ecg": ecg}), node, "ecg", 2e-5)


def test_xarray_backend_needs_a_format_for_unknown_endings(tmp_path):
    node = make_session()
    files = io.write_csv(node, tmp_path, "s01")
    export = files["abp"].rename(tmp_path / "abp.export")
    with pytest.raises(SessionFormatError, match="say which with format="):
        xr.open_datatree(export, engine="cardiolab", channels={"abp": "abp"})
    tree = xr.open_datatree(export, engine="cardiolab", format="csv", channels={"abp": "abp"})
    assert_group_close(tree, node, "abp", 1e-9)
