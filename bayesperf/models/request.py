"""End-to-end request latency from the call graph: P50/P95/P99 per entry point, and what-ifs.

:class:`RequestModel` puts two posteriors together:

* **call structure** (:class:`~bayesperf.models.calls.CallModel`): per node type
  ``(service, operation)``, which children a span calls, how many times and in which
  stages (exact Dirichlet-process posterior over call patterns);
* **self times** (any latency model with ``latency_draws``; by default the hierarchical
  :class:`~bayesperf.models.latency.LatencyModel`) fit on every span's self time by
  node type: its duration minus the time its children covered.

The end-to-end latency of an entry point (a root ``(service, operation)``) is then
simulated per posterior draw (:mod:`bayesperf.models.request_trees`): a request tree is
drawn, self times are drawn, and children are composed (stages add, a parallel stage
takes its slowest child). Quantiles over each draw's simulated requests give the
posterior of the entry point's P50/P95/P99; their spread over draws is the credible
interval.

What-if questions (:meth:`RequestModel.what_if`) change self times or call
probabilities on the fitted posterior, without refitting, and simulate the same
requests (same trees, same random numbers) before and after: the change and its
interval come out with little Monte Carlo noise.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.datasets.load_online_boutique()
>>> model = bayesperf.RequestModel().fit(spans, random_seed=1)  # doctest: +SKIP
>>> model.summary()  # P50/P95/P99 per entry point, 90% intervals, observed  # doctest: +SKIP
>>> model.what_if(scale={"currencyservice": 0.7})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesperf import schema as S
from bayesperf.models._base import _REGISTRY, BayesModel
from bayesperf.models.calls import CallGraph, CallModel
from bayesperf.models.dependence import SelfTimeCopula
from bayesperf.models.draws import LatencyDraws
from bayesperf.models.latency import (
    FAMILIES,
    SUMMARY_QUANTILES,
    LatencyModel,
    posterior_interval,
)
from bayesperf.models.request_trees import (
    MAX_DEPTH,
    Dependence,
    Scenario,
    Simulation,
    simulate,
)
from bayesperf.summaries.calls import NODE_BY, CallSummary, NodeKey, summarize_calls
from bayesperf.summaries.latency import LatencySummary
from bayesperf.summaries.transitions import TraceTransitionCounts

__all__ = ["RequestModel"]

#: Service name, or one node type ``(service, operation)``.
NodeSpec = str | tuple[str, str]
#: Quantiles reported, by column prefix.
QUANTILES = SUMMARY_QUANTILES
_QS = np.array(list(QUANTILES.values()))
#: Order-statistic draws per posterior draw in :meth:`RequestModel.predictive_check`.
_ORDER_DRAWS = 25


class RequestModel(BayesModel):
    """Posterior predictive end-to-end latency per entry point, from call graph and self times.

    Parameters
    ----------
    latency : model, family name or dict, optional
        The self-time model, unfitted: any model with ``fit(summary, random_seed=...,
        **sample_kwargs)`` and ``latency_draws(n)`` (it is copied, then fit on the
        self times by ``(service, operation)``). Default: ``LatencyModel()``, whose
        nonparametric family follows each node type's own histogram and pools the
        tails beyond it; a family name (``"lognormal"``, ...) picks another
        ``LatencyModel`` family. A dict ``{"model": class name, "config": {...}}`` is
        what :meth:`get_config` writes.
    concentration : float, default 1.0
        Prior weight of call patterns not seen (:class:`~bayesperf.models.calls.CallModel`).
    node_key : {"operation", "pair"}, default "operation"
        Node types: ``(service, operation)``, or ``(caller, callee)`` pairs (also the
        fallback for spans without an operation).
    n_draws : int, default 200
        Posterior draws simulated.
    n_requests : int, default 10000
        Requests simulated per draw and entry point.
    max_depth : int, default 64
        Deepest call level simulated (recursive call graphs are cut there).
    dependence : bool, default True
        Correlate the self times of one request (:mod:`bayesperf.models.dependence`:
        one factor per request, one per request and service, estimated from the data);
        ``False`` draws every span independently.

    Examples
    --------
    >>> model = RequestModel(n_draws=100, n_requests=2000)
    >>> model
    RequestModel(latency=LatencyModel, n_draws=100, n_requests=2000; not fitted)
    >>> RequestModel(latency="lognormal").latency_template
    LatencyModel(family='lognormal', by=('service', 'operation'), pooling='partial'; not fitted)
    """

    def __init__(
        self,
        latency: Any = None,
        *,
        concentration: float = 1.0,
        node_key: NodeKey = "operation",
        n_draws: int = 200,
        n_requests: int = 10_000,
        max_depth: int = MAX_DEPTH,
        dependence: bool = True,
    ) -> None:
        self.latency_template = _latency_template(latency)
        self.concentration = float(concentration)
        self.node_key = node_key
        for name, value in (("n_draws", n_draws), ("n_requests", n_requests)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_draws, self.n_requests, self.max_depth = int(n_draws), int(n_requests), max_depth
        self.dependence = bool(dependence)
        self.calls: CallModel | None = None
        self.latency: Any = None
        self._cache: dict[Any, Any] = {}

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        template = self.latency_template
        return {
            "latency": {"model": type(template).__name__, "config": template.get_config()},
            "concentration": self.concentration,
            "node_key": self.node_key,
            "n_draws": self.n_draws,
            "n_requests": self.n_requests,
            "max_depth": self.max_depth,
            "dependence": self.dependence,
        }

    def __repr__(self) -> str:
        state = "not fitted"
        if self.is_fitted:
            state = f"{len(self.entry_points)} entry points, {self.graph.n_types} node types"
        return (
            f"RequestModel(latency={type(self.latency_template).__name__}, "
            f"n_draws={self.n_draws}, n_requests={self.n_requests}; {state})"
        )

    # ------------------------------------------------------------------------ fitting
    def fit(
        self,
        data: pd.DataFrame | CallSummary,
        *,
        random_seed: int | None = None,
        **sample_kwargs: Any,
    ) -> RequestModel:
        """Fit the call structure and the self-time model.

        Parameters
        ----------
        data : pandas.DataFrame or CallSummary
            Spans with parent links and start times (as :func:`bayesperf.read_traces`
            returns them), or their :func:`~bayesperf.summaries.calls.summarize_calls`.
        random_seed : int, optional
            Seeds the self-time sampler, the call-pattern draws and every simulation.
        **sample_kwargs
            Passed to the self-time model's ``fit`` (e.g. ``draws=500, chains=2``).

        Returns
        -------
        RequestModel
            ``self``, fitted.

        Raises
        ------
        ValueError
            Spans without parent links or start times, or no request (root span).
        """
        summary = data if isinstance(data, CallSummary) else summarize_calls(data, self.node_key)
        if summary.n_requests == 0:
            raise ValueError(
                "no requests: the spans have no root (a span without a parent id), so "
                "there is no end-to-end latency to model"
            )
        calls = CallModel(self.concentration, self.node_key).fit(summary)
        latency = copy.deepcopy(self.latency_template)
        latency.fit(summary.self_time, random_seed=random_seed, **sample_kwargs)
        self.calls, self.latency = calls, latency
        tree = {
            "latency" if path == "/" else f"latency/{path}": group
            for path, group in _flat_groups(latency.idata).items()
        }
        tree["calls"] = summary.patterns.to_dataset()
        tree["entries"] = summary.entries.to_dataset()
        tree["dependence"] = xr.Dataset.from_dataframe(summary.dependence)
        self._idata = xr.DataTree.from_dict(tree)
        self._idata.attrs.update(
            {
                "random_seed": -1 if random_seed is None else int(random_seed),
                "skew": json.dumps(dict(summary.skew)),
                "skipped": json.dumps(dict(summary.skipped)),
            }
        )
        self._cache = {}
        return self

    @classmethod
    def _from_idata(cls, idata: xr.DataTree, config: dict[str, Any]) -> RequestModel:
        model = cls(**config)
        model._idata = idata
        latency_cls = _REGISTRY[config["latency"]["model"]]
        model.latency = latency_cls._from_idata(
            xr.DataTree.from_dict(_flat_groups(idata["latency"])),
            config["latency"]["config"],
        )
        patterns = TraceTransitionCounts.from_dataset(idata["calls"].to_dataset())
        model.calls = CallModel(model.concentration, model.node_key).fit(patterns)
        return model

    # -------------------------------------------------------------- fitted accessors
    @property
    def graph(self) -> CallGraph:
        """The fitted call patterns."""
        self.idata  # noqa: B018 - raises NotFittedError before fit
        assert self.calls is not None
        return self.calls.graph

    @property
    def entries_summary(self) -> LatencySummary:
        """Observed end-to-end latencies of the requests fit on, by entry point."""
        return LatencySummary.from_dataset(self.idata["entries"].to_dataset())

    @property
    def entry_points(self) -> pd.MultiIndex:
        """Entry points ``(service, operation)``: node types of root spans."""
        return self.entries_summary.groups

    @property
    def skew(self) -> dict[str, float]:
        """Clock-skew corrections made reading the spans (see :mod:`bayesperf.summaries.calls`)."""
        return json.loads(self.idata.attrs.get("skew", "{}"))

    def _seed(self, offset: int) -> int | list[int] | None:
        seed = int(self.idata.attrs.get("random_seed", -1))
        return None if seed < 0 else [seed, offset]

    @property
    def copula(self) -> SelfTimeCopula:
        """The within-request dependence of self times (estimated even when not used)."""
        if "copula" not in self._cache:
            frame = self.idata["dependence"].to_dataset().to_dataframe()
            self._cache["copula"] = SelfTimeCopula(frame.reset_index(drop=True))
        return self._cache["copula"]

    def _inputs(self) -> tuple[np.ndarray, LatencyDraws, np.ndarray, float, Dependence | None]:
        """Pattern weights, self-time draws, type -> group, spans per request, dependence."""
        if "inputs" not in self._cache:
            graph = self.graph
            rng = np.random.default_rng(self._seed(2))
            # A short chain may hold fewer draws than asked for: simulate those it has.
            draws = self.latency.latency_draws(self.n_draws)
            weights = graph.draw_weights(draws.n_draws, self.concentration, rng)
            group = _group_of_type(draws.groups, graph.nodes)
            spans = float(self.latency.fit_summary.count.sum()) / max(
                1, int(self.entries_summary.count.sum())
            )
            dependence = None
            if self.dependence:
                copula = self.copula
                rho = copula.draws(draws.n_draws, rng)
                node = copula.nodes.get_indexer(graph.nodes)
                dependence = Dependence(
                    rho.request,
                    rho.service,
                    np.where(node >= 0, rho.node_type[:, np.maximum(node, 0)], 0.0),
                    copula.services.get_indexer(graph.nodes.get_level_values(0)),
                )
            self._cache["inputs"] = (weights, draws, group, spans, dependence)
        return self._cache["inputs"]

    def _nodes(self, nodes: Sequence[tuple[str, str]] | pd.MultiIndex | None) -> pd.MultiIndex:
        """Node types to simulate as roots: the entry points by default."""
        if nodes is None:
            return self.entry_points
        index = pd.MultiIndex.from_tuples(list(nodes), names=list(NODE_BY))
        for key in index:
            self.graph.code(*key)  # a clear error for an unknown node type
        return index

    def _simulate(
        self,
        scenarios: list[Scenario],
        *,
        n_requests: int | None = None,
        quantiles: np.ndarray | None = None,
        nodes: pd.MultiIndex | None = None,
    ) -> Simulation:
        weights, draws, group, spans, dependence = self._inputs()
        roots = self.graph.nodes.get_indexer(self._nodes(nodes))
        return simulate(
            self.graph,
            weights,
            draws,
            group,
            roots,
            n_requests or self.n_requests,
            scenarios,
            random_seed=self._seed(3),
            expected_spans=spans,
            max_depth=self.max_depth,
            quantiles=quantiles,
            dependence=dependence,
        )

    # ------------------------------------------------------------------- predictions
    def simulate(
        self,
        n_requests: int | None = None,
        *,
        nodes: Sequence[tuple[str, str]] | pd.MultiIndex | None = None,
        scenario: Scenario | None = None,
    ) -> xr.DataArray:
        """Simulated end-to-end latencies (ms): the posterior predictive of each entry point.

        Parameters
        ----------
        n_requests : int, optional
            Requests per draw and entry point (default: the model's ``n_requests``).
        nodes : sequence of (service, operation), optional
            Simulate spans of these node types (the latency of their whole subtree)
            instead of the entry points.
        scenario : Scenario, optional
            Simulate after a change (:meth:`scenario`); the same trees and random
            numbers as without it.

        Returns
        -------
        xarray.DataArray
            Dims ``(draw, entry, request)``; ``service`` and ``operation`` coordinates
            on ``entry``. The same seed gives the same requests.
        """
        index = self._nodes(nodes)
        key = ("samples", n_requests or self.n_requests, tuple(index))
        if scenario is not None or key not in self._cache:
            change = scenario or Scenario.identity(self.graph.n_types)
            sim = self._simulate([change], n_requests=key[1], nodes=index)
            result = self._labelled(sim.latency[0], "request", nodes=index)
            result.attrs.update({"spans_simulated": sim.spans, "truncated": sim.truncated})
            if scenario is not None:
                return result
            self._cache[key] = result
        return self._cache[key]

    def _labelled(
        self, values: np.ndarray, last: str, coords=None, nodes: pd.MultiIndex | None = None
    ) -> xr.DataArray:
        entries = self.entry_points if nodes is None else nodes
        return xr.DataArray(
            values,
            dims=("draw", "entry", last),
            coords={
                S.SERVICE: ("entry", entries.get_level_values(0).to_numpy(dtype=str)),
                S.OPERATION: ("entry", entries.get_level_values(1).to_numpy(dtype=str)),
                **(coords or {}),
            },
        )

    def quantiles(
        self,
        q: float | Sequence[float] = tuple(_QS),
        *,
        nodes: Sequence[tuple[str, str]] | pd.MultiIndex | None = None,
        scenario: Scenario | None = None,
    ) -> xr.DataArray:
        """Posterior draws of each entry point's latency quantiles (ms).

        Returns
        -------
        xarray.DataArray
            Dims ``(draw, entry, quantile)`` (``nodes``, ``scenario``: as in
            :meth:`simulate`).
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs <= 0) | (qs >= 1)):
            raise ValueError(f"quantiles must be strictly between 0 and 1, got {qs.tolist()}")
        samples = self.simulate(nodes=nodes, scenario=scenario)
        values = np.moveaxis(np.quantile(samples.to_numpy(), qs, axis=-1), 0, -1)
        index = self._nodes(nodes)
        return self._labelled(values, "quantile", {"quantile": qs}, nodes=index)

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Per entry point: P50/P95/P99 (posterior median, equal-tailed interval) and observed.

        Returns
        -------
        pandas.DataFrame
            Indexed by entry point ``(service, operation)``: ``n`` (requests fit on),
            ``empirical_p50/p95/p99`` (observed, from the 1% bins), and for each of
            ``mean``, ``p50``, ``p95``, ``p99``: ``<stat>_mean``, ``<stat>_median``,
            ``<stat>_lower``, ``<stat>_upper`` (ms).
        """
        _check_ci(ci_prob)
        entries = self.entries_summary
        table = pd.DataFrame({"n": entries.count}, index=entries.groups)
        observed = entries.quantile(_QS)
        for j, name in enumerate(QUANTILES):
            table[f"empirical_{name}"] = observed[:, j]
        samples = self.simulate().to_numpy()
        stats = {"mean": samples.mean(axis=-1)}
        qs = self.quantiles().to_numpy()
        for j, name in enumerate(QUANTILES):
            stats[name] = qs[..., j]
        for name, values in stats.items():
            for col, v in posterior_interval(values.T, ci_prob).items():
                table[f"{name}_{col}"] = v
        return table

    def predictive_check(
        self,
        data: pd.DataFrame | CallSummary,
        ci_prob: float = 0.9,
        *,
        min_requests: int = 1,
        spans: bool = False,
        scenario: Scenario | None = None,
        n_requests: int | None = None,
    ) -> pd.DataFrame:
        """Predictive intervals of the empirical P50/P95/P99 of other requests, and coverage.

        For each entry point with ``n`` requests in ``data``, the empirical
        ``q``-quantile of ``n`` new requests is the ``k``-th order statistic
        (``k = ceil(q n)``): per posterior draw it is the draw's predictive quantile at
        ``u ~ Beta(k, n - k + 1)``. The central ``ci_prob`` interval of those values
        should hold the observed quantile that often — on held-out data, e.g. the other
        half of the traces split by trace id.

        Parameters
        ----------
        data : pandas.DataFrame or CallSummary
            Requests not fit on (or the same, for a posterior predictive check).
        ci_prob : float, default 0.9
            Mass of the predictive intervals.
        min_requests : int, default 1
            Entry points (node types) with fewer requests (spans) in ``data`` are left
            out.
        spans : bool, default False
            Check every node type that calls others, on the durations of its spans (the
            composition of its subtree), instead of the entry points. Needs spans.
        scenario : Scenario, optional
            Predict after a change (:meth:`scenario`): e.g. an incident's measured self
            times, checked against what was observed during the incident.
        n_requests : int, optional
            Requests simulated per draw (default: the model's ``n_requests``).

        Returns
        -------
        pandas.DataFrame
            Per entry point (node type) and quantile (index ``service``, ``operation``,
            ``quantile``): ``n``, ``observed``, ``predicted`` (posterior median of the
            quantile), ``lower``/``upper`` (predictive interval of the empirical
            quantile), ``covered``, ``error`` (``predicted / observed - 1``).
        """
        _check_ci(ci_prob)
        if spans:
            if isinstance(data, CallSummary):
                raise ValueError("predictive_check(spans=True) needs the spans, not a summary")
            observed = _span_latencies(data, self.node_key, self.graph)
        else:
            held = data if isinstance(data, CallSummary) else summarize_calls(data, self.node_key)
            observed = held.entries
        keep = observed.count >= min_requests
        if not spans:
            keep &= observed.groups.isin(self.entry_points)
        nodes = observed.groups[keep]
        columns = [S.SERVICE, S.OPERATION, "quantile", "n", "observed", "predicted"]
        columns += ["lower", "upper", "covered", "error"]
        if not len(nodes):
            return pd.DataFrame(columns=columns).set_index(columns[:3])
        simulated = self.simulate(n_requests, nodes=nodes, scenario=scenario).to_numpy()
        samples = np.sort(simulated, axis=-1)
        point = np.moveaxis(np.quantile(simulated, _QS, axis=-1), 0, -1)
        counts, values_obs = observed.count[keep], observed.quantile(_QS)[keep]
        rng = np.random.default_rng(self._seed(5))
        rows = []
        for i, key in enumerate(nodes):
            n = int(counts[i])
            for j, (name, q) in enumerate(QUANTILES.items()):
                k = min(max(int(np.ceil(q * n)), 1), n)
                u = rng.beta(k, n - k + 1, size=(samples.shape[0], _ORDER_DRAWS))
                values = _sample_quantiles(samples[:, i], u)
                lower, upper = np.quantile(values, [(1 - ci_prob) / 2, (1 + ci_prob) / 2])
                predicted = float(np.median(point[:, i, j]))
                seen = float(values_obs[i, j])
                rows.append(
                    {
                        S.SERVICE: key[0],
                        S.OPERATION: key[1],
                        "quantile": name,
                        "n": n,
                        "observed": seen,
                        "predicted": predicted,
                        "lower": float(lower),
                        "upper": float(upper),
                        "covered": bool(lower <= seen <= upper),
                        "error": predicted / seen - 1 if seen > 0 else np.nan,
                    }
                )
        return pd.DataFrame(rows, columns=columns).set_index(columns[:3])

    def scenario_quantiles(
        self,
        scenarios: Sequence[Scenario],
        q: float | Sequence[float] = tuple(_QS),
        *,
        n_requests: int | None = None,
    ) -> np.ndarray:
        """Posterior draws of each entry point's quantiles under several scenarios at once.

        The same simulated requests (trees and random numbers) serve every scenario,
        so differences between them carry little Monte Carlo noise.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(scenarios), n_draws, n_entry_points, len(q))`` (ms).
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        sim = self._simulate(list(scenarios), quantiles=qs, n_requests=n_requests)
        return np.stack(sim.latency).astype(np.float64)

    # ---------------------------------------------------------------------- what-if
    def scenario(
        self,
        scale: Mapping[NodeSpec, float] | None = None,
        add_ms: Mapping[NodeSpec, float] | None = None,
        call_prob: Mapping[tuple[NodeSpec, NodeSpec], float] | None = None,
        replace: Mapping[NodeSpec, LatencySummary | LatencyDraws] | None = None,
    ) -> Scenario:
        """The :class:`~bayesperf.models.request_trees.Scenario` of a what-if question."""
        graph = self.graph
        out = Scenario.identity(graph.n_types)
        for key, factor in (scale or {}).items():
            if not (np.isfinite(factor) and factor >= 0):
                raise ValueError(f"scale factors must be >= 0, got {key!r}: {factor!r}")
            out.scale[graph.codes_of(key)] *= float(factor)
        for key, ms in (add_ms or {}).items():
            if not np.isfinite(ms):
                raise ValueError(f"add_ms values must be finite, got {key!r}: {ms!r}")
            out.add[graph.codes_of(key)] += float(ms)
        for i, (key, distribution) in enumerate((replace or {}).items()):
            draws = distribution
            if isinstance(distribution, LatencySummary):  # measured: its own posterior
                measured = LatencyModel(by=distribution.by).fit(
                    distribution, random_seed=self._seed(10 + i)
                )
                draws = measured.latency_draws(self.n_draws)
            if not isinstance(draws, LatencyDraws):
                raise TypeError(
                    f"replace[{key!r}] must be a LatencySummary or LatencyDraws, got "
                    f"{type(distribution).__name__}"
                )
            types = graph.codes_of(key)
            out.source[types] = len(out.replacements)
            out.group[types] = _replacement_groups(draws.groups, graph.nodes[types], key)
            out.replacements.append(draws)
        if call_prob:
            weights = self._inputs()[0]
            for (caller, callee), p in call_prob.items():
                parents, children = graph.calls_between(caller, callee)
                try:
                    graph, weights = graph.with_call_probability(weights, parents, children, p)
                except ValueError as err:
                    raise ValueError(f"call_prob[{(caller, callee)!r}]: {err}") from None
            out = Scenario(
                out.scale, out.add, out.source, out.group, out.replacements, graph, weights
            )
        return out

    def what_if(
        self,
        scale: Mapping[NodeSpec, float] | None = None,
        add_ms: Mapping[NodeSpec, float] | None = None,
        call_prob: Mapping[tuple[NodeSpec, NodeSpec], float] | None = None,
        replace: Mapping[NodeSpec, LatencySummary | LatencyDraws] | None = None,
        *,
        improvement: float = 0.1,
        ci_prob: float = 0.9,
    ) -> pd.DataFrame:
        """Each entry point's P50/P95/P99 after a change, the change, and intervals on both.

        Nothing is refit: the same posterior draws and the same simulated requests (same
        trees, same random numbers) are composed with and without the change.

        Parameters
        ----------
        scale : dict, optional
            Self-time factors: ``{"paymentservice": 0.7}`` (30% faster). Keys are
            services (all their operations) or ``(service, operation)``.
        add_ms : dict, optional
            Milliseconds added to every self time: ``{"cartservice": 5.0}``.
        call_prob : dict, optional
            ``{(caller, callee): p}``: the probability that a span of ``caller`` calls
            ``callee`` (see :meth:`CallGraph.with_call_probability
            <bayesperf.models.calls.CallGraph.with_call_probability>`), e.g.
            ``{("frontend", "adservice"): 0.5}``.
        replace : dict, optional
            ``{service: LatencySummary}``: self times drawn from a measured distribution
            instead (e.g. the self times of that service during an incident,
            :func:`~bayesperf.summaries.calls.summarize_calls` ``.self_time`` of those
            spans), through the default ``LatencyModel``'s posterior of that summary (its
            own histogram, tails pooled across its groups). A summary by ``(service, operation)``
            replaces each operation by its own group; one with a single group replaces
            all of them.
        improvement : float, default 0.1
            ``p_improves`` is P(after < (1 - improvement) × today); ``p_worsens`` is
            P(after > (1 + improvement) × today).
        ci_prob : float, default 0.9
            Mass of the equal-tailed intervals.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``(service, operation, quantile)`` (``p50``, ``p95``, ``p99``):
            ``n`` and ``observed`` (today's data), ``today_*``, ``after_*`` (ms),
            ``change_*`` (ms) and ``change_pct_*`` (%), each ``_median``, ``_lower``,
            ``_upper``; ``p_improves``, ``p_worsens``.

        Examples
        --------
        >>> table = model.what_if(scale={"paymentservice": 0.7})  # doctest: +SKIP
        >>> entry = ("frontend", "hipstershop.Frontend/Recv.", "p99")
        >>> table.loc[entry, "p_improves"]  # doctest: +SKIP
        """
        _check_ci(ci_prob)
        if not 0 <= improvement < 1:
            raise ValueError(f"improvement must be in [0, 1), got {improvement}")
        change = self.scenario(scale, add_ms, call_prob, replace)
        today, after = self.scenario_quantiles([Scenario.identity(self.graph.n_types), change])
        return self._change_table(today, after, improvement, ci_prob)

    def _change_table(
        self, today: np.ndarray, after: np.ndarray, improvement: float, ci_prob: float
    ) -> pd.DataFrame:
        """The what-if table from quantile draws ``(draw, entry, quantile)`` before/after."""
        entries = self.entries_summary
        observed = entries.quantile(_QS)
        rows = []
        for e, key in enumerate(self.entry_points):
            for j, name in enumerate(QUANTILES):
                before, now = today[:, e, j].astype(np.float64), after[:, e, j].astype(np.float64)
                row: dict[str, Any] = {
                    S.SERVICE: key[0],
                    S.OPERATION: key[1],
                    "quantile": name,
                    "n": int(entries.count[e]),
                    "observed": observed[e, j],
                }
                values = {
                    "today": before,
                    "after": now,
                    "change": now - before,
                    "change_pct": 100 * (now / before - 1),
                }
                for prefix, v in values.items():
                    interval = posterior_interval(v, ci_prob)
                    for col in ("median", "lower", "upper"):
                        row[f"{prefix}_{col}"] = float(interval[col])
                row["p_improves"] = float(np.mean(now < (1 - improvement) * before))
                row["p_worsens"] = float(np.mean(now > (1 + improvement) * before))
                rows.append(row)
        table = pd.DataFrame(rows).set_index([S.SERVICE, S.OPERATION, "quantile"])
        table.attrs.update({"improvement": improvement, "ci_prob": ci_prob})
        return table


