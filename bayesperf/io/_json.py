"""Helpers shared by the JSON trace readers (:mod:`~bayesperf.io.jaeger`, ``zipkin``, ``otlp``).

Reading the file with clear errors (gzip, UTF-8, empty, truncated or malformed JSON,
nesting too deep), checking that a JSON value has the type a reader expects, validating
ids, strings and numbers, converting microsecond times, and collecting the parsed spans
into the canonical frame. Every failure is a :class:`~bayesperf.errors.TraceFormatError`
that names the file, the JSON path and what was expected.

Examples
--------
>>> preview("x" * 100)
"'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
>>> str(shape_error("t.json", "data[0]", 7, "a trace object"))
't.json: data[0]: found int 7 (expected a trace object)'

"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io.registry import open_binary, suffixes

#: File suffixes (before any ``.gz``) the JSON readers' sniffers accept.
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
#: Largest int64; times beyond it (in ns) cannot be stored, ints beyond it are rejected.
INT64_MAX = 2**63 - 1

_Source = str | os.PathLike[str]


@dataclass
class SpanColumns:
    """Per-span values a JSON reader collects, one list per canonical column.

    Attributes
    ----------
    trace_ids, span_ids : list of str
        Ids, as the reader normalised them.
    parent_ids, services, operations : list of str or None
        None where the format has no value (a root span, an unnamed service).
    starts : list of int or None
        Start times in Unix nanoseconds.
    latencies : list of float
        Durations in ms; NaN where missing.
    errors : list of bool
        Whether each span is an error.

    Examples
    --------
    >>> columns = SpanColumns()
    >>> columns.add(trace_id="t1", span_id="a", parent_id=None, service="front",
    ...             operation="GET /", start=1_600_000_000_000_000_000, latency=1.5,
    ...             error=False)
    >>> columns.frame().dtypes[["start_time", "latency", "error"]].tolist()
    [Int64Dtype(), dtype('float64'), dtype('bool')]

    """

    trace_ids: list[str] = field(default_factory=list)
    span_ids: list[str] = field(default_factory=list)
    parent_ids: list[str | None] = field(default_factory=list)
    services: list[str | None] = field(default_factory=list)
    operations: list[str | None] = field(default_factory=list)
    starts: list[int | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[bool] = field(default_factory=list)

    def add(
        self,
        *,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        service: str | None,
        operation: str | None,
        start: int | None,
        latency: float,
        error: bool,
    ) -> None:
        """Append one span's values (keyword-only, so none lands in the wrong column).

        Parameters
        ----------
        trace_id, span_id : str
            The span's ids.
        parent_id, service, operation : str or None
            Its parent span id (None for a root), service and operation name.
        start : int or None
            Start time in Unix nanoseconds.
        latency : float
            Duration in ms (NaN when missing).
        error : bool
            Whether the span is an error.

        """
        self.trace_ids.append(trace_id)
        self.span_ids.append(span_id)
        self.parent_ids.append(parent_id)
        self.services.append(service)
        self.operations.append(operation)
        self.starts.append(start)
        self.latencies.append(latency)
        self.errors.append(error)

    def frame(self) -> pd.DataFrame:
        """Return the canonical span frame (string ids, ``Int64`` ns starts, float ms).

        Returns
        -------
        pandas.DataFrame
            One row per collected span, for :class:`~bayesperf.io._table.RawSpans`.

        """
        return pd.DataFrame(
            {
                S.TRACE_ID: pd.array(self.trace_ids, dtype="str"),
                S.SPAN_ID: pd.array(self.span_ids, dtype="str"),
                S.PARENT_ID: pd.array(self.parent_ids, dtype="str"),
                S.SERVICE: pd.array(self.services, dtype="str"),
                S.OPERATION: pd.array(self.operations, dtype="str"),
                # Int64 keeps nanoseconds exact where float64 would round them.
                S.START_TIME: pd.array(self.starts, dtype="Int64"),
                S.LATENCY: np.asarray(self.latencies, dtype="float64"),
                S.ERROR: np.asarray(self.errors, dtype=bool),
            }
        )


def reject_options(reader: str, options: dict[str, object], path: _Source) -> None:
    """Raise if a reader that takes no options was given some.

    Parameters
    ----------
    reader : str
        The format's name, for the message.
    options : dict
        The keyword options the reader received.
    path : str or path
        The file being read.

    Raises
    ------
    TraceFormatError
        When ``options`` is not empty.

    Examples
    --------
    >>> reject_options("jaeger", {}, "t.json")
    >>> reject_options("jaeger", {"sep": ";"}, "t.json")
    Traceback (most recent call last):
    ...
    bayesperf.errors.TraceFormatError: t.json: options: the jaeger reader takes no options, \
