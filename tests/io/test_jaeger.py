"""The ``jaeger`` reader: Jaeger query-API JSON."""

import copy
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io import jaeger
from bayesperf.io.registry import detect_format
from tests.io.counts import table_counts

HOTEL = "jaeger-hotel-reservation"


def summarise(rows):
    """Counts build_span_table must reach, from ``(trace, span, parent, service, duration)``.

    Applies the documented cleaning in its order: missing, negative latency, missing
    service, then repeated (trace, span) ids; callers come from kept parents only.
    """
    dropped = Counter()
    service_of = {}
    kept = []
    for trace, span, parent, service, duration in rows:
        if duration is None:
            dropped["missing_latency"] += 1
        elif duration < 0:
            dropped["negative_latency"] += 1
        elif not service:
            dropped["missing_service"] += 1
        elif (trace, span) in service_of:
            dropped["duplicate_span"] += 1
        else:
            service_of[trace, span] = service
            kept.append((trace, parent, service))
    pairs = {(service_of[t, p], s) for t, p, s in kept if p is not None and (t, p) in service_of}
    orphans = sum(p is not None and (t, p) not in service_of for t, p, _ in kept)
    return {
        "records": len(rows),
        "kept": len(kept),
        "traces": len({t for t, _, _ in kept}),
        "services": len({s for _, _, s in kept}),
        "pairs": len(pairs),
        "dropped": dict(dropped),
        "parent_missing": orphans,
    }


def expected_from_json(path: Path) -> dict:
    """Expected counts for a Jaeger file, with nothing but ``json``."""
    rows = []
    for trace in json.loads(path.read_text())["data"]:
        for span in trace["spans"]:
            service = trace["processes"][span["processID"]].get("serviceName")
            parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
            parent = parents[0] if parents else None
            rows.append((span["traceID"], span["spanID"], parent, service, span.get("duration")))
    return summarise(rows)


def measured(spans: pd.DataFrame) -> dict:
    return table_counts(spans)


# Measured once, and checked against the independent json count below.
HOTEL_COUNTS = {
    "records": 11000,
    "kept": 11000,
    "traces": 1000,
    "services": 6,
    "pairs": 7,
    "dropped": {},
    "parent_missing": 0,
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["hotel_load25.json", "hotel_load100.json"])
def test_hotel_counts_match_an_independent_count(shared_data, name):
    path = shared_data / HOTEL / name
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.format == "jaeger"
    assert report.records == report.kept + sum(report.dropped.values())
    assert len(spans) == report.kept
    expected = expected_from_json(path)
    assert measured(spans) == expected
    assert expected == HOTEL_COUNTS
    assert list(spans.columns) == list(bayesperf.schema.SPAN_COLUMNS)
    assert not spans.duplicated(["trace_id", "span_id"]).any()


@pytest.mark.shared_data
def test_hotel_call_graph(shared_data):
    spans = bayesperf.read_traces(shared_data / HOTEL / "hotel_load25.json")
    edges = spans.loc[spans["caller"].notna()].groupby(["caller", "callee"], observed=True).size()
    assert edges.to_dict() == {
        ("frontend", "frontend"): 3000,
        ("frontend", "profile"): 1000,
        ("frontend", "reservation"): 1000,
        ("frontend", "search"): 1000,
        ("search", "geo"): 1000,
        ("search", "rate"): 1000,
        ("search", "search"): 2000,
    }
    assert spans["caller"].isna().sum() == 1000  # one root per trace
    assert not spans["error"].any()  # no span carries an error tag


@pytest.mark.shared_data
def test_hotel_units_and_fields(shared_data):
    path = shared_data / HOTEL / "hotel_load25.json"
    first_trace = json.loads(path.read_text())["data"][0]
    raw = first_trace["spans"][3]
    spans = bayesperf.read_traces(path).set_index(["trace_id", "span_id"])
    row = spans.loc[(raw["traceID"], raw["spanID"])]
    assert row["latency"] == raw["duration"] / 1000  # microseconds -> ms
    assert row["latency"] == pytest.approx(11.84)
    assert row["start_time"] == pd.Timestamp(raw["startTime"] * 1000, unit="ns", tz="UTC")
    assert row["start_time"].value == raw["startTime"] * 1000  # exact, no float rounding
    assert row["operation"] == raw["operationName"] == "/search.Search/Nearby"
    assert row["service"] == first_trace["processes"][raw["processID"]]["serviceName"]
    assert row["parent_id"] == raw["references"][0]["spanID"]


@pytest.mark.shared_data
def test_locate_names_the_json_path(shared_data):
    raw = jaeger.read(shared_data / HOTEL / "hotel_load25.json")
    assert raw.locate(0) == "data[0].spans[0]"
    assert raw.locate(len(raw.frame) - 1) == "data[999].spans[10]"


# --- small inline files --------------------------------------------------------------


