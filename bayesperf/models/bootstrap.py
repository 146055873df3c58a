"""Bayesian bootstrap of latency summaries: each group's own bins, with posterior weights.

A group's latency distribution is its observed histogram on the summary's bins with
weights ``Dirichlet(counts)`` per posterior draw (Rubin's Bayesian bootstrap, the
``α → 0`` limit of a Dirichlet process): no family is assumed and nothing is sampled by
MCMC, so it is instant. Within a bin, latency is spread geometrically (the bins are 1%
wide); the underflow bin ``[0, 1 µs)`` linearly; the overflow bin holds the group's
maximum.

What it is for
    * a distribution *measured* elsewhere, e.g. during an incident, to substitute into a
      what-if question (:meth:`bayesperf.RequestModel.what_if` ``replace=``);
    * a model-free self-time model for :class:`~bayesperf.models.request.RequestModel`
      (``latency="bootstrap"``), which separates what the latency family gets wrong from
      what the call structure gets wrong.

It cannot put mass beyond a group's largest observation, and a group of 3 spans gets 3
values: for sparse groups and far tails, a model that pools across groups is the honest
choice.

Examples
--------
>>> import numpy as np
>>> import pandas as pd
>>> from bayesperf.summaries import summarize_latency
>>> s = summarize_latency(pd.DataFrame({"latency": [1.0, 2.0, 4.0]}), by=None)
>>> draws = BootstrapDraws(s, n_draws=50, random_seed=0)
>>> values = draws.ppf(0.5, group=0, draw=np.arange(50))  # the median in each draw
>>> bool(values.min() >= 1.0 and values.max() <= 4.0), round(float(np.median(values)))
(True, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesperf import schema as S
from bayesperf.models._base import BayesModel
from bayesperf.models.draws import LatencyDraws
from bayesperf.models.latency import SummaryFit
from bayesperf.summaries.latency import By, LatencySummary, normalize_by


class BootstrapDraws(LatencyDraws):
    """Posterior draws of each group's histogram (Dirichlet weights on its non-empty bins).

    Parameters
    ----------
    summary : LatencySummary
        The groups and their bins.
    n_draws : int, default 200
        Posterior draws.
    random_seed : int, optional
        Seed of the Dirichlet weights.
    """

    def __init__(
        self, summary: LatencySummary, n_draws: int = 200, random_seed: int | None = None
    ) -> None:
        if summary.n_groups == 0 or np.any(summary.count == 0):
            raise ValueError("every group of a bootstrap needs at least one span")
        self.groups, self.n_draws = summary.groups, int(n_draws)
        g, b = np.nonzero(summary.bin_counts)
        counts = summary.bin_counts[g, b].astype(np.float64)
        edges = summary.edges
        lo, hi = edges[b], edges[b + 1]
        # Observed range: the overflow bin is the maximum; bins are clipped to [min, max].
        if summary.has_moments:
            lo = np.maximum(lo, summary.minimum[g])
            hi = np.minimum(hi, summary.maximum[g])
        hi = np.where(np.isinf(hi), lo, hi)
        self._lo, self._hi, self._group = lo, hi, g
        self._starts = np.searchsorted(g, np.arange(summary.n_groups))
        rng = np.random.default_rng(random_seed)
        w = rng.standard_gamma(counts, size=(self.n_draws, len(counts)))
        cum = np.cumsum(w, axis=1)
        start_total = np.where(self._starts > 0, cum[:, np.maximum(self._starts - 1, 0)], 0.0)
        ends = np.r_[self._starts[1:], len(counts)] - 1
        total = cum[:, ends] - start_total
        within = (cum - start_total[:, g]) / total[:, g]
        within[:, ends] = 1.0
        # Row (draw, group) r = draw * G + group occupies (r, r + 1]: one search finds any.
        self._flat = (np.arange(self.n_draws)[:, None] * summary.n_groups + g + within).ravel()
        self._within = within
        self._n_cells = len(counts)

    def ppf(self, u: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """Inverse CDF: the latency (ms) at probability ``u`` in (0, 1)."""
        u, group, draw = np.broadcast_arrays(
            np.asarray(u, np.float64), np.asarray(group), np.asarray(draw)
        )
        row = draw * len(self.groups) + group
        pos = np.searchsorted(self._flat, row + u, side="right")
        cell = np.clip(pos - draw * self._n_cells, self._starts[group], self._cell_end(group))
        flat_cell = draw * self._n_cells + cell
        above = self._flat[flat_cell] - row
        below = np.where(cell > self._starts[group], self._flat[flat_cell - 1] - row, 0.0)
        frac = np.clip((u - below) / np.maximum(above - below, 1e-300), 0.0, 1.0)
        lo, hi = self._lo[cell], self._hi[cell]
        geometric = lo * (hi / np.where(lo > 0, lo, 1.0)) ** frac
        return np.where(lo > 0, geometric, hi * frac)

    def cdf(self, x: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """P(latency <= x) for group ``group`` in posterior draw ``draw``."""
        x, group, draw = np.broadcast_arrays(
            np.asarray(x, np.float64), np.asarray(group), np.asarray(draw)
        )
        out = np.empty(x.shape)
        for i in np.ndindex(x.shape):
            g, d = int(group[i]), int(draw[i])
            cells = slice(self._starts[g], self._cell_end(g) + 1)
            lo, hi, cum = self._lo[cells], self._hi[cells], self._within[d, cells]
            before = np.r_[0.0, cum[:-1]]
            width = np.where(lo > 0, np.log(np.maximum(hi, lo) / lo), hi)
            pos = np.where(lo > 0, np.log(np.maximum(x[i], lo) / lo), np.minimum(x[i], hi))
            frac = np.where(width > 0, np.clip(pos / np.where(width > 0, width, 1), 0, 1), 1.0)
            frac = np.where(x[i] >= hi, 1.0, np.where(x[i] < lo, 0.0, frac))
            out[i] = float(np.sum((cum - before) * frac))
        return out

    def _cell_end(self, group: np.ndarray | int) -> np.ndarray:
        ends = np.r_[self._starts[1:], self._n_cells] - 1
        return ends[group]


class BootstrapLatencyModel(SummaryFit):
    """A latency "model" that is each group's own histogram (Bayesian bootstrap).

    Fitting stores the summary; :meth:`latency_draws` draws the Dirichlet weights. See
    the module docstring for what it is for and what it cannot do.

    Parameters
    ----------
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping when fit on spans.
    """

    def __init__(self, by: By = (S.CALLER, S.CALLEE)) -> None:
        self.by = normalize_by(by)
        self._seed: int | None = None

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {"by": list(self.by)}

    def __repr__(self) -> str:
        state = f"{len(self.groups)} groups" if self.is_fitted else "not fitted"
        return f"BootstrapLatencyModel(by={self.by}; {state})"

    def fit(
        self, data: pd.DataFrame | LatencySummary, *, random_seed: int | None = None, **_: Any
    ) -> BootstrapLatencyModel:
        """Keep the summary (sampler arguments are accepted and ignored: nothing is sampled)."""
        summary = self._summary_of(data)
        if np.any(summary.count == 0) or summary.n_groups == 0:
            raise ValueError("every group needs at least one span")
        self._idata = xr.DataTree.from_dict({"fit_data": summary.to_dataset()})
        self._idata.attrs["random_seed"] = -1 if random_seed is None else int(random_seed)
        return self

    def latency_draws(self, n_draws: int | None = 200) -> BootstrapDraws:
        """Each group's histogram with Dirichlet weights, ``n_draws`` draws (default 200)."""
        seed = int(self.idata.attrs.get("random_seed", -1))
        n = 1000 if n_draws is None else int(n_draws)
        if n < 1:
            raise ValueError(f"the number of draws must be at least 1, got {n_draws}")
        return BootstrapDraws(self.fit_summary, n, None if seed < 0 else seed)

    @classmethod
    def _from_idata(cls, idata: xr.DataTree, config: dict[str, Any]) -> BayesModel:
        return super()._from_idata(idata, {**config, "by": tuple(config["by"])})
