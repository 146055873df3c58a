"""What trace backends return, read as they return it (fixtures: ``fixtures/README.md``).

Jaeger v2 ``/api/v3`` and Tempo responses wrap OTLP; Jaeger's own tools write span lists;
Zipkin's collectors see spans without a local service name and v1 JSON. Each fixture is
a real file from those projects, and its span and service counts are checked against an
independent walk of the JSON.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

import bayesperf
from bayesperf import TraceFormatError
from bayesperf.io.registry import detect_format

FIXTURES = Path(__file__).parent / "fixtures"


def otlp_counts(doc) -> tuple[int, set[str]]:
    """Spans and service names of an OTLP document or a backend response wrapping one."""
    inner = doc.get("result") or doc.get("trace") or doc
    resource_spans = inner.get("resourceSpans", doc.get("batches"))
    spans, services = 0, set()
    for rs in resource_spans:
        attributes = rs.get("resource", {}).get("attributes", [])
        names = [a["value"]["stringValue"] for a in attributes if a["key"] == "service.name"]
        services.add(names[0] if names else "unknown_service")
        spans += sum(len(scope.get("spans", [])) for scope in rs["scopeSpans"])
    return spans, services


# fixture: (format, spans, services) — the counts a reader must give, checked below
# against the independent walk of the file.
OTLP_RESPONSES = {
    "jaeger-v2/GetTrace.json": (1, {"myservice"}),
    "jaeger-v2/v3-trace-local-2.21.0.json": (3, {"lfx-wire-probe"}),
    "tempo/api-traces.json": (2, {"frontend", "cartservice"}),
    "tempo/api-v2-traces.json": (2, {"frontend", "cartservice"}),
}


@pytest.mark.parametrize("name", sorted(OTLP_RESPONSES))
@pytest.mark.parametrize("fmt", ["auto", "otlp"])
def test_backend_responses_read_as_otlp(name, fmt):
    path = FIXTURES / name
    assert detect_format(path).name == "otlp"
    spans = bayesperf.read_traces(path, format=fmt)
    report = spans.attrs["read_report"]
    n, services = OTLP_RESPONSES[name]
    assert otlp_counts(json.loads(path.read_text())) == (n, services)
    assert (report.format, report.records, report.kept) == ("otlp", n, n)
    assert set(spans["service"].astype(str)) == services
    assert not report.dropped


def test_jaeger_v2_response_fields():
    """Jaeger 2.21.0's /api/v3 answer: one root, two children, the root an error."""
    spans = bayesperf.read_traces(FIXTURES / "jaeger-v2" / "v3-trace-local-2.21.0.json")
    assert spans["latency"].tolist() == [1.0, 0.1, 0.1]
    assert spans["error"].tolist() == [True, False, False]
    assert spans["caller"].astype(object).fillna("-").tolist() == ["-"] + ["lfx-wire-probe"] * 2
    assert spans["start_time"].iloc[0].value == 1786934400000000000


def test_jaeger_snapshot_with_a_time_past_2262_keeps_the_span():
    """Jaeger's snapshot has uint64 times beyond int64 ns: latency exact, start flagged."""
    spans = bayesperf.read_traces(FIXTURES / "jaeger-v2" / "GetTrace.json")
    report = spans.attrs["read_report"]
    assert spans["latency"].tolist() == [0.0] and spans["error"].tolist() == [True]
    assert pd.isna(spans["start_time"].iloc[0])
    assert report.flagged == {"start_time_out_of_range": 1}


def test_tempo_base64_ids_become_hex():
    """Both Tempo shapes carry the same two spans, with base64 ids (as Tempo writes them)."""
    old = bayesperf.read_traces(FIXTURES / "tempo" / "api-traces.json")
    new = bayesperf.read_traces(FIXTURES / "tempo" / "api-v2-traces.json")
    pd.testing.assert_frame_equal(old, new)
    assert set(old["trace_id"]) == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert old["span_id"].tolist() == ["00f067aa0ba902b7", "53995c3f42cd8ad8"]
    assert old["caller"].astype(object).fillna("-").tolist() == ["-", "frontend"]
    assert old["latency"].tolist() == [12.5, 7.0]
    assert old["error"].tolist() == [False, True]


def test_streamed_jaeger_v2_chunks_and_empty_and_error_responses(tmp_path):
    """/api/v3 streams one {"result": ...} per chunk; an empty or failed query says so."""
    doc = json.loads((FIXTURES / "jaeger-v2" / "v3-trace-local-2.21.0.json").read_text())
    first, second = json.loads(json.dumps(doc)), json.loads(json.dumps(doc))
    scope = first["result"]["resourceSpans"][0]["scopeSpans"][0]
    scope["spans"], second_spans = scope["spans"][:1], scope["spans"][1:]
    second["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"] = second_spans
    path = tmp_path / "chunks.json"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    spans = bayesperf.read_traces(path)
    assert len(spans) == 3 and spans["caller"].notna().sum() == 2

    empty = tmp_path / "empty.json"
    empty.write_text('{"result": {}}')
    with pytest.raises(TraceFormatError, match="no span records"):
        bayesperf.read_traces(empty, format="otlp")
    failed = tmp_path / "failed.json"
    failed.write_text('{"error": {"httpCode": 404, "message": "trace not found"}}')
    with pytest.raises(TraceFormatError, match=r"failed\.json: error: .*'trace not found'"):
        bayesperf.read_traces(failed, format="otlp")


