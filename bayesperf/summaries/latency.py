"""Per-group latency summaries: small, exact, mergeable.

A :class:`LatencySummary` holds, for each group (a caller→callee pair, a service, ...):
the span count, the sufficient statistics of log-latency, the exact latency sum, min and
max, and counts on a fixed log-spaced bin grid (:mod:`bayesperf.summaries.bins`). That is
everything the latency models need: the lognormal likelihood is exact on the moments,
every other family is fit on the bins. Its size depends on the number of groups, never
on the number of spans.

Sums are kept in fixed point as int64 (log-latency to 2^-20, latency to 1 ns), so adding
summaries is associative and exact: the summary of a concatenation equals the sum of
the summaries, bit for bit, however the spans are partitioned (files, windows, Dask
partitions, Parquet batches).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesperf import schema as S
from bayesperf.summaries import _inputs
from bayesperf.summaries.bins import DEFAULT_BINS, LogBins

#: Fixed-point scale of log-latency sums: rounding error <= 2^-21 per span.
LOG_SCALE = 2**20
#: Fixed-point scale of latency sums: 1 ns.
NS_PER_MS = 1_000_000
#: Label of the one group of an overall (``by=None``) summary.
ALL = "all"

By = str | Sequence[str] | None


def normalize_by(by: By) -> tuple[str, ...]:
    """``"service"`` -> ``("service",)``; ``None`` -> ``()``; sequences -> tuple."""
    if by is None:
        return ()
    if isinstance(by, str):
        return (by,)
    return tuple(by)


@dataclass(frozen=True, eq=False)
class LatencySummary:
    """Mergeable per-group latency summary.

    Build one with :func:`summarize_latency` (from spans) or :meth:`from_histogram`
    (from histogram buckets). Add two with ``+``.

    Attributes
    ----------
    by : tuple of str
        Grouping columns; ``()`` for the overall summary.
    groups : pandas.Index
        One entry per group (a MultiIndex for several ``by`` columns). Missing keys
        (the caller of a root span) are kept as a group of their own.
    count : ndarray of int64, shape (G,)
        Spans per group.
    bin_counts : ndarray of int64, shape (G, B)
        Spans per bin; bin 0 is the underflow bin ``[0, edges[1])`` (below the clock
        resolution, treated as left-censored), the last bin is the overflow bin.
    edges : ndarray of float64, shape (B + 1,)
        Bin edges in ms.
    sum_log_fx, sum_log2_fx : ndarray of int64, shape (G,)
        Fixed-point (``LOG_SCALE``) sums of ``log(latency)`` and ``log(latency)**2``
        over the spans above the underflow bin.
    sum_ns : ndarray of int64, shape (G,)
        Sum of latencies in integer nanoseconds (exact mean).
    minimum, maximum : ndarray of float64, shape (G,)
        Smallest and largest latency (ms); NaN where unknown (histogram input).
    has_moments : bool
        False for summaries built from histogram buckets: only the bins are exact.
    bins : LogBins or None
        The grid, when the edges are a :class:`LogBins` grid.

    Examples
    --------
    >>> import pandas as pd
    >>> spans = pd.DataFrame({"caller": ["a", "a", "b"], "callee": ["b", "b", "c"],
    ...                       "latency": [1.0, 4.0, 0.0]})
    >>> s = summarize_latency(spans)
    >>> s.count.tolist(), s.n_censored.tolist()
    ([2, 1], [0, 1])
    >>> (s + s).count.tolist()
    [4, 2]
    """

    by: tuple[str, ...]
    groups: pd.Index
    count: np.ndarray
    bin_counts: np.ndarray
    edges: np.ndarray
    sum_log_fx: np.ndarray
    sum_log2_fx: np.ndarray
    sum_ns: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    has_moments: bool = True
    bins: LogBins | None = field(default=DEFAULT_BINS)

    # ----------------------------------------------------------------- derived values
    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.groups)

    @property
    def n_censored(self) -> np.ndarray:
        """Spans in the underflow bin (below the clock resolution), per group."""
        return self.bin_counts[:, 0] if self.edges[0] == 0 else np.zeros_like(self.count)

    @property
    def n_observed(self) -> np.ndarray:
        """Spans whose log-latency enters the moments, per group."""
        return self.count - self.n_censored

    @property
    def sum_log(self) -> np.ndarray:
        """Σ log(latency / 1 ms) over observed spans, per group."""
        return self.sum_log_fx / LOG_SCALE

    @property
    def sum_log2(self) -> np.ndarray:
        """Σ log(latency / 1 ms)² over observed spans, per group."""
        return self.sum_log2_fx / LOG_SCALE

    @property
    def mean(self) -> np.ndarray:
        """Arithmetic mean latency (ms), exact to 1 ns; NaN without moments."""
        if not self.has_moments:
            return np.full(self.n_groups, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_ns / NS_PER_MS / self.count

    def log_mean_sd(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of log-latency over observed spans."""
        n = self.n_observed.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum_log / n
            var = (self.sum_log2 - n * mean**2) / (n - 1)
        if not self.has_moments:
            mean, var = np.full_like(mean, np.nan), np.full_like(var, np.nan)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Empirical quantiles (ms) per group from the bins, shape (G, len(q)).

        Interpolates geometrically inside a bin, so the error is within the bin's
        relative width. Quantiles in the underflow bin are 0; in the overflow bin, the
        group's maximum (or the last finite edge when unknown). Clipped to [min, max].

        Examples
        --------
        >>> import pandas as pd
        >>> s = summarize_latency(pd.DataFrame({"latency": [1.0, 2.0, 3.0]}), by=None)
        >>> bool(abs(s.quantile(0.5)[0, 0] - 2.0) < 0.04)
        True
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs < 0) | (qs > 1)):
            raise ValueError(f"quantiles must be in [0, 1], got {qs.tolist()}")
        out = np.full((self.n_groups, qs.size), np.nan)
        cum = np.cumsum(self.bin_counts, axis=1)
        lo_edges, hi_edges = self.edges[:-1], self.edges[1:]
        for g in range(self.n_groups):
            n = cum[g, -1]
            if n == 0:
                continue
            target = qs * n
            b = np.minimum(np.searchsorted(cum[g], target, side="left"), cum.shape[1] - 1)
            below = np.where(b > 0, cum[g, b - 1], 0)
            frac = np.clip((target - below) / np.maximum(self.bin_counts[g, b], 1), 0, 1)
            lo, hi = lo_edges[b], hi_edges[b]
            finite = np.isfinite(hi) & (lo > 0)
            interior = np.where(finite, lo * (hi / np.where(lo > 0, lo, 1)) ** frac, np.nan)
            interior = np.where(lo == 0, hi * frac, interior)  # a bucket starting at 0
            top = self.maximum[g] if np.isfinite(self.maximum[g]) else lo_edges[-1]
            interior = np.where(np.isinf(hi), top, interior)
            if self.edges[0] == 0 and self.bins is not None:
                interior = np.where(b == 0, 0.0, interior)  # underflow: below resolution
            out[g] = interior
        # Interpolation can overshoot the observed range inside the extreme bins.
        return (
            np.clip(out, self.minimum[:, None], self.maximum[:, None]) if self.has_moments else out
        )

    def to_frame(self, quantiles: Sequence[float] = (0.5, 0.95, 0.99)) -> pd.DataFrame:
        """The per-group table: counts, exact mean/min/max, binned quantiles.

        Examples
        --------
        >>> import pandas as pd
        >>> spans = pd.DataFrame({"caller": ["a"], "callee": ["b"], "latency": [2.0]})
        >>> summarize_latency(spans).to_frame().columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
        ['n', 'n_below_resolution', 'mean', 'min', 'p50', 'p95', 'p99', 'max',
         'log_mean', 'log_sd']
        """
        log_mean, log_sd = self.log_mean_sd()
        table = pd.DataFrame(
            {
                "n": self.count,
                "n_below_resolution": self.n_censored,
                "mean": self.mean,
                "min": self.minimum,
            },
            index=self.groups,
        )
        qs = self.quantile(quantiles)
        for j, q in enumerate(quantiles):
            table[_qname(q)] = qs[:, j]
        table["max"] = self.maximum
        table["log_mean"] = log_mean
        table["log_sd"] = log_sd
        return table

    # --------------------------------------------------------------------- merging
    def __add__(self, other: LatencySummary) -> LatencySummary:
        """Summary of the union of both inputs' spans (exact)."""
        if not isinstance(other, LatencySummary):
            return NotImplemented
        if self.by != other.by:
            raise ValueError(f"cannot add summaries grouped by {self.by} and {other.by}")
        if not np.array_equal(self.edges, other.edges):
            raise ValueError(
                "cannot add summaries on different bin grids "
                f"({len(self.edges) - 1} vs {len(other.edges) - 1} bins)"
            )
        groups = self.groups.union(other.groups, sort=False)
        groups = _sorted(groups)
        a, b = self.groups.get_indexer(groups), other.groups.get_indexer(groups)

        def add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            out = np.zeros((len(groups), *x.shape[1:]), dtype=x.dtype)
            out[a >= 0] += x[a[a >= 0]]
            out[b >= 0] += y[b[b >= 0]]
            return out

        def extreme(x: np.ndarray, y: np.ndarray, fn) -> np.ndarray:
            xa, yb = np.full(len(groups), np.nan), np.full(len(groups), np.nan)
            xa[a >= 0] = x[a[a >= 0]]
            yb[b >= 0] = y[b[b >= 0]]
            return fn(xa, yb)

        return LatencySummary(
            by=self.by,
            groups=groups,
            count=add(self.count, other.count),
            bin_counts=add(self.bin_counts, other.bin_counts),
            edges=self.edges,
            sum_log_fx=add(self.sum_log_fx, other.sum_log_fx),
            sum_log2_fx=add(self.sum_log2_fx, other.sum_log2_fx),
            sum_ns=add(self.sum_ns, other.sum_ns),
            minimum=extreme(self.minimum, other.minimum, np.fmin),
            maximum=extreme(self.maximum, other.maximum, np.fmax),
            has_moments=self.has_moments and other.has_moments,
            bins=self.bins if self.bins == other.bins else None,
        )

    def equals(self, other: LatencySummary) -> bool:
        """Whether two summaries hold the same groups and identical numbers."""
        arrays = ("count", "bin_counts", "edges", "sum_log_fx", "sum_log2_fx", "sum_ns")
        return (
            self.by == other.by
            and self.has_moments == other.has_moments
            and self.groups.equals(other.groups)
            and all(np.array_equal(getattr(self, k), getattr(other, k)) for k in arrays)
            and np.array_equal(self.minimum, other.minimum, equal_nan=True)
            and np.array_equal(self.maximum, other.maximum, equal_nan=True)
        )

    def select(self, keys: Sequence | pd.Index) -> LatencySummary:
        """The summary restricted to some groups (in the given order).

        Raises
        ------
        KeyError
            Naming the groups that are not in this summary.
        """
        keys = keys if isinstance(keys, pd.Index) else _index(list(keys), self.groups.names)
        pos = self.groups.get_indexer(keys)
        if (pos < 0).any():
            unknown = list(keys[pos < 0])[:5]
            raise KeyError(f"groups not in the summary: {unknown}")
        return LatencySummary(
            by=self.by,
            groups=self.groups[pos],
            count=self.count[pos],
            bin_counts=self.bin_counts[pos],
            edges=self.edges,
            sum_log_fx=self.sum_log_fx[pos],
            sum_log2_fx=self.sum_log2_fx[pos],
            sum_ns=self.sum_ns[pos],
            minimum=self.minimum[pos],
            maximum=self.maximum[pos],
            has_moments=self.has_moments,
            bins=self.bins,
        )

    # ---------------------------------------------------------------- construction
    @classmethod
    def empty(cls, by: By = ("caller", "callee"), bins: LogBins = DEFAULT_BINS) -> LatencySummary:
        """A summary with no groups: the identity of ``+``."""
        by = normalize_by(by)
        z = np.zeros(0, dtype=np.int64)
        return cls(
            by=by,
            groups=_empty_index(by),
            count=z,
            bin_counts=np.zeros((0, bins.n_bins), dtype=np.int64),
            edges=bins.edges,
            sum_log_fx=z,
            sum_log2_fx=z,
            sum_ns=z,
            minimum=np.zeros(0),
            maximum=np.zeros(0),
            bins=bins,
        )

    @classmethod
    def from_histogram(
        cls,
        edges: Sequence[float],
        counts: Sequence[float] | np.ndarray,
        *,
        groups: Sequence | pd.Index | None = None,
        by: By = None,
        cumulative: bool = False,
    ) -> LatencySummary:
        """Build a summary from latency histogram buckets a user already has.

        Only the bins are known, so ``has_moments`` is False: models fit it with the
        binned (interval-censored) likelihood.

        Parameters
        ----------
        edges : sequence of float
            Bucket boundaries in ms, increasing, ``len(buckets) + 1`` values; the first
            may be 0 and the last may be ``inf`` (Prometheus ``+Inf``).
        counts : array, shape (n_buckets,) or (n_groups, n_buckets)
            Spans per bucket. With ``cumulative=True`` they are cumulative counts per
            upper bound (Prometheus ``le`` buckets) and are differenced.
        groups : sequence or Index, optional
            One label per row of ``counts`` (tuples for several ``by`` columns).
        by : str or sequence of str, optional
            Names of the grouping columns.
        cumulative : bool, default False
            Whether ``counts`` are cumulative.

        Examples
        --------
        >>> # Prometheus: le = 5, 10, 25, +Inf (ms), cumulative counts
        >>> s = LatencySummary.from_histogram([0, 5, 10, 25, float("inf")], [40, 90, 99, 100],
        ...                                   cumulative=True)
        >>> s.bin_counts.tolist(), int(s.count[0])
        ([[40, 50, 9, 1]], 100)
        """
        edges_arr = np.asarray(edges, dtype=np.float64)
        counts_arr = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if edges_arr.ndim != 1 or edges_arr.size < 2:
            raise ValueError("edges must be a 1-d sequence of at least two bucket boundaries")
        if np.any(np.diff(edges_arr) <= 0) or edges_arr[0] < 0 or np.isnan(edges_arr).any():
            raise ValueError(f"edges must be >= 0 and strictly increasing, got {edges_arr}")
        if counts_arr.shape[1] != edges_arr.size - 1:
            raise ValueError(
                f"counts have {counts_arr.shape[1]} buckets per row but {edges_arr.size} edges "
                f"define {edges_arr.size - 1}"
            )
        if cumulative:
            counts_arr = np.diff(counts_arr, axis=1, prepend=0)
        if np.any(counts_arr < 0) or np.any(counts_arr != np.round(counts_arr)):
            raise ValueError(
                "bucket counts must be non-negative whole numbers"
                + (" (cumulative counts must not decrease)" if cumulative else "")
            )
        by_t = normalize_by(by)
        n = counts_arr.shape[0]
        if groups is None:
            if n != 1:
                raise ValueError(f"{n} rows of counts need {n} group labels (groups=...)")
            index = _index([ALL], by_t or ("group",))
        else:
            index = groups if isinstance(groups, pd.Index) else _index(list(groups), by_t)
            if len(index) != n:
                raise ValueError(f"{len(index)} group labels for {n} rows of counts")
        bin_counts = counts_arr.astype(np.int64)
        z = np.zeros(n, dtype=np.int64)
        return cls(
            by=by_t,
            groups=index,
            count=bin_counts.sum(axis=1),
            bin_counts=bin_counts,
            edges=edges_arr,
            sum_log_fx=z,
            sum_log2_fx=z.copy(),
            sum_ns=z.copy(),
            minimum=np.full(n, np.nan),
            maximum=np.full(n, np.nan),
            has_moments=False,
            bins=None,
        )

    # ------------------------------------------------------------------ persistence
    def to_dataset(self) -> xr.Dataset:
        """The summary as an :class:`xarray.Dataset` (saved inside fitted models).

        Exact: :meth:`from_dataset` gives back an equal summary, missing group keys
        included, also after a round trip through netCDF or Zarr.
        """
        data: dict[str, Any] = {
            "count": ("group", self.count),
            "bin_counts": (("group", "bin"), self.bin_counts),
            "edges": ("edge", self.edges),
            "sum_log_fx": ("group", self.sum_log_fx),
            "sum_log2_fx": ("group", self.sum_log2_fx),
            "sum_ns": ("group", self.sum_ns),
            "minimum": ("group", self.minimum),
            "maximum": ("group", self.maximum),
        }
        names = list(self.groups.names)
        for i in range(len(names)):
            level = self.groups.get_level_values(i) if len(names) > 1 else self.groups
            missing = pd.isna(level)
            data[f"key_{i}"] = ("group", np.where(missing, "", level.astype("str")).astype(str))
            data[f"key_{i}_missing"] = ("group", np.asarray(missing, dtype=bool))
        attrs = {
            "by": json.dumps(list(self.by)),
            "group_names": json.dumps([str(n) for n in names]),
            "has_moments": int(self.has_moments),
            "bins": json.dumps(self.bins.to_dict() if self.bins is not None else None),
        }
        return xr.Dataset(data, attrs=attrs)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> LatencySummary:
        """Rebuild a summary written by :meth:`to_dataset`."""
        names = json.loads(ds.attrs["group_names"])
        levels = []
        for i in range(len(names)):
            keys = ds[f"key_{i}"].to_numpy().astype(object)
            keys[ds[f"key_{i}_missing"].to_numpy().astype(bool)] = None
            levels.append(pd.Index(keys, dtype="str"))
        if len(names) > 1:
            groups = pd.MultiIndex.from_arrays(levels, names=names)
        else:
            groups = pd.Index(levels[0], name=names[0])
        bins = json.loads(ds.attrs["bins"])
        return cls(
            by=tuple(json.loads(ds.attrs["by"])),
            groups=groups,
            count=ds["count"].to_numpy().astype(np.int64),
            bin_counts=ds["bin_counts"].to_numpy().astype(np.int64),
            edges=ds["edges"].to_numpy().astype(np.float64),
            sum_log_fx=ds["sum_log_fx"].to_numpy().astype(np.int64),
            sum_log2_fx=ds["sum_log2_fx"].to_numpy().astype(np.int64),
            sum_ns=ds["sum_ns"].to_numpy().astype(np.int64),
            minimum=ds["minimum"].to_numpy().astype(np.float64),
            maximum=ds["maximum"].to_numpy().astype(np.float64),
            has_moments=bool(int(ds.attrs["has_moments"])),
            bins=LogBins(**bins) if bins is not None else None,
        )

    def __repr__(self) -> str:
        by = ", ".join(self.by) or "overall"
        return (
            f"LatencySummary(by={by}, groups={self.n_groups}, spans={int(self.count.sum())}, "
            f"bins={self.bin_counts.shape[1]})"
        )


