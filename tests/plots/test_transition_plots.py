"""bayesperf.plots.transitions: the layered transition graph and the transition heatmap."""

import matplotlib

matplotlib.use("Agg")

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import FancyArrowPatch

import bayesperf
from bayesperf.errors import NotFittedError
from bayesperf.models.transitions import UNSEEN, TransitionModel
from bayesperf.plots.transitions import (
    edge_label,
    format_probability,
    plot_transition_graph,
    plot_transition_heatmap,
)
from bayesperf.simulate import online_boutique_graph, simulate_traces
from bayesperf.summaries.transitions import TransitionCounts


def counts(edges: dict[tuple[str, str], int], mode: str = "sequence") -> TransitionCounts:
    frame = pd.DataFrame(
        [(s, t, c) for (s, t), c in edges.items()], columns=["source", "target", "count"]
    )
    return TransitionCounts.from_frame(frame, mode)


@pytest.fixture(scope="module")
def spans():
    return simulate_traces(online_boutique_graph(), 400, random_seed=3).spans


@pytest.fixture(scope="module")
def model(spans):
    return TransitionModel(mode="sequence").fit(spans)


@pytest.fixture(scope="module")
def calls_model(spans):
    return TransitionModel(mode="calls").fit(spans)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- helpers
def by_gid(ax, prefix: str) -> dict:
    """Artists of ``ax`` whose gid starts with ``prefix``, keyed by the rest of the gid."""
    return {
        a.get_gid()[len(prefix) :]: a
        for a in ax.get_children()
        if isinstance(a.get_gid(), str) and a.get_gid().startswith(prefix)
    }


def observed(model, ci_prob=0.9) -> pd.DataFrame:
    table = model.transition_probabilities(ci_prob)
    table = table[table["target"] != UNSEEN]
    return table.assign(key=table["source"] + "->" + table["target"]).set_index("key")


NUMBER = re.compile(r"<?\d+(?:\.\d+)?(?:e-?\d+)?")


def check_label(text: str, row) -> None:
    """The label is mean [lower–upper] of the row, formatted and numerically close."""
    assert text == edge_label(row["mean"], row["lower"], row["upper"])
    shown = NUMBER.findall(text)
    assert len(shown) == 3
    for value, true in zip(shown, (row["mean"], row["lower"], row["upper"]), strict=True):
        if value.startswith("<"):
            assert true < float(value[1:])
        else:
            assert abs(float(value) - true) <= max(0.005, 0.05 * true)


def node_x(ax) -> dict[str, float]:
    return {name: text.get_position()[0] for name, text in by_gid(ax, "node:").items()}


# ------------------------------------------------------------------------ formatting
def test_probability_text():
    assert [format_probability(p) for p in (0.4213, 0.0561, 0.00834, 0.99996)] == [
        "0.42",
        "0.056",
        "0.0083",
        "1.00",
    ]
    assert format_probability(2e-5) == "<0.001" and format_probability(0.0) == "0"
    assert edge_label(0.42, 0.38, 0.46) == "0.42 [0.38–0.46]"


# ----------------------------------------------------------------------------- graph
@pytest.mark.parametrize("min_prob", [0.01, 0.05])
def test_graph_draws_edges_above_min_prob_with_their_intervals(model, min_prob):
    table = observed(model, ci_prob=0.8)
    fig = plot_transition_graph(model, ci_prob=0.8, min_prob=min_prob, max_edges=None)
    ax = fig.axes[0]
    above = table[table["mean"] >= min_prob]
    edges = by_gid(ax, "edge:")
    assert set(edges) == set(above.index)
    assert all(isinstance(e, FancyArrowPatch) for e in edges.values())
    for key, edge in edges.items():  # width ∝ posterior mean (at least 0.6 pt)
        assert edge.get_linewidth() == pytest.approx(max(6 * above.loc[key, "mean"], 0.6))
    labels = by_gid(ax, "label:")
    assert set(labels) == set(above.index)
    for key, label in labels.items():
        check_label(label.get_text(), above.loc[key])

    hidden = int((table["mean"] < min_prob).sum())
    assert hidden > 0
    title = ax.get_title()
    assert f"{hidden} edges with mean < {min_prob:g} hidden" in title
    assert f"{len(above)} of {len(table)} observed edges" in title
    assert "80% interval" in title and f"{UNSEEN} buckets not drawn" in title

    nodes = node_x(ax)
    assert UNSEEN not in nodes
    assert set(nodes) == set(above["source"]) | set(above["target"])
    others = [x for name, x in nodes.items() if name not in ("START", "END")]
    assert nodes["START"] < min(others) and nodes["END"] > max(others)
    fig.canvas.draw()  # the connection styles run at draw time


