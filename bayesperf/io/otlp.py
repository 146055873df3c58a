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
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, open_binary, register, suffixes

_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_HEAD = re.compile(rb'\s*\{\s*"resourceSpans"\s*:')
_HEX = re.compile(r"[0-9a-fA-F]+")
_SCOPE_KEYS = ("scopeSpans", "instrumentationLibrarySpans")
_ERROR_CODES = (2, "2", "STATUS_CODE_ERROR")
_INT64_MAX = 2**63 - 1
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
    if options:
        raise TraceFormatError(
            f"the otlp reader takes no options, got {sorted(options)}",
            source=path,
            where="options",
            expected="no keyword options",
        )
    trace_ids: list[str] = []
    span_ids: list[str] = []
    parent_ids: list[str | None] = []
    services: list[str | None] = []
    operations: list[str | None] = []
    starts: list[int | None] = []
    latencies: list[float] = []
    errors: list[bool] = []
    locations: list[str] = []

    for line_prefix, doc in _documents(path):
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            where = line_prefix.removesuffix(": ") or "top level"
            raise _shape(path, where, doc, '{"resourceSpans": [...]}')
        for r, resource_spans in enumerate(doc["resourceSpans"]):
            at = f"{line_prefix}resourceSpans[{r}]"
            if not isinstance(resource_spans, dict):
                raise _shape(path, at, resource_spans, 'an object {"resource", "scopeSpans"}')
            service = _service_name(resource_spans.get("resource"), path, f"{at}.resource")
            key = next((k for k in _SCOPE_KEYS if k in resource_spans), _SCOPE_KEYS[0])
            scopes = resource_spans.get(key) or []
            if not isinstance(scopes, list):
                raise _shape(path, f"{at}.{key}", scopes, "a list of scope spans")
            for s, scope in enumerate(scopes):
                scope_at = f"{at}.{key}[{s}]"
                if not isinstance(scope, dict):
                    raise _shape(path, scope_at, scope, 'an object {"scope", "spans"}')
                spans = scope.get("spans") or []
                if not isinstance(spans, list):
                    raise _shape(path, f"{scope_at}.spans", spans, "a list of spans")
                for i, span in enumerate(spans):
                    where = f"{scope_at}.spans[{i}]"
                    if not isinstance(span, dict):
                        raise _shape(path, where, span, "a span object")
                    trace_ids.append(_hex_id(span.get("traceId"), 16, path, f"{where}.traceId"))
                    span_ids.append(_hex_id(span.get("spanId"), 8, path, f"{where}.spanId"))
                    parent = span.get("parentSpanId")
                    parent_ids.append(
                        None
                        if parent in (None, "")
                        else _hex_id(parent, 8, path, f"{where}.parentSpanId")
                    )
                    services.append(service)
                    operations.append(_text(span.get("name"), path, f"{where}.name"))
                    start = _nanos(
                        span.get("startTimeUnixNano"), path, f"{where}.startTimeUnixNano"
                    )
                    end = _nanos(span.get("endTimeUnixNano"), path, f"{where}.endTimeUnixNano")
                    starts.append(start)
                    # Subtract in integers: float64 ns since 1970 would lose ~100 ns.
                    missing = start is None or end is None
                    latencies.append(math.nan if missing else (end - start) / _NS_PER_MS)
                    errors.append(_is_error(span.get("status"), path, f"{where}.status"))
                    locations.append(where)

    frame = pd.DataFrame(
        {
            S.TRACE_ID: pd.array(trace_ids, dtype="str"),
            S.SPAN_ID: pd.array(span_ids, dtype="str"),
            S.PARENT_ID: pd.array(parent_ids, dtype="str"),
            S.SERVICE: pd.array(services, dtype="str"),
            S.OPERATION: pd.array(operations, dtype="str"),
            S.START_TIME: pd.array(starts, dtype="Int64"),
            S.LATENCY: np.asarray(latencies, dtype="float64"),
            S.ERROR: np.asarray(errors, dtype=bool),
        }
    )
    return RawSpans(frame=frame, source=str(path), locate=locations.__getitem__)


