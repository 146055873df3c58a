"""``csv``: the canonical flat span table (the seed notebook's ``parsed_traces.csv``).

Columns use the canonical names of :mod:`bayesperf.schema`; at least ``trace_id``,
``latency`` (ms) and ``service`` or ``callee``. ``caller`` is read when present,
otherwise derived from ``parent_id`` links when those are present. ``start_time`` may
be integer Unix nanoseconds or ISO-8601 text.

The start time may also be under another common name
(:data:`bayesperf.schema.START_TIME_ALIASES`: ``timestamp``, ``startTime``, ``ts``,
``start``, ...; the first present wins, ignoring case). Such a column holds ISO-8601
text or Unix time in seconds, milliseconds, microseconds or nanoseconds, told apart by
the magnitude of its values (relative times keep their order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._csv import header, read_csv, row_locator
from bayesperf.io._table import RawSpans, to_ns
from bayesperf.io.registry import TraceFormat, register, suffixes

_IDS = (S.TRACE_ID, S.SPAN_ID, S.PARENT_ID)


def read(source: Path | pd.DataFrame) -> RawSpans:
    """Read one canonical CSV file (or an in-memory DataFrame in canonical columns)."""
    if isinstance(source, pd.DataFrame):
        frame, name, locate = source, "<DataFrame>", (lambda i: f"row {i}")
    else:
        names = header(source)
        service = S.SERVICE if S.SERVICE in names else S.CALLEE
        optional = [c for c in S.SPAN_COLUMNS if c not in (S.TRACE_ID, S.LATENCY, service)]
        start = start_time_column(names)
        frame = read_csv(
            source,
            required=(S.TRACE_ID, service, S.LATENCY),
            optional=[*optional, start] if start and start not in optional else optional,
            text=_IDS,
            categorical=(S.SERVICE, S.OPERATION, S.CALLER, S.CALLEE),
        )
        name, locate = str(source), row_locator(source)
    frame = with_start_time(frame, name, locate)
    if S.SERVICE not in frame.columns and S.CALLEE in frame.columns:
        frame = frame.assign(**{S.SERVICE: frame[S.CALLEE]})
    if S.START_TIME in frame.columns and not pd.api.types.is_numeric_dtype(frame[S.START_TIME]):
        frame = frame.assign(**{S.START_TIME: _parse_times(frame[S.START_TIME], name, locate)})
    return RawSpans(frame=frame, source=name, locate=locate)


def start_time_column(names) -> str | None:
    """The column holding start times: ``start_time`` or its first alias present.

    Examples
    --------
    >>> start_time_column(["trace_id", "Timestamp", "ts"])
    'Timestamp'
    >>> start_time_column(["trace_id", "latency"]) is None
    True
    """
    by_lower = {}
    for column in names:
        by_lower.setdefault(str(column).lower(), column)
    return next((by_lower[a.lower()] for a in S.START_TIME_ALIASES if a.lower() in by_lower), None)


#: Unix-time units by magnitude: values at least this large are in this many ns.
_UNIT_BY_MAGNITUDE = ((1e17, 1), (1e14, 1_000), (1e11, 1_000_000), (0.0, 1_000_000_000))


def with_start_time(frame: pd.DataFrame, name: str, locate) -> pd.DataFrame:
    """``frame`` with its start-time column (or alias) as canonical ``start_time``.

    An alias's numbers are Unix time in s, ms, µs or ns by their magnitude, converted to
    ns; its text is parsed as ISO-8601 later. Canonical ``start_time`` numbers stay ns.

    Examples
    --------
    >>> f = with_start_time(pd.DataFrame({"ts": [1_700_000_000_123]}), "t.csv", str)
    >>> f["start_time"].tolist()
    [1700000000123000000]
    """
    column = start_time_column(frame.columns)
    if column is None or column == S.START_TIME:
        return frame
    times = frame[column]
    if pd.api.types.is_numeric_dtype(times) and not pd.api.types.is_bool_dtype(times):
        values = np.abs(times.to_numpy(dtype="float64", na_value=np.nan))
        typical = np.median(values[~np.isnan(values)]) if (~np.isnan(values)).any() else 0.0
        factor = next(f for limit, f in _UNIT_BY_MAGNITUDE if not typical < limit)
        times = to_ns(times, factor, column, name, locate)
    return frame.drop(columns=[column]).assign(**{S.START_TIME: times})


def _parse_times(col: pd.Series, name: str, locate) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
        return col
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & col.notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TraceFormatError(
            f"start_time value {col.iloc[i]!r} is not a time",
            source=name,
            where=locate(i),
            expected="integer Unix nanoseconds or ISO-8601 text",
        )
    return parsed


def _sniff(path: Path, head: bytes) -> bool:
    if suffixes(path) != ".csv":
        return False
    names = set(header(path))
    return {S.TRACE_ID, S.LATENCY} <= names and bool({S.SERVICE, S.CALLEE} & names)


FORMAT = register(
    TraceFormat(
        name="csv",
        read=read,
        sniff=_sniff,
        description="canonical CSV: trace_id, service/callee, caller, latency (ms)",
    )
)
