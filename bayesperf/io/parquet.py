"""``parquet``: the canonical span table in Apache Parquet, and :func:`write_parquet`.

Columns use the canonical names of :mod:`bayesperf.schema`, as in the canonical CSV: at
least ``trace_id``, ``latency`` (ms) and ``service`` or ``callee``; other canonical
columns are read when present and any other column is ignored (only the canonical
columns are read from disk). ``start_time`` may be a Parquet timestamp (any unit; a
timestamp without time zone is taken as UTC) or integer Unix nanoseconds.

A directory of Parquet files (``.parquet`` / ``.pq``) is read with
``read_traces("dir/")``; a Hive-partitioned dataset with
``read_traces("dir/**/*.parquet")``. Partition values encoded only in directory names
(``service=frontend/``) are not read: the canonical columns must be in the files.

:func:`write_parquet` writes a canonical span table so that ``read_traces(path)`` gives
back an equal table; it is the fast way to keep a large converted trace set.

Examples
--------
>>> import bayesperf
>>> from bayesperf.io.parquet import write_parquet
>>> spans = bayesperf.read_traces("traces/*.json")                  # doctest: +SKIP
>>> write_parquet(spans, "spans.parquet")                           # doctest: +SKIP
>>> bayesperf.read_traces("spans.parquet").equals(spans)            # doctest: +SKIP
True

"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayesperf import schema as S
from bayesperf.errors import TraceFormatError
from bayesperf.io._table import RawSpans
from bayesperf.io.registry import TraceFormat, open_binary, register, suffixes

#: First (and last) four bytes of every Parquet file.
MAGIC = b"PAR1"
SUFFIXES = (".parquet", ".pq")

# Nullable pandas types for Parquet types whose nulls numpy cannot hold (an int64 column
# with a null would become float64 and lose Unix-nanosecond precision).
_PANDAS_TYPES = {
    pa.bool_(): pd.BooleanDtype(),
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def _locate(i: int) -> str:
    return f"row {i}"


def read(path: Path) -> RawSpans:
    """Read the canonical columns of one Parquet file (``.gz`` is decompressed)."""
    name = str(path)
    try:
        with _open(path) as fh:
            parquet = pq.ParquetFile(fh)
            names = parquet.schema_arrow.names
            service = S.SERVICE if S.SERVICE in names else S.CALLEE
            required = (S.TRACE_ID, service, S.LATENCY)
            missing = [c for c in required if c not in names]
            if missing:
                if service == S.CALLEE and S.CALLEE in missing:
                    missing[missing.index(S.CALLEE)] = f"{S.SERVICE} (or {S.CALLEE})"
                raise TraceFormatError(
                    f"missing required column(s) {missing}; the file has {names}",
                    source=path,
                    where="schema",
                    expected=f"columns {[S.TRACE_ID, S.SERVICE, S.LATENCY]}",
                )
            columns = [c for c in S.SPAN_COLUMNS if c in names]
            table = _as_text(parquet.read(columns=columns), path)
    except TraceFormatError:
        raise
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        # ArrowInvalid (no magic bytes, bad footer), OSError (truncated pages, bad gzip),
        # EOFError (truncated gzip), ValueError (unreadable schema).
        raise TraceFormatError(
            f"cannot read Parquet: {exc}".strip(), source=path, expected="a valid Parquet file"
        ) from exc
    frame = table.to_pandas(ignore_metadata=True, types_mapper=_PANDAS_TYPES.get)
    if S.SERVICE not in frame.columns:
        frame[S.SERVICE] = frame[S.CALLEE]
    return RawSpans(frame=frame, source=name, locate=_locate)


def _as_text(table: pa.Table, path: Path) -> pa.Table:
    """Binary columns decoded as UTF-8; nested columns (lists, structs) refused by name."""
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            raise TraceFormatError(
                f"column {field.name!r} is {field.type}, not a plain value per row",
                source=path,
                where="schema",
                expected="strings, numbers, booleans or timestamps",
            )
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            try:
                text = table.column(i).cast(pa.string())
            except pa.ArrowInvalid:
                raise TraceFormatError(
                    f"column {field.name!r} holds bytes that are not UTF-8 text",
                    source=path,
                    where="schema",
                    expected="UTF-8 strings",
                ) from None
            table = table.set_column(i, field.name, text)
    return table


def _open(path: Path):
    """Open the file, or its decompressed bytes for ``.parquet.gz`` (Parquet needs seeking)."""
    if Path(path).suffix == ".gz":
        with open_binary(path) as fh:
            return io.BytesIO(fh.read())
    return open(path, "rb")


def write_parquet(
    spans: pd.DataFrame, path: str | os.PathLike[str], *, compression: str = "zstd"
) -> None:
    """Write a canonical span table to a Parquet file.

    ``bayesperf.read_traces(path)`` reads it back as an equal table (same values and
    dtypes). Only the columns of :data:`bayesperf.schema.SPAN_COLUMNS` are written, in
    canonical order; ``attrs`` (the read report) are not.

    Parameters
    ----------
    spans : pandas.DataFrame
        A table as returned by :func:`bayesperf.read_traces`; at least ``trace_id``,
        ``latency`` and ``service`` or ``callee``.
    path : str or path
        The file to write (overwritten).
    compression : str, default "zstd"
        Parquet codec: ``"zstd"``, ``"snappy"``, ``"gzip"``, ``"none"``, ...

    Raises
    ------
    TraceFormatError
        If ``spans`` lacks the required columns.

    """
    present = [c for c in S.SPAN_COLUMNS if c in spans.columns]
    missing = [c for c in (S.TRACE_ID, S.LATENCY) if c not in present]
    if S.SERVICE not in present and S.CALLEE not in present:
        missing.append(S.SERVICE)
    if missing:
        raise TraceFormatError(
            f"span table lacks column(s) {missing}; it has {list(spans.columns)}",
            source="<DataFrame>",
            where="columns",
            expected=f"columns {[S.TRACE_ID, S.SERVICE, S.LATENCY]}",
        )
    # Column by column, not Table.from_pandas: no pandas metadata (readers of the file
    # need none) and no attempt to serialise ``attrs``.
    arrays = [pa.array(spans[c], from_pandas=True) for c in present]
    table = pa.Table.from_arrays(arrays, names=present)
    pq.write_table(table, path, compression=compression)


def _sniff(path: Path, head: bytes) -> bool:
    return suffixes(path) in SUFFIXES or head[:4] == MAGIC


FORMAT = register(
    TraceFormat(
        name="parquet",
        read=read,
        sniff=_sniff,
        description="canonical span table in Parquet (.parquet, .pq)",
    )
)
