"""Summaries of span tables that do not fit in memory: Parquet batches and Dask.

Both summaries are exact and mergeable (``a + b`` is the summary of the concatenated
spans, bit for bit), so they compute piecewise and add up to what the pandas path gives
on the whole table:

* :func:`summarize_latency_parquet` and :func:`count_transitions_parquet` read a Parquet
  file or directory in batches, holding one batch (plus the current trace) at a time.
* :func:`summarize_latency_dask` and :func:`count_transitions_dask` run on a
  :class:`dask.dataframe.DataFrame` (install ``bayesperf[dask]``); with a
  ``distributed`` client they run on its cluster.

:func:`bayesperf.summarize_latency` and :func:`bayesperf.count_transitions` dispatch
here when given a path or a Dask DataFrame, so most users never import this module.

The Parquet input is taken as a canonical span table as written by
:func:`bayesperf.io.parquet.write_parquet`: rows are not de-duplicated or filtered as
:func:`bayesperf.read_traces` does (a negative or missing latency is an error naming the
file and rows).

Transitions need whole traces. On Parquet, the rows of a trace must be contiguous (trace
exporters write them so; otherwise sort by ``trace_id``, or pass ``presorted=False`` for
a two-pass hash partitioning through a temporary directory). On Dask, the spans are
shuffled by ``trace_id`` first.

Examples
--------
>>> import bayesperf, tempfile, os
>>> import pyarrow as pa, pyarrow.parquet as pq
>>> spans = bayesperf.datasets.load_online_boutique().sort_values("trace_id", kind="stable")
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "spans.parquet")
>>> pq.write_table(pa.table({c: spans[c] for c in spans.columns}), path)
>>> batched = summarize_latency_parquet(path, batch_size=5_000)
>>> batched.equals(bayesperf.summarize_latency(spans))
True
>>> count_transitions_parquet(path, "calls", batch_size=5_000).equals(
...     bayesperf.count_transitions(spans, "calls"))
True
>>> tmp.cleanup()
"""

from __future__ import annotations

import functools
import math
import operator
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayesperf import schema as S
from bayesperf.summaries import _inputs
from bayesperf.summaries.bins import DEFAULT_BINS, LogBins
from bayesperf.summaries.latency import By, LatencySummary, normalize_by, summarize_latency
from bayesperf.summaries.transitions import (
    Mode,
    TransitionCounts,
    _check_mode,
    count_transitions,
)

__all__ = [
    "count_transitions_dask",
    "count_transitions_parquet",
    "is_dask_dataframe",
    "is_parquet_path",
    "summarize_latency_dask",
    "summarize_latency_parquet",
]

#: Default rows per Parquet batch: ~1e6 spans keeps a batch at tens of MB.
BATCH_SIZE = 1_000_000
#: File name suffixes taken as Parquet in a directory.
PARQUET_SUFFIXES = (".parquet", ".pq")
_MAGIC = b"PAR1"
_DASK_MISSING = (
    "the Dask backend needs dask[dataframe] and distributed; install them with "
    'pip install "bayesperf[dask]"'
)


# --------------------------------------------------------------------------- dispatch
def is_parquet_path(obj: object) -> bool:
    """Whether ``obj`` is a path to a Parquet file or to a directory holding some.

    A file is Parquet when its name ends in ``.parquet`` / ``.pq`` or it starts with
    the Parquet magic bytes.
    """
    if not isinstance(obj, str | os.PathLike):
        return False
    path = Path(obj)
    if path.is_dir():
        return bool(_parquet_files(path))
    if not path.is_file():
        return False
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == _MAGIC


def is_csv_path(obj: object) -> bool:
    """Whether ``obj`` is a path to a ``.csv`` or ``.csv.gz`` file."""
    if not isinstance(obj, str | os.PathLike):
        return False
    name = Path(obj).name.lower().removesuffix(".gz")
    return Path(obj).is_file() and name.endswith(".csv")


def is_dask_dataframe(obj: object) -> bool:
    """Whether ``obj`` is a Dask DataFrame (checked without importing dask)."""
    return (
        type(obj).__module__.startswith("dask")
        and hasattr(obj, "to_delayed")
        and hasattr(obj, "columns")
    )


