"""The ``otlp`` reader: OTLP/JSON trace exports, whole-file or one object per line."""

import base64
import copy
import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io import otlp
from bayesperf.io.registry import detect_format


@pytest.mark.shared_data
def test_real_example_matches_an_independent_count(shared_data):
    path = shared_data / "otlp" / "trace.json"
    doc = json.loads(path.read_text())
    raw = [
        (rs, sp)
        for rs in doc["resourceSpans"]
        for scope in rs["scopeSpans"]
        for sp in scope["spans"]
    ]
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.format == "otlp"
    assert report.records == report.kept + sum(report.dropped.values())
    assert report.records == len(raw) == 1
    assert report.kept == 1 and not any(report.dropped.values())
    assert spans["trace_id"].nunique() == 1
    assert spans["service"].nunique() == 1
    assert spans["caller"].notna().sum() == 0  # no (caller, callee) pair: the parent is absent
    assert report.flagged["parent_missing"] == 1

    resource, span = raw[0]
    row = spans.iloc[0]
    name = next(a for a in resource["resource"]["attributes"] if a["key"] == "service.name")
    assert row["service"] == name["value"]["stringValue"] == "my.service"
    assert row["trace_id"] == span["traceId"].lower() == "5b8efff798038103d269b633813fc60c"
    assert row["span_id"] == span["spanId"].lower()
    assert row["parent_id"] == span["parentSpanId"].lower()
    assert row["operation"] == span["name"]
    assert row["latency"] == (span["endTimeUnixNano"] - span["startTimeUnixNano"]) / 1e6 == 1000.0
    assert row["start_time"].value == span["startTimeUnixNano"]
    assert not row["error"]


# --- small inline files --------------------------------------------------------------

START = 1_700_000_000_123_456_789


def ospan(span_id, *, parent="", start=START, duration_ns=2_500_000, **extra):
    out = {
        "traceId": "0AF7651916CD43DD8448EB211C80319C",
        "spanId": span_id,
        "parentSpanId": parent,
        "name": f"op-{span_id}",
        "kind": 2,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration_ns),
    }
    return out | extra


def resource(service, *spans, key="scopeSpans"):
    attributes = [
        {"key": "host.name", "value": {"stringValue": "h1"}},
        {"key": "service.name", "value": {"stringValue": service}},
    ]
    return {
        "resource": {"attributes": attributes},
        key: [{"scope": {"name": "lib"}, "spans": list(spans)}],
    }


DOC = {
    "resourceSpans": [
        resource("frontend", ospan("B7AD6B7169203331")),
        resource(
            "backend",
            ospan(
                "00F067AA0BA902B7",
                parent="B7AD6B7169203331",
                duration_ns=1,
                kind="SPAN_KIND_SERVER",
            ),
            ospan("00F067AA0BA902B8", parent="00f067aa0ba902b7", status={"code": 2}),
            ospan(
                "00F067AA0BA902B9", parent="00f067aa0ba902b7", status={"code": "STATUS_CODE_ERROR"}
            ),
            ospan("00F067AA0BA902BA", parent="00f067aa0ba902b7", status={"code": 1}),
        ),
    ]
}


