"""Tests of bayesperf.simulate: determinism, schema, and that the truth is the truth.

Statistical checks use fixed seeds and a tolerance of 4 standard errors (a false failure
rate of about 6e-5 per check were the seeds to change), stated next to each check.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesperf
from bayesperf import schema as S
from bayesperf.io._table import RawSpans, build_span_table
from bayesperf.simulate import (
    Call,
    CallGraph,
    Gamma,
    LogNormal,
    Mixture,
    Weibull,
    ZeroInflated,
    online_boutique_graph,
    random_call_graph,
    simulate_traces,
)

Z = 4.0  # tolerance in standard errors for every statistical check


@pytest.fixture(scope="module")
def boutique():
    """20,000 Online Boutique traces (about 145,000 spans)."""
    return simulate_traces(online_boutique_graph(), 20_000, random_seed=11)


def small_graph(**call_options) -> CallGraph:
    return CallGraph(
        root="api",
        root_latency=LogNormal(5.0, 0.5),
        calls={
            "api": [
                Call("db", 0.3, LogNormal(1.0, 0.4), **call_options),
                Call("cache", 1.0, Gamma(0.2, 2.0), repeat=2),
            ],
            "db": [],
            "cache": [],
        },
    )


def children_of(spans: pd.DataFrame) -> pd.DataFrame:
    """Child spans joined to their parent's service, for structural checks."""
    parents = spans[[S.TRACE_ID, S.SPAN_ID, S.SERVICE, S.START_TIME]].rename(
        columns={S.SPAN_ID: S.PARENT_ID, S.SERVICE: "parent_service", S.START_TIME: "parent_start"}
    )
    return spans.dropna(subset=[S.PARENT_ID]).merge(
        parents, on=[S.TRACE_ID, S.PARENT_ID], how="left", validate="many_to_one"
    )


# ------------------------------------------------------------------ determinism, schema


def test_same_seed_gives_identical_table():
    graph = online_boutique_graph()
    first = simulate_traces(graph, 2_000, random_seed=5)
    again = simulate_traces(graph, 2_000, random_seed=5)
    pd.testing.assert_frame_equal(first.spans, again.spans, check_exact=True)
    pd.testing.assert_frame_equal(
        first.truth.latency.drop(columns="distribution"),
        again.truth.latency.drop(columns="distribution"),
    )
    from_generator = simulate_traces(graph, 2_000, random_seed=np.random.default_rng(5))
    pd.testing.assert_frame_equal(first.spans, from_generator.spans, check_exact=True)
    other = simulate_traces(graph, 2_000, random_seed=6)
    assert not first.spans[S.LATENCY].equals(other.spans[S.LATENCY])


def test_random_seed_is_required():
    with pytest.raises(TypeError):
        simulate_traces(online_boutique_graph(), 10)  # type: ignore[call-arg]
    assert len(simulate_traces(small_graph(), 10, random_seed=None).spans) >= 30


def test_schema_and_dtypes_equal_a_read_table(boutique):
    spans = boutique.spans
    read = bayesperf.read_traces(
        pd.DataFrame(
            {
                "trace_id": ["t", "t"],
                "span_id": ["0", "1"],
                "parent_id": [None, "0"],
                "service": ["a", "b"],
                "operation": ["x", "y"],
                "start_time": [1, 2],
                "latency": [1.0, 2.0],
                "error": [False, True],
            }
        )
    )
    assert tuple(spans.columns) == S.SPAN_COLUMNS
    for col in S.SPAN_COLUMNS:  # categorical dtypes compare their categories: compare kinds
        ours, theirs = spans[col].dtype, read[col].dtype
        if isinstance(theirs, pd.CategoricalDtype):
            assert isinstance(ours, pd.CategoricalDtype), col
            assert ours.categories.dtype == theirs.categories.dtype, col
        else:
            assert ours == theirs, col
    categories = spans[S.SERVICE].cat.categories
    assert spans[S.CALLER].cat.categories.equals(categories)
    assert spans[S.CALLEE].cat.categories.equals(categories)
    report = spans.attrs["read_report"]
    assert report.format == "simulated" and report.kept == len(spans) == report.records
    # Reading the simulated table back changes nothing: it is exactly a read table.
    pd.testing.assert_frame_equal(bayesperf.read_traces(spans), spans, check_exact=True)