got ['sep'] (expected no keyword options)

    """
    if options:
        raise TraceFormatError(
            f"the {reader} reader takes no options, got {sorted(options)}",
            source=path,
            where="options",
            expected="no keyword options",
        )


def json_head(path: Path, head: bytes) -> bytes | None:
    r"""Return a file's first bytes without a UTF-8 BOM, or None if it is not named as JSON.

    Parameters
    ----------
    path : Path
        The file (its suffix, before any ``.gz``, must be one of :data:`JSON_SUFFIXES`).
    head : bytes
        The file's first bytes, decompressed.

    Returns
    -------
    bytes or None
        What a sniffer should match against, or None when the file is not JSON.

    Examples
    --------
    >>> json_head(Path("t.json.gz"), b'\xef\xbb\xbf{"data": []}')
    b'{"data": []}'
    >>> json_head(Path("t.csv"), b"{}") is None
    True

    """
    if suffixes(path) not in JSON_SUFFIXES:
        return None
    return head.removeprefix(b"\xef\xbb\xbf")


def read_text(path: Path) -> str:
    """Return a (possibly gzip-compressed) file's text, decoded as UTF-8 (BOM dropped).

    Parameters
    ----------
    path : Path
        The file; ``.gz`` is decompressed.

    Returns
    -------
    str
        The text, which is not blank.

    Raises
    ------
    TraceFormatError
        An unreadable file (or bad gzip), text that is not UTF-8, or an empty file.

    """
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


def json_error(
    path: _Source, text: str, exc: json.JSONDecodeError, *, line: int | None = None
) -> TraceFormatError:
    """Turn a JSON parse error into a TraceFormatError: truncated, or malformed.

    Parameters
    ----------
    path : str or path
        The file being read.
    text : str
        The text that failed to parse.
    exc : json.JSONDecodeError
        The parser's error.
    line : int, optional
        The file's line number when ``text`` is one line of it (JSON lines); by default
        the error's own line number.

    Returns
    -------
    TraceFormatError
        For the caller to raise.

    Examples
    --------
    >>> try:
    ...     json.loads('{"data": [1, 2')
    ... except json.JSONDecodeError as exc:
    ...     print(json_error("t.json", '{"data": [1, 2', exc))
    t.json: line 1 column 15: JSON ends early (truncated file?) (expected JSON)

    """
    # The text ends inside a value (an unterminated string always runs to the end).
    truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
    problem = "JSON ends early (truncated file?)" if truncated else f"malformed JSON: {exc.msg}"
    where = f"line {exc.lineno if line is None else line} column {exc.colno}"
    return TraceFormatError(problem, source=path, where=where, expected="JSON")


def too_deep(path: _Source, *, line: int | None = None) -> TraceFormatError:
    """Return the error for JSON nested deeper than Python's parser can follow.

    Parameters
    ----------
    path : str or path
        The file being read.
    line : int, optional
        The file's line number when one line of it was being parsed.

    Returns
    -------
    TraceFormatError
        For the caller to raise.

    """
    where = None if line is None else f"line {line}"
    return TraceFormatError("JSON is nested too deeply", source=path, where=where)


def parse_json(path: _Source, text: str, *, line: int | None = None) -> Any:
    """Parse JSON text; every failure is a TraceFormatError.

    Parameters
    ----------
    path : str or path
        The file the text comes from.
    text : str
        The JSON text (the whole file, or one of its lines).
    line : int, optional
        The file's line number when ``text`` is one line of it.

    Returns
    -------
    Any
        The parsed value.

    Raises
    ------
    TraceFormatError
        Truncated or malformed JSON, or JSON nested too deeply.

    Examples
    --------
    >>> parse_json("t.json", '{"data": []}')
    {'data': []}
    >>> parse_json("t.jsonl", '{"a": 1} x', line=3)
    Traceback (most recent call last):
    ...
    bayesperf.errors.TraceFormatError: t.jsonl: line 3 column 10: malformed JSON: Extra data \
