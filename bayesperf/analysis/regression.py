"""Regressions between two windows and SLO probabilities, from latency posteriors.

Two windows (before / after a deploy, low / high load) are fit separately with the same
model configuration. The windows' data are independent, so their posteriors are too:
the posterior of the ratio ``after_q / before_q`` of a group's ``q`` quantile is the
distribution of the ratio of independent draws. The ``after`` draws are randomly
permuted (seeded) before pairing, so a window compared with itself (one cached fit)
gets the ratio of two independent posteriors too, not a degenerate 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesperf.analysis._input import stacked
from bayesperf.models.latency import LatencyModel, posterior_interval


def _qname(q: float) -> str:
    return f"p{100 * q:g}"


def compare(
    before: LatencyModel,
    after: LatencyModel,
    *,
    q: float = 0.99,
    threshold: float = 0.1,
    ci_prob: float = 0.9,
    random_seed: int | None = 0,
) -> pd.DataFrame:
    """Posterior ratio of each group's ``q`` quantile, after over before.

    The engine of :meth:`bayesperf.PerformanceAnalyzer.compare_windows`.

    Returns
    -------
    pandas.DataFrame
        Groups present in both windows, sorted by ``p_regression`` (descending):
        ``n_before``, ``n_after``, ``empirical_ratio`` (of the binned empirical
        quantiles), ``<q>_before`` / ``<q>_after`` (posterior medians, ms),
        ``ratio`` (posterior median), ``ratio_lower`` / ``ratio_upper``,
        ``p_increase`` = P(ratio > 1) and ``p_regression`` = P(ratio > 1 + threshold).
        ``attrs["only_before"]`` / ``attrs["only_after"]`` list groups seen in one
        window only.
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be strictly between 0 and 1, got {q}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (0.1 = a 10% increase), got {threshold}")
    if before.by != after.by:
        raise ValueError(f"the windows are grouped differently: {before.by} vs {after.by}")
    gb, ga = before.groups, after.groups
    common = gb[gb.isin(ga)]  # in the before window's order
    if len(common) == 0:
        raise ValueError(f"the two windows share no {before.group_dim}: nothing to compare")
    ib, ia = gb.get_indexer(common), ga.get_indexer(common)
    qb = stacked(before.quantiles(q).sel(quantile=q, drop=True))[ib]
    qa = stacked(after.quantiles(q).sel(quantile=q, drop=True))[ia]
    samples = min(qb.shape[1], qa.shape[1])
    rng = np.random.default_rng(random_seed)
    qb = qb[:, :samples]
    qa = qa[:, rng.permutation(qa.shape[1])[:samples]]
    ratio = qa / qb
    r = posterior_interval(ratio, ci_prob)
    name = _qname(q)
    emp_b = before.fit_summary.quantile(q)[ib, 0]
    emp_a = after.fit_summary.quantile(q)[ia, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        empirical = emp_a / emp_b
    table = pd.DataFrame(
        {
            "n_before": before.fit_summary.count[ib],
            "n_after": after.fit_summary.count[ia],
            "empirical_ratio": empirical,
            f"{name}_before": np.median(qb, axis=1),
            f"{name}_after": np.median(qa, axis=1),
            "ratio": r["median"],
            "ratio_lower": r["lower"],
            "ratio_upper": r["upper"],
            "p_increase": (ratio > 1).mean(axis=1),
            "p_regression": (ratio > 1 + threshold).mean(axis=1),
        },
        index=common,
    )
    table = table.sort_values("p_regression", ascending=False, kind="stable")
    table.attrs.update(
        {
            "q": q,
            "threshold": threshold,
            "only_before": [str(g) for g in gb.difference(ga)],
            "only_after": [str(g) for g in ga.difference(gb)],
        }
    )
    return table


def slo(
    model: LatencyModel, threshold_ms: float, *, q: float = 0.99, ci_prob: float = 0.9
) -> pd.DataFrame:
    """Posterior probability per group that its ``q`` quantile meets ``threshold_ms``.

    The engine of :meth:`bayesperf.PerformanceAnalyzer.slo_probability`; built on
    :meth:`~bayesperf.models.LatencyModel.prob_exceeds`.

    Returns
    -------
    pandas.DataFrame
        ``n``, ``<q>`` (posterior median, ms), ``<q>_lower``, ``<q>_upper`` and
        ``p_meets`` = P(quantile ≤ threshold), sorted by ``p_meets`` (worst first).
    """
    if not (np.isfinite(threshold_ms) and threshold_ms > 0):
        raise ValueError(f"threshold_ms must be a positive number, got {threshold_ms!r}")
    if not 0 < q < 1:
        raise ValueError(f"q must be strictly between 0 and 1, got {q}")
    name = _qname(q)
    draws = stacked(model.quantiles(q).sel(quantile=q, drop=True))
    iv = posterior_interval(draws, ci_prob)
    exceeds = model.prob_exceeds(threshold_ms, q=q).to_numpy()
    table = pd.DataFrame(
        {
            "n": model.fit_summary.count,
            name: iv["median"],
            f"{name}_lower": iv["lower"],
            f"{name}_upper": iv["upper"],
            "p_meets": 1.0 - exceeds,
        },
        index=model.groups,
    )
    table.attrs.update({"q": q, "threshold_ms": threshold_ms})
    return table.sort_values("p_meets", kind="stable")
