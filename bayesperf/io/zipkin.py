"""``zipkin``: Zipkin v2 JSON, a list of spans (or a list of traces, as ``/api/v2/traces``).

A span's service is ``localEndpoint.serviceName``, lower-cased as Zipkin does;
``timestamp`` and ``duration`` are microseconds and may be missing (a missing duration
becomes a NaN latency, dropped and counted when the table is built). A span is an error
when its ``tags`` hold an ``error`` key.

RPC halves may share one span id: the SERVER half reuses its CLIENT's ``id`` (marked
``shared: true`` by Zipkin, or just the same id with another kind). The receiving half
(SERVER or CONSUMER) then becomes span ``"<id>:server"`` (``":consumer"``) whose parent
is the sending half, so ``caller`` is the calling service; spans below it in the same
service point to it, as in Zipkin's own tree builder. Records repeated with the same
id and kind keep one span id and are dropped as duplicates.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("zipkin/skew.json")     # doctest: +SKIP

"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bayesperf.errors import TraceFormatError
from bayesperf.io._json import (
    SpanColumns,
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

#: A list of span objects, or a list of lists of them.
_HEAD = re.compile(rb"\s*\[\s*(?:\[\s*)?\{")
_SENDERS = frozenset({"CLIENT", "PRODUCER"})
_RECEIVERS = frozenset({"SERVER", "CONSUMER"})


def read(path: Path, **options: object) -> RawSpans:
    """Read one Zipkin v2 JSON file.

    Parameters
    ----------
    path : Path
        A JSON list of Zipkin v2 spans, or a list of such lists (``.gz`` is decompressed).
    **options
        None are accepted; any given is an error.

    Returns
    -------
    RawSpans
        One row per span record, in canonical columns; ``locate(i)`` gives the record's
        JSON path (``"[7]"`` or ``"[2][7]"``).

    Raises
    ------
    TraceFormatError
        Malformed or truncated JSON, an unexpected shape, a span without ``traceId`` or
        ``id``, a non-numeric time, or Zipkin v1 JSON.

    """
    reject_options("zipkin", options, path)
    doc = load_json(path)
    if not isinstance(doc, list):
        raise shape_error(path, "top level", doc, "a list of spans or a list of traces")
    records = _records(doc, path)

    columns = SpanColumns()
    kinds: list[str | None] = []
    shared: list[bool] = []
    for where, span in records:
        if not isinstance(span, dict):
            raise shape_error(path, where, span, "a span object")
        if "binaryAnnotations" in span:
            raise TraceFormatError(
                "this is Zipkin v1 JSON (it has binaryAnnotations)",
                source=path,
                where=where,
                expected="Zipkin v2 JSON (/api/v2 or a v2 span reporter)",
            )
        trace_id = _id(span.get("traceId"), path, f"{where}.traceId")
        span_id = _id(span.get("id"), path, f"{where}.id")
        parent = span.get("parentId")
        parent_id = None if parent in (None, "") else _id(parent, path, f"{where}.parentId")
        kind = optional_str(span.get("kind"), path, f"{where}.kind")
        kinds.append(kind.upper() if kind else None)
        shared.append(span.get("shared") is True)
        columns.add(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent_id,
            service=_service(span.get("localEndpoint"), path, f"{where}.localEndpoint"),
            operation=optional_str(span.get("name"), path, f"{where}.name"),
            start=micros_start_ns(span.get("timestamp"), path, f"{where}.timestamp"),
            latency=micros_latency_ms(span.get("duration"), path, f"{where}.duration"),
            error=_is_error(span.get("tags"), path, f"{where}.tags"),
        )

    _split_shared(
        columns.trace_ids, columns.span_ids, columns.parent_ids, kinds, shared, columns.services
    )
    return RawSpans(frame=columns.frame(), source=str(path), locate=lambda row: records[row][0])


def _records(doc: list[Any], path: Path) -> list[tuple[str, Any]]:
    """Return ``(JSON path, span)`` for every span record, flattening a list of traces."""
    if not doc or not isinstance(doc[0], list):
        return [(f"[{i}]", span) for i, span in enumerate(doc)]
    # A list of traces, as /api/v2/traces returns: the first item decides.
    records = []
    for t, trace in enumerate(doc):
        if not isinstance(trace, list):
            raise shape_error(path, f"[{t}]", trace, "a list of spans (a trace), like item [0]")
        records.extend((f"[{t}][{i}]", span) for i, span in enumerate(trace))
    return records


def _split_shared(
    trace_ids: list[str],
    span_ids: list[str],
    parent_ids: list[str | None],
    kinds: list[str | None],
    shared: list[bool],
    services: list[str | None],
) -> None:
    """Give receiving halves of shared span ids their own id, in place.

    Within one ``(traceId, id)`` that has both a sending (CLIENT/PRODUCER) and a
    receiving (SERVER/CONSUMER, or ``shared``) record, the receiving records become
    ``"<id>:<kind>"`` with the sending half as parent. Kind-less fragments of the
    receiving side (same id, the receiver's service) follow it; so do children whose
    ``parentId`` is the shared id and whose service is the receiver's. Services are
    matched by name where Zipkin matches whole endpoints.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for row, key in enumerate(zip(trace_ids, span_ids, strict=True)):
        groups.setdefault(key, []).append(row)
    # (traceId, shared id) -> receiving service -> the receiving half's new span id
    receivers: dict[tuple[str, str], dict[str | None, str]] = {}
    for key, rows in groups.items():
        if len(rows) < 2:
            continue
        sending = [r for r in rows if kinds[r] in _SENDERS]
        receiving = [r for r in rows if kinds[r] in _RECEIVERS or (shared[r] and kinds[r] is None)]
        if not sending or not receiving:
            continue
        by_service: dict[str | None, str] = {}
        for r in receiving:
            by_service.setdefault(services[r], f"{key[1]}:{(kinds[r] or 'SERVER').lower()}")
        sender_services = {services[r] for r in sending}
        for r in rows:
            if r in receiving:
                new_id = f"{key[1]}:{(kinds[r] or 'SERVER').lower()}"
            elif (
                kinds[r] is None
                and services[r] in by_service
                and services[r] not in sender_services
            ):
                new_id = by_service[services[r]]
            else:
                continue
            span_ids[r], parent_ids[r] = new_id, key[1]
        receivers[key] = by_service
    if not receivers:
        return
    for row, (trace_id, parent) in enumerate(zip(trace_ids, parent_ids, strict=True)):
        if parent is None or span_ids[row].startswith(f"{parent}:"):
            continue
        by_service = receivers.get((trace_id, parent))
        if by_service is not None and services[row] in by_service:
            parent_ids[row] = by_service[services[row]]


def _service(endpoint: Any, path: Path, where: str) -> str | None:
    if endpoint is None:
        return None
    if not isinstance(endpoint, dict):
        raise shape_error(path, where, endpoint, 'an endpoint {"serviceName", "ipv4", ...}')
    name = optional_str(endpoint.get("serviceName"), path, f"{where}.serviceName")
    # Zipkin lower-cases service names when it stores them.
    return name.lower() if name else None


def _is_error(tags: Any, path: Path, where: str) -> bool:
    if tags is not None and not isinstance(tags, dict):
        raise shape_error(path, where, tags, "an object of string tags")
    return bool(tags) and "error" in tags


def _id(value: Any, path: Path, where: str) -> str:
    # Zipkin ids are lower-hex and Zipkin lower-cases them when it stores them.
    return string_id(value, path, where).lower()


def _sniff(path: Path, head: bytes) -> bool:
    head = json_head(path, head)
    if head is None:
        return False
    # Zipkin spells "traceId"; Jaeger's "traceID" does not match (the search is exact).
    return bool(_HEAD.match(head)) and b'"traceId"' in head


FORMAT = register(
    TraceFormat(
        name="zipkin",
        read=read,
        sniff=_sniff,
        description="Zipkin v2 JSON list of spans (or list of traces)",
    )
)
