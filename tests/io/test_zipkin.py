"""The ``zipkin`` reader: Zipkin v2 JSON span lists, with shared client/server span ids."""

import copy
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io import zipkin
from bayesperf.io.registry import detect_format
from tests.io.counts import table_counts

SENDING = ("CLIENT", "PRODUCER")


def expected_from_json(path: Path) -> dict:
    """Counts the table must have, from the file with nothing but ``json``.

    The model: a receiving half (SERVER/CONSUMER, or ``shared``) whose id a sending half
    (CLIENT/PRODUCER) also carries is its own node, child of the sending half; so are
    kind-less fragments in its service; a span whose parentId is such an id and whose
    service is the receiver's hangs under the receiver. Then the documented cleaning:
    missing duration, negative duration, missing service, repeated node.
    """
    doc = json.loads(path.read_text())
    records = [s for t in doc for s in t] if doc and isinstance(doc[0], list) else doc

    def service(s):
        # A span without a local service name is the Zipkin UI's "unknown".
        name = (s.get("localEndpoint") or {}).get("serviceName")
        return name.lower() if name else "unknown"

    def key(s, field="id"):
        return (s["traceId"].lower(), s[field].lower())

    def receives(s):
        return s.get("kind") in ("SERVER", "CONSUMER") or (s.get("shared") and not s.get("kind"))

    senders = defaultdict(set)  # shared id -> services of its sending halves
    for s in records:
        if s.get("kind") in SENDING:
            senders[key(s)].add(service(s))
    receivers = defaultdict(set)  # shared id -> services of its receiving halves
    for s in records:
        if key(s) in senders and receives(s):
            receivers[key(s)].add(service(s))

    def node(s):
        k = key(s)
        if k in receivers and (
            receives(s)
            or (not s.get("kind") and service(s) in receivers[k] and service(s) not in senders[k])
        ):
            return (*k, "receiving")
        return k

    def parent(s):
        if len(node(s)) == 3:
            return key(s)
        if not s.get("parentId"):
            return None
        p = key(s, "parentId")
        return (*p, "receiving") if service(s) in receivers.get(p, ()) else p

    named = {}  # node -> service, from every record (first wins)
    for s in records:
        if service(s):
            named.setdefault(node(s), service(s))
    dropped = Counter()
    service_of = {}
    kept = []
    for s in records:
        if s.get("duration") is None:
            dropped["missing_latency"] += 1
        elif s["duration"] < 0:
            dropped["negative_latency"] += 1
        elif node(s) in service_of:
            dropped["duplicate_span"] += 1
        else:
            service_of[node(s)] = service(s)
            kept.append(s)
    pairs = {(named[parent(s)], service(s)) for s in kept if parent(s) in named}
    return {
        "records": len(records),
        "kept": len(kept),
        "traces": len({s["traceId"].lower() for s in kept}),
        "services": len({service(s) for s in kept}),
        "pairs": len(pairs),
        "dropped": dict(dropped),
        "parent_missing": sum(parent(s) is not None and parent(s) not in named for s in kept),
        "unnamed": sum(not (s.get("localEndpoint") or {}).get("serviceName") for s in kept),
    }


def measured(spans: pd.DataFrame) -> dict:
    return table_counts(spans) | {"unnamed": spans.attrs["read_report"].flagged["unnamed_service"]}


# file: (records, kept, traces, services, pairs, dropped, parent_missing), measured once
# and checked against the independent json count.
COUNTS = {
    "ascend.json": (8, 8, 1, 3, 5, {}, 0),
    "envoy.json": (1, 1, 1, 1, 0, {}, 0),
    "messaging-kafka.json": (28, 28, 1, 2, 3, {}, 0),
    "messaging.json": (4, 4, 1, 2, 3, {}, 0),
    "messaging2.json": (11, 11, 1, 4, 4, {}, 6),
    "simple-db-p6.json": (5, 5, 1, 1, 1, {}, 0),
    "skew.json": (4, 4, 1, 2, 3, {}, 0),
    "smartthings-mobile-web-install.json": (1041, 866, 1, 16, 38, {"missing_latency": 175}, 0),
    "smartthings-oauth-authorization.json": (175, 156, 1, 8, 11, {"missing_latency": 19}, 0),
    "yelp.json": (16, 16, 1, 6, 8, {}, 0),
}
#: Kept spans whose local endpoint names no service (envoy.json: only an IPv4 address;
#: yelp.json has a service really named "unknown", which is not flagged).
UNNAMED = {"envoy.json": 1}
FIELDS = ("records", "kept", "traces", "services", "pairs", "dropped", "parent_missing")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_real_files_match_an_independent_count(shared_data, name):
    path = shared_data / "zipkin" / name
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert report.format == "zipkin"
    assert report.records == report.kept + sum(report.dropped.values())
    expected = expected_from_json(path)
    assert measured(spans) == expected
    assert expected.pop("unnamed") == UNNAMED.get(name, 0)
    assert expected == dict(zip(FIELDS, COUNTS[name], strict=True))
    assert not spans.duplicated(["trace_id", "span_id"]).any()
    assert list(spans.columns) == list(bayesperf.schema.SPAN_COLUMNS)


