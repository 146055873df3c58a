"""The Monte Carlo engine: trees, composition, scenarios, dependence, determinism."""

import numpy as np
import pandas as pd
import pytest

from bayesperf.models.calls import CallModel
from bayesperf.models.draws import LatencyDraws
from bayesperf.models.request_trees import Dependence, Scenario, simulate
from bayesperf.summaries.calls import summarize_calls


class PointDraws(LatencyDraws):
    """Every group's latency is a fixed value (``values[group]``), whatever ``u``."""

    def __init__(self, groups, values, n_draws=4):
        self.groups, self.values, self.n_draws = groups, np.asarray(values, float), n_draws

    def ppf(self, u, group, draw):
        return self.values[np.asarray(group)] + 0 * np.asarray(u)

    def cdf(self, x, group, draw):
        return (np.asarray(x) >= self.values[np.asarray(group)]).astype(float)

    def mean(self, group, draw):
        return self.values[np.asarray(group)] + 0 * np.asarray(draw)

    def subset(self, draws):
        return type(self)(self.groups, self.values, len(np.asarray(draws)))


class UniformDraws(PointDraws):
    """Latency = u (ms): exposes the uniforms the engine passes."""

    def ppf(self, u, group, draw):
        return np.asarray(u, float) + 0 * np.asarray(group)


def tree_spans(n_traces=5, with_c=True):
    rows = []
    for t in range(n_traces):
        rows += [
            (f"t{t}", "r", None, "fe", "get", 0.0, 20.0),
            (f"t{t}", "a", "r", "a", "op", 1.0, 2.0),
            (f"t{t}", "b", "r", "b", "op", 1.5, 5.0),  # parallel with a
        ]
        if with_c or t % 2:
            rows.append((f"t{t}", "c", "r", "c", "op", 8.0, 3.0))  # after them
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    return frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))


def engine_inputs(spans, values):
    graph = CallModel().fit(summarize_calls(spans)).graph
    draws = PointDraws(graph.nodes, [values[s] for s, _ in graph.nodes])
    weights = graph.draw_weights(4, 1.0, np.random.default_rng(0))
    entry = np.array([graph.code("fe", "get")])
    return graph, weights, draws, np.arange(graph.n_types), entry


def test_parallel_stages_take_the_slowest_child_and_stages_add():
    graph, weights, draws, group, entry = engine_inputs(
        tree_spans(), {"fe": 1.0, "a": 2.0, "b": 5.0, "c": 3.0}
    )
    identity = Scenario.identity(graph.n_types)
    sim = simulate(graph, weights, draws, group, entry, 100, [identity], random_seed=1)
    np.testing.assert_allclose(sim.latency[0], 1 + max(2, 5) + 3)
    assert sim.spans == 4 * 100 * 4
    assert sim.truncated == 0


def test_scenarios_scale_add_and_replace_self_times():
    graph, weights, draws, group, entry = engine_inputs(
        tree_spans(), {"fe": 1.0, "a": 2.0, "b": 5.0, "c": 3.0}
    )
    n = graph.n_types
    faster_b = Scenario.identity(n)
    faster_b.scale[graph.code("b", "op")] = 0.2  # b: 1 ms, a is now the slowest
    slower_c = Scenario.identity(n)
    slower_c.add[graph.code("c", "op")] = 10.0
    replaced = Scenario.identity(n)
    replaced.source[graph.code("fe", "get")] = 0
    replaced.group[graph.code("fe", "get")] = 0
    replaced.replacements.append(PointDraws(pd.Index(["x"]), [7.0], n_draws=2))
    scenarios = [Scenario.identity(n), faster_b, slower_c, replaced]
    sim = simulate(graph, weights, draws, group, entry, 10, scenarios, random_seed=1)
    assert [float(np.unique(x)[0]) for x in sim.latency] == [9.0, 6.0, 19.0, 15.0]


