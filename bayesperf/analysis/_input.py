"""What every analysis shares: accepting span tables, group keys, posterior draws.

The analyses accept the canonical span table (:mod:`bayesperf.schema`), the seed
notebook's flat ``parsed_traces.csv`` loaded with :func:`pandas.read_csv` (the same
columns, as plain strings), or a path that :func:`bayesperf.read_traces` can read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.models.latency import MISSING_KEY, LatencyModel
from bayesperf.summaries.latency import LatencySummary

Traces = pd.DataFrame | str | os.PathLike[str]


def span_table(traces: Traces, required: Sequence[str], *, what: str = "traces") -> pd.DataFrame:
    """A span table with the ``required`` columns, or a clear error.

    A path is read with :func:`bayesperf.read_traces`. A table without ``caller`` /
    ``callee`` but with ``service`` (and ``span_id`` / ``parent_id`` links) is completed
    the way the canonical CSV reader does it; so is a start-time column under another
    common name (``timestamp``, ``startTime``, ``ts``, ...), which becomes ``start_time``.

    Examples
    --------
    >>> t = span_table(pd.DataFrame({"caller": ["a"], "callee": ["b"], "latency": [1.0]}),
    ...                ["caller", "callee", "latency"])
    >>> len(t)
    1
    >>> span_table(pd.DataFrame({"latency": [1.0]}), ["trace_id", "latency"])
    Traceback (most recent call last):
    ...
    ValueError: traces lack column(s) ['trace_id'] (they have ['latency']); ...
    """
    if isinstance(traces, str | os.PathLike):
        from bayesperf.io import read_traces

        traces = read_traces(traces)
    if not isinstance(traces, pd.DataFrame):
        raise TypeError(
            f"{what} must be a span table (pandas.DataFrame) or a path to trace files, "
            f"got {type(traces).__name__}"
        )
    if len(traces) == 0:
        raise ValueError(f"{what} hold no spans: nothing to analyse")
    if S.START_TIME not in traces.columns:
        from bayesperf.io.canonical_csv import with_start_time

        # ``timestamp``, ``startTime``, ``ts``, ... (schema.START_TIME_ALIASES)
        traces = with_start_time(traces, what, lambda i: f"row {i}")
    needs_pairs = {S.CALLER, S.CALLEE} & set(required)
    if needs_pairs and not needs_pairs <= set(traces.columns) and S.SERVICE in traces.columns:
        from bayesperf.io import read_traces

        # The canonical reader derives caller/callee from service and parent links.
        traces = read_traces(_text_ids(traces), format="csv")
    traces = _parsed_times(traces, what)
    missing = [c for c in required if c not in traces.columns]
    if missing:
        raise ValueError(
            f"{what} lack column(s) {missing} (they have {list(traces.columns)}); "
            "read trace files with bayesperf.read_traces, which fills the canonical columns"
        )
    return traces


def _parsed_times(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """``start_time`` as datetimes when ``pandas.read_csv`` left it as text (the seed CSV)."""
    col = frame.get(S.START_TIME)
    if col is None or not (pd.api.types.is_string_dtype(col) or col.dtype == object):
        return frame
    try:
        parsed = pd.to_datetime(col, utc=True, format="ISO8601")
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{what}: column {S.START_TIME!r} holds text that is not an ISO 8601 time "
            f"(first value {col.iloc[0]!r}): {err}"
        ) from None
    return frame.assign(**{S.START_TIME: parsed})


def _text_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids as text, so that parent links survive ``pandas.read_csv``.

    ``read_csv`` turns ids like ``"7"`` into numbers (and a column with missing parents
    into floats, ``7.0``).
    """
    fixed = {}
    for col in (S.SPAN_ID, S.PARENT_ID, S.TRACE_ID):
        if col in frame.columns and pd.api.types.is_numeric_dtype(frame[col]):
            values = frame[col]
            if (values.dropna() % 1 == 0).all():
                values = values.astype("Int64")
            fixed[col] = values.astype("str")
    return frame.assign(**fixed) if fixed else frame


def group_codes(spans: pd.DataFrame, model: LatencyModel) -> np.ndarray:
    """Index of each span's group in ``model.groups``; -1 where the model has no such group."""
    by = model.by
    missing = [c for c in by if c not in spans.columns]
    if missing:
        raise ValueError(f"spans lack the model's grouping column(s) {missing}")
    keys = [_key_strings(spans[c]) for c in by]
    groups = model.groups
    if isinstance(groups, pd.MultiIndex):
        index = pd.MultiIndex.from_arrays(keys)
    else:
        index = pd.Index(keys[0]) if keys else pd.Index(np.full(len(spans), "all"))
    return np.asarray(groups.get_indexer(index), dtype=np.int64)


def _key_strings(col: pd.Series) -> np.ndarray:
    """Group keys as the model spells them: strings, a missing key as ``(none)``."""
    return col.astype("str").fillna(MISSING_KEY).to_numpy(dtype=object)


def group_label(model: LatencyModel, g: int) -> tuple[str, ...]:
    """The group ``g`` as a tuple of key strings."""
    label = model.groups[g]
    return tuple(label) if isinstance(label, tuple) else (label,)


def find_group(model: LatencyModel, key: str | Sequence[str | None]) -> int:
    """Position of a group given as ``(caller, callee)`` (``None`` for a root's caller)."""
    parts = (key,) if isinstance(key, str) else tuple(key)
    parts = tuple(MISSING_KEY if p is None else str(p) for p in parts)
    groups = model.groups
    label = parts if isinstance(groups, pd.MultiIndex) else parts[0]
    if len(parts) != max(groups.nlevels, 1) or label not in groups:
        known = [group_label(model, i) for i in range(min(len(groups), 10))]
        raise KeyError(
            f"unknown {model.group_dim} {key!r}: the model has {len(groups)} groups "
            f"by {model.by}, e.g. {known}"
        )
    return int(groups.get_loc(label))


def stacked(da) -> np.ndarray:
    """A (chain, draw, group[, ...]) DataArray as (group[, ...], samples)."""
    return da.stack(sample=("chain", "draw")).transpose(..., "sample").to_numpy()


def summary_digest(summary: LatencySummary) -> str:
    """A content hash of a latency summary: equal data, equal digest (the cache key)."""
    h = hashlib.sha256()
    h.update(repr(summary.by).encode())
    h.update("\x1f".join(map(str, summary.groups.tolist())).encode())
    for arr in (
        summary.count,
        summary.sum_log_fx,
        summary.sum_log2_fx,
        summary.sum_ns,
        summary.edges,
    ):
        h.update(np.ascontiguousarray(arr).tobytes())
    g, b = np.nonzero(summary.bin_counts)
    for arr in (g, b, summary.bin_counts[g, b]):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return h.hexdigest()
