"""The table builder's de-duplication and caller derivation, against a direct reference.

``build_span_table`` finds repeated spans and parent rows by integers: span ids of one
length are compared as 64-bit words (folded into one integer each), anything else is
factorised. Every path must give what the rules say, checked here against a plain
implementation of the rules on small random tables, with the fast path, the exact path
forced, the fold made to collide (so that its check against the ids' bytes decides),
and the hash tables split into buckets as for large reads.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesperf
from bayesperf.io import _table

# Ids of 16 characters that share halves: with the fold's multiplier set to 0 (the
# "collide" path), ids with the same last 8 characters fold alike.
WIDE = [a * 8 + f"{b:08d}" for a in "abcdef" for b in range(5)]
SHORT = [f"{a}{b:02d}" for a in "abcdef" for b in range(5)]  # under one word: exact
ODD = ["x", "longer-than-sixteen", ""]  # lengths that send reads to the exact path
TRACES = ["t1", "t2", "", "t3"]
SERVICES = ["front", "cart", "", "db"]


@st.composite
def span_frames(draw) -> pd.DataFrame:
    """Small span tables with repeated ids, parents in other traces, missing values.

    Half of them have distinct span ids (the fast path); parents are drawn from all ids.
    """
    pool = draw(st.sampled_from([WIDE, SHORT, WIDE + ODD, SHORT + ODD]))
    distinct = draw(st.booleans())
    n = draw(st.integers(1, 12))
    spans = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n, unique=distinct))
    parents = st.one_of(st.sampled_from(pool), st.sampled_from(spans), st.just(""))
    latency = st.sampled_from([1.0, 2.5, 0.0, -1.0, np.nan, np.inf])
    return pd.DataFrame(
        {
            "trace_id": draw(st.lists(st.sampled_from(TRACES), min_size=n, max_size=n)),
            "span_id": spans,
            "parent_id": draw(st.lists(parents, min_size=n, max_size=n)),
            "service": draw(st.lists(st.sampled_from(SERVICES), min_size=n, max_size=n)),
            "latency": draw(st.lists(latency, min_size=n, max_size=n)),
        }
    )


def reference(frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """The rules, row by row: kept (trace, span, caller) rows, duplicates, parent_missing.

    Empty strings are missing. A span's caller is the service of the first record with
    its trace and its parent's id that has a service, from all records (a dropped parent
    still names its children's caller). Among usable rows, a repeated (trace, span) is
    dropped after its first occurrence. ``parent_missing``: a kept span names a parent
    (in a known trace) that no such record is.
    """
    rows = [{k: (None if v == "" else v) for k, v in r.items()} for r in frame.to_dict("records")]
    service_of: dict[tuple, str] = {}
    for r in rows:
        if r["trace_id"] and r["span_id"] and r["service"]:
            service_of.setdefault((r["trace_id"], r["span_id"]), r["service"])
    kept, seen, duplicates, parent_missing = [], set(), 0, 0
    for r in rows:
        y = r["latency"]
        if not (np.isfinite(y) and y >= 0 and r["trace_id"] and r["service"]):
            continue
        key = (r["trace_id"], r["span_id"])
        if r["span_id"] is not None and key in seen:
            duplicates += 1
            continue
        seen.add(key)
        named = r["parent_id"] is not None
        caller = service_of.get((r["trace_id"], r["parent_id"])) if named else None
        parent_missing += named and caller is None
        kept.append((r["trace_id"], r["span_id"], caller))
    table = pd.DataFrame(kept, columns=["trace_id", "span_id", "caller"], dtype=object)
    return table, duplicates, parent_missing


def read(frame: pd.DataFrame) -> pd.DataFrame:
    """``read_traces`` of a frame; a read that keeps under half its records warns (not
    what is tested here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesperf.TraceReadWarning)
        return bayesperf.read_traces(frame)


