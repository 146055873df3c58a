"""``otlp``: OpenTelemetry OTLP/JSON trace exports, and backends' responses that wrap them.

The file holds ``{"resourceSpans": [{"resource": {...}, "scopeSpans": [{"spans": [...]}]}]}``
(older exporters write ``instrumentationLibrarySpans`` for ``scopeSpans``), or one such
object per line, as the OpenTelemetry collector's file exporter writes. The query APIs
of trace backends return the same data one level down, and these are read too:

* Jaeger v2, ``/api/v3/traces/<id>``: ``{"result": {"resourceSpans": [...]}}`` (one
  such object per chunk of a streamed response);
* Grafana Tempo, ``/api/traces/<id>``: ``{"batches": [...]}`` (the resource spans), and
  ``/api/v2/traces/<id>``: ``{"trace": {"resourceSpans": [...]}}``.

A span's service is its resource's ``service.name`` attribute; a resource without one
gets the OpenTelemetry specification's default, ``unknown_service`` (or
``unknown_service:<process.executable.name>`` when the resource names its executable),
and its spans are flagged ``unnamed_service``. Ids are hex in any case (lower-cased
here; base64 ids, as Tempo and pre-1.0 exporters write them, are converted to hex); an
empty ``parentSpanId`` marks a root. ``startTimeUnixNano`` / ``endTimeUnixNano`` are
unsigned 64-bit nanoseconds, JSON strings or numbers; latency is their difference, in
exact integer nanoseconds before conversion to ms. A start time beyond what
``datetime64[ns]`` holds (after 2262) is kept as missing and flagged
``start_time_out_of_range``. A span is an error when ``status.code`` is 2
(``STATUS_CODE_ERROR``).

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces("otlp/trace.json")      # doctest: +SKIP

"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bayesperf.errors import TraceFormatError
from bayesperf.io import report as R
from bayesperf.io._json import (
    INT64_MAX,
    OTLP_WRAPPERS,
    SpanColumns,
    iter_objects,
    json_error,
    json_head,
    optional_str,
    parse_json,
    preview,
    read_text,
    reject_options,
    shape_error,
    string_id,
    too_deep,
    wrong_document,
)
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, register

#: An export object, or a backend's response wrapping one.
_HEAD = re.compile(rb'\s*\{\s*"(?:resourceSpans|batches|result|trace)"\s*:')
#: Keys only OTLP has; a response's wrapper key alone is too common a word.
_OTLP_KEYS = (b'"resourceSpans"', b'"scopeSpans"', b'"instrumentationLibrarySpans"')
#: The OpenTelemetry specification's service name for a resource that has none.
UNKNOWN_SERVICE = "unknown_service"
#: Largest OTLP time (fixed64 nanoseconds).
UINT64_MAX = 2**64 - 1
_EXPECTED_DOC = (
    '{"resourceSpans": [...]}, or a backend response wrapping it: Jaeger v2 '
    '{"result": {...}}, Tempo {"batches": [...]} or {"trace": {...}}'
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_SCOPE_KEYS = ("scopeSpans", "instrumentationLibrarySpans")
_ERROR_CODES = (2, "2", "STATUS_CODE_ERROR")
_NS_PER_MS = 1_000_000


def read(path: Path, **options: object) -> RawSpans:
    """Read one OTLP/JSON file (one export object, or one per line).

    Parameters
    ----------
    path : Path
        An OTLP/JSON file (``.gz`` is decompressed).
    **options
        None are accepted; any given is an error.

    Returns
    -------
    RawSpans
        One row per span, in canonical columns; ``locate(i)`` gives the span's JSON
        path (``"line 3: resourceSpans[0].scopeSpans[1].spans[7]"``).

    Raises
    ------
    TraceFormatError
        Malformed or truncated JSON, an unexpected shape, a span without ``traceId`` or
        ``spanId``, or a time that is not an integer.

    """
    reject_options("otlp", options, path)
    columns = SpanColumns()
    locations: list[str] = []
    unnamed: list[bool] = []
    late_start: list[bool] = []

    for line_prefix, doc in _documents(path):
        list_at, resource_spans_list = _resource_spans(doc, path, line_prefix)
        for at, resource_spans in iter_objects(
            resource_spans_list,
            path,
            list_at,
            expected_list="a list of resource spans",
            expected_item='an object {"resource", "scopeSpans"}',
        ):
            named = _service_name(resource_spans.get("resource"), path, f"{at}.resource")
            service = named or _unknown_service(resource_spans.get("resource"))
            key = next((k for k in _SCOPE_KEYS if k in resource_spans), _SCOPE_KEYS[0])
            for scope_at, scope in iter_objects(
                resource_spans.get(key) or [],
                path,
                f"{at}.{key}",
                expected_list="a list of scope spans",
                expected_item='an object {"scope", "spans"}',
            ):
                for where, span in iter_objects(
                    scope.get("spans") or [],
                    path,
                    f"{scope_at}.spans",
                    expected_list="a list of spans",
                    expected_item="a span object",
                ):
                    trace_id = _hex_id(span.get("traceId"), 16, path, f"{where}.traceId")
                    span_id = _hex_id(span.get("spanId"), 8, path, f"{where}.spanId")
                    parent = span.get("parentSpanId")
                    parent_id = (
                        None
                        if parent in (None, "")
                        else _hex_id(parent, 8, path, f"{where}.parentSpanId")
                    )
                    operation = optional_str(span.get("name"), path, f"{where}.name")
                    start = _nanos(
                        span.get("startTimeUnixNano"), path, f"{where}.startTimeUnixNano"
                    )
                    end = _nanos(span.get("endTimeUnixNano"), path, f"{where}.endTimeUnixNano")
                    # Subtract in integers: float64 ns since 1970 would lose ~100 ns.
                    missing = start is None or end is None
                    columns.add(
                        trace_id=trace_id,
                        span_id=span_id,
                        parent_id=parent_id,
                        service=service,
                        operation=operation,
                        # Beyond int64 ns (after 2262) no datetime holds it.
                        start=start if start is None or start <= INT64_MAX else None,
                        latency=math.nan if missing else (end - start) / _NS_PER_MS,
                        error=_is_error(span.get("status"), path, f"{where}.status"),
                    )
                    locations.append(where)
                    unnamed.append(named is None)
                    late_start.append(start is not None and start > INT64_MAX)

    flagged = {R.UNNAMED_SERVICE: unnamed, R.START_TIME_OUT_OF_RANGE: late_start}
    return RawSpans(
        frame=columns.frame(),
        source=str(path),
        locate=locations.__getitem__,
        flagged={k: np.asarray(v, dtype=bool) for k, v in flagged.items() if any(v)},
    )


def _resource_spans(doc: Any, path: Path, prefix: str) -> tuple[str, Any]:
    """The JSON path and value of a document's resource spans, unwrapping API responses."""
    if isinstance(doc, dict):
        if "resourceSpans" in doc:
            return f"{prefix}resourceSpans", doc["resourceSpans"]
        if "batches" in doc:  # Tempo /api/traces: the resource spans themselves
            return f"{prefix}batches", doc["batches"]
        for key in OTLP_WRAPPERS:
            inner = doc.get(key)
            if isinstance(inner, dict) and ("resourceSpans" in inner or not inner):
                # An empty trace is {} (proto3 JSON omits empty lists).
                return f"{prefix}{key}.resourceSpans", inner.get("resourceSpans", [])
        error = doc.get("error")
        if isinstance(error, dict) and len(doc) == 1:
            message = error.get("message", error)
            raise TraceFormatError(
                f"the file is an error response from the query API: {preview(message)}",
                source=path,
                where=f"{prefix}error",
                expected="a trace (check the trace id and the time range of the query)",
            )
    where = prefix.removesuffix(": ") or "top level"
    raise wrong_document(path, where, doc, _EXPECTED_DOC)


