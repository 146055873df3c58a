"""Service-to-service transition counts: the sufficient statistic of a Markov chain.

Two definitions, both opening every request with ``START`` and closing paths with
``END`` so path lengths are finite:

``"sequence"`` (the seed notebook's)
    Within each trace, the services of its spans in start-time order:
    ``START -> s1 -> s2 -> ... -> sn -> END``. Spans with equal start times keep their
    table order; spans without a start time come last, in table order.
``"calls"``
    The call tree: one ``caller -> callee`` transition per span (``START -> root``),
    plus ``service -> END`` for each span that calls nothing (a leaf). A walk from
    ``START`` is then a root-to-leaf path. Leaves come from parent links; a flat table
    without them counts a span as a leaf when its service calls nothing in its trace.
    Spans whose parent is missing from the data have no known caller: they are not
    counted as transitions and are reported in ``skipped``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesperf import schema as S

Mode = Literal["sequence", "calls"]
MODES: tuple[Mode, ...] = ("sequence", "calls")
#: Reason a span yields no transition in "calls" mode.
CALLER_UNKNOWN = "caller_unknown"


@dataclass(frozen=True, eq=False)
class TransitionCounts:
    """Sparse ``source -> target`` transition counts, mergeable with ``+``.

    Attributes
    ----------
    mode : {"sequence", "calls"}
        How transitions were defined (see the module docstring).
    counts : pandas.Series
        int64 counts indexed by a ``(source, target)`` MultiIndex; only non-zero
        entries, sorted.
    skipped : collections.Counter
        Spans that yielded no transition, by reason.

    Examples
    --------
    >>> import pandas as pd
    >>> spans = pd.DataFrame({"trace_id": ["t", "t"], "service": ["a", "b"],
    ...                       "start_time": [1, 2], "latency": [1.0, 1.0]})
    >>> t = count_transitions(spans, mode="sequence")
    >>> t.to_frame().values.tolist()
    [['START', 'a', 1], ['a', 'b', 1], ['b', 'END', 1]]
    """

    mode: Mode
    counts: pd.Series
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def states(self) -> pd.Index:
        """All states, ``START`` first and ``END`` last, services sorted between."""
        names = set(self.counts.index.get_level_values(0)) | set(
            self.counts.index.get_level_values(1)
        )
        services = sorted(names - {S.START, S.END})
        return pd.Index([S.START, *services, S.END], name="state", dtype="str")

    @property
    def total(self) -> int:
        """Number of transitions counted."""
        return int(self.counts.sum())

    def to_frame(self) -> pd.DataFrame:
        """Long table with columns ``source``, ``target``, ``count``."""
        return self.counts.rename("count").reset_index()

    def to_sparse(self) -> tuple[sp.csr_array, pd.Index]:
        """Counts as a sparse ``states x states`` matrix, with the state labels."""
        states = self.states
        src = states.get_indexer(self.counts.index.get_level_values(0))
        dst = states.get_indexer(self.counts.index.get_level_values(1))
        shape = (len(states), len(states))
        matrix = sp.csr_array((self.counts.to_numpy(), (src, dst)), shape=shape)
        return matrix, states

    @classmethod
    def from_frame(
        cls, table: pd.DataFrame, mode: Mode = "sequence", *, skipped: Counter | None = None
    ) -> TransitionCounts:
        """Build from a table with ``source``, ``target``, ``count`` columns.

        Repeated (source, target) rows are added up; zero counts are dropped.
        """
        missing = {"source", "target", "count"} - set(table.columns)
        if missing:
            raise ValueError(f"transition table lacks column(s) {sorted(missing)}")
        counts = table["count"].to_numpy()
        if np.any(counts < 0) or not np.all(np.equal(np.mod(counts, 1), 0)):
            raise ValueError("transition counts must be non-negative whole numbers")
        return cls(
            mode=_check_mode(mode),
            counts=_tidy(table["source"].astype("str"), table["target"].astype("str"), counts),
            skipped=Counter(skipped or {}),
        )

    def __add__(self, other: TransitionCounts) -> TransitionCounts:
        """Counts of both inputs together (exact)."""
        if not isinstance(other, TransitionCounts):
            return NotImplemented
        if self.mode != other.mode:
            raise ValueError(f"cannot add {self.mode!r} and {other.mode!r} transition counts")
        both = pd.concat([self.counts, other.counts])
        return TransitionCounts(
            mode=self.mode,
            counts=_tidy(
                both.index.get_level_values(0), both.index.get_level_values(1), both.to_numpy()
            ),
            skipped=self.skipped + other.skipped,
        )

    def equals(self, other: TransitionCounts) -> bool:
        """Same mode, same counts, same skipped spans."""
        return (
            self.mode == other.mode
            and self.counts.equals(other.counts)
            and self.skipped == other.skipped
        )

    @classmethod
    def empty(cls, mode: Mode = "sequence") -> TransitionCounts:
        """No transitions: the identity of ``+``."""
        return cls(mode=_check_mode(mode), counts=_tidy([], [], np.zeros(0, dtype=np.int64)))

    def __repr__(self) -> str:
        return (
            f"TransitionCounts(mode={self.mode!r}, states={len(self.states)}, "
            f"edges={len(self.counts)}, transitions={self.total})"
        )


def _check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise ValueError(f"unknown transition mode {mode!r}; expected one of {MODES}")
    return mode  # type: ignore[return-value]


def _tidy(source, target, counts) -> pd.Series:
    """Sum duplicates, drop zeros, sort: the canonical form of a counts Series."""
    frame = pd.DataFrame(
        {
            "source": pd.Series(np.asarray(source, dtype=object), dtype="str"),
            "target": pd.Series(np.asarray(target, dtype=object), dtype="str"),
            "count": np.asarray(counts, dtype=np.int64),
        }
    )
    series = frame.groupby(["source", "target"], sort=True)["count"].sum()
    return series[series > 0].astype(np.int64)


def count_transitions(
    spans: pd.DataFrame | str | os.PathLike[str] | Any, mode: Mode = "sequence"
) -> TransitionCounts:
    """Count service-to-service transitions in a span table.

    Parameters
    ----------
    spans : pandas.DataFrame, path or dask.dataframe.DataFrame
        A span table (``trace_id`` and ``service``; ``start_time`` for "sequence";
        ``caller`` and ideally ``span_id``/``parent_id`` for "calls"). A path to a
        Parquet file or directory is read in batches of 10^6 rows (the rows of each
        trace must be contiguous); a Dask DataFrame is shuffled by trace id and counted
        per partition. Both give the same counts as the pandas table would (see
        :mod:`bayesperf.summaries.backends`, which also has the options).
    mode : {"sequence", "calls"}, default "sequence"
        See the module docstring.

    Returns
    -------
    TransitionCounts

    Raises
    ------
    ValueError
        An unknown mode, a missing column, spans without a service; a path that is not
        Parquet, or Parquet rows of a trace that are not contiguous.
    TypeError
        ``spans`` is none of the accepted types.
    ImportError
        A Dask DataFrame without the ``dask`` extra installed.

    Examples
    --------
    >>> import bayesperf
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> t = bayesperf.count_transitions(spans, mode="calls")
    >>> int(t.counts.loc[("START", "frontend")])
    502
    """
    if not isinstance(spans, pd.DataFrame):  # a Parquet path or a Dask DataFrame
        from bayesperf.summaries.backends import count_transitions_any

        return count_transitions_any(spans, mode)
    mode = _check_mode(mode)
    needed = [S.TRACE_ID, S.SERVICE] + ([S.CALLER] if mode == "calls" else [])
    missing = [c for c in needed if c not in spans.columns]
    if missing:
        raise ValueError(
            f"{mode!r} transitions need column(s) {missing}; the table has {list(spans.columns)}"
        )
    if len(spans) == 0:
        return TransitionCounts.empty(mode)
    if spans[S.SERVICE].isna().any():
        raise ValueError("span table has spans without a service; read it with read_traces")
    if mode == "sequence":
        return _sequence(spans)
    return _calls(spans)


def _sequence(spans: pd.DataFrame) -> TransitionCounts:
    trace, _ = pd.factorize(spans[S.TRACE_ID])
    if S.START_TIME in spans.columns:
        start = spans[S.START_TIME]
        ns = (
            start.to_numpy(dtype="datetime64[ns]").astype(np.int64, copy=False)
            if (
                isinstance(start.dtype, pd.DatetimeTZDtype)
                or pd.api.types.is_datetime64_dtype(start)
            )
            else start.to_numpy(dtype=np.float64, na_value=np.nan)
        )
        ns = np.where(pd.isna(start).to_numpy(), np.iinfo(np.int64).max, ns)
    else:
        ns = np.zeros(len(spans), dtype=np.int64)
    order = np.lexsort((np.arange(len(spans)), ns, trace))  # last key sorts first
    services = spans[S.SERVICE].astype("str").to_numpy(dtype=object)[order]
    trace = trace[order]
    first = np.r_[True, trace[1:] != trace[:-1]]
    last = np.r_[trace[1:] != trace[:-1], True]
    inner = ~last
    source = np.concatenate(
        [np.full(first.sum(), S.START, dtype=object), services[inner], services[last]]
    )
    target = np.concatenate(
        [services[first], services[1:][inner[:-1]], np.full(last.sum(), S.END, dtype=object)]
    )
    return TransitionCounts("sequence", _tidy(source, target, np.ones(len(source))))


def _calls(spans: pd.DataFrame) -> TransitionCounts:
    services = spans[S.SERVICE].astype("str").to_numpy(dtype=object)
    callers = spans[S.CALLER].astype("str")
    has_caller = callers.notna().to_numpy()
    parents = spans[S.PARENT_ID] if S.PARENT_ID in spans.columns else None
    is_root = ~has_caller & (parents.isna().to_numpy() if parents is not None else True)
    unknown = ~has_caller & ~is_root

    # Leaves: from parent links in traces that have them (a span nobody names as parent),
    # else from services (a span whose service calls nothing in its trace). Decided per
    # trace, so counting a table equals adding the counts of its traces.
    trace = pd.factorize(spans[S.TRACE_ID])[0]
    own = pd.MultiIndex.from_arrays([trace, spans[S.SERVICE].astype("str")])
    calling = pd.MultiIndex.from_arrays([trace, callers])
    is_leaf = ~own.isin(calling[has_caller])
    if parents is not None and S.SPAN_ID in spans.columns and parents.notna().any():
        linked_traces = np.unique(trace[parents.notna().to_numpy()])
        linked = np.isin(trace, linked_traces)
        span_keys = pd.MultiIndex.from_arrays([trace, spans[S.SPAN_ID]])
        parent_keys = pd.MultiIndex.from_arrays([trace, parents])
        is_leaf = np.where(linked, ~span_keys.isin(parent_keys), is_leaf)

    known = ~unknown
    caller_values = callers.to_numpy(dtype=object)
    source = np.concatenate(
        [
            np.where(is_root, S.START, caller_values)[known],
            services[is_leaf],
        ]
    )
    target = np.concatenate([services[known], np.full(int(is_leaf.sum()), S.END, dtype=object)])
    skipped = Counter({CALLER_UNKNOWN: int(unknown.sum())} if unknown.any() else {})
    return TransitionCounts("calls", _tidy(source, target, np.ones(len(source))), skipped)
