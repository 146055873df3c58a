"""``zipkin``: Zipkin JSON, a list of spans (or a list of traces, as ``/api/v2/traces``).

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

A span whose local endpoint names no service (only an IP address, or no endpoint at
all) is kept as service ``unknown``, the name the Zipkin UI shows for it, and flagged
``unnamed_service``.

Zipkin v1 JSON (``/api/v1``; endpoints inside ``annotations`` and ``binaryAnnotations``)
is read too, converted as Zipkin converts it: the ``cs``/``cr`` annotations make a
CLIENT span, ``sr``/``ss`` a SERVER span (a v1 span holding both is two span records,
sharing the id), each with the annotations' endpoint as local endpoint; a span with
neither is a local span (endpoint from its ``lc`` binary annotation or any annotation).
An ``error`` binary annotation or annotation marks an error.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("zipkin/skew.json")     # doctest: +SKIP

"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bayesperf.io import report as R
from bayesperf.io._json import (
    SpanColumns,
    iter_objects,
    json_encoding,
    json_head,
    load_json,
    micros_latency_ms,
    micros_start_ns,
    number,
    optional_str,
    reject_options,
    shape_error,
    string_id,
    wrong_document,
)
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, register

#: A list of span objects, or a list of lists of them.
_HEAD = re.compile(rb"\s*\[\s*(?:\[\s*)?\{")
_SENDERS = frozenset({"CLIENT", "PRODUCER"})
#: The Zipkin UI's name for a span whose local endpoint has no service name.
UNKNOWN_SERVICE = "unknown"
#: Fields only Zipkin v2 spans have.
_V2_ONLY = ("localEndpoint", "remoteEndpoint", "kind", "tags", "shared")
#: Zipkin v1 core annotations that make CLIENT and SERVER spans.
_V1_CORE = frozenset({"cs", "cr", "sr", "ss"})
_RECEIVERS = frozenset({"SERVER", "CONSUMER"})


def read(path: Path, **options: object) -> RawSpans:
    """Read one Zipkin JSON file.

    Parameters
    ----------
    path : Path
        A JSON list of Zipkin v2 (or v1) spans, or a list of such lists (``.gz`` is
        decompressed).
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
        ``id``, or a non-numeric time.

    """
    reject_options("zipkin", options, path)
    doc = load_json(path)
    if not isinstance(doc, list):
        raise wrong_document(path, "top level", doc, "a list of spans or a list of traces")
    records = _records(doc, path)

    columns = SpanColumns()
    kinds: list[str | None] = []
    shared: list[bool] = []
    unnamed: list[bool] = []
    locations: list[str] = []
    for where, record in records:
        if not isinstance(record, dict):
            raise shape_error(path, where, record, "a span object")
        if "id" not in record and json_encoding(record) is not None:
            raise wrong_document(path, where, record, "Zipkin spans with traceId, id")
        for span in _from_v1(record, path, where) if _is_v1(record) else (record,):
            trace_id = _id(span.get("traceId"), path, f"{where}.traceId")
            span_id = _id(span.get("id"), path, f"{where}.id")
            parent = span.get("parentId")
            parent_id = None if parent in (None, "") else _id(parent, path, f"{where}.parentId")
            kind = optional_str(span.get("kind"), path, f"{where}.kind")
            kinds.append(kind.upper() if kind else None)
            shared.append(span.get("shared") is True)
            service = _service(span.get("localEndpoint"), path, f"{where}.localEndpoint")
            columns.add(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=parent_id,
                service=service or UNKNOWN_SERVICE,
                operation=optional_str(span.get("name"), path, f"{where}.name"),
                start=micros_start_ns(span.get("timestamp"), path, f"{where}.timestamp"),
                latency=micros_latency_ms(span.get("duration"), path, f"{where}.duration"),
                error=_is_error(span.get("tags"), path, f"{where}.tags"),
            )
            unnamed.append(service is None)
            locations.append(where)

    _split_shared(
        columns.trace_ids, columns.span_ids, columns.parent_ids, kinds, shared, columns.services
    )
    flagged = {R.UNNAMED_SERVICE: np.asarray(unnamed, dtype=bool)} if any(unnamed) else {}
    return RawSpans(
        frame=columns.frame(), source=str(path), locate=locations.__getitem__, flagged=flagged
    )


def _is_v1(span: dict[str, Any]) -> bool:
    """Whether a span record is Zipkin v1: endpoints in its annotations, no v2 fields."""
    if any(key in span for key in _V2_ONLY):
        return False
    annotations = span.get("annotations")
    return "binaryAnnotations" in span or (
        isinstance(annotations, list)
        and any(isinstance(a, dict) and "endpoint" in a for a in annotations)
    )


def _from_v1(span: dict[str, Any], path: Path, where: str) -> list[dict[str, Any]]:
    """Zipkin v1 span -> v2 span records (CLIENT and/or SERVER halves, or one local span).

    Follows Zipkin's own v1 conversion: the span's ``timestamp``/``duration`` belong to
    its first half (the client's, when both are present); otherwise the core
    annotations give them (``cs``..``cr``, ``sr``..``ss``).
    """
    core: dict[str, tuple[Any, Any]] = {}  # annotation value -> (timestamp, endpoint)
    error = False
    annotations = _v1_list(span, "annotations", path, where)
    for i, annotation in enumerate(annotations):
        value = annotation.get("value")
        if isinstance(value, str) and value in _V1_CORE and value not in core:
            time = number(
                annotation.get("timestamp"),
                path,
                f"{where}.annotations[{i}].timestamp",
                expected="microseconds as a number",
            )
            core[value] = (time, annotation.get("endpoint"))
        error |= value == "error"
    local_component = None
    for binary in _v1_list(span, "binaryAnnotations", path, where):
        error |= binary.get("key") == "error"
        if binary.get("key") == "lc":
            local_component = binary.get("endpoint")
    base = {k: span.get(k) for k in ("traceId", "id", "parentId", "name")}
    base["tags"] = {"error": ""} if error else {}
    halves = [
        (kind, first, last)
        for kind, first, last in (("CLIENT", "cs", "cr"), ("SERVER", "sr", "ss"))
        if first in core or last in core
    ]
    parts = []
    for n, (kind, first, last) in enumerate(halves):
        start, end = core.get(first, (None, None))[0], core.get(last, (None, None))[0]
        endpoint = core.get(first, core.get(last))[1]
        timestamp, duration = start, None if start is None or end is None else end - start
        if n == 0:  # the span's own timing is its first half's
            timestamp = span.get("timestamp", timestamp)
            duration = span.get("duration", duration)
        part = {**base, "kind": kind, "localEndpoint": endpoint, "timestamp": timestamp}
        parts.append({**part, "duration": duration, "shared": n > 0})
    if not parts:  # a local span
        endpoints = [a.get("endpoint") for a in annotations if a.get("endpoint") is not None]
        endpoint = local_component or (endpoints[0] if endpoints else None)
        timing = {"timestamp": span.get("timestamp"), "duration": span.get("duration")}
        parts.append({**base, **timing, "localEndpoint": endpoint})
    return parts


def _v1_list(span: dict[str, Any], key: str, path: Path, where: str) -> list[dict[str, Any]]:
    """A v1 span's (binary) annotations, checked to be a list of objects."""
    items = span.get(key)
    if items is None:
        return []
    return [
        item
        for _, item in iter_objects(
            items,
            path,
            f"{where}.{key}",
            expected_list=f"a list of {key}",
            expected_item='an object {"value", "timestamp", "endpoint"}',
        )
    ]


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
        description="Zipkin v2 (or v1) JSON list of spans (or list of traces)",
    )
)