def _documents(path: Path) -> list[tuple[str, Any]]:
    """``(location prefix, export object)`` pairs: the whole file, or one per JSON line."""
    text = _read_text(path)
    try:
        return [("", json.loads(text))]
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise _json_error(path, text, exc, "") from None
    except RecursionError:
        raise TraceFormatError("JSON is nested too deeply", source=path) from None
    # More than one JSON value: JSON lines, as the collector's file exporter writes.
    docs = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            docs.append((f"line {n}: ", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise _json_error(path, line, exc, f"line {n} ") from None
        except RecursionError:
            raise TraceFormatError(
                "JSON is nested too deeply", source=path, where=f"line {n}"
            ) from None
    return docs


def _service_name(resource: Any, path: Path, where: str) -> str | None:
    if resource is None:
        return None
    if not isinstance(resource, dict):
        raise _shape(path, where, resource, 'an object {"attributes": [...]}')
    attributes = resource.get("attributes") or []
    if not isinstance(attributes, list):
        raise _shape(path, f"{where}.attributes", attributes, "a list of key/value attributes")
    for attribute in attributes:
        if isinstance(attribute, dict) and attribute.get("key") == "service.name":
            value = attribute.get("value")
            name = value.get("stringValue") if isinstance(value, dict) else None
            return name if isinstance(name, str) else None
    return None


def _hex_id(value: Any, size: int, path: Path, where: str) -> str:
    """Return a hex id, lower-cased; base64 ids (old exporters) of ``size`` bytes become hex."""
    if not isinstance(value, str) or not value:
        problem = "missing id" if value is None or value == "" else f"id {value!r} is not a string"
        raise TraceFormatError(problem, source=path, where=where, expected="a hex id string")
    if _HEX.fullmatch(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    # Ids that are neither hex nor base64 are kept as given, lower-cased.
    return raw.hex() if len(raw) == size else value.lower()


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
    if ns is None or not 0 <= ns <= _INT64_MAX:
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
        raise _shape(path, where, status, 'an object {"code", "message"}')
    return status.get("code") in _ERROR_CODES


def _text(value: Any, path: Path, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _shape(path, where, value, "a string")


def _shape(path: Path, where: str, value: Any, expected: str) -> TraceFormatError:
    return TraceFormatError(
        f"found {type(value).__name__} {_preview(value)}",
        source=path,
        where=where,
        expected=expected,
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_text(path: Path) -> str:
    try:
        with open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceFormatError(f"cannot read the file: {exc}", source=path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(
            f"not UTF-8 text ({exc.reason})",
            source=path,
            where=f"byte {exc.start}",
            expected="JSON",
        ) from None
    if not text.strip():
        raise TraceFormatError("file is empty", source=path, where="file start", expected="JSON")
    return text


def _json_error(path: Path, text: str, exc: json.JSONDecodeError, line: str) -> TraceFormatError:
    # The text ends inside a value (an unterminated string always runs to the end).
    truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
    problem = "JSON ends early (truncated file?)" if truncated else f"malformed JSON: {exc.msg}"
    where = f"{line}column {exc.colno}" if line else f"line {exc.lineno} column {exc.colno}"
    return TraceFormatError(problem, source=path, where=where, expected="JSON")


def _sniff(path: Path, head: bytes) -> bool:
    if suffixes(path) not in _JSON_SUFFIXES:
        return False
    return bool(_HEAD.match(head.removeprefix(b"\xef\xbb\xbf")))


FORMAT = register(
    TraceFormat(
        name="otlp",
        read=read,
        sniff=_sniff,
        description='OTLP/JSON {"resourceSpans": [...]}, or one such object per line',
    )
)
