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
    # one subject: no mixed model can be fitted; each failure is recorded, not raised
    cat = str(path / "data_catalog.yaml")
    assert main(["fit", cat, "--workers", "0", "--quiet", "--features", "hr"]) == 0
    assert "1 features, 6 models" in capsys.readouterr().out
    from cardiolab.stats import read_results

    results = read_results(path / "derived.zarr")
    assert len(results) == 6 and results["error"].str.contains("subject").all()


def test_serve_refuses_the_network_without_a_login(tmp_path, capsys):
    path = tmp_path / "demo"
    assert main(["demo", "--path", str(path), "--subjects", "1", "--quiet", "--no-process"]) == 0
    capsys.readouterr()
    cat = str(path / "data_catalog.yaml")
    assert main(["serve", cat, "--address", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve" in err and "--credentials" in err


def test_passwd_writes_a_hash_not_the_password(tmp_path, monkeypatch, capsys):
    import json

    from cardiolab.dashboards.auth import load_credentials, verify_password

    monkeypatch.setenv("CARDIOLAB_PASSWORD", "s3cret-pass")
    creds = tmp_path / "reviewers.json"
    assert main(["passwd", str(creds), "alice"]) == 0
    assert main(["passwd", str(creds), "bob"]) == 0
    text = creds.read_text()
    assert "s3cret-pass" not in text
    users = load_credentials(creds)
    assert set(users) == {"alice", "bob"}
    assert verify_password("s3cret-pass", users["alice"])
    assert not verify_password("s3cret-pas", users["alice"])
    assert users["alice"] != users["bob"]  # salted
    assert (creds.stat().st_mode & 0o777) == 0o600
    creds.write_text(json.dumps({"eve": "plain"}))
    from cardiolab.dashboards.auth import AuthError

    with pytest.raises(AuthError, match="not an scrypt hash"):
        load_credentials(creds)


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


def test_readme_feature_table_is_the_registry():
    """The README's feature table is ``cardiolab features --markdown``: one row per
    registered feature with its outputs (units) and inputs, in computation order."""
    import re
    from pathlib import Path

    from cardiolab.features.registry import feature_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Features", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| (.*) \| (.*) \|$", section, flags=re.M)
    table = feature_table()
    assert [r[0] for r in rows] == table["feature"].tolist()
    for (name, outputs, inputs), want in zip(rows, table.itertuples(), strict=True):
        assert outputs == want.outputs, name
        assert inputs == want.inputs, name


def test_features_command_lists_parameters_and_sources(capsys):
    from cardiolab.cli import main

    assert main(["features"]) == 0
    out = capsys.readouterr().out
    assert "cerebral_autoregulation\n  outputs: <vessel>_tfa_gain_vlf (cm/s/mmHg)" in out
    assert "min_r=0.85" in out and "Claassen" in out
