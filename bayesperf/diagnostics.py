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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.fft import irfft, next_fast_len, rfft
from scipy.optimize import Bounds, LinearConstraint, minimize
from scipy.special import logsumexp, ndtri
from scipy.stats import norm

from bayesperf._cores import available_cores

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
    divergences = 0
    if "sample_stats" in idata and "diverging" in idata.sample_stats:
        divergences = int(idata.sample_stats["diverging"].sum())
    rows = {}
    for name in post.data_vars:
        da = post[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        draws = da.transpose("chain", "draw", *other).to_numpy().reshape(*da.shape[:2], -1)
        rhat, bulk, tail = convergence_statistics(draws)
        rows[name] = {
            "size": draws.shape[-1],
            "r_hat_max": _nan_extreme(np.nanmax, rhat),
            "ess_bulk_min": _nan_extreme(np.nanmin, bulk),
            "ess_tail_min": _nan_extreme(np.nanmin, tail),
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


def _nan_extreme(reduce, values: np.ndarray) -> float:
    """Max/min ignoring NaN (a constant block has no R-hat), NaN when all are NaN."""
    return float(reduce(values)) if np.isfinite(values).any() else np.nan


def convergence_statistics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every column at once.

    The definitions and numbers are ArviZ's (``az.rhat``, ``az.ess(method="bulk")``,
    ``az.ess(method="tail")`` at its default ``stats.ci_prob``; equal to 1e-9 in the
    tests), vectorised over parameters: ArviZ loops over them in Python, which took
    ~8 s of a 1,000-pair fit's diagnostics.

    Parameters
    ----------
    draws : numpy.ndarray
        Shape ``(chain, draw, parameter)``.

    Returns
    -------
    rhat, ess_bulk, ess_tail : numpy.ndarray
        One value per parameter (R-hat is NaN for a constant parameter).
    """
    draws = np.asarray(draws, dtype=np.float64)
    if draws.shape[-1] > _CHUNK:
        # Column blocks in threads: sorting and FFTs release the GIL, and blocks that
        # fit in cache are faster even on one core (2,000 parameters: 3.8 s -> 1.4 s).
        blocks = [draws[..., i : i + _CHUNK] for i in range(0, draws.shape[-1], _CHUNK)]
        with ThreadPoolExecutor(max_workers=available_cores()) as pool:
            parts = list(pool.map(_convergence_block, blocks))
        return tuple(np.concatenate(values) for values in zip(*parts, strict=True))  # type: ignore[return-value]
    return _convergence_block(draws)


#: Parameters per block of :func:`convergence_statistics`.
_CHUNK = 256


def _convergence_block(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from arviz_base import rcParams

    chains, n = draws.shape[:2]
    if n < 4:
        nan = np.full(draws.shape[2:], np.nan)
        return nan, nan, nan
    split = _split_chains(draws)
    z_split = _z_scale(split)
    median = np.median(split.reshape(-1, *split.shape[2:]), axis=0)
    rhat = _rhat(z_split)
    if chains < 2:
        rhat = np.full_like(rhat, np.nan)
    else:
        rhat = np.maximum(rhat, _rhat(_z_scale(np.abs(split - median))))
    bulk = _ess(z_split)
    prob = rcParams["stats.ci_prob"]
    flat = draws.reshape(-1, *draws.shape[2:])
    tail = np.minimum(
        *(
            _ess(_split_chains((draws <= np.quantile(flat, p, axis=0)).astype(np.float64)))
            for p in sorted((prob, 1 - prob))
        )
    )
    return rhat, bulk, tail


def _split_chains(x: np.ndarray) -> np.ndarray:
    """First and last halves of each chain as separate chains (a middle draw is dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each parameter (Blom's offset 3/8)."""
    c, d = x.shape[:2]
    # Rank along a contiguous last axis: sorting strided columns is several times slower.
    flat = np.ascontiguousarray(x.reshape(c * d, -1).T)
    ranks = _average_ranks(flat).T
    return ndtri((ranks - 3 / 8) / (c * d + 1 / 4)).reshape(x.shape)


def _average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties averaged) along the last axis of a 2-d array.

    ``scipy.stats.rankdata(method="average")`` from one argsort per row: tied runs in
    the sorted rows get the mean of their first and last positions. Three times faster
    than ``rankdata``.
    """
    n = rows.shape[-1]
    order = np.argsort(rows, axis=-1)
    ordered = np.take_along_axis(rows, order, axis=-1)
    position = np.arange(n)
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(rows.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    ranks = np.empty(rows.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks


def _rhat(x: np.ndarray) -> np.ndarray:
    """Potential scale reduction from between- and within-chain variances."""
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size by Geyer's initial monotone sequence, per parameter."""
    chains, n = x.shape[:2]
    m = next_fast_len(2 * n)
    f = rfft(x - x.mean(axis=1, keepdims=True), n=m, axis=1)
    acov = irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # autocorrelation by lag
    rho[0] = 1.0
    # Pairs (rho[2k], rho[2k+1]); the scan stops at the first pair summing to <= 0 (K),
    # or at the last pair within the draws. Pairs before K are made monotone.
    k_max = len(range(1, n - 3, 2))
    pairs = rho[: 2 * (k_max + 1)].reshape(k_max + 1, 2, -1)
    sums = pairs.sum(axis=1)
    stop = sums <= 0
    big_k = np.where(stop.any(axis=0), stop.argmax(axis=0), k_max)
    cols = np.arange(sums.shape[1])
    before = np.arange(k_max + 1)[:, None] < big_k
    monotone = np.minimum.accumulate(sums, axis=0)
    even = pairs[big_k, 0, cols]
    exited = stop[big_k, cols] & (sums[big_k, cols] != 0)
    # The stopping pair's first element counts only when positive; pair 0's is 1.
    last = np.where(big_k == 0, 1.0, np.where(exited & ~(even > 0), 0.0, even))
    size = chains * n
    tau = -1.0 + 2.0 * np.where(before, monotone, 0.0).sum(axis=0) + last
    ess = size / np.maximum(tau, 1 / np.log10(size))
    ess = np.where(np.isnan(rho).any(axis=0), np.nan, ess)
    flat = x.reshape(size, -1)
    constant = (flat.max(axis=0) - flat.min(axis=0)) < np.finfo(float).resolution
    return np.where(constant, float(size), ess)


@dataclass(frozen=True)
class LooResult:
    """Weighted PSIS-LOO estimate (one unit = one span, or one trace's row of transitions).

    Attributes
    ----------
    elpd : float
        Expected log predictive density of one new unit, summed over all units.
    se : float
        Its standard error.
    p_loo : float
        Effective number of parameters.
    n_units, n_cells : int
        Units (spans, trace rows) and distinct cells the estimate is built from.
    pareto_k_max : float
        Largest Pareto k over cells (> 0.7: unreliable for some cells).
    elpd_i : xarray.DataArray
        Leave-one-out log density of one unit per cell.
    counts : numpy.ndarray
        Units per cell.
    pareto_k : numpy.ndarray
        Pareto k per cell (0 where the cell's log-likelihood is the same in every draw).
    """

    elpd: float
    se: float
    p_loo: float
    n_units: int
    n_cells: int
    pareto_k_max: float
    elpd_i: xr.DataArray
    counts: np.ndarray
    pareto_k: np.ndarray

    @property
    def n_spans(self) -> int:
        """Units of a latency model (spans); an alias of ``n_units``."""
        return self.n_units

    def __str__(self) -> str:
        return (
            f"PSIS-LOO over {self.n_units:,} units in {self.n_cells:,} cells: "
            f"elpd {self.elpd:.1f} (se {self.se:.1f}), p_loo {self.p_loo:.1f}, "
            f"max Pareto k {self.pareto_k_max:.2f}"
        )


def _pointwise(model) -> tuple[str, xr.DataArray, xr.Dataset]:
    """The model's one log-likelihood variable, and the observed cells it is over."""
    if isinstance(model, xr.DataTree):
        idata = model
    else:
        if "log_likelihood" not in model.idata:
            model.compute_log_likelihood()
        idata = model.idata
    if "log_likelihood" not in idata or "observed_data" not in idata:
        raise ValueError(
            "no pointwise log-likelihood: the fit needs log_likelihood and observed_data "
            "groups (call model.compute_log_likelihood())"
        )
    names = list(idata.log_likelihood.data_vars)
    if len(names) != 1:
        raise ValueError(f"expected one log-likelihood variable, found {names}")
    name = names[0]
    observed = idata.observed_data.to_dataset()
    if name not in observed:
        raise ValueError(f"observed_data has no {name!r} counts to weight the cells by")
    return name, idata.log_likelihood[name], observed


def loo(model) -> LooResult:
    """PSIS-LOO of a fitted model, with cells of identical units weighted by their count.

    The model's pointwise log-likelihood (``log_likelihood[<name>]``, dims ``(chain,
    draw, cell)``) gives the log probability of *one* unit in each cell; the cell's
    count is ``observed_data[<name>]``. Units in a cell share one leave-one-out value,
    so the total is the count-weighted sum: exact, and as small as the cells (not 10^7
    spans). Latency models use one span as the unit, transition models one trace's
    transitions out of one state. Computes the log-likelihood first if it is missing.

    Parameters
    ----------
    model : fitted bayesperf model or xarray.DataTree
        With (or able to compute) ``log_likelihood`` and ``observed_data`` groups.

    Returns
    -------
    LooResult

    Examples
    --------
    >>> print(bayesperf.loo(model))  # doctest: +SKIP
    PSIS-LOO over 22,969 units in 1,512 cells: elpd -71234.5 (se 180.2), ...

    Models that are conjugate (the nonparametric latency family) give their exact
    leave-one-out values through ``model.exact_loo()``; those are used instead of
    PSIS (Pareto k is then 0 everywhere).
    """
    exact = None if isinstance(model, xr.DataTree) else getattr(model, "exact_loo", None)
    values = exact() if exact is not None else None
    if values is not None:
        return _loo_result(*values, k=np.zeros(len(values[0])))
    _, ll_da, observed = _pointwise(model)
    name = ll_da.name
    counts = observed[name].to_numpy().astype(np.float64)
    ll = ll_da.stack(sample=("chain", "draw")).transpose("cell", "sample").to_numpy().copy()
    if ll.shape[0] != counts.size:
        raise ValueError(f"{ll.shape[0]} log-likelihood cells but {counts.size} cell counts")
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
        chains, draws = ll_da.sizes["chain"], ll_da.sizes["draw"]
        kept = ll[varying].reshape(-1, chains, draws).transpose(1, 2, 0)
        sub = xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset({"_": (("chain", "draw"), np.zeros((chains, draws)))}),
                "log_likelihood": xr.Dataset({"ll": (("chain", "draw", "cell"), kept)}),
                "observed_data": xr.Dataset({"ll": ("cell", counts[varying])}),
            }
        )
        import arviz as az  # 6 s to import: only where PSIS is needed

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # per-cell k: summarised below
            result = az.loo(sub, pointwise=True)
        e[varying] = result.elpd_i.to_numpy()
        k[varying] = result.pareto_k.to_numpy()
    return _loo_result(e, lppd_i, counts, k=k)


