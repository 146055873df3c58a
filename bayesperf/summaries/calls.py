"""Call structure of requests: self times, stages and call patterns, from spans.

A request is a tree of spans. Per span this module finds

*self time*
    The span's duration minus the union of its children's intervals: the time no child
    covered, at least 0.
*stages*
    Its children sorted by start time; a child that starts before every earlier sibling
    has ended overlaps them and joins their stage (a parallel fan-out), otherwise it
    opens the next stage (a sequential call). A span's duration is its self time plus
    the length of each stage's union, which the request model composes as
    ``self + Σ_stages max(children)`` (parallel children started together).
*call pattern*
    The multiset of its stages, each stage the multiset of its children's *node types*.
    A node type is ``(service, operation)``; where the operation is missing, the
    ``(caller, callee)`` pair stands in for it (``operation = "(from <caller>)"``). The
    order of stages is not kept: it does not change the duration.

Clock skew and detached children
    Children are timed by other hosts' clocks. A child interval that starts before its
    parent or ends after it is moved inside the parent when it fits (counted as
    ``shifted``), and clipped to the parent's interval when it is longer than the parent
    by at most :data:`DETACH_MIN_MS` or :data:`DETACH_MIN_SHARE` of the parent's
    duration (counted as ``clipped``, with the time cut off in ``clipped_ms``). A child
    longer than its parent by more cannot have been waited for (clocks drift far less):
    it is *detached* (counted as ``detached``): not part of its parent's call pattern,
    and the parent's time alongside it is the parent's own. Nothing is dropped: detached
    spans keep their own self times and patterns.

The reduction is :class:`CallSummary`, which adds up exactly like the other summaries:

- ``self_time``, a :class:`~bayesperf.summaries.latency.LatencySummary` of self times by
  ``(service, operation)``, which the latency models fit as they are;
- ``patterns``, a :class:`~bayesperf.summaries.transitions.TraceTransitionCounts` in
  ``"calls"`` mode whose unit is one parent span: source = the span's node type, targets
  = its stages (``END`` for a span without children), so a cell is one call pattern
  with the number of spans that showed it;
- ``entries``, the end-to-end latency of every request (root span) by entry point;
- ``dependence``, how self times of one request move together: per request and node
  type, the sums of the spans' *normal scores* (``Φ⁻¹`` of the rank of the self time among
  its node type's), from which :class:`~bayesperf.models.dependence.SelfTimeCopula`
  estimates within-request correlations. Ranks are taken within one summarised table,
  so ``+`` of two summaries is exact for everything else and close for this.

Examples
--------
>>> import pandas as pd
>>> spans = pd.DataFrame({
...     "trace_id": ["t"] * 4, "span_id": ["r", "a", "b", "c"],
...     "parent_id": [None, "r", "r", "r"], "service": ["fe", "x", "y", "z"],
...     "operation": ["get", "op", "op", "op"],
...     "start_time": pd.to_datetime([0, 1, 1, 5], unit="ms", utc=True),
...     "latency": [10.0, 3.0, 2.0, 4.0]})
>>> table = span_calls(spans)
>>> table["self_time"].tolist()  # the root: 10 ms minus [1, 4] ∪ [1, 3] ∪ [5, 9]
[3.0, 3.0, 2.0, 4.0]
>>> table["stage"].tolist()  # x and y overlap (stage 0), z follows (stage 1)
[-1, 0, 0, 1]
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

from bayesperf import schema as S
from bayesperf.summaries.latency import LatencySummary, summarize_latency
from bayesperf.summaries.transitions import TraceTransitionCounts

NodeKey = Literal["operation", "pair"]
NODE_KEYS: tuple[NodeKey, ...] = ("operation", "pair")
#: A child longer than its parent by more than both of these is detached (not awaited).
DETACH_MIN_MS = 0.05
DETACH_MIN_SHARE = 0.05
#: Grouping of node types in every summary: service and operation.
NODE_BY = (S.SERVICE, S.OPERATION)
#: Operation of a root span without one (its ``(caller, callee)`` has no caller).
ROOT_OPERATION = "(root)"
NS_PER_MS = 1_000_000


def node_label(service: str, operation: str) -> str:
    """The text label of a node type in call patterns: ``["service", "operation"]``.

    Examples
    --------
    >>> node_label("frontend", "GET /")
    '["frontend","GET /"]'
    """
    return json.dumps([service, operation], separators=(",", ":"))


def parse_stage(label: str) -> list[tuple[str, str]]:
    """Node types of a stage label (the targets of :attr:`CallSummary.patterns`).

    Examples
    --------
    >>> parse_stage('[["a","op"],["b","op"]]')
    [('a', 'op'), ('b', 'op')]
    """
    return [tuple(node) for node in json.loads(label)]


@dataclass(frozen=True, eq=False)
class CallSummary:
    """Self times, call patterns and end-to-end latencies: what the request model is fit on.

    Build it with :func:`summarize_calls`; add two with ``+`` (summaries of distinct
    traces).

    Attributes
    ----------
    self_time : LatencySummary
        Self time (ms) of every span, by ``(service, operation)``.
    entries : LatencySummary
        End-to-end latency (ms) of every request, by the root span's
        ``(service, operation)``: the entry point.
    patterns : TraceTransitionCounts
        ``"calls"`` mode, one unit per span: source = the span's node label
        (:func:`node_label`), targets = its stage labels (a JSON list of node labels)
        with their multiplicity, or ``END`` for a span without children.
    dependence : pandas.DataFrame
        One row per (request, node type): ``request`` (an integer, distinct per
        request), ``service``, ``operation``, ``n`` spans, ``sum_z`` and ``sum_z2``, the
        sum and sum of squares of their self times' normal scores.
    skew : collections.Counter
        Children moved inside their parent (``shifted``), clipped to it (``clipped``,
        and ``clipped_ms``), not awaited by it (``detached``), and spans without a start
        time laid out one after another (``no_start_time``).
    skipped : collections.Counter
        Spans whose parent is not in the data (``parent_missing``): their subtrees
        count for self times and patterns, not as requests.
    """

    self_time: LatencySummary
    entries: LatencySummary
    patterns: TraceTransitionCounts
    dependence: pd.DataFrame = field(default_factory=lambda: _dependence_frame(*[[]] * 6))
    skew: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    @property
    def nodes(self) -> pd.MultiIndex:
        """All node types, ``(service, operation)``, sorted."""
        return self.self_time.groups

    @property
    def n_requests(self) -> int:
        """Requests (root spans) summarised."""
        return int(self.entries.count.sum())

    def __add__(self, other: CallSummary) -> CallSummary:
        """The summary of both inputs' traces together (exact)."""
        if not isinstance(other, CallSummary):
            return NotImplemented
        shift = int(self.dependence["request"].max()) + 1 if len(self.dependence) else 0
        moved = other.dependence.assign(request=other.dependence["request"] + shift)
        return CallSummary(
            self_time=self.self_time + other.self_time,
            entries=self.entries + other.entries,
            patterns=self.patterns + other.patterns,
            dependence=pd.concat([self.dependence, moved], ignore_index=True),
            skew=self.skew + other.skew,
            skipped=self.skipped + other.skipped,
        )

    def pattern_table(self) -> pd.DataFrame:
        """The call patterns, readable: one row per (node type, pattern).

        Returns
        -------
        pandas.DataFrame
            ``service``, ``operation``, ``spans`` (how many spans showed the pattern),
            ``calls`` (children per span), ``stages`` and ``pattern``: the stages
            written ``a + b`` for a parallel stage and joined by ``; ``, children as
            ``service:operation``; ``(no calls)`` for a leaf.
        """
        rows = []
        for cell in self.patterns.cells.itertuples():
            service, operation = json.loads(cell.source)
            stages = json.loads(cell.pattern)
            text, calls, n_stages = [], 0, 0
            for label, count in stages.items():
                if label == S.END:
                    continue
                nodes = parse_stage(label)
                part = " + ".join(f"{s}:{o}" for s, o in nodes)
                text += [part] * count
                calls += count * len(nodes)
                n_stages += count
            rows.append(
                {
                    S.SERVICE: service,
                    S.OPERATION: operation,
                    "spans": int(cell.traces),
                    "calls": calls,
                    "stages": n_stages,
                    "pattern": "; ".join(text) or "(no calls)",
                }
            )
        return pd.DataFrame(rows).sort_values(
            [S.SERVICE, S.OPERATION, "spans"], ascending=[True, True, False], ignore_index=True
        )

    def __repr__(self) -> str:
        return (
            f"CallSummary(node_types={len(self.nodes)}, entry_points={self.entries.n_groups}, "
            f"requests={self.n_requests}, spans={int(self.self_time.count.sum())}, "
            f"patterns={self.patterns.n_cells})"
        )


