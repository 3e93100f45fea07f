"""Campaign catalogs: validation errors, tables, path resolution and lazy opening."""

import copy
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import cardiolab.io
import cardiolab.io.native
from cardiolab import schema
from cardiolab.catalog import open_catalog, write_catalog
from cardiolab.errors import CatalogError, SessionFormatError
from cardiolab.io import write_csv

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STORE_SESSIONS = [("S01", "L-60"), ("S01", "FD5"), ("S01", "R+3"), ("S02", "L-60")]


def catalog_dict():
    """A valid spaceflight catalog: four sessions in the store, two with files."""
    return {
        "version": 1,
        "campaign": {
            "name": "test-campaign",
            "kind": "spaceflight",
            "launch": "2026-03-02",
            "landing": "2026-04-01",
        },
        "derived": "derived.zarr",
        "store": "store.zarr",
        "protocols": {
            "supine-stand": {
                "posture": "supine",
                "epochs": [
                    {"label": "supine", "start": 0, "stop": 5},
                    {"label": "stand", "start": 5, "stop": 10},
                ],
            }
        },
        "subjects": [
            {"code": "S01", "sex": "F", "age_band": "30-39"},
            {"code": "S02", "sex": "M", "age_band": "40-49"},
        ],
        "sessions": [
            {"subject": "S01", "label": "L-60", "date": "2026-01-01"},
            {"subject": "S01", "label": "FD5"},
            {"subject": "S01", "label": "R+3"},
            {"subject": "S02", "label": "L-60"},
            {
                "subject": "S02",
                "label": "R+6h",
                "files": [
                    {
                        "path": "raw/S02_R+6h.edf",
                        "format": "edf",
                        "channels": {
                            "ECG II": {"group": "ecg", "units": "uV"},
                            "Finger BP": {"group": "abp"},
                            "Doppler FA": {"group": "doppler", "vessel": "femoral"},
                        },
                    },
                    {
                        "path": "raw/S02_R+6h_ldf.csv",
                        "format": "csv",
                        "time_column": "t",
                        "time_units": "s",
                        "channels": {"flux": {"group": "ldf", "units": "PU"}},
                    },
                ],
            },
            {
                "subject": "S02",
                "label": "FD10",
                "protocol": "supine-stand",
                "files": [
                    {
                        "path": "raw/S02_FD10",
                        "format": "wfdb",
                        "annotations": "atr",
                        "channels": {"MLII": {"group": "ecg"}},
                    }
                ],
            },
        ],
    }


