"""``jaeger``: Jaeger query-API JSON, as the Jaeger UI's "Download JSON" writes it.

The file holds ``{"data": [trace, ...]}``; a single trace object
(``{"traceID": ..., "spans": [...], "processes": {...}}``), a top-level list of traces
and a top-level list of spans, each with its own ``process`` (as Jaeger's anonymizer
and the UI's converter write them) are read too. A span's service is
``processes[span.processID].serviceName`` (or the span's own embedded ``process``);
its parent is the ``CHILD_OF`` reference (else the first ``FOLLOWS_FROM`` one; none
means a root). ``startTime`` and ``duration`` are microseconds. A span is an error
when its ``error`` tag is true.

A span whose process names no service keeps Jaeger's own placeholders, the names the
Jaeger collector gives such spans and the Jaeger UI then shows: ``empty-service-name``
(a process without a service name) and ``null-process-and-service-name`` (no process
at all); such spans are flagged ``unnamed_service``. Jaeger v2's ``/api/v3`` returns
OTLP, read by the ``otlp`` format; the Jaeger domain model (protobuf JSON, ids spelled
``traceId``) is refused by name.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("hotel_load25.json")   # doctest: +SKIP
>>> spans.attrs["read_report"].kept                      # doctest: +SKIP
11000

"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bayesperf.errors import TraceFormatError
from bayesperf.io import report as R
from bayesperf.io._json import (
    SpanColumns,
    iter_objects,
    json_encoding,
    json_head,
    load_json,
    micros_latency_ms,
    micros_start_ns,
    optional_str,
    reject_options,
    shape_error,
    string_id,
    wrong_document,
)
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, register

#: ``{"data": ...``, a single trace ``{"traceID": ...`` or a list ``[{"traceID"``.
_HEAD = re.compile(rb'\s*(?:\{\s*"data"\s*:|\{\s*"traceID"\s*:|\[\s*\{\s*"traceID"\s*:)')
#: The Jaeger collector's names for spans without a service (what the Jaeger UI shows).
EMPTY_SERVICE_NAME = "empty-service-name"
NULL_PROCESS_SERVICE_NAME = "null-process-and-service-name"
_JAEGER_SPANS = json_encoding([{"spanID": ""}])
_EXPECTED_DOC = '{"data": [trace, ...]}, one trace object, a list of traces or a list of spans'


def read(path: Path, **options: object) -> RawSpans:
    """Read one Jaeger JSON file.

    Parameters
    ----------
    path : Path
        A Jaeger query-API JSON file (``.gz`` is decompressed).
    **options
        None are accepted; any given is an error.

    Returns
    -------
    RawSpans
        One row per span, in canonical columns; ``locate(i)`` gives the span's JSON
        path (``"data[3].spans[7]"``).

    Raises
    ------
    TraceFormatError
        Malformed or truncated JSON, an unexpected shape, a span without ids, an
        unknown ``processID``, or a non-numeric time.

    """
    reject_options("jaeger", options, path)
    traces, spans_at = _traces(load_json(path), path)
    columns = SpanColumns()
    unnamed: list[bool] = []
    # (trace index, span index) per row; locations are only formatted when asked for.
    positions: list[tuple[int, int]] = []

    for t, trace in enumerate(traces):
        if not isinstance(trace, dict):
            raise shape_error(
                path,
                spans_at(t).removesuffix(".spans") or "top level",
                trace,
                "a trace object with 'spans'",
            )
        spans = iter_objects(
            trace.get("spans"),
            path,
            spans_at(t),
            expected_list="a list of spans",
            expected_item="a span object",
        )
        processes = trace.get("processes") or {}
        if not isinstance(processes, dict):
            at = spans_at(t).removesuffix("spans")
            raise shape_error(path, f"{at}processes", processes, "an object of processes")
        default_trace = trace.get("traceID")
        for i, (where, span) in enumerate(spans):
            if "spanID" not in span and json_encoding(span) not in (None, _JAEGER_SPANS):
                raise wrong_document(path, where, span, "Jaeger spans with traceID, spanID")
            trace_id = string_id(span.get("traceID", default_trace), path, f"{where}.traceID")
            span_id = string_id(span.get("spanID"), path, f"{where}.spanID")
            service = _service(span, processes, path, where, span_id)
            columns.add(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=_parent(span, path, where),
                service=service or _placeholder(span, processes),
                operation=optional_str(span.get("operationName"), path, f"{where}.operationName"),
                start=micros_start_ns(span.get("startTime"), path, f"{where}.startTime"),
                latency=micros_latency_ms(span.get("duration"), path, f"{where}.duration"),
                error=_is_error(span.get("tags"), path, f"{where}.tags"),
            )
            unnamed.append(service is None)
            positions.append((t, i))

    def locate(row: int) -> str:
        t, i = positions[row]
        return f"{spans_at(t)}[{i}]"

    flagged = {R.UNNAMED_SERVICE: np.asarray(unnamed, dtype=bool)} if any(unnamed) else {}
    return RawSpans(frame=columns.frame(), source=str(path), locate=locate, flagged=flagged)


def _traces(doc: Any, path: Path) -> tuple[list[Any], Callable[[int], str]]:
    """Return the traces and the JSON path of trace ``t``'s list of spans."""
    if isinstance(doc, dict) and "data" in doc:
        data = doc["data"]
        if not isinstance(data, list):
            # The query API answers {"data": null, "errors": [...]} when a query failed.
            problem = f"'data' is {type(data).__name__}, not a list of traces"
            if doc.get("errors"):
                problem += f"; the response reports errors: {doc['errors']!r}"[:300]
            raise TraceFormatError(problem, source=path, where="data", expected="a list of traces")
        return data, lambda t: f"data[{t}].spans"
    if isinstance(doc, dict) and "spans" in doc:
        return [doc], lambda t: "spans"
    if isinstance(doc, list):
        first = doc[0] if doc else None
        if isinstance(first, dict) and "spans" not in first and json_encoding(doc) is not None:
            # A list of spans, each with its own process (Jaeger's anonymizer, the UI).
            return [{"spans": doc}], lambda t: ""
        return doc, lambda t: f"[{t}].spans"
    raise wrong_document(path, "top level", doc, _EXPECTED_DOC)


