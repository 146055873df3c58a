"""Monte Carlo of requests: draw call trees, draw self times, compose end-to-end latency.

For each posterior draw ``d`` and entry point, ``n_requests`` requests are simulated:

1. **Trees, top-down.** Every span gets a call pattern from its
   node type's pattern weights in draw ``d`` (:class:`~bayesperf.models.calls.
   CallGraph`; a pattern not seen comes from the base measure), which gives its children
   and their stages.
2. **Self times.** One uniform per span, pushed through the self-time distribution of
   its node type in draw ``d`` (:meth:`~bayesperf.models.draws.LatencyDraws.ppf`): the
   only interface to the latency model, so any model that provides ``latency_draws``
   plugs in. The uniforms of one request are correlated through the Gaussian copula of
   :mod:`bayesperf.models.dependence` (factors per request, per request and service,
   per request and node type), or independent.
3. **Composition, bottom-up.** A span's latency is its self time plus, per stage, the
   largest latency of the stage's children (parallel children start together; stages
   add up). The root's latency is the request's.

Scenarios (what-if questions) reuse the same trees and the same uniforms: a change of
self times (scaled, shifted, or replaced by another distribution) re-composes the same
requests, so the difference between a scenario and today has far less Monte Carlo noise
than either. A change of call probabilities draws new trees from the same per-request
random streams: only the requests whose calls change differ.

Cost is linear in the number of spans simulated (requests × spans per request × draws):
trees, uniforms and composition are compiled loops (:mod:`bayesperf.models.
_request_kernels`), self times one vectorised call of the latency model; draws are
processed in chunks of about :data:`CHUNK_SPANS` spans on all cores (the loops and NumPy
release the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bayesperf.models import _request_kernels as kernels
from bayesperf.models._base import available_cores
from bayesperf.models.calls import CallGraph
from bayesperf.models.draws import LatencyDraws

#: Spans simulated per chunk (memory ~ 60 bytes per span).
CHUNK_SPANS = 2_000_000
#: Trees deeper than this are cut (their spans at this depth get no children).
MAX_DEPTH = 64


@dataclass(frozen=True, eq=False)
class Scenario:
    """A change of self times and call patterns; the identity by default.

    Attributes
    ----------
    scale, add : ndarray, shape (n_types,)
        Self time of node type ``t`` becomes ``scale[t] * x + add[t]`` (ms), at least 0.
    source, group : ndarray of int, shape (n_types,)
        Where ``source[t] >= 0``, type ``t``'s self times are drawn from group
        ``group[t]`` of ``replacements[source[t]]`` instead (before ``scale`` and
        ``add``); draw ``d`` of the model uses the replacement's draw ``d mod n_draws``.
    replacements : list of LatencyDraws
        The substituted distributions.
    graph, weights : CallGraph and ndarray, or None
        Call patterns and their weights ``(n_draws, n_entries)`` to use instead of the
        model's (both or neither).
    """

    scale: np.ndarray
    add: np.ndarray
    source: np.ndarray
    group: np.ndarray
    replacements: list[LatencyDraws] = field(default_factory=list)
    graph: CallGraph | None = None
    weights: np.ndarray | None = None

    @classmethod
    def identity(cls, n_types: int) -> Scenario:
        """No change."""
        none = np.full(n_types, -1, np.int64)
        return cls(np.ones(n_types), np.zeros(n_types), none, none.copy())

    @property
    def changes_self_times(self) -> bool:
        """Whether any self time differs from the model's."""
        return bool(np.any(self.scale != 1) or np.any(self.add != 0) or np.any(self.source >= 0))


