"""Figures of fitted latency models: quantile forest plots and posterior predictive checks.

Plots live here, never in the model classes. They are drawn with plain matplotlib: both
are domain figures (log-millisecond axes, the below-resolution cell, empirical quantiles
from the bins) that the generic arviz-plots functions do not express, and plain
matplotlib lets every function take an ``ax=`` to compose figures. Each function
returns the matplotlib :class:`~matplotlib.figure.Figure` it drew on.

Examples
--------
>>> from bayesperf.plots import plot_ppc, plot_quantile_forest
>>> fig = plot_quantile_forest(model, q=0.99, top=15)           # doctest: +SKIP
>>> fig.savefig("p99.png", dpi=150)                             # doctest: +SKIP
>>> fig = plot_ppc(model, ("frontend", "cartservice"))          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.models.latency import MISSING_KEY, LatencyModel, posterior_interval
from bayesperf.plots._axes import (
    DATA_COLOR,
    EMPIRICAL_COLOR,
    POSTERIOR_COLOR,
    format_ms,
    new_axes,
    quantile_name,
    set_log_ms_axis,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_ppc", "plot_ppc_grid", "plot_quantile_forest"]

Sort = Literal["median", "upper", "n", "label"] | None
GroupKey = Hashable | int
SORTS: tuple[Sort, ...] = ("median", "upper", "n", "label", None)

#: Share of the axis width taken by a stand-in cell (below resolution / overflow).
_STANDIN_WIDTH = 0.035
#: Share of the axis width between a stand-in cell and the real log scale.
_STANDIN_GAP = 0.04


# --------------------------------------------------------------------------- helpers
def _group_label(model: LatencyModel, key: Hashable) -> str:
    """``("frontend", "cart")`` -> ``"frontend → cart"`` (other groupings: ``" / "``)."""
    if isinstance(key, tuple):
        sep = " → " if tuple(model.by) == (S.CALLER, S.CALLEE) else " / "
        return sep.join(str(k) for k in key)
    return str(key)


def _known_groups(groups: pd.Index, limit: int = 20) -> str:
    shown = [repr(g) for g in groups[:limit]]
    more = len(groups) - limit
    return "[" + ", ".join(shown) + (f", ... and {more} more" if more > 0 else "") + "]"


def _resolve_group(model: LatencyModel, group: GroupKey) -> int:
    """Position of ``group`` (label tuple, label or int position) in ``model.groups``."""
    groups = model.groups
    if isinstance(group, Integral) and not isinstance(group, bool):
        pos = int(group)
        if not -len(groups) <= pos < len(groups):
            raise ValueError(
                f"group position {pos} out of range for {len(groups)} groups; "
                f"known groups: {_known_groups(groups)}"
            )
        return pos % len(groups)
    key = group
    if isinstance(groups, pd.MultiIndex):
        if isinstance(key, list):
            key = tuple(key)
        if isinstance(key, tuple):
            # A root span's missing caller is spelled "(none)" in the labels.
            key = tuple(MISSING_KEY if k is None else str(k) for k in key)
    else:
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        key = MISSING_KEY if key is None else key
    try:
        loc = groups.get_loc(key)
    except (KeyError, TypeError, ValueError):
        loc = None
    if not isinstance(loc, Integral):  # unknown, or a partial key matching several
        hint = ""
        if isinstance(groups, pd.MultiIndex):
            hint = f" (labels are ({', '.join(map(str, groups.names))}) tuples)"
        raise ValueError(f"unknown group {group!r}{hint}; known groups: {_known_groups(groups)}")
    return int(loc)


# ---------------------------------------------------------------------- forest plot
def plot_quantile_forest(
    model: LatencyModel,
    q: float = 0.99,
    ci_prob: float = 0.9,
    *,
    top: int | None = None,
    sort: Sort = "median",
    ax: Axes | None = None,
    log: bool = True,
) -> Figure:
    """Forest plot of each group's posterior ``q``-quantile of latency.

    One row per group (``caller → callee`` and its span count ``n``): the posterior
    median as a filled point, the ``ci_prob`` equal-tailed credible interval as a line
    and the empirical quantile of the group's spans (from the 1% bins) as a hollow
    diamond. The medians and intervals are those of :meth:`LatencyModel.summary`.

    Parameters
    ----------
    model : LatencyModel
        A fitted model (any grouping).
    q : float, default 0.99
        Latency quantile to show, in (0, 1).
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed credible interval.
    top : int, optional
        Show only the ``top`` groups with the largest posterior median.
    sort : {"median", "upper", "n", "label", None}, default "median"
        Row order from the top: decreasing posterior median, decreasing upper interval
        bound, decreasing span count, alphabetical, or the model's group order.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure (sized to the number of rows) otherwise.
    log : bool, default True
        Log-scale latency axis (ms).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Notes
    -----
    On the log axis, an empirical quantile that falls in the below-resolution bin (a
    latency of 0) is drawn as a hollow left-pointing triangle at the resolution edge.

    Examples
    --------
    >>> from bayesperf.plots import plot_quantile_forest
    >>> fig = plot_quantile_forest(model, q=0.99, top=20)            # doctest: +SKIP
    >>> fig.savefig("p99_forest.png", dpi=150, bbox_inches="tight")   # doctest: +SKIP
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be strictly between 0 and 1, got {q}")
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {SORTS}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, Integral) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")

    groups = model.groups
    draws = model.quantiles(q).sel(quantile=q, drop=True)
    samples = draws.stack(sample=("chain", "draw")).transpose(..., "sample").to_numpy()
    interval = posterior_interval(samples, ci_prob)  # as in LatencyModel.summary
    lower, median, upper = interval["lower"], interval["median"], interval["upper"]
    fit = model.fit_summary
    empirical = fit.quantile(q)[:, 0]
    n = fit.count
    labels = np.array([_group_label(model, g) for g in groups], dtype=object)

    rows = np.arange(len(groups))
    if top is not None:
        rows = np.argsort(-median, kind="stable")[:top]
    if sort == "median":
        rows = rows[np.argsort(-median[rows], kind="stable")]
    elif sort == "upper":
        rows = rows[np.argsort(-upper[rows], kind="stable")]
    elif sort == "n":
        rows = rows[np.argsort(-n[rows], kind="stable")]
    elif sort == "label":
        rows = rows[np.argsort(labels[rows].astype(str), kind="stable")]
    elif top is not None:
        rows = np.sort(rows)  # model order

    k = len(rows)
    tick_labels = [f"{labels[r]}  (n={n[r]:,})" for r in rows]
    longest = max(len(t) for t in tick_labels)
    fig, ax = new_axes(ax, (max(8.0, 5.5 + 0.075 * longest), 1.8 + 0.3 * k))
    y = np.arange(k)
    name = quantile_name(q)
    pct = f"{100 * ci_prob:.10g}%"

    ax.hlines(
        y,
        lower[rows],
        upper[rows],
        color=POSTERIOR_COLOR,
        linewidth=2,
        label=f"{pct} equal-tailed credible interval",
    )
    ax.plot(
        median[rows],
        y,
        "o",
        color=POSTERIOR_COLOR,
        markersize=6,
        label="posterior median",
        zorder=3,
    )
    emp = empirical[rows]
    censor_at = float(fit.edges[1]) if fit.edges[0] == 0 else 0.0
    # On a log axis an empirical quantile of 0 (below resolution) gets its own marker.
    below = ~(emp > 0) if log else np.isnan(emp)
    ax.plot(
        np.where(below, np.nan, emp),
        y,
        "D",
        markerfacecolor="none",
        markeredgecolor=EMPIRICAL_COLOR,
        markersize=6,
        label=f"empirical {name} (bins)",
        zorder=4,
    )
    if log and below.any() and censor_at > 0:
        ax.plot(
            np.full(int(below.sum()), censor_at),
            y[below],
            "<",
            markerfacecolor="none",
            markeredgecolor=EMPIRICAL_COLOR,
            markersize=6,
            label=f"empirical {name} below {format_ms(censor_at)}",
            zorder=4,
        )

    ax.set_yticks(y, tick_labels)
    ax.set_ylim(k - 0.5, -0.5)  # first row on top
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel(f"{name} latency (ms{', log scale' if log else ''})")
    values = np.concatenate([lower[rows], upper[rows], emp[~below]])
    if log:
        if below.any() and censor_at > 0:
            values = np.append(values, censor_at)
        vmin, vmax = float(np.min(values)), float(np.max(values))
        pad = 10 ** (0.05 * max(math.log10(vmax / vmin), 0.3))
        set_log_ms_axis(ax, vmin / pad, vmax * pad)
    else:
        ax.set_xlim(0, float(np.max(values)) * 1.05)
    what = "pairs" if tuple(model.by) == (S.CALLER, S.CALLEE) else "groups"
    shown = f"top {k} of {len(groups)} {what}" if k < len(groups) else f"{k} {what}"
    ax.set_title(
        f"Posterior {name} latency ({shown})\n"
        f"points: posterior medians · lines: {pct} equal-tailed credible intervals",
        fontsize="medium",
    )
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    return fig


