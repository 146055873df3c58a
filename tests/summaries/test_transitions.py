"""Transition counts: exact merging over whole traces (property tests) and known values."""

from __future__ import annotations

import functools
import operator
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesperf
from bayesperf.schema import END, START
from bayesperf.summaries import transitions as transitions_module
from bayesperf.summaries.transitions import (
    CALLER_UNKNOWN,
    TraceTransitionCounts,
    TransitionCounts,
    count_trace_transitions,
    count_transitions,
)

SERVICES = ["cart", "currency", "frontend", "product", "redis"]
MODES = ["sequence", "calls"]


# ------------------------------------------------------------------ generators
@st.composite
def trace_tables(draw, max_traces: int = 5, max_spans: int = 7) -> pd.DataFrame:
    """Canonical-like span tables: call trees, callers derived from parent links.

    Includes ties and gaps in start times, spans whose parent is not in the data
    ("orphans", caller unknown) and traces interleaved in the table.
    """
    rows = []
    for t in range(draw(st.integers(1, max_traces))):
        trace_id = f"{draw(st.integers(0, 2**32)):08x}{t}"
        services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, max_size=max_spans))
        for j, service in enumerate(services):
            parent = None if j == 0 else draw(st.integers(0, j - 1))
            orphan = parent is not None and draw(st.integers(0, 9)) == 0
            start = draw(st.one_of(st.none(), st.integers(0, 5)))
            rows.append(
                {
                    "trace_id": trace_id,
                    "span_id": f"{trace_id}-{j}",
                    "parent_id": (
                        None if parent is None else f"{trace_id}-{'missing' if orphan else parent}"
                    ),
                    "service": service,
                    "caller": None if parent is None or orphan else services[parent],
                    "start_time": start,
                }
            )
    frame = pd.DataFrame(rows)
    if draw(st.booleans()):  # interleave the traces (order within a trace kept)
        key = draw(st.lists(st.integers(0, 3), min_size=len(frame), max_size=len(frame)))
        frame = frame.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return canonical_types(frame)


def canonical_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a generated table the canonical dtypes (strings, categories, UTC times)."""
    out = frame.copy()
    for col in ("trace_id", "span_id", "parent_id"):
        if col in out:
            out[col] = out[col].astype("str")
    cats = pd.Index(SERVICES, dtype="str")
    for col in ("service", "caller"):
        out[col] = pd.Categorical(out[col].astype("str"), categories=cats)
    out["callee"] = out["service"]
    start = pd.array(out["start_time"].tolist(), dtype="Int64")
    out["start_time"] = pd.to_datetime(start, unit="ns", utc=True)
    out["latency"] = 1.0
    return out


def random_traces(seed: int, n_traces: int, *, orphans: float = 0.02) -> pd.DataFrame:
    """A larger random canonical table (numpy, not hypothesis), traces contiguous."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, n_traces)
    trace_of = np.repeat(np.arange(n_traces), sizes)
    pos = np.concatenate([np.arange(s) for s in sizes])
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    parent_pos = np.where(pos > 0, (rng.random(len(pos)) * np.maximum(pos, 1)).astype(int), -1)
    services = rng.choice(SERVICES, len(pos))
    parent_row = np.where(pos > 0, first + parent_pos, -1)
    orphan = (pos > 0) & (rng.random(len(pos)) < orphans)
    trace_ids = np.array([f"{rng.integers(2**62):016x}" for _ in range(n_traces)])[trace_of]
    span_ids = np.char.add(np.char.add(trace_ids, "-"), pos.astype(str))
    parent_ids = np.where(
        pos > 0,
        np.char.add(
            np.char.add(trace_ids, "-"),
            np.where(orphan, "missing", parent_pos.astype(str)),
        ),
        None,
    )
    callers = np.where((pos > 0) & ~orphan, services[np.maximum(parent_row, 0)], None)
    start = rng.integers(0, 20, len(pos)).astype(object)
    start[rng.random(len(pos)) < 0.05] = None
    frame = pd.DataFrame(
        {
            "trace_id": trace_ids,
            "span_id": span_ids,
            "parent_id": parent_ids,
            "service": services,
            "caller": callers,
            "start_time": start,
        }
    )
    table = canonical_types(frame)
    table["latency"] = rng.lognormal(0, 1.5, len(table))
    return table


