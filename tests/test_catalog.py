"""Catalog: validation errors name the file, entry and field; lazy opening."""

import copy

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import yaml
from sessions import EDF_CHANNELS, make_session

from cardiolab import io
from cardiolab.catalog import open_catalog, write_catalog
from cardiolab.errors import CatalogError, SessionFormatError

BASE = {
    "version": 1,
    "campaign": {
        "name": "test",
        "kind": "spaceflight",
        "launch": "2016-09-15",
        "landing": "2016-11-18",
    },
    "derived": "derived.zarr",
    "store": "campaign.zarr",
    "protocols": {
        "supine-stand": {
            "posture": "supine",
            "epochs": [
                {"label": "supine", "start": 0, "stop": 4},
                {"label": "stand", "start": 4, "stop": 8},
            ],
        }
    },
    "default_protocol": "supine-stand",
    "subjects": [
        {"code": "S01", "sex": "F", "age_band": "30-39"},
        {"code": "S02", "sex": "M", "age_band": "40-49"},
    ],
    "sessions": [
        {"subject": "S01", "label": "L-30"},
        {
            "subject": "S01",
            "label": "R+1",
            "files": [{"path": "raw/S01_R+1.edf", "format": "edf", "channels": EDF_CHANNELS}],
        },
        {"subject": "S02", "label": "R+6h"},
    ],
}


@pytest.fixture
def campaign_dir(tmp_path):
    node = make_session(attrs=False)
    tree = xr.DataTree.from_dict({"S01/L-30": node, "S02/R+6h": node})
    io.write_campaign_zarr(tree, tmp_path / "campaign.zarr")
    (tmp_path / "raw").mkdir()
    io.write_edf(make_session(), tmp_path / "raw" / "S01_R+1.edf")
    return tmp_path


def write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_of(tmp, data, name="cat.yaml"):
    path = write(tmp / name, data)
    with pytest.raises(CatalogError) as err:
        open_catalog(path)
    return str(err.value), err.value


def test_good_catalog(campaign_dir):
    cat = open_catalog(write(campaign_dir / "cat.yaml", BASE))
    s = cat.sessions
    assert list(s["session"]) == ["L-30", "R+1", "R+6h"]
    assert list(s["phase"]) == ["pre", "post", "post"]
    np.testing.assert_allclose(s["day"], [-30, 1, 0.25])
    assert list(s["formats"]) == ["zarr", "edf", "zarr"]
    assert cat.protocol_epochs("supine-stand") == [("supine", 0, 4), ("stand", 4, 8)]
    m = cat.matrix()
    assert list(m.columns) == ["L-30", "R+6h", "R+1"]
    assert m.loc["S01"].tolist() == [True, False, True]
    assert "2 subjects, 3 sessions" in repr(cat)


def test_open_session_is_lazy_and_valid(campaign_dir):
    cat = open_catalog(write(campaign_dir / "cat.yaml", BASE))
    node = cat.open_session("S01", "L-30")
    assert node.attrs["phase"] == "pre" and node.attrs["day"] == -30
    assert node.attrs["posture"] == "supine" and node.attrs["campaign"] == "test"
    for group, var in [("ecg", "ecg"), ("abp", "abp"), ("ldf", "flux"), ("doppler", "velocity")]:
        assert isinstance(node[group].ds[var].data, da.Array)
    edf = cat.open_session("S01", "R+1")
    assert isinstance(edf["ecg"].ds["ecg"].data, da.Array)
    assert list(edf["protocol"].ds["epoch"].values) == ["supine", "stand"]
    tree = cat.open_campaign()
    assert sorted(tree.children) == ["S01", "S02"]
    assert tree["S02/R+6h"].attrs["day"] == 0.25
    assert tree.attrs["kind"] == "spaceflight"
    with pytest.raises(CatalogError, match="no session S03 L-1"):
        cat.open_session("S03", "L-1")


def test_opening_reads_no_sample(campaign_dir, monkeypatch):
    """Opening the whole campaign computes no dask array."""
    cat = open_catalog(write(campaign_dir / "cat.yaml", BASE))
    import dask

    computed = []
    real = dask.base.compute

    def spy(*a, **k):
        computed.append(a)
        return real(*a, **k)

    monkeypatch.setattr(dask.base, "compute", spy)
    tree = cat.open_campaign()
    assert computed == []
    assert tree["S01/L-30/ecg"].ds["ecg"].chunks is not None


