"""Bayesian latency mixture: multimodal latency as K lognormal components.

Many caller→callee pairs are multimodal (cache hit / miss, fast path / retry): one
lognormal per pair cannot describe them (:meth:`LatencyModel.ppc_pvalue` flags them).
:class:`MixtureModel` fits a finite mixture of lognormal components — normal components
on log latency — with Dirichlet weights, marginalised over the component of each span.

Likelihood on bins
    The model is fit on the same non-empty fitting cells (group, ``[lo, hi)``) as
    :class:`~bayesperf.models.LatencyModel`, never per span, so its cost depends on the
    number of cells, not of spans. A cell's probability is
    ``p = Σ_k w_gk [Φ((log hi − μ_k)/σ_k) − Φ((log lo − μ_k)/σ_k)]`` (each term a
    difference of normal CDFs on the side of the component's median where it does
    not cancel; ``p`` floored at 1e-300); the underflow cell ``[0, 1 µs)`` is
    left-censored, an overflow cell ``[x, inf)`` right-censored. The log-likelihood
    is ``Σ_cells count · log p``: exact for binned data.

Identification
    Component locations ``μ_k`` are *ordered* (PyMC's ordered transform), which removes
    label switching; the real risk of mixtures is local modes (see
    ``/work/shared/MEASUREMENTS.md``), so every chain starts at the same point — the
    locations at evenly spaced quantiles of the pooled log latency, no jitter.

Grouping
    With a grouping (``by``), components are shared by all groups (``μ_k``, ``σ_k``
    global) and each group has its own weights, drawn from a hierarchical Dirichlet:
    ``w_g ~ Dirichlet(α β)``, ``β ~ Dirichlet(a)`` the population shares and ``α`` the
    concentration. A pair with 5 spans borrows its weights from the population.

Sampling
    Without groups, the model's density is also written in numba
    (:mod:`bayesperf.models._mixture_density`, compiled once per machine) and sampled
    from there: the same draws as the PyMC model, without compiling it in every
    process. Grouped mixtures sample the PyMC model.

Number of components
    ``n_components="auto"`` fits K = 1 … ``max_components`` and compares them by
    span-weighted PSIS-LOO (:func:`bayesperf.diagnostics.compare`): the chosen K is the
    smallest one whose ELPD is within two standard errors of the difference (``dse``)
    of the best K. The evidence is kept in :attr:`MixtureModel.selection`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import special

from bayesperf import schema as S
from bayesperf.models import _mixture_density as _density
from bayesperf.models._base import Density, PriorSpec, sample_density
from bayesperf.models.latency import (
    MISSING_KEY,
    SummaryFit,
    _cells_dataset,
    _FitData,
    _interval,
    _json,
)
from bayesperf.summaries.latency import By, LatencySummary, normalize_by

__all__ = ["MixtureModel", "MixturePriors"]

#: Smallest cell probability reported (as :class:`LatencyModel` does).
_PROB_FLOOR = 1e-300
#: ``auto``: a smaller K is kept while best ELPD − its ELPD <= this many ``dse``.
SELECTION_DSE = 2.0
#: Each component needs about three fitting cells (location, spread, weight).
CELLS_PER_COMPONENT = 3
#: Posterior draws used by the per-span and per-grid computations.
MAX_DRAWS = 400
#: NUTS target acceptance of a mixture without groups: no hierarchy, no funnel, so the
#: models' 0.98 only shortens steps. On the bundled demo minute (K=3, 2 chains x 1,000)
#: 0.9 took 10 leapfrog steps per draw instead of 19, with ESS 840 instead of 724 and
#: no divergences either way. Grouped mixtures keep 0.98.
UNGROUPED_TARGET_ACCEPT = 0.9


@dataclass(frozen=True)
class MixturePriors(PriorSpec):
    """Priors of a :class:`MixtureModel`; ``None`` fields are set from the data.

    Attributes
    ----------
    location_mean : float, optional
        Centre of the normal prior on every component location μ_k (log ms); default:
        the median of the pooled log latency.
    location_sd : float, default 3.0
        Its standard deviation (log ms: a factor e^3 ≈ 20 either way).
    sigma_median : float, optional
        Median of the lognormal prior on every component spread σ_k (sd of log
        latency); default: the pooled spread of log latency divided by K.
    sigma_log_sd : float, default 1.0
        Standard deviation of log σ_k under that prior.
    weight_concentration : float, default 1.0
        Dirichlet concentration of the weights (one group) or of the population shares
        ``β`` (grouped); 1 is uniform on the simplex.
    group_concentration_median : float, default 10.0
        Grouped models: median of the lognormal prior on ``α``, the concentration of
        the group weights around the population shares (large: groups alike).
    group_concentration_log_sd : float, default 1.0
        Standard deviation of log α.

    Examples
    --------
    >>> MixturePriors(location_sd=2.0).to_dict()["location_sd"]
    2.0
    """

    location_mean: float | None = None
    location_sd: float = 3.0
    sigma_median: float | None = None
    sigma_log_sd: float = 1.0
    weight_concentration: float = 1.0
    group_concentration_median: float = 10.0
    group_concentration_log_sd: float = 1.0


@dataclass(frozen=True)
class _Pooled:
    """Pooled (all groups) log-latency facts used for priors and initial values."""

    n_spans: int
    n_cells: int
    log_quantile: Any  # callable q -> log ms
    log_median: float
    log_spread: float
    edges_text: str


def _pooled(summary: LatencySummary, fit: _FitData) -> _Pooled:
    pooled = summary.bin_counts.sum(axis=0, keepdims=True)
    everything = LatencySummary.from_histogram(summary.edges, pooled)
    floor = fit.censor_at / 2 if fit.censor_at > 0 else 1e-6

    def log_quantile(q):
        return np.log(np.maximum(everything.quantile(q)[0], floor))

    q16, q50, q84 = log_quantile([0.16, 0.5, 0.84])
    cells = pd.unique(pd.Series(list(zip(fit.cell_lo, fit.cell_hi, strict=True))))
    nonzero = np.flatnonzero(pooled[0])
    lo, hi = summary.edges[nonzero[0]], summary.edges[nonzero[-1] + 1]
    return _Pooled(
        n_spans=int(summary.count.sum()),
        n_cells=len(cells),
        log_quantile=log_quantile,
        log_median=float(q50),
        log_spread=float(max((q84 - q16) / 2, 0.05)),
        edges_text=f"[{lo:.4g}, {hi:.4g}) ms",
    )


class MixtureModel(SummaryFit):
    """Mixture of lognormal latency components, fit on binned latency summaries.

    Parameters
    ----------
    n_components : int or "auto", default 3
        Number of components K, or ``"auto"`` to choose K in 1 … ``max_components`` by
        span-weighted PSIS-LOO (smallest K within 2 dse of the best ELPD).
    by : str, sequence of str or None, default None
        Grouping of spans (when fit on a span table): ``None`` fits one mixture to all
        spans; ``("caller", "callee")`` shares the components across pairs with a
        weight vector per pair (hierarchical Dirichlet). A summary's own grouping wins.
    priors : dict or MixturePriors, optional
        Priors; unspecified ones are set from the data.
    max_components : int, default 5
        Largest K tried by ``"auto"``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> fast, slow = rng.lognormal(0.0, 0.3, 7000), rng.lognormal(np.log(50), 0.2, 3000)
    >>> spans = pd.DataFrame({"latency": np.concatenate([fast, slow])})
    >>> model = MixtureModel(n_components=2).fit(spans, random_seed=1)  # doctest: +SKIP
    >>> model.summary()[["weight_median", "median_ms_median"]]          # doctest: +SKIP
    >>> model.predict(spans)                 # most probable component   # doctest: +SKIP
    >>> MixtureModel("auto").fit(spans, random_seed=1).selection         # doctest: +SKIP
    """

    convergence_hint = "more draws or fewer components usually help"

    def __init__(
        self,
        n_components: int | str = 3,
        by: By = None,
        priors: dict[str, Any] | MixturePriors | None = None,
        max_components: int = 5,
    ) -> None:
        if isinstance(max_components, bool) or not isinstance(max_components, int | np.integer):
            raise ValueError(f"max_components must be a positive integer, got {max_components!r}")
        if max_components < 1:
            raise ValueError(f"max_components must be >= 1, got {max_components}")
        if n_components != "auto":
            if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
                raise ValueError(
                    f"n_components must be a positive integer or 'auto', got {n_components!r}"
                )
            if n_components < 1:
                raise ValueError(f"n_components must be >= 1, got {n_components}")
            n_components = int(n_components)
        self.n_components = n_components
        self.max_components = int(max_components)
        self.by = normalize_by(by)
        self.priors = (
            priors if isinstance(priors, MixturePriors) else MixturePriors.from_dict(priors)
        )
        #: ``"auto"``: every candidate fit by K (in memory only, not saved).
        self.candidates: dict[int, MixtureModel] = {}

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {
            "n_components": self.n_components,
            "by": list(self.by),
            "priors": self.priors.to_dict(),
            "max_components": self.max_components,
        }

    def __repr__(self) -> str:
        state = f"fitted, K={self.k}" if self.is_fitted else "not fitted"
        return f"MixtureModel(n_components={self.n_components!r}, by={self.by}; {state})"

    @property
    def grouped(self) -> bool:
        """Whether weights are per group (a grouping is set)."""
        return bool(self.by)

    # ------------------------------------------------------------------------ fitting
    def fit(
        self,
        data: pd.DataFrame | LatencySummary,
        *,
        random_seed: int | None = None,
        **sample_kwargs: Any,
    ) -> MixtureModel:
        """Fit by NUTS on a span table or a latency summary (binned likelihood).

        Parameters
        ----------
        data : pandas.DataFrame or LatencySummary
            Spans (summarised by ``by``) or a summary, also one built from histogram
            buckets; a summary's grouping replaces ``by``.
        random_seed : int, optional
            Seed of the sampler (every candidate of ``"auto"`` uses it too).
        **sample_kwargs
            Sampler settings, as for :func:`pymc.sample` (defaults:
            :attr:`BayesModel.sample_defaults`).

        Returns
        -------
        MixtureModel
            ``self``, fitted. A :class:`ConvergenceWarning` is issued when a diagnostic
            of the (chosen) fit fails.

        Raises
        ------
        ValueError
            An empty summary, a group without spans, all spans in one bin (a mixture is
            not identified: use :class:`LatencyModel`), fewer spans than components, or
            fewer than 3 fitting cells per component for an explicit K.
        """
        summary = self._summary_of(data)
        if summary.n_groups == 0 or int(summary.count.sum()) == 0:
            raise ValueError("the latency summary has no spans: nothing to fit a mixture to")
        fit = _FitData.from_summary(summary)
        pooled = _pooled(summary, fit)
        if pooled.n_cells < 2:
            raise ValueError(
                f"all {pooled.n_spans:,} latencies fall in one bin {pooled.edges_text}: a "
                "mixture (even of one lognormal's spread) is not identified; use LatencyModel"
            )
        if self.n_components == "auto":
            return self._fit_auto(summary, fit, pooled, random_seed, sample_kwargs)
        k = self.n_components
        if k > pooled.n_spans:
            raise ValueError(f"n_components={k} exceeds the number of spans ({pooled.n_spans})")
        if k * CELLS_PER_COMPONENT > pooled.n_cells:
            raise ValueError(
                f"n_components={k} needs at least {k * CELLS_PER_COMPONENT} distinct fitting "
                f"bins ({CELLS_PER_COMPONENT} per component); the data fill {pooled.n_cells} "
                f"in {pooled.edges_text}: use fewer components or n_components='auto'"
            )
        self._fit_k(summary, fit, pooled, k, random_seed, sample_kwargs)
        self._check_convergence()
        return self

    def _fit_k(
        self,
        summary: LatencySummary,
        fit: _FitData,
        pooled: _Pooled,
        k: int,
        random_seed: int | None,
        sample_kwargs: dict[str, Any],
    ) -> None:
        priors = self._resolved_priors(pooled, k)
        defaults = {} if self.grouped else {"target_accept": UNGROUPED_TARGET_ACCEPT}
        settings = self._sampler_settings(sample_kwargs, **defaults)
        if not self.grouped and self._density_samples(settings):
            # The same density as _build's model, compiled once per machine (see
            # _mixture_density), from the same start: no per-process compilation.
            density = _ungrouped_density(fit, pooled, priors, k)
            idata = sample_density(density, random_seed, **settings)
        else:
            idata = self._sample_pymc(fit, pooled, priors, k, random_seed, sample_kwargs, defaults)
        idata["fit_data"] = xr.DataTree(summary.to_dataset())
        idata.attrs["resolved_priors"] = _json(priors.to_dict())
        idata.attrs["n_components_fit"] = int(k)
        self._idata = idata

    def _sample_pymc(
        self,
        fit: _FitData,
        pooled: _Pooled,
        priors: MixturePriors,
        k: int,
        random_seed: int | None,
        sample_kwargs: dict[str, Any],
        defaults: dict[str, Any],
    ) -> xr.DataTree:
        """Sample the PyMC model (:meth:`_build`): grouped mixtures, or PyMC-only settings."""
        model, initvals = self._build(fit, pooled, priors, k)
        kwargs = dict(sample_kwargs)
        # Every chain starts at the data quantiles, without jitter: jittered starts
        # find wrong local modes (MEASUREMENTS.md), and some chains agree on them.
        if kwargs.get("nuts_sampler", self.sample_defaults["nuts_sampler"]) == "nutpie":
            compile_kwargs = dict(kwargs.pop("compile_kwargs", None) or {})
            compile_kwargs.setdefault("jitter_rvs", set())
            kwargs["compile_kwargs"] = compile_kwargs
        else:
            kwargs.setdefault("init", "adapt_diag")
        kwargs.setdefault("initvals", initvals)
        # Checked by _check_convergence (PyMC's own checks warn on K=1's constant weight).
        kwargs.setdefault("compute_convergence_checks", False)
        return self._sample(model, random_seed, kwargs, **defaults)

    def _resolved_priors(self, pooled: _Pooled, k: int) -> MixturePriors:
        p = self.priors
        return MixturePriors(
            **{
                **p.to_dict(),
                "location_mean": p.location_mean
                if p.location_mean is not None
                else pooled.log_median,
                "sigma_median": p.sigma_median
                if p.sigma_median is not None
                else pooled.log_spread / k,
            }
        )

    def _build(
        self, data: _FitData, pooled: _Pooled, priors: MixturePriors, k: int
    ) -> tuple[pm.Model, dict[str, np.ndarray]]:
        n_groups = len(data.labels)
        coords = {"component": np.arange(k), self.group_dim: np.arange(n_groups)}
        start_mu, start_sd, start_w = _em_start(data, pooled, k)
        initvals: dict[str, np.ndarray] = {"location": start_mu, "sigma": start_sd}
        with pm.Model(coords=coords) as model:
            location = pm.Normal(
                "location",
                priors.location_mean,
                priors.location_sd,
                dims="component",
                transform=pm.distributions.transforms.ordered,
            )
            sigma = pm.LogNormal(
                "sigma", np.log(priors.sigma_median), priors.sigma_log_sd, dims="component"
            )
            a = np.full(k, priors.weight_concentration)
            if self.grouped:
                shares = pm.Dirichlet("weights_pop", a, dims="component")
                conc = pm.LogNormal(
                    "concentration",
                    np.log(priors.group_concentration_median),
                    priors.group_concentration_log_sd,
                )
                # a + α β, not α β: a data-rich group without some component would
                # drive α down and w_gk to 1e-12, a funnel NUTS diverges in.
                weights = pm.Dirichlet(
                    "weights", a + conc * shares, dims=(self.group_dim, "component")
                )
                cell_weights = weights[data.cell_group]  # (cell, component)
                initvals["weights_pop"] = start_w
                initvals["weights"] = np.tile(start_w, (n_groups, 1))
                initvals["concentration"] = np.array(priors.group_concentration_median)
            else:
                weights = pm.Dirichlet("weights", a, dims="component")
                cell_weights = weights[None, :]
                initvals["weights"] = start_w
            comp = _component_probs(location, sigma, data.cell_lo, data.cell_hi)
            cell = pt.sum(cell_weights * comp, axis=1)
            loglik = data.cell_count * pt.log(pt.maximum(cell, _PROB_FLOOR))
            pm.Potential("loglik_bins", pt.sum(loglik))
        return model, initvals

    def _fit_auto(
        self,
        summary: LatencySummary,
        fit: _FitData,
        pooled: _Pooled,
        random_seed: int | None,
        sample_kwargs: dict[str, Any],
    ) -> MixtureModel:
        # Fallback documented: K is capped by the spans and by the cells the data fill.
        k_max = min(self.max_components, pooled.n_spans, max(1, pooled.n_cells // 3))
        self.candidates = {}
        for k in range(1, k_max + 1):
            candidate = MixtureModel(k, by=summary.by, priors=self.priors)
            candidate._fit_k(summary, fit, pooled, k, random_seed, dict(sample_kwargs))
            candidate.compute_log_likelihood()
            self.candidates[k] = candidate
            table = _selection_table(self.candidates)
            # Stop at the first K that does not beat the best smaller K by more than
            # SELECTION_DSE dse: larger K are costly (a redundant component makes NUTS
            # take deep trees) and would have to beat it too.
            if k > 1 and not table.loc[k, "chosen"]:
                break
        chosen = int(table.index[table["chosen"]][0])
        idata = self.candidates[chosen].idata.copy()
        idata["model_selection"] = xr.DataTree(_selection_dataset(table))
        self._idata = idata
        self._check_convergence()
        return self

    # -------------------------------------------------------------- fitted accessors
    @property
    def k(self) -> int:
        """Number of components of the fit (the chosen one for ``"auto"``)."""
        return int(self.idata.posterior.sizes["component"])

    @property
    def selection(self) -> pd.DataFrame | None:
        """``"auto"``: the evidence per K (PSIS-LOO comparison), else None.

        Indexed by ``n_components``; columns as :func:`bayesperf.diagnostics.compare`
        (``rank, elpd_diff, dse, p, elpd, se, weight`` …) plus ``r_hat_max``,
        ``divergences`` and ``chosen``.
        """
        if "model_selection" not in self.idata:
            return None
        ds = self.idata["model_selection"].to_dataset()
        frame = ds.to_dataframe()[json.loads(ds.attrs["columns"])]
        frame.index = frame.index.astype(int)
        frame.index.name = "n_components"
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].astype("string")
        return frame

    def _params(self) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
        """Locations, spreads (chain, draw, component), weights (chain, draw, group, comp)."""
        post = self.idata.posterior
        w = post["weights"]
        if "component" in w.dims and self.group_dim not in w.dims:
            w = w.expand_dims({self.group_dim: len(self.groups)}, axis=2)
        return post["location"], post["sigma"], w.transpose("chain", "draw", self.group_dim, ...)

    def _flat_params(self, max_draws: int | None = None):
        """NumPy (sample, K), (sample, K), (sample, G, K), evenly thinned to max_draws."""
        loc, sigma, w = self._params()

        def flat(da: xr.DataArray) -> np.ndarray:
            return da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()

        mu, sd, ww = flat(loc), flat(sigma), flat(w)
        if max_draws is not None and mu.shape[0] > max_draws:
            keep = np.unique(np.linspace(0, mu.shape[0] - 1, max_draws).astype(int))
            mu, sd, ww = mu[keep], sd[keep], ww[keep]
        return mu, sd, ww

    def _labelled(self, da: xr.DataArray) -> xr.DataArray:
        groups = self.groups
        coords = {self.group_dim: np.arange(len(groups))}
        if isinstance(groups, pd.MultiIndex):
            for name in groups.names:
                coords[name] = (self.group_dim, groups.get_level_values(name).to_numpy(dtype=str))
        else:
            coords[groups.name or "group_label"] = (self.group_dim, groups.to_numpy(dtype=str))
        return da.assign_coords(coords)

    # ---------------------------------------------------------------------- summaries
    def summary(self, ci_prob: float = 0.9, *, by_group: bool = False) -> pd.DataFrame:
        """Posterior weight, median latency and spread of each component.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed credible intervals.
        by_group : bool, default False
            Grouped models: one row per (group, component) with that group's weights
            (and ``n``, the group's spans). Otherwise one row per component; its
            ``weight`` is the share of all spans (the span-weighted mean of the group
            weights).

        Returns
        -------
        pandas.DataFrame
            Indexed by ``component`` (0 = fastest); for each of ``weight``,
            ``median_ms`` (``exp μ_k``) and ``sigma`` (sd of log latency, σ_k):
            ``<stat>_mean``, ``<stat>_median``, ``<stat>_lower``, ``<stat>_upper``.
        """
        if not 0 < ci_prob < 1:
            raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
        loc, sigma, w = self._params()
        n = self.fit_summary.count.astype(np.float64)
        stats: dict[str, xr.DataArray] = {"median_ms": np.exp(loc), "sigma": sigma}
        if by_group and self.grouped:
            rows = []
            weights = _interval(w, ci_prob)  # (group, component)
            others = {name: _interval(da, ci_prob) for name, da in stats.items()}
            for g, key in enumerate(self.groups):
                for c in range(self.k):
                    row: dict[str, Any] = {"n": int(n[g])}
                    for col, v in weights.items():
                        row[f"weight_{col}"] = float(v[g, c])
                    for name, parts in others.items():
                        for col, v in parts.items():
                            row[f"{name}_{col}"] = float(v[c])
                    rows.append(((*key, c) if isinstance(key, tuple) else (key, c), row))
            names = [*(self.groups.names or ["group"]), "component"]
            index = pd.MultiIndex.from_tuples([r[0] for r in rows], names=names)
            return pd.DataFrame([r[1] for r in rows], index=index)
        overall = (w * xr.DataArray(n / n.sum(), dims=self.group_dim)).sum(self.group_dim)
        table = pd.DataFrame(index=pd.RangeIndex(self.k, name="component"))
        for name, da in {"weight": overall, **stats}.items():
            for col, values in _interval(da, ci_prob).items():
                table[f"{name}_{col}"] = values
        return table

    def quantiles(self, q: float | Sequence[float] = (0.5, 0.95, 0.99)) -> xr.DataArray:
        """Posterior draws of the mixture's latency quantiles (ms).

        Found per draw by bisection on the mixture CDF (60 halvings of log latency).

        Returns
        -------
        xarray.DataArray
            Dims ``(chain, draw, quantile)``, or ``(chain, draw, <group dim>, quantile)``
            for a grouped model (with group label coordinates).
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs <= 0) | (qs >= 1)):
            raise ValueError(f"quantiles must be strictly between 0 and 1, got {qs.tolist()}")
        loc, sigma, w = self._params()
        mu = loc.to_numpy()[:, :, None, :]  # (chain, draw, 1, K)
        sd = sigma.to_numpy()[:, :, None, :]
        values = _mixture_quantiles(mu, sd, w.to_numpy(), qs)  # (chain, draw, G, Q)
        da = xr.DataArray(
            values,
            dims=("chain", "draw", self.group_dim, "quantile"),
            coords={"chain": loc["chain"], "draw": loc["draw"], "quantile": qs},
        )
        if not self.grouped:
            return da.isel({self.group_dim: 0}, drop=True)
        return self._labelled(da)

    # -------------------------------------------------------------------- predictions
    def predict_proba(
        self, spans: pd.DataFrame | np.ndarray | Sequence[float], *, max_draws: int = MAX_DRAWS
    ) -> pd.DataFrame:
        """Posterior probability that each span belongs to each component.

        For a draw, ``p(k | y) ∝ w_gk N(log y | μ_k, σ_k)`` (spans below the clock
        resolution: ``w_gk Φ((log r − μ_k)/σ_k)``, r = 1 µs); the result averages it
        over at most ``max_draws`` evenly spaced posterior draws.

        Parameters
        ----------
        spans : pandas.DataFrame or array of float
            A span table with ``latency`` (ms) and the model's ``by`` columns, or, for
            an ungrouped model, latencies in ms.
        max_draws : int, default 400
            Posterior draws averaged over.

        Returns
        -------
        pandas.DataFrame
            One row per span (the table's index), one column per component; rows sum
            to 1.
        """
        y, g, index = self._span_inputs(spans)
        mu, sd, w = self._flat_params(max_draws)
        log_w = np.log(np.maximum(w, _PROB_FLOOR))  # (S, G, K)
        censor_at = self._censor_at()
        out = np.zeros((y.size, self.k))
        with np.errstate(divide="ignore"):
            log_y = np.log(y)
        below = y < censor_at
        chunk = max(1, 2_000_000 // (mu.shape[0] * self.k))
        for start in range(0, y.size, chunk):
            sl = slice(start, start + chunk)
            z = (log_y[sl, None, None] - mu[None]) / sd[None]  # (n, S, K)
            dens = -0.5 * z**2 - np.log(sd[None])
            if below[sl].any():
                zc = (math.log(censor_at) - mu[None]) / sd[None] if censor_at > 0 else -np.inf
                dens = np.where(below[sl, None, None], special.log_ndtr(zc), dens)
            logp = dens + np.moveaxis(log_w[:, g[sl], :], 1, 0)  # (n, S, K)
            logp -= special.logsumexp(logp, axis=-1, keepdims=True)
            out[sl] = np.exp(logp).mean(axis=1)
        return pd.DataFrame(out, index=index, columns=pd.RangeIndex(self.k, name="component"))

    def predict(
        self, spans: pd.DataFrame | np.ndarray | Sequence[float], *, max_draws: int = MAX_DRAWS
    ) -> pd.Series:
        """Most probable component of each span (0 = fastest), from :meth:`predict_proba`.

        Examples
        --------
        >>> model.predict([0.8, 55.0])  # doctest: +SKIP
        """
        proba = self.predict_proba(spans, max_draws=max_draws)
        return pd.Series(proba.to_numpy().argmax(axis=1), index=proba.index, name="component")

    def _censor_at(self) -> float:
        edges = self.fit_summary.edges
        return float(edges[1]) if edges[0] == 0 else 0.0

    def _span_inputs(self, spans) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        """Latencies, group positions and row index of the spans to predict."""
        if isinstance(spans, pd.DataFrame):
            if S.LATENCY not in spans.columns:
                raise ValueError(f"span table lacks a {S.LATENCY!r} column: {list(spans.columns)}")
            y = spans[S.LATENCY].to_numpy(dtype=np.float64, na_value=np.nan)
            index = spans.index
        else:
            y = np.atleast_1d(np.asarray(spans, dtype=np.float64))
            if y.ndim != 1:
                raise ValueError(f"latencies must be one-dimensional, got shape {y.shape}")
            index = pd.RangeIndex(y.size)
        bad = ~np.isfinite(y) | (y < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} latencies are missing, negative or infinite "
                f"(first: position {i}, value {y[i]!r})"
            )
        groups = self.groups
        if len(groups) == 1 and not (self.grouped and isinstance(spans, pd.DataFrame)):
            return y, np.zeros(y.size, dtype=np.int64), index
        if not isinstance(spans, pd.DataFrame):
            raise ValueError(
                f"the model has {len(groups)} groups by {list(self.by)}: pass a span table "
                "with those columns, not bare latencies"
            )
        missing = [c for c in self.by if c not in spans.columns]
        if missing:
            raise ValueError(f"span table lacks the grouping column(s) {missing}")
        keys = [spans[c].astype("str").fillna(MISSING_KEY).to_numpy(dtype=object) for c in self.by]
        if isinstance(groups, pd.MultiIndex):
            pos = groups.get_indexer(pd.MultiIndex.from_arrays(keys))
        else:
            pos = groups.get_indexer(pd.Index(keys[0]))
        if (pos < 0).any():
            i = int(np.flatnonzero(pos < 0)[0])
            unknown = tuple(k[i] for k in keys)
            raise ValueError(
                f"{int((pos < 0).sum())} spans belong to groups the model was not fit on "
                f"(first: {unknown if len(unknown) > 1 else unknown[0]!r})"
            )
        return y, pos.astype(np.int64), index

    # ------------------------------------------------------------- cells and LOO
    def cell_probabilities(self) -> tuple[xr.DataArray, pd.DataFrame]:
        """Posterior probability of each fitting cell: (chain, draw, cell) and the cells.

        The cells are exactly :class:`LatencyModel`'s for the same summary.
        """
        fit = _FitData.from_summary(self.fit_summary)
        loc, sigma, w = self._params()
        mu = loc.to_numpy()[..., None, :]  # (chain, draw, 1, K)
        sd = sigma.to_numpy()[..., None, :]
        log_w = np.log(np.maximum(w.to_numpy()[:, :, fit.cell_group, :], _PROB_FLOOR))
        comp = _log_interval_prob(mu, sd, fit.cell_lo[:, None], fit.cell_hi[:, None])
        logp = special.logsumexp(log_w + comp, axis=-1)
        prob = np.clip(np.exp(logp), _PROB_FLOOR, 1.0)
        da = xr.DataArray(
            prob,
            dims=("chain", "draw", "cell"),
            coords={"chain": loc["chain"], "draw": loc["draw"]},
        )
        cells = pd.DataFrame(
            {"group": fit.cell_group, "lo": fit.cell_lo, "hi": fit.cell_hi, "count": fit.cell_count}
        )
        return da, cells

    def compute_log_likelihood(self) -> xr.DataTree:
        """Add the pointwise log-likelihood group (one span per unit), as LatencyModel does.

        ``log_likelihood["latency"]`` (chain, draw, cell) is the log probability of one
        span in each fitting cell; ``observed_data`` holds the cells' counts and edges.
        A :class:`LatencyModel` fit on the same summary has the same cells, so
        :func:`bayesperf.diagnostics.compare` can rank the two.
        """
        prob, cells = self.cell_probabilities()
        self.idata["log_likelihood"] = xr.DataTree(xr.Dataset({"latency": np.log(prob)}))
        self.idata["observed_data"] = xr.DataTree(_cells_dataset(cells))
        return self.idata

    @classmethod
    def _from_idata(cls, idata: xr.DataTree, config: dict[str, Any]) -> MixtureModel:
        config = {**config, "by": tuple(config["by"])}
        return super()._from_idata(idata, config)  # type: ignore[return-value]