def test_call_probability_reweights_and_strips_patterns():
    spans = tree_spans(n_traces=400, with_c=False)  # half the requests call c
    graph, weights, draws, group, entry = engine_inputs(
        spans, {"fe": 1.0, "a": 2.0, "b": 5.0, "c": 3.0}
    )
    parents, children = graph.calls_between("fe", "c")
    n = graph.n_types
    base = Scenario.identity(n)
    out = []
    for p in (0.0, 0.1, 0.9, 1.0):
        g2, w2 = graph.with_call_probability(weights, parents, children, p)
        out.append(Scenario(base.scale, base.add, base.source, base.group, [], g2, w2))
    sim = simulate(
        graph, weights, draws, group, entry, 20_000, [Scenario.identity(n), *out], random_seed=3
    )
    share_with_c = [float(np.mean(x == 9.0)) for x in sim.latency]
    assert share_with_c[0] == pytest.approx(0.5, abs=0.06)  # posterior of 200/400
    assert share_with_c[1:] == pytest.approx([0.0, 0.1, 0.9, 1.0], abs=0.01)
    with pytest.raises(ValueError, match="ever made that call"):
        graph.with_call_probability(weights, *graph.calls_between("a", "b"), 0.5)


def test_copula_correlates_spans_of_one_request_and_keeps_marginals():
    rows = []
    for t in range(50):
        rows.append((f"t{t}", "r", None, "fe", "get", 0.0, 100.0))
        rows += [(f"t{t}", f"k{i}", "r", "db", "q", 10.0 * i, 5.0) for i in range(6)]
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    spans = frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))
    graph = CallModel().fit(summarize_calls(spans)).graph
    draws = UniformDraws(graph.nodes, np.zeros(graph.n_types), n_draws=2)
    weights = graph.draw_weights(2, 1.0, np.random.default_rng(0))
    entry = np.array([graph.code("fe", "get")])
    db = graph.code("db", "q")
    totals = {}
    for rho in (0.0, 0.5):
        dependence = Dependence(
            rho_request=np.zeros(2),
            rho_service=np.zeros((2, 2)),
            rho_node=np.where(np.arange(graph.n_types) == db, rho, 0.0)[None, :].repeat(2, 0),
            service_of_type=np.array(
                [graph.nodes[i][0] == "db" for i in range(graph.n_types)], int
            ),
        )
        sim = simulate(
            graph,
            weights,
            draws,
            np.arange(graph.n_types),
            entry,
            20_000,
            [Scenario.identity(graph.n_types)],
            random_seed=5,
            dependence=dependence,
        )
        totals[rho] = sim.latency[0].ravel()  # the root's u + six db uniforms
    # Same mean (uniform marginals), larger spread of the sum with correlation.
    for rho in totals:
        assert totals[rho].mean() == pytest.approx(3.5, abs=0.02)
    var_sum = {rho: totals[rho].var() for rho in totals}
    # Independent: 7 / 12. With Spearman-like correlation r between the 6 db spans
    # (r = 6/pi * asin(rho/2) = 0.483 for rho = 0.5): 7/12 + 30 * r / 12.
    assert var_sum[0.0] == pytest.approx(7 / 12, rel=0.05)
    r = 6 / np.pi * np.arcsin(0.25)
    assert var_sum[0.5] == pytest.approx(7 / 12 + 30 * r / 12, rel=0.05)


def test_same_seed_same_requests_and_workers_do_not_matter():
    graph, weights, draws, group, entry = engine_inputs(
        tree_spans(n_traces=40, with_c=False), {"fe": 1.0, "a": 2.0, "b": 5.0, "c": 3.0}
    )
    draws = UniformDraws(graph.nodes, np.zeros(graph.n_types), n_draws=4)
    args = (graph, weights, draws, group, entry, 5000, [Scenario.identity(graph.n_types)])
    one = simulate(*args, random_seed=11, workers=1, expected_spans=1e6).latency[0]
    two = simulate(*args, random_seed=11, workers=2, expected_spans=1e6).latency[0]
    other = simulate(*args, random_seed=12, workers=2, expected_spans=1e6).latency[0]
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, other)


def test_recursive_graphs_are_cut_at_max_depth():
    rows = [("t", "0", None, "svc", "op", 0.0, 100.0)]
    rows += [("t", str(i), str(i - 1), "svc", "op", float(i), 100.0 - 2 * i) for i in range(1, 5)]
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    spans = frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))
    graph = CallModel().fit(summarize_calls(spans)).graph
    draws = PointDraws(graph.nodes, [1.0])
    weights = graph.draw_weights(4, 1.0, np.random.default_rng(0))
    sim = simulate(
        graph,
        weights,
        draws,
        np.zeros(1, int),
        np.zeros(1, int),
        200,
        [Scenario.identity(1)],
        random_seed=1,
        max_depth=6,
    )
    assert sim.latency[0].max() <= 7.0  # at most 7 levels of 1 ms
    assert sim.truncated > 0
