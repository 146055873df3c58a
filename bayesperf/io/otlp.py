"""``otlp``: OpenTelemetry OTLP/JSON trace exports.

The file holds ``{"resourceSpans": [{"resource": {...}, "scopeSpans": [{"spans": [...]}]}]}``
(older exporters write ``instrumentationLibrarySpans`` for ``scopeSpans``), or one such
object per line, as the OpenTelemetry collector's file exporter writes. A span's service
is its resource's ``service.name`` attribute. Ids are hex in any case (lower-cased here;
base64 ids from pre-1.0 exporters are converted to hex); an empty ``parentSpanId`` marks
a root. ``startTimeUnixNano`` / ``endTimeUnixNano`` may be JSON strings or numbers;
latency is their difference, in exact integer nanoseconds before conversion to ms. A
span is an error when ``status.code`` is 2 (``STATUS_CODE_ERROR``).

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

from bayesperf.errors import TraceFormatError
from bayesperf.io._json import (
    INT64_MAX,
    SpanColumns,
    iter_objects,
    json_error,
    json_head,
    optional_str,
    parse_json,
    read_text,
    reject_options,
    shape_error,
    string_id,
    too_deep,
)
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, register

_HEAD = re.compile(rb'\s*\{\s*"resourceSpans"\s*:')
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

    for line_prefix, doc in _documents(path):
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            where = line_prefix.removesuffix(": ") or "top level"
            raise shape_error(path, where, doc, '{"resourceSpans": [...]}')
        for at, resource_spans in iter_objects(
            doc["resourceSpans"],
            path,
            f"{line_prefix}resourceSpans",
            expected_list="a list of resource spans",
            expected_item='an object {"resource", "scopeSpans"}',
        ):
            service = _service_name(resource_spans.get("resource"), path, f"{at}.resource")
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
                        start=start,
                        latency=math.nan if missing else (end - start) / _NS_PER_MS,
                        error=_is_error(span.get("status"), path, f"{where}.status"),
                    )
                    locations.append(where)

    return RawSpans(frame=columns.frame(), source=str(path), locate=locations.__getitem__)


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
    if resource is None:
        return None
    if not isinstance(resource, dict):
        raise shape_error(path, where, resource, 'an object {"attributes": [...]}')
    attributes = resource.get("attributes") or []
    if not isinstance(attributes, list):
        raise shape_error(path, f"{where}.attributes", attributes, "a list of key/value attributes")
    for attribute in attributes:
        if isinstance(attribute, dict) and attribute.get("key") == "service.name":
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


# Not _json.number: OTLP times are integer ns >= 0 (no fractions) and 0 means "not set".
def _nanos(value: Any, path: Path, where: str) -> int | None:
    """Integer nanoseconds from a JSON number or string; None when absent or 0."""
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
    if ns is None or not 0 <= ns <= INT64_MAX:
        raise TraceFormatError(
            f"{value!r} is not a time",
            source=path,
            where=where,
            expected="integer Unix nanoseconds",
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
    return head is not None and bool(_HEAD.match(head))


FORMAT = register(
    TraceFormat(
        name="otlp",
        read=read,
        sniff=_sniff,
        description='OTLP/JSON {"resourceSpans": [...]}, or one such object per line',
    )
)