@pytest.fixture
def folder(tmp_path):
    """A campaign folder with placeholder raw files and an (empty) store folder."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("S02_R+6h.edf", "S02_R+6h_ldf.csv", "S02_FD10.hea"):
        (raw / name).write_bytes(b"")
    (tmp_path / "store.zarr").mkdir()
    return tmp_path


def write_yaml(folder, content, name="data_catalog.yaml"):
    path = folder / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text)
    return path


def catalog_error(path, **kwargs) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        open_catalog(path, **kwargs)
    return info.value


def session_tree(subject, label, *, groups=("ecg", "abp", "doppler"), epochs=(("file", 0, 10),)):
    """A small valid session node in the data model (10 s of signals)."""
    rng = np.random.default_rng(0)
    rates = {"ecg": 200.0, "abp": 50.0, "ldf": 10.0, "doppler": 50.0}
    made = {}
    for g in groups:
        n = int(10 * rates[g])
        if g == "doppler":
            made[g] = schema.signal_group(
                50 + rng.normal(size=(1, n)), rates[g], g, vessels=["femoral"]
            )
        else:
            made[g] = schema.signal_group(100 + rng.normal(size=n), rates[g], g)
    made["protocol"] = schema.protocol_group(list(epochs))
    parsed = cardiolab.parse_session_label(label)
    return schema.session_node(
        made,
        subject=subject,
        session=label,
        phase=parsed.phase,
        day=float(parsed.day),
        campaign="test-campaign",
        protocol="file-protocol",
        posture="seated",
    )


def write_store(path, sessions):
    tree = xr.DataTree()
    for subject, label in sessions:
        tree[f"{subject}/{label}"] = session_tree(subject, label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(path)
    return path


@pytest.fixture(scope="module")
def store_campaign(tmp_path_factory):
    """A catalog whose sessions are all in a real native zarr store."""
    folder = tmp_path_factory.mktemp("store_campaign")
    write_store(folder / "store.zarr", STORE_SESSIONS)
    data = catalog_dict()
    data["sessions"] = [{"subject": s, "label": lab} for s, lab in STORE_SESSIONS]
    return write_yaml(folder, data)


# --- a good catalog ---------------------------------------------------------------------


def test_sessions_table_has_phase_and_day(folder):
    cat = open_catalog(write_yaml(folder, catalog_dict()))
    table = cat.sessions
    assert isinstance(table.index, pd.RangeIndex)
    assert list(table.columns) == [
        "subject", "session", "phase", "day", "protocol", "posture", "date", "formats",
        "n_files",
    ]  # fmt: skip
    assert list(table["session"]) == ["L-60", "FD5", "R+3", "L-60", "R+6h", "FD10"]
    assert list(table["phase"]) == ["pre", "in", "post", "pre", "post", "in"]
    np.testing.assert_allclose(table["day"], [-60, 5, 3, -60, 0.25, 10])
    assert set(table["protocol"]) == {"supine-stand"}
    assert set(table["posture"]) == {"supine"}
    assert list(table["formats"]) == ["zarr"] * 4 + ["csv,edf", "wfdb"]
    assert list(table["n_files"]) == [1, 1, 1, 1, 2, 1]
    assert str(table["date"][0]) == "2026-01-01"
    assert table["date"][1] is None


def test_subjects_protocols_and_repr(folder):
    cat = open_catalog(write_yaml(folder, catalog_dict()))
    assert cat.subjects.to_dict("list") == {
        "code": ["S01", "S02"],
        "sex": ["F", "M"],
        "age_band": ["30-39", "40-49"],
    }
    assert cat.protocol_epochs("supine-stand") == [("supine", 0.0, 5.0), ("stand", 5.0, 10.0)]
    assert cat.campaign.name == "test-campaign"
    assert str(cat.campaign.launch) == "2026-03-02"
    assert repr(cat) == "<Catalog 'test-campaign' (spaceflight): 2 subjects, 6 sessions>"
    with pytest.raises(CatalogError, match="unknown protocol 'tilt'"):
        cat.protocol_epochs("tilt")


def test_matrix_orders_by_phase_then_day(folder):
    cat = open_catalog(write_yaml(folder, catalog_dict()))
    m = cat.matrix()
    assert list(m.index) == ["S01", "S02"]
    assert list(m.columns) == ["L-60", "FD5", "FD10", "R+6h", "R+3"]
    assert m.dtypes.eq(bool).all()
    assert m.loc["S01"].tolist() == [True, True, False, False, True]
    assert m.loc["S02"].tolist() == [True, False, True, True, False]


# --- errors: each names the catalog file, the entry and the field -----------------------


def _set(path, value):
    def change(d):
        *head, last = path
        node = d
        for key in head:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


def _append(path, value):
    def change(d):
        node = d
        for key in path:
            node = node[key]
        node.append(value)

    return change


_DELETE = object()
_EDF_CHANNELS = ("sessions", 4, "files", 0, "channels")
_EPOCHS = ("protocols", "supine-stand", "epochs")

ERRORS = {
    "missing required field": (
        _set(("sessions", 1, "label"), _DELETE),
        "sessions[1] (S01 ?)",
        "label",
        "required field is missing",
    ),
    "missing top-level field": (_set(("derived",), _DELETE), "derived", None, "required"),
    "unknown key in a channel": (
        _set(_EDF_CHANNELS + ("ECG II",), {"group": "ecg", "unit": "uV"}),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.unit",
        "did you mean 'units'",
    ),
    "unknown key in campaign": (
        _set(("campaign", "lanch"), "2026-03-01"),
        "campaign",
        "lanch",
        "unknown key 'lanch'; did you mean 'launch'",
    ),
    "duplicate session": (
        _append(("sessions",), {"subject": "S01", "label": "FD5"}),
        "sessions[6] (S01 FD5)",
        "label",
        "also sessions[1]",
    ),
    "undeclared subject": (
        _append(("sessions",), {"subject": "S03", "label": "L-60"}),
        "sessions[6] (S03 L-60)",
        "subject",
        "'S03' is not declared",
    ),
    "duplicate subject code": (
        _append(("subjects",), {"code": "S01", "sex": "M"}),
        "subjects[2] (S01)",
        "code",
        "duplicate subject code",
    ),
    "missing file": (
        _set(("sessions", 4, "files", 1, "path"), "raw/absent.csv"),
        "sessions[4] (S02 R+6h)",
        "files[1].path",
        "file not found",
    ),
    "missing wfdb record": (
        _set(("sessions", 5, "files", 0, "path"), "raw/S09_FD10"),
        "sessions[5] (S02 FD10)",
        "files[0].path",
        "no .hea header",
    ),
    "missing store": (_set(("store",), "absent.zarr"), "store", None, "native store not found"),
    "unknown phase label": (
        _set(("sessions", 2, "label"), "Z+3"),
        "sessions[2] (S01 Z+3)",
        "label",
        "unknown session label 'Z+3'",
    ),
    "unknown unit": (
        _set(_EDF_CHANNELS + ("ECG II", "units"), "uVolt"),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.units",
        "unknown unit 'uVolt'",
    ),
    "unit of another quantity": (
        _set(_EDF_CHANNELS + ("Finger BP", "units"), "mV"),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.Finger BP.units",
        "measures voltage, not pressure",
    ),
    "unknown time unit": (
        _set(("sessions", 4, "files", 1, "time_units"), "fortnights"),
        "sessions[4] (S02 R+6h)",
        "files[1].time_units",
        "unknown unit",
    ),
    "negative channel index": (
        _set(_EDF_CHANNELS + ("ECG II", "index"), -1),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.index",
        "greater than or equal to 0",
    ),
    "zero sampling rate": (
        _set(("sessions", 4, "files", 1, "sampling_rate"), 0),
        "sessions[4] (S02 R+6h)",
        "files[1].sampling_rate",
        "greater than 0",
    ),
    "sampling rate on an edf file": (
        _set(("sessions", 4, "files", 0, "sampling_rate"), 500),
        "sessions[4] (S02 R+6h)",
        "files[0].sampling_rate",
        "'sampling_rate' is only for csv files",
    ),
    "unknown decimal mark": (
        _set(("sessions", 4, "files", 1, "decimal"), ";"),
        "sessions[4] (S02 R+6h)",
        "files[1].decimal",
        "','",
    ),
    "beats channel without a variable": (
        _set(_EDF_CHANNELS + ("ECG II",), {"group": "beats"}),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.variable",
        "a beats channel needs a 'variable'",
    ),
    "variable on a waveform channel": (
        _set(_EDF_CHANNELS + ("ECG II",), {"group": "ecg", "variable": "sbp"}),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.variable",
        "'variable' is only for beats channels",
    ),
    "beat variable in a unit of another quantity": (
        _set(_EDF_CHANNELS + ("ECG II",), {"group": "beats", "variable": "sbp", "units": "mL"}),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.ECG II.units",
        "mL",
    ),
    "channel mapped twice across files": (
        _set(("sessions", 4, "files", 1, "channels", "ecg2"), {"group": "ecg", "units": "mV"}),
        "sessions[4] (S02 R+6h)",
        "files[1].channels.ecg2",
        "mapped twice to group 'ecg' (also files[0].channels.ECG II)",
    ),
    "doppler vessel mapped twice": (
        _set(
            ("sessions", 4, "files", 1, "channels", "vmax"),
            {"group": "doppler", "vessel": "femoral"},
        ),
        "sessions[4] (S02 R+6h)",
        "files[1].channels.vmax",
        "vessel 'femoral' is mapped twice",
    ),
    "doppler channel without vessel": (
        _set(_EDF_CHANNELS + ("Doppler FA", "vessel"), _DELETE),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.Doppler FA.vessel",
        "needs a 'vessel'",
    ),
    "vessel on a non-doppler channel": (
        _set(_EDF_CHANNELS + ("Finger BP", "vessel"), "radial"),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.Finger BP.vessel",
        "only for doppler",
    ),
    "unknown group": (
        _set(_EDF_CHANNELS + ("Finger BP", "group"), "bp"),
        "sessions[4] (S02 R+6h)",
        "files[0].channels.Finger BP.group",
        "got 'bp'",
    ),
    "unknown format": (
        _set(("sessions", 4, "files", 0, "format"), "mat"),
        "sessions[4] (S02 R+6h)",
        "files[0].format",
        "got 'mat'",
    ),
    "file without channels": (
        _set(("sessions", 4, "files", 0, "channels"), _DELETE),
        "sessions[4] (S02 R+6h)",
        "files[0].channels",
        "needs 'channels'",
    ),
    "channels for a native store": (
        _set(
            ("sessions", 0, "files"),
            [{"path": "store.zarr", "format": "zarr", "channels": {"x": {"group": "ecg"}}}],
        ),
        "sessions[0] (S01 L-60)",
        "files[0].channels",
        "does not apply to zarr",
    ),
    "unknown session protocol": (
        _set(("sessions", 0, "protocol"), "tilt"),
        "sessions[0] (S01 L-60)",
        "protocol",
        "unknown protocol 'tilt'",
    ),
    "unknown default protocol": (
        _set(("default_protocol",), "tilt"),
        "default_protocol",
        None,
        "unknown protocol 'tilt'",
    ),
    "overlapping epochs": (
        _set(_EPOCHS + (1, "start"), 4),
        "protocols.supine-stand",
        "epochs",
        "'supine' (0-5 s) and 'stand' (4-10 s) overlap",
    ),
    "epoch stop before start": (
        _set(_EPOCHS + (1, "stop"), 5),
        "protocols.supine-stand",
        "epochs[1].stop",
        "stop 5 s <= start 5 s",
    ),
    "protocol without posture": (
        _set(("protocols", "supine-stand", "posture"), _DELETE),
        "protocols.supine-stand",
        "posture",
        "required",
    ),
    "bedrest label in a spaceflight campaign": (
        _set(("sessions", 1, "label"), "HDT21"),
        "sessions[1] (S01 HDT21)",
        "label",
        "'HDT21' is a bedrest label, but this is a spaceflight campaign",
    ),
    "malformed sex": (
        _set(("subjects", 0, "sex"), "female"),
        "subjects[0] (S01)",
        "sex",
        "got 'female'",
    ),
    "malformed age band": (
        _set(("subjects", 1, "age_band"), "40 to 49"),
        "subjects[1] (S02)",
        "age_band",
        "must look like '30-39'",
    ),
    "reversed age band": (
        _set(("subjects", 1, "age_band"), "49-40"),
        "subjects[1] (S02)",
        "age_band",
        "must look like",
    ),
    "malformed subject code": (
        _set(("subjects", 1, "code"), "Jane Doe"),
        "subjects[1] (Jane Doe)",
        "code",
        "pseudonymous code",
    ),
    "bedrest dates in a spaceflight campaign": (
        _set(("campaign", "start"), "2026-03-02"),
        "campaign",
        "start",
        "uses 'launch'/'landing'",
    ),
    "landing before launch": (
        _set(("campaign", "landing"), "2026-02-01"),
        "campaign",
        "landing",
        "is before 2026-03-02",
    ),
    "unknown version": (_set(("version",), 2), "version", None, "got 2"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_catalog_error_names_file_entry_and_field(folder, name):
    change, entry, field, words = ERRORS[name]
    data = catalog_dict()
    change(data)
    path = write_yaml(folder, data)
    err = catalog_error(path)
    msg = str(err)
    assert str(path) in msg
    assert words in msg
    assert err.file == str(path)
    assert err.entry == entry
    assert err.field == field
    assert msg.startswith(f"{path}: {entry}: " + (f"{field}: " if field else ""))


@pytest.mark.parametrize(
    ("kind", "dates", "label", "expected"),
    [
        ("bedrest", {"start": "2026-03-02", "end": "2026-04-01"}, "FD5", "spaceflight label"),
        ("confinement", {"launch": "2026-03-02"}, "HDT21", "bedrest label"),
    ],
)
def test_label_of_the_wrong_kind(folder, kind, dates, label, expected):
    data = catalog_dict()
    data["campaign"] = {"name": "x", "kind": kind, **dates}
    data["sessions"] = [
        {"subject": "S01", "label": "R+3"},
        {"subject": "S01", "label": label},
    ]
    path = write_yaml(folder, data)
    err = catalog_error(path)
    assert (err.entry, err.field) == (f"sessions[1] (S01 {label})", "label")
    assert expected in str(err) and f"a {kind} campaign" in str(err)


def test_several_errors_are_listed_one_per_line(folder):
    data = catalog_dict()
    data["sessions"].append({"subject": "S01", "label": "FD5"})
    data["sessions"].append({"subject": "S07", "label": "R+1"})
    data["sessions"][4]["files"][1]["path"] = "raw/absent.csv"
    path = write_yaml(folder, data)
    err = catalog_error(path)
    lines = str(err).splitlines()
    assert lines[0] == f"{path}: 3 problems:"
    assert lines[1].startswith("  - sessions[4] (S02 R+6h): files[1].path: file not found")
    assert lines[2].startswith("  - sessions[6] (S01 FD5): label: duplicate session")
    assert lines[3].startswith("  - sessions[7] (S07 R+1): subject: subject 'S07'")
    assert [p[:2] for p in err.problems] == [
        ("sessions[4] (S02 R+6h)", "files[1].path"),
        ("sessions[6] (S01 FD5)", "label"),
        ("sessions[7] (S07 R+1)", "subject"),
    ]


def test_several_schema_errors_are_listed(folder):
    data = catalog_dict()
    data["subjects"][0]["sex"] = "female"
    data["sessions"][2]["label"] = "Z+3"
    err = catalog_error(write_yaml(folder, data))
    assert "2 problems" in str(err)
    assert "subjects[0] (S01): sex: " in str(err)
    assert "sessions[2] (S01 Z+3): label: unknown session label" in str(err)


def test_yaml_syntax_error_gives_the_line(folder):
    path = write_yaml(folder, "version: 1\ncampaign:\n  name: x\n   kind: spaceflight\n")
    err = catalog_error(path)
    assert str(err).startswith(f"{path}: YAML syntax error at line 4")


def test_channel_listed_twice_is_a_duplicate_key(folder):
    text = yaml.safe_dump(catalog_dict(), sort_keys=False)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() == "ECG II:")
    indent = lines[first][: lines[first].index("E")]
    lines[first + 1 : first + 1] = [f"{indent}  group: ecg", f"{indent}ECG II:"]
    path = write_yaml(folder, "\n".join(lines) + "\n")
    err = catalog_error(path)
    assert str(err).startswith(f"{path}: YAML syntax error at line {first + 3}")
    assert f"duplicate key 'ECG II' (first given on line {first + 1})" in str(err)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- version: 1\n- campaign: x\n", "this file holds a list"),
        ("just text\n", "this file holds a str"),
        ("name: my-notebook-config\nthreads: 4\n", "none of the keys"),
    ],
)
def test_not_a_catalog(folder, text, words):
    path = write_yaml(folder, text)
    err = catalog_error(path)
    assert str(err).startswith(f"{path}: not a catalog")
    assert words in str(err)


def test_missing_catalog_file(tmp_path):
    err = catalog_error(tmp_path / "nope.yaml")
    assert str(err) == f"{tmp_path / 'nope.yaml'}: catalog file not found"


def test_file_checks_can_be_skipped(folder):
    data = catalog_dict()
    data["store"] = "absent.zarr"
    cat = open_catalog(write_yaml(folder, data), check_files=False)
    assert cat.store_path == folder / "absent.zarr"


# --- paths ------------------------------------------------------------------------------


def test_paths_are_relative_to_data_root(folder):
    data = catalog_dict()
    data["data_root"] = "campaign"
    (folder / "campaign").mkdir()
    (folder / "raw").rename(folder / "campaign" / "raw")
    (folder / "store.zarr").rename(folder / "campaign" / "store.zarr")
    cat = open_catalog(write_yaml(folder, data))
    assert cat.root == folder / "campaign"
    assert cat.derived_path == folder / "campaign" / "derived.zarr"
    assert cat.store_path == folder / "campaign" / "store.zarr"
    assert cat.resolve("raw/S02_R+6h.edf") == folder / "campaign" / "raw" / "S02_R+6h.edf"
    assert cat.resolve("/abs/file.edf") == Path("/abs/file.edf")


def test_default_root_is_the_catalog_folder(folder, monkeypatch):
    write_yaml(folder, catalog_dict())
    monkeypatch.chdir(folder.parent)
    cat = open_catalog(f"{folder.name}/data_catalog.yaml")
    assert cat.path == folder / "data_catalog.yaml"
    assert cat.root == folder
    assert cat.derived_path == folder / "derived.zarr"


def test_data_root_expands_home(folder, tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    (folder / "raw").rename(home / "raw")
    (folder / "store.zarr").rename(home / "store.zarr")
    data = catalog_dict()
    data["data_root"] = "~"
    cat = open_catalog(write_yaml(folder, data))
    assert cat.root == home
    assert cat.store_path == home / "store.zarr"


@pytest.mark.parametrize("set_var", [False, True])
def test_data_root_expands_variables_with_default(folder, tmp_path_factory, monkeypatch, set_var):
    other = tmp_path_factory.mktemp("elsewhere")
    if set_var:
        monkeypatch.setenv("CARDIOLAB_TEST_ROOT", str(other))
        (folder / "raw").rename(other / "raw")
        (folder / "store.zarr").rename(other / "store.zarr")
    else:
        monkeypatch.delenv("CARDIOLAB_TEST_ROOT", raising=False)
    data = catalog_dict()
    data["data_root"] = "${CARDIOLAB_TEST_ROOT:-.}"
    cat = open_catalog(write_yaml(folder, data))
    assert cat.root == (other if set_var else folder)
    assert cat.resolve("raw/S02_FD10") == cat.root / "raw" / "S02_FD10"


def test_unset_variable_without_default_is_an_error(folder, monkeypatch):
    monkeypatch.delenv("CARDIOLAB_TEST_UNSET", raising=False)
    data = catalog_dict()
    data["data_root"] = "${CARDIOLAB_TEST_UNSET}/data"
    err = catalog_error(write_yaml(folder, data), check_files=False)
    assert err.entry == "data_root"
    assert "'CARDIOLAB_TEST_UNSET' is not set" in str(err)


def test_urls_are_kept_and_not_checked(folder):
    data = catalog_dict()
    data["data_root"] = "s3://bucket/campaign/"
    data["sessions"][5]["files"][0]["path"] = "memory://elsewhere/S02_FD10"
    cat = open_catalog(write_yaml(folder, data))  # nothing exists there: not checked
    assert cat.root == "s3://bucket/campaign"
    assert cat.store_path == "s3://bucket/campaign/store.zarr"
    assert cat.derived_path == "s3://bucket/campaign/derived.zarr"
    assert cat.resolve("raw/S02_R+6h.edf") == "s3://bucket/campaign/raw/S02_R+6h.edf"
    assert cat.resolve(data["sessions"][5]["files"][0]["path"]) == "memory://elsewhere/S02_FD10"


# --- opening sessions (lazy) ------------------------------------------------------------


def _is_lazy(node):
    for group in ("ecg", "abp", "ldf", "doppler"):
        if group in node.children:
            for var in node[group].ds.data_vars.values():
                if not isinstance(var.data, da.Array):
                    return False
    return True


def test_open_session_from_the_store_is_lazy(store_campaign):
    cat = open_catalog(store_campaign)
    node = cat.open_session("S01", "FD5")
    assert _is_lazy(node)
    assert set(node.children) == {"ecg", "abp", "doppler", "protocol"}
    assert node.attrs["subject"] == "S01"
    assert node.attrs["session"] == "FD5"
    assert node.attrs["phase"] == "in"
    assert node.attrs["day"] == 5.0
    assert node.attrs["campaign"] == "test-campaign"
    # the catalog's protocol replaces the file's
    assert node.attrs["protocol"] == "supine-stand"
    assert node.attrs["posture"] == "supine"
    assert list(node["protocol"].ds["epoch"].values) == ["supine", "stand"]
    np.testing.assert_allclose(node["protocol"].ds["stop"].values, [5.0, 10.0])
    with pytest.raises(CatalogError, match="no session S01 FD99"):
        cat.open_session("S01", "FD99")


def test_file_protocol_is_kept_without_a_catalog_protocol(store_campaign, tmp_path):
    data = yaml.safe_load(store_campaign.read_text())
    data["protocols"] = {}
    data["store"] = str(store_campaign.parent / "store.zarr")
    data["data_roots"] = [str(store_campaign.parent)]  # the store lies in another folder
    cat = open_catalog(write_yaml(tmp_path, data))
    node = cat.open_session("S02", "L-60")
    assert node.attrs["protocol"] == "file-protocol"
    assert node.attrs["posture"] == "seated"
    assert list(node["protocol"].ds["epoch"].values) == ["file"]
    assert cat.sessions["protocol"].isna().all()


def test_open_campaign_is_lazy_and_opens_the_store_once(store_campaign, monkeypatch):
    calls = []
    original = cardiolab.io.native.open_campaign_store

    def counting(path, **kwargs):
        calls.append(path)
        return original(path, **kwargs)

    monkeypatch.setattr(cardiolab.io, "open_campaign_store", counting)
    monkeypatch.setattr(cardiolab.io.native, "open_campaign_store", counting)
    cat = open_catalog(store_campaign)
    tree = cat.open_campaign()
    assert len(calls) == 1
    assert tree.attrs == {
        "campaign": "test-campaign",
        "kind": "spaceflight",
        "catalog": str(store_campaign),
    }
    assert tree["S01"].attrs == {"sex": "F", "age_band": "30-39"}
    assert sorted((s, ses) for s, ses, _ in schema.iter_sessions(tree)) == sorted(STORE_SESSIONS)
    for _, _, node in schema.iter_sessions(tree):
        assert _is_lazy(node)
    schema.validate_campaign(tree)
    assert tree["S01/R+3"].attrs["phase"] == "post"


def test_files_of_a_session_are_merged(tmp_path):
    write_store(tmp_path / "other.zarr", [("X1", "L-1")])
    csv = write_csv(session_tree("S01", "R+1", groups=("ldf",)), tmp_path / "raw", "S01_R+1")
    data = catalog_dict()
    data["store"] = None
    data["sessions"] = [
        {
            "subject": "S01",
            "label": "R+1",
            "files": [
                {"path": "other.zarr", "format": "zarr", "group": "X1/L-1"},
                {
                    "path": csv["ldf"].relative_to(tmp_path).as_posix(),
                    "format": "csv",
                    "time_column": "time",
                    "channels": {"flux": {"group": "ldf", "units": "PU"}},
                },
            ],
        }
    ]
    cat = open_catalog(write_yaml(tmp_path, data))
    assert cat.sessions["formats"][0] == "csv,zarr"
    node = cat.open_session("S01", "R+1")
    assert set(node.children) == {"ecg", "abp", "doppler", "ldf", "protocol"}
    assert _is_lazy(node)
    assert node.attrs["subject"] == "S01" and node.attrs["session"] == "R+1"
    assert node.attrs["phase"] == "post" and node.attrs["day"] == 1.0
    np.testing.assert_allclose(
        node["ldf"].ds["flux"].values[:3], [100.125730, 99.867895, 100.640423], rtol=1e-5
    )


def test_two_files_giving_one_group_is_an_error(tmp_path):
    write_store(tmp_path / "other.zarr", [("S01", "R+1")])
    csv = write_csv(session_tree("S01", "R+1", groups=("ecg",)), tmp_path / "raw", "S01_R+1")
    data = catalog_dict()
    data["store"] = None
    data["sessions"] = [
        {
            "subject": "S01",
            "label": "R+1",
            "files": [
                {"path": "other.zarr", "format": "zarr"},
                {
                    "path": "raw/S01_R+1_ecg.csv",
                    "format": "csv",
                    "time_column": "time",
                    "channels": {"ecg": {"group": "ecg", "units": "mV"}},
                },
            ],
        }
    ]
    cat = open_catalog(write_yaml(tmp_path, data))
    with pytest.raises(SessionFormatError) as info:
        cat.open_session("S01", "R+1")
    msg = str(info.value)
    assert "session S01/R+1" in msg and "sessions[0] (S01 R+1)" in msg
    assert f"group 'ecg' comes from both {tmp_path / 'other.zarr'} and {csv['ecg']}" in msg


def _edf_session_through_the_catalog(tmp_path, channels):
    """An EDF+ file mapped channel by channel opens lazily, with the catalog's protocol."""
    from sessions import make_session

    (tmp_path / "raw").mkdir()
    cardiolab.io.write_edf(make_session(), tmp_path / "raw" / "S01_R+1.edf")
    data = catalog_dict()
    data["store"] = None
    data["sessions"] = [
        {
            "subject": "S01",
            "label": "R+1",
            "files": [{"path": "raw/S01_R+1.edf", "format": "edf", "channels": channels}],
        }
    ]
    cat = open_catalog(write_yaml(tmp_path, data))
    node = cat.open_session("S01", "R+1")
    assert _is_lazy(node)
    assert list(node["doppler"].ds["vessel"].values) == ["femoral", "mca"]
    assert list(node["protocol"].ds["epoch"].values) == ["supine", "stand"]
    np.testing.assert_allclose(node["protocol"].ds["stop"].values, [5.0, 10.0])
    return node


