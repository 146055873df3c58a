"""bayesperf.plots: forest plot of quantiles and posterior predictive checks."""

import matplotlib

matplotlib.use("Agg")

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import StepPatch

from bayesperf.models import ConvergenceWarning, LatencyModel, load
from bayesperf.plots import plot_ppc, plot_ppc_grid, plot_quantile_forest
from bayesperf.simulate import Call, CallGraph, LogNormal, simulate_traces

# PyMC's own sampler compiles this small model faster than nutpie (its C modules are
# cached between runs), which keeps the module well under 30 s.
FAST = {"draws": 200, "tune": 200, "chains": 2, "nuts_sampler": "pymc", "progressbar": False}
ZERO_PAIR = ("frontend", "cartservice")  # 5% of its spans are below the clock resolution
BIG_PAIR = ("frontend", "catalog")


def graph() -> CallGraph:
    return CallGraph(
        root="frontend",
        root_latency=LogNormal(40.0, 0.5),
        calls={
            "frontend": [
                Call("cartservice", 1.0, LogNormal(2.0, 0.3), zero_prob=0.05),
                Call("checkout", 0.15, LogNormal(30.0, 0.4)),
                Call("catalog", 1.0, LogNormal(0.8, 0.6), repeat=2),
            ],
            "checkout": [Call("payment", 1.0, LogNormal(10.0, 0.5))],
            "cartservice": [],
            "catalog": [],
            "payment": [],
        },
    )


def _fit(spans, **config) -> LatencyModel:
    with warnings.catch_warnings():
        # Short chains may miss the ESS >= 400 bar; these tests check the figures.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LatencyModel(**config).fit(spans, random_seed=5, **FAST)


@pytest.fixture(scope="module")
def spans():
    return simulate_traces(graph(), 300, random_seed=2).spans


@pytest.fixture(scope="module")
def model(spans):
    return _fit(spans)


@pytest.fixture(scope="module")
def service_model(spans):
    return _fit(spans, by="service")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def _stairs(ax, label) -> StepPatch:
    return next(p for p in ax.patches if isinstance(p, StepPatch) and p.get_label() == label)


def _row_label(key, n) -> str:
    text = " → ".join(key) if isinstance(key, tuple) else key
    return f"{text}  (n={int(n):,})"


# --------------------------------------------------------------------------- forest
def test_forest_rows_medians_intervals_and_empirical_match_the_summary(model):
    fig = plot_quantile_forest(model, q=0.99, ci_prob=0.9)
    ax = fig.axes[0]
    table = model.summary(ci_prob=0.9, overall=False)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(model.groups) == len(table)
    by_label = {_row_label(key, row.n): row for key, row in table.iterrows()}
    assert set(labels) == set(by_label)
    rows = [by_label[label] for label in labels]

    medians = _line(ax, "posterior median").get_xdata()
    np.testing.assert_allclose(medians, [r.p99_median for r in rows], rtol=1e-12)
    assert np.all(np.diff(medians) <= 0)  # largest on top, first tick label = top row
    assert ax.yaxis_inverted()

    (intervals,) = [c for c in ax.collections if "credible interval" in c.get_label()]
    segments = np.array(intervals.get_segments())
    np.testing.assert_allclose(segments[:, 0, 0], [r.p99_lower for r in rows], rtol=1e-12)
    np.testing.assert_allclose(segments[:, 1, 0], [r.p99_upper for r in rows], rtol=1e-12)

    empirical = _line(ax, "empirical P99 (bins)")
    assert empirical.get_markerfacecolor() == "none"  # hollow
    np.testing.assert_allclose(empirical.get_xdata(), [r.empirical_p99 for r in rows])

    assert ax.get_xscale() == "log"
    assert "90% equal-tailed credible interval" in ax.get_title()
    assert "P99" in ax.get_title() and "ms" in ax.get_xlabel()


def test_forest_top_sort_other_quantile_and_linear_axis(model):
    table = model.summary(ci_prob=0.5, overall=False)
    ax = plot_quantile_forest(model, q=0.5, ci_prob=0.5, top=3, log=False).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    largest = table["p50_median"].nlargest(3)
    assert labels == [_row_label(key, table.loc[key, "n"]) for key in largest.index]
    np.testing.assert_allclose(_line(ax, "posterior median").get_xdata(), largest.to_numpy())
    assert "top 3 of" in ax.get_title() and "50% equal-tailed" in ax.get_title()
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0

    ax = plot_quantile_forest(model, sort="label").axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == sorted(labels)
    ax = plot_quantile_forest(model, sort="n").axes[0]
    counts = [
        int(t.get_text().rsplit("n=", 1)[1].rstrip(")").replace(",", ""))
        for t in ax.get_yticklabels()
    ]
    assert counts == sorted(counts, reverse=True)


def test_forest_draws_on_a_given_axes_and_rejects_bad_arguments(model):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_quantile_forest(model, ax=right) is fig
    assert not left.has_data() and right.has_data()
    with pytest.raises(ValueError, match="unknown sort"):
        plot_quantile_forest(model, sort="mean")
    with pytest.raises(ValueError, match="top"):
        plot_quantile_forest(model, top=0)
    with pytest.raises(ValueError, match="strictly between"):
        plot_quantile_forest(model, q=1.0)