def span(
    span_id, *, parent=None, process="p1", duration=1500, start=1_600_000_000_000_000, **extra
):
    refs = [] if parent is None else [{"refType": "CHILD_OF", "traceID": "t1", "spanID": parent}]
    return {
        "traceID": "t1",
        "spanID": span_id,
        "operationName": f"op-{span_id}",
        "references": refs,
        "startTime": start,
        "duration": duration,
        "tags": [],
        "processID": process,
        **extra,
    }


def trace(*spans, processes=None):
    processes = processes or {"p1": {"serviceName": "front"}, "p2": {"serviceName": "back"}}
    return {"traceID": "t1", "spans": list(spans), "processes": processes}


def write(tmp_path: Path, doc, name="t.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_small_file_maps_every_field(tmp_path):
    doc = {
        "data": [
            trace(
                span("a"),
                span(
                    "b",
                    parent="a",
                    process="p2",
                    duration=250,
                    tags=[
                        {"key": "error", "type": "bool", "value": True},
                    ],
                ),
                span("c", parent="b", process="p2", duration=None),
            )
        ]
    }
    spans = bayesperf.read_traces(write(tmp_path, doc))
    report = spans.attrs["read_report"]
    assert (report.records, report.kept, dict(report.dropped)) == (3, 2, {"missing_latency": 1})
    assert spans["span_id"].tolist() == ["a", "b"]
    assert spans["parent_id"].tolist()[1] == "a" and pd.isna(spans["parent_id"].iloc[0])
    assert spans["caller"].astype(object).tolist() == [np.nan, "front"]
    assert spans["callee"].astype(str).tolist() == ["front", "back"]
    assert spans["latency"].tolist() == [1.5, 0.25]
    assert spans["error"].tolist() == [False, True]
    assert spans["operation"].astype(str).tolist() == ["op-a", "op-b"]


@pytest.mark.parametrize("shape", ["single trace", "list of traces"])
def test_other_top_level_shapes(tmp_path, shape):
    one = trace(span("a"), span("b", parent="a", process="p2"))
    doc = one if shape == "single trace" else [one, trace(span("z"))]
    path = write(tmp_path, doc)
    assert detect_format(path).name == "jaeger"
    spans = bayesperf.read_traces(path)
    assert spans["caller"].astype(object).tolist()[1] == "front"
    raw = jaeger.read(path)
    assert raw.locate(1) == ("spans[1]" if shape == "single trace" else "[0].spans[1]")


def test_follows_from_is_a_parent_when_there_is_no_child_of(tmp_path):
    follows = span("b", process="p2")
    follows["references"] = [{"refType": "FOLLOWS_FROM", "traceID": "t1", "spanID": "a"}]
    both = span("c", process="p2")
    both["references"] = [
        {"refType": "FOLLOWS_FROM", "traceID": "t1", "spanID": "a"},
        {"refType": "CHILD_OF", "traceID": "t1", "spanID": "b"},
    ]
    spans = bayesperf.read_traces(write(tmp_path, {"data": [trace(span("a"), follows, both)]}))
    assert spans["parent_id"].tolist()[1:] == ["a", "b"]
    assert spans["caller"].astype(str).tolist()[1:] == ["front", "back"]


def test_embedded_process_and_string_error_tag(tmp_path):
    s = span("a", tags=[{"key": "error", "type": "string", "value": "true"}])
    del s["processID"]
    s["process"] = {"serviceName": "embedded", "tags": []}
    spans = bayesperf.read_traces(write(tmp_path, {"data": [{"traceID": "t1", "spans": [s]}]}))
    assert spans["service"].astype(str).tolist() == ["embedded"]
    assert spans["error"].tolist() == [True]


def test_missing_service_name_and_repeated_span_are_counted(tmp_path):
    doc = {
        "data": [
            trace(
                span("a"), span("b", process="p3"), processes={"p1": {}, "p3": {"serviceName": "x"}}
            ),
            trace(span("b", process="p3"), processes={"p3": {"serviceName": "x"}}),
        ]
    }
    spans = bayesperf.read_traces(write(tmp_path, doc))
    report = spans.attrs["read_report"]
    assert (report.records, report.kept) == (3, 2)
    assert dict(report.dropped) == {"duplicate_span": 1}
    # A process without serviceName keeps the Jaeger collector's placeholder, counted.
    assert spans["service"].astype(str).tolist() == ["empty-service-name", "x"]
    assert dict(report.flagged) == {"unnamed_service": 1}


def test_gzip_file_is_read(tmp_path):
    doc = {"data": [trace(span("a"), span("b", parent="a", process="p2"))]}
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    spans = bayesperf.read_traces(path)
    assert spans.attrs["read_report"].format == "jaeger"
    assert len(spans) == 2


def test_empty_data_gives_no_rows(tmp_path):
    # Whether an input without any span is an error is read_traces' decision, not the reader's.
    raw = jaeger.read(write(tmp_path, {"data": []}))
    assert raw.records == 0
    assert len(raw.frame) == 0


# --- malformed input -----------------------------------------------------------------

GOOD = {"data": [trace(span("a"), span("b", parent="a", process="p2"))]}


def broken(change):
    doc = copy.deepcopy(GOOD)
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (json.dumps(GOOD)[:-25], "line 1 column"),  # truncated
        ('{"data": [}', "line 1 column 11"),  # malformed
        ({"data": {"traceID": "t1"}}, "data"),  # data is not a list
        ({"data": None, "errors": [{"code": 500, "msg": "boom"}]}, "data"),
        ({"data": ["not a trace"]}, "data[0]"),
        ({"data": [{"traceID": "t1"}]}, "data[0].spans"),
        (broken(lambda d: d["data"][0]["spans"][1].pop("spanID")), "data[0].spans[1].spanID"),
        (broken(lambda d: d["data"][0]["spans"][1].update(spanID=17)), "data[0].spans[1].spanID"),
        (
            broken(
                lambda d: (
                    [s.pop("traceID") for s in d["data"][0]["spans"]]
                    and d["data"][0].pop("traceID")
                )
            ),
            "data[0].spans[0].traceID",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][1].update(duration="slow")),
            "data[0].spans[1].duration",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][0].update(startTime=[1])),
            "data[0].spans[0].startTime",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][1].update(processID="p9")),
            "data[0].spans[1].processID",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][1].update(references="a")),
            "data[0].spans[1].references",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][1]["references"][0].pop("spanID")),
            "data[0].spans[1].references[0].spanID",
        ),
        (
            broken(lambda d: d["data"][0]["spans"][1].update(tags={"error": True})),
            "data[0].spans[1].tags",
        ),
    ],
)
def test_malformed_input_names_file_and_place(tmp_path, content, where):
    path = write(tmp_path, content)
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, format="jaeger")
    assert path.name in str(err.value)
    assert where in str(err.value)