@pytest.mark.shared_data
def test_real_directory_reads_as_one_table(shared_data):
    spans = bayesperf.read_traces(shared_data / "zipkin")
    report = spans.attrs["read_report"]
    assert len(report.sources) == 10
    assert report.kept == sum(c[1] for c in COUNTS.values()) == 1099
    assert report.records == report.kept + sum(report.dropped.values())


@pytest.mark.shared_data
def test_skew_trace_call_graph_and_units(shared_data):
    """skew.json: servicea calls serviceb through a shared span; serviceb then works alone."""
    path = shared_data / "zipkin" / "skew.json"
    raw = {s["id"] + ":" + s.get("kind", "-"): s for s in json.loads(path.read_text())}
    spans = bayesperf.read_traces(path).set_index("span_id")
    server = spans.loc["74280ae0c10d8062:server"]
    assert server["latency"] == raw["74280ae0c10d8062:SERVER"]["duration"] / 1000 == 93.577
    assert server["parent_id"] == "74280ae0c10d8062"
    assert (server["caller"], server["callee"]) == ("servicea", "serviceb")
    client = spans.loc["74280ae0c10d8062"]
    assert client["latency"] == 94.539
    assert (client["caller"], client["callee"]) == ("servicea", "servicea")
    # "async" runs in serviceb under the shared id: its parent is the server half.
    local = spans.loc["43210ae0c10d1234"]
    assert local["parent_id"] == "74280ae0c10d8062:server"
    assert (local["caller"], local["callee"]) == ("serviceb", "serviceb")
    root = spans.loc["bf396325699c84bf"]
    assert pd.isna(root["caller"]) and root["operation"] == "get"
    assert root["start_time"].value == 1470150004071068 * 1000
    assert root["latency"] == 99.411


@pytest.mark.shared_data
def test_service_names_are_lower_cased(shared_data):
    spans = bayesperf.read_traces(shared_data / "zipkin" / "smartthings-mobile-web-install.json")
    assert "stlogin" in set(spans["service"].astype(str))  # the file writes "stLogin"
    assert spans["error"].sum() == 2


# --- small inline files --------------------------------------------------------------


def zspan(span_id, service, *, kind=None, parent=None, duration=1000, trace="T1", **extra):
    out = {"traceId": trace, "id": span_id, "name": f"{service}-op", "timestamp": 1_000_000}
    if parent:
        out["parentId"] = parent
    if kind:
        out["kind"] = kind
    if duration is not None:
        out["duration"] = duration
    out["localEndpoint"] = {"serviceName": service}
    return out | extra