def _unsupported(obj: object, what: str) -> TypeError | ValueError:
    if isinstance(obj, str | os.PathLike):
        return ValueError(
            f"{what} reads Parquet files and directories (and summarize_latency canonical CSV "
            f"files) directly, but {os.fspath(obj)!r} is none of these; read other formats "
            "with bayesperf.read_traces(path) and pass the table"
        )
    return TypeError(
        f"{what} takes a pandas DataFrame, a Parquet path or a Dask DataFrame, "
        f"not {type(obj).__name__}"
    )


def summarize_latency_any(
    spans: Any, by: By = (S.CALLER, S.CALLEE), *, bins: LogBins = DEFAULT_BINS
) -> LatencySummary:
    """:func:`~bayesperf.summarize_latency` for a Parquet path or a Dask DataFrame."""
    if is_dask_dataframe(spans):
        return summarize_latency_dask(spans, by, bins=bins)
    if is_parquet_path(spans):
        return summarize_latency_parquet(spans, by, bins=bins)
    if is_csv_path(spans):
        return summarize_latency_csv(spans, by, bins=bins)
    raise _unsupported(spans, "summarize_latency")


def count_transitions_any(spans: Any, mode: Mode = "sequence") -> TransitionCounts:
    """:func:`~bayesperf.count_transitions` for a Parquet path or a Dask DataFrame."""
    if is_dask_dataframe(spans):
        return count_transitions_dask(spans, mode)
    if is_parquet_path(spans):
        return count_transitions_parquet(spans, mode)
    raise _unsupported(spans, "count_transitions")


_inputs.register("summarize_latency", summarize_latency_any)
_inputs.register("count_transitions", count_transitions_any)


# ---------------------------------------------------------------------------- Parquet
def _parquet_files(path: Path) -> list[Path]:
    """Parquet files under a directory (recursive), sorted; hidden and ``_`` files skipped."""
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in PARQUET_SUFFIXES
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )


