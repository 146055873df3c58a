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
#: ``{"data": ...``, a single trace ``{"traceID": ...`` or a list of traces ``[{"traceID"``.
_HEAD = re.compile(rb'\s*(?:\{\s*"data"\s*:|\{\s*"traceID"\s*:|\[\s*\{\s*"traceID"\s*:)')
_INT64_MAX = 2**63 - 1


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
    if options:
        raise TraceFormatError(
            f"the jaeger reader takes no options, got {sorted(options)}",
            source=path,
            where="options",
            expected="no keyword options",
        )
    traces, prefix = _traces(_load_json(path), path)
    trace_ids: list[str] = []
    span_ids: list[str] = []
    parent_ids: list[str | None] = []
    services: list[str | None] = []
    operations: list[str | None] = []
    starts: list[int | None] = []
    latencies: list[float] = []
    errors: list[bool] = []
    # (trace index, span index) per row; locations are only formatted when asked for.
    positions: list[tuple[int, int]] = []

    for t, trace in enumerate(traces):
        at = f"{prefix}[{t}]" if prefix is not None else ""
        if not isinstance(trace, dict):
            raise _shape(path, at or "top level", trace, "a trace object with 'spans'")
        spans = trace.get("spans")
        if not isinstance(spans, list):
            raise _shape(path, f"{at}.spans".lstrip("."), spans, "a list of spans")
        processes = trace.get("processes") or {}
        if not isinstance(processes, dict):
            raise _shape(path, f"{at}.processes".lstrip("."), processes, "an object of processes")
        default_trace = trace.get("traceID")
        for i, span in enumerate(spans):
            where = f"{at}.spans[{i}]".lstrip(".")
            if not isinstance(span, dict):
                raise _shape(path, where, span, "a span object")
            trace_ids.append(_id(span.get("traceID", default_trace), path, f"{where}.traceID"))
            span_id = _id(span.get("spanID"), path, f"{where}.spanID")
            span_ids.append(span_id)
            parent_ids.append(_parent(span, path, where))
            services.append(_service(span, processes, path, where, span_id))
            operations.append(_text(span.get("operationName"), path, f"{where}.operationName"))
            start = _number(span.get("startTime"), path, f"{where}.startTime")
            starts.append(_start_ns(start, path, f"{where}.startTime"))
            duration = _number(span.get("duration"), path, f"{where}.duration")
            latencies.append(math.nan if duration is None else duration / 1000)
            errors.append(_is_error(span.get("tags"), path, f"{where}.tags"))
            positions.append((t, i))

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

    def locate(row: int) -> str:
        t, i = positions[row]
        return f"{prefix}[{t}].spans[{i}]".lstrip(".") if prefix is not None else f"spans[{i}]"

    return RawSpans(frame=frame, source=str(path), locate=locate)


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
    raise _shape(path, "top level", doc, '{"data": [trace, ...]}, one trace object or a list')


def _parent(span: dict[str, Any], path: Path, where: str) -> str | None:
    """Return the CHILD_OF reference's span id, else the first FOLLOWS_FROM one, else None."""
    refs = span.get("references")
    if refs is None:
        refs = []
    if not isinstance(refs, list):
        raise _shape(path, f"{where}.references", refs, "a list of references")
    follows: str | None = None
    for r, ref in enumerate(refs):
        at = f"{where}.references[{r}]"
        if not isinstance(ref, dict):
            raise _shape(path, at, ref, 'a reference {"refType", "traceID", "spanID"}')
        # CHILD_OF is the protobuf default (0), so encoders may omit it.
        kind = ref.get("refType", "CHILD_OF")
        if kind == "CHILD_OF":
            return _id(ref.get("spanID"), path, f"{at}.spanID")
        if kind == "FOLLOWS_FROM" and follows is None:
            follows = _id(ref.get("spanID"), path, f"{at}.spanID")
    if follows is None and span.get("parentSpanID") not in (None, "", "0"):
        # Older Jaeger JSON carried the parent directly.
        follows = _id(span["parentSpanID"], path, f"{where}.parentSpanID")
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
            raise _shape(
                path, f"{where} (its process {pid})", process, 'a process {"serviceName", ...}'
            )
    return _text(process.get("serviceName"), path, f"{where} (process serviceName)")


def _is_error(tags: Any, path: Path, where: str) -> bool:
    if tags is None:
        return False
    if not isinstance(tags, list):
        raise _shape(path, where, tags, 'a list of tags {"key", "type", "value"}')
    for tag in tags:
        if isinstance(tag, dict) and tag.get("key") == "error":
            value = tag.get("value")
            return value is True or (isinstance(value, str) and value.strip().lower() == "true")
    return False


def _id(value: Any, path: Path, where: str) -> str:
    if isinstance(value, str) and value:
        return value
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
