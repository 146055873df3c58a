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
#: A list of span objects, or a list of lists of them.
_HEAD = re.compile(rb"\s*\[\s*(?:\[\s*)?\{")
_SENDERS = frozenset({"CLIENT", "PRODUCER"})
_RECEIVERS = frozenset({"SERVER", "CONSUMER"})
_INT64_MAX = 2**63 - 1


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
    if options:
        raise TraceFormatError(
            f"the zipkin reader takes no options, got {sorted(options)}",
            source=path,
            where="options",
            expected="no keyword options",
        )
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise _shape(path, "top level", doc, "a list of spans or a list of traces")
    records = _records(doc, path)

    trace_ids: list[str] = []
    span_ids: list[str] = []
    parent_ids: list[str | None] = []
    kinds: list[str | None] = []
    shared: list[bool] = []
    services: list[str | None] = []
    operations: list[str | None] = []
    starts: list[int | None] = []
    latencies: list[float] = []
    errors: list[bool] = []
    for where, span in records:
        if not isinstance(span, dict):
            raise _shape(path, where, span, "a span object")
        if "binaryAnnotations" in span:
            raise TraceFormatError(
                "this is Zipkin v1 JSON (it has binaryAnnotations)",
                source=path,
                where=where,
                expected="Zipkin v2 JSON (/api/v2 or a v2 span reporter)",
            )
        trace_ids.append(_id(span.get("traceId"), path, f"{where}.traceId"))
        span_ids.append(_id(span.get("id"), path, f"{where}.id"))
        parent = span.get("parentId")
        parent_ids.append(None if parent in (None, "") else _id(parent, path, f"{where}.parentId"))
        kind = _text(span.get("kind"), path, f"{where}.kind")
        kinds.append(kind.upper() if kind else None)
        shared.append(span.get("shared") is True)
        services.append(_service(span.get("localEndpoint"), path, f"{where}.localEndpoint"))
        operations.append(_text(span.get("name"), path, f"{where}.name"))
        start = _number(span.get("timestamp"), path, f"{where}.timestamp")
        starts.append(_start_ns(start, path, f"{where}.timestamp"))
        duration = _number(span.get("duration"), path, f"{where}.duration")
        latencies.append(math.nan if duration is None else duration / 1000)
        tags = span.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise _shape(path, f"{where}.tags", tags, "an object of string tags")
        errors.append(bool(tags) and "error" in tags)

    _split_shared(trace_ids, span_ids, parent_ids, kinds, shared, services)
    frame = pd.DataFrame(
        {
            S.TRACE_ID: pd.array(trace_ids, dtype="str"),
            S.SPAN_ID: pd.array(span_ids, dtype="str"),
            S.PARENT_ID: pd.array(parent_ids, dtype="str"),
            S.SERVICE: pd.array(services, dtype="str"),
            S.OPERATION: pd.array(operations, dtype="str"),
            # Int64 keeps nanoseconds exact where float64 would round them.
            S.START_TIME: pd.array(starts, dtype="Int64"),
            S.LATENCY: np.asarray(latencies, dtype="float64"),
            S.ERROR: np.asarray(errors, dtype=bool),
        }
    )
    return RawSpans(frame=frame, source=str(path), locate=lambda row: records[row][0])


def _records(doc: list[Any], path: Path) -> list[tuple[str, Any]]:
    """Return ``(JSON path, span)`` for every span record, flattening a list of traces."""
    if not doc or not isinstance(doc[0], list):
        return [(f"[{i}]", span) for i, span in enumerate(doc)]
    # A list of traces, as /api/v2/traces returns: the first item decides.
    records = []
    for t, trace in enumerate(doc):
        if not isinstance(trace, list):
            raise _shape(path, f"[{t}]", trace, "a list of spans (a trace), like item [0]")
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
        raise _shape(path, where, endpoint, 'an endpoint {"serviceName", "ipv4", ...}')
    name = _text(endpoint.get("serviceName"), path, f"{where}.serviceName")
    # Zipkin lower-cases service names when it stores them.
    return name.lower() if name else None


def _id(value: Any, path: Path, where: str) -> str:
    if isinstance(value, str) and value:
        return value.lower()
    problem = "missing id" if value is None or value == "" else f"id {value!r} is not a string"
    raise TraceFormatError(problem, source=path, where=where, expected="a hex id string")


def _text(value: Any, path: Path, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _shape(path, where, value, "a string")


def _number(value: Any, path: Path, where: str) -> int | float | None:
    """Return a JSON number (or numeric string) as int or float; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                pass
    # Bounded ints: an absurd one would overflow float division later.
    if isinstance(value, float) or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _INT64_MAX
    ):
        return value
    raise TraceFormatError(
        f"{_preview(value)} is not a number",
        source=path,
        where=where,
        expected="microseconds as a number",
    )


def _start_ns(micros: int | float | None, path: Path, where: str) -> int | None:
    if micros is None:
        return None
    if isinstance(micros, float):
        if not math.isfinite(micros):
            raise TraceFormatError(
                f"{micros!r} is not a time", source=path, where=where, expected="Unix microseconds"
            )
        ns = round(micros * 1000)
    else:
        ns = micros * 1000
    if not -_INT64_MAX <= ns <= _INT64_MAX:
        raise TraceFormatError(
            f"{micros!r} is out of range", source=path, where=where, expected="Unix microseconds"
        )
    return ns


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


def _load_json(path: Path) -> Any:
    """Parse a (possibly gzip-compressed) JSON file; every failure is a TraceFormatError."""
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
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The text ends inside a value (an unterminated string always runs to the end).
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        problem = "JSON ends early (truncated file?)" if truncated else f"malformed JSON: {exc.msg}"
        raise TraceFormatError(
            problem, source=path, where=f"line {exc.lineno} column {exc.colno}", expected="JSON"
        ) from None
    except RecursionError:
        raise TraceFormatError("JSON is nested too deeply", source=path) from None


def _sniff(path: Path, head: bytes) -> bool:
    if suffixes(path) not in _JSON_SUFFIXES:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf")
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
