"""Fixed, global, log-spaced latency bins (the DDSketch layout).

Every summary built from spans uses the same grid, so summaries of different files,
windows or Dask partitions line up bin for bin and add exactly. A bin
``[lo, lo * gamma)`` with ``gamma = (1 + a) / (1 - a)`` holds values within relative
distance ``a`` of its representative ``2 lo gamma / (1 + gamma)``: with the default
``a = 0.01`` any latency is known to 1%.

The first bin ``[0, lowest)`` is the *underflow* bin: durations below the tracer's
clock resolution (often recorded as exactly 0) land there and are treated as
left-censored at ``lowest``, never fed to a logarithm. The last bin ``[highest, inf)``
is the overflow bin (right-censored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class LogBins:
    """A log-spaced bin grid for latencies in milliseconds.

    Parameters
    ----------
    lowest_ms : float, default 1e-3
        Lower edge of the first log bin (1 µs). Below it: the underflow bin.
    highest_ms : float, default 3.6e6
        The grid reaches at least this value (1 h). Above the last edge: overflow bin.
    relative_accuracy : float, default 0.01
        Half-width of a bin relative to its representative value.

    Examples
    --------
    >>> bins = LogBins()
    >>> bins.n_bins                      # underflow + 1,101 log bins + overflow
    1103
    >>> float(bins.edges[1]), bool(bins.edges[-2] >= 3.6e6)
    (0.001, True)
    >>> bins.index(np.array([0.0, 0.0005, 1.0, 1e9])).tolist()
    [0, 0, 346, 1102]
    """

    lowest_ms: float = 1e-3
    highest_ms: float = 3.6e6
    relative_accuracy: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.relative_accuracy < 0.5:
            raise ValueError(f"relative_accuracy must be in (0, 0.5), got {self.relative_accuracy}")
        if not 0 < self.lowest_ms < self.highest_ms:
            raise ValueError(
                f"need 0 < lowest_ms < highest_ms, got {self.lowest_ms}, {self.highest_ms}"
            )

    @property
    def gamma(self) -> float:
        """Ratio of consecutive edges."""
        a = self.relative_accuracy
        return (1 + a) / (1 - a)

    @property
    def n_log_bins(self) -> int:
        """Number of log-spaced bins between ``lowest_ms`` and the top edge."""
        return math.ceil(math.log(self.highest_ms / self.lowest_ms) / math.log(self.gamma))

    @property
    def n_bins(self) -> int:
        """All bins: underflow, log bins, overflow."""
        return self.n_log_bins + 2

    @cached_property
    def edges(self) -> np.ndarray:
        """Bin edges in ms, ``[0, lowest, lowest*gamma, ..., top, inf]`` (``n_bins + 1``)."""
        k = np.arange(self.n_log_bins + 1)
        log_edges = self.lowest_ms * np.exp(k * math.log(self.gamma))
        return np.concatenate([[0.0], log_edges, [np.inf]])

    def index(self, latency_ms: np.ndarray, *, log_latency: np.ndarray | None = None) -> np.ndarray:
        """Bin index (int64) of each latency; values must be >= 0 and not NaN.

        ``log_latency``, the natural log of ``latency_ms``, saves a logarithm when the
        caller has it already; the bins do not depend on it (they are settled on the
        edges).
        """
        y = np.asarray(latency_ms, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_y = np.log(y) if log_latency is None else log_latency
            k = np.floor((log_y - math.log(self.lowest_ms)) * (1 / math.log(self.gamma)))
        b = np.where(y < self.lowest_ms, 0, np.clip(k, 0, self.n_log_bins) + 1).astype(np.int64)
        # The logarithm's rounding can put a value one bin off at an edge: settle it on
        # the edges themselves, so every value lies in [edges[i], edges[i + 1]).
        edges = self.edges
        b += y >= edges[b + 1]
        np.minimum(b, self.n_bins - 1, out=b)  # an infinite value stays in the overflow bin
        b -= (y < edges[b]) & (b > 0)
        return b

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly description (stored with saved summaries)."""
        return {
            "lowest_ms": self.lowest_ms,
            "highest_ms": self.highest_ms,
            "relative_accuracy": self.relative_accuracy,
        }


#: The grid every span summary uses unless told otherwise.
DEFAULT_BINS = LogBins()