def _documents(path: Path) -> list[tuple[str, Any]]:
    """``(location prefix, export object)`` pairs: the whole file, or one per JSON line."""
    content = read_text(path)
    # Not parse_json: "Extra data" after the first value means JSON lines, not an error.
    try:
        return [("", json.loads(content))]
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise json_error(path, content, exc) from None
    except RecursionError:
        raise too_deep(path) from None
    # More than one JSON value: JSON lines, as the collector's file exporter writes.
    return [
        (f"line {n}: ", parse_json(path, line, line=n))
        for n, line in enumerate(content.splitlines(), start=1)
        if line.strip()
    ]


def _service_name(resource: Any, path: Path, where: str) -> str | None:
    """The resource's ``service.name``; None when it has none (or an empty one)."""
    if resource is None:
        return None
    if not isinstance(resource, dict):
        raise shape_error(path, where, resource, 'an object {"attributes": [...]}')
    attributes = resource.get("attributes") or []
    if not isinstance(attributes, list):
        raise shape_error(path, f"{where}.attributes", attributes, "a list of key/value attributes")
    name = _string_attribute(attributes, "service.name")
    return name or None


def _unknown_service(resource: Any) -> str:
    """The specification's name for a service that has none: ``unknown_service[:exe]``."""
    attributes = resource.get("attributes") if isinstance(resource, dict) else None
    executable = _string_attribute(attributes, "process.executable.name")
    return f"{UNKNOWN_SERVICE}:{executable}" if executable else UNKNOWN_SERVICE


