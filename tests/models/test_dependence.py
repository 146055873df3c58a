"""The within-request copula's estimates, and the Bayesian bootstrap of latency summaries."""

import numpy as np
import pandas as pd
import pytest

from bayesperf.models.dependence import SelfTimeCopula
from bayesperf.summaries.calls import summarize_calls


def nested_spans(rho_r, rho_s, rho_t, n_requests=1500, seed=0):
    """Requests of 3 services x 2 node types x 3 sequential spans, self times exp(normal).

    The root's self time is the same in every request (its z-scores are all 0).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_requests):
        z_r = rng.standard_normal()
        children = []
        k, start = 0, 1.0
        for s in range(3):
            z_s = rng.standard_normal()
            for t in range(2):
                z_t = rng.standard_normal()
                for _ in range(3):
                    x = (
                        np.sqrt(rho_r) * z_r + np.sqrt(rho_s) * z_s + np.sqrt(rho_t) * z_t
                        + np.sqrt(1 - rho_r - rho_s - rho_t) * rng.standard_normal()
                    )  # fmt: skip
                    ms = float(round(100 * np.exp(x)))  # whole ms: the root's self time is exact
                    children.append((f"t{r}", f"s{k}", "root", f"svc{s}", f"op{t}", start, ms))
                    start += ms
                    k += 1
        rows += [(f"t{r}", "root", None, "root", "op", 0.0, start + 1.0), *children]
    frame = pd.DataFrame(
        rows, columns=["trace_id", "span_id", "parent_id", "service", "operation", "s", "latency"]
    )
    return frame.assign(start_time=pd.to_datetime(frame.pop("s"), unit="ms", utc=True))


def test_copula_recovers_nested_correlations():
    calls = summarize_calls(nested_spans(0.2, 0.15, 0.25))
    copula = SelfTimeCopula(calls.dependence)
    rho = copula.estimate()
    svc = copula.services.get_indexer(["svc0", "svc1", "svc2"])
    node = copula.nodes.get_indexer([("svc1", "op0"), ("svc2", "op1")])
    assert rho.request[0] == pytest.approx(0.2, abs=0.04)
    np.testing.assert_allclose(rho.service[0, svc], 0.15, atol=0.05)
    np.testing.assert_allclose(rho.node_type[0, node], 0.25, atol=0.05)
    # Posterior draws (Bayesian bootstrap over requests) scatter around the estimate.
    draws = copula.draws(400, np.random.default_rng(1))
    lo, hi = np.quantile(draws.request, [0.05, 0.95])
    assert lo < rho.request[0] < hi and hi - lo < 0.1
    table = copula.table()
    assert table.loc[("svc0", "op0"), "total"] == pytest.approx(0.6, abs=0.07)


def test_independent_self_times_give_correlations_near_zero():
    copula = SelfTimeCopula(summarize_calls(nested_spans(0, 0, 0, n_requests=800)).dependence)
    rho = copula.estimate()
    assert rho.request[0] < 0.02
    assert rho.service.max() < 0.05 and rho.node_type.max() < 0.05
