"""Which children each node type calls, how many times and how: an exact Dirichlet posterior.

A *call pattern* of a node type ``(service, operation)`` is what one of its spans did:
its stages (sequential steps), each stage the children it ran in parallel
(:mod:`bayesperf.summaries.calls`). A request tree is drawn top-down by giving every
span a pattern; this model is the posterior of each node type's distribution over
patterns.

The model
    The patterns of node type ``t`` are a Dirichlet process: with the ``K`` patterns
    seen ``c_1 .. c_K`` times, the posterior weights are
    ``(w_1, ..., w_K, w_new) ~ Dirichlet(c_1, ..., c_K, α)``, exactly (conjugate; no
    sampling). ``w_new`` is the probability of a pattern not seen among the ``n_t``
    spans, drawn from the base measure ``G0``: every *stage kind* of ``t`` (a distinct
    stage, e.g. "one call to cartservice", or "query + rows in parallel") repeated a
    number of times drawn independently from its own distribution over ``t``'s spans.
    ``G0`` keeps the arrangement of each stage and forgets which stages go together, so
    new combinations (a cart of 9 items where 8 were seen) get probability, at about
    ``α / (n_t + α)`` in total. A node type seen with a single pattern keeps it.

    This is the Dirichlet machinery of :class:`~bayesperf.models.transitions.
    TransitionModel` with patterns as targets and a base-measure bucket in place of
    the ``(unseen)`` one: the pattern probabilities have exact Beta marginals
    (:meth:`CallModel.pattern_probabilities`); per (parent, child) call probabilities
    and counts are linear in the weights and come from exact posterior draws
    (:meth:`CallModel.summary`).

What it does not model
    Patterns of different spans are independent given their node types: a request type
    chosen at the root does not steer how its descendants behave beyond their node
    types, and latencies within a request are independent given the posterior draw.
    A child never seen under a parent gets no probability (``G0`` builds on seen
    stages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesperf import schema as S
from bayesperf.models._base import BayesModel
from bayesperf.models.transitions import _beta_quantiles, _interval_levels
from bayesperf.summaries.calls import (
    NODE_BY,
    CallSummary,
    NodeKey,
    parse_stage,
    summarize_calls,
)
from bayesperf.summaries.transitions import TraceTransitionCounts

__all__ = ["NEW_PATTERN", "CallGraph", "CallModel"]

#: Label of the base-measure bucket: a pattern not seen in the data.
NEW_PATTERN = "(new pattern)"

Seed = int | np.random.Generator | None


@dataclass(frozen=True, eq=False)
class CallGraph:
    """Every node type's call patterns as flat arrays, for drawing request trees.

    Node types are integer codes into ``nodes``. Entries ``row_ptr[t]:row_ptr[t + 1]``
    are type ``t``'s patterns, then (for a *variable* type, one with several patterns)
    its new-pattern bucket. Entry ``e``'s children are ``child_ptr[e]:child_ptr[e + 1]``
    (types ``child_type``, stage ``child_stage`` within the pattern, stages in order).
    The base measure of a variable type ``t`` has stage kinds
    ``kind_ptr[t]:kind_ptr[t + 1]``; kind ``j`` runs the children
    ``kind_child_ptr[j]:kind_child_ptr[j + 1]`` in parallel, and is repeated
    ``count_value[i]`` times with the cumulative probabilities ``count_cum[i]``,
    ``i`` in ``count_ptr[j]:count_ptr[j + 1]``.
    """

    nodes: pd.MultiIndex
    row_ptr: np.ndarray
    entry_count: np.ndarray
    entry_is_new: np.ndarray
    child_ptr: np.ndarray
    child_type: np.ndarray
    child_stage: np.ndarray
    variable: np.ndarray
    kind_ptr: np.ndarray
    kind_child_ptr: np.ndarray
    kind_child_type: np.ndarray
    count_ptr: np.ndarray
    count_value: np.ndarray
    count_cum: np.ndarray

    @property
    def n_types(self) -> int:
        """Number of node types."""
        return len(self.nodes)

    @property
    def n_entries(self) -> int:
        """Number of pattern entries (buckets included)."""
        return len(self.entry_count)

    @property
    def entry_type(self) -> np.ndarray:
        """Node type of each entry."""
        return np.repeat(np.arange(self.n_types), np.diff(self.row_ptr))

    def code(self, service: str, operation: str) -> int:
        """Code of a node type (KeyError naming close node types if unknown)."""
        try:
            return int(self.nodes.get_loc((service, operation)))
        except KeyError:
            same = [o for s, o in self.nodes if s == service][:5]
            raise KeyError(
                f"no node type ({service!r}, {operation!r}) in the call graph"
                + (f"; {service!r} has operations {same}" if same else "")
            ) from None

    def codes_of(self, key: str | tuple[str, str]) -> np.ndarray:
        """Node types of a service name, or of one ``(service, operation)``."""
        if isinstance(key, tuple):
            return np.array([self.code(*key)])
        found = np.flatnonzero(self.nodes.get_level_values(0) == key)
        if not found.size:
            services = sorted(set(self.nodes.get_level_values(0)))
            raise KeyError(f"no service {key!r} in the call graph; services: {services}")
        return found

    def draw_weights(
        self, n_draws: int, concentration: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Posterior draws of every entry's probability, ``(n_draws, n_entries)``.

        Rows of variable types are ``Dirichlet(counts, concentration)`` (the bucket
        last); a type with one pattern has weight 1 on it.
        """
        a = self.entry_count.astype(np.float64)
        a[self.entry_is_new] = concentration
        weights = np.ones((n_draws, self.n_entries))
        variable_entry = self.variable[self.entry_type]
        if variable_entry.any():
            g = rng.standard_gamma(a[variable_entry], size=(n_draws, int(variable_entry.sum())))
            rows = self.entry_type[variable_entry]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            sums = np.add.reduceat(g, starts, axis=1)
            weights[:, variable_entry] = g / np.repeat(sums, np.diff(np.r_[starts, len(rows)]), 1)
        return weights

    # ------------------------------------------------------------ what-if questions
    def remote_service(self) -> np.ndarray:
        """Per node type: the one other service all its children run in, else ``""``.

        A client span (``frontend`` calling ``cartservice``: its only child is the
        cartservice server span) is where its caller's call to that service shows.
        """
        services = self.nodes.get_level_values(0).to_numpy(dtype=object)
        out = np.full(self.n_types, "", dtype=object)
        entry = np.repeat(np.arange(self.n_entries), np.diff(self.child_ptr))
        frame = pd.DataFrame(
            {"type": self.entry_type[entry], "child": services[self.child_type]}
        ).drop_duplicates()
        single = frame.groupby("type")["child"].agg(["nunique", "first"])
        single = single[single["nunique"] == 1]
        own = services[single.index.to_numpy()]
        keep = single["first"].to_numpy(dtype=object) != own
        out[single.index.to_numpy()[keep]] = single["first"].to_numpy(dtype=object)[keep]
        return out

    def calls_between(
        self, caller: str | tuple[str, str], callee: str | tuple[str, str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Parent types and child types (a mask) whose calls make ``caller -> callee``.

        Services match where the decision is taken. A call from service ``A`` to ``B``
        is a child of an ``A`` span that runs in ``B``, or an ``A`` client span whose
        children all run in ``B`` (:meth:`remote_service`: Online Boutique's frontend
        calls adservice through a frontend span ``hipstershop.AdService/GetAds``). Such
        a client span is itself no parent of the call when another ``A`` span calls it:
        it always calls ``B``; the decision is its caller's. A ``(service, operation)``
        tuple names one node type exactly.
        """
        services = self.nodes.get_level_values(0).to_numpy(dtype=object)
        remote = self.remote_service()
        caller_service = caller[0] if isinstance(caller, tuple) else caller
        if isinstance(callee, tuple):
            children = np.zeros(self.n_types, bool)
            children[self.code(*callee)] = True
        else:
            self.codes_of(callee)  # a clear error for an unknown service
            children = (services == callee) | ((services == caller_service) & (remote == callee))
        kids = self._child_types()
        parents = [int(p) for p in self.codes_of(caller) if children[kids[p]].any()]
        reached = {int(c) for p in parents for c in kids[p]}
        if not isinstance(caller, tuple):
            parents = [p for p in parents if not (children[p] and p in reached)]
        return np.asarray(parents, np.int64), children

    def _child_types(self) -> list[np.ndarray]:
        """Per node type: the node types it calls in any of its patterns."""
        entry = np.repeat(np.arange(self.n_entries), np.diff(self.child_ptr))
        frame = pd.DataFrame({"type": self.entry_type[entry], "child": self.child_type})
        grouped = frame.drop_duplicates().groupby("type")["child"].agg(lambda c: c.to_numpy())
        return [grouped.get(t, np.zeros(0, np.int64)) for t in range(self.n_types)]

    def with_call_probability(
        self, weights: np.ndarray, parents: np.ndarray, children: np.ndarray, p: float
    ) -> tuple[CallGraph, np.ndarray]:
        """Patterns and weights where spans of ``parents`` call ``children`` with probability p.

        Per posterior draw, with ``p0`` today's probability (the weight of the patterns
        that call a child): patterns with the call are scaled by ``p / p0``; for
        ``p < p0`` each of them also gets a copy *without* those calls, weighted
        ``1 - p / p0`` of it (the rest of the request unchanged: a cache miss that
        became rarer); for ``p > p0`` the patterns without the call are scaled by
        ``(1 - p) / (1 - p0)``. New patterns (the base measure) count as "without".

        Raises
        ------
        ValueError
            ``p`` outside [0, 1], or no span of ``parents`` ever made such a call.
        """
        if not 0 <= p <= 1:
            raise ValueError(f"a call probability must be in [0, 1], got {p}")
        has = np.zeros(self.n_entries, bool)
        for e in range(self.n_entries):
            kids = self.child_type[self.child_ptr[e] : self.child_ptr[e + 1]]
            has[e] = bool(children[kids].any())
        affected = np.zeros(self.n_types, bool)
        affected[parents] = True
        has &= affected[self.entry_type] & ~self.entry_is_new
        if not has.any():
            raise ValueError("no span of the calling node type(s) ever made that call")
        graph, position, copy_of = self._with_stripped(has, children)
        new = np.zeros((weights.shape[0], graph.n_entries))
        new[:, position] = weights
        types = np.unique(self.entry_type[has])
        for t in types:
            row = np.arange(self.row_ptr[t], self.row_ptr[t + 1])
            with_call, without = row[has[row]], row[~has[row]]
            p0 = weights[:, with_call].sum(axis=1, keepdims=True)
            new[:, position[with_call]] = weights[:, with_call] * (p / p0)
            stripped = np.flatnonzero(np.isin(copy_of, with_call))
            new[:, stripped] = weights[:, copy_of[stripped]] * np.maximum(0.0, 1 - p / p0)
            if len(without):
                scale = np.where(p0 < 1, np.minimum(1.0, (1 - p) / np.maximum(1 - p0, 1e-300)), 1.0)
                new[:, position[without]] = weights[:, without] * scale
        return graph, new

    def _with_stripped(
        self, has: np.ndarray, children: np.ndarray
    ) -> tuple[CallGraph, np.ndarray, np.ndarray]:
        """The graph plus, per entry in ``has``, a copy without the ``children`` calls.

        Returns the graph, the new position of every old entry, and for every new entry
        the old entry it copies (``-1`` for the old entries themselves).
        """
        row_ptr, counts, is_new, child_ptr, kid_type, kid_stage = [0], [], [], [0], [], []
        position = np.empty(self.n_entries, np.int64)
        copy_of: list[int] = []
        variable = self.variable.copy()
        for t in range(self.n_types):
            row = range(self.row_ptr[t], self.row_ptr[t + 1])
            for e in row:
                position[e] = len(counts)
                lo, hi = self.child_ptr[e], self.child_ptr[e + 1]
                self._append_entry(
                    (counts, is_new, child_ptr, kid_type, kid_stage),
                    self.entry_count[e],
                    self.entry_is_new[e],
                    self.child_type[lo:hi],
                    self.child_stage[lo:hi],
                )
                copy_of.append(-1)
            for e in row:
                if not has[e]:
                    continue
                lo, hi = self.child_ptr[e], self.child_ptr[e + 1]
                keep = ~children[self.child_type[lo:hi]]
                stages = self.child_stage[lo:hi][keep]
                self._append_entry(
                    (counts, is_new, child_ptr, kid_type, kid_stage),
                    0,
                    False,
                    self.child_type[lo:hi][keep],
                    np.unique(stages, return_inverse=True)[1] if len(stages) else stages,
                )
                copy_of.append(e)
                variable[t] = True
            row_ptr.append(len(counts))
        graph = CallGraph(
            nodes=self.nodes,
            row_ptr=np.asarray(row_ptr, np.int64),
            entry_count=np.asarray(counts, np.int64),
            entry_is_new=np.asarray(is_new, bool),
            child_ptr=np.asarray(child_ptr, np.int64),
            child_type=np.asarray(kid_type, np.int64),
            child_stage=np.asarray(kid_stage, np.int64),
            variable=variable,
            kind_ptr=self.kind_ptr,
            kind_child_ptr=self.kind_child_ptr,
            kind_child_type=self.kind_child_type,
            count_ptr=self.count_ptr,
            count_value=self.count_value,
            count_cum=self.count_cum,
        )
        return graph, position, np.asarray(copy_of, np.int64)

    @staticmethod
    def _append_entry(lists, count, is_new, types, stages) -> None:
        counts, new, child_ptr, kid_type, kid_stage = lists
        counts.append(int(count))
        new.append(bool(is_new))
        kid_type.extend(np.asarray(types).tolist())
        kid_stage.extend(np.asarray(stages).tolist())
        child_ptr.append(len(kid_type))

    # ---------------------------------------------------------------- base measure
    def new_pattern_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (variable type, child type) under the base measure: P(≥ 1 call), E calls.

        Returns the arrays ``parent``, ``child``, ``p_any``, ``mean`` over the pairs
        (as a tuple of ``(parent, child)`` stacked and the two moments).
        """
        parents, children, p_none, mean = [], [], [], []
        for t in np.flatnonzero(self.variable):
            stats: dict[int, list[float]] = {}
            for j in range(self.kind_ptr[t], self.kind_ptr[t + 1]):
                lo, hi = self.count_ptr[j], self.count_ptr[j + 1]
                probs = np.diff(np.r_[0.0, self.count_cum[lo:hi]])
                values = self.count_value[lo:hi]
                p_zero = float(probs[values == 0].sum())
                expected = float(probs @ values)
                kids = self.kind_child_type[self.kind_child_ptr[j] : self.kind_child_ptr[j + 1]]
                for c, k in zip(*np.unique(kids, return_counts=True), strict=True):
                    entry = stats.setdefault(int(c), [1.0, 0.0])
                    entry[0] *= p_zero
                    entry[1] += expected * k
            for c, (none, m) in stats.items():
                parents.append(t)
                children.append(c)
                p_none.append(none)
                mean.append(m)
        pairs = np.array([parents, children], dtype=np.int64).reshape(2, -1)
        return pairs, 1 - np.asarray(p_none), np.asarray(mean)


class CallModel(BayesModel):
    """Exact posterior of every node type's call patterns (Dirichlet process per type).

    Parameters
    ----------
    concentration : float, default 1.0
        ``α`` of the Dirichlet process: the prior weight, in spans, of patterns not
        seen (see the module docstring).
    node_key : {"operation", "pair"}, default "operation"
        Node types when fit on spans (:func:`~bayesperf.summaries.calls.span_calls`).

    Examples
    --------
    >>> import bayesperf
    >>> from bayesperf.models.calls import CallModel
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> model = CallModel().fit(spans)
    >>> table = model.summary()
    >>> row = table.loc[("frontend", "hipstershop.Frontend/Recv.",
    ...                  "frontend", "hipstershop.CurrencyService/Convert")]
    >>> bool(row["calls_lower"] < row["calls_mean"] < row["calls_upper"])
    True
    """

    def __init__(self, concentration: float = 1.0, node_key: NodeKey = "operation") -> None:
        concentration = float(concentration)
        if not (np.isfinite(concentration) and concentration > 0):
            raise ValueError(f"concentration must be a positive number, got {concentration!r}")
        self.concentration = concentration
        self.node_key = node_key
        self._graph: CallGraph | None = None

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {"concentration": self.concentration, "node_key": self.node_key}

    def __repr__(self) -> str:
        state = f"{self.graph.n_types} node types" if self.is_fitted else "not fitted"
        return f"CallModel(concentration={self.concentration:g}; {state})"

    def fit(
        self, data: pd.DataFrame | CallSummary | TraceTransitionCounts, *, random_seed: Seed = None
    ) -> CallModel:
        """Compute the exact posterior from spans, a call summary or its patterns.

        ``random_seed`` is accepted for symmetry with the sampled models; the
        posterior is exact.
        """
        del random_seed
        if isinstance(data, CallSummary):
            patterns = data.patterns
        elif isinstance(data, TraceTransitionCounts):
            patterns = data
        else:
            patterns = summarize_calls(data, self.node_key).patterns
        if patterns.n_cells == 0:
            raise ValueError("no spans: the call summary has no patterns to fit")
        self._graph = _compile(patterns)
        self._idata = xr.DataTree.from_dict({"fit_data": patterns.to_dataset()})
        return self

    @property
    def graph(self) -> CallGraph:
        """The compiled patterns (:class:`CallGraph`)."""
        if self._graph is None:
            self._graph = _compile(
                TraceTransitionCounts.from_dataset(self.idata["fit_data"].to_dataset())
            )
        return self._graph

    @property
    def nodes(self) -> pd.MultiIndex:
        """Node types ``(service, operation)``."""
        return self.graph.nodes

    def pattern_probabilities(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Posterior of each node type's pattern probabilities (exact Beta marginals).

        Returns
        -------
        pandas.DataFrame
            One row per (node type, pattern), plus a ``(new pattern)`` row per node type
            with several patterns: ``service``, ``operation``, ``pattern`` (readable, as
            in :meth:`CallSummary.pattern_table`), ``spans``, ``mean``, ``median``,
            ``lower``, ``upper``.
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        g = self.graph
        a = g.entry_count.astype(np.float64)
        a[g.entry_is_new] = self.concentration
        row_total = np.add.reduceat(a, g.row_ptr[:-1])[g.entry_type]
        b = row_total - a
        q = _beta_quantiles(a, b, np.array([0.5, lo_q, hi_q]))
        nodes = g.nodes
        return pd.DataFrame(
            {
                S.SERVICE: nodes.get_level_values(0)[g.entry_type],
                S.OPERATION: nodes.get_level_values(1)[g.entry_type],
                "pattern": [_pattern_text(g, e) for e in range(g.n_entries)],
                "spans": g.entry_count,
                "mean": a / row_total,
                "median": q[0],
                "lower": q[1],
                "upper": q[2],
            }
        )

    def summary(
        self, ci_prob: float = 0.9, *, draws: int = 2000, random_seed: Seed = 0
    ) -> pd.DataFrame:
        """Per (parent, child) node types: how likely a call is, and how many per span.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Mass of the equal-tailed intervals.
        draws : int, default 2000
            Exact posterior draws of the pattern weights used for the intervals.
        random_seed : int, optional
            Seed of those draws.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``(service, operation, child_service, child_operation)``:
            ``spans`` (of the parent type), ``p_call_mean/lower/upper`` (probability
            that a span calls the child at least once), ``calls_mean/lower/upper``
            (expected calls per span), ``observed_calls`` (per span, in the data) and
            ``parallel`` (share of the observed calls made in a parallel stage).
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        g = self.graph
        rng = np.random.default_rng(random_seed)
        weights = g.draw_weights(draws, self.concentration, rng)
        calls, parallel = _entry_child_calls(g)  # (pairs) rows: entry, child, calls, parallel
        entry_type = g.entry_type
        frame = pd.DataFrame(
            {
                "parent": entry_type[calls["entry"]],
                "child": calls["child"],
                "entry": calls["entry"],
                "calls": calls["calls"],
                "parallel": parallel,
            }
        )
        pairs = frame.groupby(["parent", "child"], sort=True).size().index
        pair_code = pairs.get_indexer(pd.MultiIndex.from_arrays([frame["parent"], frame["child"]]))
        n_pairs = len(pairs)
        new_pairs, new_p, new_mean = g.new_pattern_moments()
        new_code = pairs.get_indexer(pd.MultiIndex.from_arrays(new_pairs))
        # Matrices entries x pairs: calls, and "calls at least once".
        count_m = np.zeros((g.n_entries, n_pairs))
        np.add.at(count_m, (frame["entry"].to_numpy(), pair_code), frame["calls"].to_numpy())
        any_m = (count_m > 0).astype(np.float64)
        new_entry = np.flatnonzero(g.entry_is_new)
        bucket = (
            new_entry[np.searchsorted(entry_type[new_entry], new_pairs[0])] if len(new_code) else []
        )
        count_m[bucket, new_code] = new_mean
        any_m[bucket, new_code] = new_p
        expected, p_any = weights @ count_m, weights @ any_m
        spans = np.add.reduceat(g.entry_count, g.row_ptr[:-1])
        seen = count_m * ~g.entry_is_new[:, None]  # the bucket's rows are not data
        observed = (g.entry_count @ seen) / spans[pairs.get_level_values(0)]
        par = frame.assign(w=g.entry_count[frame["entry"]] * frame["calls"])
        par_share = (
            (par["w"] * par["parallel"]).groupby(pair_code).sum()
            / par["w"].groupby(pair_code).sum()
        ).to_numpy()
        nodes = g.nodes
        p_idx, c_idx = pairs.get_level_values(0), pairs.get_level_values(1)
        index = pd.MultiIndex.from_arrays(
            [
                nodes.get_level_values(0)[p_idx],
                nodes.get_level_values(1)[p_idx],
                nodes.get_level_values(0)[c_idx],
                nodes.get_level_values(1)[c_idx],
            ],
            names=[S.SERVICE, S.OPERATION, "child_service", "child_operation"],
        )
        return pd.DataFrame(
            {
                "spans": spans[p_idx],
                "p_call_mean": p_any.mean(axis=0),
                "p_call_lower": np.quantile(p_any, lo_q, axis=0),
                "p_call_upper": np.quantile(p_any, hi_q, axis=0),
                "calls_mean": expected.mean(axis=0),
                "calls_lower": np.quantile(expected, lo_q, axis=0),
                "calls_upper": np.quantile(expected, hi_q, axis=0),
                "observed_calls": observed,
                "parallel": par_share,
            },
            index=index,
        )


# ------------------------------------------------------------------------ compiling
def _compile(patterns: TraceTransitionCounts) -> CallGraph:
    """Parse the pattern cells into a :class:`CallGraph`."""
    cells = patterns.cells
    sources = [tuple(json.loads(s)) for s in cells["source"]]
    stages_of = [_stages(p) for p in cells["pattern"]]
    names = set(sources)
    for stages in stages_of:
        names.update(node for stage in stages for node in stage)
    nodes = pd.MultiIndex.from_tuples(sorted(names), names=list(NODE_BY))
    source_code = nodes.get_indexer(sources)
    order = np.lexsort((-cells["traces"].to_numpy(), source_code))
    by_type: dict[int, list[int]] = {}
    for i in order:
        by_type.setdefault(int(source_code[i]), []).append(int(i))

    row_ptr, entry_count, entry_is_new = [0], [], []
    child_ptr, child_type, child_stage = [0], [], []
    variable = np.zeros(len(nodes), bool)
    kind_ptr, kind_child_ptr, kind_child_type = [0], [0], []
    count_ptr, count_value, count_cum = [0], [], []
    for t in range(len(nodes)):
        rows = by_type.get(t, [])
        for i in rows:
            entry_count.append(int(cells["traces"].iat[i]))
            entry_is_new.append(False)
            for s, stage in enumerate(stages_of[i]):
                child_type.extend(nodes.get_indexer(stage).tolist())
                child_stage.extend([s] * len(stage))
            child_ptr.append(len(child_type))
        if len(rows) > 1:
            variable[t] = True
            entry_count.append(0)
            entry_is_new.append(True)
            child_ptr.append(len(child_type))
            _base_measure(
                nodes,
                [cells["pattern"].iat[i] for i in rows],
                np.array([cells["traces"].iat[i] for i in rows], np.float64),
                (kind_child_ptr, kind_child_type, count_ptr, count_value, count_cum),
            )
        kind_ptr.append(len(kind_child_ptr) - 1)
        row_ptr.append(len(entry_count))
    return CallGraph(
        nodes=nodes,
        row_ptr=np.asarray(row_ptr, np.int64),
        entry_count=np.asarray(entry_count, np.int64),
        entry_is_new=np.asarray(entry_is_new, bool),
        child_ptr=np.asarray(child_ptr, np.int64),
        child_type=np.asarray(child_type, np.int64),
        child_stage=np.asarray(child_stage, np.int64),
        variable=variable,
        kind_ptr=np.asarray(kind_ptr, np.int64),
        kind_child_ptr=np.asarray(kind_child_ptr, np.int64),
        kind_child_type=np.asarray(kind_child_type, np.int64),
        count_ptr=np.asarray(count_ptr, np.int64),
        count_value=np.asarray(count_value, np.int64),
        count_cum=np.asarray(count_cum, np.float64),
    )


def _stages(pattern: str) -> list[list[tuple[str, str]]]:
    """The stages of a pattern key, multiplicities expanded, ``END`` (no calls) dropped."""
    stages = []
    for label, count in json.loads(pattern).items():
        if label != S.END:
            stages.extend([parse_stage(label)] * int(count))
    return stages


def _base_measure(nodes: pd.MultiIndex, patterns: list[str], spans: np.ndarray, out) -> None:
    """Append one type's stage kinds and their count distributions to ``out``."""
    kind_child_ptr, kind_child_type, count_ptr, count_value, count_cum = out
    parsed = [json.loads(p) for p in patterns]
    kinds = sorted({label for p in parsed for label in p if label != S.END})
    for label in kinds:
        kind_child_type.extend(nodes.get_indexer(parse_stage(label)).tolist())
        kind_child_ptr.append(len(kind_child_type))
        counts = np.array([p.get(label, 0) for p in parsed], np.int64)
        values = np.unique(counts)
        probs = np.array([spans[counts == v].sum() for v in values]) / spans.sum()
        count_value.extend(values.tolist())
        cum = np.cumsum(probs)
        cum[-1] = 1.0
        count_cum.extend(cum.tolist())
        count_ptr.append(len(count_value))


def _entry_child_calls(g: CallGraph) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per (entry, child type): calls in the pattern, and the share made in parallel stages."""
    entry = np.repeat(np.arange(g.n_entries), np.diff(g.child_ptr))
    stage_key = entry * (g.child_stage.max(initial=0) + 1) + g.child_stage
    _, inverse, size = np.unique(stage_key, return_inverse=True, return_counts=True)
    stage_size = size[inverse]
    frame = pd.DataFrame(
        {"entry": entry, "child": g.child_type, "parallel": (stage_size > 1).astype(float)}
    )
    grouped = frame.groupby(["entry", "child"], sort=True)
    calls = grouped.size()
    par = grouped["parallel"].mean().to_numpy()
    keys = calls.index
    return (
        {
            "entry": keys.get_level_values(0).to_numpy(),
            "child": keys.get_level_values(1).to_numpy(),
            "calls": calls.to_numpy(np.float64),
        },
        par,
    )


def _pattern_text(g: CallGraph, e: int) -> str:
    """A readable pattern: stages joined by ``; ``, parallel children by `` + ``."""
    if g.entry_is_new[e]:
        return NEW_PATTERN
    lo, hi = g.child_ptr[e], g.child_ptr[e + 1]
    if lo == hi:
        return "(no calls)"
    parts: dict[int, list[str]] = {}
    for c, s in zip(g.child_type[lo:hi], g.child_stage[lo:hi], strict=True):
        service, operation = g.nodes[c]
        parts.setdefault(int(s), []).append(f"{service}:{operation}")
    return "; ".join(" + ".join(p) for p in parts.values())
