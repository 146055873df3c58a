"""Execute the notebooks and save them with their outputs (the ``.py`` files are the source).

Each notebook is a percent-format ``notebooks/<name>.py`` paired by Jupytext with
``notebooks/<name>.ipynb``. This reads the ``.py``, runs it top to bottom with nbclient
on an ipykernel running this very Python (working directory ``notebooks/``), and writes
the executed ``.ipynb``::

    .venv/bin/python notebooks/execute.py                       # every notebook
    .venv/bin/python notebooks/execute.py performance-modeling  # some

The sampler size comes from ``BAYESPERF_NOTEBOOK_DRAWS`` (draws and tuning steps per
chain, default 1000) and ``BAYESPERF_NOTEBOOK_CHAINS`` (default 4), read by the
notebooks themselves: the committed outputs use the defaults. Files the notebooks write
go to ``BAYESPERF_NOTEBOOK_OUTPUT`` (default ``notebooks/_output``, git-ignored).
``tests/test_notebooks.py`` executes the notebooks with :func:`execute` too, with small
draws.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent


def notebooks() -> dict[str, Path]:
    """Name -> ``.py`` file of every Jupytext-paired notebook in ``notebooks/``."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        formats = jupytext.read(path).metadata.get("jupytext", {}).get("formats", "")
        if "ipynb" in formats.split(","):
            found[path.stem] = path
    return found


def read(path: Path) -> nbformat.NotebookNode:
    """The notebook of a paired ``.py`` file, with stable cell ids (``cell-00``, ...)."""
    nb = jupytext.read(path)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # re-executing changes no line that need not change
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Execute ``nb`` in place in ``cwd``, on a kernel running this very Python.

    The kernel spec is ipykernel's built-in ``python3`` (its command is
    ``sys.executable -m ipykernel_launcher``), found without looking at kernel specs
    installed on the machine, so a user-level ``python3`` spec pointing at another
    interpreter cannot be picked up. The kernel inherits this process's environment
    (the ``BAYESPERF_NOTEBOOK_*`` settings). nbclient raises ``CellExecutionError`` on
    the first cell that fails.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        record_timing=False,  # no timestamps in the saved notebooks
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(cleanup_kc=True)  # shut the kernel down although we made its manager
    return nb


def main(argv: list[str] | None = None) -> None:
    """Execute the named notebooks (default: all) and write each ``.ipynb``."""
    found = notebooks()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {sorted(found)}; default: all")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}: choose from {sorted(found)}")
    for name in args.names or found:
        nb = read(found[name])
        start = time.perf_counter()
        execute(nb, HERE)
        nbformat.validate(nb)
        jupytext.write(nb, HERE / f"{name}.ipynb", fmt="ipynb")
        elapsed = time.perf_counter() - start
        print(f"wrote notebooks/{name}.ipynb (executed in {elapsed:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
