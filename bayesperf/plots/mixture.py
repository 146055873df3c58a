"""Figure of a fitted latency mixture: histogram by component, posterior densities.

Examples
--------
>>> from bayesperf.plots.mixture import plot_mixture
>>> fig = plot_mixture(model)                                   # doctest: +SKIP
>>> fig = plot_mixture(model, ("frontend", "currencyservice"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bayesperf.models.latency import _FitData, posterior_interval
from bayesperf.models.mixture import MixtureModel
from bayesperf.plots._axes import POSTERIOR_COLOR, format_ms, new_axes, set_log_ms_axis
from bayesperf.plots.latency import GroupKey, _group_label, _resolve_group

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_mixture"]

#: Points of the density grid and posterior draws the bands are computed from.
_GRID = 400
_DRAWS = 400


def _component_color(k: int) -> str:
    return f"C{k + 1}"  # C0 is the posterior (mixture) colour


def plot_mixture(
    model: MixtureModel,
    group: GroupKey | None = None,
    *,
    ci_prob: float = 0.9,
    ax: Axes | None = None,
) -> Figure:
    """Latency histogram coloured by most probable component, with the fitted mixture.

    Bars are the spans in the model's fitting cells (the coarsened 1% bins) as a
    density of log latency (spans per unit of ln ms, divided by the spans shown), on a
    log-ms axis, each coloured by the component most probable for its centre. The
    blue line and band are the posterior mean and the ``ci_prob`` equal-tailed interval
    of the mixture density; the dashed lines the posterior mean of each weighted
    component density ``w_k N(log y | μ_k, σ_k)``. Spans below the clock resolution or
    in the overflow bin are counted in the title, not drawn.

    Parameters
    ----------
    model : MixtureModel
        A fitted mixture.
    group : tuple, str or int, optional
        Grouped models: the group to draw (label or position); ``None`` draws all spans
        (weights: the span-weighted mean over groups). Ignored for one group.
    ci_prob : float, default 0.9
        Probability mass of the density band.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Examples
    --------
    >>> fig = plot_mixture(model, ci_prob=0.5)  # doctest: +SKIP
    """
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    fit = _FitData.from_summary(model.fit_summary)
    count_all = model.fit_summary.count.astype(np.float64)
    mu, sd, w = model._flat_params(_DRAWS)  # (S, K), (S, K), (S, G, K)
    if group is None or len(model.groups) == 1:
        g = None
        weights = np.einsum("sgk,g->sk", w, count_all / count_all.sum())
        keep = np.ones(fit.cell_group.size, dtype=bool)
        title = "all spans" if len(model.groups) > 1 or not model.grouped else None
        if title is None:
            title = _group_label(model, model.groups[0])
    else:
        g = _resolve_group(model, group)
        weights = w[:, g, :]
        keep = fit.cell_group == g
        title = _group_label(model, model.groups[g])
    # Cells of the same edges from several groups add up (the all-spans view).
    lo, hi, count = fit.cell_lo[keep], fit.cell_hi[keep], fit.cell_count[keep]
    edges, inverse = np.unique(np.column_stack([lo, hi]), axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=count, minlength=len(edges))
    lo, hi = edges[:, 0], edges[:, 1]
    real = (lo > 0) & np.isfinite(hi)
    n_total = float(counts.sum())
    n_hidden = int(counts[~real].sum())
    lo, hi, counts = lo[real], hi[real], counts[real]
    if lo.size == 0:
        raise ValueError(f"{title}: no spans between the clock resolution and the overflow bin")

    log_lo, log_hi = np.log(lo), np.log(hi)
    density = counts / n_total / (log_hi - log_lo)
    # Colour of a bar: the most probable component at its centre (posterior mean).
    centre = 0.5 * (log_lo + log_hi)
    log_comp = (
        np.log(np.maximum(weights, 1e-300))[:, None, :]
        - np.log(sd)[:, None, :]
        - 0.5 * ((centre[None, :, None] - mu[:, None, :]) / sd[:, None, :]) ** 2
    )
    log_comp -= log_comp.max(axis=-1, keepdims=True)
    member = np.exp(log_comp)
    member /= member.sum(axis=-1, keepdims=True)
    which = member.mean(axis=0).argmax(axis=-1)

    span = max(log_hi.max() - log_lo.min(), 1.0)
    x_lo, x_hi = log_lo.min() - 0.1 * span, log_hi.max() + 0.1 * span
    grid = np.linspace(x_lo, x_hi, _GRID)
    comp = (
        weights[:, None, :]
        * np.exp(-0.5 * ((grid[None, :, None] - mu[:, None, :]) / sd[:, None, :]) ** 2)
        / (sd[:, None, :] * math.sqrt(2 * math.pi))
    )  # (S, grid, K)
    total = comp.sum(axis=-1)
    band = posterior_interval(np.moveaxis(total, 0, -1), ci_prob)

    fig, ax = new_axes(ax, (7.5, 4.2))
    k = mu.shape[1]
    for c in range(k):
        sel = which == c
        if sel.any():
            ax.bar(
                lo[sel],
                density[sel],
                width=hi[sel] - lo[sel],
                align="edge",
                color=_component_color(c),
                alpha=0.45,
                linewidth=0,
                label=f"spans, most probably component {c}",
            )
    x = np.exp(grid)
    pct = f"{100 * ci_prob:.10g}%"
    ax.fill_between(
        x,
        band["lower"],
        band["upper"],
        color=POSTERIOR_COLOR,
        alpha=0.25,
        linewidth=0,
        label=f"{pct} credible band",
    )
    ax.plot(x, band["mean"], color=POSTERIOR_COLOR, linewidth=1.6, label="mixture (posterior mean)")
    comp_mean = comp.mean(axis=0)
    for c in range(k):
        median = float(np.exp(np.median(mu[:, c])))
        ax.plot(
            x,
            comp_mean[:, c],
            color=_component_color(c),
            linestyle="--",
            linewidth=1.2,
            label=f"component {c}: median {format_ms(median)}",
        )
    set_log_ms_axis(ax, float(np.exp(x_lo)), float(np.exp(x_hi)))
    ax.set_ylim(0, max(float(density.max()), float(band["upper"].max())) * 1.08)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("density of log latency")
    hidden = f"; {n_hidden:,} below resolution / overflow not drawn" if n_hidden else ""
    ax.set_title(f"{title} (n={int(n_total):,}{hidden}), K={k}", fontsize="medium")
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    return fig