def _parent(span: dict[str, Any], path: Path, where: str) -> str | None:
    """Return the CHILD_OF reference's span id, else the first FOLLOWS_FROM one, else None."""
    refs = span.get("references")
    follows: str | None = None
    for at, ref in iter_objects(
        [] if refs is None else refs,
        path,
        f"{where}.references",
        expected_list="a list of references",
        expected_item='a reference {"refType", "traceID", "spanID"}',
    ):
        # CHILD_OF is the protobuf default (0), so encoders may omit it.
        kind = ref.get("refType", "CHILD_OF")
        if kind == "CHILD_OF":
            return string_id(ref.get("spanID"), path, f"{at}.spanID")
        if kind == "FOLLOWS_FROM" and follows is None:
            follows = string_id(ref.get("spanID"), path, f"{at}.spanID")
    if follows is None and span.get("parentSpanID") not in (None, "", "0"):
        # Older Jaeger JSON carried the parent directly.
        follows = string_id(span["parentSpanID"], path, f"{where}.parentSpanID")
    return follows


def _service(
    span: dict[str, Any], processes: dict[str, Any], path: Path, where: str, span_id: str
) -> str | None:
    """The span's service name; None when its process names none (or it has no process)."""
    process = span.get("process")
    if not isinstance(process, dict):
        pid = span.get("processID")
        if pid is None and process is None:
            return None
        if not isinstance(pid, str) or pid not in processes:
            known = ", ".join(sorted(map(str, processes))) or "none"
            raise TraceFormatError(
                f"span {span_id} names processID {pid!r}, which the trace does not define "
                f"(its processes: {known})",
                source=path,
                where=f"{where}.processID",
                expected="a key of the trace's 'processes' or an embedded 'process'",
            )
        process = processes[pid]
        if process is None:
            return None
        if not isinstance(process, dict):
            raise shape_error(
                path, f"{where} (its process {pid})", process, 'a process {"serviceName", ...}'
            )
    return optional_str(process.get("serviceName"), path, f"{where} (process serviceName)") or None


def _placeholder(span: dict[str, Any], processes: dict[str, Any]) -> str:
    """Jaeger's name for a span without a service: its process is empty, or absent."""
    process = span.get("process")
    if not isinstance(process, dict):
        process = processes.get(span.get("processID"))
    return EMPTY_SERVICE_NAME if isinstance(process, dict) else NULL_PROCESS_SERVICE_NAME


def _is_error(tags: Any, path: Path, where: str) -> bool:
    if tags is None:
        return False
    if not isinstance(tags, list):
        raise shape_error(path, where, tags, 'a list of tags {"key", "type", "value"}')
    for tag in tags:
        if isinstance(tag, dict) and tag.get("key") == "error":
            value = tag.get("value")
            return value is True or (isinstance(value, str) and value.strip().lower() == "true")
    return False


def _sniff(path: Path, head: bytes) -> bool:
    head = json_head(path, head)
    if head is None:
        return False
    if _HEAD.match(head):
        return True
    # Keys in another order: Jaeger's "operationName" is distinctive (with "spanID", or
    # the domain model's "spanId", which the reader then refuses by name).
    return (
        head.lstrip()[:1] in (b"{", b"[")
        and b'"operationName"' in head
        and (b'"spanID"' in head or b'"spanId"' in head)
        and b'"resourceSpans"' not in head
    )


FORMAT = register(
    TraceFormat(
        name="jaeger",
        read=read,
        sniff=_sniff,
        description='Jaeger query-API JSON {"data": [trace, ...]}, or a list of Jaeger spans',
    )
)
