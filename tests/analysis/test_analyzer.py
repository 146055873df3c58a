"""PerformanceAnalyzer on simulated traces with a known injected slowdown.

One clean baseline window and one window with a slowed pair share a module-scoped
analyzer, so the folder fits each distinct window once.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayesperf.analysis import PerformanceAnalyzer, benjamini_hochberg
from bayesperf.analysis.anomalies import combine_within_traces, tail_probabilities
from bayesperf.models import ConvergenceWarning, LatencyModel
from bayesperf.simulate import Call, CallGraph, LogNormal, simulate_traces

FAST = {"draws": 400, "tune": 400, "chains": 2, "progressbar": False}
# Short chains may miss the ESS >= 400 bar; these tests check answers, not convergence.
pytestmark = pytest.mark.filterwarnings("ignore::bayesperf.models.ConvergenceWarning")

SLOW_PAIR = ("front", "db")


def graph(db_median: float = 50.0) -> CallGraph:
    """front calls cart 3x (2 ms), pay 20% (30 ms), db once (50 ms: the true hotspot)."""
    return CallGraph(
        root="front",
        root_latency=LogNormal(10.0, 0.4),
        calls={
            "front": [
                Call("cart", 1.0, LogNormal(2.0, 0.3), repeat=3),
                Call("pay", 0.2, LogNormal(30.0, 0.4)),
                Call("db", 1.0, LogNormal(db_median, 0.3)),
            ],
            "cart": [],
            "pay": [],
            "db": [],
        },
    )


def slowed(spans: pd.DataFrame, share: float, factor: float, seed: int):
    """Multiply the front→db latency of a random ``share`` of traces by ``factor``."""
    rng = np.random.default_rng(seed)
    traces = spans["trace_id"].unique()
    hit = set(rng.choice(traces, size=int(share * len(traces)), replace=False))
    is_pair = (spans["caller"].astype("str") == SLOW_PAIR[0]) & (
        spans["callee"].astype("str") == SLOW_PAIR[1]
    )
    rows = is_pair & spans["trace_id"].isin(hit)
    out = spans.copy()
    out.loc[rows, "latency"] = out.loc[rows, "latency"] * factor
    return out, hit


@pytest.fixture(scope="module")
def analyzer():
    return PerformanceAnalyzer(random_seed=1, **FAST)


@pytest.fixture(scope="module")
def baseline():
    return simulate_traces(graph(), 400, random_seed=11).spans


@pytest.fixture(scope="module")
def fitted(analyzer, baseline):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return analyzer.latency_model(baseline)


# ----------------------------------------------------------------- latency statistics
def test_latency_distribution_has_the_seed_keys_each_with_an_interval(analyzer, baseline, fitted):
    stats = analyzer.analyze_latency_distribution(baseline)
    for key in ("mean", "median", "p95", "p99"):
        assert isinstance(stats[key], float)
        assert stats[f"{key}_lower"] <= stats[key] <= stats[f"{key}_upper"]
    assert stats["median"] < stats["p95"] < stats["p99"]
    # The seed's print loop works.
    lines = [f"  {key}: {value:.2f} ms" for key, value in stats.items()]
    assert len(lines) == 12
    # One pair, with the root's missing caller as None.
    pair = analyzer.analyze_latency_distribution(baseline, pair=("front", "db"))
    assert pair["median_lower"] < 50.0 < pair["median_upper"]
    root = analyzer.analyze_latency_distribution(baseline, pair=(None, "front"))
    assert root["median_lower"] < 10.0 < root["median_upper"]


def test_the_model_is_fit_once_per_distinct_data(analyzer, baseline, fitted):
    assert analyzer.latency_model(baseline.copy()) is fitted  # same content, same model
    assert analyzer.latency_model(fitted) is fitted


def test_unknown_pair_names_the_groups(analyzer, baseline, fitted):
    with pytest.raises(KeyError, match="unknown pair"):
        analyzer.analyze_latency_distribution(baseline, pair=("front", "nowhere"))


# --------------------------------------------------------------------------- hotspots
def test_hotspots_recover_the_true_top_pair(analyzer, baseline, fitted):
    table = analyzer.identify_hotspots(baseline, top_n=2)
    assert len(table) == 2
    assert table.index[0] == SLOW_PAIR
    assert table.loc[SLOW_PAIR, "p_top2"] > 0.99
    # Truth: ~50 ms * 1 call per trace for db; cart 3 * 2 ms; pay 0.2 * 30 ms.
    row = table.loc[SLOW_PAIR]
    assert row["ms_per_trace_lower"] < 52.0 < row["ms_per_trace_upper"]
    full = analyzer.identify_hotspots(baseline, top_n=4)
    assert full["share"].sum() == pytest.approx(1.0)  # all four pairs
    assert "calls_per_trace" in str(full)  # prints as a readable table


def test_hotspots_per_second(analyzer, baseline, fitted):
    table = analyzer.identify_hotspots(baseline, top_n=1, per="second")
    assert table.index[0] == SLOW_PAIR
    assert "ms_per_s" in table.columns


# -------------------------------------------------------------------------- anomalies
def test_anomalies_find_the_slowed_traces(analyzer, fitted):
    window = simulate_traces(graph(), 400, random_seed=12).spans
    scored, hit = slowed(window, share=0.1, factor=5.0, seed=3)
    flagged = analyzer.detect_anomalies(scored, baseline=fitted)
    found = set(flagged["trace_id"])
    precision = len(found & hit) / max(len(found), 1)
    recall = len(found & hit) / len(hit)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert set(zip(flagged["caller"], flagged["callee"], strict=True)) == {SLOW_PAIR}
    assert (flagged["q_value"] <= 0.05).all()
    assert flagged.attrs["tested"] == 400


def test_clean_window_flags_at_most_the_fdr_level(analyzer, fitted):
    clean = simulate_traces(graph(), 400, random_seed=13).spans
    flagged = analyzer.detect_anomalies(clean, baseline=fitted)
    assert len(flagged) <= 0.05 * 400 * 0.2, len(flagged)


def test_a_window_scored_against_itself(analyzer):
    # Without a baseline each span is scored against the window's other spans: a
    # trace far beyond all of them is flagged, a clean window flags (almost) nothing.
    window = simulate_traces(graph(), 400, random_seed=14).spans
    scored, hit = slowed(window, share=1 / 400, factor=30.0, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        flagged = analyzer.detect_anomalies(scored)  # the seed's call: no baseline
        clean = analyzer.detect_anomalies(window)
    assert set(flagged["trace_id"]) == hit
    assert len(clean) <= 1


def test_span_level_and_options(analyzer, fitted):
    window = simulate_traces(graph(), 200, random_seed=15).spans
    scored, hit = slowed(window, share=0.1, factor=5.0, seed=5)
    spans = analyzer.detect_anomalies(scored, baseline=fitted, level="span")
    assert {"span_id", "p_value", "q_value"} <= set(spans.columns)
    assert set(spans["trace_id"]) <= hit
    everything = analyzer.detect_anomalies(
        scored, baseline=fitted, flagged_only=False, tail="both", combine="bonferroni"
    )
    assert len(everything) == 200
    assert everything["flagged"].sum() >= 0.9 * len(hit)


#: Three front -> db spans: at the median, at 80 ms, and far beyond every span.
PROBE = pd.DataFrame(
    {"caller": ["front"] * 3, "callee": ["db"] * 3, "latency": [50.0, 80.0, 500.0]}
)


def test_parametric_and_dirichlet_predictives_agree_where_the_family_fits(baseline):
    # On lognormal data the lognormal family is right: both predictives give similar
    # tail probabilities inside the data and tiny ones far beyond it.
    fitted = LatencyModel("lognormal").fit(baseline, random_seed=1, **FAST)
    probe = PROBE
    model_p = tail_probabilities(fitted, probe, predictive="model")
    dp = tail_probabilities(fitted, probe)
    assert abs(model_p[0] - 0.5) < 0.05 and abs(dp[0] - 0.5) < 0.05
    assert abs(model_p[1] - dp[1]) < 0.02
    assert model_p[2] < 1e-10 and dp[2] < 1e-10
    unseen = tail_probabilities(fitted, probe.assign(callee="nowhere"))
    assert np.isnan(unseen).all()


def test_default_model_predictives_inside_and_beyond_the_data(fitted):
    # The nonparametric default: inside the data both predictives are the baseline's
    # own frequencies; 10x the median (7.7 sd of log-latency, beyond every span) is
    # far in its Pareto tail, below 1 / (n + 1) = 1 / 401.
    assert fitted.nonparametric
    probe = PROBE
    model_p = tail_probabilities(fitted, probe, predictive="model")
    dp = tail_probabilities(fitted, probe)
    assert abs(model_p[0] - 0.5) < 0.05 and abs(dp[0] - 0.5) < 0.05
    assert abs(model_p[1] - dp[1]) < 0.02
    assert model_p[2] < 1 / 401 and dp[2] < 1e-2 / 401


# --------------------------------------------------------------- regression and SLO
def test_compare_windows_finds_the_slowed_pair_only(analyzer, baseline, fitted):
    after = simulate_traces(graph(db_median=75.0), 400, random_seed=16).spans
    table = analyzer.compare_windows(baseline, after, q=0.99, threshold=0.1)
    assert table.index[0] == SLOW_PAIR
    assert table.loc[SLOW_PAIR, "p_regression"] > 0.99
    assert 1.3 < table.loc[SLOW_PAIR, "ratio"] < 1.7
    others = table.drop(index=[SLOW_PAIR])
    assert (others["p_regression"] < 0.9).all(), others["p_regression"]
    # A window against itself: two independent posteriors of the same data, so
    # P(ratio > 1.1) = P(N(0, 2 sd²) > log 1.1) stays below 0.5, nearer it the sparser
    # the pair (front->pay: 79 spans, measured 0.33), far from any decision threshold.
    same = analyzer.compare_windows(baseline, baseline)
    assert (same["p_regression"] < 0.4).all(), same["p_regression"]
    assert (same["p_increase"].between(0.2, 0.8)).all()


def test_slo_probability(analyzer, baseline, fitted):
    # db P99 truth: 50 * exp(0.3 * 2.326) = 100.7 ms.
    table = analyzer.slo_probability(baseline, threshold_ms=150.0, q=0.99)
    assert table.loc[SLOW_PAIR, "p_meets"] > 0.99
    tight = analyzer.slo_probability(baseline, threshold_ms=60.0, q=0.99)
    assert tight.loc[SLOW_PAIR, "p_meets"] < 0.01
    assert {"n", "p99", "p99_lower", "p99_upper"} <= set(table.columns)


# ------------------------------------------------------------------------- pieces
def test_benjamini_hochberg_matches_the_definition():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, np.nan])
    q = benjamini_hochberg(p)
    assert np.isnan(q[-1])
    expected = np.minimum.accumulate((p[:-1] * 8 / np.arange(1, 9))[::-1])[::-1]
    np.testing.assert_allclose(q[:-1], expected)


def test_simes_is_at_most_bonferroni():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, 300).astype(str)
    p = rng.uniform(size=300)
    simes = combine_within_traces(ids, p, "simes")["p_value"]
    bonf = combine_within_traces(ids, p, "bonferroni")["p_value"]
    assert (simes <= bonf + 1e-12).all()


# ------------------------------------------------------------------------- errors
def test_clear_errors():
    analyzer = PerformanceAnalyzer(**FAST)
    with pytest.raises(ValueError, match="no spans"):
        analyzer.analyze_latency_distribution(
            pd.DataFrame({"caller": [], "callee": [], "latency": []})
        )
    with pytest.raises(ValueError, match=r"lack column\(s\) \['latency'\]"):
        analyzer.identify_hotspots(
            pd.DataFrame({"caller": ["a"], "callee": ["b"], "trace_id": ["t"]})
        )
    with pytest.raises(TypeError, match="span table"):
        analyzer.slo_probability(42, 100.0)
    with pytest.raises(ValueError, match="alpha"):
        PerformanceAnalyzer(alpha=2.0)
    with pytest.raises(ValueError, match="family"):
        PerformanceAnalyzer(family="cauchy")
    with pytest.raises(ValueError, match="not fitted"):
        analyzer.latency_model(LatencyModel())


def test_option_errors(analyzer, baseline, fitted):
    with pytest.raises(ValueError, match="tail"):
        analyzer.detect_anomalies(baseline, baseline=fitted, tail="left")
    with pytest.raises(ValueError, match="top_n"):
        analyzer.identify_hotspots(baseline, top_n=0)
    with pytest.raises(ValueError, match="threshold_ms"):
        analyzer.slo_probability(fitted, threshold_ms=-1.0)
    with pytest.raises(ValueError, match="q must"):
        analyzer.compare_windows(fitted, fitted, q=99)


def test_seed_flat_csv_columns_are_accepted(analyzer, baseline, fitted, tmp_path):
    # The seed's parsed_traces.csv read back with pandas: plain strings, NaN callers.
    path = tmp_path / "parsed_traces.csv"
    baseline.to_csv(path, index=False)
    flat = pd.read_csv(path)
    assert analyzer.latency_model(flat) is fitted
    no_pairs = flat.drop(columns=["caller", "callee"])  # service + parent links only
    assert analyzer.latency_model(no_pairs) is fitted
    assert analyzer.latency_model(path) is fitted
