"""The curated notebooks are stored clean and get the demo the same way.

Every notebook in ``notebooks/`` must be stored without outputs or execution counts
(the diff of a notebook is then its source), must not install packages or shell out,
must load BokehJS and Panel from the kernel rather than a CDN (``inline=True``), and
must start with ``catalog = demo_catalog()``: no path argument, so that
``$CARDIOLAB_DEMO_DIR``, the one setting the notebooks read, decides where the demo
lives (the user's cache in normal use, the folder ``cardiolab lab`` prepared, or under
pytest the folder it names, else a throwaway one set by ``notebooks/conftest.py``), and
that first cell names the setting. The last tests run nbmake on a one-cell notebook to
check that its kernel really sees that folder.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {
    "01_explore_a_session.ipynb",
    "02_process_a_campaign_with_dask.ipynb",
    "03_adaptation_and_recovery_models.ipynb",
    "04_review_dashboard.ipynb",
}
#: The one setting that tells the notebooks where the demo is.
DEMO_SETTING = "CARDIOLAB_DEMO_DIR"
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
#: Lines a notebook must not have: shell escapes, package installs, downloads.
FORBIDDEN = re.compile(r"^\s*(!|%+\s*(pip|conda|mamba|sx|system)\b)|\bpip install\b", re.MULTILINE)


def _demo_call(source: str) -> list[str]:
    """Problems with how a first code cell gets the demo (empty list: fine)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [f"first code cell does not parse: {err}"]
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "cardiolab.demo"
        and any(alias.name == "demo_catalog" and alias.asname is None for alias in node.names)
        for node in ast.walk(tree)
    )
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "demo_catalog"
    ]
    problems = []
    if DEMO_SETTING not in source:
        problems.append(f"first code cell does not name the setting ${DEMO_SETTING}")
    if not imported:
        problems.append("first code cell does not import demo_catalog from cardiolab.demo")
    if not calls:
        problems.append("first code cell does not call demo_catalog()")
    for call in calls:
        if call.args or any(kw.arg in (None, "path") for kw in call.keywords):
            problems.append(
                "demo_catalog() is given a path: the demo folder must come from "
                "$CARDIOLAB_DEMO_DIR (the user's cache, or the test run's folder)"
            )
    assigned = any(
        isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and node.value in calls
        and any(isinstance(t, ast.Name) and t.id == "catalog" for t in node.targets)
        for node in ast.walk(tree)
    )
    if calls and not assigned:
        problems.append("first code cell does not assign catalog = demo_catalog(...)")
    return problems


