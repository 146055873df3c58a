"""``span-csv``: any span-per-row CSV with parent links, through a column mapping.

A mapping names, for each canonical column, the CSV column that holds it. Latency comes
from a duration column (``latency``) in ``latency_unit``, or from ``start_time`` and
``end_time`` columns in ``time_unit``. Presets hold the mapping for known layouts; the
Nezha Online Boutique layout is built in as ``preset="nezha"``.

Examples
--------
>>> import bayesperf
>>> spans = bayesperf.read_traces(                                 # doctest: +SKIP
...     "spans.csv", format="span-csv",
...     columns={"trace_id": "tid", "span_id": "sid", "parent_id": "pid",
...              "service": "svc", "latency": "dur_us"},
...     latency_unit="us")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._csv import header, read_csv, row_locator
from bayesperf.io._table import RawSpans, as_float, to_ns
from bayesperf.io.registry import TraceFormat, register, suffixes

END_TIME = "end_time"

#: Milliseconds per unit.
UNITS_MS: dict[str, float] = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
#: Nanoseconds per unit.
UNITS_NS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

#: Kubernetes Deployment pod suffix: ``-<replicaset hash>-<pod hash>``.
POD_SUFFIX = r"-[a-z0-9]{5,10}-[a-z0-9]{5}$"


@dataclass(frozen=True)
class SpanCsvLayout:
    """How a span-per-row CSV maps onto the canonical table.

    Attributes
    ----------
    columns : mapping
        Canonical column name (or ``"end_time"``) -> CSV column name.
    latency_unit : str
        Unit of the duration column: ``ns``, ``us``, ``ms`` or ``s``.
    time_unit : str
        Unit of integer start/end times.
    root_values : tuple of str
        Parent-column values that mean "no parent" (besides an empty cell).
    strip_service : str or None
        Regular expression removed from service names (e.g. a pod-name suffix).
    """

    columns: Mapping[str, str]
    latency_unit: str = "ms"
    time_unit: str = "ns"
    root_values: tuple[str, ...] = ("root", "null", "None", "0", "0000000000000000")
    strip_service: str | None = None

    def __post_init__(self) -> None:
        for unit in (self.latency_unit, self.time_unit):
            if unit not in UNITS_MS:
                raise TraceFormatError(
                    f"unknown time unit {unit!r}", where="options", expected=f"one of {UNITS_MS}"
                )
        known = {*S.SPAN_COLUMNS, END_TIME}
        unknown = sorted(set(self.columns) - known)
        if unknown:
            raise TraceFormatError(
                f"column mapping names unknown canonical column(s) {unknown}",
                where="columns=",
                expected=f"keys among {sorted(known)}",
            )
        needed = [S.TRACE_ID, S.SERVICE]
        if S.LATENCY not in self.columns and not {S.START_TIME, END_TIME} <= set(self.columns):
            needed.append(S.LATENCY)
        missing = [c for c in needed if c not in self.columns]
        if missing:
            raise TraceFormatError(
                f"column mapping lacks {missing}",
                where="columns=",
                expected="trace_id, service, and latency or start_time + end_time",
            )


#: Built-in layouts, by name.
PRESETS: dict[str, SpanCsvLayout] = {
    "nezha": SpanCsvLayout(
        columns={
            S.TRACE_ID: "TraceID",
            S.SPAN_ID: "SpanID",
            S.PARENT_ID: "ParentID",
            S.SERVICE: "PodName",
            S.OPERATION: "OperationName",
            S.START_TIME: "StartTimeUnixNano",
            S.LATENCY: "Duration",
        },
        latency_unit="us",
        time_unit="ns",
        root_values=("root",),
        strip_service=POD_SUFFIX,
    ),
}


def read(
    source: Path | pd.DataFrame,
    *,
    preset: str | None = None,
    columns: Mapping[str, str] | None = None,
    latency_unit: str | None = None,
    time_unit: str | None = None,
    root_values: Sequence[str] | None = None,
    strip_service: str | None = None,
) -> RawSpans:
    """Read one span-per-row CSV file (or DataFrame) through a layout.

    With no preset and no mapping, a file whose header matches a preset uses it.
    Explicit options override the preset's.
    """
    layout = _layout(source, preset, columns, latency_unit, time_unit, root_values, strip_service)
    if isinstance(source, pd.DataFrame):
        missing = [c for c in layout.columns.values() if c not in source.columns]
        if missing:
            raise TraceFormatError(
                f"missing mapped column(s) {missing}; found {list(source.columns)}",
                source="<DataFrame>",
                where="columns",
            )
        table, name, locate = source, "<DataFrame>", (lambda i: f"row {i}")
    else:
        # A user's mapping is a promise that the columns exist; a preset's extras are optional.
        must = layout.columns if columns is not None else {S.TRACE_ID: 0, S.SERVICE: 0}
        required = [c for k, c in layout.columns.items() if k in must]
        optional = [c for k, c in layout.columns.items() if k not in must]
        ids = [
            layout.columns[c] for c in (S.TRACE_ID, S.SPAN_ID, S.PARENT_ID) if c in layout.columns
        ]
        table = read_csv(source, required=required, optional=optional, text=ids)
        mapped_latency = [
            layout.columns[c] for c in (S.LATENCY, S.START_TIME, END_TIME) if c in layout.columns
        ]
        if not any(c in table.columns for c in mapped_latency):
            raise TraceFormatError(
                "no duration column found",
                source=source,
                where="line 1 (header)",
                expected=f"one of {mapped_latency}",
            )
        name, locate = str(source), row_locator(source)
    return RawSpans(frame=_canonical(table, layout, name, locate), source=name, locate=locate)


def _layout(source, preset, columns, latency_unit, time_unit, root_values, strip_service):
    if preset is None and columns is None and not isinstance(source, pd.DataFrame):
        preset = _matching_preset(source)
    if preset is not None and preset not in PRESETS:
        raise TraceFormatError(
            f"unknown span-csv preset {preset!r}",
            where="preset=",
            expected=f"one of {sorted(PRESETS)}",
        )
    base = PRESETS[preset] if preset else None
    if base is None and columns is None:
        raise TraceFormatError(
            "span-csv needs a column mapping",
            source=None if isinstance(source, pd.DataFrame) else source,
            where="options",
            expected=f"columns={{canonical: csv column}} or preset= one of {sorted(PRESETS)}",
        )
    return SpanCsvLayout(
        columns=columns if columns is not None else base.columns,
        latency_unit=latency_unit or (base.latency_unit if base else "ms"),
        time_unit=time_unit or (base.time_unit if base else "ns"),
        root_values=tuple(root_values)
        if root_values is not None
        else (base.root_values if base else SpanCsvLayout.root_values),
        strip_service=strip_service if strip_service is not None else (base and base.strip_service),
    )


def _canonical(table: pd.DataFrame, layout: SpanCsvLayout, name: str, locate) -> pd.DataFrame:
    """Rename mapped columns to canonical names and convert units."""
    cols = {canon: col for canon, col in layout.columns.items() if col in table.columns}
    out = {canon: table[col] for canon, col in cols.items() if canon != END_TIME}
    if S.START_TIME in cols:
        out[S.START_TIME] = _to_ns(table[cols[S.START_TIME]], layout, name, locate)
    if S.LATENCY in cols:
        duration = as_float(table[cols[S.LATENCY]], cols[S.LATENCY], name, locate)
        out[S.LATENCY] = duration * UNITS_MS[layout.latency_unit]
    elif S.START_TIME in cols and END_TIME in cols:
        end = _to_ns(table[cols[END_TIME]], layout, name, locate)
        out[S.LATENCY] = (end - out[S.START_TIME]).astype("float64") * UNITS_MS["ns"]
    if S.PARENT_ID in out:
        parent = out[S.PARENT_ID]
        out[S.PARENT_ID] = parent.where(~parent.isin(layout.root_values), None)
    if layout.strip_service:
        service = out[S.SERVICE].astype("str")
        out[S.SERVICE] = service.str.replace(layout.strip_service, "", regex=True)
    return pd.DataFrame(out)


def _to_ns(col: pd.Series, layout: SpanCsvLayout, name: str, locate) -> pd.Series:
    """Times in ``time_unit`` to nanoseconds (see :func:`~bayesperf.io._table.to_ns`)."""
    return to_ns(col, UNITS_NS[layout.time_unit], str(col.name), name, locate)


def _matching_preset(path: Path) -> str | None:
    names = set(header(path))
    for name, layout in PRESETS.items():
        if set(layout.columns.values()) <= names:
            return name
    return None


def _sniff(path: Path, head: bytes) -> bool:
    return suffixes(path) == ".csv" and _matching_preset(path) is not None


FORMAT = register(
    TraceFormat(
        name="span-csv",
        read=read,
        sniff=_sniff,
        description=f"span-per-row CSV with parent links (presets: {', '.join(PRESETS)})",
    )
)