def test_wrong_top_level_type(tmp_path):
    path = write(tmp_path, '"just a string"')
    with pytest.raises(TraceFormatError, match=r"t\.json: top level: found str"):
        bayesperf.read_traces(path, format="jaeger")


def test_unknown_process_names_the_span(tmp_path):
    path = write(tmp_path, broken(lambda d: d["data"][0]["spans"][1].update(processID="p9")))
    with pytest.raises(TraceFormatError, match=r"span b names processID 'p9'.*p1, p2"):
        bayesperf.read_traces(path)


def test_truncated_file_says_so(tmp_path):
    path = write(tmp_path, json.dumps(GOOD)[:100])
    with pytest.raises(TraceFormatError, match="truncated"):
        bayesperf.read_traces(path, format="jaeger")


def test_empty_file(tmp_path):
    path = write(tmp_path, "  \n")
    with pytest.raises(TraceFormatError, match=r"t\.json.*empty"):
        bayesperf.read_traces(path)  # auto-detection
    with pytest.raises(TraceFormatError, match=r"t\.json: file start: file is empty"):
        bayesperf.read_traces(path, format="jaeger")


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps(GOOD).encode())[:-12])
    with pytest.raises(TraceFormatError, match=r"t\.json\.gz"):
        bayesperf.read_traces(path, format="jaeger")


def test_options_are_refused(tmp_path):
    with pytest.raises(TraceFormatError, match="takes no options"):
        bayesperf.read_traces(write(tmp_path, GOOD), format="jaeger", preset="nezha")


ODD_VALUES = [None, 0, -1, 2.5, "", "x", "12", [], {}, True, [{}], {"a": 1}]
SPAN_FIELDS = [
    "traceID",
    "spanID",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "processID",
]


@pytest.mark.parametrize("field", SPAN_FIELDS)
def test_odd_values_give_a_table_or_a_trace_format_error(tmp_path, field):
    """No KeyError, TypeError, ... escapes, whatever a field holds."""
    for i, value in enumerate(ODD_VALUES):
        path = write(
            tmp_path,
            broken(lambda d, v=value: d["data"][0]["spans"][1].update({field: v})),
            f"{i}.json",
        )
        try:
            bayesperf.read_traces(path, format="jaeger")
        except TraceFormatError as err:
            assert path.name in str(err)


def test_sniffing_tells_jaeger_from_the_other_json_formats(tmp_path):
    assert jaeger._sniff(Path("x.json"), b'  {"data": [{"traceID": "1"')
    assert jaeger._sniff(Path("x.json.gz"), b'[{"traceID": "1", "spans": []}]')
    assert jaeger._sniff(
        Path("x.json"), b'{"processes": {}, "spans": [{"spanID": "1", "operationName": "o"'
    )
    assert not jaeger._sniff(Path("x.csv"), b'{"data": []}')
    assert not jaeger._sniff(Path("x.json"), b'[{"traceId": "1", "id": "2"}]')
    assert not jaeger._sniff(Path("x.json"), b'{"resourceSpans": []}')
