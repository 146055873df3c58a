"""Latency families: the conjugate lognormal pieces against numerical integration."""

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy import stats

from bayesperf.models.families import get_family

LOGNORMAL = get_family("lognormal")


@pytest.mark.parametrize("n", [0, 1, 3, 50])
def test_collapsed_lognormal_integrates_the_location_out_exactly(n):
    """∫ N(μ | a, τ) L(μ, σ) dμ and the moments of μ given σ, by quadrature on a fine
    grid, match the closed forms to 1e-8 (relative)."""
    rng = np.random.default_rng(n)
    log_y = np.log(rng.lognormal(1.0, 0.7, n))
    sum_log, sum_log2 = log_y.sum(), (log_y**2).sum()
    shape, prior_mu, prior_sd = np.log(0.6), 0.5, 1.3

    grid = np.linspace(-12, 12, 400_001)
    mu = pt.dvector("mu")
    loglik = LOGNORMAL.moment_loglik(mu, shape, n, sum_log, sum_log2).eval({mu: grid})
    density = np.exp(loglik) * stats.norm.pdf(grid, prior_mu, prior_sd)
    evidence = np.trapezoid(density, grid)
    mean = np.trapezoid(grid * density, grid) / evidence
    sd = np.sqrt(np.trapezoid((grid - mean) ** 2 * density, grid) / evidence)

    collapsed = LOGNORMAL.collapsed_moment_loglik(
        pt.as_tensor(shape), n, sum_log, sum_log2, prior_mu, prior_sd
    ).eval()
    assert collapsed == pytest.approx(np.log(evidence), rel=1e-8, abs=1e-10)
    for given in (pt.as_tensor(shape), shape):  # PyTensor and NumPy agree
        m, s, precision = (
            np.asarray(x.eval() if hasattr(x, "eval") else x)
            for x in LOGNORMAL.location_given_shape(given, n, sum_log, prior_mu, prior_sd)
        )
        assert m == pytest.approx(mean, rel=1e-8)
        assert s == pytest.approx(sd, rel=1e-8)
        assert precision == pytest.approx(n / (n * prior_sd**2 + 0.36))
