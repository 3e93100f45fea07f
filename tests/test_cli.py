"""The command line: demo, info, validate, and clean errors."""

import pytest

from cardiolab.cli import main


def test_demo_info_validate(tmp_path, capsys):
    path = tmp_path / "demo"
    assert main(["demo", "--path", str(path), "--subjects", "1", "--quiet", "--no-process"]) == 0
    out = capsys.readouterr().out
    assert f"catalog: {path / 'data_catalog.yaml'}" in out
    assert (path / "campaign.zarr").is_dir()
    # a second call keeps what is there
    assert main(["demo", "--path", str(path), "--subjects", "1", "--quiet", "--no-process"]) == 0
    assert "already at" in capsys.readouterr().out
    assert main(["info", str(path / "data_catalog.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1 subjects x 10 session labels, 10 sessions" in out
    assert "L-60 L-30 FD5 FD15 FD25 R+0 R+1 R+3 R+10 R+30" in out
    assert main(["validate", str(path / "data_catalog.yaml")]) == 0
    assert "10 of 10 sessions follow the data model" in capsys.readouterr().out
    assert main(["process", str(path / "data_catalog.yaml"), "--workers", "0", "--quiet"]) == 0
    assert "10 processed, 0 unchanged (cached), 0 failed" in capsys.readouterr().out
    assert main(["process", str(path / "data_catalog.yaml"), "--workers", "0", "--quiet"]) == 0
    assert "0 processed, 10 unchanged (cached), 0 failed" in capsys.readouterr().out


def test_bad_catalog_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "cat.yaml"
    bad.write_text("campaign: {name: x, kind: lunar}\n")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cardiolab info: error: ")
    assert str(bad) in err and "campaign: kind" in err
    assert "Traceback" not in err


def test_demo_directory_from_environment(tmp_path, monkeypatch):
    from cardiolab.cli import default_demo_dir

    monkeypatch.setenv("CARDIOLAB_DEMO_DIR", str(tmp_path / "x"))
    assert default_demo_dir() == tmp_path / "x"
    monkeypatch.delenv("CARDIOLAB_DEMO_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_demo_dir() == tmp_path / "cache" / "cardiolab" / "demo"


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "cardiolab 0." in capsys.readouterr().out
