"""Figures of fitted bayesperf models, one module per model kind.

Plots live here, never in the model classes. They are drawn with plain matplotlib so
every function can take an ``ax=`` and compose into larger figures; each returns the
matplotlib :class:`~matplotlib.figure.Figure` it drew on.

Examples
--------
>>> from bayesperf.plots import plot_ppc, plot_quantile_forest
>>> fig = plot_quantile_forest(model, q=0.99, top=15)           # doctest: +SKIP
>>> fig.savefig("p99.png", dpi=150)                             # doctest: +SKIP
"""

from bayesperf.plots.compare import plot_compare
from bayesperf.plots.latency import plot_ppc, plot_ppc_grid, plot_quantile_forest
from bayesperf.plots.mixture import plot_mixture
from bayesperf.plots.request import plot_attribution, plot_end_to_end, plot_what_if
from bayesperf.plots.transitions import plot_transition_graph, plot_transition_heatmap

__all__ = [
    "plot_attribution",
    "plot_compare",
    "plot_end_to_end",
    "plot_mixture",
    "plot_ppc",
    "plot_ppc_grid",
    "plot_quantile_forest",
    "plot_transition_graph",
    "plot_transition_heatmap",
    "plot_what_if",
]