def test_edf_session_through_the_catalog(tmp_path):
    """Every group but respiration (see the test below)."""
    from sessions import EDF_CHANNELS

    channels = {k: v for k, v in EDF_CHANNELS.items() if v["group"] != "resp"}
    _edf_session_through_the_catalog(tmp_path, channels)


def test_edf_session_with_respiration_through_the_catalog(tmp_path):
    from sessions import EDF_CHANNELS

    node = _edf_session_through_the_catalog(tmp_path, EDF_CHANNELS)
    assert node["resp"].ds["resp"].attrs["units"] == "V"


def test_opening_computes_nothing(store_campaign):
    """No dask graph is executed while a campaign is opened."""
    from dask.callbacks import Callback

    started = []
    with Callback(start=lambda dsk: started.append(len(dsk))):
        tree = open_catalog(store_campaign).open_campaign()
        _ = tree["S01/L-60/ecg"].ds["ecg"].chunks
    assert started == []
    with Callback(start=lambda dsk: started.append(len(dsk))):
        float(tree["S01/L-60/ecg"].ds["ecg"].mean())
    assert started  # the spy does see a computation


def test_session_missing_from_the_store(store_campaign, tmp_path):
    data = yaml.safe_load(store_campaign.read_text())
    data["store"] = str(store_campaign.parent / "store.zarr")
    data["data_roots"] = [str(store_campaign.parent)]
    data["sessions"].append({"subject": "S02", "label": "R+30"})
    cat = open_catalog(write_yaml(tmp_path, data))
    with pytest.raises(SessionFormatError) as info:
        cat.open_session("S02", "R+30")
    assert "session S02/R+30" in str(info.value) and "sessions[4] (S02 R+30)" in str(info.value)
    assert "no session group 'S02/R+30'" in str(info.value)
    with pytest.raises(SessionFormatError, match=r"sessions\[4\] \(S02 R\+30\)"):
        cat.open_campaign()