(expected JSON)

    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json_error(path, text, exc, line=line) from None
    except RecursionError:
        raise too_deep(path, line=line) from None


def load_json(path: Path) -> Any:
    """Parse a (possibly gzip-compressed) JSON file; every failure is a TraceFormatError.

    Parameters
    ----------
    path : Path
        The file; ``.gz`` is decompressed.

    Returns
    -------
    Any
        The parsed document.

    Raises
    ------
    TraceFormatError
        See :func:`read_text` and :func:`parse_json`.

    """
    return parse_json(path, read_text(path))


def preview(value: Any) -> str:
    """Return ``repr(value)``, cut to 60 characters for messages.

    Parameters
    ----------
    value : Any
        A parsed JSON value.

    Returns
    -------
    str
        Its repr, ending in ``...`` when cut.

    """
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def shape_error(path: _Source, where: str, value: Any, expected: str) -> TraceFormatError:
    """Return the error for a JSON value of the wrong type or shape.

    Parameters
    ----------
    path : str or path
        The file being read.
    where : str
        JSON path of the value.
    value : Any
        The value found (its type and a preview go in the message).
    expected : str
        What should have been there.

    Returns
    -------
    TraceFormatError
        For the caller to raise.

    """
    return TraceFormatError(
        f"found {type(value).__name__} {preview(value)}",
        source=path,
        where=where,
        expected=expected,
    )


#: Where OTLP sits one level down in the responses of trace backends' query APIs.
OTLP_WRAPPERS = {
    "result": "a Jaeger v2 /api/v3 response",
    "trace": "a Tempo /api/v2/traces response",
}


def json_encoding(doc: Any) -> str | None:
    """Name the trace encoding a parsed JSON document is in, or None if unrecognised.

    Used in the messages that refuse a document, so that the user learns what the file
    is and which ``format=`` reads it.

    Parameters
    ----------
    doc : Any
        The parsed JSON document (or one JSON line of it).

    Returns
    -------
    str or None
        A short description, ending with the format that reads it where there is one.

    Examples
    --------
    >>> json_encoding({"result": {"resourceSpans": []}})
    "a Jaeger v2 /api/v3 response (OTLP JSON; format='otlp')"
    >>> json_encoding({"spans": [{"traceId": "1", "spanId": "2"}]})
    'the Jaeger domain model (protobuf JSON): ids spelled traceId, not traceID'
    >>> json_encoding([{"traceId": "a", "id": "b", "localEndpoint": {}}])
    "Zipkin v2 JSON (format='zipkin')"
    >>> json_encoding(7) is None
    True

    """
    if isinstance(doc, dict):
        if "resourceSpans" in doc:
            return "OTLP JSON (format='otlp')"
        for key, what in OTLP_WRAPPERS.items():
            if isinstance(doc.get(key), dict) and "resourceSpans" in doc[key]:
                return f"{what} (OTLP JSON; format='otlp')"
        if "batches" in doc:
            return "a Tempo /api/traces response (OTLP JSON; format='otlp')"
        if "error" in doc and len(doc) == 1:
            return f"an error response from a query API: {preview(doc['error'])}"
        if "data" in doc:
            return "Jaeger query-API JSON (format='jaeger')"
        spans = doc.get("spans")
        if isinstance(spans, list):
            # A trace envelope ("spans" beside "processes"/"processMap") is Jaeger's.
            first = spans[0] if spans else None
            if isinstance(first, dict) and "traceID" not in first and "traceId" in first:
                return _DOMAIN_MODEL
            return _span_encoding(first) or "one Jaeger trace (format='jaeger')"
        return _span_encoding(doc)
    if isinstance(doc, list) and doc:
        first = doc[0]
        if isinstance(first, list) and first:
            first = first[0]
        if isinstance(first, dict) and "spans" in first:
            return "a list of Jaeger traces (format='jaeger')"
        return _span_encoding(first)
    return None