# ------------------------------------------------------------------------- helpers
def _latency_template(latency: Any) -> Any:
    """The unfitted self-time model from the ``latency`` argument."""
    if latency is None:
        return LatencyModel(by=NODE_BY)
    if isinstance(latency, str) and latency in FAMILIES:
        return LatencyModel(latency, by=NODE_BY)
    if isinstance(latency, dict):
        name = latency.get("model")
        if name not in _REGISTRY:
            raise ValueError(f"unknown latency model {name!r}; known: {sorted(_REGISTRY)}")
        return _REGISTRY[name](**_config_args(latency.get("config", {})))
    if isinstance(latency, str):
        raise ValueError(
            f"unknown latency {latency!r}: give a model instance or a family, one of {FAMILIES}"
        )
    if not (hasattr(latency, "fit") and hasattr(latency, "latency_draws")):
        raise TypeError(
            "latency must be a model with fit() and latency_draws() (e.g. LatencyModel()), "
            f"got {type(latency).__name__}"
        )
    if getattr(latency, "is_fitted", False):
        raise ValueError("pass an unfitted latency model: it is fit on the self times")
    return latency


def _config_args(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config with JSON lists turned back into the tuples models expect."""
    return {k: tuple(v) if k == "by" and isinstance(v, list) else v for k, v in config.items()}


def _flat_groups(tree: xr.DataTree) -> dict[str, xr.Dataset]:
    """Every node of a DataTree with data, as ``{path: dataset}`` (attrs of the root kept)."""
    out: dict[str, Any] = {}
    for node in tree.subtree:
        rel = node.relative_to(tree)
        if node.has_data or rel == ".":
            out["/" if rel == "." else rel] = node.to_dataset()
    out["/"] = out.get("/", xr.Dataset()).assign_attrs(tree.attrs)
    return out


def _group_of_type(groups: pd.Index, nodes: pd.MultiIndex) -> np.ndarray:
    """Position of each node type in the self-time model's groups."""
    if not isinstance(groups, pd.MultiIndex) or groups.nlevels != 2:
        raise ValueError(
            f"the self-time model's groups must be (service, operation), got {groups.names}"
        )
    found = groups.get_indexer(nodes)
    if (found < 0).any():
        missing = list(nodes[found < 0])[:5]
        raise ValueError(f"the self-time model has no group for node types {missing}")
    return found


def _replacement_groups(groups: pd.Index, nodes: pd.MultiIndex, key: NodeSpec) -> np.ndarray:
    """Group of a replacement for each replaced node type.

    One group replaces all; groups by ``(service, operation)`` match node types; groups
    by service match the service.
    """
    if len(groups) == 1:
        return np.zeros(len(nodes), np.int64)
    if isinstance(groups, pd.MultiIndex) and groups.nlevels == 2:
        found = groups.get_indexer(nodes)
    else:
        found = pd.Index(groups.astype(str)).get_indexer(nodes.get_level_values(0))
    if (found < 0).any():
        missing = list(nodes[found < 0])[:5]
        raise ValueError(
            f"replace[{key!r}]: the replacement has {len(groups)} groups but none for "
            f"{missing}; give it one group, or one per (service, operation)"
        )
    return found.astype(np.int64)


def _span_latencies(spans: pd.DataFrame, node_key: NodeKey, graph: CallGraph) -> LatencySummary:
    """Span durations of the node types that call others, by ``(service, operation)``."""
    from bayesperf.summaries.calls import span_calls
    from bayesperf.summaries.latency import summarize_latency

    table = span_calls(spans, node_key)
    table = table[table["n_children"].to_numpy() > 0]
    table = table[pd.MultiIndex.from_frame(table[list(NODE_BY)]).isin(graph.nodes)]
    return summarize_latency(table[[*NODE_BY, S.LATENCY]], NODE_BY)


def _sample_quantiles(sorted_samples: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Quantiles at ``u`` (draws, m) of each draw's sorted sample (draws, n), interpolated."""
    n = sorted_samples.shape[-1]
    pos = u * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    rows = np.arange(sorted_samples.shape[0])[:, None]
    return sorted_samples[rows, lo] * (1 - frac) + sorted_samples[rows, hi] * frac


def _check_ci(ci_prob: float) -> None:
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
