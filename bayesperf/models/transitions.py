"""Bayesian Markov chain of service-to-service transitions: exact and conjugate.

Each state with outgoing transitions (``START`` and every service; ``END`` absorbs)
has a row of transition probabilities ``p_i = (p_ij)_j`` with a Dirichlet prior. The
transition counts are multinomial given the rows, so the posterior is exact and needs no
MCMC: row ``i`` is ``Dirichlet(a_i)`` with ``a_ij = w + n_ij``.

Prior and support
    The *support* of every row is the same set ``T``: every state that appears as a
    target anywhere in the data, plus ``END`` (with ``include_end=True``). ``START`` is
    never a target, so nothing enters it. The prior is symmetric over ``T``: each target
    gets the pseudo-count ``w``. With ``TransitionPrior(per="row")`` (the default) the
    row's total prior mass is ``alpha`` (``w = alpha / |T|``): however many services
    there are, the prior weighs as ``alpha`` transitions, and a row with ``n_i``
    transitions gives unseen targets at most ``alpha / (n_i + alpha)`` in total. With
    ``per="target"`` each target gets ``w = alpha`` (``alpha=1``: uniform on the
    simplex), which on a large graph puts most of a sparse row's mass on targets never
    seen from it.

Sparse representation (nothing is ``|states| x |states|``)
    By the aggregation property of the Dirichlet, the observed targets of row ``i``
    together with one bucket ``(unseen)`` holding all its unseen targets are exactly
    ``Dirichlet(w + n_ij, ..., w * (|T| - k_i))`` (``k_i`` observed targets). Every
    sparse output lists the observed transitions plus that bucket, so each row sums to
    1. Any single unseen target ``u`` has the exact marginal
    ``Beta(w, n_i + w |T| - w)``; :meth:`TransitionModel.transition_matrix` spreads the
    bucket over the unseen targets that way (dense, small graphs only).

Exact marginals
    ``p_ij ~ Beta(a_ij, a_i0 - a_ij)`` with ``a_i0 = n_i + w |T|``: means, medians and
    equal-tailed intervals come from the Beta distribution, with no sampling.

Paths
    Walks from a state follow the posterior predictive: a transition matrix drawn from
    the posterior per path. :meth:`TransitionModel.sample_paths` draws it lazily in its
    exact marginal form (the Dirichlet-categorical Pólya urn: the ``c``-th visit of a
    path to row ``i`` goes to ``j`` with probability ``(a_ij + c_ij) / (a_i0 + c)``,
    ``c_ij`` its own earlier ``i -> j`` steps), so a row costs nothing until a path
    visits it. A walk stops at ``END``, at ``(unseen)`` (a target never seen from that
    state: the model cannot say where the request went), at a state without outgoing
    transitions (a *dead end*, e.g. a leaf with ``include_end=False``) or after
    ``max_steps`` transitions. :meth:`TransitionModel.expected_visits` treats the same
    states as absorbing.

``include_end=False``
    ``service -> END`` transitions are dropped before fitting and ``END`` leaves the
    support: every row is renormalised over the remaining targets, and states whose
    only transitions were to ``END`` become dead ends.

Over-dispersion
    The counts are treated as independent categorical draws, but transitions of one
    span or trace are not: a call repeated 3 times per span adds 3 transitions at once,
    the calls of a span are independent Bernoulli draws, and a request type fixes much
    of its path. Over-dispersed data then get intervals that are too narrow; on the
    simulator's calls-mode data (Bernoulli calls) they are instead slightly conservative
    (coverage 0.94 of nominal 0.9 intervals, see the tests).
    :class:`~bayesperf.models.overdispersed.OverdispersedTransitionModel` lets the
    transitions of one trace vary around the row (Dirichlet-multinomial);
    :meth:`TransitionModel.compute_log_likelihood` scores both on the same per-trace
    cells, so LOO says which one the data support.

Not implemented yet
    Transition plots.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from scipy import special
from scipy.sparse import csgraph
from scipy.sparse import linalg as spla

from bayesperf import schema as S
from bayesperf.models._base import BayesModel
from bayesperf.summaries.transitions import (
    MODES,
    Mode,
    TraceTransitionCounts,
    TransitionCounts,
    count_trace_transitions,
    count_transitions,
)

__all__ = ["UNSEEN", "TransitionModel", "TransitionPrior"]

#: Label of the bucket holding all targets never observed from a source.
UNSEEN = "(unseen)"
#: Largest dense array (elements) :meth:`TransitionModel.transition_matrix` builds.
MAX_DENSE = 20_000_000
#: Sparse posterior draws per block (elements) in :meth:`TransitionModel.expected_visits`.
_BLOCK = 2_000_000
#: Up to this many reachable states expected visits are solved by sparse LU (exact);
#: above it by GMRES per draw (relative residual 1e-10).
DIRECT_MAX_STATES = 300

PriorScale = Literal["row", "target"]
Seed = int | np.random.Generator | None


@dataclass(frozen=True)
class TransitionPrior:
    """Symmetric Dirichlet prior of each source row over the support.

    Attributes
    ----------
    alpha : float, default 1.0
        Prior concentration, > 0.
    per : {"row", "target"}, default "row"
        ``"row"``: ``alpha`` is the total prior pseudo-count of a row, spread evenly over
        the support (each target gets ``alpha / |support|``). ``"target"``: each target
        gets ``alpha`` (``alpha=1`` is uniform on the simplex, ``0.5`` Jeffreys).

    Examples
    --------
    >>> TransitionPrior(alpha=2.0).weight(4)  # pseudo-count of each of 4 targets
    0.5
    >>> TransitionPrior.from_dict({"alpha": 1.0, "per": "target"}).weight(4)
    1.0
    """

    alpha: float = 1.0
    per: PriorScale = "row"

    def __post_init__(self) -> None:
        alpha = float(self.alpha)
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"prior alpha must be a positive finite number, got {self.alpha!r}")
        if self.per not in ("row", "target"):
            raise ValueError(f"prior per must be 'row' or 'target', got {self.per!r}")
        object.__setattr__(self, "alpha", alpha)

    def weight(self, support_size: int) -> float:
        """Prior pseudo-count of each target, for a support of ``support_size`` states."""
        return self.alpha / support_size if self.per == "row" else self.alpha

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> TransitionPrior:
        """Build from a (partial) dict; unknown keys are an error naming the known ones."""
        spec = dict(spec or {})
        unknown = sorted(set(spec) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown prior field(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**spec)

    @classmethod
    def coerce(cls, prior: float | dict[str, Any] | TransitionPrior | None) -> TransitionPrior:
        """A prior from a number (``alpha``), a dict, an instance or ``None`` (default)."""
        if isinstance(prior, TransitionPrior):
            return prior
        if prior is None or isinstance(prior, dict):
            return cls.from_dict(prior)
        if isinstance(prior, int | float) and not isinstance(prior, bool):
            return cls(alpha=float(prior))
        raise TypeError(f"prior must be a number, a dict or a TransitionPrior, got {prior!r}")


@dataclass(frozen=True, eq=False)
class _Posterior:
    """The exact posterior in sparse form: one entry per observed edge plus row buckets.

    ``states`` are all states (``START``, services, ``END`` if kept); state codes index
    it and ``len(states)`` is the code of ``(unseen)``. Entries (``src``, ``tgt``,
    ``count``, ``a``) are sorted by source, observed targets in state order, then the
    row's bucket; ``ptr`` delimits the rows (``row_code``).
    """

    states: pd.Index
    support: np.ndarray  # state codes of the support T
    weight: float  # prior pseudo-count of each target in T
    row_code: np.ndarray  # state code of each row
    ptr: np.ndarray  # entries of row r: ptr[r]:ptr[r + 1]
    src: np.ndarray  # state code of the source, per entry
    tgt: np.ndarray  # state code of the target (len(states) = the bucket), per entry
    count: np.ndarray  # int64 counts, per entry (0 for buckets)
    a: np.ndarray  # Dirichlet parameter, per entry
    a0: np.ndarray  # per row: n_i + w |T|

    @classmethod
    def build(
        cls, counts: TransitionCounts, prior: TransitionPrior, include_end: bool
    ) -> _Posterior:
        series = counts.counts
        if (series.index.get_level_values(1) == S.START).any():
            raise ValueError("transition counts have transitions into START")
        if (series.index.get_level_values(0) == S.END).any():
            raise ValueError("transition counts have transitions out of END")
        if not include_end:
            series = series[series.index.get_level_values(1) != S.END]
        if series.empty:
            dropped = " (after dropping transitions to END)" if not include_end else ""
            raise ValueError(f"no transitions to fit{dropped}: the counts are empty")
        index = series.index.remove_unused_levels()
        names = set(index.levels[0]) | set(index.levels[1])
        services = sorted(names - {S.START, S.END})
        states = pd.Index(
            [S.START, *services, *([S.END] if include_end else [])], name="state", dtype="str"
        )
        sources = states.get_indexer(index.levels[0])[index.codes[0]].astype(np.int64)
        targets = states.get_indexer(index.levels[1])[index.codes[1]].astype(np.int64)
        n = series.to_numpy(np.int64)
        order = np.lexsort((targets, sources))
        sources, targets, n = sources[order], targets[order], n[order]

        support = np.unique(targets)
        if include_end:
            support = np.union1d(support, [len(states) - 1])
        m = len(support)
        w = prior.weight(m)
        row_code, first, k = np.unique(sources, return_index=True, return_counts=True)
        n_row = np.add.reduceat(n, first)
        unseen = m - k  # number of unseen targets per row
        has_bucket = unseen > 0
        # Entries: the row's observed edges, then its bucket (if it has unseen targets).
        size = k + has_bucket
        ptr = np.concatenate([[0], np.cumsum(size)])
        edge_pos = np.repeat(ptr[:-1] - first, k) + np.arange(len(n))
        bucket_pos = ptr[1:][has_bucket] - 1
        total = int(ptr[-1])
        src = np.empty(total, np.int64)
        tgt = np.empty(total, np.int64)
        count = np.zeros(total, np.int64)
        a = np.empty(total, np.float64)
        src[edge_pos], tgt[edge_pos], count[edge_pos], a[edge_pos] = sources, targets, n, w + n
        src[bucket_pos] = row_code[has_bucket]
        tgt[bucket_pos] = len(states)
        a[bucket_pos] = w * unseen[has_bucket]
        return cls(
            states=states,
            support=support,
            weight=w,
            row_code=row_code,
            ptr=ptr,
            src=src,
            tgt=tgt,
            count=count,
            a=a,
            a0=n_row + w * m,
        )

    # ------------------------------------------------------------------ lookups
    @property
    def n_states(self) -> int:
        return len(self.states)

    @cached_property
    def row_of(self) -> np.ndarray:
        """Row index of each state code (``-1``: a dead end), including the bucket."""
        out = np.full(self.n_states + 1, -1, np.int64)
        out[self.row_code] = np.arange(len(self.row_code))
        return out

    @cached_property
    def entry_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.row_code)), np.diff(self.ptr))

    @cached_property
    def in_support(self) -> np.ndarray:
        out = np.zeros(self.n_states + 1, bool)
        out[self.support] = True
        return out

    @cached_property
    def labels(self) -> np.ndarray:
        """State names by code, with ``(unseen)`` last."""
        return np.asarray([*self.states.astype(str), UNSEEN], dtype=object)

    @cached_property
    def cumulative(self) -> np.ndarray:
        """``row + P(entry <= this one | row)``: increasing across all entries."""
        total = np.cumsum(self.a)
        before = np.repeat(total[self.ptr[:-1]] - self.a[self.ptr[:-1]], np.diff(self.ptr))
        out = self.entry_row + (total - before) / self.a0[self.entry_row]
        out[self.ptr[1:] - 1] = np.arange(1, len(self.row_code) + 1)
        return out

    def find(self, source: int, target: int) -> int:
        """Entry index of ``source -> target`` (``-1`` if not an entry)."""
        r = self.row_of[source]
        if r < 0:
            return -1
        lo, hi = self.ptr[r], self.ptr[r + 1]
        i = lo + int(np.searchsorted(self.tgt[lo:hi], target))
        return i if i < hi and self.tgt[i] == target else -1

    def draw_rows(self, rng: np.random.Generator, size: int, rows: np.ndarray | None = None):
        """``size`` posterior draws of the entries (of ``rows`` only, if given).

        Returns the draws ``(size, entries)`` and the entry indices they belong to.
        """
        if rows is None:
            idx = np.arange(len(self.a))
            starts = self.ptr[:-1]
        else:
            lengths = np.diff(self.ptr)[rows]
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            idx = np.repeat(self.ptr[rows] - starts, lengths) + np.arange(int(lengths.sum()))
        g = rng.standard_gamma(self.a[idx], size=(size, len(idx)))
        sums = np.add.reduceat(g, starts, axis=1) if len(idx) else g
        g /= np.repeat(sums, np.diff(np.append(starts, len(idx))), axis=1)
        return g, idx


class TransitionModel(BayesModel):
    """Exact Bayesian Markov chain of service-to-service transitions (Dirichlet rows).

    Each source's row of transition probabilities has a symmetric Dirichlet prior over
    the support (every state seen as a target, plus ``END``); the posterior of every row
    is ``Dirichlet(prior + counts)``, computed exactly and stored sparsely (observed
    transitions plus one ``(unseen)`` bucket per row). See the module docstring for the
    prior, the support and the path semantics.

    Parameters
    ----------
    mode : {"sequence", "calls"}, default "sequence"
        Transition definition used when fitting on spans (see
        :func:`bayesperf.count_transitions`); counts passed to :meth:`fit` must have it.
    prior : float, dict or TransitionPrior, optional
        A number is ``alpha`` of :class:`TransitionPrior` (default: ``alpha=1`` per row).
    include_end : bool, default True
        Keep ``service -> END`` transitions. ``False`` drops them and renormalises every
        row over the other targets; services that only ended requests become dead ends.

    Examples
    --------
    >>> import bayesperf
    >>> from bayesperf.models.transitions import TransitionModel
    >>> spans = bayesperf.datasets.load_online_boutique()
    >>> model = TransitionModel(mode="calls").fit(spans)
    >>> table = model.transition_probabilities(ci_prob=0.9)
    >>> list(table.columns)
    ['source', 'target', 'count', 'mean', 'median', 'lower', 'upper']
    >>> probs = {s: dict(zip(g["target"], g["mean"])) for s, g in table.groupby("source")}
    >>> round(sum(probs["frontend"].values()), 12)
    1.0
    >>> model.sample_paths("START", n=2, random_seed=1)  # doctest: +SKIP
    """

    def __init__(
        self,
        mode: Mode = "sequence",
        prior: float | dict[str, Any] | TransitionPrior | None = None,
        include_end: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown transition mode {mode!r}; expected one of {MODES}")
        self.mode: Mode = mode
        self.prior = TransitionPrior.coerce(prior)
        self.include_end = bool(include_end)
        self._rng = np.random.default_rng()
        self._post_cache: _Posterior | None = None

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values."""
        return {"mode": self.mode, "prior": self.prior.to_dict(), "include_end": self.include_end}

    def __repr__(self) -> str:
        state = "not fitted"
        if self.is_fitted:
            post = self._post
            state = f"{len(post.row_code)} sources, {int(post.count.sum())} transitions"
        end = "" if self.include_end else ", include_end=False"
        return (
            f"TransitionModel(mode={self.mode!r}, prior=TransitionPrior(alpha="
            f"{self.prior.alpha:g}, per={self.prior.per!r}){end}; {state})"
        )

    # ------------------------------------------------------------------------ fitting
    def fit(
        self,
        data: pd.DataFrame | TransitionCounts | Any,
        *,
        random_seed: Seed = None,
    ) -> TransitionModel:
        """Compute the exact posterior from spans or transition counts.

        Parameters
        ----------
        data : DataFrame, TransitionCounts, TraceTransitionCounts, Parquet path or Dask DataFrame
            Spans (counted with :func:`bayesperf.count_transitions` in this model's
            mode) or counts of the same mode. Per-trace counts
            (:func:`~bayesperf.summaries.transitions.count_trace_transitions`) give the
            same posterior and are kept, so :meth:`compute_log_likelihood` needs no
            data.
        random_seed : int or numpy.random.Generator, optional
            Seeds the model's generator, used by the Monte Carlo methods
            (:meth:`sample_posterior`, :meth:`sample_paths`, :meth:`path_probability`,
            :meth:`expected_visits`) when they get no ``random_seed`` of their own. The
            posterior itself is exact and involves no randomness.

        Returns
        -------
        TransitionModel
            ``self``; ``idata`` holds the counts in its ``fit_data`` group.

        Raises
        ------
        ValueError
            Counts of another mode, or no transitions to fit.
        """
        cells = None
        if isinstance(data, TransitionCounts | TraceTransitionCounts):
            if data.mode != self.mode:
                raise ValueError(
                    f"TransitionModel(mode={self.mode!r}) cannot be fit on {data.mode!r} "
                    f"transition counts: use TransitionModel(mode={data.mode!r})"
                )
            cells = data if isinstance(data, TraceTransitionCounts) else None
            counts = data.to_counts() if cells is not None else data
        else:
            counts = count_transitions(data, mode=self.mode)
        post = _Posterior.build(counts, self.prior, self.include_end)
        groups = {"fit_data": _counts_dataset(counts)}
        if cells is not None:
            groups["fit_cells"] = cells.to_dataset()
        self._idata = xr.DataTree.from_dict(groups)
        self._post_cache = post
        self._rng = np.random.default_rng(random_seed)
        return self

    # -------------------------------------------------------------- fitted accessors
    @property
    def _post(self) -> _Posterior:
        if self._post_cache is None:
            self._post_cache = _Posterior.build(self.fit_counts, self.prior, self.include_end)
        return self._post_cache

    @property
    def fit_counts(self) -> TransitionCounts:
        """The transition counts the model was fit on (all of them, ``END`` included)."""
        ds = self.idata["fit_data"].to_dataset()
        table = pd.DataFrame(
            {
                "source": ds["source"].to_numpy().astype(str),
                "target": ds["target"].to_numpy().astype(str),
                "count": ds["count"].to_numpy(),
            }
        )
        skipped = json.loads(ds.attrs.get("skipped", "{}"))
        return TransitionCounts.from_frame(table, ds.attrs.get("mode", self.mode), skipped=skipped)

    @property
    def fit_cells(self) -> TraceTransitionCounts | None:
        """The per-trace counts the model was fit on, if it was fit on them."""
        if "fit_cells" not in self.idata:
            return None
        return TraceTransitionCounts.from_dataset(self.idata["fit_cells"].to_dataset())

    @property
    def states(self) -> pd.Index:
        """All states: ``START``, the services, ``END`` (unless ``include_end=False``)."""
        return self._post.states

    def compute_log_likelihood(
        self,
        data: pd.DataFrame | TraceTransitionCounts | None = None,
        *,
        draws: int = 1000,
        chains: int = 2,
        random_seed: Seed = None,
    ) -> xr.DataTree:
        """Add the pointwise log-likelihood: one cell = one trace's transitions from a source.

        ``log_likelihood["transitions"]`` has dims ``(chain, draw, cell)``: the
        multinomial log-probability (coefficient included) of a cell's count vector
        given its source's row, for posterior draws of the rows; ``observed_data``
        holds ``transitions`` (the number of traces showing the cell: the weight of a
        cell in LOO), ``cell_source``, ``cell_pattern`` (a stable key of the count
        vector) and ``cell_n``. The cells are those of
        :class:`~bayesperf.models.overdispersed.OverdispersedTransitionModel` fit on
        the same data, so the two compare by LOO.

        Parameters
        ----------
        data : pandas.DataFrame or TraceTransitionCounts, optional
            The spans (or their per-trace counts) the model was fit on. Aggregate counts
            do not say which transitions came from the same trace: needed unless the
            model was fit on per-trace counts.
        draws, chains : int
            Exact posterior draws (:meth:`sample_posterior`), used when
            ``idata.posterior`` does not hold draws of this posterior yet.
        random_seed : int or numpy.random.Generator, optional
            Seed of those draws.

        Returns
        -------
        xarray.DataTree
            ``model.idata``.

        Raises
        ------
        ValueError
            No per-trace data, or data whose transitions are not those the model was fit
            on.

        Examples
        --------
        >>> plain = TransitionModel(mode="calls").fit(spans)              # doctest: +SKIP
        >>> plain.compute_log_likelihood(spans, random_seed=1)             # doctest: +SKIP
        """
        if data is None:
            cells = self.fit_cells
            if cells is None:
                raise ValueError(
                    "the pointwise log-likelihood needs per-trace counts, and the model was "
                    "fit on aggregate counts: pass the spans (or "
                    "count_trace_transitions(spans, mode)) as data"
                )
        elif isinstance(data, TraceTransitionCounts):
            cells = data
        else:
            cells = count_trace_transitions(data, mode=self.mode)
        if cells.mode != self.mode:
            raise ValueError(
                f"per-trace counts of mode {cells.mode!r} for a {self.mode!r} TransitionModel"
            )
        layout = _CellLayout.build(self._post, cells, self.include_end, self.fit_counts)
        post = self._post
        p = self.idata.posterior["p"] if "posterior" in self.idata else None
        if p is None or p.sizes.get("edge") != len(post.a):
            self.sample_posterior(draws, chains=chains, random_seed=random_seed)
            p = self.idata.posterior["p"]
        values = p.transpose("chain", "draw", "edge").to_numpy()
        ll = layout.multinomial_loglik(values.reshape(-1, values.shape[-1]))
        return layout.store(self.idata, ll.reshape(*values.shape[:2], -1), p)

    @property
    def support(self) -> pd.Index:
        """States every row puts prior mass on: all observed targets, plus ``END``."""
        post = self._post
        return pd.Index(post.states[post.support], name="state")

    def _rng_for(self, random_seed: Seed) -> np.random.Generator:
        return self._rng if random_seed is None else np.random.default_rng(random_seed)

    def _code(self, state: str, what: str = "state") -> int:
        """State code of a name, or a ValueError naming the closest known states."""
        post = self._post
        name = str(state)
        i = post.states.get_indexer([name])[0]
        if i >= 0:
            return int(i)
        known = [str(s) for s in post.states]
        close = difflib.get_close_matches(name, known, n=3) or difflib.get_close_matches(
            name, known, n=3, cutoff=0.0
        )
        dropped = (
            " (END is not modelled: include_end=False)"
            if name == S.END and not self.include_end
            else ""
        )
        raise ValueError(
            f"unknown {what} {name!r}{dropped}: it never appears in the transitions the "
            f"model was fit on; closest known: {', '.join(map(repr, close))}"
        )

    # --------------------------------------------------------------- exact marginals
    def transition_probabilities(
        self, ci_prob: float = 0.9, *, unseen: bool = True
    ) -> pd.DataFrame:
        """Posterior of every observed transition, exactly, from its Beta marginal.

        Parameters
        ----------
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed credible interval.
        unseen : bool, default True
            Add a row ``target="(unseen)"`` per source: the total probability of all
            targets never observed from it (then each source's means sum to 1).

        Returns
        -------
        pandas.DataFrame
            Columns ``source``, ``target``, ``count``, ``mean``, ``median``, ``lower``,
            ``upper``; sorted by source and target in state order (``START`` first,
            ``END`` then ``(unseen)`` last). ``p_ij ~ Beta(a_ij, a_i0 - a_ij)``.

        Examples
        --------
        >>> table = model.transition_probabilities()  # doctest: +SKIP
        >>> {s: dict(zip(g["target"], g["mean"]))       # seed-notebook dict form
        ...  for s, g in table.groupby("source", sort=False)}  # doctest: +SKIP
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        post = self._post
        keep = slice(None) if unseen else post.tgt < post.n_states
        a = post.a[keep]
        b = post.a0[post.entry_row[keep]] - a
        q = _beta_quantiles(a, b, np.array([0.5, lo_q, hi_q]))
        labels = post.labels
        return pd.DataFrame(
            {
                "source": pd.array(labels[post.src[keep]], dtype="str"),
                "target": pd.array(labels[post.tgt[keep]], dtype="str"),
                "count": post.count[keep],
                "mean": a / (a + b),
                "median": q[0],
                "lower": q[1],
                "upper": q[2],
            }
        )

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Same as :meth:`transition_probabilities` (the models' common entry point)."""
        return self.transition_probabilities(ci_prob)

    def transition_matrix(self, draws: int | None = None, *, random_seed: Seed = None):
        """The transition matrix over all states: posterior mean, or posterior draws.

        Unlike the sparse outputs, each unseen target of a row gets its own share of the
        row's prior mass (``w / a_i0`` each), so rows are proper distributions over real
        states. Rows of ``END`` and of dead ends are all zero; the ``START`` column too.

        Parameters
        ----------
        draws : int, optional
            ``None``: the posterior mean, dims ``(source, target)``. An integer: that
            many exact posterior draws, dims ``(draw, source, target)``.
        random_seed : int or numpy.random.Generator, optional
            Seed of the draws.

        Returns
        -------
        xarray.DataArray
            Named ``p``, dense over the states.

        Raises
        ------
        ValueError
            If the dense array would exceed :data:`MAX_DENSE` elements (use
            :meth:`transition_probabilities` or :meth:`sample_posterior`, which are
            sparse).
        """
        post = self._post
        n = post.n_states
        k = 1 if draws is None else int(draws)
        if k < 1:
            raise ValueError(f"draws must be a positive integer, got {draws!r}")
        if k * n * n > MAX_DENSE:
            raise ValueError(
                f"a dense {'x'.join(map(str, ([k] if draws else []) + [n, n]))} transition "
                f"array has more than {MAX_DENSE:,} elements; use transition_probabilities() "
                "or sample_posterior(), which are sparse"
            )
        rows, support = post.row_code, post.support
        observed = post.tgt < n
        r_obs = post.row_of[post.src[observed]]
        col = np.searchsorted(support, post.tgt[observed])
        shape = np.full((len(rows), len(support)), post.weight)
        shape[r_obs, col] += post.count[observed]
        names = post.states.astype(str).to_numpy()
        if draws is None:
            out = np.zeros((n, n))
            out[np.ix_(rows, support)] = shape / post.a0[:, None]
            dims: tuple[str, ...] = ("source", "target")
            coords: dict[str, Any] = {"source": names, "target": names}
        else:
            rng = self._rng_for(random_seed)
            g = rng.standard_gamma(shape, size=(k, *shape.shape))
            g /= g.sum(axis=-1, keepdims=True)
            out = np.zeros((k, n, n))
            out[:, rows[:, None], support[None, :]] = g
            dims = ("draw", "source", "target")
            coords = {"draw": np.arange(k), "source": names, "target": names}
        return xr.DataArray(out, dims=dims, coords=coords, name="p")

    def sample_posterior(
        self, draws: int = 1000, *, chains: int = 2, random_seed: Seed = None
    ) -> xr.DataTree:
        """Exact posterior draws of every transition into ``idata.posterior``.

        Adds (or replaces) ``idata.posterior["p"]`` with dims ``(chain, draw, edge)``:
        one ``edge`` per observed transition plus each source's ``(unseen)`` bucket,
        labelled ``"source -> target"``, with ``source`` and ``target`` coordinates.
        Draws are independent (``chains`` only splits them, so that
        ``arviz.summary(model.idata)`` reports its usual columns). Memory is
        ``8 * chains * draws * edges`` bytes.

        Returns
        -------
        xarray.DataTree
            ``model.idata``.
        """
        if draws < 1 or chains < 1:
            raise ValueError(f"draws and chains must be positive, got {draws}, {chains}")
        post = self._post
        rng = self._rng_for(random_seed)
        g, _ = post.draw_rows(rng, chains * draws)
        labels = post.labels
        source, target = labels[post.src].astype(str), labels[post.tgt].astype(str)
        edge = np.char.add(np.char.add(source, " -> "), target)
        ds = xr.Dataset(
            {"p": (("chain", "draw", "edge"), g.reshape(chains, draws, -1))},
            coords={
                "chain": np.arange(chains),
                "draw": np.arange(draws),
                "edge": edge,
                "source": ("edge", source),
                "target": ("edge", target),
            },
        )
        self.idata["posterior"] = xr.DataTree(ds)
        return self.idata

    # --------------------------------------------------------------------------- paths
    def sample_paths(
        self,
        start: str = S.START,
        n: int = 1,
        max_steps: int = 100,
        *,
        random_seed: Seed = None,
        as_frame: bool = False,
    ) -> list[list[str]] | pd.DataFrame:
        """Draw request paths from the posterior predictive.

        Each path walks on its own transition matrix drawn from the posterior (drawn
        lazily and exactly through the Pólya urn, see the module docstring), from
        ``start`` until ``END``, ``(unseen)``, a dead end or ``max_steps`` transitions.

        Parameters
        ----------
        start : str, default "START"
            First state of every path.
        n : int, default 1
            Number of paths.
        max_steps : int, default 100
            Most transitions per path (longer walks are cut there).
        random_seed : int or numpy.random.Generator, optional
            Seed (the same seed gives the same paths).
        as_frame : bool, default False
            Return a long DataFrame (``path``, ``step``, ``state``) instead of lists.

        Returns
        -------
        list of list of str or pandas.DataFrame
            Each path starts with ``start``.

        Raises
        ------
        ValueError
            An unknown ``start`` (the message names the closest known states).
        """
        if n < 0 or max_steps < 0:
            raise ValueError(f"n and max_steps must be non-negative, got {n}, {max_steps}")
        post = self._post
        first = self._code(start, "start state")
        rng = self._rng_for(random_seed)
        walk = np.full((n, max_steps + 1), -1, np.int64)
        walk[:, 0] = first
        length = np.ones(n, np.int64)
        active = np.flatnonzero(np.full(n, post.row_of[first] >= 0))
        for t in range(max_steps):
            if not len(active):
                break
            cur = walk[active, t]
            rows = post.row_of[cur]
            # Earlier visits of each path to its current state (all had a successor).
            seen = walk[active, :t] == cur[:, None]
            c = seen.sum(axis=1)
            u = rng.random(len(active))
            a0 = post.a0[rows]
            reuse = u * (a0 + c) >= a0  # probability c / (a0 + c): an earlier ball
            nxt = np.empty(len(active), np.int64)
            base = ~reuse
            if base.any():
                v = rows[base] + (1.0 - rng.random(int(base.sum())))
                idx = np.searchsorted(post.cumulative, v, side="left")
                lo, hi = post.ptr[rows[base]], post.ptr[rows[base] + 1] - 1
                nxt[base] = post.tgt[np.clip(idx, lo, hi)]
            if reuse.any():
                pick = np.floor(rng.random(int(reuse.sum())) * c[reuse]).astype(np.int64)
                pos = np.argmax(np.cumsum(seen[reuse], axis=1) > pick[:, None], axis=1)
                nxt[reuse] = walk[active[reuse], pos + 1]
            walk[active, t + 1] = nxt
            length[active] += 1
            active = active[post.row_of[nxt] >= 0]
        labels = post.labels
        if as_frame:
            path = np.repeat(np.arange(n), length)
            step = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
            return pd.DataFrame(
                {
                    "path": path,
                    "step": step,
                    "state": pd.array(labels[walk[path, step]], dtype="str"),
                }
            )
        return [labels[walk[i, : length[i]]].tolist() for i in range(n)]

    def _path_steps(self, path: Sequence[str]) -> list[tuple[int, int]]:
        """``(source, target)`` codes of a path's steps (target = n_states: the bucket)."""
        post = self._post
        if isinstance(path, str) or len(path) < 2:
            raise ValueError(f"a path is a sequence of at least 2 states, got {path!r}")
        codes = []
        for i, name in enumerate(path):
            if str(name) == UNSEEN:
                if i != len(path) - 1:
                    raise ValueError(f"{UNSEEN} can only end a path, got {list(path)!r}")
                codes.append(post.n_states)
            else:
                codes.append(self._code(name, "state in the path"))
        return list(itertools.pairwise(codes))

    def path_probability(
        self,
        path: Sequence[str],
        ci_prob: float = 0.9,
        *,
        draws: int = 4000,
        random_seed: Seed = None,
    ) -> pd.Series:
        """Posterior of the probability of a path (given its first state).

        The probability is the product of the path's transition probabilities. Its
        posterior mean is exact (the Dirichlet moment formula); median and interval are
        Monte Carlo over ``draws`` posterior draws of the rows the path visits (only the
        entries it uses and the rest of each row, exact by Dirichlet aggregation).

        Parameters
        ----------
        path : sequence of str
            States, e.g. ``["START", "frontend", "cartservice", "END"]``. A target never
            observed from the previous state has its prior share; a final ``(unseen)``
            stands for any such target (as :meth:`sample_paths` returns it).
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed interval.
        draws : int, default 4000
            Monte Carlo draws.
        random_seed : int or numpy.random.Generator, optional
            Seed of the draws.

        Returns
        -------
        pandas.Series
            ``mean``, ``median``, ``lower``, ``upper``.

        Raises
        ------
        ValueError
            A state never seen in the data (the message names the closest known ones).
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        post = self._post
        steps = self._path_steps(path)
        rng = self._rng_for(random_seed)
        # Per row: how often each entry is used. Entry keys: an entry index, or
        # ("u", target) for a target of the support never observed from the row.
        uses: dict[int, dict[Any, int]] = {}
        impossible = False
        for source, target in steps:
            r = int(post.row_of[source])
            if r < 0 or (target < post.n_states and not post.in_support[target]):
                impossible = True
                break
            e = post.find(source, target)
            key: Any = e if e >= 0 else ("u", target)
            if target == post.n_states and e < 0:
                impossible = True  # the row has no unseen targets
                break
            uses.setdefault(r, {})
            uses[r][key] = uses[r].get(key, 0) + 1
        if impossible:
            return pd.Series(
                {"mean": 0.0, "median": 0.0, "lower": 0.0, "upper": 0.0}, name="probability"
            )
        log_p = np.zeros(draws)
        log_mean = 0.0
        exact_mean = True
        for r, used in uses.items():
            keys = list(used)
            alpha = np.array(
                [post.weight if isinstance(k, tuple) else post.a[k] for k in keys], np.float64
            )
            c = np.array([used[k] for k in keys], np.float64)
            specific = [i for i, k in enumerate(keys) if isinstance(k, tuple)]
            bucket = [
                i
                for i, k in enumerate(keys)
                if not isinstance(k, tuple) and (post.tgt[k] == post.n_states)
            ]
            if bucket and specific:
                # The bucket overlaps targets the path names: split them off the bucket.
                alpha[bucket[0]] -= post.weight * len(specific)
                exact_mean = False
            rest = post.a0[r] - alpha.sum()
            g = rng.standard_gamma(np.append(alpha, max(rest, 0.0)), size=(draws, len(keys) + 1))
            p = g[:, :-1] / g.sum(axis=1, keepdims=True)
            if bucket and specific:
                p[:, bucket[0]] += p[:, specific].sum(axis=1)
            with np.errstate(divide="ignore"):
                log_p += np.log(p) @ c
            log_mean += float(
                special.gammaln(post.a0[r])
                - special.gammaln(post.a0[r] + c.sum())
                + np.sum(special.gammaln(alpha + c) - special.gammaln(alpha))
            )
        log_p = np.maximum(log_p, -1e300)  # underflowed draws: finite, so quantiles are too
        lower, median, upper = np.exp(np.quantile(log_p, [lo_q, 0.5, hi_q]))
        mean = math.exp(log_mean) if exact_mean else float(np.mean(np.exp(log_p)))
        return pd.Series(
            {"mean": mean, "median": median, "lower": lower, "upper": upper}, name="probability"
        )

    def most_likely_paths(
        self, start: str = S.START, k: int = 5, *, max_steps: int = 50
    ) -> pd.DataFrame:
        """The ``k`` most probable complete paths under the posterior mean matrix.

        Best-first search (k shortest walks in ``-log p``) over observed transitions,
        from ``start`` to ``END`` or a dead end, of at most ``max_steps`` transitions.
        Paths may revisit states (sequence mode has self-loops). The ``(unseen)`` bucket
        is not a path.

        Returns
        -------
        pandas.DataFrame
            Columns ``path`` (list of states), ``probability`` (product of posterior
            mean transition probabilities; :meth:`path_probability` gives the posterior
            of a path's probability) and ``steps``; best first.
        """
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        post = self._post
        first = self._code(start, "start state")
        observed = post.tgt < post.n_states
        cost = np.full(len(post.a), np.inf)
        cost[observed] = -np.log(post.a[observed] / post.a0[post.entry_row[observed]])
        node, parent = [first], [-1]
        heap: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # (cost, steps, path id)
        pops = np.zeros(post.n_states, np.int64)
        found: list[tuple[float, int]] = []
        while heap and len(found) < k:
            c, steps, pid = heapq.heappop(heap)
            state = node[pid]
            if pops[state] >= k:
                continue
            pops[state] += 1
            r = post.row_of[state]
            if r < 0:
                found.append((c, pid))
                continue
            if steps >= max_steps:
                continue
            for e in range(post.ptr[r], post.ptr[r + 1]):
                if np.isfinite(cost[e]):
                    node.append(int(post.tgt[e]))
                    parent.append(pid)
                    heapq.heappush(heap, (c + float(cost[e]), steps + 1, len(node) - 1))
        names = post.labels
        rows = []
        for c, pid in found:
            trail = []
            while pid >= 0:
                trail.append(str(names[node[pid]]))
                pid = parent[pid]
            trail.reverse()
            rows.append({"path": trail, "probability": math.exp(-c), "steps": len(trail) - 1})
        return pd.DataFrame(rows, columns=["path", "probability", "steps"])

    def expected_visits(
        self,
        start: str = S.START,
        ci_prob: float = 0.9,
        *,
        draws: int = 1000,
        random_seed: Seed = None,
    ) -> pd.DataFrame:
        """Expected number of visits to each state per walk from ``start``.

        For each posterior draw of the transition matrix, the visits are the row of the
        absorbing chain's fundamental matrix ``N = (I - Q)^-1`` for ``start``, solved
        sparsely: by sparse LU (many draws as one block-diagonal system) up to
        :data:`DIRECT_MAX_STATES` reachable states, by GMRES per draw above (on
        3,000 random services, about 6 ms per draw). Absorbing states are
        ``END``, ``(unseen)`` and dead ends: their "visits" are the probabilities of
        ending there, summing to 1. Only states reachable from ``start`` are listed.

        Parameters
        ----------
        start : str, default "START"
            Where walks start (visited once at the start).
        ci_prob : float, default 0.9
            Probability mass of the equal-tailed interval.
        draws : int, default 1000
            Posterior draws.
        random_seed : int or numpy.random.Generator, optional
            Seed of the draws.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``state``; columns ``mean``, ``median``, ``lower``, ``upper``.

        Raises
        ------
        ValueError
            An unknown ``start``; or states reachable from it from which no walk can
            end (the expected visits would be infinite).
        """
        lo_q, hi_q = _interval_levels(ci_prob)
        post = self._post
        first = self._code(start, "start state")
        n = post.n_states + 1  # + the bucket
        adjacency = sp.csr_array((np.ones(len(post.src)), (post.src, post.tgt)), shape=(n, n))
        reach = np.sort(csgraph.breadth_first_order(adjacency, first, return_predecessors=False))
        absorbing = reach[post.row_of[reach] < 0]
        # Every reachable state must be able to end: search back from all absorbing
        # states at once (through an extra node pointing to them in the reversed graph).
        reverse = sp.csr_array(
            (
                np.ones(len(post.src) + len(absorbing)),
                (np.append(post.tgt, np.full(len(absorbing), n)), np.append(post.src, absorbing)),
            ),
            shape=(n + 1, n + 1),
        )
        ends = csgraph.breadth_first_order(reverse, n, return_predecessors=False)
        trapped = np.setdiff1d(reach, ends)
        if len(trapped):
            names = ", ".join(repr(str(post.labels[s])) for s in trapped[:5])
            raise ValueError(
                f"from {start!r} a walk can reach {names} but then never ends: the "
                "expected visits are infinite"
            )
        local = np.full(n, -1, np.int64)
        local[reach] = np.arange(len(reach))
        rows = np.unique(post.row_of[reach[post.row_of[reach] >= 0]])
        rng = self._rng_for(random_seed)
        m = len(reach)
        visits = np.empty((draws, m))
        if len(rows) == 0:
            visits[:] = 0.0
            visits[:, local[first]] = 1.0
        else:
            lengths = np.diff(post.ptr)[rows]
            per_draw = int(lengths.sum())
            block = max(1, min(draws, _BLOCK // max(per_draw + m, 1)))
            for d0 in range(0, draws, block):
                b = min(block, draws - d0)
                p, idx = post.draw_rows(rng, b, rows)
                src, tgt = local[post.src[idx]], local[post.tgt[idx]]
                if m <= DIRECT_MAX_STATES:
                    visits[d0 : d0 + b] = _solve_direct(p, src, tgt, m, local[first])
                else:
                    for j in range(b):
                        visits[d0 + j] = _solve_iterative(p[j], src, tgt, m, local[first])
        if not np.all(np.isfinite(visits)):
            raise ValueError(f"expected visits from {start!r} are not finite in some draws")
        lower, median, upper = np.quantile(visits, [lo_q, 0.5, hi_q], axis=0)
        index = pd.Index(post.labels[reach].astype(str), name="state", dtype="str")
        return pd.DataFrame(
            {"mean": visits.mean(axis=0), "median": median, "lower": lower, "upper": upper},
            index=index,
        )


# ------------------------------------------------------------------------- helpers
def _counts_dataset(counts: TransitionCounts) -> xr.Dataset:
    """The counts as the ``fit_data`` group: ``source``, ``target``, ``count`` per edge."""
    index = counts.counts.index
    return xr.Dataset(
        {
            "source": ("edge", np.asarray(index.get_level_values(0), dtype=str)),
            "target": ("edge", np.asarray(index.get_level_values(1), dtype=str)),
            "count": ("edge", counts.counts.to_numpy(np.int64)),
        },
        attrs={"mode": counts.mode, "skipped": json.dumps(dict(counts.skipped))},
    )


@dataclass(frozen=True, eq=False)
class _CellLayout:
    """Per-trace cells mapped onto a posterior's entries: what the likelihoods need.

    Cells ``c`` (one ``(source, pattern)`` each) have a ``row`` of the posterior,
    ``traces`` (their weight), ``n`` transitions and the log multinomial coefficient
    ``coef``; their non-zero counts are entries ``(cell, edge, count)`` sorted by cell,
    ``edge`` indexing the posterior's entries.
    """

    cells: TraceTransitionCounts
    row: np.ndarray
    traces: np.ndarray
    n: np.ndarray
    coef: np.ndarray
    entry_cell: np.ndarray
    entry_edge: np.ndarray
    entry_count: np.ndarray

    @classmethod
    def build(
        cls,
        post: _Posterior,
        cells: TraceTransitionCounts,
        include_end: bool,
        fit_counts: TransitionCounts | None = None,
    ) -> _CellLayout:
        if not include_end:
            cells = cells.without_end()
        if fit_counts is not None:
            fitted = fit_counts.counts
            if not include_end:
                fitted = fitted[fitted.index.get_level_values(1) != S.END]
            if not cells.to_counts().counts.equals(fitted):
                raise ValueError(
                    "the per-trace counts are not the transitions the model was fit on "
                    f"({cells.total} transitions given, {int(fitted.sum())} fitted): pass "
                    "the same spans"
                )
        code = post.states.get_indexer(cells.cells["source"].to_numpy(dtype=str))
        row = np.where(code >= 0, post.row_of[code], -1)
        entry_cell = cells.entries["cell"].to_numpy(np.int64)
        target = post.states.get_indexer(cells.entries["target"].to_numpy(dtype=str))
        # Entries are sorted by (row, target code): one search over a combined key.
        stride = post.n_states + 1
        key = post.src * stride + post.tgt
        wanted = post.row_code[np.maximum(row[entry_cell], 0)] * stride + target
        edge = np.minimum(np.searchsorted(key, wanted), len(key) - 1)
        bad = (row[entry_cell] < 0) | (target < 0) | (key[edge] != wanted)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            source = cells.cells["source"].iloc[entry_cell[i]]
            raise ValueError(
                f"the per-trace counts have the transition {source!r} -> "
                f"{cells.entries['target'].iloc[i]!r}, which the model was not fit on"
            )
        count = cells.entries["count"].to_numpy(np.int64)
        n = cells.cells["n"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, entry_cell[1:] != entry_cell[:-1]])
        coef = special.gammaln(n + 1.0) - np.add.reduceat(special.gammaln(count + 1.0), starts)
        return cls(
            cells=cells,
            row=row,
            traces=cells.cells["traces"].to_numpy(np.int64),
            n=n,
            coef=coef,
            entry_cell=entry_cell,
            entry_edge=edge,
            entry_count=count,
        )

    @cached_property
    def starts(self) -> np.ndarray:
        """First entry of each cell (every cell has at least one entry)."""
        return np.flatnonzero(np.r_[True, self.entry_cell[1:] != self.entry_cell[:-1]])

    def multinomial_loglik(self, p: np.ndarray) -> np.ndarray:
        """``(draws, cells)`` multinomial log-pmf for ``(draws, edges)`` probabilities."""
        out = np.empty((p.shape[0], len(self.n)))
        block = max(1, _BLOCK // max(len(self.entry_edge), 1))
        for d0 in range(0, p.shape[0], block):
            terms = self.entry_count * np.log(p[d0 : d0 + block, self.entry_edge])
            out[d0 : d0 + block] = self.coef + np.add.reduceat(terms, self.starts, axis=1)
        return out

    def observed_dataset(self) -> xr.Dataset:
        """``transitions`` (traces per cell, the LOO weight) and what identifies a cell."""
        cells = self.cells.cells
        return xr.Dataset(
            {
                "transitions": ("cell", self.traces),
                "cell_source": ("cell", cells["source"].to_numpy(dtype=str)),
                "cell_pattern": ("cell", cells["pattern"].to_numpy(dtype=str)),
                "cell_n": ("cell", self.n),
            }
        )

    def store(self, idata: xr.DataTree, ll: np.ndarray, like: xr.DataArray) -> xr.DataTree:
        """Put ``ll`` ``(chain, draw, cell)`` and the cells into ``idata``."""
        ds = xr.Dataset(
            {"transitions": (("chain", "draw", "cell"), ll)},
            coords={"chain": like["chain"].to_numpy(), "draw": like["draw"].to_numpy()},
        )
        idata["log_likelihood"] = xr.DataTree(ds)
        idata["observed_data"] = xr.DataTree(self.observed_dataset())
        return idata


def _solve_direct(
    p: np.ndarray, src: np.ndarray, tgt: np.ndarray, m: int, first: int
) -> np.ndarray:
    """Visits ``(b, m)`` for ``b`` draws ``p``: one sparse LU of the block-diagonal system.

    Each block is ``(I - P^T) x = e_first`` with ``P[src, tgt] = p`` (states ``0..m-1``).
    """
    b = p.shape[0]
    shift = (np.arange(b) * m)[:, None]
    diagonal = np.arange(b * m)
    system = sp.csc_array(
        (
            np.concatenate([np.ones(b * m), -p.ravel()]),
            (
                np.concatenate([diagonal, (tgt + shift).ravel()]),
                np.concatenate([diagonal, (src + shift).ravel()]),
            ),
        ),
        shape=(b * m, b * m),
    )
    rhs = np.zeros(b * m)
    rhs[np.arange(b) * m + first] = 1.0
    return spla.spsolve(system, rhs).reshape(b, m)


def _solve_iterative(
    p: np.ndarray, src: np.ndarray, tgt: np.ndarray, m: int, first: int
) -> np.ndarray:
    """Visits ``(m,)`` for one draw by GMRES (LU fill-in is dense on large random graphs).

    Converged to a relative residual of 1e-10; a draw that does not converge is solved
    by sparse LU instead.
    """
    system = sp.csr_array(
        (
            np.concatenate([np.ones(m), -p]),
            (np.concatenate([np.arange(m), tgt]), np.concatenate([np.arange(m), src])),
        ),
        shape=(m, m),
    )
    rhs = np.zeros(m)
    rhs[first] = 1.0
    x, info = spla.gmres(system, rhs, rtol=1e-10, atol=0.0, restart=min(m, 100), maxiter=50)
    if info != 0:
        x = spla.spsolve(sp.csc_array(system), rhs)
    return x


def _interval_levels(ci_prob: float) -> tuple[float, float]:
    if not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
    return (1 - ci_prob) / 2, (1 + ci_prob) / 2


def _beta_quantiles(a: np.ndarray, b: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles ``(len(qs), len(a))`` of ``Beta(a, b)``; ``b == 0`` is a point mass at 1."""
    safe_b = np.where(b > 0, b, 1.0)
    out = special.betaincinv(a[None, :], safe_b[None, :], qs[:, None])
    return np.where(b[None, :] > 0, out, 1.0)
