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
    # one subject: no mixed model can be fitted; each failure is recorded, not raised,
    # named in the summary with its reason, and the command says it fitted nothing
    cat = str(path / "data_catalog.yaml")
    assert main(["fit", cat, "--workers", "0", "--quiet", "--features", "hr"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "1 features, 6 models" in out and "6 could not be fitted" in out
    assert "nothing could be fitted: none of the 6 models" in captured.err
    from cardiolab.stats import read_results

    results = read_results(path / "derived.zarr")
    assert len(results) == 6 and results["error"].str.contains("subject").all()
    failed = out.split("could not be fitted:\n", 1)[1]
    for row in results.itertuples():
        assert f"hr/{row.epoch}" in failed and row.model in failed
    assert "1 subject" in failed
    # the demo's fit step says so too (sessions already processed: cached)
    demo = ["demo", "--path", str(path), "--quiet", "--no-serve", "--workers", "0"]
    assert main(demo) == 1
    captured = capsys.readouterr()
    assert "0 processed, 10 unchanged (cached)" in captured.out
    assert "cardiolab demo: nothing could be fitted" in captured.err


def test_fit_exit_status_and_bad_input(tmp_path, monkeypatch, capsys):
    """``cardiolab fit`` exits 0 when models were fitted, 1 when there was nothing to
    fit, 2 with one clear line (no traceback) for a feature or a column the table does
    not have."""
    import cardiolab.pipeline
    from cardiolab.stats.design import simulate_feature_table

    path = tmp_path / "demo"
    assert main(["demo", "--path", str(path), "--subjects", "1", "--quiet", "--no-process"]) == 0
    cat = str(path / "data_catalog.yaml")
    table = simulate_feature_table(
        ["L-30", "L-10", "R+0", "R+3", "R+10"],
        5,
        pre=62.0,
        A=0.0,
        D=8.0,
        tau_r=3.0,
        tau_a=5.0,
        between_sd=5.0,
        residual_sd=2.0,
        feature="hr",
        units="bpm",
        seed=2,
    )
    tables = {"now": table}
    monkeypatch.setattr(cardiolab.pipeline, "features_table", lambda catalog: tables["now"])
    capsys.readouterr()
    assert main(["fit", cat, "--workers", "0", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "1 features, 2 models" in captured.out and "0 could not be fitted" in captured.out
    assert "nothing" not in captured.err

    tables["now"] = table.drop(columns="hr").assign(n_beats=300)  # only a count column
    assert main(["fit", cat, "--workers", "0", "--quiet"]) == 1
    assert "nothing to fit" in capsys.readouterr().err

    tables["now"] = table
    assert main(["fit", cat, "--workers", "0", "--quiet", "--features", "hrr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cardiolab fit: error: features table: no feature ['hrr']")
    assert "close names: ['hr']" in err and "Traceback" not in err

    tables["now"] = table.drop(columns="day")
    assert main(["fit", cat, "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['day']" in err and "Traceback" not in err


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


def test_demo_force_generates_again_with_the_seed_given(tmp_path, capsys):
    """``cardiolab demo --force --seed S`` replaces the campaign in the folder (the one
    home of the demo's making, :func:`cardiolab.demo.prepare_demo`, used by the command,
    ``cardiolab lab`` and ``demo_catalog``)."""
    import hashlib

    path = tmp_path / "demo"
    base = ["demo", "--path", str(path), "--subjects", "1", "--quiet", "--no-process"]

    def truth_digest():
        files = sorted(p for p in (path / "truth").rglob("*") if p.is_file())
        assert files
        return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()

    assert main(base + ["--seed", "1"]) == 0
    first = truth_digest()
    assert main(base + ["--seed", "2"]) == 0  # kept: no --force
    assert "already at" in capsys.readouterr().out and truth_digest() == first
    assert main(base + ["--seed", "2", "--force"]) == 0
    assert "generating the demo campaign (1 subjects)" in capsys.readouterr().out
    second = truth_digest()
    assert second != first
    assert main(base + ["--seed", "1", "--force"]) == 0
    assert truth_digest() == first  # the seed, not the moment, makes the campaign


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


def test_storage_options_from_pairs():
    from cardiolab.storage_options import storage_options_from_pairs

    pairs = [
        "anon=true",
        "client_kwargs.endpoint_url=http://127.0.0.1:5555",
        "client_kwargs.region_name=eu-west-1",
        "config_kwargs.retries.max_attempts=3",
        'key="007"',
        "secret=a=b c",
        "anon=false",  # a later pair wins
    ]
    assert storage_options_from_pairs(pairs) == {
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:5555", "region_name": "eu-west-1"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
        "key": "007",
        "secret": "a=b c",
    }


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        (["anon"], "KEY=VALUE"),
        (["=1"], "KEY=VALUE"),
        (["client_kwargs..x=1"], "empty part"),
        (["client_kwargs=1", "client_kwargs.region_name=x"], "also given a value"),
        (["client_kwargs.region_name=x", "client_kwargs=1"], "parent of nested"),
    ],
)
def test_bad_storage_option_is_a_usage_error(pairs, words, capsys):
    argv = ["info", "catalog.yaml"]
    for pair in pairs:
        argv += ["--storage-option", pair]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("command", ["info", "validate", "process", "fit", "serve", "report"])
def test_storage_options_reach_open_catalog(command, monkeypatch, capsys):
    import cardiolab.catalog
    from cardiolab.errors import CatalogError

    seen = []

    def recording(path, **kwargs):
        seen.append((str(path), kwargs))
        raise CatalogError("stopped here by the test", file=path)

    monkeypatch.setattr(cardiolab.catalog, "open_catalog", recording)
    argv = [command, "s3://bucket/tg2/data_catalog.yaml", "--storage-option", "anon=true"]
    argv += ["--storage-option", "client_kwargs.endpoint_url=http://127.0.0.1:5555"]
    assert main(argv) == 2
    assert seen == [
        (
            "s3://bucket/tg2/data_catalog.yaml",
            {
                "storage_options": {
                    "anon": True,
                    "client_kwargs": {"endpoint_url": "http://127.0.0.1:5555"},
                }
            },
        )
    ]
    assert "stopped here by the test" in capsys.readouterr().err
