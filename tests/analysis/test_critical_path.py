"""Critical-path attribution: only work requests wait for earns a drop of the tail."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import RequestModel
from bayesperf.analysis.critical_path import attribute
from bayesperf.analysis.hotspots import rank_critical_path


def parallel_spans(n=400, seed=0) -> pd.DataFrame:
    """root: [fast + slow in parallel] then tail; fast never decides the latency."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n):
        fast, slow, tail = rng.lognormal(np.log([2.0, 20.0, 5.0]), 0.3)
        own = rng.lognormal(0.0, 0.2)
        rows += [
            (f"t{t}", "r", None, "root", "get", 0.0, own + max(fast, slow) + tail),
            (f"t{t}", "f", "r", "fast", "op", own / 2, fast),
            (f"t{t}", "s", "r", "slow", "op", own / 2, slow),
            (f"t{t}", "x", "r", "tail", "op", own / 2 + max(fast, slow), tail),
        ]
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    return frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))


@pytest.fixture(scope="module")
def model():
    spans = parallel_spans()
    return RequestModel(n_draws=40, n_requests=4000).fit(spans, random_seed=1)


def test_attribution_ranks_the_critical_path(model):
    table = attribute(model, q=0.99, reduction=0.1, top_n=2)
    rows = table.loc[("root", "get")]
    assert list(rows.index[:2]) == ["slow", "tail"]
    p99 = rows["today_ms"].iloc[0]
    slow, fast = rows.loc["slow"], rows.loc["fast"]
    # The slow branch is ~70% of the P99: a 10% faster one gives ~6-8% of the P99.
    assert 0.04 * p99 < slow["reduction_ms"] < 0.1 * p99
    assert slow["reduction_ms_lower"] > 0 and slow["p_top2"] == 1.0
    # The fast branch never is the slowest of its stage: nothing to gain.
    assert fast["reduction_ms_upper"] < 0.002 * p99
    assert table.attrs == {"q": 0.99, "reduction": 0.1, "ci_prob": 0.9}


def test_hotspot_ranking_offers_it(model):
    ranking = rank_critical_path(model, top_n=2)
    assert list(ranking.index.get_level_values("target")) == ["slow", "tail"]
    with pytest.raises(ValueError, match="reduction must be in"):
        attribute(model, reduction=1.5)


@pytest.mark.slow
def test_analyzer_critical_path_and_hotspots_method():
    spans = bayesperf.datasets.load_online_boutique()
    analyzer = bayesperf.PerformanceAnalyzer(chains=2, draws=100, tune=100, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesperf.models.ConvergenceWarning)
        table = analyzer.identify_hotspots(spans, top_n=3, method="critical_path")
    assert len(table) == 3
    assert table.index.get_level_values("target")[0] == "frontend"
    assert analyzer.request_model(spans) is analyzer.request_model(spans)  # cached
    with pytest.raises(ValueError, match="unknown method"):
        analyzer.identify_hotspots(spans, method="nope")