def write(tmp_path: Path, doc, name="t.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_small_file_maps_every_field(tmp_path):
    path = write(tmp_path, DOC)
    assert detect_format(path).name == "otlp"
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert (report.records, report.kept, sum(report.dropped.values())) == (5, 5, 0)
    assert spans["trace_id"].unique().tolist() == ["0af7651916cd43dd8448eb211c80319c"]
    assert spans["span_id"].iloc[1] == "00f067aa0ba902b7"
    assert pd.isna(spans["parent_id"].iloc[0])  # empty parentSpanId: a root
    assert spans["service"].astype(str).tolist() == ["frontend"] + ["backend"] * 4
    assert (
        spans["caller"].astype(object).fillna("-").tolist() == ["-", "frontend"] + ["backend"] * 3
    )
    assert spans["error"].tolist() == [False, False, True, True, False]
    assert spans["latency"].tolist() == [2.5, 1e-6, 2.5, 2.5, 2.5]
    assert (spans["start_time"].astype("int64") == START).all()  # exact nanoseconds
    assert otlp.read(path).locate(2) == "resourceSpans[1].scopeSpans[0].spans[1]"


def test_latency_is_exact_for_nanosecond_times(tmp_path):
    # As floats, these times are both 1.7000000001234568e18: the latency would be 0.
    doc = {"resourceSpans": [resource("s", ospan("01", duration_ns=7))]}
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"] = START + 7
    spans = bayesperf.read_traces(write(tmp_path, doc))
    assert spans["latency"].iloc[0] == 7 / 1_000_000


def test_json_lines_and_old_scope_key(tmp_path):
    lines = [
        json.dumps(
            {"resourceSpans": [resource("a", ospan("01"), key="instrumentationLibrarySpans")]}
        ),
        "",
        json.dumps({"resourceSpans": [resource("b", ospan("02", parent="01"))]}),
    ]
    path = write(tmp_path, "\n".join(lines) + "\n", name="t.jsonl")
    assert detect_format(path).name == "otlp"
    spans = bayesperf.read_traces(path)
    assert spans["caller"].astype(object).fillna("-").tolist() == ["-", "a"]
    assert otlp.read(path).locate(1) == "line 3: resourceSpans[0].scopeSpans[0].spans[0]"


def test_missing_times_and_service_are_counted(tmp_path):
    no_end = ospan("01")
    del no_end["endTimeUnixNano"]
    backwards = ospan("02", duration_ns=-5)
    doc = {
        "resourceSpans": [
            resource("a", no_end, backwards, ospan("03")),
            {"scopeSpans": [{"spans": [ospan("04")]}]},  # no resource: no service
        ]
    }
    spans = bayesperf.read_traces(write(tmp_path, doc))
    report = spans.attrs["read_report"]
    assert (report.records, report.kept) == (4, 2)
    assert dict(report.dropped) == {"missing_latency": 1, "negative_latency": 1}
    # A resource without service.name is the specification's unknown_service, counted.
    assert spans["service"].astype(str).tolist() == ["a", "unknown_service"]
    assert report.flagged["unnamed_service"] == 1


def test_numeric_times_and_base64_ids(tmp_path):
    span = ospan("00", startTimeUnixNano=START, endTimeUnixNano=START + 1_000_000)
    span["traceId"] = base64.b64encode(bytes.fromhex("0af7651916cd43dd8448eb211c80319c")).decode()
    span["spanId"] = base64.b64encode(bytes.fromhex("b7ad6b7169203331")).decode()
    spans = bayesperf.read_traces(write(tmp_path, {"resourceSpans": [resource("s", span)]}))
    assert spans["trace_id"].iloc[0] == "0af7651916cd43dd8448eb211c80319c"
    assert spans["span_id"].iloc[0] == "b7ad6b7169203331"
    assert spans["latency"].iloc[0] == 1.0


def test_gzip_file_is_read(tmp_path):
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps(DOC).encode()))
    spans = bayesperf.read_traces(path)
    assert spans.attrs["read_report"].format == "otlp"
    assert len(spans) == 5


# --- malformed input -----------------------------------------------------------------


def broken(change):
    doc = copy.deepcopy(DOC)
    change(doc)
    return doc


def second_span(doc):
    return doc["resourceSpans"][1]["scopeSpans"][0]["spans"][1]


