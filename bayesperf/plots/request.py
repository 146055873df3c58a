"""Figures of the end-to-end request model: predicted vs observed, what-ifs, attribution.

Examples
--------
>>> from bayesperf.plots import plot_attribution, plot_end_to_end, plot_what_if
>>> fig = plot_end_to_end(model.summary())                        # doctest: +SKIP
>>> fig = plot_what_if(model.what_if(scale={"cartservice": 0.5}))  # doctest: +SKIP
>>> fig = plot_attribution(attribute(model), top=8)                # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesperf.plots._axes import (
    DATA_COLOR,
    EMPIRICAL_COLOR,
    POSTERIOR_COLOR,
    new_axes,
    set_log_ms_axis,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_attribution", "plot_end_to_end", "plot_what_if"]

_STATS = ("p50", "p95", "p99")


def _entry_label(key: tuple[str, str]) -> str:
    service, operation = key
    return f"{service}: {operation}"


def _legend_outside(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _rows(labels: list[str], values: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.Index(labels, name="row"))


def plot_end_to_end(
    summary: pd.DataFrame, *, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Each entry point's P50/P95/P99: posterior median and interval, and what was observed.

    Parameters
    ----------
    summary : pandas.DataFrame
        :meth:`RequestModel.summary <bayesperf.models.request.RequestModel.summary>`.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    title : str, optional
        Axes title.
    """
    if summary.empty:
        raise ValueError("the summary has no entry point to draw")
    labels, median, lower, upper, observed = [], [], [], [], []
    for key, row in summary.iterrows():
        for stat in _STATS:
            labels.append(f"{_entry_label(key)}  {stat.upper()}")
            median.append(row[f"{stat}_median"])
            lower.append(row[f"{stat}_lower"])
            upper.append(row[f"{stat}_upper"])
            observed.append(row[f"empirical_{stat}"])
    frame = _rows(
        labels,
        {"median": median, "lower": lower, "upper": upper, "observed": observed},
    )
    fig, ax = new_axes(ax, (9.0, max(2.4, 0.8 + 0.35 * len(frame))))
    y = np.arange(len(frame))[::-1]
    ax.errorbar(
        frame["median"],
        y,
        xerr=[frame["median"] - frame["lower"], frame["upper"] - frame["median"]],
        fmt="o",
        color=POSTERIOR_COLOR,
        capsize=3,
        label="predicted (median, interval)",
    )
    ax.scatter(
        frame["observed"],
        y,
        marker="D",
        facecolors="none",
        edgecolors=EMPIRICAL_COLOR,
        zorder=3,
        label="observed",
    )
    ax.set_yticks(y, frame.index)
    positive = frame[["lower", "observed"]].to_numpy()
    lo = max(float(np.nanmin(positive[positive > 0])) / 1.5, 1e-3)
    hi = float(np.nanmax(frame[["upper", "observed"]].to_numpy())) * 1.5
    set_log_ms_axis(ax, lo, hi)
    ax.set_xlabel("end-to-end latency (ms)")
    _legend_outside(ax)
    ax.set_title(title or "End-to-end latency per entry point")
    return fig


def plot_what_if(
    table: pd.DataFrame, *, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Today and after a change, per entry point and quantile (median and interval).

    Parameters
    ----------
    table : pandas.DataFrame
        :meth:`RequestModel.what_if <bayesperf.models.request.RequestModel.what_if>`.
    """
    if table.empty:
        raise ValueError("the what-if table is empty")
    labels = [f"{_entry_label(k[:2])}  {k[2].upper()}" for k in table.index]
    fig, ax = new_axes(ax, (9.0, max(2.4, 0.8 + 0.5 * len(table))))
    y = np.arange(len(table))[::-1].astype(float)
    for shift, prefix, color, label in (
        (0.15, "today", DATA_COLOR, "today"),
        (-0.15, "after", POSTERIOR_COLOR, "after the change"),
    ):
        median = table[f"{prefix}_median"].to_numpy()
        ax.errorbar(
            median,
            y + shift,
            xerr=[median - table[f"{prefix}_lower"], table[f"{prefix}_upper"] - median],
            fmt="o",
            color=color,
            capsize=3,
            label=label,
        )
    ax.scatter(
        table["observed"], y + 0.15, marker="D", facecolors="none",
        edgecolors=EMPIRICAL_COLOR, zorder=3, label="observed today",
    )  # fmt: skip
    ax.set_yticks(y, labels)
    values = table[["today_lower", "after_lower", "today_upper", "after_upper"]].to_numpy()
    set_log_ms_axis(ax, max(values[values > 0].min() / 1.5, 1e-3), values.max() * 1.5)
    ax.set_xlabel("end-to-end latency (ms)")
    _legend_outside(ax)
    ax.set_title(title or "What if: predicted latency before and after")
    return fig


def plot_attribution(
    table: pd.DataFrame,
    *,
    top: int = 10,
    entry: tuple[str, str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Critical-path attribution bars: the expected drop of an entry point's P99 per service.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`bayesperf.analysis.critical_path.attribute`.
    top : int, default 10
        Services shown (largest expected reduction first).
    entry : (service, operation), optional
        The entry point (default: the first in the table).
    """
    if table.empty:
        raise ValueError("the attribution table is empty")
    entries = table.index.droplevel(2).unique()
    key = tuple(entry) if entry is not None else entries[0]
    if key not in entries:
        raise ValueError(f"no entry point {key!r} in the table; it has {list(entries)}")
    rows = table.loc[key].head(top)
    q = table.attrs.get("q", 0.99)
    reduction = table.attrs.get("reduction", 0.1)
    fig, ax = new_axes(ax, (8.0, 0.8 + 0.35 * len(rows)))
    y = np.arange(len(rows))[::-1]
    median = rows["reduction_ms_median"].to_numpy()
    ax.barh(y, rows["reduction_ms"], color=POSTERIOR_COLOR, alpha=0.6, label="posterior mean")
    ax.errorbar(
        median,
        y,
        xerr=[
            np.maximum(median - rows["reduction_ms_lower"], 0),
            np.maximum(rows["reduction_ms_upper"] - median, 0),
        ],
        fmt="|",
        color=DATA_COLOR,
        capsize=3,
        label="median and interval",
    )
    ax.set_yticks(y, rows.index)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel(
        f"drop of the P{100 * q:.10g} (ms) if the service's self time fell {100 * reduction:g}%"
    )
    ax.set_title(f"Where to optimise first: {_entry_label(key)}")
    ax.legend(loc="lower right", fontsize="small")
    return fig