def span_calls(spans: pd.DataFrame, node_key: NodeKey = "operation") -> pd.DataFrame:
    """Per span: node type, self time, children, stages and clock-skew corrections.

    Parameters
    ----------
    spans : pandas.DataFrame
        A span table with ``trace_id``, ``span_id``, ``parent_id``, ``service``,
        ``latency`` and ``start_time`` (``operation`` and ``caller`` where present), as
        :func:`bayesperf.read_traces` returns it.
    node_key : {"operation", "pair"}, default "operation"
        Node types by ``(service, operation)``, falling back to the ``(caller,
        callee)`` pair where a span has no operation; or always by the pair.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``spans``: ``service``, ``operation`` (the node type),
        ``latency`` and ``self_time`` (ms), ``parent_row`` (position of the parent
        span, -1 for none), ``root`` (no parent id), ``n_children``, ``n_stages``,
        ``stage`` (0-based stage of the span among its siblings, -1 without a parent in
        the data, or detached), ``skew`` (``""``, ``"shifted"``, ``"clipped"`` or
        ``"detached"``) with ``clipped_ms`` (the part of a clipped span outside its
        parent), ``timed`` (whether the span has a start time), ``request_row``
        (position of the root of the span's tree).

    Raises
    ------
    ValueError
        A missing column, spans without a service, or a span id used twice in a trace.
    """
    _check(spans, node_key)
    n = len(spans)
    service = spans[S.SERVICE].astype("str").to_numpy(dtype=object)
    operation = _operations(spans, node_key)
    parent = _parent_rows(spans)
    has_parent_id = spans[S.PARENT_ID].notna().to_numpy()
    dur = np.rint(spans[S.LATENCY].to_numpy(np.float64) * NS_PER_MS).astype(np.int64)
    start, timed = _start_ns(spans)

    child = np.flatnonzero(parent >= 0)
    par = parent[child]
    start = _lay_out_untimed(start, timed, dur, child, par)
    end = start + dur
    cs, ce, skew = _inside_parent(start[child], end[child], start[par], end[par], dur, child, par)
    clipped_ns = np.zeros(n, np.int64)
    clipped_ns[child] = np.where(skew == "clipped", dur[child] - (ce - cs), 0)
    skew_col = np.full(n, "", dtype=object)
    skew_col[child] = skew

    attached = skew != "detached"
    child, par, cs, ce = child[attached], par[attached], cs[attached], ce[attached]
    order = np.lexsort((ce, cs, par))
    child, par, cs, ce = child[order], par[order], cs[order], ce[order]
    first = np.r_[True, par[1:] != par[:-1]] if len(par) else np.zeros(0, bool)
    # A child opens a stage unless it starts before an earlier sibling has ended.
    running_end = pd.Series(ce).groupby(par).cummax().to_numpy()
    previous_end = np.r_[np.iinfo(np.int64).min, running_end[:-1]]
    opens = first | (cs >= previous_end)
    stage_no = np.cumsum(opens) - 1
    stage_in_parent = stage_no - np.repeat(stage_no[first], _run_lengths(first))
    seg = np.flatnonzero(opens)
    seg_parent = par[seg]
    parents = par[first]
    if len(seg):
        covered = np.maximum.reduceat(ce, seg) - cs[seg]
        union = np.add.reduceat(covered, np.flatnonzero(np.r_[True, np.diff(seg_parent) != 0]))
    else:
        union = np.zeros(0, np.int64)

    self_ns = dur.copy()
    self_ns[parents] -= union
    n_children = np.bincount(par, minlength=n)
    n_stages = np.bincount(seg_parent, minlength=n)
    stage = np.full(n, -1, np.int64)
    stage[child] = stage_in_parent
    return pd.DataFrame(
        {
            S.TRACE_ID: spans[S.TRACE_ID].to_numpy(),
            S.SERVICE: service,
            S.OPERATION: operation,
            S.LATENCY: dur / NS_PER_MS,
            "self_time": np.maximum(self_ns, 0) / NS_PER_MS,
            "parent_row": parent,
            "root": ~has_parent_id,
            "n_children": n_children,
            "n_stages": n_stages,
            "stage": stage,
            "skew": skew_col,
            "clipped_ms": clipped_ns / NS_PER_MS,
            "timed": timed,
            "request_row": _tree_roots(parent),
        },
        index=spans.index,
    )