def write(tmp_path: Path, doc, name="z.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


SHARED = [
    zspan("aa", "Front", kind="SERVER", duration=9000),
    zspan("bb", "front", kind="CLIENT", parent="aa", duration=5000),
    zspan("bb", "back", kind="SERVER", parent="aa", duration=4000, shared=True),
    zspan("cc", "back", parent="bb", duration=1000),  # local work in back
    zspan("dd", "back", kind="CLIENT", parent="bb", duration=500),  # back calls db
]


def test_shared_server_half_gets_its_own_id_and_the_calling_service(tmp_path):
    spans = bayesperf.read_traces(write(tmp_path, SHARED))
    report = spans.attrs["read_report"]
    assert report.format == "zipkin"
    assert (report.records, report.kept, sum(report.dropped.values())) == (5, 5, 0)
    assert not spans.duplicated(["trace_id", "span_id"]).any()
    rows = spans.set_index("span_id")
    assert rows.loc["bb:server", "parent_id"] == "bb"
    assert (rows.loc["bb:server", "caller"], rows.loc["bb:server", "callee"]) == ("front", "back")
    assert rows.loc["bb:server", "latency"] == 4.0
    assert (rows.loc["bb", "caller"], rows.loc["bb", "callee"]) == ("front", "front")
    # Spans in "back" under the shared id belong to the server half.
    assert rows.loc["cc", "parent_id"] == rows.loc["dd", "parent_id"] == "bb:server"
    assert rows.loc["cc", "caller"] == rows.loc["dd", "caller"] == "back"
    assert not report.flagged["parent_missing"]


def test_same_id_with_another_kind_counts_as_shared_without_the_flag(tmp_path):
    records = copy.deepcopy(SHARED)
    del records[2]["shared"]
    rows = bayesperf.read_traces(write(tmp_path, records)).set_index("span_id")
    assert rows.loc["bb:server", "caller"] == "front"


def test_server_half_without_its_client_keeps_its_id_and_parent(tmp_path):
    records = [r for r in SHARED if not (r["id"] == "bb" and r["kind"] == "CLIENT")]
    rows = bayesperf.read_traces(write(tmp_path, records)).set_index("span_id")
    assert "bb:server" not in rows.index
    assert rows.loc["bb", "parent_id"] == "aa"
    assert rows.loc["bb", "caller"] == "front"  # the client's parent is in the caller
    assert rows.loc["cc", "caller"] == "back"


def test_true_duplicates_are_dropped_and_counted(tmp_path):
    records = [*SHARED, copy.deepcopy(SHARED[2]), copy.deepcopy(SHARED[1])]
    spans = bayesperf.read_traces(write(tmp_path, records))
    report = spans.attrs["read_report"]
    assert (report.records, report.kept, dict(report.dropped)) == (7, 5, {"duplicate_span": 2})
    assert not spans.duplicated(["trace_id", "span_id"]).any()


def test_kindless_fragment_of_the_server_half_follows_it(tmp_path):
    fragment = {
        "traceId": "T1",
        "id": "bb",
        "parentId": "aa",
        "localEndpoint": {"serviceName": "back"},
    }
    spans = bayesperf.read_traces(write(tmp_path, [fragment, *SHARED]))
    report = spans.attrs["read_report"]
    assert dict(report.dropped) == {"missing_latency": 1}  # no duration: nothing to keep
    rows = spans.set_index("span_id")
    assert rows.loc["bb", "callee"] == "front"  # the client half survives


def test_messaging_kinds_and_missing_values(tmp_path):
    records = [
        zspan("p1", "app", kind="PRODUCER"),
        zspan("c1", "worker", kind="CONSUMER", parent="p1"),
        zspan("c2", "worker", parent="c1", duration=None),  # counted, not invented
        zspan("c3", "worker", parent="c1", duration=-5),
        {"traceId": "T1", "id": "c4", "parentId": "c1", "duration": 3},  # no endpoint
    ]
    del records[0]["timestamp"]
    spans = bayesperf.read_traces(write(tmp_path, records))
    report = spans.attrs["read_report"]
    assert dict(report.dropped) == {"missing_latency": 1, "negative_latency": 1}
    # The span without an endpoint is kept as the Zipkin UI's "unknown", and counted.
    assert report.flagged["unnamed_service"] == 1
    assert spans["service"].astype(str).tolist() == ["app", "worker", "unknown"]
    assert spans["caller"].astype(object).fillna("-").tolist() == ["-", "app", "worker"]
    assert pd.isna(spans["start_time"].iloc[0]) and spans["start_time"].iloc[1].value == 10**9


def test_list_of_traces_ids_case_and_error_tag(tmp_path):
    doc = [
        [
            zspan("AB", "a", trace="F00D"),
            zspan("CD", "b", parent="ab", trace="f00d", tags={"error": ""}),
        ],
        [zspan("01", "a", trace="BEEF")],
    ]
    path = write(tmp_path, doc)
    assert detect_format(path).name == "zipkin"
    spans = bayesperf.read_traces(path)
    assert spans["trace_id"].tolist() == ["f00d", "f00d", "beef"]
    assert spans["span_id"].tolist() == ["ab", "cd", "01"]
    assert spans["caller"].astype(object).fillna("-").tolist() == ["-", "a", "-"]
    assert spans["error"].tolist() == [False, True, False]
    assert zipkin.read(path).locate(1) == "[0][1]"


def test_gzip_file_is_read(tmp_path):
    path = tmp_path / "z.json.gz"
    path.write_bytes(gzip.compress(json.dumps(SHARED).encode()))
    spans = bayesperf.read_traces(path)
    assert spans.attrs["read_report"].format == "zipkin"
    assert len(spans) == 5


# --- malformed input -----------------------------------------------------------------


def broken(change):
    records = copy.deepcopy(SHARED)
    change(records)
    return records


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (json.dumps(SHARED)[:-40], "line 1 column"),  # truncated
        ("[{]", "line 1 column 3"),
        ({"traceId": "T1", "id": "aa"}, "top level"),  # an object, not a list
        ({"batches": []}, "top level: this is a Tempo"),  # the encoding found is named
        (["span"], "[0]"),
        ([[zspan("aa", "a")], zspan("bb", "b")], "[1]"),  # traces mixed with spans
        ([zspan("aa", "a"), [zspan("bb", "b")]], "[1]"),
        (broken(lambda r: r[3].pop("id")), "[3].id"),
        (broken(lambda r: r[3].pop("traceId")), "[3].traceId"),
        (broken(lambda r: r[3].update(id=12)), "[3].id"),
        (broken(lambda r: r[3].update(duration="slow")), "[3].duration"),
        (broken(lambda r: r[3].update(duration=True)), "[3].duration"),
        (broken(lambda r: r[3].update(timestamp={"us": 1})), "[3].timestamp"),
        (broken(lambda r: r[3].update(localEndpoint="back")), "[3].localEndpoint"),
        (broken(lambda r: r[3].update(tags=["error"])), "[3].tags"),
        # Zipkin v1 records (endpoints in annotations) with malformed parts.
        ([{"traceId": "T1", "id": "aa", "binaryAnnotations": "lc"}], "[0].binaryAnnotations"),
        (
            [{"traceId": "T1", "id": "aa", "annotations": [{"endpoint": {}}, 3]}],
            "[0].annotations[1]",
        ),
        (
            [
                {
                    "traceId": "T",
                    "id": "a",
                    "annotations": [{"value": "cs", "timestamp": "x"}],
                    "binaryAnnotations": [],
                }
            ],
            "[0].annotations[0].timestamp",
        ),
        ([{"traceId": "T1", "id": 5, "binaryAnnotations": []}], "[0].id"),
    ],
)
def test_malformed_input_names_file_and_place(tmp_path, content, where):
    path = write(tmp_path, content)
    with pytest.raises(TraceFormatError) as err:
        bayesperf.read_traces(path, format="zipkin")
    assert path.name in str(err.value)
    assert where in str(err.value)