def _loo_result(e: np.ndarray, lppd_i: np.ndarray, counts: np.ndarray, *, k: np.ndarray):
    """Totals of per-cell LOO values ``e`` (and full-data ``lppd_i``), weighted by counts."""
    total = float(counts @ e)
    n = counts.sum()
    mean = total / n
    return LooResult(
        elpd=total,
        # Sample variance (ddof 1) over units, as ArviZ computes it.
        se=float(np.sqrt(n / max(n - 1, 1) * (counts @ (e - mean) ** 2))),
        p_loo=float(counts @ (lppd_i - e)),
        n_units=int(n),
        n_cells=int(e.size),
        pareto_k_max=float(np.max(k)),
        elpd_i=xr.DataArray(e, dims="cell"),
        counts=counts,
        pareto_k=k,
    )


#: Pareto k above which a cell's PSIS estimate is unreliable (for S >= 2,200 draws).
GOOD_K = 0.7


def compare(models: Mapping[str, Any], *, method: str = "stacking") -> pd.DataFrame:
    """Rank models fit on the same data by weighted PSIS-LOO, as ``arviz.compare`` does.

    The table has ArviZ's columns and meaning (``rank, elpd_diff, dse, p_worse,
    diag_diff, diag_elpd, p, elpd, se, weight``), computed on count-weighted cells
    (see :func:`loo`) so that 10^7 spans cost no more than their cells; with every
    count 1 it equals ``arviz.compare`` (tested). It refuses models whose observed
    cells differ: different data, grouping or binning make ELPDs incomparable.

    Parameters
    ----------
    models : mapping of name to fitted model (or DataTree)
        At least two, each with a pointwise log-likelihood over the same cells.
    method : {"stacking", "pseudo-bma"}
        How the model weights are computed (Yao et al. 2018).

    Returns
    -------
    pandas.DataFrame
        One row per model, best first; ``arviz.plot_compare`` draws it.

    Examples
    --------
    >>> table = bayesperf.compare({"lognormal": m1, "gamma": m2})  # doctest: +SKIP
    >>> table[["elpd", "elpd_diff", "dse", "weight"]]              # doctest: +SKIP
    """
    if len(models) < 2:
        raise ValueError(f"compare needs at least two models, got {len(models)}")
    if method not in ("stacking", "pseudo-bma"):
        raise ValueError(f"unknown method {method!r}: use 'stacking' or 'pseudo-bma'")
    observed = {}
    for label, model in models.items():
        name, _, obs = _pointwise(model)
        observed[label] = (name, obs)
    first, (ref_name, ref_obs) = next(iter(observed.items()))
    for label, (name, obs) in observed.items():
        if name != ref_name:
            raise ValueError(
                f"cannot compare {first!r} and {label!r}: they score different data "
                f"({ref_name!r} vs {name!r})"
            )
        if not obs.equals(ref_obs):
            differ = [v for v in ref_obs.data_vars if v not in obs or not obs[v].equals(ref_obs[v])]
            raise ValueError(
                f"cannot compare {first!r} and {label!r}: they were fit on different data "
                f"or binning (observed cells differ in {differ or 'their size'}); fit "
                "them on the same summary with the same grouping"
            )
    results = {label: loo(model) for label, model in models.items()}
    order = sorted(results, key=lambda label: -results[label].elpd)
    counts = results[order[0]].counts
    elpd_i = np.column_stack([results[label].elpd_i.to_numpy() for label in order])
    if method == "stacking":
        weights = _stacking_weights(elpd_i, counts)
    else:
        z = np.array([results[label].elpd for label in order])
        weights = np.exp(z - z.max())
        weights /= weights.sum()
    best = elpd_i[:, 0]
    n = counts.sum()
    rows = {}
    for rank, label in enumerate(order):
        res = results[label]
        diff_i = elpd_i[:, rank] - best
        diff = float(counts @ diff_i)
        dse = float(np.sqrt(counts @ (diff_i - diff / n) ** 2)) if rank else 0.0
        bad_k = int(counts[res.pareto_k > GOOD_K].sum())
        rows[label] = {
            "rank": rank,
            "elpd_diff": diff,
            "dse": dse,
            "p_worse": float(norm.cdf(0, diff, dse + 1e-12)) if rank else np.nan,
            "diag_diff": (
                ("N < 100" if n < 100 else "|elpd_diff| < 4" if abs(diff) < 4 else "")
                if rank
                else ""
            ),
            "diag_elpd": f"{bad_k} k̂ > {GOOD_K:.2f}" if bad_k else "",
            "p": res.p_loo,
            "elpd": res.elpd,
            "se": res.se,
            "weight": float(weights[rank]),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["diag_diff"] = table["diag_diff"].astype("string")
    table["diag_elpd"] = table["diag_elpd"].astype("string")
    return table


def _stacking_weights(elpd_i: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Stacking weights maximising Σ_cells count · log Σ_k w_k exp(elpd_ik) on the simplex."""
    shift = elpd_i.max(axis=1, keepdims=True)  # per-cell constant: same argmax, no underflow
    dens = np.exp(elpd_i - shift)
    k = dens.shape[1]

    def loss(w: np.ndarray) -> float:
        return -float(counts @ np.log(dens @ w))

    def grad(w: np.ndarray) -> np.ndarray:
        return -(counts / (dens @ w)) @ dens

    result = minimize(
        loss,
        np.full(k, 1.0 / k),
        jac=grad,
        bounds=Bounds(np.zeros(k), np.ones(k)),
        constraints=LinearConstraint(np.ones(k), 1.0, 1.0),
    )
    w = np.clip(result.x, 0, None)
    return w / w.sum()
