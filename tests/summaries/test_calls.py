"""Call structure from spans: self times, stages, clock skew, patterns, merging."""

import json

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf.summaries.calls import (
    CallSummary,
    node_label,
    span_calls,
    summarize_calls,
)


def spans_of(rows, trace="t"):
    """Spans from (span, parent, service, operation, start_ms, latency_ms) rows."""
    frame = pd.DataFrame(
        rows, columns=["span_id", "parent_id", "service", "operation", "start", "latency"]
    )
    return frame.assign(
        trace_id=trace,
        start_time=pd.to_datetime(frame["start"], unit="ms", utc=True),
        caller=None,
    ).drop(columns="start")


def test_self_time_is_latency_minus_union_of_children():
    spans = spans_of(
        [
            ("r", None, "fe", "get", 0.0, 20.0),
            ("a", "r", "a", "op", 1.0, 4.0),  # [1, 5]
            ("b", "r", "b", "op", 3.0, 4.0),  # [3, 7]: overlaps a -> same stage
            ("c", "r", "c", "op", 10.0, 5.0),  # [10, 15]: a new stage
        ]
    )
    table = span_calls(spans)
    # union = [1, 7] + [10, 15] = 11 ms
    assert table["self_time"].tolist() == [9.0, 4.0, 4.0, 5.0]
    assert table["stage"].tolist() == [-1, 0, 0, 1]
    assert table["n_stages"].tolist() == [2, 0, 0, 0]
    assert table["n_children"].tolist() == [3, 0, 0, 0]
    assert table["skew"].tolist() == ["", "", "", ""]


def test_touching_children_are_sequential_and_self_time_never_negative():
    spans = spans_of(
        [
            ("r", None, "fe", "get", 0.0, 10.0),
            ("a", "r", "a", "op", 0.0, 5.0),
            ("b", "r", "b", "op", 5.0, 5.0),  # starts exactly when a ends
        ]
    )
    table = span_calls(spans)
    assert table["stage"].tolist() == [-1, 0, 1]
    assert table["self_time"].tolist() == [0.0, 5.0, 5.0]


def test_clock_skew_is_shifted_clipped_or_detached_and_counted():
    spans = spans_of(
        [
            ("r", None, "fe", "get", 10.0, 10.0),  # [10, 20]
            ("a", "r", "a", "op", 9.0, 4.0),  # starts 1 ms early, fits: shifted to [10, 14]
            ("b", "r", "b", "op", 18.0, 4.0),  # ends 2 ms late, fits: shifted to [16, 20]
            ("s", None, "fe", "get", 0.0, 10.0),  # [0, 10]
            ("c", "s", "c", "op", 0.0, 10.2),  # 0.2 ms (2%) longer: clipped to [0, 10]
            ("u", None, "fe", "get", 0.0, 10.0),
            ("d", "u", "d", "op", 0.0, 30.0),  # far longer than its parent: detached
        ]
    )
    table = span_calls(spans)
    assert table["skew"].tolist() == ["", "shifted", "shifted", "", "clipped", "", "detached"]
    np.testing.assert_allclose(table["self_time"], [2.0, 4.0, 4.0, 0.0, 10.2, 10.0, 30.0])
    np.testing.assert_allclose(table["clipped_ms"], [0, 0, 0, 0, 0.2, 0, 0], atol=1e-9)
    assert table["stage"].tolist() == [-1, 0, 1, -1, 0, -1, -1]
    calls = summarize_calls(spans)
    assert calls.skew["shifted"] == 2
    assert calls.skew["clipped"] == 1
    assert calls.skew["detached"] == 1
    assert calls.skew["clipped_ms"] == pytest.approx(0.2)
    # The detached child is not in its parent's pattern; the parent calls nothing.
    patterns = calls.pattern_table().set_index("service")
    assert (patterns.loc["fe", "pattern"] == "(no calls)").sum() == 1


def test_children_without_start_times_run_one_after_another():
    spans = spans_of(
        [
            ("r", None, "fe", "get", 0.0, 20.0),
            ("a", "r", "a", "op", np.nan, 4.0),
            ("b", "r", "b", "op", np.nan, 6.0),
        ]
    )
    table = span_calls(spans)
    assert table["stage"].tolist() == [-1, 0, 1]
    assert table["self_time"].tolist() == [10.0, 4.0, 6.0]
    assert summarize_calls(spans).skew["no_start_time"] == 2


def test_missing_operations_fall_back_to_the_calling_pair():
    spans = spans_of([("r", None, "fe", None, 0.0, 10.0), ("a", "r", "db", None, 1.0, 2.0)]).assign(
        caller=[None, "fe"]
    )
    table = span_calls(spans)
    assert table["operation"].tolist() == ["(root)", "(from fe)"]
    by_pair = span_calls(spans.assign(operation=["get", "q"]), node_key="pair")
    assert by_pair["operation"].tolist() == ["(root)", "(from fe)"]