# ----------------------------------------------------------------------- helpers
#: Finite stand-ins for the edges 0 and inf, so no gradient meets ``0 * inf``: far
#: beyond any latency (ms), with Φ = 0 and 1 there to double precision.
_EDGE_ZERO, _EDGE_INF = 1e-12, 1e300


def _component_probs(location, sigma, lo: np.ndarray, hi: np.ndarray):
    """PyTensor: P(lo <= y < hi) of each cell (rows) under each component (columns).

    A difference of two normal CDFs of log latency, taken on the side of the
    component's median where it does not cancel: CDFs below it, survival functions
    above it, both as ``erfc`` (which keeps full relative precision in its tail). A
    term underflows to 0 only beyond ~38 σ from its component; the mixture then rests
    on the other components, or on the 1e-300 floor of the cell probability. The
    fit's cost is these cells × components terms: in linear space they need no
    ``erfcx``, ``log1mexp`` or log-sum-exp, which sampled 2.5x faster than the same
    likelihood in log space, with the same draws (``benchmarks/demo.py``).
    """
    log_lo = np.log(np.where(lo > 0, lo, _EDGE_ZERO))[:, None]
    log_hi = np.log(np.where(np.isfinite(hi), hi, _EDGE_INF))[:, None]
    z_lo = (log_lo - location[None, :]) / sigma[None, :]
    z_hi = (log_hi - location[None, :]) / sigma[None, :]
    upper = pt.gt(z_lo, 0)  # the cell lies above the component's median
    a = pt.switch(upper, -z_hi, z_lo)
    b = pt.switch(upper, -z_lo, z_hi)
    # Φ(b) − Φ(a), Φ(x) = erfc(−x / √2) / 2.
    return 0.5 * (pt.erfc(-b / math.sqrt(2.0)) - pt.erfc(-a / math.sqrt(2.0)))


