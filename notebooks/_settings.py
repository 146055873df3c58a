"""What the notebooks share: sampler size and output folder, and where the real traces are.

``BAYESPERF_NOTEBOOK_DRAWS`` (draws and as many tuning steps per chain, default 1000)
and ``BAYESPERF_NOTEBOOK_CHAINS`` (default 4) set the sampler size: the committed
outputs use the defaults, CI runs the notebooks with 100 draws and 2 chains. Files the
notebooks write go to ``BAYESPERF_NOTEBOOK_OUTPUT`` (default ``notebooks/_output``,
git-ignored), never into the repository's tracked files. The notebooks run with
``notebooks/`` as working directory, so their settings cell imports this module.
The real traces (not bundled) are in ``../shared/data`` beside the repository
(:func:`shared_data`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

import bayesperf

DRAWS = int(os.environ.get("BAYESPERF_NOTEBOOK_DRAWS", "1000"))
CHAINS = int(os.environ.get("BAYESPERF_NOTEBOOK_CHAINS", "4"))
#: Keyword arguments of every fit in the notebooks.
SAMPLER = {"draws": DRAWS, "tune": DRAWS, "chains": CHAINS, "progressbar": False}
OUTPUT = Path(os.environ.get("BAYESPERF_NOTEBOOK_OUTPUT", "_output"))


def show_settings() -> None:
    """Create ``OUTPUT``, set pandas' display options and print the sampler size.

    The printed line (``bayesperf <version>: <chains> chains x <draws> draws ...``)
    lets the tests check that CI's small settings took effect.
    """
    OUTPUT.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.float_format", lambda x: f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}")
    print(f"bayesperf {bayesperf.__version__}: {CHAINS} chains x {DRAWS} draws ({DRAWS} tuning)")


def shared_data() -> Path:
    """``../shared/data`` beside the repository holding the notebooks (real traces)."""
    here = Path.cwd().resolve()
    roots = [p for p in (here, *here.parents) if (p / "bayesperf" / "__init__.py").is_file()]
    if not roots:
        raise FileNotFoundError(f"run the notebooks from the bayesperf repository (cwd: {here})")
    data = roots[0].parent / "shared" / "data"
    if not data.is_dir():
        raise FileNotFoundError(
            f"the real traces are expected in {data} (../shared/data beside the repository)"
        )
    return data