def test_call_tree_is_consistent(boutique):
    spans = boutique.spans
    n = boutique.truth.n_traces
    roots = spans[spans[S.PARENT_ID].isna()]
    assert len(roots) == n == spans[S.TRACE_ID].nunique()
    assert (roots[S.SPAN_ID] == "0").all() and roots[S.CALLER].isna().all()
    assert (spans[S.SERVICE] == spans[S.CALLEE]).all()
    # The caller column is what parent links imply (what a reader would derive).
    derived = build_span_table(
        [RawSpans(spans.drop(columns=[S.CALLER, S.CALLEE]), source="x")], format="x"
    )
    assert derived[S.CALLER].equals(spans[S.CALLER])
    kids = children_of(spans)
    assert (kids["parent_service"].astype("str") == kids[S.CALLER].astype("str")).all()
    assert (kids[S.START_TIME] > kids["parent_start"]).all()
    # Rows are sorted by trace and start time, and span ids number them within a trace.
    order = spans.groupby(S.TRACE_ID, sort=False).cumcount().astype("str")
    assert (order == spans[S.SPAN_ID]).all()
    assert (
        spans.groupby(S.TRACE_ID, sort=False)[S.START_TIME].diff().dropna() >= pd.Timedelta(0)
    ).all()


def test_siblings_start_in_spec_order(boutique):
    graph = boutique.graph
    slot = {}
    for caller in graph.services:
        base = 0
        for call in graph.calls[caller]:
            slot[(caller, call.callee)] = base
            base += call.repeat
    kids = children_of(boutique.spans)
    kids["slot"] = [
        slot[pair]
        for pair in zip(kids[S.CALLER].astype("str"), kids[S.CALLEE].astype("str"), strict=True)
    ]
    kids = kids.sort_values([S.TRACE_ID, S.PARENT_ID, S.START_TIME], kind="stable")
    same_parent = (kids[S.TRACE_ID] == kids[S.TRACE_ID].shift()) & (
        kids[S.PARENT_ID] == kids[S.PARENT_ID].shift()
    )
    assert (kids["slot"].diff()[same_parent] >= 0).all()
    assert (kids[S.START_TIME].diff()[same_parent] > pd.Timedelta(0)).all()


def test_start_and_arrivals():
    sim = simulate_traces(
        small_graph(), 5_000, random_seed=3, start="2023-05-01 12:00", arrival_rate=50.0
    )
    roots = sim.spans[sim.spans[S.PARENT_ID].isna()]
    assert roots[S.START_TIME].iloc[0] == pd.Timestamp("2023-05-01 12:00", tz="UTC")
    gaps = roots[S.START_TIME].diff().dropna().dt.total_seconds()
    # Mean inter-arrival 1/50 s; exponential gaps have sd = mean, so SE = 0.02/sqrt(4999).
    assert abs(gaps.mean() - 0.02) < Z * 0.02 / math.sqrt(len(gaps))


# ------------------------------------------------------------------ truth is the truth


def test_branching_frequency_matches_spec(boutique):
    spans = boutique.spans
    graph = boutique.graph
    n_spans = spans[S.SERVICE].astype("str").value_counts()
    kids = spans.dropna(subset=[S.PARENT_ID])
    for caller in ("frontend", "checkoutservice", "recommendationservice"):
        n = int(n_spans[caller])
        for call in graph.calls[caller]:
            edge = kids[(kids[S.CALLER] == caller) & (kids[S.CALLEE] == call.callee)]
            per_parent = edge.groupby([S.TRACE_ID, S.PARENT_ID]).size()
            assert (per_parent == call.repeat).all(), (caller, call.callee)
            p, freq = call.probability, len(per_parent) / n
            # Binomial(n, p) fraction of caller spans that made the call: 4 SE.
            se = math.sqrt(p * (1 - p) / n)
            assert abs(freq - p) <= Z * se + 1e-12, (caller, call.callee, freq, p, n)


def test_quantiles_of_data_rich_pairs(boutique):
    spans = boutique.spans
    truth = boutique.truth.latency
    pairs = [
        ("frontend", "currencyservice"),  # zero-inflated log-normal, ~57,000 spans
        ("frontend", "productcatalogservice"),  # mixture, ~16,000
        ("frontend", "cartservice"),  # gamma, ~14,000
        ("frontend", "adservice"),  # Weibull, ~10,000
        ("recommendationservice", "productcatalogservice"),  # log-normal, ~8,000
    ]
    for caller, callee in pairs:
        row = truth.loc[(caller, callee)]
        latency = spans.loc[
            (spans[S.CALLER] == caller) & (spans[S.CALLEE] == callee), S.LATENCY
        ].to_numpy()
        assert len(latency) == row["count"] > 5_000
        n = len(latency)
        for name, q in (("median", 0.5), ("p95", 0.95)):
            empirical = np.quantile(latency, q)
            # The true CDF at the empirical q-quantile is q +- sqrt(q(1-q)/n): 4 SE.
            level = float(row["distribution"].cdf(empirical))
            assert abs(level - q) <= Z * math.sqrt(q * (1 - q) / n), (caller, callee, name)
            assert row[name] == pytest.approx(float(row["distribution"].quantile(q)))
        # Sample mean within 4 standard errors (finite variance for all these laws).
        se = latency.std() / math.sqrt(n)
        assert abs(latency.mean() - row["mean"]) <= Z * se, (caller, callee)


