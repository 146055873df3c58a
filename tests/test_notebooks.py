"""The example notebooks: in sync with notebooks/build.py, committed executed, and they run.

The execution tests run each committed notebook top to bottom with nbclient on a kernel
of this very Python (``build.execute``), with small draws
(``BAYESPERF_NOTEBOOK_DRAWS=100``, 2 chains) and the notebook's output files sent to a
temporary folder. nbclient raises ``CellExecutionError`` on the first cell that fails.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SMALL = {"BAYESPERF_NOTEBOOK_DRAWS": "100", "BAYESPERF_NOTEBOOK_CHAINS": "2"}


def _load_build():
    spec = importlib.util.spec_from_file_location(
        "bayesperf_notebooks_build", NOTEBOOKS / "build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def stdout(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
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


@pytest.mark.parametrize("name", sorted(build.NOTEBOOKS))
def test_committed_notebook_is_the_build_scripts_executed(name):
    """Same cells as build.py writes; every code cell ran, without an error."""
    committed, built = read(name), build.NOTEBOOKS[name]()
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in built.cells
    ], f"notebooks/{name}.ipynb is stale: run `python notebooks/build.py {name}`"
    cells = code_cells(committed)
    assert all(c.execution_count is not None for c in cells), "committed without outputs"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not errors(committed)
    assert images(committed) >= 2


def execute(name: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BAYESPERF_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebooks' %matplotlib inline wins
    nb = read(name)
    for cell in code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    return build.execute(nb, NOTEBOOKS, timeout=600)


@pytest.mark.slow
def test_performance_modeling_notebook_runs(tmp_path, monkeypatch):
    nb = execute("performance-modeling", tmp_path, monkeypatch)
    assert not errors(nb)
    printed = stdout(nb)
    assert "2 chains x 100 draws" in printed
    for line in (
        "Loaded 22969 trace records",
        "Distribution: lognormal",
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
    assert (tmp_path / "interaction_models.pkl").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "latency.nc",
        "mixture.nc",
        "transitions.nc",
    ]


@pytest.mark.slow
@pytest.mark.shared_data
def test_regression_and_anomalies_notebook_runs(shared_data, tmp_path, monkeypatch):
    nb = execute("regression-and-anomalies", tmp_path, monkeypatch)
    assert not errors(nb)
    printed = stdout(nb)
    assert "jaeger-hotel-reservation, nezha-onlineboutique" in printed
    assert "load 25 → 100, 8 pairs:" in printed
    assert "3 while these minutes were recorded" in printed
    assert "traces scored" in printed
    tables = "".join(
        o.get("data", {}).get("text/plain", "") for c in code_cells(nb) for o in c.outputs
    )
    for text in ("p_regression", "precision", "recall", "cpu_contention", "fault-free vs itself"):
        assert text in tables, text
    assert images(nb) == 2  # the ratio intervals and the fault timeline