AT = "resourceSpans[1].scopeSpans[0].spans[1]"


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (json.dumps(DOC)[:-30], "line 1 column"),  # truncated
        ('{"resourceSpans": [}', "line 1 column 20"),
        ([DOC], "top level"),  # a list, not an export object
        ({"spans": []}, "top level"),
        ({"resourceSpans": ["x"]}, "resourceSpans[0]"),
        ({"resourceSpans": [{"scopeSpans": {"spans": []}}]}, "resourceSpans[0].scopeSpans"),
        (broken(lambda d: second_span(d).pop("spanId")), f"{AT}.spanId"),
        (broken(lambda d: second_span(d).pop("traceId")), f"{AT}.traceId"),
        (broken(lambda d: second_span(d).update(parentSpanId=7)), f"{AT}.parentSpanId"),
        (broken(lambda d: second_span(d).update(endTimeUnixNano="soon")), f"{AT}.endTimeUnixNano"),
        (broken(lambda d: second_span(d).update(startTimeUnixNano=1.5)), f"{AT}.startTimeUnixNano"),
        (broken(lambda d: second_span(d).update(status="ERROR")), f"{AT}.status"),
        (
            json.dumps(DOC) + "\n" + json.dumps(DOC)[:-30] + "\n",  # JSON lines, last one cut
            "line 2 column",
        ),
        (json.dumps(DOC) + "\n[1]\n", "line 2"),
    ],
)
def test_malformed_input_names_file_and_place(tmp_path, content, where):
    path = write(tmp_path, content)
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, format="otlp")
    assert path.name in str(err.value)
    assert where in str(err.value)


def test_missing_span_id_message(tmp_path):
    path = write(tmp_path, broken(lambda d: second_span(d).pop("spanId")))
    with pytest.raises(TraceFormatError, match=re.escape(f"t.json: {AT}.spanId: missing id")):
        bayesperf.read_traces(path)


def test_truncated_file_says_so(tmp_path):
    path = write(tmp_path, json.dumps(DOC)[:200])
    with pytest.raises(TraceFormatError, match="truncated"):
        bayesperf.read_traces(path, format="otlp")


def test_empty_file(tmp_path):
    path = write(tmp_path, "\n\n")
    with pytest.raises(TraceFormatError, match=r"t\.json.*empty"):
        bayesperf.read_traces(path)
    with pytest.raises(TraceFormatError, match=r"t\.json: file start: file is empty"):
        bayesperf.read_traces(path, format="otlp")


ODD_VALUES = [None, 0, -1, 2.5, "", "x", "12", [], {}, True, [{}], {"a": 1}, {"code": []}]
SPAN_FIELDS = [
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "status",
]


@pytest.mark.parametrize("field", SPAN_FIELDS)
def test_odd_values_give_a_table_or_a_trace_format_error(tmp_path, field):
    """No KeyError, TypeError, ... escapes, whatever a field holds."""
    for i, value in enumerate(ODD_VALUES):
        doc = broken(lambda d, v=value: second_span(d).update({field: v}))
        path = write(tmp_path, doc, f"{i}.json")
        try:
            bayesperf.read_traces(path, format="otlp")
        except TraceFormatError as err:
            assert path.name in str(err)


def test_odd_resources_give_a_table_or_a_trace_format_error(tmp_path):
    for i, value in enumerate(ODD_VALUES):
        doc = broken(lambda d, v=value: d["resourceSpans"][1].update(resource=v))
        path = write(tmp_path, doc, f"r{i}.json")
        try:
            bayesperf.read_traces(path, format="otlp")
        except TraceFormatError as err:
            assert path.name in str(err)


def test_sniffing():
    assert otlp._sniff(Path("x.json"), b'{ "resourceSpans": [')
    assert otlp._sniff(
        Path("x.ndjson.gz"), b'{"resourceSpans":[{"resource":{}}]}\n{"resourceSpans"'
    )
    assert not otlp._sniff(Path("x.json"), b'{"data": [{"traceID": "1"')
    assert not otlp._sniff(Path("x.json"), b'[{"traceId": "1"')
    assert not otlp._sniff(Path("x.csv"), b'{"resourceSpans": [')