def test_graph_self_loops_cycles_and_unreachable_states():
    # a <-> b is a cycle with self-loops; c <-> d is never reached from START.
    fitted = TransitionModel().fit(
        counts(
            {
                ("START", "a"): 50,
                ("a", "a"): 20,
                ("a", "b"): 30,
                ("b", "a"): 10,
                ("b", "b"): 5,
                ("b", "END"): 40,
                ("c", "d"): 10,
                ("d", "c"): 5,
                ("d", "END"): 10,
            }
        )
    )
    ax = plot_transition_graph(fitted, min_prob=0).axes[0]
    nodes = node_x(ax)
    assert set(nodes) == {"START", "a", "b", "c", "d", "END"}
    assert nodes["START"] < nodes["a"] < nodes["b"] < nodes["END"]
    assert max(nodes["c"], nodes["d"]) < nodes["END"]
    assert {"a->a", "b->b", "a->b", "b->a", "c->d", "d->c"} <= set(by_gid(ax, "edge:"))
    # The self-loop label sits above its node, offset in points.
    loop = by_gid(ax, "label:")["a->a"]
    assert loop.xy == pytest.approx(by_gid(ax, "node:")["a"].get_position())
    assert loop.xyann[1] > 0
    assert "0 edges with mean < 0 hidden" in ax.get_title()
    ax.figure.canvas.draw()


def test_graph_keeps_the_top_edges_of_a_large_graph_and_says_so():
    rng = np.random.default_rng(4)
    names = [f"s{i:03d}" for i in range(300)]
    edges = {("START", names[i]): int(rng.integers(1, 100)) for i in range(20)}
    for name in names:
        for j in rng.choice(300, 4, replace=False):
            edges[(name, names[j])] = int(rng.integers(1, 50))
        edges[(name, "END")] = int(rng.integers(1, 30))
    big = TransitionModel(mode="calls").fit(counts(edges, "calls"))
    table = observed(big)
    traffic = table.groupby("source")["count"].sum()
    above = table[table["mean"] >= 0.01]
    flow = above["mean"] * traffic.loc[above["source"]].to_numpy()
    top = set(flow.nlargest(25).index)

    ax = plot_transition_graph(big, max_edges=25).axes[0]
    assert set(by_gid(ax, "edge:")) == top
    title = ax.get_title()
    assert f"of the {len(above)} others, the top 25 by mean × source transitions" in title
    assert f"25 of {len(table)} observed edges" in title
    with pytest.raises(ValueError, match=r"max_states=40.*plot_transition_graph"):
        plot_transition_heatmap(big)


def test_graph_draws_on_a_given_axes(model):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    assert plot_transition_graph(model, ax=right, labels=False) is fig
    assert not left.get_children()[0].get_gid() and not by_gid(left, "node:")
    assert by_gid(right, "node:") and not by_gid(right, "label:")
    assert len(fig.axes) == 2


def test_bad_arguments_and_unfitted_models(model):
    with pytest.raises(NotFittedError, match=r"call \.fit"):
        plot_transition_graph(TransitionModel())
    with pytest.raises(NotFittedError, match=r"call \.fit"):
        plot_transition_heatmap(TransitionModel())
    with pytest.raises(TypeError, match="needs a TransitionModel"):
        plot_transition_graph(object())
    with pytest.raises(ValueError, match="min_prob"):
        plot_transition_graph(model, min_prob=1.0)
    with pytest.raises(ValueError, match="max_edges"):
        plot_transition_graph(model, max_edges=0)
    with pytest.raises(ValueError, match="ci_prob"):
        plot_transition_graph(model, ci_prob=1.5)
    with pytest.raises(ValueError, match="no transition"):
        plot_transition_graph(model, min_prob=0.999999)
    with pytest.raises(ValueError, match="max_states=5"):
        plot_transition_heatmap(model, max_states=5)


