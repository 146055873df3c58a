"""The example notebooks: every paired notebook is committed executed, in sync, and runs.

A notebook is a percent-format ``notebooks/<name>.py`` paired by Jupytext with
``notebooks/<name>.ipynb`` (see ``notebooks/README.md``); every such pair found is
tested, so a new notebook needs no change here. The execution tests run each notebook's
``.py`` top to bottom with nbclient on a kernel of this very Python
(``notebooks/execute.py``), with small draws (``BAYESPERF_NOTEBOOK_DRAWS=100``, 2 chains)
and the notebook's output files sent to a temporary folder; nbclient raises
``CellExecutionError`` on the first cell that fails. A notebook that reads
``../shared/data`` (its text names that folder) is skipped only when the folder is
absent. ``EXPECTED`` adds checks of what particular notebooks print and draw.
"""

import importlib.util
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SMALL = {"BAYESPERF_NOTEBOOK_DRAWS": "100", "BAYESPERF_NOTEBOOK_CHAINS": "2"}
#: Files in notebooks/ that are not notebooks (besides the notebooks' shared _settings.py).
NOT_NOTEBOOKS = {"execute.py", "_settings.py"}


def _load_executor():
    spec = importlib.util.spec_from_file_location(
        "bayesperf_notebooks_execute", NOTEBOOKS_DIR / "execute.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


executor = _load_executor()
NOTEBOOKS = executor.notebooks()


def needs_shared_data(name: str) -> bool:
    return "../shared/data" in NOTEBOOKS[name].read_text(encoding="utf-8")


def notebook_params():
    return [
        pytest.param(name, marks=[pytest.mark.shared_data] if needs_shared_data(name) else [])
        for name in sorted(NOTEBOOKS)
    ]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def stdout(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
    )


def displayed(nb) -> str:
    return "".join(
        o.get("data", {}).get("text/plain", "") for c in code_cells(nb) for o in c.outputs
    )


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in code_cells(nb) for o in c.outputs)


def errors(nb) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "error"
    ]


def test_every_script_in_notebooks_is_a_paired_notebook():
    scripts = {p.name for p in NOTEBOOKS_DIR.glob("*.py")} - NOT_NOTEBOOKS
    assert {f"{name}.py" for name in NOTEBOOKS} == scripts, (
        "pair each notebook: jupytext --set-formats ipynb,py:percent notebooks/<name>.py"
    )
    assert {"performance-modeling", "regression-and-anomalies"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_notebook_is_its_script_executed(name):
    """The .ipynb has the .py's cells (read by Jupytext); every code cell ran, no error."""
    committed = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    script = jupytext.read(NOTEBOOKS[name])
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in script.cells
    ], f"notebooks/{name}.ipynb is stale: run `.venv/bin/python notebooks/execute.py {name}`"
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    cells = code_cells(committed)
    assert all(c.execution_count is not None for c in cells), "committed without outputs"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not errors(committed)
    assert "2 chains x 100 draws" not in stdout(committed), "committed with CI's small draws"


def execute(name: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BAYESPERF_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebooks' %matplotlib inline wins
    return executor.execute(executor.read(NOTEBOOKS[name]), NOTEBOOKS_DIR, timeout=600)


def check_performance_modeling(nb, output: Path) -> None:
    printed = stdout(nb)
    for line in (
        "Loaded 22969 trace records",
        "Distribution: nonparametric",  # bayesperf's default latency family
        "Latency Models for Top 5 Service Pairs:",
        "Number of states:",
        "Path 3:",
        "Performance Hotspots:",
        "anomalous traces",
        "Models saved successfully",
        "same summary: True",
    ):
        assert line in printed, line
    # Forest plot, transition graph, seed histogram, mixture, PPC grid.
    assert images(nb) == 5
    assert (output / "interaction_models.pkl").is_file()
    assert sorted(p.name for p in (output / "models").iterdir()) == [
        "latency.nc",
        "mixture.nc",
        "transitions.nc",
    ]


def check_regression_and_anomalies(nb, output: Path) -> None:
    printed = stdout(nb)
    assert "jaeger-hotel-reservation, nezha-onlineboutique" in printed
    assert "load 25 → 100, 8 pairs:" in printed
    assert "3 while these minutes were recorded" in printed
    assert "traces scored" in printed
    tables = displayed(nb)
    for text in ("p_regression", "precision", "recall", "cpu_contention", "fault-free vs itself"):
        assert text in tables, text
    assert images(nb) == 2  # the ratio intervals and the fault timeline


#: What particular notebooks must print, draw and write (beyond running without error).
EXPECTED = {
    "performance-modeling": check_performance_modeling,
    "regression-and-anomalies": check_regression_and_anomalies,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", notebook_params())
def test_notebook_runs_with_small_draws(name, tmp_path, monkeypatch, request):
    if needs_shared_data(name):
        request.getfixturevalue("shared_data")  # skips when ../shared/data is absent
    nb = execute(name, tmp_path, monkeypatch)
    assert not errors(nb)
    assert "2 chains x 100 draws" in stdout(nb)  # the notebook took CI's small settings
    if name in EXPECTED:
        EXPECTED[name](nb, tmp_path)
