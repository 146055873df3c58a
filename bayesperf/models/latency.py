"""Hierarchical latency model: per-group P50/P95/P99 with credible intervals.

The model is fit on a :class:`~bayesperf.summaries.LatencySummary`, never on spans, so
its cost depends on the number of groups and bins, not on the number of spans.

Likelihood
    ``lognormal``: exact, from each group's sufficient statistics (n, Σ log y,
    Σ (log y)²); spans below the clock resolution (the underflow bin) enter as
    left-censored observations. ``gamma`` and ``weibull`` (and lognormal on histogram
    input): a multinomial likelihood over the summary's bins, coarsened per group to at
    most 0.05 standard deviations of log-latency per bin — exact for binned data; with
    the 1% storage grid, binning changes the posterior by less than MCMC noise (see
    ``docs/latency-model.md``). The underflow bin ``[0, 1 µs)`` is the left-censoring
    interval in every family.

Hierarchy (``pooling="partial"``)
    Each group g has a location ℓ_g and a log-shape s_g (see
    :mod:`bayesperf.models.families`) drawn from population normals:
    ``ℓ_g ~ N(location_mu, location_sd)``, ``s_g ~ N(shape_mu, shape_sd)``. A pair with 3
    spans borrows strength from its siblings; one with 10^6 spans is governed by its
    data. A fully non-centred parameterisation fails silently once pairs hold 10^5+
    spans, a fully centred one funnels on sparse pairs. Here every level is written
    around its conditional posterior given the level above, so NUTS sees nearly
    independent standard normals for groups of any size:

    - ``s_g = m_g + c_g z_g`` with ``(m_g, c_g²)`` the conditional mean and variance of
      s_g given ``(shape_mu, shape_sd)`` when the group's own estimate is treated as
      normal (:func:`_conditionally_centered`): non-centred for a group with no
      information, centred on its data for a rich one, and following the sampled
      ``shape_sd`` in between (and likewise ℓ_g in the binned families). The
      population means get the same treatment given
      their spreads (:func:`_population_mean`), which removes the funnel between a
      mean and a small spread that data-rich groups otherwise form.
    - Lognormal with exact statistics: the location prior is conjugate, so NUTS
      samples with every ℓ_g integrated out and ℓ_g is drawn afterwards from its exact
      normal conditional (:func:`_collapsed_location`). There is then no funnel
      between ℓ_g and σ_g for a group of 3 spans, and ``target_accept=0.9`` suffices
      (15-31 leapfrog steps per draw); the binned families keep 0.98.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayesperf import schema as S
from bayesperf.models._base import BayesModel, PriorSpec
from bayesperf.models.draws import LatencyDraws, ParametricDraws
from bayesperf.models.families import Family, get_family
from bayesperf.models.nonparametric import (
    NONPARAMETRIC,
    SpacingDraws,
    SpacingStructure,
    TailPriors,
    exact_loo,
    fit_summary_draws,
)
from bayesperf.summaries.latency import By, LatencySummary, normalize_by, summarize_latency

#: Every latency family, the default first.
FAMILIES: tuple[str, ...] = (NONPARAMETRIC, "lognormal", "gamma", "weibull")
Pooling = Literal["partial", "none", "complete"]
Likelihood = Literal["auto", "binned"]
POOLINGS: tuple[Pooling, ...] = ("partial", "none", "complete")
#: Label of the overall row in :meth:`LatencyModel.summary`, and of missing group keys.
OVERALL = "(all)"
MISSING_KEY = "(none)"
#: Coarse fitting bins are at most this many standard deviations of log-latency wide.
MAX_BIN_WIDTH_SD = 0.05
#: NUTS acceptance target with the locations integrated out (exact lognormal): no
#: funnel is left, and 0.9 samples cleanly in a third of the leapfrog steps 0.98 takes
#: (0.8 also had no divergences, but the worst R-hat of 1,000 log-shapes reached 1.011
#: in two of four seeds; at 0.9 it stayed within 1.006-1.007). The binned families
#: keep the default 0.98.
CONJUGATE_TARGET_ACCEPT = 0.9
#: Exact draws of the nonparametric family: as many as NUTS's defaults, all independent
#: (with 4 × 250, the R-hat of i.i.d. draws exceeded 1.01 by chance on 21 groups).
NONPARAMETRIC_DRAWS = {"chains": 4, "draws": 1000}
#: Quantiles reported by :meth:`LatencyModel.summary` (besides the mean), by column name.
SUMMARY_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_QS = tuple(SUMMARY_QUANTILES.values())


@dataclass(frozen=True)
class LatencyPriors(PriorSpec):
    """Priors of the population (hyper)parameters, on the families' unconstrained scales.

    ``None`` fields are set from the data when the model is fit (a weakly informative
    centre at the median of the groups' moment estimates). Round-trips through JSON
    with :meth:`to_dict` / :meth:`from_dict`.

    Attributes
    ----------
    location_mu_mean, location_mu_sd : float
        Normal prior on the population mean of the group locations (log ms).
    location_sd_scale : float
        Half-normal scale of the spread of group locations.
    shape_mu_mean, shape_mu_sd : float
        Normal prior on the population mean of the group log-shapes.
    shape_sd_scale : float
        Half-normal scale of the spread of group log-shapes.

    Examples
    --------
    >>> LatencyPriors(location_sd_scale=1.0).to_dict()["location_sd_scale"]
    1.0
    """

    location_mu_mean: float | None = None
    location_mu_sd: float = 3.0
    location_sd_scale: float = 2.0
    shape_mu_mean: float | None = None
    shape_mu_sd: float = 1.0
    shape_sd_scale: float = 1.0

    def resolved(self, pilot_loc: np.ndarray, pilot_shape: np.ndarray) -> LatencyPriors:
        """Fill data-driven centres: user > data-driven > default."""
        return LatencyPriors(
            **{
                **self.to_dict(),
                "location_mu_mean": self.location_mu_mean
                if self.location_mu_mean is not None
                else float(np.median(pilot_loc)),
                "shape_mu_mean": self.shape_mu_mean
                if self.shape_mu_mean is not None
                else float(np.median(pilot_shape)),
            }
        )


@dataclass(frozen=True)
class _FitData:
    """Arrays a latency model is fit on, derived from a summary (family-independent)."""

    labels: pd.Index
    n: np.ndarray
    n_obs: np.ndarray
    n_cens: np.ndarray
    sum_log: np.ndarray
    sum_log2: np.ndarray
    censor_at: float
    has_moments: bool
    pilot_log_mean: np.ndarray
    pilot_log_sd: np.ndarray
    cell_group: np.ndarray
    cell_lo: np.ndarray
    cell_hi: np.ndarray
    cell_count: np.ndarray

    @classmethod
    def from_summary(cls, summary: LatencySummary) -> _FitData:
        if summary.n_groups == 0:
            raise ValueError("the latency summary has no groups: nothing to fit")
        empty = summary.count == 0
        if empty.any():
            names = list(summary.groups[empty])[:5]
            raise ValueError(f"groups without spans cannot be fit: {names}")
        log_mean, log_sd = _pilot_moments(summary)
        group, lo, hi, count = _coarse_cells(summary, log_sd)
        if summary.has_moments:
            n_obs = summary.n_observed
            n_cens = summary.n_censored
        else:
            n_obs = np.zeros_like(summary.count)
            n_cens = np.zeros_like(summary.count)
        return cls(
            labels=_labels(summary.groups),
            n=summary.count.astype(np.int64),
            n_obs=n_obs.astype(np.int64),
            n_cens=n_cens.astype(np.int64),
            sum_log=summary.sum_log,
            sum_log2=summary.sum_log2,
            censor_at=float(summary.edges[1]) if summary.edges[0] == 0 else 0.0,
            has_moments=summary.has_moments,
            pilot_log_mean=log_mean,
            pilot_log_sd=log_sd,
            cell_group=group,
            cell_lo=lo,
            cell_hi=hi,
            cell_count=count,
        )


def _pilot_moments(summary: LatencySummary) -> tuple[np.ndarray, np.ndarray]:
    """Per-group mean and sd of log-latency: exact moments, or from bin midpoints."""
    edges = summary.edges
    lo, hi = edges[:-1], edges[1:]
    mid = np.where(lo > 0, np.sqrt(lo * np.where(np.isinf(hi), lo * 1.02, hi)), hi / 2)
    c = summary.bin_counts.astype(np.float64)
    binned_mean = (c @ np.log(mid)) / c.sum(axis=1)
    binned_var = (c @ np.log(mid) ** 2) / c.sum(axis=1) - binned_mean**2
    mean, sd = summary.log_mean_sd()
    mean = np.where(np.isfinite(mean), mean, binned_mean)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.sqrt(np.maximum(binned_var, 0)))
    # Groups with one span (or one value) tell nothing about spread: use the typical one.
    pooled = np.median(sd[sd > 0]) if np.any(sd > 0) else 1.0
    return mean, np.where(sd > 1e-3, sd, pooled)


def _coarse_cells(summary: LatencySummary, log_sd: np.ndarray):
    """Non-empty (group, bin) cells, adjacent log bins merged up to 0.05 sd per bin.

    The underflow and overflow bins stay cells of their own (censoring intervals).
    Returns group index, lower edge, upper edge and count per cell.
    """
    edges = summary.edges
    n_bins = summary.bin_counts.shape[1]
    g, b = np.nonzero(summary.bin_counts)
    counts = summary.bin_counts[g, b]
    if summary.bins is not None and n_bins > 3:
        width = np.log(summary.bins.gamma)
        factor = np.maximum(1, np.floor(MAX_BIN_WIDTH_SD * log_sd / width)).astype(np.int64)
        f = factor[g]
        inner = (b > 0) & (b < n_bins - 1)
        first = np.where(inner, 1 + ((b - 1) // f) * f, b)
        last = np.where(inner, np.minimum(first + f, n_bins - 1), b + 1)
    else:  # user histogram buckets: fit them as they are
        first, last = b, b + 1
    frame = pd.DataFrame({"g": g, "first": first, "last": last, "count": counts})
    cells = frame.groupby(["g", "first", "last"], sort=True)["count"].sum().reset_index()
    return (
        cells["g"].to_numpy(np.int64),
        edges[cells["first"].to_numpy()],
        edges[cells["last"].to_numpy()],
        cells["count"].to_numpy(np.int64),
    )


def _labels(groups: pd.Index) -> pd.Index:
    """Group labels with missing keys (a root span's caller) spelled out, for coords."""
    if isinstance(groups, pd.MultiIndex):
        levels = [groups.get_level_values(i).astype("str") for i in range(groups.nlevels)]
        arrays = [lv.fillna(MISSING_KEY) for lv in levels]
        return pd.MultiIndex.from_arrays(arrays, names=groups.names)
    return pd.Index(groups.astype("str").fillna(MISSING_KEY), name=groups.name)


class SummaryFit(BayesModel):
    """A model fit on a :class:`LatencySummary` kept in ``idata["fit_data"]``, grouped by ``by``.

    What :class:`LatencyModel` and :class:`~bayesperf.models.mixture.MixtureModel` share:
    the group dimension's name, the fit summary and the group labels.
    """

    by: tuple[str, ...]

    @property
    def group_dim(self) -> str:
        """Name of the group dimension in results: ``pair`` for caller→callee."""
        if self.by == (S.CALLER, S.CALLEE):
            return "pair"
        return "_".join(self.by) if self.by else "group"

    def _summary_of(self, data: pd.DataFrame | LatencySummary) -> LatencySummary:
        """The summary to fit: ``data``, or the spans summarised by ``by``.

        A summary's own grouping replaces ``by``.
        """
        if not isinstance(data, LatencySummary):
            return summarize_latency(data, self.by)
        # The summary's grouping wins; keep the model's config consistent with it.
        self.by = data.by
        return data

    @property
    def fit_summary(self) -> LatencySummary:
        """The summary the model was fit on (rebuilt once per fitted posterior)."""
        cached = getattr(self, "_fit_summary_cache", None)
        if cached is None or cached[0] is not self.idata:
            summary = LatencySummary.from_dataset(self.idata["fit_data"].to_dataset())
            self._fit_summary_cache = (self.idata, summary)
        return self._fit_summary_cache[1]

    @property
    def groups(self) -> pd.Index:
        """Group labels (missing keys, such as a root's caller, spelled ``(none)``)."""
        return _labels(self.fit_summary.groups)


class LatencyModel(SummaryFit):
    """Hierarchical Bayesian latency model per group (by default caller→callee pair).

    Parameters
    ----------
    family : {"nonparametric", "lognormal", "gamma", "weibull"}, default "nonparametric"
        Latency distribution of each group. ``"nonparametric"`` (the default) follows
        each group's own histogram and takes its tails beyond the data from a Pareto
        tail pooled across groups (:mod:`bayesperf.models.nonparametric`): its P99
        intervals hold on held-out real traces, where one parametric family per group
        is confidently wrong on multimodal pairs (``docs/honest-tails.md``). The
        parametric families are hierarchical over groups and fit by NUTS.
    by : str, sequence of str or None, default ("caller", "callee")
        Grouping of spans (when fit on a span table).
    pooling : {"partial", "none", "complete"}, default "partial"
        Hierarchical partial pooling, independent groups, or one distribution for all.
        A single group (``by=None``) is always fit like ``"none"``: there is no
        population to pool over. For ``"nonparametric"`` the groups share their tail
        prior (``"partial"``) or not (``"none"``); one distribution for all is
        ``by=None``.
    priors : dict, LatencyPriors or TailPriors, optional
        Population priors (:class:`LatencyPriors` for the parametric families,
        :class:`~bayesperf.models.nonparametric.TailPriors` for ``"nonparametric"``);
        unspecified ones are set from the data.
    likelihood : {"auto", "binned"}, default "auto"
        ``"auto"`` uses the exact sufficient statistics where the family has them
        (lognormal fit on spans) and the binned likelihood otherwise; ``"binned"``
        always bins (to measure what binning costs).

    Examples
    --------
    >>> import bayesperf
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> model = bayesperf.LatencyModel().fit(spans, random_seed=1)  # doctest: +SKIP
    >>> model.summary()[["n", "p99_median", "p99_lower", "p99_upper"]]  # doctest: +SKIP
    >>> bayesperf.diagnose(model)  # R-hat, ESS, divergences per block  # doctest: +SKIP
    """

    def __init__(
        self,
        family: str = NONPARAMETRIC,
        by: By = (S.CALLER, S.CALLEE),
        pooling: Pooling = "partial",
        priors: dict[str, Any] | LatencyPriors | TailPriors | None = None,
        likelihood: Likelihood = "auto",
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown latency family {family!r}; expected one of {FAMILIES}")
        self.family = family
        if likelihood not in ("auto", "binned"):
            raise ValueError(f"unknown likelihood {likelihood!r}; expected 'auto' or 'binned'")
        if self.nonparametric and likelihood != "auto":
            raise ValueError("the nonparametric family has no binned variant: likelihood='auto'")
        self.likelihood = likelihood
        self.by = normalize_by(by)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        if self.nonparametric and pooling == "complete":
            raise ValueError(
                "pooling='complete' (one distribution for all groups) is by=None for the "
                "nonparametric family"
            )
        self.pooling = pooling
        spec = TailPriors if self.nonparametric else LatencyPriors
        if priors is not None and not isinstance(priors, dict | spec):
            raise TypeError(f"priors for family {self.family!r} must be a dict or {spec.__name__}")
        self.priors = priors if isinstance(priors, spec) else spec.from_dict(priors)

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {
            "family": self.family,
            "by": list(self.by),
            "pooling": self.pooling,
            "priors": self.priors.to_dict(),
            "likelihood": self.likelihood,
        }

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"LatencyModel(family={self.family!r}, by={self.by}, pooling={self.pooling!r}; {state})"
        )

    @property
    def nonparametric(self) -> bool:
        """Whether this is the nonparametric family (exact draws, no MCMC)."""
        return self.family == NONPARAMETRIC

    @property
    def _family(self) -> Family:
        if self.nonparametric:
            raise AttributeError("the nonparametric family has no parametric Family")
        return get_family(self.family)

    # ------------------------------------------------------------------------ fitting
    def fit(
        self,
        data: pd.DataFrame | LatencySummary,
        *,
        random_seed: int | None = None,
        **sample_kwargs: Any,
    ) -> LatencyModel:
        """Fit the model by NUTS on a span table or a latency summary.

        Parameters
        ----------
        data : pandas.DataFrame or LatencySummary
            Spans (summarised by ``by``) or a summary — also one built from histogram
            buckets with :meth:`LatencySummary.from_histogram`.
        random_seed : int, optional
            Seed for the sampler: the same seed gives the same posterior.
        **sample_kwargs
            Sampler settings, as for :func:`pymc.sample` (defaults: 1,000 draws after
            1,000 tuning steps on 4 chains with nutpie, ``target_accept=0.9`` for the
            exact lognormal likelihood and 0.98 for the binned one).

        Returns
        -------
        LatencyModel
            ``self``, fitted. A :class:`ConvergenceWarning` is issued when a diagnostic
            fails (R-hat > 1.01, bulk or tail ESS < 400, divergences).

        Notes
        -----
        The nonparametric family draws exactly, without MCMC: ``chains`` times ``draws``
        independent draws (default 4 × 1,000); the other sampler settings do not apply.
        """
        summary = self._summary_of(data)
        if self.nonparametric:
            return self._fit_nonparametric(summary, random_seed, sample_kwargs)
        fit_data = _FitData.from_summary(summary)
        priors = self.priors.resolved(
            *self._family.pilot(fit_data.pilot_log_mean, fit_data.pilot_log_sd)
        )
        model = self._build(fit_data, priors)
        defaults = {"target_accept": CONJUGATE_TARGET_ACCEPT} if self._conjugate(fit_data) else {}
        idata = self._sample(model, random_seed, sample_kwargs, **defaults)
        if self._conjugate(fit_data):
            self._draw_locations(idata, fit_data, priors, random_seed)
        idata["fit_data"] = xr.DataTree(summary.to_dataset())
        idata.attrs["resolved_priors"] = _json(priors.to_dict())
        self._idata = _drop_internal(idata)
        self._check_convergence()
        return self

    def _fit_nonparametric(
        self, summary: LatencySummary, random_seed: int | None, sample_kwargs: dict[str, Any]
    ) -> LatencyModel:
        """Exact draws of the nonparametric model (:mod:`bayesperf.models.nonparametric`)."""
        chains = int(sample_kwargs.get("chains", NONPARAMETRIC_DRAWS["chains"]))
        draws = int(sample_kwargs.get("draws", NONPARAMETRIC_DRAWS["draws"]))
        if chains < 1 or draws < 1:
            raise ValueError(f"need at least one chain and one draw, got {chains} x {draws}")
        # One seed for the tail draws, one for the weights regenerated per group.
        seeds = np.random.SeedSequence(random_seed).generate_state(2)
        pooled = self._pooled(summary.n_groups)
        _, tails = fit_summary_draws(
            summary,
            self.priors,
            n_draws=chains * draws,
            pooled=pooled,
            rng=np.random.default_rng(seeds[0]),
        )
        dim = self.group_dim

        def per_group(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
            return ("chain", "draw", dim), values.reshape(chains, draws, -1)

        post = {
            "upper_tail_index": per_group(1 / tails["upper_rate"]),
            "lower_tail_index": per_group(1 / tails["lower_rate"]),
        }
        for side in ("upper", "lower"):
            # The population of tail rates: typical index m and concentration a (one
            # per group when the groups do not share it).
            for name, key in (("typical_index", "m"), ("concentration", "a")):
                values = tails[f"{side}_{key}"]
                post[f"{side}_tail_{name}"] = (
                    (("chain", "draw"), values.reshape(chains, draws))
                    if pooled
                    else per_group(values)
                )
        posterior = xr.Dataset(
            post,
            coords={
                "chain": np.arange(chains),
                "draw": np.arange(draws),
                dim: np.arange(summary.n_groups),
            },
        )
        idata = xr.DataTree.from_dict({"posterior": posterior})
        idata["fit_data"] = xr.DataTree(summary.to_dataset())
        idata.attrs["weights_seed"] = int(seeds[1])
        idata.attrs["resolved_priors"] = _json(self.priors.to_dict())
        self._idata = idata
        self._check_convergence()
        return self

    def _build(self, data: _FitData, priors: LatencyPriors) -> pm.Model:
        family = self._family
        dim = self.group_dim
        n_groups = len(data.labels)
        pilot_loc, pilot_shape = family.pilot(data.pilot_log_mean, data.pilot_log_sd)
        with pm.Model(coords={dim: np.arange(n_groups)}) as model:
            if self.pooling == "complete":
                loc_mu = pm.Normal("location_mu", priors.location_mu_mean, priors.location_mu_sd)
                shape_mu = pm.Normal("shape_mu", priors.shape_mu_mean, priors.shape_mu_sd)
                loc = pm.Deterministic("location", loc_mu * pt.ones(n_groups), dims=dim)
                shape = pm.Deterministic("shape", shape_mu * pt.ones(n_groups), dims=dim)
                if self._exact(data):
                    loglik = family.moment_loglik(
                        loc_mu, shape_mu, data.n_obs, data.sum_log, data.sum_log2
                    )
                    pm.Potential("loglik_moments", pt.sum(loglik))
                    if (censored := np.flatnonzero(data.n_cens > 0)).size:
                        _censored_loglik(family, data, loc_mu, shape_mu, censored)
                    return model
            else:
                v_loc, v_shape = _sampling_variances(data)
                pooled = self._pooled(n_groups)
                shape = _group_level("shape", pilot_shape, v_shape, priors, pooled, dim)
                if self._conjugate(data):
                    _collapsed_location(family, data, shape, priors, pooled)
                    return model
                loc = _group_level("location", pilot_loc, v_loc, priors, pooled, dim)
            cell = family.log_cell_probs(
                loc, shape, data.cell_group, data.cell_lo, data.cell_hi, pilot_loc, pilot_shape
            )
            pm.Potential("loglik_bins", pt.sum(data.cell_count * cell))
        return model

    def _pooled(self, n_groups: int) -> bool:
        """Whether groups share sampled population parameters.

        Not with ``pooling="none"``, nor for a single group: it has no population to
        pool over (the spread is not identified).
        """
        return self.pooling == "partial" and n_groups > 1

    def _exact(self, data: _FitData) -> bool:
        """Whether the exact sufficient-statistics likelihood is used (else: binned)."""
        return self._family.has_moment_likelihood and data.has_moments and self.likelihood == "auto"

    def _conjugate(self, data: _FitData) -> bool:
        """Whether NUTS samples with the locations integrated out (:func:`_collapsed_location`)."""
        return self._exact(data) and self.pooling != "complete"

    def _draw_locations(
        self, idata: xr.DataTree, data: _FitData, priors: LatencyPriors, random_seed: int | None
    ) -> None:
        """Add ``posterior["location"]``: the conditional normal draws given each posterior draw.

        The exact conditional of :func:`_collapsed_location`; groups with censored
        spans take the ``location_censored_raw`` NUTS sampled for them.
        """
        post = idata.posterior.to_dataset()
        shape = post["shape"].transpose("chain", "draw", self.group_dim).to_numpy()
        if "location_sd" in post:
            loc_mu = post["location_mu"].to_numpy()[..., None]
            loc_sd = post["location_sd"].to_numpy()[..., None]
        else:
            loc_mu, loc_sd = priors.location_mu_mean, priors.location_mu_sd
        mean, sd, _ = self._family.location_given_shape(
            shape, data.n_obs, data.sum_log, loc_mu, loc_sd
        )
        # A stream of its own: the sampler's seed is the first draw of default_rng(seed).
        rng = np.random.default_rng(None if random_seed is None else [random_seed, 1])
        z = rng.standard_normal(shape.shape)
        censored = np.flatnonzero(data.n_cens > 0)
        if censored.size:
            z[..., censored] = post["location_censored_raw"].to_numpy()
        post["location"] = (("chain", "draw", self.group_dim), mean + sd * z)
        idata["posterior"] = xr.DataTree(post)

    # -------------------------------------------------------------- fitted accessors
    def _params(self) -> tuple[xr.DataArray, xr.DataArray]:
        post = self.idata.posterior
        return post["location"], post["shape"]

    def _distributions(self) -> LatencyDraws:
        """Every posterior draw's latency distribution per group (draws in chain order).

        The one place the two kinds of model differ after fitting: everything derived
        (quantiles, means, probabilities of cells, simulation) goes through it.
        """
        cached = getattr(self, "_distributions_cache", None)
        if cached is not None and cached[0] is self.idata:
            return cached[1]
        post = self.idata.posterior
        if self.nonparametric:
            upper = _stack(post["upper_tail_index"])
            lower = _stack(post["lower_tail_index"])
            structure = SpacingStructure.from_summary(self.fit_summary, self.priors.spacings)
            draws: LatencyDraws = SpacingDraws(
                structure, 1 / upper, 1 / lower, self.idata.attrs["weights_seed"]
            )
        else:
            loc, shape = self._params()
            draws = ParametricDraws(self._family, _stack(loc), _stack(shape), self.groups)
        self._distributions_cache = (self.idata, draws)
        return draws

    def _grid(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Group and draw positions of every (draw, group), and (chains, draws)."""
        post = self.idata.posterior
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        n_groups = self.fit_summary.n_groups
        d, g = np.meshgrid(np.arange(chains * draws), np.arange(n_groups), indexing="ij")
        return g, d, (chains, draws)

    def _as_draws(self, values: np.ndarray, shape: tuple[int, int], *extra: str) -> xr.DataArray:
        """(chains·draws, groups, ...) values as a labelled (chain, draw, group, ...) array."""
        dims = ("chain", "draw", self.group_dim, *extra)
        return self._labelled(xr.DataArray(values.reshape(*shape, *values.shape[1:]), dims=dims))

    def _labelled(self, da: xr.DataArray) -> xr.DataArray:
        groups = self.groups
        coords = {self.group_dim: np.arange(len(groups))}
        if isinstance(groups, pd.MultiIndex):
            for name in groups.names:
                coords[name] = (self.group_dim, groups.get_level_values(name).to_numpy(dtype=str))
        else:
            coords[groups.name or "group_label"] = (self.group_dim, groups.to_numpy(dtype=str))
        return da.assign_coords(coords)

    def quantiles(self, q: float | Sequence[float] = (0.5, 0.95, 0.99)) -> xr.DataArray:
        """Posterior draws of latency quantiles (ms) per group.

        Returns
        -------
        xarray.DataArray
            Dims ``(chain, draw, <group dim>, quantile)``; group label coordinates
            (``caller``, ``callee``) on the group dim.
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs <= 0) | (qs >= 1)):
            raise ValueError(f"quantiles must be strictly between 0 and 1, got {qs.tolist()}")
        _, _, shape = self._grid()
        values = self._distributions().statistics(qs)["quantiles"]
        return self._as_draws(values, shape, "quantile").assign_coords(quantile=qs)

    def latency_draws(self, n_draws: int | None = 200) -> LatencyDraws:
        """Each group's latency distribution in ``n_draws`` evenly spaced posterior draws.

        For simulation from the posterior (end-to-end requests, what-if questions):
        ``draws.ppf(u, group, draw)`` and ``draws.cdf(x, group, draw)`` broadcast over
        integer group and draw positions. ``None`` keeps every draw.

        Examples
        --------
        >>> draws = model.latency_draws(100)  # doctest: +SKIP
        >>> rng = np.random.default_rng(0)
        >>> draws.sample(group=[0, 0, 1], draw=[0, 1, 2], rng=rng)  # doctest: +SKIP
        """
        everything = self._distributions()
        keep = _evenly_spaced(everything.n_draws, n_draws)
        return everything.subset(keep)

    def means(self) -> xr.DataArray:
        """Posterior draws of the mean latency (ms) per group, dims (chain, draw, group)."""
        _, _, shape = self._grid()
        return self._as_draws(self._distributions().statistics()["mean"], shape)

    def prob_exceeds(self, threshold_ms: float, q: float = 0.99) -> pd.Series:
        """Posterior probability, per group, that the ``q`` quantile exceeds a threshold.

        Examples
        --------
        >>> model.prob_exceeds(250.0, q=0.99)  # P(P99 > 250 ms) per pair  # doctest: +SKIP
        """
        draws = self.quantiles(q).sel(quantile=q)
        prob = (draws > threshold_ms).mean(("chain", "draw")).to_numpy()
        return pd.Series(prob, index=self.groups, name=f"P(p{100 * q:g} > {threshold_ms:g} ms)")

    def ppc_pvalue(self, q: float = 0.99, *, random_seed: int = 0) -> pd.Series:
        """Posterior predictive check of each group's empirical ``q`` quantile.

        For every posterior draw, the empirical ``q`` quantile of a replicated sample of
        the group's ``n`` spans is drawn exactly (order statistics: ``F⁻¹(u)`` with
        ``u ~ Beta(k, n - k + 1)``, ``k = ceil(q n)``). The two-sided p-value says how
        surprising the observed empirical quantile is under the model: below ~0.01 the
        family does not describe that group's tail (multimodal latency: try the
        mixture model).
        """
        levels = self._ppc_levels(q, random_seed)
        replicated = self._distributions().statistics(u=levels)["at_u"].T
        p = self._ppc_p(replicated, q)
        return pd.Series(p, index=self.groups, name=f"p{100 * q:g}_ppc_p")

    def _ppc_levels(self, q: float, random_seed: int) -> np.ndarray:
        """Levels ``u ~ Beta(k, n - k + 1)`` of each draw's replicated ``q`` quantile."""
        n = self.fit_summary.count.astype(np.float64)
        k = np.clip(np.ceil(q * n), 1, n)
        n_draws = self._distributions().n_draws
        return np.random.default_rng(random_seed).beta(k, n - k + 1, size=(n_draws, len(n)))

    def _ppc_p(self, replicated: np.ndarray, q: float) -> np.ndarray:
        """Two-sided p-values of the observed ``q`` quantiles; ``replicated`` (groups, draws)."""
        observed = self.fit_summary.quantile(q)[:, 0]
        upper = (replicated >= observed[:, None]).mean(axis=1)
        lower = (replicated <= observed[:, None]).mean(axis=1)
        return np.minimum(1.0, 2 * np.minimum(upper, lower))

    def summary(self, ci_prob: float = 0.9, *, overall: bool = True) -> pd.DataFrame:
        """Posterior mean/P50/P95/P99 per group with equal-tailed credible intervals.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed interval.
        overall : bool, default True
            Append a row ``(all)`` for the latency of all spans together: the
            count-weighted mixture of the groups' posterior distributions.

        Returns
        -------
        pandas.DataFrame
            Indexed by the group; columns ``n``, ``empirical_p50/p95/p99`` (from the
            1% bins) and, for each of mean, p50, p95, p99: ``<stat>_mean``,
            ``<stat>_median``, ``<stat>_lower``, ``<stat>_upper``; ``p99_ppc_p``, the
            posterior predictive p-value of the empirical P99 (small: misfit, see
            :meth:`ppc_pvalue`).
        """
        if not 0 < ci_prob < 1:
            raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
        fit = self.fit_summary
        table = pd.DataFrame({"n": fit.count}, index=self.groups)
        empirical = fit.quantile(_QS)
        for j, name in enumerate(SUMMARY_QUANTILES):
            table[f"empirical_{name}"] = empirical[:, j]
        # One pass over the groups for every statistic (the nonparametric family
        # regenerates a group's draws per pass).
        max_draws = 1000
        stats = self._distributions().statistics(
            _QS,
            u=self._ppc_levels(0.99, 0),
            mixture=self._mixture_request(max_draws) if overall else None,
        )
        draws = {"mean": stats["mean"]}
        for j, name in enumerate(SUMMARY_QUANTILES):
            draws[name] = stats["quantiles"][..., j]
        for name, values in draws.items():
            for col, column in posterior_interval(values.T, ci_prob).items():
                table[f"{name}_{col}"] = column
        table["p99_ppc_p"] = self._ppc_p(stats["at_u"].T, 0.99)
        if overall:
            table = pd.concat([table, self._overall_row(stats, ci_prob, max_draws)])
        return table

    def overall_summary(self, ci_prob: float = 0.9, *, max_draws: int = 1000) -> pd.DataFrame:
        """The summary row for all spans together (mixture of groups, weighted by count).

        Quantiles of the mixture are found per posterior draw (by bisection on its
        CDF, or on a grid for the nonparametric family); at most ``max_draws`` evenly
        spaced draws are used.
        """
        stats = self._distributions().statistics(mixture=self._mixture_request(max_draws))
        return self._overall_row(stats, ci_prob, max_draws)

    def _mixture_request(self, max_draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights, quantiles, draws) of the all-spans mixture for ``statistics``."""
        count = self.fit_summary.count
        rows = _evenly_spaced(self._distributions().n_draws, max_draws)
        return count / count.sum(), np.array(_QS), rows

    def _overall_row(self, stats: dict, ci_prob: float, max_draws: int) -> pd.DataFrame:
        """The ``(all)`` row from ``statistics`` computed with a mixture request."""
        fit = self.fit_summary
        weights, _, rows = self._mixture_request(max_draws)
        values = {"mean": stats["mean"][rows] @ weights}
        for j, name in enumerate(SUMMARY_QUANTILES):
            values[name] = stats["mixture_quantiles"][:, j]
        row: dict[str, Any] = {"n": int(fit.count.sum())}
        pooled = fit.bin_counts.sum(axis=0, keepdims=True)
        everything = LatencySummary.from_histogram(fit.edges, pooled)
        emp = everything.quantile(_QS)[0]
        for j, name in enumerate(SUMMARY_QUANTILES):
            row[f"empirical_{name}"] = emp[j]
        for name, v in values.items():
            for col, value in posterior_interval(v, ci_prob).items():
                row[f"{name}_{col}"] = float(value)
        groups = self.groups
        label = (OVERALL,) * groups.nlevels if isinstance(groups, pd.MultiIndex) else OVERALL
        index = (
            pd.MultiIndex.from_tuples([label], names=groups.names)
            if isinstance(groups, pd.MultiIndex)
            else pd.Index([label], name=groups.name)
        )
        return pd.DataFrame([row], index=index)

    # ------------------------------------------------------------------ predictions
    def cell_probabilities(self) -> tuple[xr.DataArray, pd.DataFrame]:
        """Posterior probability of each fitting cell: (chain, draw, cell) and the cells."""
        fit = _FitData.from_summary(self.fit_summary)
        distributions = self._distributions()
        _, _, (chains, draws) = self._grid()
        d = np.arange(chains * draws)[:, None]
        cdf = distributions.cdf
        p = cdf(fit.cell_hi[None, :], fit.cell_group[None, :], d) - cdf(
            fit.cell_lo[None, :], fit.cell_group[None, :], d
        )
        prob = xr.DataArray(
            np.clip(p, 1e-300, 1).reshape(chains, draws, -1), dims=("chain", "draw", "cell")
        )
        cells = pd.DataFrame(
            {
                "group": fit.cell_group,
                "lo": fit.cell_lo,
                "hi": fit.cell_hi,
                "count": fit.cell_count,
            }
        )
        return prob, cells

    def sample_posterior_predictive(
        self, *, random_seed: int | None = None, draws: int = 200
    ) -> xr.DataTree:
        """Replicate each group's histogram from the posterior (for PPC plots).

        Adds ``posterior_predictive["latency"]``, dims ``(chain, draw, cell)``: for
        ``draws`` evenly spaced posterior draws per chain, a multinomial draw of each
        group's span count over its observed fitting cells *plus everything else*
        (``posterior_predictive["elsewhere"]``, dims ``(chain, draw, <group dim>)``: the
        replicated spans that fell in bins where the group has no data). Nothing is
        renormalised, so mass the model puts where there are no data shows up.
        """
        prob, cells = self.cell_probabilities()
        n_draws = prob.sizes["draw"]
        keep = np.unique(np.linspace(0, n_draws - 1, min(draws, n_draws)).astype(int))
        prob = prob.isel(draw=keep)
        rng = np.random.default_rng(random_seed)
        p = prob.to_numpy()
        out = np.zeros(p.shape, dtype=np.int64)
        n = self.fit_summary.count
        elsewhere = np.zeros((*p.shape[:2], len(n)), dtype=np.int64)
        for g, idx in cells.groupby("group").indices.items():
            pg = np.clip(p[..., idx], 0, 1)
            rest = np.clip(1 - pg.sum(axis=-1, keepdims=True), 0, 1)
            pg = np.concatenate([pg, rest], axis=-1)
            draws_g = rng.multinomial(n[g], pg / pg.sum(axis=-1, keepdims=True))
            out[..., idx] = draws_g[..., :-1]
            elsewhere[..., g] = draws_g[..., -1]
        ppc = xr.Dataset(
            {
                "latency": (("chain", "draw", "cell"), out),
                "elsewhere": (("chain", "draw", self.group_dim), elsewhere),
            },
            coords={"chain": prob["chain"], "draw": prob["draw"]},
        )
        self.idata["posterior_predictive"] = xr.DataTree(ppc)
        self.idata["observed_data"] = xr.DataTree(_cells_dataset(cells))
        return self.idata

    def compute_log_likelihood(self) -> xr.DataTree:
        """Add the pointwise log-likelihood group (the unit is one span; see docs).

        ``log_likelihood["latency"]`` has dims ``(chain, draw, cell)``: the log
        probability of *one* span falling in the cell (a fitting bin of one group),
        the same cells for every family fit on the same summary; ``observed_data``
        holds each cell's span count (``latency``) and edges. :func:`bayesperf.loo`
        weights cells by their counts, giving per-span PSIS-LOO comparable across
        families.
        """
        prob, cells = self.cell_probabilities()
        self.idata["log_likelihood"] = xr.DataTree(xr.Dataset({"latency": np.log(prob)}))
        self.idata["observed_data"] = xr.DataTree(_cells_dataset(cells))
        return self.idata

    def exact_loo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Exact leave-one-span-out values per fitting cell, where the model allows it.

        The nonparametric family is conjugate: :func:`bayesperf.loo` uses these
        closed forms (:func:`~bayesperf.models.nonparametric.exact_loo`) instead of
        PSIS, on the same cells as every other family. ``None`` for the parametric
        families (PSIS applies).

        Returns
        -------
        (elpd, lppd, counts) or None
            Per cell: mean leave-one-out log predictive per span, full-data log
            predictive, and span count.
        """
        if not self.nonparametric:
            return None
        fit = _FitData.from_summary(self.fit_summary)
        cells = pd.DataFrame(
            {"group": fit.cell_group, "lo": fit.cell_lo, "hi": fit.cell_hi, "count": fit.cell_count}
        )
        post = self.idata.posterior
        hyper = {}
        for side in ("upper", "lower"):
            for name, key in (("typical_index", "m"), ("concentration", "a")):
                da = post[f"{side}_tail_{name}"]
                hyper[f"{side}_{key}"] = (
                    _stack(da)
                    if self.group_dim in da.dims
                    else (da.stack(sample=("chain", "draw")).to_numpy())
                )
        elpd, lppd = exact_loo(self.fit_summary, self.priors, hyper, cells)
        return elpd, lppd, fit.cell_count.astype(np.float64)

    @classmethod
    def _from_idata(cls, idata: xr.DataTree, config: dict[str, Any]) -> LatencyModel:
        config = {**config, "by": tuple(config["by"])}
        return super()._from_idata(idata, config)  # type: ignore[return-value]


def _sampling_variances(data: _FitData) -> tuple[np.ndarray, np.ndarray]:
    """Sampling variance of each group's own location and log-shape estimates.

    Location: s²/n, inflated for small n, where the group's spread is unknown too (a
    t-distributed mean: factor (n-1)/(n-3), 10 for n <= 3; s from the typical group
    below 5 spans). Log-shape: 1/(2(n-1)). ``inf`` where the data say nothing.
    """
    n = np.maximum(data.n_obs if data.has_moments else data.n, 0).astype(np.float64)
    s2 = data.pilot_log_sd**2
    s2 = np.where(n >= 5, s2, np.median(s2))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_factor = np.where(n > 3, (n - 1) / (n - 3), 10.0)
        v_loc = np.where(n > 0, t_factor * s2 / n, np.inf)
        v_shape = np.where(n > 1, 1 / (2 * (n - 1)), np.inf)
    return v_loc, v_shape


def _group_level(
    name: str, estimate: np.ndarray, v: np.ndarray, priors: LatencyPriors, pooled: bool, dim: str
):
    """One per-group parameter (``location`` or ``shape``) and its population.

    Each level is parameterised around its conditional posterior given the level above
    (:func:`_population_mean`, :func:`_conditionally_centered`), so NUTS sees nearly
    independent standard normals whether a group holds 3 spans or 10^6. ``estimate``
    and ``v`` are each group's own estimate and its sampling variance (``inf``: the
    group's data say nothing). Unpooled, the population is the fixed prior.
    """
    mu_prior = getattr(priors, f"{name}_mu_mean")
    sd_prior = getattr(priors, f"{name}_mu_sd")
    estimate = np.where(np.isfinite(v), estimate, 0.0)
    if pooled:
        sd = pm.HalfNormal(f"{name}_sd", getattr(priors, f"{name}_sd_scale"))
        mu = _population_mean(f"{name}_mu", mu_prior, sd_prior, 1 / (sd**2 + v), estimate)
    else:
        mu, sd = mu_prior, sd_prior
    return _conditionally_centered(name, mu, sd, estimate, v, dim)


def _population_mean(name: str, prior_mean: float, prior_sd: float, precision, estimate):
    """Population mean ``mu ~ N(prior_mean, prior_sd)``, parameterised given its spread.

    Each group's estimate is (approximately) ``N(mu, 1 / precision_g)``, with
    ``precision_g = 1 / (spread² + v_g)``: given the spread, ``mu`` is normal with a
    known mean and sd. ``mu`` is that mean plus that sd times a free variable (the
    exact prior and likelihood stay in the density; ``log sd`` is the Jacobian). This
    removes the funnel between ``mu`` and a small spread that data-rich groups, pinned
    by their data, otherwise form. Groups with ``precision = 0`` carry no information.
    """
    total = 1 / prior_sd**2 + pt.sum(precision)
    mean = (prior_mean / prior_sd**2 + pt.sum(precision * estimate)) / total
    raw = pm.Flat(f"{name}_raw")
    mu = pm.Deterministic(name, mean + raw / pt.sqrt(total))
    pm.Potential(f"{name}_prior", -0.5 * ((mu - prior_mean) / prior_sd) ** 2 - 0.5 * pt.log(total))
    return mu


def _collapsed_location(
    family: Family, data: _FitData, shape, priors: LatencyPriors, pooled: bool
) -> None:
    """The exact lognormal likelihood with the group locations integrated out.

    The location prior is conjugate (:meth:`~bayesperf.models.families.LogNormal.
    location_given_shape`): given σ_g and the population, μ_g is exactly normal. NUTS
    samples (σ, population) from their marginal posterior, and
    :meth:`LatencyModel._draw_locations` then draws each μ_g from its conditional —
    exact joint draws, with no funnel between μ_g and σ_g for a group of 3 spans, no
    centred/non-centred choice, and half the dimensions. The population mean is drawn
    given the spread (:func:`_population_mean`), exactly too. Groups with spans below
    the clock resolution are not conjugate: their μ_g stays in the sampler, as
    ``mean + sd * location_censored_raw`` (a standardisation, exact for the other
    spans), with the left-censored likelihood.
    """
    if pooled:
        loc_sd = pm.HalfNormal("location_sd", priors.location_sd_scale)
        # Each group's sample mean is N(μ_pop, loc_sd² + σ_g²/n_g): precision n_g / D_g.
        precision = family.location_given_shape(shape, data.n_obs, data.sum_log, 0.0, loc_sd)[2]
        mean_log = data.sum_log / np.maximum(data.n_obs, 1)
        loc_mu = _population_mean(
            "location_mu", priors.location_mu_mean, priors.location_mu_sd, precision, mean_log
        )
    else:
        loc_mu, loc_sd = priors.location_mu_mean, priors.location_mu_sd
    loglik = family.collapsed_moment_loglik(
        shape, data.n_obs, data.sum_log, data.sum_log2, loc_mu, loc_sd
    )
    pm.Potential("loglik_moments", pt.sum(loglik))
    censored = np.flatnonzero(data.n_cens > 0)
    if censored.size:
        shape_c = shape[censored]
        mean, sd, _ = family.location_given_shape(
            shape_c, data.n_obs[censored], data.sum_log[censored], loc_mu, loc_sd
        )
        raw = pm.Normal("location_censored_raw", 0.0, 1.0, shape=censored.size)
        _censored_loglik(family, data, mean + sd * raw, shape_c, censored)


def _censored_loglik(family: Family, data: _FitData, loc, shape, censored: np.ndarray) -> None:
    """Spans below the clock resolution, left-censored at ``data.censor_at``.

    ``loc`` and ``shape`` are the parameters of the ``censored`` groups.
    """
    below = family.log_interval_prob(
        loc, shape, np.zeros(censored.size), np.full(censored.size, data.censor_at)
    )
    pm.Potential("loglik_censored", pt.sum(data.n_cens[censored] * below))


def _conditionally_centered(name: str, mu, sd, estimate: np.ndarray, v: np.ndarray, dim: str):
    """``name ~ N(mu, sd)`` per group, parameterised around its conditional posterior.

    With each group's likelihood approximated as ``N(estimate_g, v_g)``, the
    conditional posterior given the population is ``N(m_g, s_g)``, precision
    ``1/sd² + 1/v_g``. Writing ``value_g = m_g + s_g raw_g`` (the exact prior and
    likelihood stay in the density; ``log s_g`` is the Jacobian) makes ``raw_g``
    nearly standard normal and nearly independent of (mu, sd), whatever the group's
    size: non-centred when ``v_g = inf``, centred on its data when ``v_g`` is small.
    ``estimate`` must be finite (any value where ``v_g = inf``).
    """
    inv_v = 1 / v  # 0 where v = inf
    precision = 1 / sd**2 + inv_v
    cond_mean = (mu / sd**2 + estimate * inv_v) / precision
    raw = pm.Flat(f"{name}_raw", dims=dim)
    value = pm.Deterministic(name, cond_mean + raw / pt.sqrt(precision), dims=dim)
    prior = -0.5 * ((value - mu) / sd) ** 2 - pt.log(sd) - 0.5 * pt.log(precision)
    pm.Potential(f"{name}_prior", pt.sum(prior))
    return value


def _cells_dataset(cells: pd.DataFrame) -> xr.Dataset:
    """The observed fitting cells: span count (``latency``), group and edges per cell."""
    return xr.Dataset(
        {
            "latency": ("cell", cells["count"].to_numpy()),
            "cell_group": ("cell", cells["group"].to_numpy()),
            "cell_lo": ("cell", cells["lo"].to_numpy()),
            "cell_hi": ("cell", cells["hi"].to_numpy()),
        }
    )


def _drop_internal(idata: xr.DataTree) -> xr.DataTree:
    """Remove the reparameterisation's raw variables from the posterior."""
    post = idata.posterior.to_dataset()
    raw = [v for v in post.data_vars if v.endswith("_raw")]
    idata["posterior"] = xr.DataTree(post.drop_vars(raw))
    return idata


def posterior_interval(samples: np.ndarray, ci_prob: float) -> dict[str, np.ndarray]:
    """Posterior mean, median and equal-tailed ``ci_prob`` interval over the last axis.

    The one place these summaries are computed (tables and plots agree exactly).

    Examples
    --------
    >>> out = posterior_interval(np.arange(101.0), 0.9)
    >>> [round(float(out[k]), 6) for k in ("lower", "median", "upper")]
    [5.0, 50.0, 95.0]
    """
    lo_q, hi_q = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    lower, median, upper = np.quantile(samples, [lo_q, 0.5, hi_q], axis=-1)
    return {"mean": samples.mean(axis=-1), "median": median, "lower": lower, "upper": upper}


def _stack(da: xr.DataArray) -> np.ndarray:
    """A (chain, draw, group) DataArray as a (chain·draw, group) array, chain-major."""
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def _interval(da: xr.DataArray, ci_prob: float) -> dict[str, np.ndarray]:
    """:func:`posterior_interval` of a DataArray's (chain, draw) samples."""
    stacked = da.stack(sample=("chain", "draw")).transpose(..., "sample").to_numpy()
    return posterior_interval(stacked, ci_prob)


def _evenly_spaced(n: int, keep: int | None) -> np.ndarray:
    """Positions of ``keep`` evenly spaced items out of ``n`` (all of them for ``None``)."""
    if keep is None or keep >= n:
        return np.arange(n)
    if keep < 1:
        raise ValueError(f"the number of draws must be at least 1, got {keep}")
    return np.unique(np.linspace(0, n - 1, keep).round().astype(np.int64))


def _json(d: dict[str, Any]) -> str:
    import json

    return json.dumps(d)
