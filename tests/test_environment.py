"""environment.yml mirrors pyproject.toml's dependencies and their lower bounds."""

import re
import tomllib
from pathlib import Path

import yaml

import cardiolab

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_NAMES = {"pyyaml": "pyyaml"}


def _split(req):
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]+\])?\s*(.*)$", req.strip())
    name, extras, spec = m.group(1).lower(), m.group(2), m.group(3).replace(" ", "")
    return name, extras, spec


def pyproject_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {}
    for req in meta["dependencies"] + meta["optional-dependencies"]["dev"]:
        name, extras, spec = _split(req)
        reqs[CONDA_NAMES.get(name, name)] = spec
        if extras == "[distributed]":
            reqs["distributed"] = spec
    reqs["python"] = meta["requires-python"]
    return reqs


def environment_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict) or dep == "pip":
            continue
        name, _, spec = _split(dep)
        reqs[name] = spec
    return reqs


def test_environment_mirrors_pyproject():
    py = pyproject_requirements()
    env = environment_requirements()
    assert env == py


def test_every_dependency_has_a_lower_bound():
    for name, spec in pyproject_requirements().items():
        assert spec.startswith(">="), f"{name} has no lower bound: {spec!r}"


def test_version():
    assert re.match(r"^\d+\.\d+\.\d+", cardiolab.__version__)
