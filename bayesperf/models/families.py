"""Latency distribution families: likelihood pieces (PyTensor) and derived quantities (NumPy).

Every family has two per-group parameters on unconstrained scales, so the hierarchy is
the same for all of them:

============  ===========================  ===============================
family        ``location``                 ``shape``
============  ===========================  ===============================
lognormal     μ = E[log y] (log median)    log σ (sd of log y)
gamma         log mean                     log k (shape)
weibull       log λ (scale)                log k (shape)
============  ===========================  ===============================

Latency ``y`` is in milliseconds. ``log_interval_prob`` is the log probability of an
interval ``[lo, hi)`` — the binned (interval-censored) likelihood, exact for binned data;
a bin starting at 0 is the left-censoring interval below the clock resolution.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pytensor.tensor as pt
from scipy import special

_EULER = 0.5772156649015329


class Family(ABC):
    """A latency distribution family with (location, shape) parameters."""

    name: ClassVar[str]
    location_doc: ClassVar[str]
    shape_doc: ClassVar[str]
    #: Whether the exact sufficient-statistics likelihood is available.
    has_moment_likelihood: ClassVar[bool] = False

    @abstractmethod
    def log_interval_prob(self, loc, shape, lo: np.ndarray, hi: np.ndarray):
        """PyTensor: log P(lo <= y < hi) per cell (``lo`` may be 0, ``hi`` may be inf)."""

    def log_cell_probs(self, loc, shape, group, lo, hi, pilot_loc, pilot_shape):
        """PyTensor: log P(lo <= y < hi) of each (group, bin) cell.

        ``loc`` and ``shape`` are per-group tensors, ``group`` indexes them per cell;
        ``pilot_loc``/``pilot_shape`` (NumPy, per group) are rough estimates a family may
        use to organise the computation. By default each cell is evaluated on its own.
        """
        return self.log_interval_prob(loc[group], shape[group], lo, hi)

    @abstractmethod
    def cdf(self, y: np.ndarray, loc: np.ndarray, shape: np.ndarray) -> np.ndarray:
        """NumPy CDF, broadcasting."""

    @abstractmethod
    def quantile(self, q: np.ndarray, loc: np.ndarray, shape: np.ndarray) -> np.ndarray:
        """NumPy quantile function, broadcasting."""

    @abstractmethod
    def mean(self, loc: np.ndarray, shape: np.ndarray) -> np.ndarray:
        """NumPy mean latency."""

    @abstractmethod
    def pilot(self, log_mean: np.ndarray, log_sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Moment estimates of (location, shape) from the mean and sd of log-latency."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, loc: np.ndarray, shape: np.ndarray, size=None):
        """NumPy random draws."""


class LogNormal(Family):
    """Log-latency is normal: the default, with an exact sufficient-statistics likelihood."""

    name = "lognormal"
    location_doc = "mean of log latency (log of the median, ms)"
    shape_doc = "log of the standard deviation of log latency"
    has_moment_likelihood = True

    def log_interval_prob(self, loc, shape, lo, hi):
        lo_s, hi_s, open_ = _safe_edges(lo, hi)
        sigma = pt.exp(shape)
        z_lo = (np.log(lo_s) - loc) / sigma
        z_hi = (np.log(hi_s) - loc) / sigma
        # In the upper tail difference survival functions, in the lower tail CDFs, so
        # neither loses precision to cancellation near 1.
        upper = pt.gt(z_lo, 0)
        closed = _log_ndtr_diff(pt.switch(upper, -z_lo, z_hi), pt.switch(upper, -z_hi, z_lo))
        return pt.switch(open_, pm_log_ndtr(-z_lo), closed)

    def moment_loglik(self, loc, shape, n, sum_log, sum_log2):
        """Exact log-likelihood of n observed log-latencies from their sums (per group).

        Includes the Jacobian (-Σ log y), so it is a density of latency in ms.
        """
        sigma2 = pt.exp(2 * shape)
        squares = sum_log2 - 2 * loc * sum_log + n * loc**2
        return -n * shape - squares / (2 * sigma2) - 0.5 * n * math.log(2 * math.pi) - sum_log

    def location_given_shape(self, shape, n, sum_log, prior_mu, prior_sd):
        """μ given σ under the conjugate prior ``μ ~ N(prior_mu, prior_sd)``, per group.

        With ``τ = prior_sd`` and ``D = n τ² + σ²``, the conditional posterior of μ is
        normal with ``mean = (prior_mu σ² + Σ log y · τ²) / D`` and ``sd = τ σ / √D``
        (the prior itself when ``n = 0``). Returns ``(mean, sd, n / D)``; the last is
        the precision of the group's sample mean about ``prior_mu`` (used one level
        up). PyTensor or NumPy (broadcasting), by the type of ``shape``.
        """
        xp = pt if isinstance(shape, pt.TensorVariable) else np
        sigma = xp.exp(shape)
        inv_d = 1 / (n * prior_sd**2 + sigma * sigma)
        mean = (prior_mu * sigma * sigma + sum_log * prior_sd**2) * inv_d
        return mean, prior_sd * sigma * xp.sqrt(inv_d), n * inv_d

    def collapsed_moment_loglik(self, shape, n, sum_log, sum_log2, prior_mu, prior_sd):
        """:meth:`moment_loglik` with μ integrated out against ``N(prior_mu, prior_sd)``.

        The within-group spread term times the predictive density of the sample mean,
        ``N(ȳ | prior_mu, D / n)`` (``D`` as in :meth:`location_given_shape`); 0 for a
        group with ``n = 0``. With it, the joint density factorises exactly:
        ``p(μ, σ | y) ∝ p(σ | y) · N(μ | mean, sd)``. PyTensor.
        """
        n = np.asarray(n, dtype=np.float64)
        n_safe = np.maximum(n, 1.0)
        within = np.maximum(sum_log2 - sum_log**2 / n_safe, 0.0)  # Σ (log y - ȳ)², data only
        sigma = pt.exp(shape)
        inv_d = 1 / (n * prior_sd**2 + sigma * sigma)
        return (
            -(n - 1) * shape
            - within / (2 * sigma * sigma)
            + 0.5 * pt.log(inv_d)
            - (sum_log - n * prior_mu) ** 2 * inv_d / (2 * n_safe)
            - 0.5 * n * math.log(2 * math.pi)
            - sum_log
        )

    def cdf(self, y, loc, shape):
        with np.errstate(divide="ignore"):
            return special.ndtr((np.log(y) - loc) / np.exp(shape))

    def quantile(self, q, loc, shape):
        with np.errstate(over="ignore"):
            return np.exp(loc + np.exp(shape) * special.ndtri(q))

    def mean(self, loc, shape):
        with np.errstate(over="ignore"):  # a draw with a huge spread has a huge mean
            return np.exp(loc + 0.5 * np.exp(2 * shape))

    def pilot(self, log_mean, log_sd):
        return log_mean, np.log(log_sd)

    def sample(self, rng, loc, shape, size=None):
        return rng.lognormal(loc, np.exp(shape), size=size)


class Gamma(Family):
    """Gamma latency, parameterised by log mean and log shape; binned likelihood."""

    name = "gamma"
    location_doc = "log of the mean latency (ms)"
    shape_doc = "log of the gamma shape k"

    def log_interval_prob(self, loc, shape, lo, hi):
        lo_s, hi_s, open_ = _safe_edges(lo, hi)
        k = pt.exp(shape)
        rate = k / pt.exp(loc)
        p_lo, q_lo = pt.gammainc(k, lo_s * rate), pt.gammaincc(k, lo_s * rate)
        p_hi, q_hi = pt.gammainc(k, hi_s * rate), pt.gammaincc(k, hi_s * rate)
        # Upper-tail cells from the regularised upper incomplete gamma (no cancellation).
        closed = pt.switch(pt.gt(p_lo, 0.5), q_lo - q_hi, p_hi - p_lo)
        return pt.log(pt.maximum(pt.switch(open_, q_lo, closed), 1e-300))

    def log_cell_probs(self, loc, shape, group, lo, hi, pilot_loc, pilot_shape):
        """Each distinct (group, edge) evaluated once, in the tail that keeps precision.

        Adjacent cells share edges, and the incomplete gamma function and its gradient
        in k are the costly part of a gamma fit: evaluating every edge once, as the CDF
        P below the group's pilot median and as the survival Q above it, costs one
        special-function call per edge instead of four per cell. A cell is then
        ``P(hi) - P(lo)``, ``Q(lo) - Q(hi)`` or ``1 - P(lo) - Q(hi)`` (straddling the
        median, so no cancellation); edges 0 and inf are the constants P = 0 and Q = 0.
        """
        group = np.asarray(group, dtype=np.int64)
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        inner = np.concatenate([lo[lo > 0], hi[np.isfinite(hi)]])
        inner_group = np.concatenate([group[lo > 0], group[np.isfinite(hi)]])
        keys, position = np.unique(
            np.stack([inner_group.astype(np.float64), inner]), axis=1, return_inverse=True
        )
        edge_group = keys[0].astype(np.int64)
        edge = keys[1]
        upper = self.cdf(edge, pilot_loc[edge_group], pilot_shape[edge_group]) >= 0.5
        k = pt.exp(shape)
        rate = k / pt.exp(loc)
        x = edge * rate[edge_group]
        kk = k[edge_group]
        below, above = np.flatnonzero(~upper), np.flatnonzero(upper)
        # values: [P at lower-type edges..., Q at upper-type edges..., 0 (edge 0 or inf)]
        values = pt.concatenate(
            [pt.gammainc(kk[below], x[below]), pt.gammaincc(kk[above], x[above]), pt.zeros(1)]
        )
        slot = np.empty(len(edge), dtype=np.int64)
        slot[below] = np.arange(below.size)
        slot[above] = below.size + np.arange(above.size)
        zero = len(edge)
        index_lo = np.full(lo.size, zero)
        index_hi = np.full(hi.size, zero)
        n_lo = int((lo > 0).sum())
        index_lo[lo > 0] = slot[position[:n_lo]]
        index_hi[np.isfinite(hi)] = slot[position[n_lo:]]
        lo_upper = np.zeros(lo.size, dtype=bool)
        lo_upper[lo > 0] = upper[position[:n_lo]]
        hi_upper = np.ones(hi.size, dtype=bool)
        hi_upper[np.isfinite(hi)] = upper[position[n_lo:]]
        # prob = const + sign_lo * value(lo) + sign_hi * value(hi), by the edges' tails.
        const = np.where(~lo_upper & hi_upper, 1.0, 0.0)
        sign_lo = np.where(lo_upper, 1.0, -1.0)
        sign_hi = np.where(hi_upper, -1.0, 1.0)
        prob = const + sign_lo * values[index_lo] + sign_hi * values[index_hi]
        return pt.log(pt.maximum(prob, 1e-300))

    def cdf(self, y, loc, shape):
        k = np.exp(shape)
        return special.gammainc(k, y * k / np.exp(loc))

    def quantile(self, q, loc, shape):
        k = np.exp(shape)
        return special.gammaincinv(k, q) * np.exp(loc) / k

    def mean(self, loc, shape):
        return np.exp(loc) + 0 * shape

    def pilot(self, log_mean, log_sd):
        # Var(log y) = trigamma(k): invert by Newton on log k.
        var = np.maximum(log_sd, 1e-3) ** 2
        log_k = np.log(1 / var + 0.5)
        for _ in range(30):
            k = np.exp(log_k)
            log_k -= (special.polygamma(1, k) - var) / (special.polygamma(2, k) * k)
        k = np.exp(log_k)
        # E[log y] = digamma(k) - log(rate) and mean = k / rate.
        log_mean_y = log_mean - special.digamma(k) + np.log(k)
        return log_mean_y, log_k

    def sample(self, rng, loc, shape, size=None):
        k = np.exp(shape)
        return rng.gamma(k, np.exp(loc) / k, size=size)


class Weibull(Family):
    """Weibull latency, parameterised by log scale and log shape; binned likelihood."""

    name = "weibull"
    location_doc = "log of the Weibull scale λ (ms)"
    shape_doc = "log of the Weibull shape k"

    def log_interval_prob(self, loc, shape, lo, hi):
        lo_s, hi_s, open_ = _safe_edges(lo, hi)
        k = pt.exp(shape)
        a = pt.exp(k * (np.log(lo_s) - loc))
        b = pt.exp(k * (np.log(hi_s) - loc))
        # log(exp(-a) - exp(-b)) = -a + log1mexp(a - b), stable for every a < b
        return pt.switch(open_, -a, -a + pt.log1mexp(a - b))

    def cdf(self, y, loc, shape):
        return -np.expm1(-((y / np.exp(loc)) ** np.exp(shape)))

    def quantile(self, q, loc, shape):
        return np.exp(loc) * (-np.log1p(-q)) ** (1 / np.exp(shape))

    def mean(self, loc, shape):
        return np.exp(loc) * special.gamma(1 + 1 / np.exp(shape))

    def pilot(self, log_mean, log_sd):
        # log y is Gumbel-min: sd = π / (k √6), mean = log λ - γ / k.
        k = np.pi / (np.maximum(log_sd, 1e-3) * math.sqrt(6))
        return log_mean + _EULER / k, np.log(k)

    def sample(self, rng, loc, shape, size=None):
        return np.exp(loc) * rng.weibull(np.exp(shape), size=size)


def _safe_edges(lo: np.ndarray, hi: np.ndarray):
    """Finite stand-ins for 0 and inf edges, so no branch of a switch yields NaN gradients.

    1e-12 ms is far below any clock resolution (P(y < 1e-12) is 0 to double precision
    for any fitted family); open cells ``[lo, inf)`` are marked and use the survival
    function, their dummy upper edge is never used.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    open_ = np.isinf(hi)
    lo_s = np.where(lo > 0, lo, 1e-12)
    hi_s = np.where(open_, 2 * lo_s, hi)
    return lo_s, hi_s, open_


def _log_ndtr_diff(b, a):
    """log(Φ(b) - Φ(a)) for a <= b, stable when both are far in the lower tail."""
    log_b = pm_log_ndtr(b)
    log_a = pm_log_ndtr(a)
    return log_b + pt.log1mexp(pt.minimum(log_a - log_b, -1e-300))


def pm_log_ndtr(x):
    """Log Φ(x), accurate in the lower tail (PyTensor's normal log-CDF)."""
    import pymc as pm

    return pm.logcdf(pm.Normal.dist(0.0, 1.0), x)


FAMILIES: dict[str, Family] = {f.name: f for f in (LogNormal(), Gamma(), Weibull())}


def get_family(name: str) -> Family:
    """The family called ``name``, or a ValueError naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown latency family {name!r}; expected one of {sorted(FAMILIES)}"
        ) from None