def test_zarr_store_at_a_memory_url(tmp_path):
    url = "memory://cardiolab-test-catalog/store.zarr"
    tree = xr.DataTree()
    tree["S01/L-60"] = session_tree("S01", "L-60")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(url, mode="w")
    data = catalog_dict()
    data["store"] = url
    data["sessions"] = [{"subject": "S01", "label": "L-60"}]
    cat = open_catalog(write_yaml(tmp_path, data))
    assert cat.store_path == url
    node = cat.open_session("S01", "L-60")
    assert _is_lazy(node)
    assert node["ecg"].ds["ecg"].attrs["units"] == "mV"


# --- write_catalog ----------------------------------------------------------------------


def test_write_catalog_round_trip_keeps_key_order(folder):
    data = catalog_dict()
    data["subjects"][0]["age_band"] = np.str_("30-39")
    data["protocols"]["supine-stand"]["epochs"][1]["stop"] = np.float64(10.0)
    path = write_catalog(data, folder / "data_catalog.yaml", header="made by a test")
    text = path.read_text()
    assert text.startswith("# made by a test\nversion: 1\ncampaign:\n")
    keys = [line.split(":")[0] for line in text.splitlines() if line[:1].isalpha()]
    assert keys == [
        "version", "campaign", "derived", "store", "protocols", "subjects", "sessions",
    ]  # fmt: skip
    cat = open_catalog(path)
    assert len(cat.sessions) == 6
    assert cat.protocol_epochs("supine-stand")[1] == ("stand", 5.0, 10.0)


