"""Every reader under fuzzing: a read whose report adds up, or a TraceFormatError.

Each test starts from a small valid file of one format and applies a few mutations drawn
by hypothesis: cells emptied, fields dropped, fields retyped (null, string, negative,
huge, list, object), truncation, wrong top-level shape, duplicated rows, mixed
encodings. The only outcomes allowed are a table whose ``ReadReport`` adds up (records =
kept + dropped, every drop under a named reason) or a ``TraceFormatError`` naming the
file (and, where there is one, the row, line or JSON path).

The profile is deterministic (``derandomize=True``, no example database) so CI runs the
same examples every time; ``BAYESPERF_FUZZ_EXAMPLES`` raises the count for a long local
run (``BAYESPERF_FUZZ_EXAMPLES=2000 pytest tests/io/test_fuzz.py``).
"""

import copy
import csv
import io
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesperf
from bayesperf import TraceFormatError, TraceReadWarning
from bayesperf.schema import SPAN_COLUMNS

settings.register_profile(
    "reader-fuzz",
    max_examples=int(os.environ.get("BAYESPERF_FUZZ_EXAMPLES", "60")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("reader-fuzz")

#: What a field may be retyped to: null, strings, negative, huge, list, object, bool.
ODD_JSON = [
    None,
    "",
    "x",
    "12",
    -1,
    -(10**30),
    10**30,
    2**64,
    1e308,
    -0.5,
    [],
    [1],
    {},
    {"a": 1},
    True,
]
ODD_CELLS = [
    "", "null", "None", "NaN", "-1", "-0", "1e30", "1e400", "9" * 40, "-" + "9" * 25,
    "[1, 2]", '{"a": 1}', "abc", "inf", "-inf", "0x1F", "１２", "true", "1.5", " 7 ",
]  # fmt: skip
#: Problems of a whole file, which have no row, line or JSON path to name.
WHOLE_FILE = re.compile(
    r"file is empty|cannot read Parquet|no span records|none of the \d+ span records"
    r"|could not recognise|cannot parse CSV: CSV parse error: Empty CSV"
)
#: Whole documents of the wrong shape.
WRONG_SHAPES = [[], {}, "x", 3, None, [1, 2], {"data": 3}, [[]], [{}], {"resourceSpans": {}}]


def check_outcome(path: Path, fmt: str) -> None:
    """Read ``path``: the table's report adds up, or the error names the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceReadWarning)  # an allowed outcome
        try:
            spans = bayesperf.read_traces(path, format=fmt)
        except TraceFormatError as err:
            assert path.name in str(err), err
            # Where the problem sits in the file is named, unless it is the whole file.
            assert err.where is not None or WHOLE_FILE.search(err.problem), err
            return
    report = spans.attrs["read_report"]
    report.check()
    assert report.kept == len(spans) > 0
    assert all(reason and count > 0 for reason, count in report.dropped.items())
    assert list(spans.columns) == list(SPAN_COLUMNS)
    assert (spans["latency"] >= 0).all()


def read_bytes(data: bytes, name: str, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        check_outcome(path, fmt)


# ------------------------------------------------------------------ byte-level mutations
def encode(text: str, draw) -> bytes:
    """The text as UTF-8, or damaged: truncated, a stray Latin-1/invalid byte, UTF-16, BOM."""
    data = text.encode()
    kind = draw(st.sampled_from(["none", "none", "truncate", "latin1", "invalid", "utf16", "bom"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind in ("latin1", "invalid"):
        at = draw(st.integers(0, len(data)))
        return (
            data[:at] + ("é".encode("latin-1") if kind == "latin1" else b"\xff\xfe\x80") + data[at:]
        )
    if kind == "utf16":
        return text.encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    return data


# ------------------------------------------------------------------ JSON documents
def json_paths(doc, prefix=()):
    """Every (container, key) position in a JSON document."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from json_paths(value, (*prefix, key))


def mutate_json(doc, draw):
    """Apply 1-3 mutations: drop a field, retype it, duplicate a list item, or reshape."""
    doc = copy.deepcopy(doc)
    if draw(st.integers(0, 9)) == 0:
        return copy.deepcopy(draw(st.sampled_from(WRONG_SHAPES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(json_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = draw(st.sampled_from(["drop", "retype", "retype", "duplicate"]))
        if op == "drop":
            del parent[key]
        elif op == "retype":
            parent[key] = copy.deepcopy(draw(st.sampled_from(ODD_JSON)))
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = [parent[key], copy.deepcopy(parent[key])]
    return doc


def jaeger_doc():
    def span(sid, parent, pid, dur):
        refs = [{"refType": "CHILD_OF", "traceID": "t1", "spanID": parent}] if parent else []
        tags = [{"key": "error", "type": "bool", "value": sid == "c"}]
        return {
            "traceID": "t1", "spanID": sid, "operationName": f"op-{sid}", "references": refs,
            "startTime": 1_600_000_000_000_000, "duration": dur, "processID": pid, "tags": tags,
        }  # fmt: skip

    spans = [span("a", None, "p1", 900), span("b", "a", "p1", 500), span("c", "b", "p2", 300)]
    processes = {"p1": {"serviceName": "front"}, "p2": {"serviceName": "back"}}
    return {"data": [{"traceID": "t1", "spans": spans, "processes": processes}]}


def jaeger_span_list():
    trace = jaeger_doc()["data"][0]
    return [{**s, "process": trace["processes"][s.pop("processID")]} for s in trace["spans"]]


def zipkin_v2_doc():
    def span(sid, parent, service, kind=None, **extra):
        out = {
            "traceId": "00f067aa0ba902b7",
            "id": sid,
            "name": "get",
            "timestamp": 1_470_150_004_071_068,
        }
        out |= {"duration": 5000, "localEndpoint": {"serviceName": service, "ipv4": "10.0.0.1"}}
        out |= ({"parentId": parent} if parent else {}) | ({"kind": kind} if kind else {})
        return out | extra

    return [
        span("aa", None, "front", "SERVER"),
        span("bb", "aa", "front", "CLIENT", tags={"error": ""}),
        span("bb", "aa", "back", "SERVER", shared=True),
        span("cc", "bb", "back"),
    ]


def zipkin_v1_doc():
    def ann(value, ts, service):
        return {
            "timestamp": ts,
            "value": value,
            "endpoint": {"serviceName": service, "ipv4": "10.0.0.2"},
        }

    return [
        {"traceId": "0ed2e63cbe71f5a8", "name": "check", "id": "0ed2e63cbe71f5a8",
         "annotations": [ann("sr", 1_000, "svc1"), ann("ss", 9_000, "svc1")]},
        {"traceId": "0ed2e63cbe71f5a8", "name": "stock", "id": "f9eb",
         "parentId": "0ed2e63cbe71f5a8", "timestamp": 2_000, "duration": 3_740,
         "annotations": [ann("cs", 2_000, "svc1"), ann("cr", 5_740, "svc1")],
         "binaryAnnotations": [{"key": "lc", "value": "x", "endpoint": {"serviceName": "svc1"}}]},
    ]  # fmt: skip


def otlp_doc():
    def span(sid, parent, start, end, **extra):
        out = {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": sid, "parentSpanId": parent}
        return (
            out
            | {"name": f"op{sid}", "startTimeUnixNano": str(start), "endTimeUnixNano": end}
            | extra
        )

    def resource(service, *spans):
        attributes = [{"key": "service.name", "value": {"stringValue": service}}]
        return {
            "resource": {"attributes": attributes},
            "scopeSpans": [{"scope": {}, "spans": list(spans)}],
        }

    t = 1_700_000_000_000_000_000
    return {
        "resourceSpans": [
            resource("front", span("eee19b7ec3c1b173", "", t, str(t + 9_000_000))),
            resource("back", span("eee19b7ec3c1b174", "eee19b7ec3c1b173", t, t + 4_000_000,
                                  status={"code": 2})),
        ]
    }  # fmt: skip


def otlp_wrapped(doc, wrapper):
    if wrapper == "result":
        return {"result": doc}
    if wrapper == "trace":
        return {"trace": doc}
    if wrapper == "batches":
        return {"batches": doc["resourceSpans"]}
    return doc


JSON_BASES = {
    "jaeger": [jaeger_doc, jaeger_span_list],
    "zipkin": [zipkin_v2_doc, zipkin_v1_doc],
    "otlp": [
        lambda w=w: otlp_wrapped(otlp_doc(), w) for w in ("plain", "result", "trace", "batches")
    ],
}


@pytest.mark.parametrize("fmt", sorted(JSON_BASES))
@FUZZ
@given(data=st.data())
def test_json_readers_survive_mutations(fmt, data):
    draw = data.draw
    base = draw(st.sampled_from(JSON_BASES[fmt]))()
    doc = mutate_json(base, draw)
    text = json.dumps(doc)
    if fmt == "otlp" and draw(st.booleans()):
        text = text + "\n" + json.dumps(base)  # JSON lines, as the collector writes them
    read_bytes(encode(text, draw), "t.json", draw(st.sampled_from([fmt, "auto"])))


# ------------------------------------------------------------------ CSV tables
NEZHA = [
    ["TraceID", "SpanID", "ParentID", "PodName", "OperationName", "StartTimeUnixNano",
     "EndTimeUnixNano", "Duration"],
    ["01db", "ab87", "root", "frontend-579b9bff58-t2dbm", "Recv.", "1661273974730641486",
     "1661273975415194516", "684553"],
    ["01db", "dc6c", "ab87", "frontend-579b9bff58-t2dbm", "GetCurrencies", "1661273974730744351",
     "1661273974737125575", "6381"],
    ["01db", "e1f2", "dc6c", "currencyservice-5d5b6d5b8c-9kq7w", "GetCurrencies",
     "1661273974731000000", "1661273974736000000", "5000"],
    ["02ab", "f001", "root", "frontend-579b9bff58-t2dbm", "Recv.", "1661273975000000000",
     "1661273975100000000", "100000"],
]  # fmt: skip
CANONICAL = [
    ["trace_id", "span_id", "parent_id", "service", "operation", "start_time", "latency", "error"],
    ["t1", "1", "", "front", "GET /", "2024-01-01T00:00:00Z", "12.5", "false"],
    ["t1", "2", "1", "cart", "get", "2024-01-01T00:00:00.001Z", "3.25", "true"],
    ["t1", "3", "2", "db", "query", "2024-01-01T00:00:00.002Z", "1", "0"],
    ["t2", "1", "", "front", "GET /", "1704067200000000000", "7", ""],
]
CALLER_CALLEE = [
    ["trace_id", "caller", "callee", "latency", "timestamp"],
    ["t1", "", "front", "12.5", "1704067200000000000"],
    ["t1", "front", "cart", "3.25", "1704067200001000000"],
    ["t2", "", "front", "7", "1704067200002000000"],
]
ALIBABA = [
    ["", "timestamp", "traceid", "service", "rpcid", "rpctype", "um", "uminstanceid", "interface",
     "dm", "dminstanceid", "rt"],
    ["0", "169526", "T_65", "S_94", "0", "rpc", "USER", "USER", "a", "MS_1", "MS_1_POD_5", "3.0"],
    ["1", "169527", "T_65", "S_94", "0.1", "rpc", "MS_1", "MS_1_POD_5", "b", "MS_2", "P_2", "1.0"],
    ["2", "169528", "T_65", "S_94", "0.1.1", "rpc", "MS_2", "P_2", "c", "UNKNOWN", "P_3", "-2"],
    ["3", "169529", "T_66", "S_94", "0", "rpc", "USER", "USER", "a", "MS_1", "MS_1_POD_5", "0"],
]  # fmt: skip
CSV_BASES = {"span-csv": [NEZHA], "csv": [CANONICAL, CALLER_CALLEE], "alibaba": [ALIBABA]}


def mutate_rows(rows, draw):
    """Apply 1-4 mutations: empty or retype a cell, drop a column, duplicate or cut a row."""
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["empty", "retype", "retype", "drop", "duplicate", "ragged"]))
        r = draw(st.integers(1, len(rows) - 1)) if len(rows) > 1 else 0
        c = draw(st.integers(0, len(rows[0]) - 1)) if rows[0] else 0
        if op == "drop" and len(rows[0]) > 1:
            rows = [row[:c] + row[c + 1 :] for row in rows]
        elif op == "duplicate":
            rows.insert(r, list(rows[r]))
        elif op == "ragged":
            rows[r] = rows[r][:c] if draw(st.booleans()) else [*rows[r], "extra"]
        elif c < len(rows[r]):
            rows[r][c] = "" if op == "empty" else draw(st.sampled_from(ODD_CELLS))
    return rows


def csv_text(rows) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("fmt", sorted(CSV_BASES))
@FUZZ
@given(data=st.data())
def test_csv_readers_survive_mutations(fmt, data):
    draw = data.draw
    rows = mutate_rows(draw(st.sampled_from(CSV_BASES[fmt])), draw)
    text = (
        csv_text(rows) if draw(st.integers(0, 9)) else draw(st.sampled_from(["", "\n", "{}", "a"]))
    )
    # The Nezha layout is read as span-csv by its header; the others need their format.
    read_bytes(encode(text, draw), "t.csv", draw(st.sampled_from([fmt, "auto"])))


# ------------------------------------------------------------------ Parquet
PARQUET_BASE = {
    "trace_id": ["t1", "t1", "t1", "t2"],
    "span_id": ["1", "2", "3", "1"],
    "parent_id": [None, "1", "2", None],
    "service": ["front", "cart", "db", "front"],
    "start_time": [1_704_067_200_000_000_000 + i for i in range(4)],
    "latency": [12.5, 3.25, 1.0, 7.0],
    "error": [False, True, False, None],
}
#: Arrays a column may be replaced with (4 rows each): every odd Arrow type.
ODD_COLUMNS = [
    pa.array([None] * 4, pa.null()),
    pa.array(["1", "x", None, ""]),
    pa.array([-1, 0, 2**62, None], pa.int64()),
    pa.array([2**64 - 1, 0, 1, None], pa.uint64()),
    pa.array([1e308, -1e308, float("nan"), float("inf")]),
    pa.array([True, False, None, True]),
    pa.array([[1], [], None, [2, 3]]),
    pa.array([{"a": 1}, {"a": None}, None, {"a": 2}]),
    pa.array([b"\xff", b"", None, b"a"], pa.binary()),
    pa.array([1, 2, None, 4], pa.timestamp("s")),
    pa.array(["a", "b", None, "a"]).dictionary_encode(),
]


@FUZZ
@given(data=st.data())
def test_parquet_reader_survives_mutations(data):
    draw = data.draw
    columns = {name: pa.array(values) for name, values in PARQUET_BASE.items()}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(columns)))
        op = draw(st.sampled_from(["drop", "retype", "retype", "null"]))
        if op == "drop" and len(columns) > 1:
            del columns[name]
        elif op == "retype":
            columns[name] = draw(st.sampled_from(ODD_COLUMNS))
        else:
            values = columns[name].to_pylist()
            values[draw(st.integers(0, 3))] = None
            columns[name] = pa.array(values, columns[name].type)
    table = pa.table(columns)
    if draw(st.booleans()):
        table = pa.concat_tables([table, table.slice(0, draw(st.integers(1, 4)))])  # duplicates
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data_bytes = sink.getvalue()
    if draw(st.integers(0, 4)) == 0:
        data_bytes = data_bytes[: draw(st.integers(0, len(data_bytes)))]
    read_bytes(data_bytes, "t.parquet", draw(st.sampled_from(["parquet", "auto"])))
