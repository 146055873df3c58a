"""The model comparison figure: ELPD of each model with its standard error and difference.

Draws the table of :func:`bayesperf.compare` the way ArviZ's ``plot_compare`` does
(open circles: each model's ELPD ± se; filled: the difference to the best ± dse),
with plain matplotlib so it takes an ``ax=`` like bayesperf's other figures.

Examples
--------
>>> table = bayesperf.compare({"lognormal": m1, "mixture": m2})  # doctest: +SKIP
>>> fig = plot_compare(table)                                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesperf.plots._axes import DATA_COLOR, POSTERIOR_COLOR, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_compare"]

_NEEDED = ("elpd", "se", "elpd_diff", "dse", "weight")


def plot_compare(table: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """ELPD of each model (± se) and its difference to the best (± dse), best on top.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`bayesperf.compare` (or ``arviz.compare``).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        A table without the comparison columns, or with no rows.
    """
    missing = [c for c in _NEEDED if c not in table.columns]
    if missing or table.empty:
        raise ValueError(
            f"not a comparison table (missing {missing or 'rows'}): pass the result "
            "of bayesperf.compare"
        )
    table = table.sort_values("elpd", ascending=False)
    fig, ax = new_axes(ax, (7.0, 1.2 + 0.55 * len(table)))
    y = np.arange(len(table))[::-1].astype(float)
    best = float(table["elpd"].iloc[0])
    ax.errorbar(
        table["elpd"],
        y,
        xerr=table["se"],
        fmt="o",
        mfc="white",
        color=DATA_COLOR,
        capsize=3,
        label="ELPD ± se",
    )
    rest = table.iloc[1:]
    if len(rest):
        ax.errorbar(
            best + rest["elpd_diff"],
            y[1:] - 0.25,
            xerr=rest["dse"],
            fmt="o",
            color=POSTERIOR_COLOR,
            capsize=3,
            label="best + difference ± dse",
        )
    ax.axvline(best, color="0.6", linestyle="--", linewidth=1)
    labels = [
        f"{name}  (weight {w:.2f})" for name, w in zip(table.index, table["weight"], strict=True)
    ]
    ax.set_yticks(y, labels)
    ax.set_ylim(y.min() - 0.8, y.max() + 0.6)
    ax.set_xlabel("ELPD (PSIS-LOO, higher is better)")
    ax.set_title("Model comparison")
    ax.legend(loc="lower left", fontsize="small", frameon=False)
    return fig
