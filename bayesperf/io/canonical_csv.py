"""``csv``: the canonical flat span table (the seed notebook's ``parsed_traces.csv``).

Columns use the canonical names of :mod:`bayesperf.schema`; at least ``trace_id``,
``latency`` (ms) and ``service`` or ``callee``. ``caller`` is read when present,
otherwise derived from ``parent_id`` links when those are present. ``start_time`` may
be integer Unix nanoseconds or ISO-8601 text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._csv import header, read_csv, row_locator
from bayesperf.io._table import RawSpans
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
        frame = read_csv(
            source,
            required=(S.TRACE_ID, service, S.LATENCY),
            optional=optional,
            text=_IDS,
            categorical=(S.SERVICE, S.OPERATION, S.CALLER, S.CALLEE),
        )
        name, locate = str(source), row_locator(source)
    if S.SERVICE not in frame.columns and S.CALLEE in frame.columns:
        frame = frame.assign(**{S.SERVICE: frame[S.CALLEE]})
    if S.START_TIME in frame.columns and not pd.api.types.is_numeric_dtype(frame[S.START_TIME]):
        frame = frame.assign(**{S.START_TIME: _parse_times(frame[S.START_TIME], name, locate)})
    return RawSpans(frame=frame, source=name, locate=locate)


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
