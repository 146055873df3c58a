"""Posterior draws of each group's latency distribution, as functions to evaluate.

A fitted latency model is, per posterior draw, one latency distribution per group.
:class:`LatencyDraws` is that set of distributions for a selection of draws, with a
vectorised CDF and inverse CDF: what anything that simulates from the posterior (the
end-to-end request model, what-if questions, predictive checks) needs, whatever the
model behind it.

Examples
--------
>>> import numpy as np
>>> import pandas as pd
>>> from bayesperf.models.families import get_family
>>> draws = ParametricDraws(
...     get_family("lognormal"), loc=np.zeros((2, 1)), shape=np.zeros((2, 1)),
...     groups=pd.Index(["a"]))
>>> float(draws.ppf(0.5, group=0, draw=1))
1.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bayesperf.models.families import Family


class LatencyDraws(ABC):
    """One latency distribution (ms) per (posterior draw, group).

    ``group`` and ``draw`` are integer positions (``0 <= group < len(groups)``,
    ``0 <= draw < n_draws``); every method broadcasts its array arguments.

    Attributes
    ----------
    groups : pandas.Index
        Group labels, in the model's order.
    n_draws : int
        Number of posterior draws held.
    """

    groups: pd.Index
    n_draws: int

    @abstractmethod
    def cdf(self, x: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """P(latency <= x) for group ``group`` in posterior draw ``draw``."""

    @abstractmethod
    def ppf(self, u: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """Inverse CDF: the latency (ms) at probability ``u`` in (0, 1)."""

    @abstractmethod
    def mean(self, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """Mean latency (ms) of group ``group`` in posterior draw ``draw``."""

    @abstractmethod
    def subset(self, draws: ArrayLike) -> LatencyDraws:
        """The same distributions for the draws at positions ``draws`` only."""

    def tail_beyond(self, group: int, anchor: float, x: np.ndarray, *, lower: bool = False):
        """P(Y ≥ x | Y ≥ anchor) for the group's posterior predictive (``≤`` when lower).

        The model's extrapolation of a tail past ``anchor`` (for ``x`` beyond it). By
        default the ratio of predictive tail probabilities.
        """
        every = np.arange(self.n_draws)[None, :]
        points = np.concatenate([np.atleast_1d(x), [anchor]])[:, None]
        cdf = self.cdf(points, group, every).mean(axis=-1)
        tail = cdf if lower else 1.0 - cdf
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = tail[:-1] / tail[-1]
        return np.clip(np.where(tail[-1] > 0, ratio, 0.0), 0.0, 1.0)

    def statistics(
        self,
        qs: ArrayLike = (),
        u: np.ndarray | None = None,
        *,
        mixture: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every group's quantiles ``qs``, mean, and quantile at per-draw levels ``u``.

        One pass over the groups: ``quantiles`` (draws, groups, len(qs)), ``mean``
        (draws, groups) and, with ``u`` of shape (draws, groups), ``at_u`` (draws,
        groups) — ``F⁻¹`` of each draw at its own level (for predictive checks). With
        ``mixture=(weights, mixture_qs, draws)``, also the quantiles of the weighted
        mixture of the groups in those draws (``mixture_quantiles``, (len(draws),
        len(mixture_qs))).
        """
        qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
        d = np.arange(self.n_draws)[:, None]
        g = np.arange(len(self.groups))[None, :]
        out = {"quantiles": self.ppf(qs[None, None, :], g[..., None], d[..., None])}
        out["mean"] = self.mean(g, d)
        if u is not None:
            out["at_u"] = self.ppf(u, g, d)
        if mixture is not None:
            weights, mixture_qs, rows = mixture
            out["mixture_quantiles"] = self.subset(rows).mixture_quantiles(weights, mixture_qs)
        return out

    def mixture_quantiles(
        self, weights: np.ndarray, qs: np.ndarray, iterations: int = 50
    ) -> np.ndarray:
        """Quantiles of the mixture Σ_g w_g F_g in every draw, shape (draws, len(qs)).

        By bisection on log-latency, every group at once per step.
        """
        d = np.arange(self.n_draws)[:, None, None]
        g = np.arange(len(weights))[None, :, None]
        qs = np.asarray(qs, dtype=np.float64)
        per_group = self.ppf(qs[None, None, :], g, d)
        lo = np.log(np.maximum(np.min(per_group, axis=1), 1e-9))
        hi = np.log(np.maximum(np.max(per_group, axis=1), 1e-9)) + 1e-9
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            cdf = np.einsum("dgq,g->dq", self.cdf(np.exp(mid)[:, None, :], g, d), weights)
            below = cdf < qs[None, :]
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return np.exp(0.5 * (lo + hi))

    def sample(self, group: ArrayLike, draw: ArrayLike, rng: np.random.Generator) -> np.ndarray:
        """One latency per broadcast element of ``(group, draw)``, by inverse CDF."""
        group, draw = np.broadcast_arrays(np.asarray(group), np.asarray(draw))
        return self.ppf(rng.random(group.shape), group, draw)


class ParametricDraws(LatencyDraws):
    """Draws of a parametric family: ``loc`` and ``shape`` of shape (draws, groups)."""

    def __init__(
        self, family: Family, loc: np.ndarray, shape: np.ndarray, groups: pd.Index
    ) -> None:
        if loc.shape != shape.shape or loc.ndim != 2 or loc.shape[1] != len(groups):
            raise ValueError(
                f"loc {loc.shape} and shape {shape.shape} must both be (draws, {len(groups)})"
            )
        self.family, self.loc, self.shape, self.groups = family, loc, shape, groups
        self.n_draws = loc.shape[0]

    def cdf(self, x: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """P(latency <= x) for group ``group`` in posterior draw ``draw``."""
        d, g = np.asarray(draw), np.asarray(group)
        return self.family.cdf(np.asarray(x, dtype=np.float64), self.loc[d, g], self.shape[d, g])

    def ppf(self, u: ArrayLike, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """Inverse CDF: the latency (ms) at probability ``u`` in (0, 1)."""
        d, g = np.asarray(draw), np.asarray(group)
        u = np.asarray(u, dtype=np.float64)
        return self.family.quantile(u, self.loc[d, g], self.shape[d, g])

    def mean(self, group: ArrayLike, draw: ArrayLike) -> np.ndarray:
        """Mean latency (ms) of group ``group`` in posterior draw ``draw``."""
        d, g = np.asarray(draw), np.asarray(group)
        return self.family.mean(self.loc[d, g], self.shape[d, g])

    def subset(self, draws: ArrayLike) -> ParametricDraws:
        """The same distributions for the draws at positions ``draws`` only."""
        keep = np.asarray(draws)
        return ParametricDraws(self.family, self.loc[keep], self.shape[keep], self.groups)
