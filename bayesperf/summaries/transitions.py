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

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesperf import schema as S
from bayesperf.summaries import _inputs

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
        return _inputs.handler("count_transitions")(spans, mode)
    mode = _check_spans(spans, mode)
    if len(spans) == 0:
        return TransitionCounts.empty(mode)
    if mode == "sequence":
        return _sequence(spans)
    return _calls(spans)


def _check_spans(spans: pd.DataFrame, mode: str) -> Mode:
    """The mode, checked, after checking the table has what the mode needs."""
    mode = _check_mode(mode)
    needed = [S.TRACE_ID, S.SERVICE] + ([S.CALLER] if mode == "calls" else [])
    missing = [c for c in needed if c not in spans.columns]
    if missing:
        raise ValueError(
            f"{mode!r} transitions need column(s) {missing}; the table has {list(spans.columns)}"
        )
    if spans[S.SERVICE].isna().any():
        raise ValueError("span table has spans without a service; read it with read_traces")
    return mode


def _sequence(spans: pd.DataFrame) -> TransitionCounts:
    _, source, target = _sequence_edges(spans)
    return TransitionCounts("sequence", _tidy(source, target, np.ones(len(source))))


def _sequence_edges(spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every "sequence" transition: trace code, source and target (object arrays)."""
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
    return np.concatenate([trace[first], trace[inner], trace[last]]), source, target


def _calls(spans: pd.DataFrame) -> TransitionCounts:
    _, source, target, skipped = _calls_edges(spans)
    return TransitionCounts("calls", _tidy(source, target, np.ones(len(source))), skipped)


def _calls_edges(
    spans: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Counter[str]]:
    """Every "calls" transition: trace code, source, target; and the skipped spans."""
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
    return np.concatenate([trace[known], trace[is_leaf]]), source, target, skipped


# --------------------------------------------------------------------------------------
# Per-trace counts
# --------------------------------------------------------------------------------------
#: splitmix64 constants (pattern hashing in TraceTransitionCounts).
_MIX = np.array([0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB], np.uint64)
_SALT = np.array([0x5851F42D4C957F2D], np.uint64)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each element (uint64 arithmetic wraps, by design)."""
    z = x + _MIX[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX[1]
    z = (z ^ (z >> np.uint64(27))) * _MIX[2]
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True, eq=False)
class TraceTransitionCounts:
    """Transition counts per trace and source, with identical patterns merged.

    A *cell* is one trace's transitions out of one source: a sparse count vector over
    targets (its *pattern*). Requests of one type repeat their path, so most patterns
    recur: each distinct ``(source, pattern)`` is stored once with the number of
    ``traces`` that showed it. This is what over-dispersion needs (how much the
    transitions of one trace agree) and is the pointwise unit of the transition models'
    log-likelihood. Summing over cells gives :class:`TransitionCounts` exactly
    (:meth:`to_counts`).

    Attributes
    ----------
    mode : {"sequence", "calls"}
        How transitions were defined (as in :func:`count_transitions`).
    cells : pandas.DataFrame
        One row per distinct cell (index ``cell``, 0..C-1), sorted by ``source`` then
        ``pattern``: ``source``; ``pattern``, a stable text key of the count vector
        (JSON ``{"target": count, ...}``, targets sorted by name); ``n``, the
        transitions of one trace in the cell; ``traces``, how many traces showed it.
    entries : pandas.DataFrame
        The patterns, sparse: ``cell``, ``target``, ``count`` (> 0), sorted by cell then
        target name.
    skipped : collections.Counter
        Spans that yielded no transition, by reason.

    Examples
    --------
    >>> import pandas as pd
    >>> spans = pd.DataFrame({"trace_id": ["t", "t", "t", "u", "u", "u"],
    ...                       "service": ["a", "b", "a", "a", "b", "a"],
    ...                       "start_time": [1, 2, 3, 1, 2, 3]})
    >>> cells = count_trace_transitions(spans, mode="sequence")
    >>> cells.cells[["source", "pattern", "n", "traces"]].values.tolist()
    [['START', '{"a":1}', 1, 2], ['a', '{"END":1,"b":1}', 2, 2], ['b', '{"a":1}', 1, 2]]
    >>> cells.to_counts().equals(count_transitions(spans, mode="sequence"))
    True
    """

    mode: Mode
    cells: pd.DataFrame
    entries: pd.DataFrame
    skipped: Counter[str] = field(default_factory=Counter)

    # ----------------------------------------------------------------- properties
    @property
    def total(self) -> int:
        """Number of transitions counted (over all traces)."""
        return int((self.cells["n"] * self.cells["traces"]).sum())

    @property
    def n_cells(self) -> int:
        """Number of distinct ``(source, pattern)`` cells."""
        return len(self.cells)

    @property
    def n_units(self) -> int:
        """Number of ``(trace, source)`` pairs with a transition (Σ ``traces``)."""
        return int(self.cells["traces"].sum())

    def __repr__(self) -> str:
        return (
            f"TraceTransitionCounts(mode={self.mode!r}, cells={self.n_cells}, "
            f"trace_sources={self.n_units}, transitions={self.total})"
        )

    # ----------------------------------------------------------------- conversions
    def to_counts(self) -> TransitionCounts:
        """The aggregate ``source -> target`` counts (exactly :func:`count_transitions`)."""
        cell = self.entries["cell"].to_numpy()
        return TransitionCounts(
            mode=self.mode,
            counts=_tidy(
                self.cells["source"].to_numpy(dtype=object)[cell],
                self.entries["target"].to_numpy(dtype=object),
                self.entries["count"].to_numpy() * self.cells["traces"].to_numpy()[cell],
            ),
            skipped=Counter(self.skipped),
        )

    def to_frame(self) -> pd.DataFrame:
        """Long table: ``cell``, ``source``, ``pattern``, ``traces``, ``target``, ``count``."""
        cell = self.entries["cell"].to_numpy()
        return pd.DataFrame(
            {
                "cell": cell,
                "source": self.cells["source"].to_numpy()[cell],
                "pattern": self.cells["pattern"].to_numpy()[cell],
                "traces": self.cells["traces"].to_numpy()[cell],
                "target": self.entries["target"].to_numpy(),
                "count": self.entries["count"].to_numpy(),
            }
        ).astype({"source": "str", "pattern": "str", "target": "str"})

    def without_end(self) -> TraceTransitionCounts:
        """The same counts without ``service -> END`` transitions (patterns re-merged)."""
        keep = (self.entries["target"] != S.END).to_numpy()
        return self._recount(self.entries[keep], self.skipped)

    def __add__(self, other: TraceTransitionCounts) -> TraceTransitionCounts:
        """Counts of both inputs together (exact; the traces must be distinct)."""
        if not isinstance(other, TraceTransitionCounts):
            return NotImplemented
        if self.mode != other.mode:
            raise ValueError(f"cannot add {self.mode!r} and {other.mode!r} transition counts")
        shifted = other.entries.assign(cell=other.entries["cell"] + self.n_cells)
        both = TraceTransitionCounts(
            self.mode,
            pd.concat([self.cells, other.cells], ignore_index=True),
            pd.concat([self.entries, shifted], ignore_index=True),
        )
        return both._recount(both.entries, self.skipped + other.skipped)

    def _recount(self, entries: pd.DataFrame, skipped: Counter[str]) -> TraceTransitionCounts:
        """Re-merge patterns of (a subset of) these entries, each cell a unit."""
        cell = entries["cell"].to_numpy()
        return TraceTransitionCounts._from_edges(
            self.mode,
            cell,
            self.cells["source"].to_numpy(dtype=object)[cell],
            entries["target"].to_numpy(dtype=object),
            entries["count"].to_numpy(np.int64),
            weight=self.cells["traces"].to_numpy(np.int64),
            skipped=skipped,
        )

    def equals(self, other: TraceTransitionCounts) -> bool:
        """Same mode, cells, entries and skipped spans."""
        return (
            self.mode == other.mode
            and self.cells.equals(other.cells)
            and self.entries.equals(other.entries)
            and self.skipped == other.skipped
        )

    def to_dataset(self):
        """As an :class:`xarray.Dataset` (dims ``cell`` and ``entry``), for saving."""
        import xarray as xr

        return xr.Dataset(
            {
                "cell_source": ("cell", self.cells["source"].to_numpy(dtype=str)),
                "cell_pattern": ("cell", self.cells["pattern"].to_numpy(dtype=str)),
                "cell_n": ("cell", self.cells["n"].to_numpy(np.int64)),
                "cell_traces": ("cell", self.cells["traces"].to_numpy(np.int64)),
                "entry_cell": ("entry", self.entries["cell"].to_numpy(np.int64)),
                "entry_target": ("entry", self.entries["target"].to_numpy(dtype=str)),
                "entry_count": ("entry", self.entries["count"].to_numpy(np.int64)),
            },
            attrs={"mode": self.mode, "skipped": json.dumps(dict(self.skipped))},
        )

    @classmethod
    def from_dataset(cls, ds) -> TraceTransitionCounts:
        """Inverse of :meth:`to_dataset`."""
        cells = pd.DataFrame(
            {
                "source": pd.array(ds["cell_source"].to_numpy().astype(str), dtype="str"),
                "pattern": pd.array(ds["cell_pattern"].to_numpy().astype(str), dtype="str"),
                "n": ds["cell_n"].to_numpy().astype(np.int64),
                "traces": ds["cell_traces"].to_numpy().astype(np.int64),
            }
        )
        cells.index.name = "cell"
        entries = pd.DataFrame(
            {
                "cell": ds["entry_cell"].to_numpy().astype(np.int64),
                "target": pd.array(ds["entry_target"].to_numpy().astype(str), dtype="str"),
                "count": ds["entry_count"].to_numpy().astype(np.int64),
            }
        )
        skipped = Counter(json.loads(ds.attrs.get("skipped", "{}")))
        return cls(_check_mode(ds.attrs["mode"]), cells, entries, skipped)

    @classmethod
    def from_frame(
        cls, table: pd.DataFrame, mode: Mode = "sequence", *, skipped: Counter | None = None
    ) -> TraceTransitionCounts:
        """Build from a long table with ``trace``, ``source``, ``target``, ``count`` columns.

        Rows of the same (trace, source, target) are added up; zero counts are dropped.

        Examples
        --------
        >>> import pandas as pd
        >>> table = pd.DataFrame({"trace": [1, 1, 2], "source": ["a", "a", "a"],
        ...                       "target": ["b", "c", "b"], "count": [2, 1, 3]})
        >>> TraceTransitionCounts.from_frame(table).cells["pattern"].tolist()
        ['{"b":2,"c":1}', '{"b":3}']
        """
        missing = {"trace", "source", "target", "count"} - set(table.columns)
        if missing:
            raise ValueError(f"per-trace transition table lacks column(s) {sorted(missing)}")
        counts = table["count"].to_numpy()
        if np.any(counts < 0) or not np.all(np.equal(np.mod(counts, 1), 0)):
            raise ValueError("transition counts must be non-negative whole numbers")
        return cls._from_edges(
            _check_mode(mode),
            pd.factorize(table["trace"])[0],
            table["source"].astype("str").to_numpy(dtype=object),
            table["target"].astype("str").to_numpy(dtype=object),
            counts.astype(np.int64),
            skipped=Counter(skipped or {}),
        )

    @classmethod
    def empty(cls, mode: Mode = "sequence") -> TraceTransitionCounts:
        """No transitions: the identity of ``+``."""
        none = np.zeros(0, dtype=object)
        return cls._from_edges(_check_mode(mode), np.zeros(0, np.int64), none, none, None)

    # -------------------------------------------------------------------- builder
    @classmethod
    def _from_edges(
        cls,
        mode: Mode,
        trace: np.ndarray,
        source: np.ndarray,
        target: np.ndarray,
        count: np.ndarray | None,
        *,
        weight: np.ndarray | None = None,
        skipped: Counter[str] | None = None,
    ) -> TraceTransitionCounts:
        """Merge ``(trace, source, target, count)`` rows into cells.

        A unit is a ``(trace, source)`` pair; ``weight[trace]`` (default 1) is how many
        traces it stands for. Patterns are matched by two 64-bit hashes of their
        sorted entries, then every unit is checked entry by entry against its cell's
        representative (so the merge is exact, not probabilistic).
        """
        count = np.ones(len(trace), np.int64) if count is None else np.asarray(count, np.int64)
        keep = count > 0
        trace, source, target, count = trace[keep], source[keep], target[keep], count[keep]
        # State codes in name order, so target codes sort like target names.
        codes, uniques = pd.factorize(np.concatenate([source, target]))
        order = np.argsort(np.asarray(uniques, dtype=str), kind="stable")
        labels = np.asarray(uniques, dtype=object)[order]
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        k = max(len(labels), 1)
        src, tgt = rank[codes[: len(source)]], rank[codes[len(source) :]]
        unit, unit_first = pd.factorize(np.asarray(trace, np.int64) * k + src)
        unit_trace = np.asarray(unit_first, np.int64) // k
        unit_src = np.asarray(unit_first, np.int64) % k
        unit_weight = np.ones(len(unit_first), np.int64) if weight is None else weight[unit_trace]
        # Rows: one per (unit, target), sorted by unit then target.
        key = unit.astype(np.int64) * k + tgt
        by_key = np.argsort(key, kind="stable")
        key = key[by_key]
        start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        row_count = np.add.reduceat(count[by_key], start) if len(key) else count
        row_unit, row_tgt = key[start] // k, key[start] % k
        unit_start = np.flatnonzero(np.r_[True, row_unit[1:] != row_unit[:-1]])[: len(row_unit)]
        size = np.diff(np.append(unit_start, len(row_unit)))
        n = np.add.reduceat(row_count, unit_start) if len(row_unit) else row_count
        material = (row_tgt.astype(np.uint64) << np.uint64(32)) ^ row_count.astype(np.uint64)
        h = np.add.reduceat(_splitmix(material), unit_start) if len(material) else material
        h = _splitmix(h ^ _splitmix(unit_src.astype(np.uint64) ^ _SALT)) + size.astype(np.uint64)
        cell, _ = pd.factorize(h)
        rep = np.empty(cell.max(initial=-1) + 1, np.int64)
        rep[cell[::-1]] = np.arange(len(cell))[::-1]  # first unit of each cell
        twin_unit = rep[cell]
        offset = np.arange(len(row_unit)) - np.repeat(unit_start, size)
        twin = np.repeat(unit_start[twin_unit], size) + offset
        same = (
            np.array_equal(unit_src[twin_unit], unit_src)
            and np.array_equal(size[twin_unit], size)
            and np.array_equal(row_tgt[np.minimum(twin, len(row_tgt) - 1)], row_tgt)
            and np.array_equal(row_count[np.minimum(twin, len(row_tgt) - 1)], row_count)
        )
        if not same:  # a hash collision (never seen): match patterns exactly instead
            exact = [
                (int(unit_src[u]), tuple(row_tgt[a:b]), tuple(row_count[a:b]))
                for u, (a, b) in enumerate(zip(unit_start, unit_start + size, strict=True))
            ]
            cell, rep = _factorize_first(exact)
        traces = np.bincount(cell, weights=unit_weight, minlength=len(rep)).astype(np.int64)
        # Cell text keys, for the distinct patterns only.
        patterns = [
            json.dumps(
                dict(
                    zip(
                        labels[row_tgt[a:b]].tolist(),
                        row_count[a:b].tolist(),
                        strict=True,
                    )
                ),
                separators=(",", ":"),
            )
            for a, b in zip(unit_start[rep], (unit_start + size)[rep], strict=True)
        ]
        cells = pd.DataFrame(
            {
                "source": pd.array(labels[unit_src[rep]].astype(str), dtype="str"),
                "pattern": pd.array(np.asarray(patterns, dtype=object).astype(str), dtype="str"),
                "n": n[rep].astype(np.int64),
                "traces": traces,
            }
        )
        cells = cells.sort_values(["source", "pattern"], kind="stable")
        # Entries of each cell's representative unit, in the new cell order.
        first, length = unit_start[rep][cells.index], size[rep][cells.index]
        rows = np.repeat(first - np.cumsum(length) + length, length) + np.arange(length.sum())
        entries = pd.DataFrame(
            {
                "cell": np.repeat(np.arange(len(cells), dtype=np.int64), length),
                "target": pd.array(labels[row_tgt[rows]].astype(str), dtype="str"),
                "count": row_count[rows].astype(np.int64),
            }
        )
        cells = cells.reset_index(drop=True)
        cells.index.name = "cell"
        return cls(mode, cells, entries, Counter(skipped or {}))


def _factorize_first(keys: list) -> tuple[np.ndarray, np.ndarray]:
    """Codes of hashable keys and the first position of each distinct key."""
    seen: dict = {}
    codes = np.empty(len(keys), np.int64)
    for i, key in enumerate(keys):
        codes[i] = seen.setdefault(key, len(seen))
    first = np.empty(len(seen), np.int64)
    first[codes[::-1]] = np.arange(len(keys))[::-1]
    return codes, first


def count_trace_transitions(
    spans: pd.DataFrame, mode: Mode = "sequence", *, include_end: bool = True
) -> TraceTransitionCounts:
    """Count transitions per trace and source, merging identical count patterns.

    The transitions are exactly those of :func:`count_transitions` (same modes, same
    ``START``/``END``, same skipped spans); they are kept apart per trace: a cell is the
    count vector of one trace's transitions out of one source, and identical cells are
    stored once with their number of traces. Summed, they give ``count_transitions``.

    Parameters
    ----------
    spans : pandas.DataFrame
        A span table, as for :func:`count_transitions` (Parquet paths and Dask
        DataFrames are not supported here: read the table first).
    mode : {"sequence", "calls"}, default "sequence"
        See :mod:`bayesperf.summaries.transitions`.
    include_end : bool, default True
        Keep ``service -> END`` transitions (``False``: drop them before merging).

    Returns
    -------
    TraceTransitionCounts

    Raises
    ------
    ValueError
        An unknown mode, a missing column, spans without a service.
    TypeError
        ``spans`` is not a pandas DataFrame.

    Examples
    --------
    >>> import bayesperf
    >>> from bayesperf.summaries.transitions import count_trace_transitions
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> cells = count_trace_transitions(spans, mode="calls")
    >>> cells.to_counts().equals(bayesperf.count_transitions(spans, mode="calls"))
    True
    >>> cells.n_cells < cells.n_units  # request types repeat their patterns
    True
    """
    if not isinstance(spans, pd.DataFrame):
        raise TypeError(
            "count_trace_transitions needs a pandas span table (read Parquet or Dask data "
            f"with bayesperf.read_traces or .compute() first), got {type(spans).__name__}"
        )
    mode = _check_spans(spans, mode)
    if len(spans) == 0:
        return TraceTransitionCounts.empty(mode)
    if mode == "sequence":
        trace, source, target = _sequence_edges(spans)
        skipped: Counter[str] = Counter()
    else:
        trace, source, target, skipped = _calls_edges(spans)
    if not include_end:
        keep = target != S.END
        trace, source, target = trace[keep], source[keep], target[keep]
    return TraceTransitionCounts._from_edges(mode, trace, source, target, None, skipped=skipped)