@pytest.mark.parametrize("path", ["fast", "exact", "collide", "buckets"])
@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(frame=span_frames())
def test_duplicates_and_callers_follow_the_rules(path, frame):
    expected, duplicates, parent_missing = reference(frame)
    with pytest.MonkeyPatch.context() as mp:
        if path == "exact":
            mp.setattr(_table, "_id_words", lambda ids: None)
        elif path == "collide":
            mp.setattr(_table, "_MIX", np.uint64(0))
        elif path == "buckets":  # hash tables per bucket, as for large reads
            mp.setattr(_table._HashBuckets, "MIN_SPLIT", 0)
        if expected.empty:
            with pytest.raises(bayesperf.TraceFormatError):
                read(frame)
            return
        spans = read(frame)
    report = spans.attrs["read_report"]
    got = spans[["trace_id", "span_id", "caller"]].astype(object)
    got = got.where(got.notna(), None)
    assert got.values.tolist() == expected.values.tolist()
    assert report.dropped.get("duplicate_span", 0) == duplicates
    assert report.flagged.get("parent_missing", 0) == parent_missing


@pytest.mark.parametrize("min_split", [0, _table._HashBuckets.MIN_SPLIT])
def test_distinct_fixed_width_ids_need_no_factorisation(monkeypatch, min_split):
    """The common case (random 16-hex-digit ids) never hashes the id strings."""

    def refuse(cls, *args):
        raise AssertionError("the exact path was taken")

    monkeypatch.setattr(_table._SpanKeys, "_factorized", classmethod(refuse))
    monkeypatch.setattr(_table._HashBuckets, "MIN_SPLIT", min_split)
    rng = np.random.default_rng(0)
    ids = [f"{i:016x}" for i in rng.choice(2**62, 3000, replace=False)]
    services = [f"s{i % 7}" for i in range(3000)]
    parent = [i - 1 if i % 3 else -1 for i in range(3000)]  # chains of 3 spans
    frame = pd.DataFrame(
        {
            "trace_id": [f"t{i // 3}" for i in range(3000)],
            "span_id": ids,
            "parent_id": [ids[p] if p >= 0 else "" for p in parent],
            "service": services,
            "latency": 1.0,
        }
    )
    spans = bayesperf.read_traces(frame)
    expected = [services[p] if p >= 0 else None for p in parent]
    assert spans["caller"].astype(object).where(spans["caller"].notna(), None).tolist() == expected


def test_colliding_folds_fall_back_to_the_exact_path(monkeypatch):
    """A parent id that folds like a span's but differs is not taken for that span."""
    exact = []
    factorized = _table._SpanKeys._factorized.__func__
    monkeypatch.setattr(_table, "_MIX", np.uint64(0))  # fold = the last 8 bytes
    monkeypatch.setattr(
        _table._SpanKeys,
        "_factorized",
        classmethod(lambda cls, *args: exact.append(args) or factorized(cls, *args)),
    )
    frame = pd.DataFrame(
        {
            "trace_id": ["t", "t", "t"],
            "span_id": ["aaaaaaaa00000001", "bbbbbbbb00000002", "cccccccc00000003"],
            "parent_id": ["", "aaaaaaaa00000001", "dddddddd00000002"],
            "service": ["front", "cart", "db"],
            "latency": [1.0, 2.0, 3.0],
        }
    )
    spans = bayesperf.read_traces(frame)
    assert len(exact) == 1, "the fold matched a parent to a span with other bytes"
    assert spans["caller"].astype(object).tolist() == [np.nan, "front", np.nan]
    assert spans.attrs["read_report"].flagged["parent_missing"] == 1


def test_id_words_read_sliced_and_chunked_arrow_strings():
    """Ids are read from Arrow's buffers: offsets into sliced and chunked arrays hold."""
    ids = [f"{i:016x}" for i in range(10)]
    text = pa.chunked_array([pa.array(ids[:4]), pa.array(ids[4:]).slice(2)])
    words = _table._id_words(text)
    expected = np.frombuffer("".join(ids[:4] + ids[6:]).encode(), dtype=np.uint64)
    assert words.reshape(-1).tolist() == expected.tolist()
    sliced = pd.Series(ids, dtype="str").iloc[3:]
    assert _table._id_words(sliced).shape == (7, 2)
    assert _table._id_words(pd.Series(["ab", "abc"], dtype="str")) is None  # two lengths
    assert _table._id_words(pd.Series(["ab", None], dtype="str")) is None  # a missing id