# ------------------------------------------------------- posterior predictive checks
def _ensure_ppc(model: LatencyModel, random_seed: int | None) -> None:
    """Sample the posterior predictive histograms unless they are stored."""
    idata = model.idata
    if "posterior_predictive" not in idata or "latency" not in idata.posterior_predictive:
        model.sample_posterior_predictive(random_seed=random_seed)


def _ppc_cells(model: LatencyModel) -> tuple[pd.DataFrame, np.ndarray]:
    """Observed cells (group, lo, hi, count) and the replicated counts (cell, sample)."""
    idata = model.idata
    pp = idata.posterior_predictive["latency"]
    replicated = pp.stack(sample=("chain", "draw")).transpose("cell", "sample").to_numpy()
    obs = idata["observed_data"].to_dataset() if "observed_data" in idata else None
    if obs is not None and "latency" in obs and obs.sizes.get("cell") == pp.sizes["cell"]:
        cells = pd.DataFrame(
            {
                "group": obs["cell_group"].to_numpy(),
                "lo": obs["cell_lo"].to_numpy(),
                "hi": obs["cell_hi"].to_numpy(),
                "count": obs["latency"].to_numpy(),
            }
        )
    else:  # the fitting cells are a deterministic function of the fit data
        _, cells = model.cell_probabilities()
    return cells, replicated