@dataclass(frozen=True, eq=False)
class Dependence:
    """Within-request correlation of self times per posterior draw (a Gaussian copula).

    Attributes
    ----------
    rho_request : ndarray, shape (n_draws,)
        Correlation of spans of one request in different services.
    rho_service : ndarray, shape (n_draws, n_services)
        Extra correlation of spans of one request in the same service.
    rho_node : ndarray, shape (n_draws, n_types)
        Extra correlation of spans of one request of the same node type.
    service_of_type : ndarray of int, shape (n_types,)
        Column of ``rho_service`` of each node type.
    """

    rho_request: np.ndarray
    rho_service: np.ndarray
    rho_node: np.ndarray
    service_of_type: np.ndarray

    def loadings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Square roots of the variance shares (loadings of the copula's factors).

        Request ``(draws,)``; (request, service), (request, node type) and own
        ``(draws, types)``.
        """
        service = self.rho_service[:, self.service_of_type]
        own = 1.0 - self.rho_request[:, None] - service - self.rho_node
        return (
            np.sqrt(self.rho_request),
            np.sqrt(service),
            np.sqrt(self.rho_node),
            np.sqrt(np.maximum(own, 0.0)),
        )


@dataclass
class Simulation:
    """Simulated end-to-end latencies (ms) per scenario.

    Attributes
    ----------
    latency : list of ndarray
        One array per scenario, shape ``(n_draws, n_entries, n_requests)``, float32.
    spans : int
        Spans simulated for the model's own trees (per scenario with its own trees, more).
    truncated : int
        Requests whose tree reached :data:`MAX_DEPTH` and was cut.
    """

    latency: list[np.ndarray]
    spans: int = 0
    truncated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def simulate(
    graph: CallGraph,
    weights: np.ndarray,
    latency: LatencyDraws,
    group_of_type: np.ndarray,
    entries: np.ndarray,
    n_requests: int,
    scenarios: list[Scenario],
    *,
    random_seed: int | None = None,
    expected_spans: float = 50.0,
    max_depth: int = MAX_DEPTH,
    workers: int | None = None,
    quantiles: np.ndarray | None = None,
    dependence: Dependence | None = None,
) -> Simulation:
    """Simulate ``n_requests`` requests per posterior draw and entry point, per scenario.

    Parameters
    ----------
    graph : CallGraph
        The call patterns.
    weights : ndarray, shape (n_draws, n_entries)
        Pattern weights per posterior draw (:meth:`CallGraph.draw_weights`).
    latency : LatencyDraws
        Self-time distributions; draw ``d`` pairs with ``weights[d]``.
    group_of_type : ndarray of int, shape (n_types,)
        Position in ``latency.groups`` of each node type's self time.
    entries : ndarray of int
        Node types of the entry points (roots) to simulate.
    n_requests : int
        Requests per draw and entry point.
    scenarios : list of Scenario
        What to compute; the first is usually :meth:`Scenario.identity`.
    random_seed : int, optional
        Seeds everything; chunks get independent streams, so the result does not
        depend on the number of workers.
    expected_spans : float
        Spans per request (sets the chunk size).
    max_depth : int
        Deepest level drawn.
    workers : int, optional
        Threads (default: the available cores).
    quantiles : ndarray, optional
        Keep only these quantiles of each draw's requests (``latency`` arrays are then
        ``(n_draws, n_entries, len(quantiles))``): for many scenarios at once.
    dependence : Dependence, optional
        Correlated self times within a request (default: independent).

    Returns
    -------
    Simulation
    """
    n_draws = weights.shape[0]
    if latency.n_draws < n_draws:
        raise ValueError(f"{n_draws} pattern draws but only {latency.n_draws} latency draws")
    per_draw = max(1.0, expected_spans) * n_requests * len(entries)
    chunk = int(max(1, min(n_draws, CHUNK_SPANS // per_draw)))
    starts = list(range(0, n_draws, chunk))
    seeds = np.random.SeedSequence(random_seed).spawn(len(starts))
    kept = n_requests if quantiles is None else len(quantiles)
    out = [np.empty((n_draws, len(entries), kept), np.float32) for _ in scenarios]
    job = _Job(
        graph,
        weights,
        latency,
        group_of_type,
        entries,
        n_requests,
        scenarios,
        max_depth,
        dependence,
        expected_spans,
    )

    def run(i: int) -> tuple[int, int]:
        d0 = starts[i]
        draws = np.arange(d0, min(d0 + chunk, n_draws))
        results, spans, cut = job.chunk(draws, seeds[i])
        for s, values in enumerate(results):
            if quantiles is not None:
                values = np.quantile(values, quantiles, axis=-1, method="linear")
                values = np.moveaxis(values, 0, -1)
            out[s][draws] = values
        return spans, cut

    n_workers = min(len(starts), workers or available_cores())
    if n_workers > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            counts = list(pool.map(run, range(len(starts))))
    else:
        counts = [run(i) for i in range(len(starts))]
    return Simulation(
        latency=out,
        spans=sum(c[0] for c in counts),
        truncated=sum(c[1] for c in counts),
    )


@dataclass(frozen=True, eq=False)
class _Tree:
    """One chunk's request trees: span arrays in :func:`_request_kernels.expand` order."""

    types: np.ndarray
    draws: np.ndarray
    roots: np.ndarray
    parents: np.ndarray
    stages: np.ndarray
    occurrences: np.ndarray
    n_roots: int
    truncated: int

    @property
    def n_spans(self) -> int:
        return len(self.types)