def summarize_calls(spans: pd.DataFrame, node_key: NodeKey = "operation") -> CallSummary:
    """Reduce a span table to its :class:`CallSummary` (self times, patterns, requests).

    Parameters
    ----------
    spans : pandas.DataFrame
        A span table with parent links and start times (see :func:`span_calls`).
    node_key : {"operation", "pair"}, default "operation"
        How spans are grouped into node types (see :func:`span_calls`).

    Returns
    -------
    CallSummary

    Examples
    --------
    >>> import bayesperf
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> calls = summarize_calls(spans)
    >>> calls.n_requests, int(calls.self_time.count.sum()) == len(spans)
    (502, True)
    """
    table = span_calls(spans, node_key)
    node_frame = table[[S.SERVICE, S.OPERATION]]
    self_time = summarize_latency(node_frame.assign(**{S.LATENCY: table["self_time"]}), NODE_BY)
    roots = table["root"].to_numpy()
    entries = summarize_latency(
        node_frame[roots].assign(**{S.LATENCY: table[S.LATENCY][roots]}), NODE_BY
    )
    skew = Counter(
        {
            "shifted": int((table["skew"] == "shifted").sum()),
            "clipped": int((table["skew"] == "clipped").sum()),
            "detached": int((table["skew"] == "detached").sum()),
            "clipped_ms": float(table["clipped_ms"].sum()),
            "no_start_time": int((~table["timed"]).sum()),
        }
    )
    missing = int(((table["parent_row"] < 0) & ~roots).sum())
    skipped = Counter({"parent_missing": missing} if missing else {})
    return CallSummary(
        self_time=self_time,
        entries=entries,
        patterns=_patterns(table),
        dependence=_dependence(table),
        skew=Counter({k: v for k, v in skew.items() if v}),
        skipped=skipped,
    )


