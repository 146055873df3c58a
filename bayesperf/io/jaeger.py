"""``jaeger``: Jaeger query-API JSON, as the Jaeger UI's "Download JSON" writes it.

The file holds ``{"data": [trace, ...]}``; a single trace object
(``{"traceID": ..., "spans": [...], "processes": {...}}``) and a top-level list of traces
are read too. A span's service is ``processes[span.processID].serviceName`` (or the
span's own embedded ``process``); its parent is the ``CHILD_OF`` reference (else the
first ``FOLLOWS_FROM`` one; none means a root). ``startTime`` and ``duration`` are
microseconds. A span is an error when its ``error`` tag is true.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("hotel_load25.json")   # doctest: +SKIP
>>> spans.attrs["read_report"].kept                      # doctest: +SKIP
11000

"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bayesperf.errors import TraceFormatError
from bayesperf.io._json import (
    SpanColumns,
    iter_objects,
    json_head,
    load_json,
    micros_latency_ms,
    micros_start_ns,
    optional_str,
    reject_options,
    shape_error,
    string_id,
)
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, register

#: ``{"data": ...``, a single trace ``{"traceID": ...`` or a list of traces ``[{"traceID"``.
_HEAD = re.compile(rb'\s*(?:\{\s*"data"\s*:|\{\s*"traceID"\s*:|\[\s*\{\s*"traceID"\s*:)')


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
    traces, prefix = _traces(load_json(path), path)
    columns = SpanColumns()
    # (trace index, span index) per row; locations are only formatted when asked for.
    positions: list[tuple[int, int]] = []

    for t, trace in enumerate(traces):
        at = f"{prefix}[{t}]" if prefix is not None else ""
        if not isinstance(trace, dict):
            raise shape_error(path, at or "top level", trace, "a trace object with 'spans'")
        spans = iter_objects(
            trace.get("spans"),
            path,
            f"{at}.spans".lstrip("."),
            expected_list="a list of spans",
            expected_item="a span object",
        )
        processes = trace.get("processes") or {}
        if not isinstance(processes, dict):
            raise shape_error(
                path, f"{at}.processes".lstrip("."), processes, "an object of processes"
            )
        default_trace = trace.get("traceID")
        for i, (where, span) in enumerate(spans):
            trace_id = string_id(span.get("traceID", default_trace), path, f"{where}.traceID")
            span_id = string_id(span.get("spanID"), path, f"{where}.spanID")
            columns.add(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=_parent(span, path, where),
                service=_service(span, processes, path, where, span_id),
                operation=optional_str(span.get("operationName"), path, f"{where}.operationName"),
                start=micros_start_ns(span.get("startTime"), path, f"{where}.startTime"),
                latency=micros_latency_ms(span.get("duration"), path, f"{where}.duration"),
                error=_is_error(span.get("tags"), path, f"{where}.tags"),
            )
            positions.append((t, i))

    def locate(row: int) -> str:
        t, i = positions[row]
        return f"{prefix}[{t}].spans[{i}]".lstrip(".") if prefix is not None else f"spans[{i}]"

    return RawSpans(frame=columns.frame(), source=str(path), locate=locate)


def _traces(doc: Any, path: Path) -> tuple[list[Any], str | None]:
    """Return the traces and the JSON path prefix of their list (None: a single trace)."""
    if isinstance(doc, dict) and "data" in doc:
        data = doc["data"]
        if not isinstance(data, list):
            # The query API answers {"data": null, "errors": [...]} when a query failed.
            problem = f"'data' is {type(data).__name__}, not a list of traces"
            if doc.get("errors"):
                problem += f"; the response reports errors: {doc['errors']!r}"[:300]
            raise TraceFormatError(problem, source=path, where="data", expected="a list of traces")
        return data, "data"
    if isinstance(doc, dict) and "spans" in doc:
        return [doc], None
    if isinstance(doc, list):
        return doc, ""
    raise shape_error(path, "top level", doc, '{"data": [trace, ...]}, one trace object or a list')


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
    process = span.get("process")
    if not isinstance(process, dict):
        pid = span.get("processID")
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
        if not isinstance(process, dict):
            raise shape_error(
                path, f"{where} (its process {pid})", process, 'a process {"serviceName", ...}'
            )
    return optional_str(process.get("serviceName"), path, f"{where} (process serviceName)")


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
    # Keys in another order: Jaeger's spelling ("spanID", "operationName") is distinctive.
    return head.lstrip()[:1] in (b"{", b"[") and b'"spanID"' in head and b'"operationName"' in head


FORMAT = register(
    TraceFormat(
        name="jaeger",
        read=read,
        sniff=_sniff,
        description='Jaeger query-API JSON {"data": [trace, ...]}',
    )
)