def test_write_catalog_refuses_to_overwrite(folder):
    path = write_catalog(catalog_dict(), folder / "c.yaml")
    assert path.read_text().startswith("# cardiolab campaign catalog")
    with pytest.raises(CatalogError, match="refusing to overwrite"):
        write_catalog(catalog_dict(), path)
    data = catalog_dict()
    data["campaign"]["name"] = "renamed"
    write_catalog(data, path, overwrite=True)
    assert open_catalog(path).campaign.name == "renamed"


def test_write_catalog_validates_before_writing(tmp_path):
    data = catalog_dict()
    with pytest.raises(CatalogError, match="file not found"):
        write_catalog(data, tmp_path / "c.yaml")  # the raw files are not there
    assert not (tmp_path / "c.yaml").exists()
    write_catalog(data, tmp_path / "c.yaml", check_files=False)
    bad = copy.deepcopy(data)
    bad["sessions"][0]["label"] = "later"
    with pytest.raises(CatalogError, match="sessions\\[0\\] \\(S01 later\\): label"):
        write_catalog(bad, tmp_path / "d.yaml", check_files=False)
    assert not (tmp_path / "d.yaml").exists()
    write_catalog(bad, tmp_path / "d.yaml", validate=False)
    assert (tmp_path / "d.yaml").exists()


def test_repo_demo_catalog_matches_the_simulator():
    """The repository's data_catalog.yaml is the demo campaign the simulator writes."""
    from cardiolab.simulate.campaign import DEFAULT_SCHEDULES, campaign_catalog, subject_metadata

    repo = Path(__file__).resolve().parents[1] / "data_catalog.yaml"
    cat = open_catalog(repo, check_files=False)
    data = yaml.safe_load(repo.read_text())
    subjects = [f"S{i + 1:02d}" for i in range(8)]
    expected = campaign_catalog(
        "spaceflight",
        subjects,
        {s: subject_metadata(0, i) for i, s in enumerate(subjects)},
        {s: DEFAULT_SCHEDULES["spaceflight"] for s in subjects},
        [("supine", 0.0, 300.0), ("stand", 300.0, 600.0)],
        25,
    )
    data.pop("data_root")
    assert data == expected
    assert cat.sessions.shape == (80, 9)
