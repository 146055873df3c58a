"""How self times of one request move together: a nested Gaussian copula.

Spans of one request are not independent: a request that meets a busy frontend is slow
in every frontend span, and on a loaded host every service slows at once. Summing
independent self times makes end-to-end latency too regular: the median too high (some
span is always slow) and the P99 too low (never all slow together). On the Online
Boutique minute, shuffling self times between requests (independence, with the exact
marginals and call trees) moves the end-to-end P50 from 123 to 171 ms and the P99 from
1,458 to 911 ms.

The model
    Every span's self time is its node type's distribution (the self-time model) at a
    uniform ``u = Φ(x)``, with nested random effects

    ``x = √ρ_r Z_request + √ρ_s Z_(request, service) + √ρ_t Z_(request, node type)
    + √(1 - ρ_r - ρ_s - ρ_t) ε``

    (independent standard normals). Two spans of one request correlate by ``ρ_r`` in
    different services, ``ρ_r + ρ_s`` in the same service ``s``, and ``ρ_r + ρ_s +
    ρ_t`` in the same node type ``t``. The marginal distribution of every span is
    untouched (so any latency model plugs in, and what-if changes act on the same
    ``u``); only the dependence is added. All ``ρ = 0`` is independence.

Estimation
    From the normal scores ``z`` of the self times (``Φ⁻¹`` of their mid-rank within
    their node type, :mod:`bayesperf.summaries.calls`): the mean product ``z_i z_j``
    over pairs of spans of one request in different services estimates ``ρ_r``; over
    pairs in one service but different node types, ``ρ_r + ρ_s``; over pairs of one
    node type, ``ρ_r + ρ_s + ρ_t`` (van der Waerden correlations; a service or node
    type without such pairs gets the value of all of them together). Uncertainty: each
    posterior draw re-weights the requests with ``Dirichlet(1, ..., 1)`` weights
    (Bayesian bootstrap over requests, the independent unit).

What it does not capture
    A Gaussian copula has no tail dependence: when slow spans of a request are slow
    *together* more often than their overall correlation says, the end-to-end P99 is
    still somewhat low.

Examples
--------
>>> import bayesperf
>>> from bayesperf.summaries.calls import summarize_calls
>>> calls = summarize_calls(bayesperf.datasets.load_online_boutique())
>>> copula = SelfTimeCopula(calls.dependence)
>>> rho = copula.draws(100, np.random.default_rng(0))
>>> rho.node_type.shape == (100, len(copula.nodes))
True
>>> convert = copula.nodes.get_loc(("frontend", "hipstershop.CurrencyService/Convert"))
>>> bool(0.2 < np.median(rho.total(convert)) < 0.8)  # its spans in one request
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesperf import schema as S

#: Largest total correlation ``ρ_r + ρ_s + ρ_t`` (a span keeps some noise of its own).
MAX_RHO = 0.95


@dataclass(frozen=True)
class Correlations:
    """Copula correlations per posterior draw.

    Attributes
    ----------
    request : ndarray, shape (n_draws,)
    service : ndarray, shape (n_draws, n_services)
    node_type : ndarray, shape (n_draws, n_node_types)
    service_of_node : ndarray of int, shape (n_node_types,)
    """

    request: np.ndarray
    service: np.ndarray
    node_type: np.ndarray
    service_of_node: np.ndarray

    def total(self, node: int) -> np.ndarray:
        """Correlation of two spans of node type ``node`` in one request, per draw."""
        s = self.service_of_node[node]
        return self.request + self.service[:, s] + self.node_type[:, node]


class SelfTimeCopula:
    """Within-request correlation of self times, estimated from normal scores.

    Parameters
    ----------
    dependence : pandas.DataFrame
        :attr:`CallSummary.dependence <bayesperf.summaries.calls.CallSummary>`: per
        (request, node type) ``n``, ``sum_z``, ``sum_z2``.

    Attributes
    ----------
    services : pandas.Index
        Services, in the column order of :attr:`Correlations.service`.
    nodes : pandas.MultiIndex
        Node types ``(service, operation)``, in the column order of
        :attr:`Correlations.node_type`.
    """

    def __init__(self, dependence: pd.DataFrame) -> None:
        table = dependence
        service_name = table[S.SERVICE].astype(str).to_numpy()
        keys = pd.MultiIndex.from_arrays(
            [service_name, table[S.OPERATION].astype(str).to_numpy()],
            names=[S.SERVICE, S.OPERATION],
        )
        node, self.nodes = pd.factorize(keys, sort=True)
        self.services = pd.Index(np.unique(service_name), name=S.SERVICE)
        service = self.services.get_indexer(service_name)
        self._service_of_node = self.services.get_indexer(self.nodes.get_level_values(0))
        request = pd.factorize(table["request"].to_numpy(), sort=True)[0]
        self.n_requests = n_requests = int(request.max(initial=-1)) + 1
        n, sz, sz2 = (table[c].to_numpy(np.float64) for c in ("n", "sum_z", "sum_z2"))

        # Sums per (request, service) and per request; then products over pairs at
        # each level: (S^2 - Σ parts^2) / 2, and the number of such pairs.
        rs = pd.factorize(request * len(self.services) + service)[0]
        rs_request = np.zeros(rs.max(initial=-1) + 1, np.int64)
        rs_request[rs] = request
        rs_service = np.zeros_like(rs_request)
        rs_service[rs] = service
        s_rs, n_rs = np.bincount(rs, sz), np.bincount(rs, n)
        s_r, n_r = np.bincount(request, sz, n_requests), np.bincount(request, n, n_requests)
        self._levels = {
            # unit (request) -> (products, pairs) per row, and the column of each row
            "request": (
                (s_r**2 - np.bincount(rs_request, s_rs**2, n_requests)) / 2,
                (n_r**2 - np.bincount(rs_request, n_rs**2, n_requests)) / 2,
                np.arange(n_requests),
                np.zeros(n_requests, np.int64),
            ),
            "service": (
                (s_rs**2 - np.bincount(rs, sz * sz)) / 2,
                (n_rs**2 - np.bincount(rs, n * n)) / 2,
                rs_request,
                rs_service,
            ),
            "node_type": ((sz * sz - sz2) / 2, n * (n - 1) / 2, request, node),
        }

    def _mean_products(self, weights: np.ndarray, level: str, columns: int) -> np.ndarray:
        """Weighted mean product per column (``nan`` without pairs), ``(draws, columns)``."""
        products, pairs, request, column = self._levels[level]
        shape = (self.n_requests, columns)
        # Requests x columns, summed over rows: the weights then act by one product.
        by_products = sp.csr_array((products, (request, column)), shape=shape)
        by_pairs = sp.csr_array((pairs, (request, column)), shape=shape)
        out_p, out_n = weights @ by_products, weights @ by_pairs
        total = out_n.sum(axis=1)
        pooled = np.where(total > 0, out_p.sum(axis=1) / np.maximum(total, 1e-300), np.nan)
        return np.where(out_n > 0, out_p / np.maximum(out_n, 1e-300), pooled[:, None])

    def estimate(self, weights: np.ndarray | None = None) -> Correlations:
        """The correlations for request weights ``(draws, n_requests)`` (default: all 1)."""
        w = np.ones((1, self.n_requests)) if weights is None else np.atleast_2d(weights)
        across = np.nan_to_num(self._mean_products(w, "request", 1)[:, 0])
        rho_r = np.clip(across, 0.0, MAX_RHO)
        same_service = self._mean_products(w, "service", len(self.services))
        same_service = np.where(np.isnan(same_service), rho_r[:, None], same_service)
        rho_s = np.clip(same_service - rho_r[:, None], 0.0, MAX_RHO - rho_r[:, None])
        same_node = self._mean_products(w, "node_type", len(self.nodes))
        below = rho_r[:, None] + rho_s[:, self._service_of_node]
        same_node = np.where(np.isnan(same_node), below, same_node)
        rho_t = np.clip(same_node - below, 0.0, MAX_RHO - below)
        return Correlations(rho_r, rho_s, rho_t, self._service_of_node)

    def draws(self, n_draws: int, rng: np.random.Generator) -> Correlations:
        """Posterior draws of the correlations, by Bayesian bootstrap over requests."""
        weights = rng.standard_gamma(1.0, size=(n_draws, self.n_requests))
        weights /= weights.sum(axis=1, keepdims=True)
        return self.estimate(weights)

    def table(self) -> pd.DataFrame:
        """The point estimates per node type: ``request``, ``service``, ``node_type``, ``total``."""
        rho = self.estimate()
        frame = pd.DataFrame(
            {
                "request": np.repeat(rho.request, len(self.nodes)),
                "service": rho.service[0, self._service_of_node],
                "node_type": rho.node_type[0],
            },
            index=self.nodes,
        )
        frame["total"] = frame.sum(axis=1)
        return frame

    def __repr__(self) -> str:
        rho = self.estimate()
        return (
            f"SelfTimeCopula(requests={self.n_requests}, rho_request={float(rho.request[0]):.3f}, "
            f"node types={len(self.nodes)})"
        )
