"""notebooks/what-if-and-critical-path: the .ipynb is the executed .py, and it runs.

The notebook is a Jupytext percent-format script paired with its executed notebook.
The execution test runs the script's cells with small draws
(``BAYESPERF_NOTEBOOK_DRAWS=100``, 2 chains) on a kernel of this very Python.
"""

import importlib.util
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAME = "what-if-and-critical-path"


def _execute():
    spec = importlib.util.spec_from_file_location(
        "bayesperf_notebooks_build", NOTEBOOKS / "build.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.execute


def code_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def outputs(nb, kind: str) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stdout" and out.get("name") == "stdout":
                text.append(out["text"])
            elif kind == "plain":
                text.append(out.get("data", {}).get("text/plain", ""))
    return "".join(text)


def test_committed_notebook_is_the_executed_script():
    script = jupytext.read(NOTEBOOKS / f"{NAME}.py")
    committed = nbformat.read(NOTEBOOKS / f"{NAME}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in script.cells
    ], f"notebooks/{NAME}.ipynb is stale: run `jupytext --sync notebooks/{NAME}.py` and execute it"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "committed without outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) == 3


@pytest.mark.slow
@pytest.mark.shared_data
def test_notebook_runs_with_small_draws(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESPERF_NOTEBOOK_DRAWS", "100")
    monkeypatch.setenv("BAYESPERF_NOTEBOOK_CHAINS", "2")
    monkeypatch.setenv("BAYESPERF_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(NOTEBOOKS / f"{NAME}.py")
    _execute()(nb, NOTEBOOKS, timeout=900)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    printed = outputs(nb, "stdout")
    assert "2 chains x 100 draws" in printed
    assert "CallSummary(node_types=55, entry_points=1, requests=502" in printed
    assert "today a page calls the ad service with probability 0.59" in printed
    tables = outputs(nb, "plain")
    for text in ("p_call_mean", "p99_upper", "covered", "p_improves", "reduction_ms", "what-if"):
        assert text in tables, text
    assert "cpu_contention" in tables and "nothing changed" in tables
    for name in ("end_to_end.png", "what_if.png", "attribution.png"):
        assert (tmp_path / name).stat().st_size > 0
