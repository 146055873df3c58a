"""RequestModel against a known call graph: end-to-end quantiles and what-ifs vs the truth."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import RequestModel
from bayesperf.models import ConvergenceWarning
from bayesperf.simulate import Call, CallGraph, LogNormal, simulate_traces
from bayesperf.summaries.calls import summarize_calls

SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}
QS = [0.5, 0.95, 0.99]


def shop(db_median=4.0, db_probability=0.5, cart_sigma=0.5) -> CallGraph:
    """A tree: api calls auth, cart (60%, twice) and catalog; catalog calls db (50%)."""
    return CallGraph(
        root="api",
        root_latency=LogNormal(2.0, 0.3),
        root_operation="GET /",
        calls={
            "api": [
                Call("auth", 1.0, LogNormal(1.0, 0.4)),
                Call("cart", 0.6, LogNormal(3.0, cart_sigma), repeat=2),
                Call("catalog", 1.0, LogNormal(2.0, 0.3)),
            ],
            "auth": [],
            "cart": [],
            "catalog": [Call("db", db_probability, LogNormal(db_median, 0.6))],
            "db": [],
        },
    )


def truth(graph: CallGraph, n=200_000) -> np.ndarray:
    """End-to-end P50/P95/P99 of a graph by brute force (many simulated traces)."""
    spans = simulate_traces(graph, n, random_seed=99, inclusive=True).spans
    return np.quantile(spans.loc[spans["parent_id"].isna(), "latency"], QS)


@pytest.fixture(scope="module")
def fitted():
    spans = simulate_traces(shop(), 3000, random_seed=1, inclusive=True).spans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RequestModel(n_draws=100, n_requests=4000).fit(spans, random_seed=2, **SAMPLER)
    return model, spans


def covers(row_lower, row_upper, value, slack=0.02):
    """Interval covers the value (with a little room for the brute-force truth's own noise)."""
    return row_lower * (1 - slack) <= value <= row_upper * (1 + slack)


@pytest.mark.slow
def test_end_to_end_quantiles_of_a_known_graph(fitted):
    model, spans = fitted
    table = model.summary()
    assert list(table.index) == [("api", "GET /")]
    row = table.iloc[0]
    assert row["n"] == 3000
    expected = truth(shop())
    for name, value in zip(("p50", "p95", "p99"), expected, strict=True):
        assert covers(row[f"{name}_lower"], row[f"{name}_upper"], value), (name, value, row)
        # Intervals are informative: within 25% of the median.
        assert row[f"{name}_upper"] / row[f"{name}_lower"] < 1.25
    observed = np.quantile(spans.loc[spans["parent_id"].isna(), "latency"], QS)
    np.testing.assert_allclose(
        row[["empirical_p50", "empirical_p95", "empirical_p99"]], observed, rtol=0.02
    )
    # Independent spans in this graph: the estimated correlations are near 0.
    assert model.copula.table()["total"].max() < 0.1


@pytest.mark.slow
def test_what_if_changes_match_the_changed_graph(fitted):
    model, _ = fitted
    faster_db = model.what_if(scale={"db": 0.5})
    expected = truth(shop(db_median=2.0))
    for j, name in enumerate(("p50", "p95", "p99")):
        row = faster_db.loc[("api", "GET /", name)]
        assert covers(row["after_lower"], row["after_upper"], expected[j]), (name, row)
        assert row["change_upper"] <= 0  # faster in every simulated draw
    # A cache that is never missed: catalog no longer calls db.
    no_db = model.what_if(call_prob={("catalog", "db"): 0.0})
    expected = truth(shop(db_probability=0.0))
    for j, name in enumerate(("p50", "p95", "p99")):
        row = no_db.loc[("api", "GET /", name)]
        assert covers(row["after_lower"], row["after_upper"], expected[j]), (name, row)
    assert no_db.loc[("api", "GET /", "p99"), "p_improves"] > 0.95
    # Nothing changed: after = today exactly (same requests), no improvement.
    same = model.what_if(scale={"db": 1.0})
    np.testing.assert_allclose(same["after_median"], same["today_median"])
    assert (same["p_improves"] == 0).all()


@pytest.mark.slow
def test_replace_by_a_measured_summary(fitted):
    model, _ = fitted
    slow_cart = simulate_traces(shop(cart_sigma=1.2), 3000, random_seed=5, inclusive=True).spans
    measured = summarize_calls(slow_cart).self_time
    cart = measured.select([g for g in measured.groups if g[0] == "cart"])
    table = model.what_if(replace={"cart": cart})
    expected = truth(shop(cart_sigma=1.2))
    for name, value in zip(("p95", "p99"), expected[1:], strict=True):
        row = table.loc[("api", "GET /", name)]
        assert covers(row["after_lower"], row["after_upper"], value, slack=0.05), row
        assert row["p_worsens"] > 0.95


def test_what_if_input_errors(fitted):
    model, _ = fitted
    with pytest.raises(KeyError, match="no service 'nope'"):
        model.what_if(scale={"nope": 0.5})
    with pytest.raises(KeyError, match="'cart' has operations"):
        model.what_if(add_ms={("cart", "nope"): 1.0})
    with pytest.raises(ValueError, match="scale factors must be >= 0"):
        model.what_if(scale={"db": -1.0})
    with pytest.raises(ValueError, match="call_prob"):
        model.what_if(call_prob={("db", "auth"): 0.5})
    with pytest.raises(TypeError, match="LatencySummary or LatencyDraws"):
        model.what_if(replace={"db": [1.0, 2.0]})


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    model, _ = fitted
    path = model.save(tmp_path / "request.nc")
    loaded = bayesperf.load(path)
    assert isinstance(loaded, RequestModel)
    pd.testing.assert_frame_equal(loaded.summary(), model.summary())


def test_predictive_check_on_its_own_data_and_subtrees(fitted):
    model, spans = fitted
    check = model.predictive_check(spans)
    assert list(check.index.get_level_values("quantile")) == ["p50", "p95", "p99"]
    assert check["covered"].all()
    subtrees = model.predictive_check(spans, spans=True, min_requests=50)
    assert {s for s, _ in subtrees.index.droplevel(2)} == {"api", "catalog"}


def test_lognormal_self_times_and_independent_spans_are_options():
    spans = simulate_traces(shop(), 500, random_seed=3, inclusive=True).spans
    model = RequestModel("lognormal", n_draws=20, n_requests=500, dependence=False)
    model.fit(spans, random_seed=1)
    table = model.summary()
    row = table.iloc[0]
    assert row["p50_lower"] < row["empirical_p50"] * 1.1
    assert model.get_config()["latency"]["config"]["family"] == "lognormal"
    # Seeded: the same model twice gives the same numbers.
    again = RequestModel("lognormal", n_draws=20, n_requests=500, dependence=False)
    pd.testing.assert_frame_equal(again.fit(spans, random_seed=1).summary(), table)


def test_fit_errors_are_clear():
    spans = bayesperf.datasets.load_online_boutique()
    with pytest.raises(ValueError, match="no requests"):
        RequestModel().fit(spans[spans["parent_id"].notna()])
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        RequestModel(n_draws=0)
    with pytest.raises(ValueError, match="unknown latency 'pareto'"):
        RequestModel("pareto")
    with pytest.raises(TypeError, match="fit\\(\\) and latency_draws\\(\\)"):
        RequestModel(latency=object())
    with pytest.raises(bayesperf.NotFittedError):
        RequestModel().summary()
