"""Convergence diagnostics and span-weighted LOO for bayesperf models.

:func:`diagnose` checks each parameter block against R-hat <= 1.01, bulk and tail
ESS >= 400 and no divergences (the thresholds of Vehtari et al. 2021).

:func:`loo` is PSIS-LOO with *one span* as the pointwise unit. Latency models store the
log probability of one span in each non-empty fitting cell (a bin of one group) and
each cell's span count; spans in the same cell share the same leave-one-out value, so
the total is the count-weighted sum over cells. That keeps LOO exact and small (cells,
not 10^7 spans) and makes families fit on the same summary comparable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

#: Default thresholds.
RHAT_MAX = 1.01
#: Log of the smallest cell probability models report (1e-300).
_LOG_FLOOR = float(np.log(1e-300))
ESS_MIN = 400


def diagnose(model, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> pd.DataFrame:
    """Convergence table per parameter block, with pass/fail.

    Parameters
    ----------
    model : fitted bayesperf model or xarray.DataTree
        The fit to check.
    rhat_max, ess_min : float
        Thresholds (R-hat <= 1.01 and ESS >= 400 by default).

    Returns
    -------
    pandas.DataFrame
        One row per posterior variable: ``size``, ``r_hat_max``, ``ess_bulk_min``,
        ``ess_tail_min``, ``divergences`` (whole run) and ``ok``.

    Examples
    --------
    >>> bayesperf.diagnose(model)  # doctest: +SKIP
    """
    idata = model if isinstance(model, xr.DataTree) else model.idata
    post = idata.posterior.to_dataset()
    with warnings.catch_warnings():
        # Constant blocks (complete pooling repeats one value) give NaN R-hat warnings.
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(idata).to_dataset()
        bulk = az.ess(idata, method="bulk").to_dataset()
        tail = az.ess(idata, method="tail").to_dataset()
    divergences = 0
    if "sample_stats" in idata and "diverging" in idata.sample_stats:
        divergences = int(idata.sample_stats["diverging"].sum())
    rows = {}
    for name in post.data_vars:
        rows[name] = {
            "size": int(
                np.prod(
                    [post[name].sizes[d] for d in post[name].dims if d not in ("chain", "draw")]
                )
            ),
            "r_hat_max": float(np.nanmax(rhat[name].to_numpy())) if name in rhat else np.nan,
            "ess_bulk_min": float(np.nanmin(bulk[name].to_numpy())) if name in bulk else np.nan,
            "ess_tail_min": float(np.nanmin(tail[name].to_numpy())) if name in tail else np.nan,
            "divergences": divergences,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "block"
    table["ok"] = (
        (table["r_hat_max"].fillna(1.0) <= rhat_max)
        & (table["ess_bulk_min"].fillna(np.inf) >= ess_min)
        & (table["ess_tail_min"].fillna(np.inf) >= ess_min)
        & (table["divergences"] == 0)
    )
    return table


@dataclass(frozen=True)
class LooResult:
    """Span-weighted PSIS-LOO estimate.

    Attributes
    ----------
    elpd : float
        Expected log predictive density of one new span, summed over all spans.
    se : float
        Its standard error.
    p_loo : float
        Effective number of parameters.
    n_spans, n_cells : int
        Spans and distinct (group, bin) cells the estimate is built from.
    pareto_k_max : float
        Largest Pareto k over cells (> 0.7: unreliable for some cells).
    elpd_i : xarray.DataArray
        Leave-one-out log density of one span per cell.
    counts : numpy.ndarray
        Spans per cell.
    """

    elpd: float
    se: float
    p_loo: float
    n_spans: int
    n_cells: int
    pareto_k_max: float
    elpd_i: xr.DataArray
    counts: np.ndarray

    def __str__(self) -> str:
        return (
            f"PSIS-LOO over {self.n_spans:,} spans in {self.n_cells:,} cells: "
            f"elpd {self.elpd:.1f} (se {self.se:.1f}), p_loo {self.p_loo:.1f}, "
            f"max Pareto k {self.pareto_k_max:.2f}"
        )


def loo(model) -> LooResult:
    """PSIS-LOO of a fitted latency model with one span as the pointwise unit.

    Computes the model's pointwise log-likelihood first if it is not stored yet.
    """
    if "log_likelihood" not in model.idata:
        model.compute_log_likelihood()
    idata = model.idata
    counts = idata.observed_data["latency"].to_numpy().astype(np.float64)
    ll_da = idata.log_likelihood["latency"]
    ll = ll_da.stack(sample=("chain", "draw")).transpose("cell", "sample").to_numpy()
    lppd_i = logsumexp(ll, axis=-1) - np.log(ll.shape[-1])
    # A cell whose log-likelihood is the same in every draw (probability at the floor,
    # or fixed by the data) has nothing to smooth: its LOO value is that constant.
    varying = np.ptp(ll, axis=-1) > 1e-12
    # Draws at the probability floor tie in the tail, which PSIS cannot fit: a 1e-9-nat
    # ramp breaks the ties without changing any estimate visibly.
    tied = varying & (ll.min(axis=-1) <= _LOG_FLOOR + 1e-9)
    ll[tied] += 1e-9 * np.arange(ll.shape[-1]) / ll.shape[-1]
    e = lppd_i.copy()
    k = np.zeros(ll.shape[0])
    if varying.any():
        sub = idata.copy()
        chains, draws = ll_da.sizes["chain"], ll_da.sizes["draw"]
        kept = ll[varying].reshape(-1, chains, draws).transpose(1, 2, 0)
        sub["log_likelihood"] = xr.DataTree(
            xr.Dataset({"latency": (("chain", "draw", "cell"), kept)})
        )
        sub["observed_data"] = xr.DataTree(xr.Dataset({"latency": ("cell", counts[varying])}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # per-cell k: summarised below
            result = az.loo(sub, pointwise=True)
        e[varying] = result.elpd_i.to_numpy()
        k[varying] = result.pareto_k.to_numpy()
    total = float(counts @ e)
    n = counts.sum()
    mean = total / n
    return LooResult(
        elpd=total,
        se=float(np.sqrt(counts @ (e - mean) ** 2)),
        p_loo=float(counts @ (lppd_i - e)),
        n_spans=int(n),
        n_cells=int(e.size),
        pareto_k_max=float(np.max(k)),
        elpd_i=xr.DataArray(e, dims="cell"),
        counts=counts,
    )
