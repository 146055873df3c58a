"""The log density of a mixture without groups, compiled once per machine.

:class:`~bayesperf.models.MixtureModel` is defined as a PyMC model
(``MixtureModel._build``). Sampling a PyMC model with nutpie compiles it with numba in
every process, and for this small model (8 parameters for K = 3, about a hundred
fitting cells) that compilation, not the sampling, was the fit's cost: nutpie's
per-process numba start-up and the model's own compile took about 10 s of the 12.6 s
CPU of the mixture step of ``bayesperf report --demo``, and a machine's first run
25-35 s more (``benchmarks/demo.py``). This module writes the same density by hand:
:func:`logp_and_grad` is a numba function cached on disk (``cache=True``), so it is
compiled once per machine (about 2 s) and loaded in a fraction of a second after that,
and nutpie samples it through its Python-function interface.

It is the PyMC model's log density exactly, in the same unconstrained coordinates
(PyMC's ``ordered``, ``log`` and ``simplex`` transforms, their log-Jacobians included),
so both give the same draws from the same start and seed;
``tests/models/test_mixture_model.py`` checks the values and gradients against PyMC's.
Grouped mixtures (hierarchical weights) keep the PyMC model.
"""

from __future__ import annotations

import math

import numpy as np

from bayesperf._numba import cached_njit