@dataclass(frozen=True, eq=False)
class _Job:
    graph: CallGraph
    weights: np.ndarray
    latency: LatencyDraws
    group_of_type: np.ndarray
    entries: np.ndarray
    n_requests: int
    scenarios: list[Scenario]
    max_depth: int
    dependence: Dependence | None
    expected_spans: float

    def chunk(
        self, draws: np.ndarray, seed: np.random.SeedSequence
    ) -> tuple[list[np.ndarray], int, int]:
        """End-to-end latencies ``(len(draws), n_entries, n_requests)`` per scenario."""
        tree_seed, time_seed = (int(s.generate_state(1)[0] >> 1) for s in seed.spawn(2))
        shape = (len(draws), len(self.entries), self.n_requests)
        results: list[np.ndarray | None] = [None] * len(self.scenarios)
        spans = cut = 0
        # Scenarios sharing pattern weights share trees (and the model's own come first).
        by_weights: dict[int, list[int]] = {}
        for s, scenario in enumerate(self.scenarios):
            key = -1 if scenario.weights is None else id(scenario.weights)
            by_weights.setdefault(key, []).append(s)
        for key, members in by_weights.items():
            first = self.scenarios[members[0]]
            graph = self.graph if key == -1 else first.graph
            weights = self.weights if key == -1 else first.weights
            tree = self._tree(graph, weights, draws, tree_seed)
            spans += tree.n_spans if key == -1 else 0
            cut += tree.truncated if key == -1 else 0
            u = self._uniforms(tree, time_seed)
            base = self.latency.ppf(u, self.group_of_type[tree.types], tree.draws)
            for s in members:
                scenario = self.scenarios[s]
                self_times = base
                if scenario.changes_self_times:
                    self_times = _changed(base, u, tree.types, tree.draws, scenario)
                latency = kernels.compose(
                    np.ascontiguousarray(self_times, np.float64),
                    tree.parents,
                    tree.stages,
                    tree.n_spans,
                    tree.n_roots,
                )
                results[s] = latency.astype(np.float32).reshape(shape)
        return results, spans, cut  # type: ignore[return-value]

    def _tree(self, g: CallGraph, weights: np.ndarray, draws: np.ndarray, seed: int) -> _Tree:
        """Every request of the chunk: ``draws x entries x n_requests`` roots."""
        shape = (len(draws), len(self.entries), self.n_requests)
        root_type = np.broadcast_to(self.entries[None, :, None], shape).ravel().astype(np.int64)
        root_draw = np.broadcast_to(draws[:, None, None], shape).ravel().astype(np.int64)
        cum = np.ones((len(draws), g.n_entries))
        w = weights[draws]
        for t in np.flatnonzero(g.variable):
            lo, hi = g.row_ptr[t], g.row_ptr[t + 1]
            c = np.cumsum(w[:, lo:hi], axis=1)
            cum[:, lo:hi] = c / c[:, -1:]
        expected = len(root_type) * max(self.expected_spans, 1.0) * 1.25
        capacity = int(min(expected, 4 * CHUNK_SPANS)) + 1024
        while True:
            out = kernels.expand(
                seed,
                root_type,
                root_draw,
                int(draws[0]),
                g.row_ptr,
                g.variable,
                g.entry_is_new,
                g.child_ptr,
                g.child_type,
                g.child_stage,
                cum,
                g.kind_ptr,
                g.kind_child_ptr,
                g.kind_child_type,
                g.count_ptr,
                g.count_value,
                g.count_cum,
                self.max_depth,
                capacity,
            )
            n = out[6]
            if n >= 0:
                break
            capacity *= 2  # more spans than expected: draw the same trees again, larger
        return _Tree(*(a[:n] for a in out[:6]), n_roots=len(root_type), truncated=out[7])

    def _uniforms(self, tree: _Tree, seed: int) -> np.ndarray:
        """Each span's uniform: copula-correlated within its request, or independent."""
        dep = self.dependence
        n_draws, n_types = self.weights.shape[0], len(self.group_of_type)
        if dep is None:
            zero = np.zeros((n_draws, n_types))
            loads = (np.zeros(n_draws), zero, zero, np.ones((n_draws, n_types)))
            service = np.zeros(n_types, np.int64)
        else:
            loads = dep.loadings()
            service = dep.service_of_type.astype(np.int64)
        return kernels.uniforms(
            seed,
            tree.types,
            tree.draws,
            tree.roots,
            tree.occurrences,
            tree.n_spans,
            service,
            *loads,
        )


def _changed(
    base: np.ndarray, u: np.ndarray, types: np.ndarray, draws: np.ndarray, scenario: Scenario
) -> np.ndarray:
    """Self times under a scenario (same uniforms as the model's)."""
    values = base
    source = scenario.source[types]
    if np.any(source >= 0):
        values = base.copy()
        for i, replacement in enumerate(scenario.replacements):
            hit = source == i
            group, d = scenario.group[types[hit]], draws[hit] % replacement.n_draws
            values[hit] = replacement.ppf(u[hit], group, d)
    return np.maximum(values * scenario.scale[types] + scenario.add[types], 0.0)