# ------------------------------------------------------------------------- helpers
def _dependence_frame(request, service, operation, n, sum_z, sum_z2) -> pd.DataFrame:
    def text(values) -> pd.api.extensions.ExtensionArray:
        return pd.array(np.asarray(values, dtype=object).astype(str), dtype="str")

    return pd.DataFrame(
        {
            "request": np.asarray(request, np.int64),
            S.SERVICE: text(service),
            S.OPERATION: text(operation),
            "n": np.asarray(n, np.int64),
            "sum_z": np.asarray(sum_z, np.float64),
            "sum_z2": np.asarray(sum_z2, np.float64),
        }
    )


def _dependence(table: pd.DataFrame) -> pd.DataFrame:
    """Per (request, node type): spans and the sums of their self times' normal scores."""
    node = pd.factorize(pd.MultiIndex.from_frame(table[[S.SERVICE, S.OPERATION]]))[0]
    frame = pd.DataFrame(
        {
            "self_time": table["self_time"].to_numpy(),
            "node": node,
            "request": pd.factorize(table["request_row"].to_numpy(), sort=True)[0],
            S.SERVICE: table[S.SERVICE].to_numpy(),
            S.OPERATION: table[S.OPERATION].to_numpy(),
        }
    )
    # Mid-ranks within the node type, then Φ⁻¹((rank - 1/2) / n): normal scores, scaled to
    # unit variance (ties shrink them). A node type whose self times are all equal says
    # nothing about dependence: its spans count as no spans (n = 0).
    by_node = frame.groupby("node")["self_time"]
    rank = by_node.rank(method="average").to_numpy()
    count = by_node.transform("size").to_numpy()
    z = special.ndtri((rank - 0.5) / count)
    sd = pd.Series(z).groupby(node).transform(lambda v: np.sqrt(np.mean(v * v))).to_numpy()
    informative = sd > 1e-12
    z = np.where(informative, z / np.where(informative, sd, 1.0), 0.0)
    frame = frame.assign(z=z, z2=z * z, counted=informative.astype(np.int64))
    sums = frame.groupby(["request", S.SERVICE, S.OPERATION], sort=True).agg(
        n=("counted", "sum"), sum_z=("z", "sum"), sum_z2=("z2", "sum")
    )
    keys = sums.index
    return _dependence_frame(
        keys.get_level_values(0),
        keys.get_level_values(1),
        keys.get_level_values(2),
        sums["n"],
        sums["sum_z"],
        sums["sum_z2"],
    )


