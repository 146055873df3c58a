"""Over-dispersed transitions: per-trace counts Dirichlet-multinomial around the rows.

:class:`~bayesperf.models.transitions.TransitionModel` treats every transition out of a
state as an independent draw from that state's row. Real traces are not like that: a
request type fixes much of its path, so the transitions of one trace out of a state
agree with each other more than independent draws would. This model keeps the rows but
lets each trace have its own probabilities around them.

The model
    A *cell* is one trace's transitions out of one source ``s``: a count vector ``x``
    with ``n`` transitions (:func:`~bayesperf.summaries.transitions.count_trace_transitions`;
    identical cells are stored once with their number of traces). Given the row ``p_s``
    and a concentration ``α_s``, a trace draws its own probabilities
    ``π ~ Dirichlet(α_s p_s)`` and then ``x ~ Multinomial(n, π)``; integrated over
    ``π`` that is the Dirichlet-multinomial

    ``log DM(x | a) = log(n! / Π x_j!) + lgamma(A) - lgamma(n + A)
    + Σ_{x_j > 0} [lgamma(x_j + a_j) - lgamma(a_j)]``, ``a = α_s p_s``, ``A = α_s``.

    ``ρ_s = 1 / (1 + α_s)`` is the intra-trace correlation: the variance of a count is
    ``n p (1 - p) (1 + (n - 1) ρ)``, the multinomial's times ``1 + (n - 1) ρ``. As
    ``α_s → ∞`` (``ρ → 0``) the model is the plain multinomial one; ``ρ → 1`` means all
    transitions of a trace out of ``s`` go to one target. A cell with ``n = 1`` says
    nothing about ``α_s`` (its probability is ``p_sj`` whatever ``α_s``).

Rows: sparse, the same support and prior as TransitionModel
    Row ``s`` has an entry per target observed from it plus one ``(unseen)`` bucket for
    the targets of the support never observed from it (the support and the symmetric
    prior with pseudo-count ``w`` per target are those of
    :class:`~bayesperf.models.transitions.TransitionPrior`): one flat vector of entries,
    nothing is ``states x states``. The sampled coordinates are additive log-ratios: each
    row's most counted entry is the reference, ``log p_e = η_e - log Σ_row exp η``, and
    the Dirichlet prior ``Σ a_e log p_e`` (Jacobian included) is exact. (A dense
    Dirichlet in PyMC does not converge at 50 states; the sparse Gamma-normalised form
    ``p = g / Σ g`` does, but each row's free scale made trajectories ~2x longer.)

Concentrations: hierarchical
    ``log α_s = μ + τ z_s``, ``z_s ~ N(0, 1)``, ``μ ~ N(μ_0, σ_μ)``,
    ``τ ~ HalfNormal(σ_τ)`` (:class:`ConcentrationPrior`). One global ``α`` would force
    the same over-dispersion on a front end routing request types and on a leaf that
    always ends; one ``α`` per source without pooling would leave the many sources whose
    cells all have ``n = 1`` (``START`` in "sequence" mode, most leaves) at an
    arbitrary prior. Partial pooling lets data-rich sources speak and gives the others
    the population's value. Non-centred: most sources say little about their ``α`` —
    no informative traces, or ``α`` far above their ``n`` where the likelihood is flat
    (the multinomial limit). Centring sources by their number of informative traces
    (as :class:`~bayesperf.models.latency.LatencyModel` does) helped data-rich
    over-dispersed sources but broke mixing on Online Boutique (R-hat 1.09), whose
    many-trace sources sit in that flat limit.

Comparing with the plain model
    :meth:`OverdispersedTransitionModel.compute_log_likelihood` and
    :meth:`TransitionModel.compute_log_likelihood
    <bayesperf.models.transitions.TransitionModel.compute_log_likelihood>` store the
    log-probability of every cell (multinomial coefficient included in both) with its
    number of traces as weight, so PSIS-LOO with one trace's transitions from one source
    as unit compares them directly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import special

from bayesperf.models._base import BayesModel
from bayesperf.models.transitions import (
    _BLOCK,
    TransitionModel,
    TransitionPrior,
    _CellLayout,
    _counts_dataset,
    _interval_levels,
    _Posterior,
)
from bayesperf.summaries.transitions import (
    MODES,
    Mode,
    TraceTransitionCounts,
    TransitionCounts,
    count_trace_transitions,
)

__all__ = ["ConcentrationPrior", "OverdispersedTransitionModel"]

#: Posterior variables kept after sampling (the raw ``g`` and ``z`` are dropped).
_KEPT = ("p", "concentration", "log_concentration_mu", "log_concentration_sd")


@dataclass(frozen=True)
class ConcentrationPrior:
    """Hyperpriors of the per-source concentrations ``log α_s ~ N(μ, τ)``.

    Attributes
    ----------
    mu_mean, mu_sd : float, default 1.0, 2.0
        ``μ ~ Normal(mu_mean, mu_sd)``: the typical ``log α``. The default puts the
        middle 95% of ``α`` between 0.05 and 150 (``ρ`` between 0.007 and 0.95).
    sd_scale : float, default 1.0
        ``τ ~ HalfNormal(sd_scale)``: how much sources differ.

    Examples
    --------
    >>> ConcentrationPrior.coerce({"mu_mean": 2.0}).mu_mean
    2.0
    """

    mu_mean: float = 1.0
    mu_sd: float = 2.0
    sd_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mu_mean", "mu_sd", "sd_scale"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or (name != "mu_mean" and value <= 0):
                raise ValueError(
                    f"concentration prior {name} must be a finite"
                    f"{'' if name == 'mu_mean' else ' positive'} number, "
                    f"got {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def coerce(cls, prior: dict[str, Any] | ConcentrationPrior | None) -> ConcentrationPrior:
        """A prior from a (partial) dict, an instance or ``None`` (the default)."""
        if isinstance(prior, ConcentrationPrior):
            return prior
        if prior is not None and not isinstance(prior, dict):
            raise TypeError(
                f"concentration_prior must be a dict or a ConcentrationPrior, got {prior!r}"
            )
        spec = dict(prior or {})
        unknown = sorted(set(spec) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown concentration prior field(s) {unknown}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**spec)


class OverdispersedTransitionModel(BayesModel):
    """Markov chain of transitions whose per-trace counts vary around the rows (PyMC).

    The Dirichlet-multinomial variant of
    :class:`~bayesperf.models.transitions.TransitionModel`: same sparse rows, support,
    prior and ``(unseen)`` bucket, plus a concentration ``α_s`` per source saying how
    much one trace's transitions from ``s`` agree with each other (see the module
    docstring). Fit by NUTS on per-trace counts.

    Parameters
    ----------
    mode : {"sequence", "calls"}, default "sequence"
        Transition definition (see :func:`bayesperf.count_transitions`).
    prior : float, dict or TransitionPrior, optional
        Prior of the rows, as in TransitionModel (default ``alpha=1`` per row).
    include_end : bool, default True
        Keep ``service -> END`` transitions (``False``: drop them, renormalise rows).
    concentration_prior : dict or ConcentrationPrior, optional
        Hyperpriors of the concentrations.

    Examples
    --------
    >>> import bayesperf
    >>> from bayesperf.models.overdispersed import OverdispersedTransitionModel
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> model = OverdispersedTransitionModel(mode="calls").fit(
    ...     spans, random_seed=1, chains=2, draws=300, tune=300, progressbar=False
    ... )  # doctest: +SKIP
    >>> model.concentration()[["rho_mean", "rho_lower", "rho_upper"]]  # doctest: +SKIP
    >>> model.transition_probabilities().head()                          # doctest: +SKIP
    """

    def __init__(
        self,
        mode: Mode = "sequence",
        prior: float | dict[str, Any] | TransitionPrior | None = None,
        include_end: bool = True,
        concentration_prior: dict[str, Any] | ConcentrationPrior | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown transition mode {mode!r}; expected one of {MODES}")
        self.mode: Mode = mode
        self.prior = TransitionPrior.coerce(prior)
        self.include_end = bool(include_end)
        self.concentration_prior = ConcentrationPrior.coerce(concentration_prior)
        self._cache: tuple[xr.DataTree, _Posterior, _CellLayout] | None = None

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {
            "mode": self.mode,
            "prior": self.prior.to_dict(),
            "include_end": self.include_end,
            "concentration_prior": self.concentration_prior.to_dict(),
        }

    def __repr__(self) -> str:
        state = "not fitted"
        if self.is_fitted:
            post, layout = self._parts
            state = (
                f"{len(post.row_code)} sources, {len(layout.n)} cells, "
                f"{int(post.count.sum())} transitions"
            )
        end = "" if self.include_end else ", include_end=False"
        return (
            f"OverdispersedTransitionModel(mode={self.mode!r}, prior=TransitionPrior(alpha="
            f"{self.prior.alpha:g}, per={self.prior.per!r}){end}; {state})"
        )

    # ------------------------------------------------------------------------ fitting
    def fit(
        self,
        data: pd.DataFrame | TraceTransitionCounts,
        *,
        random_seed: int | None = None,
        **sample_kwargs: Any,
    ) -> OverdispersedTransitionModel:
        """Fit by NUTS on spans or per-trace transition counts.

        Parameters
        ----------
        data : pandas.DataFrame or TraceTransitionCounts
            Spans (counted with
            :func:`~bayesperf.summaries.transitions.count_trace_transitions` in this
            model's mode) or per-trace counts of the same mode. Aggregate
            :class:`~bayesperf.summaries.transitions.TransitionCounts` are refused: they
            cannot show over-dispersion.
        random_seed : int, optional
            Seed for the sampler: the same seed gives the same posterior.
        **sample_kwargs
            Sampler settings, as for :func:`pymc.sample` (defaults: 1,000 draws and
            1,000 tuning steps on 4 chains with nutpie, ``target_accept=0.98``).

        Returns
        -------
        OverdispersedTransitionModel
            ``self``, fitted; a :class:`~bayesperf.models.ConvergenceWarning` when a
            diagnostic fails. ``idata`` holds the posterior (``p`` per entry,
            ``concentration`` per source and the two hyperparameters), the aggregate
            counts (``fit_data``) and the per-trace counts (``fit_cells``).

        Raises
        ------
        ValueError
            Counts of another mode, aggregate counts, no transitions to fit.
        """
        cells = self._cells_of(data)
        post = _Posterior.build(cells.to_counts(), self.prior, self.include_end)
        layout = _CellLayout.build(post, cells, self.include_end)
        idata = self._sample(self._build(post, layout), random_seed, sample_kwargs)
        posterior = idata.posterior.to_dataset()[list(_KEPT)]
        idata["posterior"] = xr.DataTree(posterior)
        idata["fit_data"] = xr.DataTree(_counts_dataset(cells.to_counts()))
        idata["fit_cells"] = xr.DataTree(cells.to_dataset())
        self._idata = idata
        self._cache = (idata, post, layout)
        self._check_convergence()
        return self

    def _cells_of(self, data: Any) -> TraceTransitionCounts:
        if isinstance(data, TransitionCounts):
            raise ValueError(
                "aggregate TransitionCounts cannot show over-dispersion (which transitions "
                "came from the same trace?): fit on the spans, or on "
                "count_trace_transitions(spans, mode)"
            )
        if isinstance(data, TraceTransitionCounts):
            if data.mode != self.mode:
                raise ValueError(
                    f"OverdispersedTransitionModel(mode={self.mode!r}) cannot be fit on "
                    f"{data.mode!r} transition counts: use mode={data.mode!r}"
                )
            return data
        return count_trace_transitions(data, mode=self.mode)

    def _build(self, post: _Posterior, layout: _CellLayout) -> pm.Model:
        labels = post.labels
        source = labels[post.row_code].astype(str)
        entry_row = post.entry_row
        n_rows = len(post.row_code)
        edge_names = _edge_names(post)
        prior_shape = post.a - post.count  # the Dirichlet prior part of each entry
        hyper = self.concentration_prior
        lik = _Likelihood.build(layout)
        # Additive log-ratio coordinates: each row's most counted entry is the reference
        # (log-ratio 0), the others are free. The row's scale, a nuisance direction of the
        # Gamma-normalised form that made NUTS trajectories long, does not exist here.
        free = _free_entries(post)
        start = np.log(post.a) - np.log(post.a[_reference_of(post)])  # plain posterior
        coords = {"edge": edge_names, "free_edge": edge_names[free], "source": source}
        with pm.Model(coords=coords) as model:
            eta_free = pm.Flat("log_ratio", dims="free_edge", initval=start[free])
            eta = pt.set_subtensor(pt.zeros(len(post.a))[free], eta_free)
            norm = pt.log(pt.inc_subtensor(pt.zeros(n_rows)[entry_row], pt.exp(eta)))
            log_p = eta - norm[entry_row]
            # Dirichlet(prior) in these coordinates, Jacobian included: Σ a_e log p_e.
            pm.Potential("row_prior", pt.sum(prior_shape * log_p))
            pm.Deterministic("p", pt.exp(log_p), dims="edge")
            mu = pm.Normal("log_concentration_mu", hyper.mu_mean, hyper.mu_sd)
            sd = pm.HalfNormal("log_concentration_sd", hyper.sd_scale)
            z = pm.Normal("log_concentration_z", 0.0, 1.0, dims="source")
            log_alpha = mu + sd * z
            pm.Deterministic("concentration", pt.exp(log_alpha), dims="source")
            pm.Potential("loglik", lik.total(pt, log_p, -log_alpha))
        return model

    # -------------------------------------------------------------- fitted accessors
    @property
    def _parts(self) -> tuple[_Posterior, _CellLayout]:
        idata = self.idata
        if self._cache is None or self._cache[0] is not idata:
            cells = self.fit_cells
            post = _Posterior.build(cells.to_counts(), self.prior, self.include_end)
            self._cache = (idata, post, _CellLayout.build(post, cells, self.include_end))
        return self._cache[1], self._cache[2]

    @property
    def fit_cells(self) -> TraceTransitionCounts:
        """The per-trace counts the model was fit on (``END`` included)."""
        return TraceTransitionCounts.from_dataset(self.idata["fit_cells"].to_dataset())

    @property
    def fit_counts(self) -> TransitionCounts:
        """The aggregate counts of :attr:`fit_cells`."""
        return self.fit_cells.to_counts()

    @property
    def states(self) -> pd.Index:
        """All states: ``START``, the services, ``END`` (unless ``include_end=False``)."""
        return self._parts[0].states

    @property
    def support(self) -> pd.Index:
        """States every row puts prior mass on: all observed targets, plus ``END``."""
        post = self._parts[0]
        return pd.Index(post.states[post.support], name="state")

    def transition_probabilities(
        self, ci_prob: float = 0.9, *, unseen: bool = True
    ) -> pd.DataFrame:
        """Posterior of every observed transition probability (the rows ``p_s``).

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed credible interval.
        unseen : bool, default True
            Add each source's ``(unseen)`` bucket (then each source's means sum to 1).

        Returns
        -------
        pandas.DataFrame
            Columns ``source``, ``target``, ``count``, ``mean``, ``median``, ``lower``,
            ``upper`` from the posterior draws; rows in the order of
            :meth:`TransitionModel.transition_probabilities
            <bayesperf.models.transitions.TransitionModel.transition_probabilities>`.
            The row is the mean over traces: one trace's own probabilities scatter
            around it as :meth:`concentration` says.

        Examples
        --------
        >>> model.transition_probabilities(0.9).head()  # doctest: +SKIP
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        post = self._parts[0]
        draws = self.idata.posterior["p"].transpose("chain", "draw", "edge").to_numpy()
        draws = draws.reshape(-1, draws.shape[-1])
        median, lower, upper = np.quantile(draws, [0.5, lo_q, hi_q], axis=0)
        labels = post.labels
        table = pd.DataFrame(
            {
                "source": pd.array(labels[post.src], dtype="str"),
                "target": pd.array(labels[post.tgt], dtype="str"),
                "count": post.count,
                "mean": draws.mean(axis=0),
                "median": median,
                "lower": lower,
                "upper": upper,
            }
        )
        if not unseen:
            table = table[post.tgt < post.n_states].reset_index(drop=True)
        return table

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Same as :meth:`transition_probabilities` (the models' common entry point)."""
        return self.transition_probabilities(ci_prob)

    def concentration(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Over-dispersion per source: ``α_s`` and the intra-trace correlation ``ρ_s``.

        ``ρ = 1 / (1 + α)``: 0 is the plain multinomial model (the transitions of a trace
        are independent draws from the row), 1 means all transitions of a trace out of
        the source go to one target. A count's variance is the multinomial's times
        ``1 + (n - 1) ρ`` for a trace with ``n`` transitions from the source.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed credible interval.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``source``: ``traces`` (traces with a transition from it),
            ``informative`` (those with at least 2: only they inform ``α``; sources
            with none get the population's value), then ``alpha_*`` and ``rho_*`` for
            ``mean``, ``median``, ``lower``, ``upper``.

        Examples
        --------
        >>> model.concentration()[["informative", "rho_median"]]  # doctest: +SKIP
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        post, layout = self._parts
        alpha = self.idata.posterior["concentration"].transpose("chain", "draw", "source")
        values = alpha.to_numpy().reshape(-1, alpha.sizes["source"])
        rows = len(post.row_code)
        traces = np.bincount(layout.row, weights=layout.traces, minlength=rows)
        informative = np.bincount(
            layout.row, weights=layout.traces * (layout.n >= 2), minlength=rows
        )
        table = pd.DataFrame(
            {"traces": traces.astype(np.int64), "informative": informative.astype(np.int64)},
            index=pd.Index(alpha["source"].to_numpy().astype(str), name="source", dtype="str"),
        )
        for name, v in (("alpha", values), ("rho", 1.0 / (1.0 + values))):
            median, lower, upper = np.quantile(v, [0.5, lo_q, hi_q], axis=0)
            table[f"{name}_mean"] = v.mean(axis=0)
            table[f"{name}_median"] = median
            table[f"{name}_lower"] = lower
            table[f"{name}_upper"] = upper
        return table

    # ------------------------------------------------------------------- comparison
    def compute_log_likelihood(self) -> xr.DataTree:
        """Add the pointwise log-likelihood: one cell = one trace's transitions from a source.

        ``log_likelihood["transitions"]`` has dims ``(chain, draw, cell)``: the
        Dirichlet-multinomial log-probability (multinomial coefficient included) of a
        cell's count vector; ``observed_data`` holds ``transitions`` (traces per cell:
        a cell's weight in LOO), ``cell_source``, ``cell_pattern`` and ``cell_n``. The
        cells and their values are on the same scale as
        :meth:`TransitionModel.compute_log_likelihood
        <bayesperf.models.transitions.TransitionModel.compute_log_likelihood>` on the
        same data, so the two models compare by LOO.

        Returns
        -------
        xarray.DataTree
            ``model.idata``.
        """
        _, layout = self._parts
        posterior = self.idata.posterior
        p = posterior["p"].transpose("chain", "draw", "edge")
        alpha = posterior["concentration"].transpose("chain", "draw", "source").to_numpy()
        lik = _Likelihood.build(layout)
        pv = p.to_numpy()
        ll = np.empty((*pv.shape[:2], len(layout.n)))
        block = max(1, _BLOCK // max(len(layout.entry_edge), 1))
        for c in range(pv.shape[0]):
            for d0 in range(0, pv.shape[1], block):  # bounded entry-sized scratch
                d = slice(d0, d0 + block)
                with np.errstate(divide="ignore"):
                    log_p = np.log(pv[c, d])
                ll[c, d] = lik.cells(log_p, -np.log(alpha[c, d]))
        return layout.store(self.idata, ll, p)

    def as_plain(self) -> TransitionModel:
        """The plain :class:`TransitionModel` on the same per-trace counts (exact, no MCMC).

        Ready for :meth:`TransitionModel.compute_log_likelihood
        <bayesperf.models.transitions.TransitionModel.compute_log_likelihood>` without
        data, e.g. to compare the two by LOO.
        """
        return TransitionModel(self.mode, self.prior, self.include_end).fit(self.fit_cells)

    @classmethod
    def _from_idata(
        cls, idata: xr.DataTree, config: dict[str, Any]
    ) -> OverdispersedTransitionModel:
        return super()._from_idata(idata, config)  # type: ignore[return-value]


def _reference_of(post: _Posterior) -> np.ndarray:
    """Per entry, the entry of its row with the largest Dirichlet parameter (count)."""
    order = np.lexsort((-post.a, post.entry_row))  # by row, then a = prior + count down
    first = order[post.ptr[:-1]]
    return first[post.entry_row]


def _free_entries(post: _Posterior) -> np.ndarray:
    """Entries with a free log-ratio: all but each row's reference."""
    return np.flatnonzero(_reference_of(post) != np.arange(len(post.a)))


def _edge_names(post: _Posterior) -> np.ndarray:
    """``"source -> target"`` per posterior entry (as TransitionModel.sample_posterior)."""
    labels = post.labels
    return np.char.add(
        np.char.add(labels[post.src].astype(str), " -> "), labels[post.tgt].astype(str)
    )


#: Terms of the power series of the log rising factorial, and where it hands over to
#: lgamma (``(x - 1) u`` at most this): the truncation error is below 1e-10 x nats.
_SERIES_TERMS = 8
_SERIES_MAX = 0.05


@dataclass(frozen=True, eq=False)
class _RisingLog:
    """``F(x, u) = Σ_{k<x} log1p(k u)`` for fixed integers ``x >= 2``, stable for all ``u > 0``.

    ``Σ_{k<x} log(p + k θ) = x log p + F(x, θ / p)``: with ``θ = 1 / α`` this is the
    Dirichlet-multinomial's ``lgamma(x + α p) - lgamma(α p) - x log α`` without the
    cancellation that ruins it when ``α`` is large (the plain multinomial limit is
    ``θ = 0``, ``F = 0``). Small ``(x - 1) u``: the series
    ``Σ_m (-1)^(m+1) u^m S_m / m`` with the power sums ``S_m = Σ_{k<x} k^m`` (data
    constants); otherwise ``x log u + lgamma(x + 1/u) - lgamma(1/u)``, where
    ``1/u < 20 x`` keeps the difference accurate.
    """

    x: np.ndarray  # float64 counts, all >= 2
    coef: np.ndarray  # (terms, len(x)): (-1)^(m+1) S_m / m

    @classmethod
    def build(cls, x: np.ndarray) -> _RisingLog:
        x = np.asarray(x, np.float64)
        top = np.asarray(x - 1, np.int64)
        coef = np.zeros((_SERIES_TERMS, len(x)))
        if len(x):
            values, inverse = np.unique(top, return_inverse=True)
            sums = np.empty((_SERIES_TERMS, len(values)))
            for i, n in enumerate(values):  # few distinct counts: exact sums in float64
                k = np.arange(1, n + 1, dtype=np.float64)
                sums[:, i] = [np.sum(k**m) for m in range(1, _SERIES_TERMS + 1)]
            m = np.arange(1, _SERIES_TERMS + 1, dtype=np.float64)[:, None]
            coef = ((-1.0) ** (m + 1) / m) * sums[:, inverse.ravel()]
        return cls(x=x, coef=coef)

    def __call__(self, xp, log_u):
        """``F`` at ``u = exp(log_u)`` with ``xp`` numpy or ``pytensor.tensor``."""
        where = np.where if xp is np else xp.switch
        gammaln = special.gammaln if xp is np else xp.gammaln
        u = xp.exp(log_u)
        small = (self.x - 1) * u <= _SERIES_MAX
        # Each branch gets a harmless input where it is not used, so that neither its
        # value nor its gradient can be inf or nan there.
        us = where(small, u, 0.0)
        series = 0.0
        for c in self.coef[::-1]:
            series = us * (c + series)
        log_ul = where(small, 0.0, log_u)
        inv = xp.exp(-log_ul)
        big = self.x * log_ul + gammaln(self.x + inv) - gammaln(inv)
        return where(small, series, big)


@dataclass(frozen=True, eq=False)
class _Likelihood:
    """Dirichlet-multinomial log-probability of the cells, in ``θ = 1 / α``.

    ``log DM(x) = coef + Σ_j [x_j log p_j + F(x_j, θ / p_j)] - F(n, θ)``; terms with
    ``x_j = 1`` or ``n = 1`` have ``F = 0`` and are left out.
    """

    layout: _CellLayout
    multi: np.ndarray  # entries with x >= 2
    multi_cells: np.ndarray  # cells with n >= 2
    entries_f: _RisingLog
    cells_f: _RisingLog

    @classmethod
    def build(cls, layout: _CellLayout) -> _Likelihood:
        multi = np.flatnonzero(layout.entry_count >= 2)
        multi_cells = np.flatnonzero(layout.n >= 2)
        return cls(
            layout=layout,
            multi=multi,
            multi_cells=multi_cells,
            entries_f=_RisingLog.build(layout.entry_count[multi]),
            cells_f=_RisingLog.build(layout.n[multi_cells]),
        )

    def total(self, xp, log_p, log_theta):
        """Σ over cells of traces x log DM, without the constant coefficients (PyTensor)."""
        lay = self.layout
        weight = lay.traces.astype(np.float64)
        entry_weight = weight[lay.entry_cell]
        e_row = lay.row[lay.entry_cell]
        out = xp.sum(entry_weight * lay.entry_count * log_p[lay.entry_edge])
        if len(self.multi):
            m = self.multi
            log_u = log_theta[e_row[m]] - log_p[lay.entry_edge[m]]
            out = out + xp.sum(entry_weight[m] * self.entries_f(xp, log_u))
        if len(self.multi_cells):
            c = self.multi_cells
            out = out - xp.sum(weight[c] * self.cells_f(xp, log_theta[lay.row[c]]))
        return out

    def cells(self, log_p: np.ndarray, log_theta: np.ndarray) -> np.ndarray:
        """``(draws, cells)`` log DM, coefficient included, from ``(draws, edges)`` log p."""
        lay = self.layout
        e_row = lay.row[lay.entry_cell]
        terms = lay.entry_count * log_p[:, lay.entry_edge]
        m = self.multi
        if len(m):
            log_u = log_theta[:, e_row[m]] - log_p[:, lay.entry_edge[m]]
            terms[:, m] += self.entries_f(np, log_u)
        out = lay.coef + np.add.reduceat(terms, lay.starts, axis=1)
        c = self.multi_cells
        if len(c):
            out[:, c] -= self.cells_f(np, log_theta[:, lay.row[c]])
        return out