# ---------------------------------------------------------- posterior predictive check
def test_ppc_samples_replicates_when_missing(model, tmp_path):
    fresh = load(model.save(tmp_path / "model.nc"))
    assert "posterior_predictive" not in fresh.idata
    plot_ppc(fresh, BIG_PAIR)
    assert fresh.idata.posterior_predictive["latency"].dims == ("chain", "draw", "cell")


def test_ppc_bars_are_the_observed_cell_counts(model):
    ax = plot_ppc(model, ZERO_PAIR).axes[0]
    obs = model.idata.observed_data
    g = model.groups.get_loc(ZERO_PAIR)
    cell = obs["cell_group"].to_numpy() == g
    lo, hi = obs["cell_lo"].to_numpy()[cell], obs["cell_hi"].to_numpy()[cell]
    count = obs["latency"].to_numpy()[cell]
    values, edges, _ = _stairs(ax, "observed").get_data()
    assert values.sum() == count.sum() == model.fit_summary.count[g]
    for lo_, hi_, c in zip(lo[lo > 0], hi[lo > 0], count[lo > 0], strict=True):
        (j,) = np.flatnonzero(np.isclose(edges[:-1], lo_, rtol=1e-12))
        assert np.isclose(edges[j + 1], hi_, rtol=1e-12) and values[j] == c
    # The below-resolution cell is the leftmost bar, labelled "<1 µs", left of the scale.
    assert lo.min() == 0 and values[0] == count[lo == 0][0] > 0
    assert edges[1] < lo[lo > 0].min()
    ticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    assert edges[0] < ticks["<1 µs"] < edges[1]
    assert ax.get_xscale() == "log"
    assert ax.get_title() == f"frontend → cartservice (n={model.fit_summary.count[g]:,})"


def test_ppc_band_contains_most_observed_counts(model):
    ax = plot_ppc(model, BIG_PAIR, ci_prob=0.9).axes[0]
    observed, edges, _ = _stairs(ax, "observed").get_data()
    upper, band_edges, lower = _stairs(ax, "90% predictive interval").get_data()
    np.testing.assert_array_equal(edges, band_edges)
    cells = (upper > 0) | (observed > 0)
    inside = (lower <= observed) & (observed <= upper)
    assert inside[cells].mean() > 0.8
    median = _line(ax, "predictive median").get_ydata()
    finite = median[np.isfinite(median)]
    assert finite.size and np.all(finite >= 0)


def test_ppc_group_by_position_and_root_with_missing_caller(model):
    root = model.groups.get_loc(("(none)", "frontend"))
    by_label = plot_ppc(model, (None, "frontend")).axes[0]
    by_position = plot_ppc(model, root).axes[0]
    assert by_label.get_title() == by_position.get_title()
    assert by_label.get_title().startswith("(none) → frontend")


def test_ppc_unknown_group_names_the_known_groups(model):
    with pytest.raises(ValueError, match="known groups") as info:
        plot_ppc(model, ("frontend", "nosuchservice"))
    assert "('frontend', 'cartservice')" in str(info.value)
    with pytest.raises(ValueError, match="out of range"):
        plot_ppc(model, len(model.groups))
    with pytest.raises(ValueError, match="known groups"):
        plot_ppc(model, "frontend")  # a partial key of a two-level index


def test_ppc_grid_panels(model):
    fig = plot_ppc_grid(model)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(model.groups)
    assert len(fig.legends) == 1
    fig = plot_ppc_grid(model, max_groups=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    counts = model.fit_summary.count
    two_largest = np.sort(np.argsort(-counts, kind="stable")[:2])
    assert titles == [f"{' → '.join(model.groups[g])} (n={counts[g]:,})" for g in two_largest]
    with pytest.raises(ValueError, match="max_groups"):
        plot_ppc_grid(model, [0, 1, 2], max_groups=2)


# ------------------------------------------------------------- single-level grouping
def test_single_level_index(service_model):
    groups = service_model.groups
    table = service_model.summary(overall=False)
    ax = plot_quantile_forest(service_model).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(groups)
    assert set(labels) == {_row_label(str(key), row.n) for key, row in table.iterrows()}
    rows = [table.loc[label.split("  (n=")[0]] for label in labels]
    np.testing.assert_allclose(
        _line(ax, "posterior median").get_xdata(), [r.p99_median for r in rows], rtol=1e-12
    )
    assert f"({len(groups)} groups)" in ax.get_title()

    ax = plot_ppc(service_model, "payment").axes[0]
    assert ax.get_title().startswith("payment (n=")
    assert plot_ppc(service_model, ("payment",)).axes[0].get_title() == ax.get_title()
    with pytest.raises(ValueError, match=r"known groups.*'catalog'"):
        plot_ppc(service_model, "nosuchservice")
    fig = plot_ppc_grid(service_model, ["frontend", "catalog"])
    assert [a.get_title().split(" (")[0] for a in fig.axes if a.get_visible()] == [
        "frontend",
        "catalog",
    ]


def test_figures_save_as_png(model, service_model, tmp_path):
    figures = {
        "forest": plot_quantile_forest(model),
        "forest_service": plot_quantile_forest(service_model, q=0.5, top=3),
        "ppc": plot_ppc(model, ZERO_PAIR),
        "ppc_grid": plot_ppc_grid(model),
    }
    for name, fig in figures.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=80)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