def _check(spans: pd.DataFrame, node_key: str) -> None:
    if not isinstance(spans, pd.DataFrame):
        raise TypeError(f"the call structure needs a span table, got {type(spans).__name__}")
    if node_key not in NODE_KEYS:
        raise ValueError(f"unknown node_key {node_key!r}; expected one of {NODE_KEYS}")
    needed = [S.TRACE_ID, S.SPAN_ID, S.PARENT_ID, S.SERVICE, S.LATENCY, S.START_TIME]
    if node_key == "pair" or S.OPERATION not in spans.columns:
        needed.append(S.CALLER)
    missing = [c for c in needed if c not in spans.columns]
    if missing:
        raise ValueError(
            f"the call structure needs column(s) {missing} (span ids and parent links "
            f"for the tree, start times for overlaps); the table has {list(spans.columns)}"
        )
    if spans[S.SERVICE].isna().any():
        raise ValueError("span table has spans without a service; read it with read_traces")
    y = spans[S.LATENCY].to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isfinite(y) | (y < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} latencies are missing, negative or infinite (first: row {i}, "
            f"span {spans[S.SPAN_ID].iloc[i]!r}); read traces with bayesperf.read_traces"
        )


def _operations(spans: pd.DataFrame, node_key: str) -> np.ndarray:
    """The operation part of each span's node type (the caller where it is missing)."""
    if S.CALLER in spans.columns:
        caller = spans[S.CALLER].astype("str").to_numpy(dtype=object)
        fallback = np.where(
            pd.isna(caller), ROOT_OPERATION, "(from " + caller.astype(str) + ")"
        ).astype(object)
    else:
        fallback = np.full(len(spans), ROOT_OPERATION, dtype=object)
    if node_key == "pair" or S.OPERATION not in spans.columns:
        return fallback
    operation = spans[S.OPERATION].astype("str").to_numpy(dtype=object)
    return np.where(pd.isna(operation), fallback, operation).astype(object)


def _parent_rows(spans: pd.DataFrame) -> np.ndarray:
    """Row position of each span's parent in its trace; -1 without one in the data."""
    trace = pd.factorize(spans[S.TRACE_ID])[0].astype(np.int64)
    ids = np.concatenate(
        [
            spans[S.SPAN_ID].astype("str").to_numpy(object),
            spans[S.PARENT_ID].astype("str").to_numpy(object),
        ]
    )
    codes = pd.factorize(ids, use_na_sentinel=True)[0].astype(np.int64)
    n = len(spans)
    width = int(codes.max(initial=0)) + 2
    own = trace * width + codes[:n]
    index = pd.Index(own)
    if not index.is_unique:
        dup = index.duplicated(keep="first")
        i = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"span id {spans[S.SPAN_ID].iloc[i]!r} occurs twice in trace "
            f"{spans[S.TRACE_ID].iloc[i]!r}: de-duplicate the spans (read_traces does)"
        )
    wanted = np.where(codes[n:] >= 0, trace * width + codes[n:], -1)
    return np.where(codes[n:] >= 0, index.get_indexer(wanted), -1).astype(np.int64)