def _ungrouped_density(fit: _FitData, pooled: _Pooled, priors: MixturePriors, k: int) -> Density:
    """The density of :meth:`MixtureModel._build`'s model without groups, for nutpie.

    Same cells, edge stand-ins, priors, floor and EM start as the PyMC model.
    """
    log_lo = np.log(np.where(fit.cell_lo > 0, fit.cell_lo, _EDGE_ZERO))
    log_hi = np.log(np.where(np.isfinite(fit.cell_hi), fit.cell_hi, _EDGE_INF))
    count = fit.cell_count.astype(np.float64)
    concentration = np.full(k, float(priors.weight_concentration))
    data = (
        log_lo,
        log_hi,
        count,
        float(priors.location_mean),
        float(priors.location_sd),
        math.log(priors.sigma_median),
        float(priors.sigma_log_sd),
        concentration,
        _PROB_FLOOR,
    )

    def expand(x: np.ndarray) -> dict[str, np.ndarray]:
        location, sigma, weights = _density.constrained(x, k)
        return {"location": location, "sigma": sigma, "weights": weights}

    return Density(
        logp_and_grad=lambda x: _density.logp_and_grad(x, *data),
        expand=expand,
        start=_density.unconstrained(*_em_start(fit, pooled, k)),
        dims={name: ("component",) for name in ("location", "sigma", "weights")},
        coords={"component": np.arange(k)},
    )