def test_jaeger_span_list_from_the_anonymizer():
    """A top-level list of spans, each with its own process, is one trace."""
    path = FIXTURES / "jaeger" / "anonymizer-trace_success.json"
    raw = json.loads(path.read_text())
    assert detect_format(path).name == "jaeger"
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert (report.records, report.kept) == (len(raw), 2)
    services = [s["process"]["serviceName"] for s in raw]
    assert spans["service"].astype(str).tolist() == services and len(set(services)) == 2
    assert spans["caller"].astype(object).fillna("-").tolist() == ["-", services[0]]
    assert spans["error"].tolist() == [False, True]  # the tag's value is the string "true"
    assert report.flagged == {"parent_missing": 1}  # the root's parent is not in the file
    assert bayesperf.io.jaeger.read(path).locate(1) == "[1]"


def test_jaeger_domain_model_is_refused_by_name():
    path = FIXTURES / "jaeger" / "domain_01.json"
    assert detect_format(path).name == "jaeger"
    with pytest.raises(TraceFormatError, match=r"domain_01\.json: spans\[0\]: .*domain model"):
        bayesperf.read_traces(path)


@pytest.mark.parametrize(
    ("name", "error"), [("collector-sample3.json", False), ("collector-sample4.json", True)]
)
def test_zipkin_spans_without_a_local_service_are_kept_as_unknown(name, error):
    """The collector's samples: the local endpoint has only an IP address."""
    path = FIXTURES / "zipkin" / name
    raw = json.loads(path.read_text())
    assert all("serviceName" not in s["localEndpoint"] for s in raw)
    spans = bayesperf.read_traces(path)
    report = spans.attrs["read_report"]
    assert (report.records, report.kept) == (len(raw), 1)
    assert spans["service"].astype(str).tolist() == ["unknown"]  # as the Zipkin UI shows it
    assert report.flagged["unnamed_service"] == 1
    assert spans["error"].tolist() == [error]


def test_zipkin_v1_without_binary_annotations_first_is_read_as_v1():
    """The collector's v1 batch: endpoints in annotations; the first span has no
    binaryAnnotations. cs/cr and sr/ss halves sharing an id become client and server."""
    path = FIXTURES / "zipkin" / "zipkin_v1_single_batch.json"
    raw = json.loads(path.read_text())
    assert "binaryAnnotations" not in raw[0]
    assert detect_format(path).name == "zipkin"
    spans = bayesperf.read_traces(path).set_index("span_id")
    report = spans.attrs["read_report"]
    # Five v1 records, each one half (or a local span): five spans, three named services.
    assert (report.records, report.kept) == (5, 5)
    named = {a["endpoint"]["serviceName"] for s in raw for a in s["annotations"]}
    assert named == {"service1", "service2", "front-proxy"}
    assert set(spans["service"].astype(str)) == named | {"unknown"}
    assert report.flagged == {"unnamed_service": 1}
    pairs = spans.dropna(subset=["caller"])[["caller", "callee"]].astype(str)
    assert set(map(tuple, pairs.to_numpy())) == {
        ("front-proxy", "service1"),  # the proxy's client call, served by service1
        ("service1", "service1"),  # service1's client span under its server span
        ("service1", "service2"),
        ("front-proxy", "unknown"),  # the endpoint-less local span under the root id
    }
    # Timing: a half's own annotations (sr..ss); the span's timestamp/duration go to
    # the first half.
    assert (
        spans.loc["0ed2e63cbe71f5a8:server", "latency"]
        == (1544805927460102 - 1544805927448081) / 1000
    )
    assert spans.loc["0ed2e63cbe71f5a8", "latency"] == 12.956
    assert spans.loc["f9ebb6e64880612a", "latency"] == 3.740


def test_a_read_that_keeps_nothing_names_the_file_and_the_reason(tmp_path):
    path = tmp_path / "spans.csv"
    path.write_text("trace_id,service,latency\nt,a,\nt,b,\nt,,3\n")
    with pytest.raises(
        TraceFormatError,
        match=r"spans\.csv: none of the 3 span records is usable, mostly missing_latency",
    ):
        bayesperf.read_traces(path)


def test_wrong_format_names_the_encoding_found():
    path = FIXTURES / "tempo" / "api-traces.json"
    with pytest.raises(TraceFormatError, match=r"this is a Tempo /api/traces response .*otlp"):
        bayesperf.read_traces(path, format="jaeger")
    span_list = FIXTURES / "jaeger" / "anonymizer-trace_success.json"
    with pytest.raises(TraceFormatError, match=r"\[0\]: this is Jaeger spans"):
        bayesperf.read_traces(span_list, format="zipkin")
    with pytest.raises(TraceFormatError, match=r"this is Jaeger spans .*format='jaeger'"):
        bayesperf.read_traces(span_list, format="otlp")