def _string_attribute(attributes: Any, key: str) -> str | None:
    """The string value of attribute ``key`` in an OTLP attribute list, if any."""
    for attribute in attributes if isinstance(attributes, list) else ():
        if isinstance(attribute, dict) and attribute.get("key") == key:
            value = attribute.get("value")
            name = value.get("stringValue") if isinstance(value, dict) else None
            return name if isinstance(name, str) else None
    return None


def _hex_id(value: Any, size: int, path: Path, where: str) -> str:
    """Return a hex id, lower-cased; base64 ids (old exporters) of ``size`` bytes become hex."""
    value = string_id(value, path, where)
    if _HEX.fullmatch(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    # Ids that are neither hex nor base64 are kept as given, lower-cased.
    return raw.hex() if len(raw) == size else value.lower()


# Not _json.number: OTLP times are unsigned 64-bit ns (no fractions); 0 means "not set".
def _nanos(value: Any, path: Path, where: str) -> int | None:
    """Integer nanoseconds (0 to 2**64 - 1) from a JSON number or string; None if absent or 0."""
    if value is None or value == "":
        return None
    ns: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        ns = value
    elif isinstance(value, float) and value.is_integer():
        ns = int(value)
    elif isinstance(value, str):
        try:
            ns = int(value)
        except ValueError:
            ns = None
    if ns is None or not 0 <= ns <= UINT64_MAX:
        raise TraceFormatError(
            f"{preview(value)} is not a time",
            source=path,
            where=where,
            expected="integer Unix nanoseconds (0 to 2**64 - 1)",
        )
    # Protobuf's default 0 means "not set" (proto3 JSON omits it; some encoders write it).
    return ns or None


def _is_error(status: Any, path: Path, where: str) -> bool:
    if status is None:
        return False
    if not isinstance(status, dict):
        raise shape_error(path, where, status, 'an object {"code", "message"}')
    return status.get("code") in _ERROR_CODES


def _sniff(path: Path, head: bytes) -> bool:
    head = json_head(path, head)
    return head is not None and bool(_HEAD.match(head)) and any(k in head for k in _OTLP_KEYS)


FORMAT = register(
    TraceFormat(
        name="otlp",
        read=read,
        sniff=_sniff,
        description='OTLP/JSON {"resourceSpans": [...]} (one per line too), and Jaeger v2 '
        "/api/v3 and Tempo responses wrapping it",
    )
)