def _log_interval_prob(mu, sd, lo, hi) -> np.ndarray:
    """NumPy log P(lo <= y < hi) for lognormal components (stable in both tails)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z_lo = np.where(lo > 0, (np.log(np.where(lo > 0, lo, 1.0)) - mu) / sd, -np.inf)
        z_hi = np.where(
            np.isfinite(hi), (np.log(np.where(np.isfinite(hi), hi, 1.0)) - mu) / sd, np.inf
        )
    # Upper tail: difference of survival functions (Φ(-z)), lower tail: of CDFs.
    upper = z_lo > 0
    a = np.where(upper, -z_hi, z_lo)
    b = np.where(upper, -z_lo, z_hi)
    log_b = special.log_ndtr(b)
    log_a = special.log_ndtr(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = log_b + np.log1p(-np.exp(np.minimum(log_a - log_b, 0.0)))
    return np.maximum(np.nan_to_num(out, nan=-np.inf), np.log(_PROB_FLOOR))


def _em_start(data: _FitData, pooled: _Pooled, k: int, iterations: int = 300):
    """Deterministic starting point: the best of a few EM runs on the pooled cells.

    EM on the log-midpoints of the pooled fitting cells (weighted by their counts),
    started from evenly spaced quantiles and from greedy histogram peaks; the run with
    the highest binned log-likelihood wins. NUTS starts there, unjittered, so every
    chain explores the main mode instead of a local one (starting at quantiles alone
    leaves a 10% mode uncovered when two starts fall in a 60% one).
    """
    lo, hi = data.cell_lo, data.cell_hi
    frame = pd.DataFrame({"lo": lo, "hi": hi, "count": data.cell_count})
    cells = frame.groupby(["lo", "hi"], sort=True)["count"].sum().reset_index()
    lo, hi = cells["lo"].to_numpy(), cells["hi"].to_numpy()
    count = cells["count"].to_numpy(np.float64)
    inner = (lo > 0) & np.isfinite(hi)
    safe_lo = np.where(lo > 0, lo, 1.0)
    log_width = np.log(np.where(inner, hi, 2.0 * safe_lo) / safe_lo)
    # Cell centres in log ms; the censored cells sit half a width outside their edge.
    x = np.where(lo > 0, np.log(safe_lo) + 0.5 * log_width, np.log(hi / 2))
    min_sd = max(0.02, float(np.median(log_width[inner])) if inner.any() else 0.02)
    spread = pooled.log_spread

    starts = [pooled.log_quantile((np.arange(k) + 0.5) / k)]
    peaks: list[float] = []
    for _ in range(k):  # greedy: the highest cell far from the peaks taken so far
        dist = np.min(np.abs(x[:, None] - np.array(peaks)[None, :]), axis=1) if peaks else 1.0
        score = count * np.minimum(dist / spread, 1.0) ** 2
        peaks.append(float(x[int(np.argmax(score))]))
    starts.append(np.sort(np.array(peaks)))

    best = None
    for mu0 in starts:
        mu = np.array(mu0, dtype=np.float64)
        sd = np.full(k, max(spread / k, min_sd))
        w = np.full(k, 1.0 / k)
        for _ in range(iterations):
            logp = np.log(w) - np.log(sd) - 0.5 * ((x[:, None] - mu) / sd) ** 2
            r = np.exp(logp - special.logsumexp(logp, axis=1, keepdims=True)) * count[:, None]
            nk = r.sum(axis=0) + 1e-9
            w = np.maximum(nk / nk.sum(), 1e-6)
            w /= w.sum()
            mu = (r * x[:, None]).sum(axis=0) / nk
            sd = np.sqrt((r * (x[:, None] - mu) ** 2).sum(axis=0) / nk)
            sd = np.maximum(sd, min_sd)
        order = np.argsort(mu)
        mu, sd, w = mu[order], sd[order], w[order]
        comp = _log_interval_prob(mu, sd, lo[:, None], hi[:, None])
        ll = float(count @ special.logsumexp(np.log(w) + comp, axis=1))
        if best is None or ll > best[0]:
            best = (ll, mu, sd, w)
    _, mu, sd, w = best
    mu = mu + 1e-3 * np.arange(k)  # strictly increasing for the ordered transform
    mu = np.maximum.accumulate(mu)
    w = np.maximum(w, 1e-3)
    return mu, sd, w / w.sum()


def _mixture_quantiles(mu, sd, w, qs, iterations: int = 60) -> np.ndarray:
    """Quantiles of Σ_k w_k LogNormal(μ_k, σ_k) per draw and group, by bisection.

    ``mu``/``sd`` (..., 1, K), ``w`` (..., G, K); returns (..., G, len(qs)). (The
    latency module's helper takes one weight vector for all draws; here weights are
    posterior draws too.)
    """
    z = special.ndtri(qs)
    comp_q = mu[..., None] + sd[..., None] * z  # (..., 1, K, Q) log quantiles
    lo = np.broadcast_to(comp_q.min(axis=-2), (*w.shape[:-1], qs.size)).copy()
    hi = np.broadcast_to(comp_q.max(axis=-2), (*w.shape[:-1], qs.size)).copy()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        cdf = np.einsum(
            "...kq,...k->...q", special.ndtr((mid[..., None, :] - mu[..., None]) / sd[..., None]), w
        )
        below = cdf < qs
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi))


def _selection_table(candidates: dict[int, MixtureModel]) -> pd.DataFrame:
    """PSIS-LOO comparison of the K candidates, with the parsimony rule applied."""
    from bayesperf.diagnostics import diagnose, loo

    if len(candidates) == 1:
        ((k, model),) = candidates.items()
        res = loo(model)
        table = pd.DataFrame(
            {
                "rank": [0],
                "elpd_diff": [0.0],
                "dse": [0.0],
                "p": [res.p_loo],
                "elpd": [res.elpd],
                "se": [res.se],
                "weight": [1.0],
            },
            index=[k],
        )
    else:
        try:
            from bayesperf.diagnostics import compare
        except ImportError:  # pragma: no cover - older bayesperf
            compare = None
        if compare is not None:
            table = compare({str(k): m for k, m in candidates.items()})
            table.index = table.index.astype(int)
        else:  # pragma: no cover
            table = _compare_fallback(candidates)
    table = table.sort_index()
    table.index.name = "n_components"
    diag = {k: diagnose(m) for k, m in candidates.items()}
    table["r_hat_max"] = [float(diag[k]["r_hat_max"].max()) for k in table.index]
    table["divergences"] = [int(diag[k]["divergences"].max()) for k in table.index]
    # Parsimony: the smallest K whose ELPD is within SELECTION_DSE dse of the best.
    gap = -table["elpd_diff"]
    ok = gap <= SELECTION_DSE * table["dse"]
    chosen = int(table.index[ok.to_numpy()].min())
    table["chosen"] = table.index == chosen
    return table


def _compare_fallback(candidates: dict[int, MixtureModel]) -> pd.DataFrame:  # pragma: no cover
    from bayesperf.diagnostics import loo

    res = {k: loo(m) for k, m in candidates.items()}
    best = max(res, key=lambda k: res[k].elpd)
    counts = res[best].counts
    n = counts.sum()
    rows = {}
    z = np.array([res[k].elpd for k in res])
    weights = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    order = sorted(res, key=lambda k: -res[k].elpd)
    for k, wk in zip(res, weights, strict=True):
        d = res[k].elpd_i.to_numpy() - res[best].elpd_i.to_numpy()
        diff = float(counts @ d)
        rows[k] = {
            "rank": order.index(k),
            "elpd_diff": diff,
            "dse": float(np.sqrt(counts @ (d - diff / n) ** 2)),
            "p": res[k].p_loo,
            "elpd": res[k].elpd,
            "se": res[k].se,
            "weight": float(wk),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _selection_dataset(table: pd.DataFrame) -> xr.Dataset:
    """The selection table as a Dataset (dim ``n_components``) that netCDF can store."""
    data = {}
    for col in table.columns:
        values = table[col].to_numpy()
        if values.dtype == object or isinstance(table[col].dtype, pd.StringDtype):
            values = table[col].astype(str).to_numpy().astype(str)
        data[col] = ("n_components", values)
    return xr.Dataset(
        data,
        coords={"n_components": table.index.to_numpy(np.int64)},
        attrs={"columns": json.dumps([str(c) for c in table.columns])},
    )
