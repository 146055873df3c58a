"""Critical-path attribution: which service's slowness costs each entry point's tail most.

For every entry point and service, the question is a what-if: *by how much would the
entry point's P99 drop if this service's self time were 10% shorter?* The answer is
computed exactly that way, on the fitted :class:`~bayesperf.models.request.RequestModel`:
the same simulated requests (same trees, same random numbers) are composed with every
service's self times scaled by 0.9 in turn, and the P99 of each draw compared with
today's. Work off the critical path (a parallel call that is rarely the slowest, a
service only cheap requests call) earns little; work on it earns up to its share of the
P99. Unlike the per-pair hotspot ranking (:mod:`bayesperf.analysis.hotspots`: call rate
× mean latency), this counts parallelism, the call tree and the tail.

The reduction is a posterior: its median and equal-tailed interval over the draws, and
the probability that the service is among the ``top_n`` largest (ranked per draw).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.models.latency import posterior_interval
from bayesperf.models.request import RequestModel
from bayesperf.models.request_trees import Scenario


def attribute(
    model: RequestModel,
    *,
    q: float = 0.99,
    reduction: float = 0.1,
    services: Sequence[str] | None = None,
    top_n: int = 3,
    ci_prob: float = 0.9,
    n_requests: int | None = None,
) -> pd.DataFrame:
    """Expected drop of each entry point's ``q``-quantile if one service got faster.

    Parameters
    ----------
    model : RequestModel
        Fitted.
    q : float, default 0.99
        The quantile of end-to-end latency.
    reduction : float, default 0.1
        The relative reduction of the service's self times (all its operations).
    services : sequence of str, optional
        Services to try (default: every service in the call graph).
    top_n : int, default 3
        ``p_top<n>`` is the posterior probability that the service is among the
        ``top_n`` largest reductions of its entry point.
    ci_prob : float, default 0.9
        Mass of the equal-tailed intervals.
    n_requests : int, optional
        Requests simulated per draw (default: the model's).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(service, operation)`` of the entry point and ``target`` (the
        service made faster), largest expected reduction first within each entry
        point: ``today_ms`` (posterior median of the quantile), ``reduction_ms``
        (posterior mean) with ``reduction_ms_median/lower/upper``,
        ``reduction_pct_median/lower/upper`` (of today's quantile, %),
        ``p_top<n>``.

    Examples
    --------
    >>> from bayesperf.analysis.critical_path import attribute
    >>> table = attribute(model, q=0.99, reduction=0.1)  # doctest: +SKIP
    >>> table.loc[("frontend", "hipstershop.Frontend/Recv.")].head(3)  # doctest: +SKIP
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if not 0 < reduction < 1:
        raise ValueError(f"reduction must be in (0, 1), got {reduction}")
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    graph = model.graph
    names = list(services) if services is not None else _services(graph.nodes)
    scenarios = [Scenario.identity(graph.n_types)]
    for service in names:
        faster = Scenario.identity(graph.n_types)
        faster.scale[graph.codes_of(service)] = 1 - reduction
        scenarios.append(faster)
    values = model.scenario_quantiles(scenarios, q, n_requests=n_requests)[..., 0]
    today, after = values[0], values[1:]  # (draws, entries), (services, draws, entries)
    saved = today[None] - after
    rank = np.argsort(np.argsort(-saved, axis=0), axis=0)
    rows = []
    for e, entry in enumerate(model.entry_points):
        base = float(np.median(today[:, e]))
        for s, service in enumerate(names):
            ms = posterior_interval(saved[s, :, e], ci_prob)
            pct = posterior_interval(100 * saved[s, :, e] / today[:, e], ci_prob)
            rows.append(
                {
                    S.SERVICE: entry[0],
                    S.OPERATION: entry[1],
                    "target": service,
                    "today_ms": base,
                    "reduction_ms": float(ms["mean"]),
                    "reduction_ms_median": float(ms["median"]),
                    "reduction_ms_lower": float(ms["lower"]),
                    "reduction_ms_upper": float(ms["upper"]),
                    "reduction_pct_median": float(pct["median"]),
                    "reduction_pct_lower": float(pct["lower"]),
                    "reduction_pct_upper": float(pct["upper"]),
                    f"p_top{top_n}": float(np.mean(rank[s, :, e] < top_n)),
                }
            )
    table = pd.DataFrame(rows)
    table = table.sort_values(
        [S.SERVICE, S.OPERATION, "reduction_ms"], ascending=[True, True, False], kind="stable"
    ).set_index([S.SERVICE, S.OPERATION, "target"])
    table.attrs.update({"q": q, "reduction": reduction, "ci_prob": ci_prob})
    return table


def _services(nodes: pd.MultiIndex) -> list[str]:
    return sorted(set(nodes.get_level_values(0)))
