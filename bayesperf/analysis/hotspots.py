"""Hotspots: the groups where requests spend their time, ranked by posterior contribution.

A group's (caller→callee pair's) contribution is its call rate times its mean latency:
the milliseconds it adds per trace (or per second of the window). Both factors are
uncertain:

* the **mean latency** draws come from the fitted
  :class:`~bayesperf.models.LatencyModel` (:meth:`~bayesperf.models.LatencyModel.means`);
* the **call rate** of a group with ``n`` calls over an exposure of ``E`` traces (or
  seconds) has the conjugate posterior ``Gamma(n + 1/2, E)`` (Poisson counts, Jeffreys
  prior). The transition model describes one path per request (one branch per step),
  not the fan-out of a call tree, so it does not give calls per trace.

The contribution draws are ranked *per draw*: ``p_top_n`` is the posterior probability
that the group is among the ``top_n`` largest contributors, which says whether the
ranking itself can be trusted. ``share`` is the contribution over the sum of all
groups' contributions.

Latency is the span duration as recorded: in real traces a parent span's duration
includes its children's, so callers near the root naturally rank high.

The ranking can also be by **critical-path attribution** (:func:`rank_critical_path`,
``PerformanceAnalyzer.identify_hotspots(method="critical_path")``): per entry point,
the expected drop of its P99 if a service's self time fell by 10%
(:mod:`bayesperf.analysis.critical_path`) — time spent where requests wait for it, in
their tail, rather than time spent anywhere.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.analysis._input import stacked
from bayesperf.analysis.critical_path import attribute
from bayesperf.models.latency import LatencyModel, posterior_interval
from bayesperf.models.request import RequestModel

Per = Literal["trace", "second"]
Method = Literal["contribution", "critical_path"]
METHODS: tuple[Method, ...] = ("contribution", "critical_path")


def exposure(spans: pd.DataFrame, per: Per) -> float:
    """Number of traces, or seconds from the first span start to the last span end."""
    if per == "trace":
        if S.TRACE_ID not in spans.columns:
            raise ValueError("per='trace' needs a trace_id column (or use per='second')")
        return float(spans[S.TRACE_ID].nunique())
    if per == "second":
        if S.START_TIME not in spans.columns:
            raise ValueError("per='second' needs a start_time column (or use per='trace')")
        start = pd.to_datetime(spans[S.START_TIME], utc=True)
        end = start + pd.to_timedelta(spans[S.LATENCY], unit="ms")
        seconds = (end.max() - start.min()).total_seconds()
        if not seconds > 0:
            raise ValueError("per='second' needs spans spread over a positive time window")
        return float(seconds)
    raise ValueError(f"unknown per {per!r}; expected 'trace' or 'second'")


def rank_hotspots(
    model: LatencyModel,
    exposure_units: float,
    top_n: int = 5,
    *,
    per: Per = "trace",
    ci_prob: float = 0.9,
    random_seed: int | None = 0,
) -> pd.DataFrame:
    """The ranking table of :meth:`bayesperf.PerformanceAnalyzer.identify_hotspots`.

    Parameters
    ----------
    model : LatencyModel
        Fitted on the spans.
    exposure_units : float
        Traces (or seconds) the spans cover.
    top_n : int, default 5
        Rows returned, and the ``n`` of ``p_top_n``.
    per, ci_prob, random_seed
        Rate unit, interval mass, seed of the call-rate draws.

    Returns
    -------
    pandas.DataFrame
        All groups sorted by posterior mean contribution, indexed by group.
    """
    if not isinstance(top_n, int | np.integer) or top_n < 1:
        raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
    if not exposure_units > 0:
        raise ValueError(f"the exposure must be positive, got {exposure_units}")
    means = stacked(model.means())  # (groups, samples)
    calls = model.fit_summary.count.astype(np.float64)
    rng = np.random.default_rng(random_seed)
    rate = rng.gamma(calls[:, None] + 0.5, 1.0 / exposure_units, size=means.shape)
    contribution = rate * means
    share = contribution / contribution.sum(axis=0, keepdims=True)
    # Rank 0 is the largest contributor in that draw.
    rank = np.argsort(np.argsort(-contribution, axis=0), axis=0)
    unit = "trace" if per == "trace" else "s"
    c = posterior_interval(contribution, ci_prob)
    s = posterior_interval(share, ci_prob)
    table = pd.DataFrame(
        {
            "calls": calls.astype(np.int64),
            f"calls_per_{per}": calls / exposure_units,
            "mean_ms": np.median(means, axis=1),
            f"ms_per_{unit}": c["mean"],
            f"ms_per_{unit}_lower": c["lower"],
            f"ms_per_{unit}_upper": c["upper"],
            "share": s["mean"],
            f"p_top{top_n}": (rank < top_n).mean(axis=1),
        },
        index=model.groups,
    )
    table = table.sort_values(f"ms_per_{unit}", ascending=False, kind="stable")
    table.attrs.update({"per": per, "exposure": exposure_units})
    return table


def rank_critical_path(
    model: RequestModel,
    top_n: int = 5,
    *,
    q: float = 0.99,
    reduction: float = 0.1,
    ci_prob: float = 0.9,
) -> pd.DataFrame:
    """The ``top_n`` services per entry point by critical-path attribution.

    Parameters
    ----------
    model : RequestModel
        Fitted on the spans.
    top_n : int, default 5
        Rows per entry point, and the ``n`` of ``p_top<n>``.
    q, reduction, ci_prob
        As in :func:`bayesperf.analysis.critical_path.attribute`.

    Returns
    -------
    pandas.DataFrame
        The attribution table (largest expected reduction of the entry point's
        ``q``-quantile first), ``top_n`` rows per entry point.
    """
    if not isinstance(top_n, int | np.integer) or top_n < 1:
        raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
    table = attribute(model, q=q, reduction=reduction, top_n=top_n, ci_prob=ci_prob)
    return table.groupby(level=[0, 1], sort=False).head(top_n)