def _resolve(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = _parquet_files(p)
        if not files:
            raise ValueError(f"directory {str(p)!r} holds no .parquet or .pq file")
        return files
    if not p.is_file():
        raise FileNotFoundError(f"no such Parquet file or directory: {str(p)!r}")
    return [p]


def _file_columns(path: Path) -> list[str]:
    return pq.ParquetFile(path).schema_arrow.names


def _iter_frames(
    files: Sequence[Path],
    columns: Sequence[str],
    batch_size: int,
    *,
    required: Sequence[str] = (),
) -> Iterator[tuple[Path, int, pd.DataFrame]]:
    """Yield ``(file, first row, frame)`` per batch, reading only ``columns``.

    Columns absent from a file come back as missing values (as a concatenation of the
    files would give); a missing ``required`` column is an error naming the file.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of rows, got {batch_size}")
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        names = parquet.schema_arrow.names
        absent = [c for c in required if c not in names]
        if absent:
            raise ValueError(f"Parquet file {str(path)!r} lacks column(s) {absent}; it has {names}")
        present = [c for c in columns if c in names]
        start = 0
        for batch in parquet.iter_batches(batch_size=batch_size, columns=present):
            if batch.num_rows == 0:
                continue
            frame = batch.to_pandas()
            for col in columns:
                if col not in frame.columns:
                    frame[col] = _missing_column(col, len(frame))
            yield path, start, frame[list(columns)]
            start += batch.num_rows


def _missing_column(col: str, n: int) -> pd.Series:
    if col == S.START_TIME:
        return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype=S.SPAN_DTYPES[S.START_TIME])
    if col == S.LATENCY:
        return pd.Series(np.nan, index=pd.RangeIndex(n))
    return pd.Series(None, index=pd.RangeIndex(n), dtype="str")


def summarize_latency_parquet(
    path: str | os.PathLike[str],
    by: By = (S.CALLER, S.CALLEE),
    *,
    batch_size: int = BATCH_SIZE,
    bins: LogBins = DEFAULT_BINS,
) -> LatencySummary:
    """Summarize latencies of a Parquet span table in batches, in bounded memory.

    Reads only the ``by`` columns and ``latency``, ``batch_size`` rows at a time, and
    adds the batch summaries: the result equals (:meth:`LatencySummary.equals`)
    ``summarize_latency`` of the whole table. Memory is one batch plus the summary
    (groups x ~1,100 bins of int64).

    Parameters
    ----------
    path : str or path
        A Parquet file, or a directory: every ``.parquet`` / ``.pq`` file under it
        (recursively, skipping names starting with ``.`` or ``_``), in sorted order.
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping, as in :func:`~bayesperf.summarize_latency`.
    batch_size : int, default 1_000_000
        Rows per batch (a file's last batch may be smaller; batches never span files).
    bins : LogBins
        The bin grid.

    Returns
    -------
    LatencySummary

    Raises
    ------
    ValueError
        A file lacks a needed column, or holds latencies that are missing, negative or
        not finite (the message names the file and the batch's rows).
    """
    by_t = normalize_by(by)
    columns = [*by_t, S.LATENCY]
    total = LatencySummary.empty(by_t, bins)
    for file, start, frame in _iter_frames(_resolve(path), columns, batch_size, required=columns):
        try:
            part = summarize_latency(frame, by_t, bins=bins)
        except ValueError as exc:
            end = start + len(frame) - 1
            raise ValueError(f"{file} (batch of rows {start}-{end}): {exc}") from exc
        total = _sum([total, part])
    return total


def summarize_latency_csv(
    path: str | os.PathLike[str],
    by: By = (S.CALLER, S.CALLEE),
    *,
    block_size: int = 64 << 20,
    bins: LogBins = DEFAULT_BINS,
) -> LatencySummary:
    """Summarize latencies of a canonical CSV span table while streaming it.

    Parses the file block by block with pyarrow (all cores), reading only the ``by``
    columns (dictionary-encoded: no string per row) and ``latency``, and adds the block
    summaries: memory is one block plus the summary. Like the Parquet path it reads the
    file as it is — no de-duplication or dropping of unusable rows, which is what
    :func:`bayesperf.read_traces` adds; an unusable latency is an error naming the rows.

    Parameters
    ----------
    path : str or path
        A CSV (or ``.csv.gz``) file in the canonical columns (``latency`` in ms).
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping, as in :func:`~bayesperf.summarize_latency`.
    block_size : int, default 64 MiB
        Bytes parsed per block.
    bins : LogBins
        The bin grid.

    Returns
    -------
    LatencySummary
    """
    import pyarrow.csv as pacsv

    by_t = normalize_by(by)
    columns = [*by_t, S.LATENCY]
    convert = pacsv.ConvertOptions(
        include_columns=columns,
        strings_can_be_null=True,  # an empty caller is a root's: missing, not ""
        column_types={
            **{c: pa.dictionary(pa.int32(), pa.string()) for c in by_t},
            S.LATENCY: pa.float64(),
        },
    )
    try:
        reader = pacsv.open_csv(
            os.fspath(path),
            read_options=pacsv.ReadOptions(block_size=block_size),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, KeyError) as exc:
        raise ValueError(f"{os.fspath(path)}: cannot read columns {columns}: {exc}") from exc
    total = LatencySummary.empty(by_t, bins)
    start = 0
    for batch in reader:
        frame = batch.to_pandas()
        try:
            part = summarize_latency(frame, by_t, bins=bins)
        except ValueError as exc:
            end = start + len(frame) - 1
            raise ValueError(f"{os.fspath(path)} (data rows {start}-{end}): {exc}") from exc
        total = _sum([total, part])
        start += len(frame)
    return total


class _HashSet:
    """A compact set of uint64 hashes: sorted runs merged like a binary counter.

    8 bytes per member; ``add`` and ``contains`` cost O(n log N) for n new keys.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[pos] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        run = np.unique(np.asarray(keys, dtype=np.uint64))
        # Keep runs of decreasing size; merge while the newest is not smaller.
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.union1d(self.runs.pop(), run)
        self.runs.append(run)


def _hash_ids(values: pd.Series | np.ndarray) -> np.ndarray:
    """64-bit hashes of trace ids (same id, same hash, in every batch and file)."""
    return pd.util.hash_array(np.asarray(values, dtype=object))


def _transition_columns(mode: Mode, available: set[str]) -> list[str]:
    wanted = [S.TRACE_ID, S.SERVICE]
    if mode == "sequence":
        wanted.append(S.START_TIME)
    else:
        wanted += [S.CALLER, S.SPAN_ID, S.PARENT_ID]
    required = {S.TRACE_ID, S.SERVICE} | ({S.CALLER} if mode == "calls" else set())
    return [c for c in wanted if c in available or c in required]


def _sum(items: Sequence) -> Any:
    """Add summaries; empty latency summaries (they add nothing) are skipped."""
    items = list(items)
    nonempty = [x for x in items if not (isinstance(x, LatencySummary) and x.n_groups == 0)]
    return functools.reduce(operator.add, nonempty or items[:1])


def count_transitions_parquet(
    path: str | os.PathLike[str],
    mode: Mode = "sequence",
    *,
    batch_size: int = BATCH_SIZE,
    presorted: bool = True,
    n_buckets: int | None = None,
    tmpdir: str | os.PathLike[str] | None = None,
) -> TransitionCounts:
    """Count transitions of a Parquet span table in batches, in bounded memory.

    Transitions are counted per trace, so a batch is counted once its traces are
    complete. The result equals (:meth:`TransitionCounts.equals`)
    ``count_transitions`` of the whole table.

    Parameters
    ----------
    path : str or path
        A Parquet file or a directory of them (see :func:`summarize_latency_parquet`);
        files are read in sorted order, as one table.
    mode : {"sequence", "calls"}, default "sequence"
        See :mod:`bayesperf.summaries.transitions`.
    batch_size : int, default 1_000_000
        Rows per batch.
    presorted : bool, default True
        True: the rows of each trace are contiguous (trace exporters write them so; or
        sort by ``trace_id``). The last trace of each batch is carried into the next
        one; memory is one batch plus the largest trace, plus 8 bytes per trace for
        the set of 64-bit hashes of finished trace ids, which detects a trace that
        resumes after another one. False: a first pass hash-partitions the spans by
        trace id into ``n_buckets`` Parquet files in a temporary directory, then each
        bucket is counted whole: any row order works, at the cost of writing the
        needed columns once to disk.
    n_buckets : int, optional
        Buckets for ``presorted=False``; default: rows / ``batch_size``, rounded up,
        so that a bucket holds about one batch.
    tmpdir : str or path, optional
        Where the temporary buckets go (default: the system's temporary directory).

    Returns
    -------
    TransitionCounts

    Raises
    ------
    ValueError
        With ``presorted=True``, when a trace's rows are not contiguous (the message
        names the trace and suggests sorting or ``presorted=False``); a missing
        column; spans without a trace id.

    Notes
    -----
    A 64-bit hash collision between two distinct trace ids would be reported as a
    contiguity violation; with 10^8 traces its probability is about 3e-4.
    """
    mode = _check_mode(mode)
    files = _resolve(path)
    available = set().union(*(_file_columns(f) for f in files))
    columns = _transition_columns(mode, available)
    required = [S.TRACE_ID, S.SERVICE] + ([S.CALLER] if mode == "calls" else [])
    absent = [c for c in required if c not in available]
    if absent:
        raise ValueError(
            f"{mode!r} transitions need column(s) {absent}; "
            f"the Parquet data has {sorted(available)}"
        )
    frames = _iter_frames(files, columns, batch_size, required=required)
    if presorted:
        return _count_presorted(frames, mode)
    if n_buckets is None:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        n_buckets = max(1, math.ceil(rows / batch_size))
    with tempfile.TemporaryDirectory(prefix="bayesperf-buckets-", dir=tmpdir) as tmp:
        buckets = _hash_partition(frames, Path(tmp), n_buckets)
        total = TransitionCounts.empty(mode)
        for bucket in buckets:
            frame = pq.read_table(bucket).to_pandas()
            total = total + count_transitions(frame, mode)
    return total


def _check_trace_ids(file: Path, start: int, frame: pd.DataFrame) -> None:
    if frame[S.TRACE_ID].isna().any():
        i = int(np.flatnonzero(frame[S.TRACE_ID].isna().to_numpy())[0])
        raise ValueError(
            f"{file} row {start + i}: span without a trace id; transitions need one per span "
            "(bayesperf.read_traces drops such spans)"
        )


def _count_presorted(frames, mode: Mode) -> TransitionCounts:
    total = TransitionCounts.empty(mode)
    finished = _HashSet()
    carry: pd.DataFrame | None = None
    for file, start, batch in frames:
        _check_trace_ids(file, start, batch)
        frame = batch if carry is None else pd.concat([carry, batch], ignore_index=True)
        ids = frame[S.TRACE_ID]
        unique = pd.unique(ids.to_numpy(dtype=object))
        resumed = finished.contains(_hash_ids(unique))
        if resumed.any():
            trace = unique[np.flatnonzero(resumed)[0]]
            raise ValueError(
                f"trace {trace!r} continues in {file} (rows from {start}) after other traces: "
                "counting transitions from Parquet in batches needs the rows of each trace "
                "to be contiguous. Sort the data by trace_id (e.g. "
                "table.sort_by('trace_id') in pyarrow, or spans.sort_values('trace_id', "
                "kind='stable') in pandas) or pass presorted=False"
            )
        is_last = (ids == ids.iloc[-1]).to_numpy()
        done = frame.loc[~is_last]
        carry = frame.loc[is_last]
        if len(done):
            total = total + count_transitions(done, mode)
            finished.add(_hash_ids(pd.unique(done[S.TRACE_ID].to_numpy(dtype=object))))
    if carry is not None:
        total = total + count_transitions(carry, mode)
    return total


def _hash_partition(frames, tmp: Path, n_buckets: int) -> list[Path]:
    """First pass of ``presorted=False``: spans into ``n_buckets`` files by trace id hash.

    Rows keep their order within a bucket, so within a trace.
    """
    writers: dict[int, pq.ParquetWriter] = {}
    schema: pa.Schema | None = None
    try:
        for file, start, frame in frames:
            _check_trace_ids(file, start, frame)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.cast(_plain_schema(table.schema)) if schema is None else table
            if schema is None:
                schema = table.schema
            else:
                table = table.cast(schema)
            bucket = _hash_ids(frame[S.TRACE_ID]) % np.uint64(n_buckets)
            order = np.argsort(bucket, kind="stable")
            sorted_buckets = bucket[order]
            bounds = np.flatnonzero(np.diff(sorted_buckets)) + 1
            for chunk in np.split(order, bounds):
                if not len(chunk):
                    continue
                b = int(bucket[chunk[0]])
                if b not in writers:
                    writers[b] = pq.ParquetWriter(tmp / f"bucket-{b:05d}.parquet", schema)
                writers[b].write_table(table.take(chunk))
    finally:
        for writer in writers.values():
            writer.close()
    return [tmp / f"bucket-{b:05d}.parquet" for b in sorted(writers)]


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """The schema with dictionary columns decoded and no pandas metadata.

    Batches of different files may encode a column differently (dictionary or not);
    the buckets all use this one schema.
    """
    fields = [
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in schema
    ]
    fields = [
        pa.field(f.name, pa.large_string() if pa.types.is_string(f.type) else f.type)
        for f in fields
    ]
    return pa.schema(fields)


# ------------------------------------------------------------------------------- Dask
def _import_dask():
    try:
        import dask
        import dask.dataframe
    except ImportError as exc:  # pragma: no cover - the dev environment has dask
        raise ImportError(_DASK_MISSING) from exc
    return dask


def _tree_sum(dask, items: list, split_every: int = 8):
    """Add delayed summaries pairwise-ish in a tree of fan-in ``split_every``."""
    if not items:
        raise ValueError("the Dask DataFrame has no partitions")
    while len(items) > 1:
        items = [
            dask.delayed(_sum)(items[i : i + split_every])
            for i in range(0, len(items), split_every)
        ]
    return items[0]


def _check_dask_columns(ddf, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in ddf.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(ddf.columns)}")


def summarize_latency_dask(
    ddf, by: By = (S.CALLER, S.CALLEE), *, bins: LogBins = DEFAULT_BINS, split_every: int = 8
) -> LatencySummary:
    """Summarize latencies of a Dask DataFrame: one summary per partition, added up.

    The result equals (:meth:`LatencySummary.equals`) ``summarize_latency`` of the
    concatenated partitions, whatever the partitioning and the categories each
    partition holds. Runs on the current Dask scheduler (a ``distributed`` client's
    cluster when one is active).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        A span table with ``latency`` and the ``by`` columns.
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping, as in :func:`~bayesperf.summarize_latency`.
    bins : LogBins
        The bin grid.
    split_every : int, default 8
        Fan-in of the tree that adds the partition summaries.

    Returns
    -------
    LatencySummary

    Raises
    ------
    ImportError
        Without the ``dask`` extra.
    ValueError
        A missing column, or (at compute time) an invalid latency.
    """
    dask = _import_dask()
    by_t = normalize_by(by)
    columns = [*by_t, S.LATENCY]
    _check_dask_columns(ddf, columns, "summarize_latency")
    parts = ddf[columns].to_delayed()
    summaries = [dask.delayed(summarize_latency)(p, by_t, bins=bins) for p in parts]
    (result,) = dask.compute(_tree_sum(dask, summaries, split_every))
    return result


def _tag_rows(part: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    """Add the row's position in the whole table: (partition number, row in partition)."""
    number = partition_info["number"] if partition_info else 0
    return part.assign(
        _bp_part=np.full(len(part), number, dtype=np.int64),
        _bp_pos=np.arange(len(part), dtype=np.int64),
    )


def _count_partition(part: pd.DataFrame, mode: Mode) -> TransitionCounts:
    """Count a shuffled partition: whole traces, rows back in table order."""
    part = part.sort_values(["_bp_part", "_bp_pos"], kind="stable")
    part = part.drop(columns=["_bp_part", "_bp_pos"]).reset_index(drop=True)
    return count_transitions(part, mode)


def count_transitions_dask(
    ddf,
    mode: Mode = "sequence",
    *,
    npartitions: int | None = None,
    shuffle_method: str | None = None,
    split_every: int = 8,
) -> TransitionCounts:
    """Count transitions of a Dask DataFrame: shuffle by trace, count per partition, add.

    The needed columns are shuffled on ``trace_id`` so that each trace lives in one
    partition; each row carries its position in the table so that spans keep their
    table order within a trace (ties in start time). The result equals
    (:meth:`TransitionCounts.equals`) ``count_transitions`` of the concatenated
    partitions.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        A span table (columns as for :func:`~bayesperf.count_transitions`).
    mode : {"sequence", "calls"}, default "sequence"
        See :mod:`bayesperf.summaries.transitions`.
    npartitions : int, optional
        Partitions after the shuffle (default: as many as ``ddf`` has).
    shuffle_method : str, optional
        Passed to :meth:`dask.dataframe.DataFrame.shuffle` (``"p2p"``, ``"tasks"``,
        ``"disk"``); default: Dask's choice (``"p2p"`` on a distributed cluster).
    split_every : int, default 8
        Fan-in of the tree that adds the partition counts.

    Returns
    -------
    TransitionCounts

    Raises
    ------
    ImportError
        Without the ``dask`` extra.
    ValueError
        A missing column.
    """
    dask = _import_dask()
    mode = _check_mode(mode)
    needed = [S.TRACE_ID, S.SERVICE] + ([S.CALLER] if mode == "calls" else [])
    _check_dask_columns(ddf, needed, f"{mode!r} transitions")
    columns = _transition_columns(mode, set(ddf.columns))
    table = ddf[columns]
    meta = _tag_rows(table._meta)
    tagged = table.map_partitions(_tag_rows, meta=meta)
    shuffled = tagged.shuffle(
        on=S.TRACE_ID,
        npartitions=npartitions or table.npartitions,
        shuffle_method=shuffle_method,
    )
    counts = [dask.delayed(_count_partition)(p, mode) for p in shuffled.to_delayed()]
    (result,) = dask.compute(_tree_sum(dask, counts, split_every))
    return result