def test_transition_truth_matches_counts_and_hand_computation():
    from bayesperf.summaries.transitions import count_transitions

    sim = simulate_traces(small_graph(), 4_000, random_seed=8)
    trans = sim.truth.transitions.set_index(["source", "target"])
    # Per api span: db 0.3, cache 2 (p=1, repeat 2), END (1-0.3)(1-1) = 0.
    assert trans.loc[("api", "db"), "calls_probability"] == pytest.approx(0.3 / 2.3)
    assert trans.loc[("api", "cache"), "calls_probability"] == pytest.approx(2 / 2.3)
    assert trans.loc[("api", S.END), "calls_probability"] == 0
    assert trans.loc[("db", S.END), "calls_probability"] == 1
    assert trans.loc[("api", "db"), "expected_count"] == pytest.approx(1_200)
    sums = sim.truth.transitions.groupby("source")["calls_probability"].sum()
    np.testing.assert_allclose(sums, 1.0)
    # The realised counts are exactly the package's "calls"-mode transition counts.
    counted = count_transitions(sim.spans, mode="calls").counts
    realised = trans["count"][trans["count"] > 0]
    assert realised.sort_index().to_dict() == counted.to_dict()


def test_truth_of_every_pair_is_its_law(boutique):
    truth = boutique.truth.latency
    graph = boutique.graph
    pairs = {(caller, call.callee) for caller, call in graph.edges()}
    assert set(truth.index) == pairs
    assert truth.loc[(S.START, "frontend"), "distribution"] == graph.root_latency
    realised = boutique.spans.groupby([S.CALLER, S.CALLEE], observed=True).size()
    for (caller, callee), count in realised.items():
        assert truth.loc[(caller, callee), "count"] == count
    assert truth["count"].sum() == len(boutique.spans)
    np.testing.assert_allclose(truth["expected_count"].sum() / 20_000, 7.249)


def test_mixture_quantile_inverts_cdf():
    mixtures = [
        Mixture([(0.8, LogNormal(1.0, 0.3)), (0.2, LogNormal(20.0, 0.3))]),
        Mixture([(0.5, Gamma(2.0, 3.0)), (0.3, Weibull(10.0, 0.8)), (0.2, LogNormal(0.1, 1))]),
        Mixture([(0.9, ZeroInflated(LogNormal(1.0, 0.5), 0.1)), (0.1, LogNormal(3.0, 0.2))]),
    ]
    levels = np.array([0.001, 0.01, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999])
    for mix in mixtures:
        # The third has mass 0.09 at zero: levels up to 0.09 are all at 0.
        x = mix.quantile(levels[2:] if mix is mixtures[2] else levels)
        assert np.all(np.diff(x) > 0)
        np.testing.assert_allclose(mix.cdf(x), levels[-len(x) :], rtol=0, atol=1e-11)
    # Zero mass: quantiles at or below the zero probability are 0.
    zero = mixtures[2]
    assert zero.cdf(0.0) == pytest.approx(0.09)
    assert zero.quantile(0.05) == 0.0 and zero.quantile(0.09) == 0.0 and zero.quantile(0.0) == 0.0
    assert zero.quantile(0.0901) > 0
    assert zero.quantile(1.0) == math.inf
    # A one-component mixture is its component.
    single = Mixture([(1.0, Gamma(3.0, 2.0))])
    np.testing.assert_allclose(single.quantile(levels), Gamma(3.0, 2.0).quantile(levels))
    # Sampling agrees with the CDF: Kolmogorov-Smirnov at a fixed seed.
    draws = mixtures[0].sample(np.random.default_rng(0), 20_000)
    assert stats.kstest(draws, mixtures[0].cdf).pvalue > 1e-3