# --------------------------------------------------------------------------- heatmap
def heatmap_axes(fig):
    (ax,) = [a for a in fig.axes if a.images]
    return ax


def test_heatmap_cells_order_and_annotations(calls_model):
    fig = plot_transition_heatmap(calls_model, ci_prob=0.5)
    ax = heatmap_axes(fig)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows[0] == "START" and "END" not in rows
    assert cols[-2:] == ["END", UNSEEN] and "START" not in cols
    states = [str(s) for s in calls_model.states]
    assert set(rows) | set(cols) == {*states, UNSEEN}
    assert rows[1] == "frontend"  # the root comes right after START
    assert rows[1:] == cols[:-2][: len(rows) - 1]  # same service order on both axes

    table = calls_model.transition_probabilities(0.5)
    values = ax.images[0].get_array()
    expected = np.full((len(rows), len(cols)), np.nan)
    for row in table.itertuples():
        expected[rows.index(row.source), cols.index(row.target)] = row.mean
    np.testing.assert_allclose(np.ma.filled(values, np.nan), expected, rtol=1e-12)
    assert np.ma.getmaskarray(values).sum() == np.isnan(expected).sum() > 0
    sums = np.nansum(expected, axis=1)
    np.testing.assert_allclose(sums[sums > 0], 1.0)  # with (unseen), rows sum to 1

    cells = by_gid(ax, "cell:")
    assert len(cells) == len(table)
    for row in table.itertuples():
        text = cells[f"{row.source}->{row.target}"].get_text()
        mean, interval = text.split("\n")
        assert mean == format_probability(row.mean)
        assert interval == f"[{edge_label(row.mean, row.lower, row.upper).split('[')[1]}"
    assert len(fig.axes) == 2  # the colourbar
    assert "50% credible interval" in ax.get_title()


def test_heatmap_options_and_given_axes(calls_model):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_transition_heatmap(calls_model, annotate=False, unseen=False, ax=right) is fig
    assert not left.images and right.images
    assert [t.get_text() for t in right.get_xticklabels()][-1] == "END"
    assert not by_gid(right, "cell:")


# ------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def boutique(request):
    shared = request.getfixturevalue("shared_data")
    return bayesperf.read_traces(shared / "nezha-onlineboutique" / "fault_free")


@pytest.mark.shared_data
@pytest.mark.parametrize("mode", ["calls", "sequence"])
def test_online_boutique_graph_and_heatmap(boutique, mode, tmp_path):
    fitted = TransitionModel(mode=mode).fit(boutique)
    table = observed(fitted)
    above = table[table["mean"] >= 0.01]
    fig = plot_transition_graph(fitted)
    ax = fig.axes[0]
    assert set(by_gid(ax, "edge:")) == set(above.index)
    for key, label in by_gid(ax, "label:").items():
        check_label(label.get_text(), above.loc[key])
    hidden = len(table) - len(above)
    assert f"{hidden} edge{'s' if hidden != 1 else ''} with mean < 0.01 hidden" in ax.get_title()
    nodes = node_x(ax)
    assert len(nodes) == 12  # 10 services, START, END
    assert nodes["START"] == min(nodes.values()) and nodes["END"] == max(nodes.values())
    fig.savefig(tmp_path / "graph.png", dpi=60)

    heat = plot_transition_heatmap(fitted)
    cells = by_gid(heatmap_axes(heat), "cell:")
    assert len(cells) == len(fitted.transition_probabilities())
    heat.savefig(tmp_path / "heatmap.png", dpi=60)
    for name in ("graph.png", "heatmap.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.shared_data
def test_alibaba_graph_keeps_the_busiest_edges(shared_data):
    spans = bayesperf.read_traces(shared_data / "alibaba-v2022-excerpt" / "msgraph-excerpt.csv")
    fitted = TransitionModel(mode="calls").fit(spans)
    assert len(fitted.states) > 500
    ax = plot_transition_graph(fitted).axes[0]
    assert len(by_gid(ax, "edge:")) == 60
    assert "the top 60 by mean × source transitions" in ax.get_title()
    with pytest.raises(ValueError, match="plot_transition_graph"):
        plot_transition_heatmap(fitted)