def test_paths_relative_home_and_env(campaign_dir, monkeypatch, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    data = copy.deepcopy(BASE)
    data["data_root"] = "${CARDIOLAB_TEST_ROOT:-/nonexistent}"
    monkeypatch.setenv("CARDIOLAB_TEST_ROOT", str(campaign_dir))
    cat = open_catalog(write(other / "cat.yaml", data))
    assert cat.store_path == campaign_dir / "campaign.zarr"
    assert cat.derived_path == campaign_dir / "derived.zarr"
    monkeypatch.setenv("HOME", str(campaign_dir.parent))
    data["data_root"] = f"~/{campaign_dir.name}"
    cat = open_catalog(write(other / "cat2.yaml", data))
    assert cat.store_path == campaign_dir / "campaign.zarr"


def test_urls_are_accepted_unchecked(campaign_dir):
    data = copy.deepcopy(BASE)
    data["store"] = "s3://bucket/campaign.zarr"
    data["derived"] = "s3://bucket/derived.zarr"
    cat = open_catalog(write(campaign_dir / "cat.yaml", data))
    assert cat.store_path == "s3://bucket/campaign.zarr"


def test_memory_url_store(campaign_dir):
    import fsspec

    mapper = fsspec.get_mapper("memory://cardiolab-test/campaign.zarr")
    tree = xr.DataTree.from_dict({"S01/L-30": make_session(attrs=False)})
    tree.to_zarr(mapper, mode="w", consolidated=True)
    data = copy.deepcopy(BASE)
    data["store"] = "memory://cardiolab-test/campaign.zarr"
    data["sessions"] = [{"subject": "S01", "label": "L-30"}]
    cat = open_catalog(write(campaign_dir / "cat.yaml", data))
    node = cat.open_session("S01", "L-30")
    assert node["abp"].ds.sizes["time"] == 1600


def mutate(fn):
    data = copy.deepcopy(BASE)
    fn(data)
    return data


@pytest.mark.parametrize(
    ("change", "entry", "field", "message"),
    [
        (
            lambda d: d["sessions"].append({"subject": "S01", "label": "L-30"}),
            "sessions[3] (S01 L-30)",
            "label",
            "duplicate session",
        ),
        (
            lambda d: d["sessions"].append({"subject": "S09", "label": "L-30"}),
            "sessions[3] (S09 L-30)",
            "subject",
            "not declared",
        ),
        (
            lambda d: d["subjects"].append({"code": "S01"}),
            "subjects[2] (S01)",
            "code",
            "duplicate subject code",
        ),
        (
            lambda d: d["sessions"][1]["files"][0].update(path="raw/missing.edf"),
            "sessions[1] (S01 R+1)",
            "files[0].path",
            "file not found",
        ),
        (
            lambda d: d["sessions"].append({"subject": "S02", "label": "D+3"}),
            "sessions[3] (S02 D+3)",
            "label",
            "unknown session label 'D+3'",
        ),
        (
            lambda d: d["sessions"][1]["files"][0]["channels"]["ECG"].update(units="furlong"),
            "sessions[1] (S01 R+1)",
            "files[0].channels.ECG",
            "unknown unit 'furlong'",
        ),
        (
            lambda d: d["sessions"][1]["files"][0]["channels"]["ABP"].update(group="ecg"),
            "sessions[1] (S01 R+1)",
            "files[0].channels.ABP",
            "channel mapped twice",
        ),
        (
            lambda d: d["sessions"][1]["files"][0]["channels"]["Doppler mca"].pop("vessel"),
            "sessions[1] (S01 R+1)",
            "files[0].channels.Doppler mca",
            "needs a 'vessel'",
        ),
        (
            lambda d: d["sessions"][1]["files"][0].update(format="mat"),
            "sessions[1] (S01 R+1)",
            "files[0].format",
            "Input should be",
        ),
        (
            lambda d: d["sessions"][0].update(protocol="tilt"),
            "sessions[0] (S01 L-30)",
            "protocol",
            "unknown protocol 'tilt'",
        ),
        (
            lambda d: d["protocols"]["supine-stand"]["epochs"][1].update(start=3),
            "protocols.supine-stand",
            None,
            "overlap",
        ),
        (
            lambda d: d["protocols"]["supine-stand"]["epochs"][1].update(stop=4),
            "protocols.supine-stand",
            None,
            "stop 4 s <= start 4 s",
        ),
        (
            lambda d: d["sessions"].append({"subject": "S02", "label": "HDT21"}),
            "sessions[3] (S02 HDT21)",
            "label",
            "bedrest label",
        ),
        (
            lambda d: d["subjects"][0].update(sex="female"),
            "subjects[0] (S01)",
            "sex",
            "Input should be",
        ),
        (
            lambda d: d["subjects"][1].update(age_band="forties"),
            "subjects[1] (S02)",
            "age_band",
            "age band 'forties'",
        ),
        (
            lambda d: d["subjects"][1].update(code="Jane Doe"),
            "subjects[1] (Jane Doe)",
            "code",
            "pseudonymous",
        ),
        (
            lambda d: d["sessions"][0].update(lable="x"),
            "sessions[0] (S01 L-30)",
            "lable",
            "unknown key",
        ),
        (lambda d: d.pop("derived"), "derived", None, "required field is missing"),
        (lambda d: d.update(store="nowhere.zarr"), "store", None, "native store not found"),
    ],
)
def test_each_error_names_file_entry_and_field(campaign_dir, change, entry, field, message):
    text, err = error_of(campaign_dir, mutate(change))
    assert str(campaign_dir / "cat.yaml") in text
    assert entry in text
    if field:
        assert field in text
    assert message in text


def test_bedrest_catalog_refuses_flight_labels(campaign_dir):
    data = mutate(lambda d: d["campaign"].update(kind="bedrest"))
    text, _ = error_of(campaign_dir, data)
    assert "'launch'/'landing'" in text
    data["campaign"] = {"name": "br", "kind": "bedrest", "start": "2020-01-01"}
    data["sessions"] = [{"subject": "S01", "label": "FD5"}]
    text, _ = error_of(campaign_dir, data)
    assert "sessions[0] (S01 FD5): label" in text and "spaceflight label" in text


def test_several_errors_are_listed_together(campaign_dir):
    data = mutate(
        lambda d: (
            d["subjects"][0].update(sex="?"),
            d["sessions"].append({"subject": "S02", "label": "Q+2"}),
        )
    )
    text, err = error_of(campaign_dir, data)
    assert "2 problems" in text
    assert "subjects[0] (S01): sex" in text
    assert "sessions[3] (S02 Q+2): label" in text
    data = mutate(
        lambda d: (
            d["sessions"].append({"subject": "S07", "label": "R+2"}),
            d["sessions"].append({"subject": "S01", "label": "L-30"}),
        )
    )
    text, err = error_of(campaign_dir, data)
    assert "2 problems" in text and "not declared" in text and "duplicate session" in text


def test_yaml_syntax_error_has_a_line(campaign_dir):
    path = campaign_dir / "cat.yaml"
    path.write_text("version: 1\ncampaign: {name: x\nsubjects: []\n")
    with pytest.raises(CatalogError, match=r"cat.yaml: YAML error at line \d+"):
        open_catalog(path)


def test_duplicate_yaml_key_is_refused(campaign_dir):
    path = campaign_dir / "cat.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False)
    text = text.replace("      ECG:\n", "      ECG:\n        group: ecg\n      ECG:\n", 1)
    path.write_text(text)
    with pytest.raises(CatalogError, match="duplicate key 'ECG'"):
        open_catalog(path)


@pytest.mark.parametrize("content", ["", "- a\n- b\n", "just text\n"])
def test_not_a_catalog(campaign_dir, content):
    path = campaign_dir / "cat.yaml"
    path.write_text(content)
    with pytest.raises(
        CatalogError, match=r"cat.yaml: (the catalog is empty|a catalog is a mapping)"
    ):
        open_catalog(path)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="catalog file not found"):
        open_catalog(tmp_path / "nope.yaml")


def test_session_missing_from_store(campaign_dir):
    data = mutate(lambda d: d["sessions"].append({"subject": "S02", "label": "R+30"}))
    cat = open_catalog(write(campaign_dir / "cat.yaml", data))
    with pytest.raises(SessionFormatError, match=r"no session S02/R\+30"):
        cat.open_session("S02", "R+30")


def test_write_catalog_validates_and_refuses_overwrite(campaign_dir):
    path = write_catalog(BASE, campaign_dir / "written.yaml")
    assert open_catalog(path).sessions.shape[0] == 3
    with pytest.raises(CatalogError, match="refusing to overwrite"):
        write_catalog(BASE, path)


def test_repo_demo_catalog_matches_the_simulator():
    """The repository's data_catalog.yaml is the demo campaign the simulator writes."""
    from pathlib import Path

    from cardiolab.simulate.campaign import (
        DEFAULT_SCHEDULES,
        campaign_catalog,
        subject_metadata,
    )

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