def test_missing_id_message(tmp_path):
    path = write(tmp_path, broken(lambda r: r[3].pop("id")))
    with pytest.raises(TraceFormatError, match=r"z\.json: \[3\]\.id: missing id"):
        bayesperf.read_traces(path)


def test_non_numeric_duration_message(tmp_path):
    path = write(tmp_path, broken(lambda r: r[1].update(duration="5ms")))
    with pytest.raises(TraceFormatError, match=r"z\.json: \[1\]\.duration: '5ms' is not a number"):
        bayesperf.read_traces(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(TraceFormatError, match=r"z\.json.*empty"):
        bayesperf.read_traces(path)
    with pytest.raises(TraceFormatError, match=r"z\.json: file start: file is empty"):
        bayesperf.read_traces(path, format="zipkin")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "z.json.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(TraceFormatError, match=r"z\.json\.gz"):
        bayesperf.read_traces(path, format="zipkin")


ODD_VALUES = [None, 0, -1, 2.5, "", "x", "12", [], {}, True, [{}], {"a": 1}]
SPAN_FIELDS = [
    "traceId",
    "id",
    "parentId",
    "kind",
    "name",
    "timestamp",
    "duration",
    "localEndpoint",
    "tags",
    "shared",
]


@pytest.mark.parametrize("field", SPAN_FIELDS)
def test_odd_values_give_a_table_or_a_trace_format_error(tmp_path, field):
    """No KeyError, TypeError, ... escapes, whatever a field holds."""
    for i, value in enumerate(ODD_VALUES):
        path = write(tmp_path, broken(lambda r, v=value: r[2].update({field: v})), f"{i}.json")
        try:
            spans = bayesperf.read_traces(path, format="zipkin")
        except TraceFormatError as err:
            assert path.name in str(err)
        else:
            assert not spans.duplicated(["trace_id", "span_id"]).any()


def test_sniffing(tmp_path):
    assert zipkin._sniff(Path("x.json"), b'[\n  {\n    "traceId": "1"')
    assert zipkin._sniff(Path("x.json.gz"), b'[[{"id": "2", "traceId": "1"')
    assert not zipkin._sniff(Path("x.json"), b'[{"traceID": "1", "spans": []}]')  # jaeger
    assert not zipkin._sniff(Path("x.json"), b'{"resourceSpans": [{"traceId": "1"')
    assert not zipkin._sniff(Path("x.txt"), b'[{"traceId": "1"')