def _qname(q: float) -> str:
    return f"p{100 * q:g}".replace(".", "_")


def _index(keys: list, names: Sequence[str]) -> pd.Index:
    names = list(names) or ["group"]
    if len(names) > 1:
        return pd.MultiIndex.from_tuples(keys, names=names)
    return pd.Index(keys, name=names[0])


def _empty_index(by: tuple[str, ...]) -> pd.Index:
    if len(by) > 1:
        return pd.MultiIndex.from_arrays([[] for _ in by], names=list(by))
    return pd.Index([], name=by[0] if by else "group", dtype="str")


def _sorted(groups: pd.Index) -> pd.Index:
    """Groups in a canonical order (missing keys last), so merge order does not matter."""
    return groups.sort_values(na_position="last") if len(groups) else groups


def summarize_latency(
    spans: pd.DataFrame | str | os.PathLike[str] | Any,
    by: By = (S.CALLER, S.CALLEE),
    *,
    bins: LogBins = DEFAULT_BINS,
) -> LatencySummary:
    """Reduce a span table to a per-group :class:`LatencySummary` in one pass.

    Parameters
    ----------
    spans : pandas.DataFrame, path or dask.dataframe.DataFrame
        A span table with a ``latency`` column (ms) and the ``by`` columns. A path to a
        Parquet file or directory is read in batches of 10^6 rows, a canonical CSV
        file streamed in blocks, both in bounded memory; a Dask DataFrame is
        summarized per partition. All give the same summary as the pandas table would
        (see :mod:`bayesperf.summaries.backends`, which also has the options).
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping: a pair of columns, ``"service"``, ``"operation"``, or ``None`` for one
        overall group.
    bins : LogBins
        The bin grid (keep the default so summaries stay mergeable).

    Returns
    -------
    LatencySummary

    Raises
    ------
    ValueError
        A missing column, or latencies that are missing, negative or not finite (read
        traces with :func:`bayesperf.read_traces`, which drops and counts those); a
        path that is neither Parquet nor CSV.
    TypeError
        ``spans`` is none of the accepted types.
    ImportError
        A Dask DataFrame without the ``dask`` extra installed.

    Examples
    --------
    >>> import bayesperf
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> summary = bayesperf.summarize_latency(spans)
    >>> int(summary.count.sum()) == len(spans)
    True
    """
    if not isinstance(spans, pd.DataFrame):  # a Parquet or CSV path, a Dask DataFrame
        return _inputs.handler("summarize_latency")(spans, by, bins=bins)
    by_t = normalize_by(by)
    missing = [c for c in (*by_t, S.LATENCY) if c not in spans.columns]
    if missing:
        raise ValueError(f"span table lacks column(s) {missing}; it has {list(spans.columns)}")
    y = spans[S.LATENCY].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(y) | (y < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} latencies are missing, negative or infinite (first: row {i}, "
            f"value {y[i]!r}); read traces with bayesperf.read_traces, which drops and counts them"
        )
    if len(spans) == 0:
        return LatencySummary.empty(by_t, bins)

    if by_t:
        codes, groups = _group_codes(spans, by_t)
    else:
        codes, groups = np.zeros(len(y), dtype=np.int64), _index([ALL], ("group",))
    n_groups = len(groups)

    with np.errstate(divide="ignore"):
        log_y = np.log(y)
    b = bins.index(y, log_latency=log_y)
    bin_counts = np.bincount(codes * bins.n_bins + b, minlength=n_groups * bins.n_bins)
    bin_counts = bin_counts.reshape(n_groups, bins.n_bins).astype(np.int64)

    log_y[b == 0] = 0.0  # the underflow bin is censored: its spans have no log-latency
    # Fixed-point values summed per group with integer ufunc.at: exact and associative.
    sum_log_fx = _group_sum(codes, np.rint(log_y * LOG_SCALE).astype(np.int64), n_groups)
    sum_log2_fx = _group_sum(codes, np.rint(log_y**2 * LOG_SCALE).astype(np.int64), n_groups)
    sum_ns = _group_sum(codes, np.rint(y * NS_PER_MS).astype(np.int64), n_groups)
    minimum, maximum = np.full(n_groups, np.inf), np.full(n_groups, -np.inf)
    np.minimum.at(minimum, codes, y)
    np.maximum.at(maximum, codes, y)
    return LatencySummary(
        by=by_t,
        groups=groups,
        count=bin_counts.sum(axis=1),
        bin_counts=bin_counts,
        edges=bins.edges,
        sum_log_fx=sum_log_fx,
        sum_log2_fx=sum_log2_fx,
        sum_ns=sum_ns,
        minimum=minimum,
        maximum=maximum,
        bins=bins,
    )