_DOMAIN_MODEL = "the Jaeger domain model (protobuf JSON): ids spelled traceId, not traceID"


def _span_encoding(span: Any) -> str | None:
    """Name the encoding of one span object (None if unrecognised)."""
    if not isinstance(span, dict):
        return None
    if "traceID" in span or "spanID" in span:
        return "Jaeger spans (format='jaeger')"
    if "operationName" in span and ("traceId" in span or "spanId" in span):
        return _DOMAIN_MODEL
    if "spanId" in span and "traceId" in span:
        return "OTLP spans without their resourceSpans envelope"
    if "traceId" in span and "id" in span:
        v1 = "binaryAnnotations" in span or any(
            isinstance(a, dict) and "endpoint" in a for a in span.get("annotations") or ()
        )
        return "Zipkin v1 JSON (format='zipkin')" if v1 else "Zipkin v2 JSON (format='zipkin')"
    return None


def wrong_document(path: _Source, where: str, doc: Any, expected: str) -> TraceFormatError:
    """Return the error for a document that is not in the reader's format.

    Takes what :func:`shape_error` takes, and names the encoding found
    (:func:`json_encoding`) when it is recognisable, else the value's type and preview.

    Examples
    --------
    >>> str(wrong_document("t.json", "top level", {"batches": []}, "a list of spans"))
    "t.json: top level: this is a Tempo /api/traces response (OTLP JSON; format='otlp') \
(expected a list of spans)"

    """
    encoding = json_encoding(doc)
    if encoding is None:
        return shape_error(path, where, doc, expected)
    return TraceFormatError(f"this is {encoding}", source=path, where=where, expected=expected)