def _stairs(lo: np.ndarray, hi: np.ndarray, *values: np.ndarray):
    """Edges and per-step values of sorted cells, with gaps between cells filled in.

    Cells ``[lo, hi)`` need not touch (empty bins are not fitting cells): a gap gets
    value 0 in every array.
    """
    edges = [lo[0]] if lo.size else [1.0]
    out: list[list[float]] = [[] for _ in values]
    for i in range(lo.size):
        if not math.isclose(edges[-1], lo[i], rel_tol=1e-9):
            for column in out:
                column.append(0.0)
            edges.append(lo[i])
        for column, v in zip(out, values, strict=True):
            column.append(float(v[i]))
        edges.append(hi[i])
    return np.asarray(edges), [np.asarray(column) for column in out]


def _draw_ppc(
    ax: Axes,
    model: LatencyModel,
    g: int,
    cells: pd.DataFrame,
    replicated: np.ndarray,
    ci_prob: float,
    *,
    legend: bool,
) -> None:
    """Draw one group's posterior predictive check on ``ax``."""
    idx = np.flatnonzero(cells["group"].to_numpy() == g)
    lo = cells["lo"].to_numpy()[idx].astype(np.float64)
    hi = cells["hi"].to_numpy()[idx].astype(np.float64)
    count = cells["count"].to_numpy()[idx]
    band_lo, median, band_hi = np.quantile(
        replicated[idx], [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=-1
    )

    # Display edges: real cells as they are; the below-resolution cell [0, r) and an
    # overflow cell [x, inf) become stand-ins just outside the real scale.
    real = (lo > 0) & np.isfinite(hi)
    if real.any():
        scale_lo, scale_hi = float(lo[real].min()), float(hi[real].max())
    else:  # only stand-in cells: give them a nominal scale around their finite edges
        finite = np.concatenate([hi[hi < np.inf], lo[lo > 0]])
        scale_lo = scale_hi = float(finite.min()) if finite.size else 1.0
    scale_lo, scale_hi = scale_lo / 1.05, scale_hi * 1.05
    span = max(math.log10(scale_hi / scale_lo), 0.5)
    gap, width = 10 ** (_STANDIN_GAP * span), 10 ** (_STANDIN_WIDTH * span)
    x_lo, x_hi = lo.copy(), hi.copy()
    extra: dict[float, str] = {}
    axis_lo, axis_hi = scale_lo, scale_hi
    under = lo <= 0
    if under.any():
        x_hi[under] = scale_lo / gap
        x_lo[under] = x_hi[under] / width
        axis_lo = float(x_lo[under].min()) / 10 ** (0.01 * span)
        for h, xl, xh in zip(hi[under], x_lo[under], x_hi[under], strict=True):
            extra[math.sqrt(xl * xh)] = f"<{format_ms(h)}"
    over = np.isinf(hi)
    if over.any():
        x_lo[over] = scale_hi * gap
        x_hi[over] = x_lo[over] * width
        axis_hi = float(x_hi[over].max()) * 10 ** (0.01 * span)
        for lv, xl, xh in zip(lo[over], x_lo[over], x_hi[over], strict=True):
            extra[math.sqrt(xl * xh)] = f"≥{format_ms(lv)}"

    pct = f"{100 * ci_prob:.10g}%"
    order = np.argsort(x_lo, kind="stable")
    edges, (obs_v, lo_v, hi_v, med_v, is_cell) = _stairs(
        x_lo[order],
        x_hi[order],
        count[order],
        band_lo[order],
        band_hi[order],
        median[order],
        np.ones(order.size),
    )
    med_v[is_cell == 0] = np.nan  # the median line is broken across gaps
    ax.stairs(
        hi_v,
        edges,
        baseline=lo_v,
        fill=True,
        color=POSTERIOR_COLOR,
        alpha=0.3,
        linewidth=0,
        label=f"{pct} predictive interval",
    )
    ax.stairs(obs_v, edges, color=DATA_COLOR, linewidth=1, label="observed")
    ax.plot(
        np.repeat(edges, 2)[1:-1],
        np.repeat(med_v, 2),
        color=POSTERIOR_COLOR,
        linewidth=1.3,
        label="predictive median",
    )
    # Dotted lines mark the breaks between stand-in cells and the real log scale.
    breaks = [*(x_hi[under] * gap**0.5), *(x_lo[over] / gap**0.5)]
    for x in breaks:
        ax.axvline(x, color="0.3", linestyle=":", linewidth=1)
    set_log_ms_axis(ax, axis_lo, axis_hi, extra, scale=(scale_lo, scale_hi))
    ax.set_ylim(0, max(float(np.max(count, initial=0)), float(np.max(band_hi, initial=0))) * 1.08)
    n = int(model.fit_summary.count[g])
    ax.set_title(f"{_group_label(model, model.groups[g])} (n={n:,})", fontsize="medium")
    if legend:
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("spans per fitting cell")
        ax.legend(*_ppc_legend(ax), loc="best", fontsize="small", framealpha=0.9)


def _ppc_legend(ax: Axes) -> tuple[list, list[str]]:
    """Legend entries in reading order: observed, predictive median, interval."""
    handles, labels = ax.get_legend_handles_labels()
    rank = {"observed": 0, "predictive median": 1}
    order = sorted(range(len(labels)), key=lambda i: rank.get(labels[i], 2))
    return [handles[i] for i in order], [labels[i] for i in order]


def plot_ppc(
    model: LatencyModel,
    group: GroupKey,
    *,
    ci_prob: float = 0.9,
    ax: Axes | None = None,
    random_seed: int | None = 0,
) -> Figure:
    """Posterior predictive check of one group's latency histogram.

    Grey bars are the observed span counts in the group's fitting cells (the model's
    coarsened bins that hold spans) on a log latency axis; the below-resolution cell
    ``[0, 1 µs)`` is drawn at the left, past a dotted break, labelled ``<1 µs`` (an
    overflow cell likewise at the right). The blue line and band are the median and
    the ``ci_prob`` equal-tailed interval of the replicated counts per cell.

    Parameters
    ----------
    model : LatencyModel
        A fitted model. If its ``idata`` has no posterior predictive histograms,
        :meth:`LatencyModel.sample_posterior_predictive` is called (which stores them
        on ``model.idata``).
    group : tuple, str or int
        The group: its label (``("frontend", "cartservice")``; a plain string for a
        single-level grouping such as ``by="service"``; ``None`` for a root's missing
        caller) or its position in ``model.groups``.
    ci_prob : float, default 0.9
        Probability mass of the predictive interval.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.
    random_seed : int, optional, default 0
        Seed of the replicates, used only when they have to be sampled.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Raises
    ------
    ValueError
        If ``group`` is not one of the model's groups (the message lists them).

    Examples
    --------
    >>> from bayesperf.plots import plot_ppc
    >>> fig = plot_ppc(model, ("frontend", "cartservice"))   # doctest: +SKIP
    >>> fig = plot_ppc(model, 0, ci_prob=0.5)                # doctest: +SKIP
    """
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    g = _resolve_group(model, group)
    _ensure_ppc(model, random_seed)
    cells, replicated = _ppc_cells(model)
    fig, ax = new_axes(ax, (7.0, 4.0))
    _draw_ppc(ax, model, g, cells, replicated, ci_prob, legend=True)
    return fig


def plot_ppc_grid(
    model: LatencyModel,
    groups: Sequence[GroupKey] | None = None,
    *,
    max_groups: int = 12,
    ci_prob: float = 0.9,
    random_seed: int | None = 0,
    ncols: int = 3,
) -> Figure:
    """Small multiples of :func:`plot_ppc` for several groups.

    Parameters
    ----------
    model : LatencyModel
        A fitted model (posterior predictive histograms are sampled if missing).
    groups : sequence of tuple, str or int, optional
        Groups to show, as in :func:`plot_ppc`; by default the ``max_groups`` groups
        with the most spans, in the model's order.
    max_groups : int, default 12
        Most panels to draw; more explicit ``groups`` than this is an error.
    ci_prob : float, default 0.9
        Probability mass of the predictive interval.
    random_seed : int, optional, default 0
        Seed of the replicates, used only when they have to be sampled.
    ncols : int, default 3
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        A new figure with one panel per group and a shared legend.

    Examples
    --------
    >>> from bayesperf.plots import plot_ppc_grid
    >>> fig = plot_ppc_grid(model, max_groups=6)                             # doctest: +SKIP
    >>> fig = plot_ppc_grid(model, [("frontend", "cartservice"), 2])        # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    if max_groups < 1 or ncols < 1:
        raise ValueError(f"max_groups and ncols must be >= 1, got {max_groups}, {ncols}")
    if groups is None:
        count = model.fit_summary.count
        positions = np.sort(np.argsort(-count, kind="stable")[:max_groups]).tolist()
    else:
        if isinstance(groups, str | tuple) or not isinstance(groups, Sequence):
            raise TypeError("groups must be a list of group labels or positions")
        if len(groups) > max_groups:
            raise ValueError(
                f"{len(groups)} groups requested but max_groups={max_groups}: "
                "pass fewer groups or raise max_groups"
            )
        positions = [_resolve_group(model, g) for g in groups]
    if not positions:
        raise ValueError("no groups to plot")
    _ensure_ppc(model, random_seed)
    cells, replicated = _ppc_cells(model)

    k = len(positions)
    ncols = min(ncols, k)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.3 * ncols, 2.9 * nrows + 0.6), layout="constrained", squeeze=False
    )
    flat = axes.ravel()
    for ax, g in zip(flat, positions, strict=False):
        _draw_ppc(ax, model, g, cells, replicated, ci_prob, legend=False)
    for ax in flat[k:]:
        ax.set_visible(False)
    fig.supxlabel("latency (ms, log scale)", fontsize="medium")
    fig.supylabel("spans per fitting cell", fontsize="medium")
    fig.legend(*_ppc_legend(flat[0]), loc="outside upper center", ncols=3, fontsize="small")
    return fig