def _cdn_extensions(source: str) -> list[int]:
    """Lines of ``hv.extension(...)`` / ``pn.extension(...)`` calls without ``inline=True``.

    Without it, HoloViews and Panel make the browser fetch BokehJS and Panel's scripts
    from a CDN, and every plot and page of the notebook is blank on a machine off the
    internet (a lab network holding medical data); ``inline=True`` sends them from the
    kernel (a documented parameter of both extension functions).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # reported for the first cell; other cells may hold IPython magics
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "extension"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("hv", "holoviews", "pn", "panel")
        and not any(
            kw.arg == "inline" and isinstance(kw.value, ast.Constant) and kw.value.value is True
            for kw in node.keywords
        )
    ]


def notebook_problems(nb, name: str) -> list[str]:
    """Everything that keeps a notebook from being stored clean (empty list: clean).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The notebook, as read by :func:`nbformat.read`.
    name : str
        Its file name (``NN_words.ipynb``).
    """
    problems = []
    if not NAME.match(name):
        problems.append(f"{name}: not named NN_snake_case.ipynb")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"{name}: invalid notebook: {err.message}")
    if "widgets" in nb.metadata:
        problems.append(f"{name}: widget state stored in the metadata")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{name}: kernelspec is not python3")
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        problems.append(f"{name}: no code cell")
    for i, cell in code:
        if cell.get("outputs"):
            problems.append(f"{name}: cell {i} has stored outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"{name}: cell {i} has execution_count {cell['execution_count']}")
        if "execution" in cell.get("metadata", {}):
            problems.append(f"{name}: cell {i} has execution timings in its metadata")
        if FORBIDDEN.search(cell.source):
            problems.append(f"{name}: cell {i} shells out or installs packages")
        for line in _cdn_extensions(cell.source):
            problems.append(
                f"{name}: cell {i} line {line}: extension() without inline=True loads "
                "BokehJS from a CDN (blank plots offline)"
            )
    if code:
        problems += [f"{name}: {p}" for p in _demo_call(code[0][1].source)]
    return problems


def test_the_curated_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert EXPECTED <= names, f"missing notebooks: {sorted(EXPECTED - names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert notebook_problems(nb, path.name) == []


def _clean_notebook():
    return nbformat.read(NOTEBOOK_DIR / "01_explore_a_session.ipynb", as_version=4)


def _first_code(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def _with_output(nb):
    cell = _first_code(nb)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.execution_count = 1
    return nb


def _with_path(nb):
    cell = _first_code(nb)
    cell.source = cell.source.replace("demo_catalog()", 'demo_catalog("/tmp/demo")')
    return nb


def _without_demo(nb):
    _first_code(nb).source = "import pandas as pd\ncatalog = 'data_catalog.yaml'"
    return nb


def _without_setting(nb):
    cell = _first_code(nb)
    cell.source = "\n".join(line for line in cell.source.splitlines() if DEMO_SETTING not in line)
    return nb


def _with_cdn(nb):
    cell = _first_code(nb)
    cell.source = cell.source.replace('hv.extension("bokeh", inline=True)', 'hv.extension("bokeh")')
    return nb


def _with_pip(nb):
    nb.cells.append(nbformat.v4.new_code_cell("!pip install cardiolab"))
    return nb


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (_with_output, ["has stored outputs", "has execution_count 1"]),
        (_with_path, ["is given a path"]),
        (
            _without_demo,
            [
                "does not name the setting",
                "does not import demo_catalog",
                "does not call demo_catalog()",
            ],
        ),
        (_without_setting, ["does not name the setting $CARDIOLAB_DEMO_DIR"]),
        (_with_pip, ["shells out or installs packages"]),
        (_with_cdn, ["extension() without inline=True"]),
    ],
    ids=["outputs", "demo-path", "no-demo", "no-setting", "pip", "cdn"],
)
def test_the_check_catches_a_spoilt_notebook(spoil, expected):
    nb = spoil(copy.deepcopy(_clean_notebook()))
    problems = notebook_problems(nb, "01_explore_a_session.ipynb")
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected), problems


PROBE = """
import os
from pathlib import Path
from cardiolab.cli import default_demo_dir
Path("seen.txt").write_text(os.environ["CARDIOLAB_DEMO_DIR"] + "\\n" + str(default_demo_dir()))
"""


def _run_probe(tmp_path, env):
    """Run the one-cell probe notebook under nbmake with notebooks/conftest.py."""
    pytest.importorskip("nbmake")
    shutil.copy(NOTEBOOK_DIR / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbformat.write(nb, tmp_path / "probe.ipynb")
    # this repository's cardiolab, in pytest and in the kernel, whatever is installed
    root = str(NOTEBOOK_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "probe.ipynb")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    seen_env, seen_default = (tmp_path / "seen.txt").read_text().splitlines()
    assert seen_env == seen_default
    return Path(seen_env)


def test_notebook_kernels_get_a_throwaway_demo_folder(tmp_path):
    """Without $CARDIOLAB_DEMO_DIR, nbmake's kernel gets a throwaway demo folder set by
    notebooks/conftest.py, removed at the end of the run; the user's cache is untouched."""
    env = {k: v for k, v in os.environ.items() if k != DEMO_SETTING}
    env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")
    demo = _run_probe(tmp_path, env)
    assert demo.name == "demo"
    assert demo.parent.name.startswith("cardiolab-notebooks-")
    assert demo.parent.parent == Path(tempfile.gettempdir())
    assert not demo.parent.exists(), "the throwaway demo folder was not removed"
    assert not (tmp_path / "user-cache").exists()


def test_notebook_kernels_use_the_documented_setting(tmp_path):
    """With $CARDIOLAB_DEMO_DIR set, the notebooks under pytest use that demo, as in
    JupyterLab, and the run leaves the folder where it is."""
    mine = tmp_path / "my-demo"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    env = {**os.environ, DEMO_SETTING: str(mine)}
    assert _run_probe(tmp_path, env) == mine
    assert (mine / "keep.txt").read_text() == "mine"