def test_distributions_agree_with_scipy():
    q = np.array([0.01, 0.5, 0.95, 0.99])
    cases = [
        (LogNormal(3.0, 0.7), stats.lognorm(s=0.7, scale=3.0)),
        (Gamma(4.0, 2.5), stats.gamma(a=2.5, scale=4.0 / 2.5)),
        (Weibull(2.0, 1.3), stats.weibull_min(c=1.3, scale=2.0)),
    ]
    for ours, ref in cases:
        np.testing.assert_allclose(ours.quantile(q), ref.ppf(q), rtol=1e-10)
        np.testing.assert_allclose(ours.cdf(ref.ppf(q)), q, rtol=1e-10)
        assert ours.mean == pytest.approx(ref.mean(), rel=1e-12)
        assert ours.cdf(-1.0) == 0.0 and ours.cdf(0.0) == 0.0
        draws = ours.sample(np.random.default_rng(1), 20_000)
        assert stats.kstest(draws, ref.cdf).pvalue > 1e-3


def test_zero_and_error_probabilities_produce_their_rates():
    sim = simulate_traces(small_graph(zero_prob=0.2, error_prob=0.1), 20_000, random_seed=4)
    spans = sim.spans
    db = spans[spans[S.CALLEE] == "db"]
    n = len(db)
    # Zeros and errors are Bernoulli per span: 4 SE.
    assert abs((db[S.LATENCY] == 0).mean() - 0.2) <= Z * math.sqrt(0.2 * 0.8 / n)
    assert abs(db[S.ERROR].mean() - 0.1) <= Z * math.sqrt(0.1 * 0.9 / n)
    others = spans[spans[S.CALLEE] != "db"]
    assert (others[S.LATENCY] > 0).all() and not others[S.ERROR].any()
    row = sim.truth.latency.loc[("api", "db")]
    assert row["zero_prob"] == 0.2 and row["family"] == "zero-inflated"
    assert row["distribution"].quantile(0.15) == 0.0
    # Median of the zero-inflated law: the base's (0.5 - 0.2) / 0.8 quantile.
    assert row["median"] == pytest.approx(float(LogNormal(1.0, 0.4).quantile(0.375)))


def test_inclusive_latency_adds_children():
    sim = simulate_traces(small_graph(), 10_000, random_seed=9, inclusive=True)
    spans = sim.spans
    kids = children_of(spans)
    summed = kids.groupby([S.TRACE_ID, S.PARENT_ID])[S.LATENCY].sum()
    roots = spans[spans[S.PARENT_ID].isna()].set_index([S.TRACE_ID, S.SPAN_ID])[S.LATENCY]
    own = roots - summed.reindex(roots.index, fill_value=0.0).to_numpy()
    assert (own > 0).all()
    # Own time of the root is LogNormal(5, 0.5): its mean within 4 SE.
    assert abs(own.mean() - LogNormal(5.0, 0.5).mean) <= Z * own.std() / math.sqrt(len(own))
    truth = sim.truth.latency
    assert truth[["median", "p95", "p99"]].isna().all().all()
    # Exact inclusive mean: 5 e^(0.125) + 0.3 * 1 e^(0.08) + 2 * 0.2.
    expected = LogNormal(5.0, 0.5).mean + 0.3 * LogNormal(1.0, 0.4).mean + 2 * 0.2
    assert truth.loc[(S.START, "api"), "mean"] == pytest.approx(expected)
    se = roots.std() / math.sqrt(len(roots))
    assert abs(roots.mean() - expected) <= Z * se


def test_rare_pairs_get_few_calls():
    graph = random_call_graph(60, random_seed=2, rare_pairs=8, rare_calls=3.0, n_traces=5_000)
    assert random_call_graph(60, random_seed=2, rare_pairs=8, n_traces=5_000) == graph
    sim = simulate_traces(graph, 5_000, random_seed=2)
    truth = sim.truth.latency
    rare = np.isclose(truth["expected_count"], 3.0)
    assert rare.sum() == 8
    counts = truth.loc[rare, "count"]
    # Each rare count is about Poisson(3): P(> 15) < 1e-6; the total about Poisson(24).
    assert counts.max() <= 15
    assert abs(counts.sum() - 24) <= Z * math.sqrt(24)
    # The other pairs are data-rich, and the callees of rare pairs still get traffic.
    assert truth.loc[~rare, "count"].min() >= 100
    callees = truth.index[rare].get_level_values(1)
    served = sim.spans[S.SERVICE].astype("str").value_counts()
    assert (served.reindex(callees) >= 100).all()
    medians = truth.loc[~rare, "median"]
    assert 0.1 <= medians.min() < 2 and 100 < medians.max() <= 500