def _start_ns(spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Start times in integer ns (0 where missing) and whether each span has one."""
    col = spans[S.START_TIME]
    timed = col.notna().to_numpy()
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
        ns = col.to_numpy(dtype="datetime64[ns]").astype(np.int64, copy=False)
    else:
        ns = np.rint(col.to_numpy(np.float64, na_value=0.0)).astype(np.int64)
    return np.where(timed, ns, 0), timed


def _lay_out_untimed(
    start: np.ndarray, timed: np.ndarray, dur: np.ndarray, child: np.ndarray, par: np.ndarray
) -> np.ndarray:
    """Place children without a start time one after another from their parent's start.

    Roots without a start time start at 0 (only durations matter below them).
    """
    if timed.all():
        return start
    start = start.copy()
    untimed_child = child[~timed[child]]
    if untimed_child.size:
        p = par[~timed[child]]
        order = np.argsort(p, kind="stable")
        untimed_child, p = untimed_child[order], p[order]
        cum = np.cumsum(dur[untimed_child])
        first = np.r_[True, p[1:] != p[:-1]]
        group_start = np.repeat(np.flatnonzero(first), _run_lengths(first))
        before = cum - dur[untimed_child] - np.where(group_start > 0, cum[group_start - 1], 0)
        start[untimed_child] = start[p] + before
    return start


def _run_lengths(first: np.ndarray) -> np.ndarray:
    """Lengths of the runs that start where ``first`` is True."""
    return np.diff(np.r_[np.flatnonzero(first), len(first)])


def _tree_roots(parent: np.ndarray) -> np.ndarray:
    """Row of the top of each span's tree, by pointer jumping (cycles end at some member)."""
    top = np.where(parent >= 0, parent, np.arange(len(parent)))
    for _ in range(64):  # depth up to 2**64
        up = top[top]
        if np.array_equal(up, top):
            break
        top = up
    return top


def _inside_parent(cs, ce, ps, pe, dur, child, par):
    """Child intervals moved (or clipped) into their parents' intervals, and what was done."""
    outside = (cs < ps) | (ce > pe)
    excess = dur[child] - dur[par]
    longer = excess > 0
    detached = excess > np.maximum(DETACH_MIN_MS * NS_PER_MS, DETACH_MIN_SHARE * dur[par])
    shift = np.where(cs < ps, ps - cs, np.where(ce > pe, pe - ce, 0))
    fits = outside & ~longer
    cs = np.where(fits, cs + shift, cs)
    ce = np.where(fits, ce + shift, ce)
    cs_c = np.clip(cs, ps, pe)
    ce_c = np.maximum(np.clip(ce, ps, pe), cs_c)
    skew = np.full(len(child), "", dtype=object)
    skew[fits] = "shifted"
    skew[longer & ~detached] = "clipped"
    skew[detached] = "detached"
    return cs_c, ce_c, skew


def _patterns(table: pd.DataFrame) -> TraceTransitionCounts:
    """One unit per span: its node type and its stages (``END`` for no children)."""
    codes, nodes = pd.factorize(
        pd.MultiIndex.from_arrays([table[S.SERVICE], table[S.OPERATION]]), sort=True
    )
    labels = np.asarray([node_label(s, o) for s, o in nodes], dtype=object)
    source = labels[codes]
    parent = table["parent_row"].to_numpy()
    has = (parent >= 0) & (table["stage"].to_numpy() >= 0)  # detached children: not waited
    key = pd.DataFrame(
        {"parent": parent[has], "stage": table["stage"].to_numpy()[has], "node": codes[has]}
    ).sort_values(["parent", "stage", "node"], kind="stable")
    p, st, node = (key[c].to_numpy() for c in ("parent", "stage", "node"))
    new = np.r_[True, (p[1:] != p[:-1]) | (st[1:] != st[:-1])] if len(p) else np.zeros(0, bool)
    seg = np.flatnonzero(new)
    size = np.diff(np.r_[seg, len(p)])
    stage_label = np.empty(len(seg), dtype=object)
    single_label = np.asarray(["[" + lab + "]" for lab in labels], dtype=object)
    one = size == 1
    stage_label[one] = single_label[node[seg[one]]]
    for i in np.flatnonzero(~one):  # parallel stages: few
        stage_label[i] = "[" + ",".join(labels[node[seg[i] : seg[i] + size[i]]]) + "]"
    leaves = np.flatnonzero(table["n_children"].to_numpy() == 0)
    frame = pd.DataFrame(
        {
            "trace": np.r_[p[seg], leaves],
            "source": np.r_[source[p[seg]], source[leaves]],
            "target": np.r_[stage_label, np.full(len(leaves), S.END, dtype=object)],
            "count": 1,
        }
    )
    return TraceTransitionCounts.from_frame(frame, mode="calls")
