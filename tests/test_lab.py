"""``cardiolab lab``: the jupyter command it builds, the demo it prepares, its errors.

These tests stop at the launcher (:func:`cardiolab.lab.launch` is replaced); the browser
test ``tests/browser/test_lab_notebook.py`` starts the real JupyterLab.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cardiolab.demo
import cardiolab.lab
from cardiolab.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launched(monkeypatch):
    """Record what ``cardiolab lab`` would prepare and run, without running it."""
    calls = {"demo": [], "launch": []}

    def fake_demo_catalog(path=None, **kwargs):
        calls["demo"].append((Path(path), kwargs))
        return Path(path) / "data_catalog.yaml"

    def fake_launch(command, env):
        calls["launch"].append((list(command), dict(env)))
        return 0

    monkeypatch.setattr(cardiolab.demo, "demo_catalog", fake_demo_catalog)
    monkeypatch.setattr(cardiolab.lab, "launch", fake_launch)
    return calls


def test_lab_help_names_the_setting_and_options():
    run = subprocess.run(
        [sys.executable, "-m", "cardiolab.cli", "lab", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())  # argparse wraps lines
    for option in ("--path", "--notebook-dir", "--port", "--no-browser", "--workers"):
        assert option in text
    assert "CARDIOLAB_DEMO_DIR" in text and "127.0.0.1" in text


def test_lab_defaults_loopback_the_notebooks_and_the_users_demo(tmp_path, monkeypatch, launched):
    monkeypatch.setenv("CARDIOLAB_DEMO_DIR", str(tmp_path / "demo"))
    assert main(["lab", "--quiet"]) == 0
    [(folder, kwargs)] = launched["demo"]
    assert folder == tmp_path / "demo"
    assert kwargs == {"workers": None, "progress": False}
    [(command, env)] = launched["launch"]
    assert command == [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={ROOT / 'notebooks'}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=8888",
    ]
    assert env["CARDIOLAB_DEMO_DIR"] == str(tmp_path / "demo")


def test_lab_options_and_jupyter_args_pass_through(tmp_path, monkeypatch, launched):
    monkeypatch.delenv("CARDIOLAB_DEMO_DIR", raising=False)
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    monkeypatch.chdir(tmp_path)
    argv = ["lab", "--path", "here/demo", "--notebook-dir", str(notebooks), "--port", "9123",
            "--no-browser", "--workers", "0",
            "--", "--IdentityProvider.token=abc", "--debug"]  # fmt: skip
    assert main(argv) == 0
    [(folder, kwargs)] = launched["demo"]
    assert folder == tmp_path / "here" / "demo" and kwargs["workers"] == 0
    [(command, env)] = launched["launch"]
    assert command[3:] == [
        f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=9123",
        "--no-browser",
        "--IdentityProvider.token=abc",
        "--debug",
    ]
    # the kernels get the demo's folder as an absolute path, whatever their working folder
    assert env["CARDIOLAB_DEMO_DIR"] == str(tmp_path / "here" / "demo")
    assert "CARDIOLAB_DEMO_DIR" not in os.environ  # this process's environment is untouched


def test_lab_refuses_a_missing_notebook_folder_before_making_the_demo(tmp_path, capsys, launched):
    assert main(["lab", "--path", str(tmp_path), "--notebook-dir", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cardiolab lab: error: --notebook-dir ") and str(tmp_path / "no") in err
    assert "Traceback" not in err
    assert launched == {"demo": [], "launch": []}