def _group_sum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of int64 values (integer addition: exact, whatever the order)."""
    out = np.zeros(n_groups, dtype=np.int64)
    np.add.at(out, codes, values)
    return out


def _group_codes(spans: pd.DataFrame, by: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer group code per span and the sorted group labels (missing keys kept, last).

    Works on category codes (no string per span is materialised) and combines the
    columns into one mixed-radix integer key: 7x faster than a string MultiIndex at 10^7
    spans.
    """
    level_codes, levels = [], []
    for c in by:
        col = spans[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = pd.Index(col.cat.categories.astype("str"), dtype="str")
            rank = np.arange(len(cats))
            if not cats.is_monotonic_increasing or not cats.is_unique:
                uniq, rank = np.unique(cats.to_numpy(dtype=object), return_inverse=True)
                cats = pd.Index(uniq, dtype="str")
            # One look-up per row: category -> rank among the sorted labels, and the
            # missing code -1 (the table's last entry) -> len(cats), so it sorts last.
            lookup = np.append(rank, len(cats)).astype(np.int64)
            level_codes.append(lookup[col.cat.codes.to_numpy()])
        else:
            codes, cats = pd.factorize(col.astype("str"), sort=True)
            cats = pd.Index(cats, dtype="str")
            level_codes.append(np.where(codes < 0, len(cats), codes).astype(np.int64))
        levels.append(cats)
    radix = [len(c) + 1 for c in levels]
    if np.prod(radix, dtype=np.float64) >= 2**62:
        raise ValueError(f"too many distinct keys to group by {by} at once")
    key = np.zeros(len(spans), dtype=np.int64)
    for codes, r in zip(level_codes, radix, strict=True):
        key = key * r + codes
    size = int(np.prod(radix, dtype=np.float64))
    if size <= 4 * len(spans) + 1024:  # dense key space: O(n) compaction
        present = np.flatnonzero(np.bincount(key, minlength=size))
        remap = np.full(size, -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        codes, uniq = remap[key], present
    else:
        uniq, codes = np.unique(key, return_inverse=True)
    arrays = []
    for cats, r in zip(reversed(levels), reversed(radix), strict=True):
        uniq, digit = np.divmod(uniq, r)
        arrays.append(pd.Index(np.append(cats.to_numpy(dtype=object), None)[digit], dtype="str"))
    arrays.reverse()
    if len(by) == 1:
        groups = arrays[0].rename(by[0])
    else:
        groups = pd.MultiIndex.from_arrays(arrays, names=list(by))
    return np.asarray(codes, dtype=np.int64), groups