def iter_objects(
    items: Any, path: _Source, where: str, *, expected_list: str, expected_item: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Iterate ``(JSON path, object)`` over a list that must hold objects.

    The list is checked at once; its items as they are reached, so errors come in
    document order.

    Parameters
    ----------
    items : Any
        The JSON value that should be a list of objects.
    path : str or path
        The file being read.
    where : str
        JSON path of the list; items are at ``where[i]``.
    expected_list, expected_item : str
        What the messages say was expected for the list and for each item.

    Returns
    -------
    iterator of (str, dict)
        Each item's JSON path and the item.

    Raises
    ------
    TraceFormatError
        ``items`` is not a list, or one of its items is not an object.

    Examples
    --------
    >>> list(iter_objects([{"a": 1}], "t.json", "spans", expected_list="a list of spans",
    ...                   expected_item="a span object"))
    [('spans[0]', {'a': 1})]

    """
    if not isinstance(items, list):
        raise shape_error(path, where, items, expected_list)
    checked: list[Any] = items

    def each() -> Iterator[tuple[str, dict[str, Any]]]:
        for i, item in enumerate(checked):
            at = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise shape_error(path, at, item, expected_item)
            yield at, item

    return each()


def string_id(value: Any, path: _Source, where: str) -> str:
    """Return an id that must be a non-empty string, as given.

    Parameters
    ----------
    value : Any
        The JSON value.
    path : str or path
        The file being read.
    where : str
        JSON path of the value.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    TraceFormatError
        A missing or empty id, or one that is not a string.

    Examples
    --------
    >>> string_id("5b8e", "t.json", "spans[0].spanID")
    '5b8e'
    >>> string_id(12, "t.json", "spans[0].spanID")
    Traceback (most recent call last):
    ...
    bayesperf.errors.TraceFormatError: t.json: spans[0].spanID: id 12 is not a string \
(expected a hex id string)

    """
    if isinstance(value, str) and value:
        return value
    problem = "missing id" if value is None or value == "" else f"id {value!r} is not a string"
    raise TraceFormatError(problem, source=path, where=where, expected="a hex id string")


def optional_str(value: Any, path: _Source, where: str) -> str | None:
    """Return a string value, or None when absent.

    Parameters
    ----------
    value : Any
        The JSON value.
    path : str or path
        The file being read.
    where : str
        JSON path of the value.

    Returns
    -------
    str or None
        ``value`` unchanged.

    Raises
    ------
    TraceFormatError
        A value that is neither null nor a string.

    """
    if value is None or isinstance(value, str):
        return value
    raise shape_error(path, where, value, "a string")


def number(value: Any, path: _Source, where: str, *, expected: str) -> int | float | None:
    """Return a JSON number (or numeric string) as int or float; None when absent.

    Parameters
    ----------
    value : Any
        The JSON value: a number, a string holding one, or null.
    path : str or path
        The file being read.
    where : str
        JSON path of the value.
    expected : str
        What the message says was expected (``"microseconds as a number"``).

    Returns
    -------
    int, float or None
        The number; ints beyond int64 are rejected.

    Raises
    ------
    TraceFormatError
        A value that is not a number (booleans included) or an int beyond int64.

    Examples
    --------
    >>> number("1500", "t.json", "duration", expected="microseconds as a number")
    1500
    >>> number(True, "t.json", "duration", expected="microseconds as a number")
    Traceback (most recent call last):
    ...
    bayesperf.errors.TraceFormatError: t.json: duration: True is not a number \
(expected microseconds as a number)

    """
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
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= INT64_MAX
    ):
        return value
    raise TraceFormatError(
        f"{preview(value)} is not a number", source=path, where=where, expected=expected
    )


def micros_start_ns(value: Any, path: _Source, where: str) -> int | None:
    """Return a start time in Unix microseconds as exact integer nanoseconds.

    Parameters
    ----------
    value : Any
        The JSON value: microseconds as a number or numeric string, or null.
    path : str or path
        The file being read.
    where : str
        JSON path of the value.

    Returns
    -------
    int or None
        Nanoseconds since 1970; None when absent.

    Raises
    ------
    TraceFormatError
        A value that is not a number, not finite, or beyond int64 nanoseconds.

    Examples
    --------
    >>> micros_start_ns(1_600_000_000_000_001, "t.json", "startTime")
    1600000000000001000
    >>> micros_start_ns(None, "t.json", "startTime") is None
    True

    """
    micros = number(value, path, where, expected="microseconds as a number")
    if micros is None:
        return None
    if isinstance(micros, float) and not math.isfinite(micros):
        raise TraceFormatError(
            f"{micros!r} is not a time", source=path, where=where, expected="Unix microseconds"
        )
    ns = micros * 1000
    if not -INT64_MAX <= ns <= INT64_MAX:
        raise TraceFormatError(
            f"{micros!r} is out of range", source=path, where=where, expected="Unix microseconds"
        )
    return round(ns)


def micros_latency_ms(value: Any, path: _Source, where: str) -> float:
    """Return a duration in microseconds as milliseconds; NaN when absent.

    Parameters
    ----------
    value : Any
        The JSON value: microseconds as a number or numeric string, or null.
    path : str or path
        The file being read.
    where : str
        JSON path of the value.

    Returns
    -------
    float
        Milliseconds (NaN when the value is null or missing).

    Raises
    ------
    TraceFormatError
        A value that is not a number.

    Examples
    --------
    >>> micros_latency_ms("1500", "t.json", "duration")
    1.5

    """
    micros = number(value, path, where, expected="microseconds as a number")
    return math.nan if micros is None else micros / 1000