def test_orphans_are_counted_and_not_requests():
    spans = spans_of(
        [
            ("r", None, "fe", "get", 0.0, 10.0),
            ("x", "missing", "db", "q", 1.0, 2.0),
            ("y", "x", "disk", "read", 1.5, 1.0),
        ]
    )
    calls = summarize_calls(spans)
    assert calls.n_requests == 1
    assert calls.skipped["parent_missing"] == 1
    assert int(calls.self_time.count.sum()) == 3  # nothing dropped


def test_patterns_merge_identical_spans_and_keep_stage_arrangement():
    traces = []
    for t in range(3):
        traces.append(
            spans_of(
                [
                    ("r", None, "fe", "get", 0.0, 20.0),
                    ("a", "r", "db", "q", 1.0, 2.0),
                    ("b", "r", "db", "q", 1.5, 2.0),  # parallel with a
                    ("c", "r", "cache", "get", 5.0, 1.0),
                ],
                trace=f"t{t}",
            )
        )
    traces.append(spans_of([("r", None, "fe", "get", 0.0, 3.0)], trace="t9"))
    calls = summarize_calls(pd.concat(traces, ignore_index=True))
    cells = calls.patterns.cells.set_index(["source", "pattern"])["traces"]
    root = node_label("fe", "get")
    parallel = "[" + node_label("db", "q") + "," + node_label("db", "q") + "]"
    single = "[" + node_label("cache", "get") + "]"
    key = json.dumps({parallel: 1, single: 1}, separators=(",", ":"), sort_keys=True)
    assert cells[(root, key)] == 3
    assert cells[(root, '{"END":1}')] == 1
    table = calls.pattern_table()
    fe = table[table["service"] == "fe"]
    assert fe["spans"].tolist() == [3, 1]
    assert fe["calls"].tolist() == [3, 0]
    assert fe["stages"].tolist() == [2, 0]
    assert "db:q + db:q" in fe["pattern"].iloc[0]


def test_summaries_of_halves_add_up_to_the_whole():
    spans = bayesperf.datasets.load_online_boutique()
    ids = spans["trace_id"].unique()
    first = spans["trace_id"].isin(ids[::2])
    whole = summarize_calls(spans)
    both = summarize_calls(spans[first]) + summarize_calls(spans[~first])
    assert isinstance(both, CallSummary)
    assert both.self_time.equals(whole.self_time)
    assert both.entries.equals(whole.entries)
    assert both.patterns.to_counts().equals(whole.patterns.to_counts())
    assert both.n_requests == whole.n_requests == 502
    assert len(both.dependence) == len(whole.dependence)


def test_real_traces_recompose_from_self_times():
    """Self times plus stages give back every root latency (up to clipped children)."""
    spans = bayesperf.datasets.load_online_boutique()
    table = span_calls(spans)
    latency = table["latency"].to_numpy()
    total = table["self_time"].to_numpy().copy()
    parent = table["parent_row"].to_numpy()
    stage = table["stage"].to_numpy()
    # Bottom-up: a span's latency is self + sum over stages of its slowest child.
    depth = np.zeros(len(table), int)
    for _ in range(30):
        depth = np.where(parent >= 0, depth[np.maximum(parent, 0)] + 1, 0)
    composed = total.copy()
    for d in range(depth.max(), 0, -1):
        kids = np.flatnonzero((depth == d) & (stage >= 0))
        frame = pd.DataFrame({"p": parent[kids], "s": stage[kids], "v": composed[kids]})
        stage_max = frame.groupby(["p", "s"])["v"].max().groupby("p").sum()
        composed[stage_max.index.to_numpy()] += stage_max.to_numpy()
    roots = table["root"].to_numpy()
    error = composed[roots] / latency[roots] - 1
    # Exact but for parallel children that do not start together (the composition
    # starts them together: a little is lost) and clipped children (a little added).
    assert np.median(np.abs(error)) < 0.005
    assert np.abs(error).max() < 0.02


def test_bad_input_has_clear_errors():
    spans = spans_of([("r", None, "fe", "get", 0.0, 1.0)])
    with pytest.raises(ValueError, match="span ids and parent links"):
        span_calls(spans.drop(columns="parent_id"))
    with pytest.raises(ValueError, match="occurs twice"):
        span_calls(pd.concat([spans, spans]))
    with pytest.raises(ValueError, match="unknown node_key"):
        span_calls(spans, node_key="service")
    with pytest.raises(ValueError, match="latencies are missing, negative"):
        span_calls(spans.assign(latency=-1.0))
    with pytest.raises(TypeError, match="needs a span table"):
        span_calls("spans.csv")


@pytest.mark.shared_data
def test_hotel_traces_have_fixed_sequential_structure(shared_data):
    spans = bayesperf.read_traces(shared_data / "jaeger-hotel-reservation" / "hotel_load25.json")
    calls = summarize_calls(spans)
    assert calls.n_requests == 1000
    table = calls.pattern_table()
    root = table[table["operation"] == "HTTP GET /hotels"]
    assert root["spans"].tolist() == [1000]  # one pattern: three sequential calls
    assert root["stages"].tolist() == [3]
    # Server spans start before their client spans on another host: shifted, counted.
    assert calls.skew["shifted"] > 100