__all__ = ["constrained", "logp_and_grad", "unconstrained"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def unconstrained(location: np.ndarray, sigma: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The point ``x`` of :func:`logp_and_grad` at these parameter values (PyMC's transforms).

    ``x`` is ``[ordered(location), log(sigma), simplex(weights)]``: ``location[0]`` and
    the logs of its increments; the logs of ``sigma``; ``log weights`` centred on their
    mean, without the last (K - 1 values).

    Examples
    --------
    >>> x = unconstrained(np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.5, 0.5]))
    >>> x.round(4).tolist()
    [0.0, 0.0, 0.0, 0.6931, 0.0]
    """
    location = np.asarray(location, dtype=np.float64)
    log_w = np.log(np.asarray(weights, dtype=np.float64))
    return np.concatenate(
        [
            location[:1],
            np.log(np.diff(location)),
            np.log(np.asarray(sigma, dtype=np.float64)),
            (log_w - log_w.mean())[:-1],
        ]
    )


def constrained(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``location``, ``sigma`` and ``weights`` at the unconstrained point ``x`` (K = ``k``).

    Examples
    --------
    >>> loc, sd, w = constrained(np.array([0.0, 0.0, 0.0, 0.6931, 0.0]), 2)
    >>> loc.tolist(), sd.round(3).tolist(), w.tolist()
    ([0.0, 1.0], [1.0, 2.0], [0.5, 0.5])
    """
    location = np.cumsum(np.concatenate([x[:1], np.exp(x[1:k])]))
    sigma = np.exp(x[k : 2 * k])
    z = np.concatenate([x[2 * k :], [-np.sum(x[2 * k :])]])
    weights = np.exp(z - z.max())
    return location, sigma, weights / weights.sum()


@cached_njit(nogil=True)
def logp_and_grad(
    x: np.ndarray,
    log_lo: np.ndarray,
    log_hi: np.ndarray,
    count: np.ndarray,
    location_mean: float,
    location_sd: float,
    log_sigma_median: float,
    sigma_log_sd: float,
    concentration: np.ndarray,
    floor: float,
) -> tuple[float, np.ndarray]:
    """Log density (PyMC's, Jacobians included) and its gradient at ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        The unconstrained point (:func:`unconstrained`), ``3K - 1`` values.
    log_lo, log_hi : numpy.ndarray
        Log edges of the fitting cells (finite stand-ins for 0 and inf).
    count : numpy.ndarray
        Spans per cell (float).
    location_mean, location_sd : float
        Normal prior of every component location.
    log_sigma_median, sigma_log_sd : float
        Lognormal prior of every component spread (log median, sd of the log).
    concentration : numpy.ndarray
        Dirichlet concentration of the weights (K values).
    floor : float
        Smallest cell probability (a cell below it adds ``count * log(floor)``, no gradient).
    """
    k_n = concentration.size
    grad = np.zeros(x.size)
    mu = np.empty(k_n)
    mu[0] = x[0]
    for k in range(1, k_n):
        mu[k] = mu[k - 1] + math.exp(x[k])
    sig = np.empty(k_n)
    for k in range(k_n):
        sig[k] = math.exp(x[k_n + k])
    # Weights: softmax of [v, -sum(v)] (PyMC's simplex transform).
    z = np.empty(k_n)
    total_v = 0.0
    for k in range(k_n - 1):
        z[k] = x[2 * k_n + k]
        total_v += z[k]
    z[k_n - 1] = -total_v
    z_max = z.max()
    acc = 0.0
    for k in range(k_n):
        acc += math.exp(z[k] - z_max)
    log_w = z - (z_max + math.log(acc))
    w = np.exp(log_w)

    # Binned likelihood: sum over cells of count * log(sum_k w_k P_k(cell)), each
    # P_k a difference of normal CDFs of log latency on the non-cancelling side.
    logp = 0.0
    d_mu = np.zeros(k_n)
    d_sig = np.zeros(k_n)
    d_w = np.zeros(k_n)
    prob = np.empty(k_n)
    dp_mu = np.empty(k_n)
    dp_sig = np.empty(k_n)
    for c in range(count.size):
        cell = 0.0
        for k in range(k_n):
            z_lo = (log_lo[c] - mu[k]) / sig[k]
            z_hi = (log_hi[c] - mu[k]) / sig[k]
            if z_lo > 0.0:  # above the component's median: survival functions
                p = 0.5 * (math.erfc(z_lo * _INV_SQRT2) - math.erfc(z_hi * _INV_SQRT2))
            else:
                p = 0.5 * (math.erfc(-z_hi * _INV_SQRT2) - math.erfc(-z_lo * _INV_SQRT2))
            phi_lo = math.exp(-0.5 * z_lo * z_lo - _LOG_SQRT_2PI)
            phi_hi = math.exp(-0.5 * z_hi * z_hi - _LOG_SQRT_2PI)
            prob[k] = p
            dp_mu[k] = (phi_lo - phi_hi) / sig[k]
            dp_sig[k] = (z_lo * phi_lo - z_hi * phi_hi) / sig[k]
            cell += w[k] * p
        if cell > floor:
            logp += count[c] * math.log(cell)
            g = count[c] / cell
            for k in range(k_n):
                d_mu[k] += g * w[k] * dp_mu[k]
                d_sig[k] += g * w[k] * dp_sig[k]
                d_w[k] += g * prob[k]
        else:
            logp += count[c] * math.log(floor)

    # Locations: Normal prior; ordered transform mu_k = x_0 + sum_{j<=k} exp(x_j).
    for k in range(k_n):
        dev = (mu[k] - location_mean) / location_sd
        logp += -0.5 * dev * dev - math.log(location_sd) - _LOG_SQRT_2PI
        d_mu[k] -= dev / location_sd
    tail = 0.0
    for k in range(k_n - 1, -1, -1):
        tail += d_mu[k]
        if k == 0:
            grad[0] = tail
        else:
            grad[k] = math.exp(x[k]) * tail + 1.0
            logp += x[k]  # log-Jacobian
    # Spreads: a lognormal prior on sigma with the log transform is a normal on log sigma.
    for k in range(k_n):
        dev = (x[k_n + k] - log_sigma_median) / sigma_log_sd
        logp += -0.5 * dev * dev - math.log(sigma_log_sd) - _LOG_SQRT_2PI
        grad[k_n + k] = sig[k] * d_sig[k] - dev / sigma_log_sd
    # Weights: Dirichlet prior, then back through the softmax to z and to x.
    a_sum = 0.0
    w_dot = 0.0
    for k in range(k_n):
        logp += (concentration[k] - 1.0) * log_w[k] - math.lgamma(concentration[k])
        a_sum += concentration[k]
        w_dot += w[k] * d_w[k]
    logp += math.lgamma(a_sum)
    d_z = np.empty(k_n)
    for k in range(k_n):
        d_z[k] = w[k] * (d_w[k] - w_dot) + (concentration[k] - 1.0) - (a_sum - k_n) * w[k]
    # The simplex transform's log-Jacobian: log K + K s - K logsumexp([v + s, 0]).
    u = np.zeros(k_n)
    for k in range(k_n - 1):
        u[k] = z[k] + total_v
    u_max = u.max()
    acc = 0.0
    for k in range(k_n):
        acc += math.exp(u[k] - u_max)
    lse_u = u_max + math.log(acc)
    logp += math.log(k_n) + k_n * total_v - k_n * lse_u
    last = math.exp(u[k_n - 1] - lse_u)
    for k in range(k_n - 1):
        grad[2 * k_n + k] = d_z[k] - d_z[k_n - 1] + k_n * (last - math.exp(u[k] - lse_u))
    return logp, grad