def split_by_traces(frame: pd.DataFrame, chosen: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = frame["trace_id"].isin(chosen).to_numpy()
    return frame.loc[mask], frame.loc[~mask]


def counts_dict(t: TransitionCounts) -> dict[tuple[str, str], int]:
    return {k: int(v) for k, v in t.counts.items()}


def inflow(t: TransitionCounts) -> pd.Series:
    return t.counts.groupby(level="target").sum()


def outflow(t: TransitionCounts) -> pd.Series:
    return t.counts.groupby(level="source").sum()


# --------------------------------------------------------------- property tests
@settings(max_examples=80, deadline=None)
@given(
    frame=trace_tables(),
    mode=st.sampled_from(MODES),
    picks=st.lists(st.booleans(), min_size=5, max_size=5),
    flat=st.booleans(),
)
def test_counts_of_union_equal_merge_over_whole_traces(frame, mode, picks, flat):
    if flat:  # no parent links anywhere: leaves from caller names
        frame = frame.drop(columns=["span_id", "parent_id"])
    traces = list(dict.fromkeys(frame["trace_id"]))
    chosen = {t for t, p in zip(traces, picks, strict=False) if p}
    a, b = split_by_traces(frame, chosen)
    whole = count_transitions(frame, mode)
    ta, tb = count_transitions(a, mode), count_transitions(b, mode)
    assert (ta + tb).equals(whole)
    assert (ta + tb).equals(tb + ta)


@settings(max_examples=60, deadline=None)
@given(frame=trace_tables())
def test_sequence_invariants(frame):
    t = count_transitions(frame, "sequence")
    n_traces = frame["trace_id"].nunique()
    assert t.total == len(frame) + n_traces
    assert outflow(t)[START] == inflow(t)[END] == n_traces
    spans_per_service = frame["service"].astype("str").value_counts()
    services = spans_per_service.index
    # Each span of s is entered once and left once: flow is conserved.
    assert inflow(t)[services].tolist() == spans_per_service.tolist()
    assert outflow(t)[services].tolist() == spans_per_service.tolist()
    assert not t.skipped


@settings(max_examples=60, deadline=None)
@given(frame=trace_tables())
def test_calls_invariants(frame):
    """Derived independently from the parent links of the generated call trees."""
    t = count_transitions(frame, "calls")
    children = Counter(zip(frame["trace_id"], frame["parent_id"], strict=True))
    n_children = np.array(
        [children[k] for k in zip(frame["trace_id"], frame["span_id"], strict=True)]
    )
    service = frame["service"].astype("str").to_numpy()
    orphan = frame["parent_id"].notna().to_numpy() & frame["caller"].isna().to_numpy()
    roots = frame["parent_id"].isna().to_numpy()

    assert t.skipped == (Counter({CALLER_UNKNOWN: int(orphan.sum())}) if orphan.any() else {})
    assert outflow(t).get(START, 0) == roots.sum()
    # Into s: one per span of s with a known caller (or START for roots).
    into = pd.Series(service[~orphan]).value_counts()
    assert inflow(t).drop(END, errors="ignore").sort_index().equals(into.sort_index())
    # Out of s: one per child call, or one END per leaf span of s: sum of max(children, 1).
    out = pd.Series(np.maximum(n_children, 1)).groupby(service).sum()
    assert outflow(t).drop(START, errors="ignore").sort_index().to_dict() == out.to_dict()
    assert inflow(t).get(END, 0) == (n_children == 0).sum()


# ------------------------------------------------------------- hand-made table
def two_traces() -> pd.DataFrame:
    """Two traces with exactly known counts.

    t1: frontend -> cart -> redis, frontend -> currency (all links present).
    t2: frontend -> currency, plus a product span whose parent is not in the data.
    """
    return pd.DataFrame(
        {
            "trace_id": ["t1", "t1", "t2", "t1", "t2", "t1", "t2"],
            "span_id": ["s1", "s2", "u1", "s3", "u2", "s4", "u3"],
            "parent_id": [None, "s1", None, "s2", "gone", "s1", "u1"],
            "service": ["frontend", "cart", "frontend", "redis", "product", "currency", "currency"],
            "caller": [None, "frontend", None, "cart", None, "frontend", "frontend"],
            "start_time": [0, 1, 10, 2, 11, 3, 12],
            "latency": 1.0,
        }
    )


def test_sequence_on_two_traces():
    t = count_transitions(two_traces(), "sequence")
    assert counts_dict(t) == {
        (START, "frontend"): 2,
        ("frontend", "cart"): 1,
        ("cart", "redis"): 1,
        ("redis", "currency"): 1,
        ("currency", END): 2,
        ("frontend", "product"): 1,
        ("product", "currency"): 1,
    }
    assert not t.skipped
    assert t.states.tolist() == [START, "cart", "currency", "frontend", "product", "redis", END]


def test_calls_on_two_traces_with_a_missing_parent():
    t = count_transitions(two_traces(), "calls")
    assert counts_dict(t) == {
        (START, "frontend"): 2,
        ("frontend", "cart"): 1,
        ("cart", "redis"): 1,
        ("frontend", "currency"): 2,
        ("redis", END): 1,
        ("currency", END): 2,
        # The orphan's incoming call is unknown (skipped), but it is a leaf: its END is
        # counted.
        ("product", END): 1,
    }
    assert t.skipped == Counter({CALLER_UNKNOWN: 1})
    assert t.total == 10


def test_calls_on_flat_table_uses_caller_names():
    flat = two_traces().drop(columns=["span_id", "parent_id"])
    t = count_transitions(flat, "calls")
    # Without parent links the product span has no caller: it is a root.
    assert counts_dict(t) == {
        (START, "frontend"): 2,
        (START, "product"): 1,
        ("frontend", "cart"): 1,
        ("cart", "redis"): 1,
        ("frontend", "currency"): 2,
        ("redis", END): 1,
        ("currency", END): 2,
        ("product", END): 1,
    }
    assert not t.skipped


def test_canonical_read_gives_the_same_counts():
    raw = two_traces()
    spans = bayesperf.read_traces(raw)
    assert spans["service"].dtype == "category"
    for mode in MODES:
        assert count_transitions(spans, mode).equals(count_transitions(raw, mode))


def test_sequence_ties_and_missing_start_times_keep_table_order():
    spans = pd.DataFrame(
        {
            "trace_id": ["t"] * 4,
            "service": ["a", "b", "c", "d"],
            "start_time": [5.0, np.nan, 5.0, 1.0],
        }
    )
    t = count_transitions(spans, "sequence")
    # d (1) first; a and c tie at 5 and keep table order; b has no start time: last.
    assert counts_dict(t) == {
        (START, "d"): 1,
        ("d", "a"): 1,
        ("a", "c"): 1,
        ("c", "b"): 1,
        ("b", END): 1,
    }
    no_times = count_transitions(spans.drop(columns="start_time"), "sequence")
    assert counts_dict(no_times) == {
        (START, "a"): 1,
        ("a", "b"): 1,
        ("b", "c"): 1,
        ("c", "d"): 1,
        ("d", END): 1,
    }


def test_to_frame_sparse_and_from_frame_round_trip():
    t = count_transitions(two_traces(), "calls")
    frame = t.to_frame()
    assert frame.columns.tolist() == ["source", "target", "count"]
    back = TransitionCounts.from_frame(frame, "calls", skipped=t.skipped)
    assert back.equals(t)
    matrix, states = t.to_sparse()
    assert matrix.shape == (len(states), len(states)) and matrix.sum() == t.total
    i, j = states.get_loc("frontend"), states.get_loc("currency")
    assert matrix[i, j] == 2


# ------------------------------------------------------------------ errors
def test_errors():
    spans = two_traces()
    with pytest.raises(ValueError, match="unknown transition mode 'tree'"):
        count_transitions(spans, "tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'calls' transitions need column\(s\) \['caller'\]"):
        count_transitions(spans.drop(columns="caller"), "calls")
    with pytest.raises(ValueError, match=r"need column\(s\) \['trace_id'\]"):
        count_transitions(spans.drop(columns="trace_id"))
    with pytest.raises(ValueError, match="spans without a service"):
        count_transitions(spans.assign(service=[None, *spans["service"][1:]]))
    seq, calls = count_transitions(spans, "sequence"), count_transitions(spans, "calls")
    with pytest.raises(ValueError, match="cannot add 'sequence' and 'calls'"):
        _ = seq + calls
    with pytest.raises(TypeError):
        _ = seq + 1
    with pytest.raises(ValueError, match="lacks column"):
        TransitionCounts.from_frame(pd.DataFrame({"source": ["a"], "target": ["b"]}))
    with pytest.raises(ValueError, match="non-negative whole numbers"):
        TransitionCounts.from_frame(pd.DataFrame({"source": ["a"], "target": ["b"], "count": [-1]}))
    with pytest.raises(ValueError, match="read other formats"):
        count_transitions("no-such-file.csv")
    with pytest.raises(TypeError, match="not list"):
        count_transitions([1, 2, 3])


def test_empty_table_and_identity():
    spans = two_traces()
    for mode in MODES:
        empty = count_transitions(spans.iloc[:0], mode)
        assert empty.total == 0 and empty.equals(TransitionCounts.empty(mode))
        t = count_transitions(spans, mode)
        assert (empty + t).equals(t) and (t + empty).equals(t)


def test_calls_merge_with_and_without_parent_links():
    linked = pd.DataFrame(
        {
            "trace_id": ["t1", "t1"],
            "span_id": ["a", "b"],
            "parent_id": [None, "a"],
            "service": ["frontend", "cart"],
            "caller": [None, "frontend"],
        }
    )
    flat = pd.DataFrame(
        {
            "trace_id": ["t2", "t2"],
            "span_id": ["c", "d"],
            "parent_id": [None, None],  # caller known, parent link not exported
            "service": ["frontend", "cart"],
            "caller": [None, "frontend"],
        }
    )
    whole = count_transitions(pd.concat([linked, flat], ignore_index=True), "calls")
    merged = count_transitions(linked, "calls") + count_transitions(flat, "calls")
    assert merged.equals(whole)


# -------------------------------------------------------------- bundled dataset
@pytest.fixture(scope="module")
def boutique() -> pd.DataFrame:
    return bayesperf.datasets.load_online_boutique()


def test_bundled_sequence(boutique):
    t = count_transitions(boutique, "sequence")
    assert t.counts.loc[(START, "frontend")] == 502
    assert outflow(t)[START] == inflow(t)[END] == 502
    assert t.total == len(boutique) + 502
    per_service = boutique["service"].astype("str").value_counts()
    assert inflow(t)[per_service.index].tolist() == per_service.tolist()
    assert outflow(t)[per_service.index].tolist() == per_service.tolist()


def test_bundled_calls(boutique):
    t = count_transitions(boutique, "calls")
    assert t.counts.loc[(START, "frontend")] == 502
    assert outflow(t)[START] == 502
    assert not t.skipped  # every parent is in the data
    # Calls out of s, independently: spans whose caller is s (the caller column).
    calls_out = boutique["caller"].astype("str").value_counts()
    to_services = t.counts.drop(END, level="target", errors="ignore")
    assert outflow(TransitionCounts("calls", to_services)).drop(START).to_dict() == (
        calls_out.to_dict()
    )
    # END out of s: spans of s that are nobody's parent (from the parent links).
    parents = set(zip(boutique["trace_id"], boutique["parent_id"], strict=True))
    is_leaf = [
        (tr, sp) not in parents
        for tr, sp in zip(boutique["trace_id"], boutique["span_id"], strict=True)
    ]
    leaves = boutique.loc[is_leaf, "service"].astype("str").value_counts()
    assert t.counts.xs(END, level="target").to_dict() == leaves.to_dict()
    # Together: out(s) = sum over spans of s of max(children, 1).
    assert outflow(t).drop(START).sum() == (len(boutique) - 502) + sum(is_leaf)


def test_bundled_merge_over_trace_halves(boutique):
    traces = boutique["trace_id"].unique()
    rng = np.random.default_rng(3)
    chosen = set(rng.choice(traces, len(traces) // 2, replace=False))
    a, b = split_by_traces(boutique, chosen)
    for mode in MODES:
        assert (count_transitions(a, mode) + count_transitions(b, mode)).equals(
            count_transitions(boutique, mode)
        )


def test_random_traces_generator_is_canonical():
    table = random_traces(0, 50)
    assert table["trace_id"].nunique() == 50
    t = count_transitions(table, "calls")
    orphans = int((table["parent_id"].notna() & table["caller"].isna()).sum())
    assert t.skipped.get(CALLER_UNKNOWN, 0) == orphans
    assert outflow(t)[START] == 50
    assert functools.reduce(operator.add, [t, TransitionCounts.empty("calls")]).equals(t)


# ------------------------------------------------------------ per-trace counts
def naive_cells(frame: pd.DataFrame, mode: str, include_end: bool = True) -> Counter:
    """(source, pattern) -> traces, by counting every trace on its own."""
    out: Counter = Counter()
    for _, trace in frame.groupby("trace_id", sort=False, observed=True):
        counts = count_transitions(trace, mode).counts
        if not include_end:
            counts = counts[counts.index.get_level_values(1) != END]
        for source, row in counts.groupby(level=0):
            pattern = {t: int(c) for (_, t), c in sorted(row.items(), key=lambda kv: kv[0][1])}
            out[(source, str(pattern))] += 1
    return out


def cells_counter(cells: TraceTransitionCounts) -> Counter:
    frame = cells.to_frame()
    out: Counter = Counter()
    for (_cell, source), group in frame.groupby(["cell", "source"]):
        pattern = dict(zip(group["target"], group["count"].astype(int), strict=True))
        out[(source, str(pattern))] += int(group["traces"].iloc[0])
    return out


@settings(max_examples=60, deadline=None)
@given(
    frame=trace_tables(),
    mode=st.sampled_from(MODES),
    include_end=st.booleans(),
    picks=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_trace_counts_sum_to_counts_match_each_trace_and_merge(frame, mode, include_end, picks):
    cells = count_trace_transitions(frame, mode, include_end=include_end)
    whole = count_transitions(frame, mode)
    if not include_end:
        whole = TransitionCounts(
            mode, whole.counts[whole.counts.index.get_level_values(1) != END], whole.skipped
        )
    assert cells.to_counts().equals(whole)
    assert cells.total == whole.total
    assert cells_counter(cells) == naive_cells(frame, mode, include_end)
    # Identical patterns are merged: (source, pattern) is a key.
    assert not cells.cells.duplicated(["source", "pattern"]).any()
    assert (cells.entries["count"] > 0).all()
    if include_end:
        dropped = count_trace_transitions(frame, mode, include_end=False)
        assert cells.without_end().equals(dropped)
    traces = list(dict.fromkeys(frame["trace_id"]))
    chosen = {t for t, p in zip(traces, picks, strict=False) if p}
    a, b = split_by_traces(frame, chosen)
    ca = count_trace_transitions(a, mode, include_end=include_end)
    cb = count_trace_transitions(b, mode, include_end=include_end)
    assert (ca + cb).equals(cells)


def test_trace_counts_on_two_traces():
    cells = count_trace_transitions(two_traces(), "calls")
    assert cells.cells.to_dict("list") == {
        "source": [START, "cart", "currency", "frontend", "frontend", "product", "redis"],
        "pattern": [
            '{"frontend":1}',
            '{"redis":1}',
            '{"END":1}',
            '{"cart":1,"currency":1}',
            '{"currency":1}',
            '{"END":1}',
            '{"END":1}',
        ],
        "n": [1, 1, 1, 2, 1, 1, 1],
        "traces": [2, 1, 2, 1, 1, 1, 1],
    }
    assert cells.skipped == Counter({CALLER_UNKNOWN: 1})
    assert cells.n_cells == 7 and cells.n_units == 9 and cells.total == 10
    assert "cells=7" in repr(cells)


def test_trace_counts_on_the_bundled_dataset_are_few_patterns(boutique):
    for mode in MODES:
        cells = count_trace_transitions(boutique, mode)
        assert cells.to_counts().equals(count_transitions(boutique, mode))
        assert cells.n_cells < 60 < 3000 < cells.n_units  # request types repeat paths
        assert cells.cells.query("source == 'START'")["traces"].sum() == 502


def test_trace_counts_stay_exact_when_every_pattern_hash_collides(monkeypatch):
    frame = random_traces(5, 200)
    expected = count_trace_transitions(frame, "calls")
    monkeypatch.setattr(transitions_module, "_splitmix", lambda x: np.zeros_like(x))
    collided = count_trace_transitions(frame, "calls")
    assert collided.equals(expected)
    assert cells_counter(collided) == naive_cells(frame, "calls")


def test_trace_counts_dataset_round_trip_from_frame_and_empty():
    cells = count_trace_transitions(two_traces(), "sequence")
    assert TraceTransitionCounts.from_dataset(cells.to_dataset()).equals(cells)
    frame = cells.to_frame()
    assert list(frame.columns) == ["cell", "source", "pattern", "traces", "target", "count"]
    table = pd.DataFrame(
        {
            "trace": ["x", "x", "y", "y", "z"],
            "source": ["a", "a", "a", "a", "a"],
            "target": ["b", "c", "c", "b", "b"],
            "count": [1, 2, 2, 1, 0],  # x and y share a pattern; z has no transition
        }
    )
    built = TraceTransitionCounts.from_frame(table)
    assert built.cells["pattern"].tolist() == ['{"b":1,"c":2}']
    assert built.cells["traces"].tolist() == [2]
    empty = TraceTransitionCounts.empty("calls")
    assert empty.total == 0 and empty.n_cells == 0
    assert (empty + built.__class__.empty("calls")).equals(empty)
    assert count_trace_transitions(two_traces().iloc[:0], "calls").equals(empty)


def test_trace_counts_errors():
    with pytest.raises(TypeError, match="pandas span table"):
        count_trace_transitions("spans.parquet")
    with pytest.raises(ValueError, match=r"need column\(s\) \['caller'\]"):
        count_trace_transitions(two_traces().drop(columns="caller"), "calls")
    with pytest.raises(ValueError, match="unknown transition mode"):
        count_trace_transitions(two_traces(), "tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lacks column"):
        TraceTransitionCounts.from_frame(pd.DataFrame({"source": ["a"], "target": ["b"]}))
    with pytest.raises(ValueError, match="non-negative"):
        TraceTransitionCounts.from_frame(
            pd.DataFrame({"trace": [1], "source": ["a"], "target": ["b"], "count": [-2]})
        )
    seq = count_trace_transitions(two_traces(), "sequence")
    with pytest.raises(ValueError, match="cannot add"):
        _ = seq + count_trace_transitions(two_traces(), "calls")
