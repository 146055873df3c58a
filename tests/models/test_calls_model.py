"""CallModel: the exact Dirichlet-process posterior of call patterns, and its base measure."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesperf
from bayesperf.models.calls import NEW_PATTERN, CallModel
from bayesperf.summaries.calls import summarize_calls


def spans_with_patterns(counts: dict[tuple[int, int], int]) -> pd.DataFrame:
    """Root spans calling ``a`` and ``b`` (a, b) times each, sequentially; ``counts`` traces."""
    rows, trace = [], 0
    for (n_a, n_b), n_traces in counts.items():
        for _ in range(n_traces):
            t = f"t{trace}"
            rows.append((t, "r", None, "fe", "get", 0.0, 100.0))
            start = 1.0
            for k, (service, n) in enumerate((("a", n_a), ("b", n_b))):
                for i in range(n):
                    rows.append((t, f"{service}{i}", "r", service, "op", start, 2.0 + k))
                    start += 5.0
            trace += 1
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    return frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))


def test_pattern_probabilities_are_exact_beta_marginals():
    spans = spans_with_patterns({(1, 0): 30, (0, 1): 10, (2, 1): 5})
    model = CallModel(concentration=1.0).fit(spans)
    table = model.pattern_probabilities(ci_prob=0.9)
    root = table[(table["service"] == "fe")].set_index("pattern")
    # Dirichlet(30, 10, 5, alpha=1): Beta(c, 46 - c) marginals.
    for pattern, count in (("a:op", 30), ("b:op", 10), ("a:op; a:op; b:op", 5), (NEW_PATTERN, 1)):
        row = root.loc[pattern]
        assert row["mean"] == pytest.approx(count / 46)
        assert row["lower"] == pytest.approx(stats.beta.ppf(0.05, count, 46 - count))
        assert row["upper"] == pytest.approx(stats.beta.ppf(0.95, count, 46 - count))
    assert root["mean"].sum() == pytest.approx(1.0)
    # A node type seen with one pattern keeps it: no new-pattern row.
    assert (table[table["service"] == "a"]["pattern"] == "(no calls)").all()


def test_call_summary_counts_calls_and_their_probability():
    spans = spans_with_patterns({(1, 0): 30, (0, 1): 10, (2, 1): 5})
    table = CallModel().fit(spans).summary(draws=4000, random_seed=1)
    a = table.loc[("fe", "get", "a", "op")]
    b = table.loc[("fe", "get", "b", "op")]
    assert a["observed_calls"] == pytest.approx((30 + 2 * 5) / 45)
    assert b["observed_calls"] == pytest.approx((10 + 5) / 45)
    assert a["p_call_lower"] < 35 / 45 < a["p_call_upper"]
    assert a["calls_lower"] < 40 / 45 < a["calls_upper"]
    assert a["parallel"] == 0.0
    assert a["spans"] == 45


def test_base_measure_draws_new_combinations_from_independent_stage_counts():
    """With a huge concentration every pattern is new: stage counts are independent."""
    spans = spans_with_patterns({(1, 0): 50, (0, 1): 50})
    model = CallModel(concentration=1e9).fit(spans)
    g = model.graph
    pairs, p_any, mean = g.new_pattern_moments()
    a, b = g.code("a", "op"), g.code("b", "op")
    got = dict(zip(pairs[1].tolist(), zip(p_any, mean, strict=True), strict=True))
    assert got[a] == pytest.approx((0.5, 0.5))
    assert got[b] == pytest.approx((0.5, 0.5))
    table = model.summary(draws=200, random_seed=0)
    assert table.loc[("fe", "get", "a", "op"), "p_call_mean"] == pytest.approx(0.5, abs=1e-6)


def test_real_traces_fit_and_errors():
    model = CallModel().fit(bayesperf.datasets.load_online_boutique())
    table = model.summary()
    convert = table.loc[
        (
            "frontend",
            "hipstershop.Frontend/Recv.",
            "frontend",
            "hipstershop.CurrencyService/Convert",
        )
    ]
    assert convert["observed_calls"] == pytest.approx(1021 / 502)
    with pytest.raises(ValueError, match="concentration must be a positive number"):
        CallModel(concentration=0)
    with pytest.raises(ValueError, match="no spans"):
        CallModel().fit(summarize_calls(bayesperf.datasets.load_online_boutique().iloc[:0]))


def test_client_spans_are_not_where_a_call_is_decided():
    spans = bayesperf.datasets.load_online_boutique()
    graph = CallModel().fit(spans).graph
    parents, children = graph.calls_between("frontend", "adservice")
    assert [graph.nodes[p] for p in parents] == [("frontend", "hipstershop.Frontend/Recv.")]
    assert children[graph.code("frontend", "hipstershop.AdService/GetAds")]
    assert children[graph.code("adservice", "hipstershop.AdService/GetAds")]
    assert np.sum(children) == 6  # the client span and the five adservice node types