def test_random_call_graph_families_and_seed():
    graph = random_call_graph(
        40, random_seed=1, families=("lognormal", "gamma", "weibull", "mixture")
    )
    families = {type(c.latency).__name__ for s in graph.services for c in graph.calls[s]}
    assert families == {"LogNormal", "Gamma", "Weibull", "Mixture"}
    assert random_call_graph(40, random_seed=2) != random_call_graph(40, random_seed=1)
    with pytest.raises(ValueError, match="unknown latency families"):
        random_call_graph(10, random_seed=0, families=("pareto",))
    with pytest.raises(ValueError, match="rare_pairs=50"):
        random_call_graph(5, random_seed=0, rare_pairs=50)


def test_online_boutique_shape():
    graph = online_boutique_graph()
    assert graph.root == "frontend"
    callees = {s: {c.callee for c in graph.calls[s]} for s in graph.services}
    assert callees["frontend"] == {
        "currencyservice",
        "productcatalogservice",
        "cartservice",
        "recommendationservice",
        "adservice",
        "checkoutservice",
    }
    assert callees["recommendationservice"] == {"productcatalogservice"}
    assert callees["checkoutservice"] == {
        "cartservice",
        "productcatalogservice",
        "shippingservice",
        "currencyservice",
        "paymentservice",
        "emailservice",
    }
    assert len(graph.services) == 10


# ------------------------------------------------------------------ errors


def graph_with(calls, root="a"):
    return CallGraph(root=root, root_latency=LogNormal(1.0, 0.5), calls=calls)


LAT = LogNormal(1.0, 0.5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: graph_with({"a": [Call("b", 1.5, LAT)], "b": []}), r"'a' -> 'b'.*probability 1.5"),
        (lambda: graph_with({"a": [Call("b", -0.1, LAT)], "b": []}), r"'a' -> 'b'.*probability"),
        (lambda: graph_with({"a": [Call("b", math.nan, LAT)], "b": []}), r"'a' -> 'b'"),
        (lambda: graph_with({"a": [Call("b", 0.5, LAT, zero_prob=1.0)], "b": []}), "zero_prob"),
        (lambda: graph_with({"a": [Call("b", 0.5, LAT, error_prob=2)], "b": []}), "error_prob"),
        (lambda: graph_with({"a": [Call("b", 0.5, LAT, repeat=0)], "b": []}), "'a' -> 'b'.*repeat"),
        (lambda: graph_with({"a": [Call("b", 0.5, "fast")], "b": []}), "'a' -> 'b'.*latency"),
        (lambda: graph_with({"a": [Call("c", 1.0, LAT)], "b": []}), "unknown service 'c'"),
        (lambda: graph_with({"b": []}), "root service 'a'"),
        (
            lambda: graph_with(
                {"a": [Call("b", 1, LAT)], "b": [Call("c", 1, LAT)], "c": [Call("b", 1, LAT)]}
            ),
            "cycle: b -> c -> b",
        ),
        (lambda: graph_with({"a": [Call("a", 0.1, LAT)]}), "cycle: a -> a"),
        (
            lambda: graph_with({"a": [Call("b", 1, LAT), Call("b", 1, LAT)], "b": []}),
            "listed twice",
        ),
        (lambda: graph_with({"a": [], "START": []}), "reserved"),
        (lambda: LogNormal(0.0, 0.5), "LogNormal: median_ms"),
        (lambda: LogNormal(1.0, -1.0), "LogNormal: sigma"),
        (lambda: Gamma(-2.0, 1.0), "Gamma: mean_ms"),
        (lambda: Gamma(2.0, 0.0), "Gamma: shape"),
        (lambda: Weibull(math.inf, 1.0), "Weibull: scale_ms"),
        (lambda: Weibull(1.0, -1.0), "Weibull: shape"),
        (lambda: Mixture([(0.5, LAT), (0.4, LAT)]), "sum to 1"),
        (lambda: Mixture([(1.2, LAT), (-0.2, LAT)]), "weight of component 1"),
        (lambda: Mixture([]), "at least one"),
        (lambda: LAT.quantile(1.5), r"\[0, 1\]"),
        (lambda: simulate_traces(small_graph(), 0, random_seed=0), "n_traces"),
        (lambda: simulate_traces(small_graph(), 5, random_seed=0, arrival_rate=0), "arrival_rate"),
    ],
)
def test_bad_specs_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
