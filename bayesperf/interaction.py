"""``MicroserviceInteractionModel``: the seed notebook's modelling calls, on bayesperf's models.

The seed notebook (``performance-modeling-notebook``) asks one object for latency
distributions, a Markov chain of services, predicted paths and latency clusters. This
class answers those calls with the seed's keys and shapes, adds each estimate's
credible interval beside it, and delegates every computation to the models:
:class:`~bayesperf.models.LatencyModel` (one hierarchical fit over all caller→callee
pairs serves the overall and every per-pair call),
:class:`~bayesperf.models.TransitionModel` and
:class:`~bayesperf.models.mixture.MixtureModel`.

Examples
--------
>>> from bayesperf import MicroserviceInteractionModel
>>> model = MicroserviceInteractionModel(chains=2, draws=500)          # doctest: +SKIP
>>> model.fit_latency_distribution(traces)["p99"]                      # doctest: +SKIP
>>> model.fit_latency_distribution(traces, ("frontend", "cartservice"))  # doctest: +SKIP
>>> model.build_markov_chain(traces)["frontend"]                       # doctest: +SKIP
>>> model.predict_service_path("frontend", max_steps=5)                # doctest: +SKIP
>>> model.cluster_latency_patterns(traces, n_clusters=3)               # doctest: +SKIP
>>> model.save_models("models/interaction_models.pkl")                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.analysis._input import Traces, find_group, span_table, summary_digest
from bayesperf.models.latency import NONPARAMETRIC, OVERALL, LatencyModel
from bayesperf.models.mixture import MixtureModel
from bayesperf.models.transitions import UNSEEN, TransitionModel
from bayesperf.summaries.latency import summarize_latency


class NoStartTimeWarning(UserWarning):
    """Spans without start times: the Markov chain follows calls, not time order."""


#: The seed's keys for the latency statistics, and the model statistic behind each.
SEED_LATENCY_KEYS = {"mean": "mean", "median": "p50", "p95": "p95", "p99": "p99"}


class MicroserviceInteractionModel:
    """Latency, call-path and latency-regime models of a set of traces, seed-notebook style.

    Parameters
    ----------
    family : {"nonparametric", "lognormal", "gamma", "weibull"}, default "nonparametric"
        Latency family of the pair model (:class:`~bayesperf.models.LatencyModel`).
    ci_prob : float, default 0.9
        Mass of the equal-tailed credible intervals added to every result.
    transition_mode : {"sequence", "calls"}, default "sequence"
        Markov chain over consecutive services of a trace (the seed's chain) or over
        caller→callee calls.
    random_seed : int, default 0
        Seeds every fit and the path predictions: a rerun gives the same results, and
        successive :meth:`predict_service_path` calls give different (reproducible) paths.
    **sample_kwargs
        Sampler settings for the PyMC fits (e.g. ``chains=2, draws=500, tune=500``).

    Attributes
    ----------
    transition_probabilities : dict
        ``{service: {next_service: posterior mean}}`` after :meth:`build_markov_chain`
        (empty before), as the seed reads it.
    latency_model : LatencyModel or None
        The hierarchical pair model behind :meth:`fit_latency_distribution`.
    transition_model : TransitionModel or None
    mixture_model : MixtureModel or None
    """

    def __init__(
        self,
        family: str = NONPARAMETRIC,
        *,
        ci_prob: float = 0.9,
        transition_mode: str = "sequence",
        random_seed: int = 0,
        **sample_kwargs: Any,
    ) -> None:
        if not 0 < ci_prob < 1:
            raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
        self.family = family
        self.ci_prob = ci_prob
        self.transition_mode = transition_mode
        self.random_seed = random_seed
        self.sample_kwargs = {"progressbar": False, **sample_kwargs}
        self.latency_model: LatencyModel | None = None
        self.transition_model: TransitionModel | None = None
        self.mixture_model: MixtureModel | None = None
        self.transition_probabilities: dict[str, dict[str, float]] = {}
        self._latency_digest: str | None = None
        self._path_rng = np.random.default_rng(random_seed)

    def __repr__(self) -> str:
        fitted = [
            name
            for name, m in (
                ("latency", self.latency_model),
                ("transitions", self.transition_model),
                ("mixture", self.mixture_model),
            )
            if m is not None
        ]
        return f"MicroserviceInteractionModel(family={self.family!r}, fitted={fitted})"

    # -------------------------------------------------------------------- latency
    def fit_latency_distribution(
        self, traces: Traces, pair: Sequence[str | None] | None = None
    ) -> dict[str, Any]:
        """Posterior latency statistics of all spans, or of one caller→callee pair.

        One hierarchical model over every pair is fit the first time (and again only
        when the data change); the overall distribution is the span-weighted mixture of
        the pairs' posteriors, so both answers come from the same posterior.

        Parameters
        ----------
        traces : pandas.DataFrame or path
            Spans (the canonical table or the seed's ``parsed_traces.csv`` columns).
        pair : (caller, callee), optional
            A pair (``None`` as the caller of root spans); all spans when omitted.

        Returns
        -------
        dict
            The seed's keys — ``distribution`` (family name), ``mean``, ``median``,
            ``p95``, ``p99`` (ms, posterior medians) — plus ``n`` (spans), ``ci_prob``
            and, for each statistic, ``<key>_lower`` / ``<key>_upper``.

        Raises
        ------
        KeyError
            An unknown pair; the message lists known ones.
        """
        model = self._latency(traces)
        table = model.summary(ci_prob=self.ci_prob, overall=pair is None)
        if pair is None:
            row = table.loc[(OVERALL, OVERALL)]
        else:
            row = table.iloc[find_group(model, pair)]
        result: dict[str, Any] = {"distribution": self.family, "n": int(row["n"])}
        for key, stat in SEED_LATENCY_KEYS.items():
            result[key] = float(row[f"{stat}_median"])
        for key, stat in SEED_LATENCY_KEYS.items():
            result[f"{key}_lower"] = float(row[f"{stat}_lower"])
            result[f"{key}_upper"] = float(row[f"{stat}_upper"])
        result["ci_prob"] = self.ci_prob
        return result

    def _latency(self, traces: Traces) -> LatencyModel:
        spans = span_table(traces, (S.CALLER, S.CALLEE, S.LATENCY))
        summary = summarize_latency(spans, (S.CALLER, S.CALLEE))
        digest = summary_digest(summary)
        if self.latency_model is None or digest != self._latency_digest:
            self.latency_model = LatencyModel(self.family).fit(
                summary, random_seed=self.random_seed, **self.sample_kwargs
            )
            self._latency_digest = digest
        return self.latency_model

    # ----------------------------------------------------------------- transitions
    def build_markov_chain(self, traces: Traces) -> dict[str, dict[str, float]]:
        """Fit the Bayesian Markov chain of services; posterior mean probabilities.

        In "sequence" mode the spans of a trace are ordered by their start time (the
        ``start_time`` column, or ``timestamp``, ``startTime``, ``ts``, ... —
        :data:`bayesperf.schema.START_TIME_ALIASES`). Traces without start times give
        the "calls" chain instead (caller -> callee, from ``caller``/``callee`` or parent
        links), with one :class:`NoStartTimeWarning` saying so.

        Returns
        -------
        dict
            ``{service: {next_service: probability}}`` (posterior means; ``END`` is the
            end of a trace), services ordered by how often requests enter there, then
            by traffic. Intervals: :meth:`transition_table`.
        """
        mode = self.transition_mode
        if mode == "sequence":
            spans = span_table(traces, (S.TRACE_ID, S.SERVICE))
            if S.START_TIME not in spans.columns or spans[S.START_TIME].isna().all():
                # Without times the order of spans is unknown, but calls are not.
                warnings.warn(
                    "the traces have no start times (no column named any of "
                    f"{', '.join(S.START_TIME_ALIASES)}), so the order of services in a "
                    "trace is unknown: the Markov chain is built from calls instead, "
                    "caller -> callee (from parent links), as transition_mode='calls'",
                    NoStartTimeWarning,
                    stacklevel=2,
                )
                mode = "calls"
        spans = span_table(
            traces,
            (S.TRACE_ID, S.SERVICE, S.START_TIME)
            if mode == "sequence"
            else (S.TRACE_ID, S.CALLER, S.CALLEE),
        )
        self.transition_model = TransitionModel(mode=mode).fit(spans, random_seed=self.random_seed)
        full = self.transition_table()
        entry = full[full["source"] == S.START].set_index("target")["mean"]
        table = full[(full["source"] != S.START) & (full["target"] != UNSEEN)]
        traffic = table.groupby("source", sort=False)["count"].sum()
        order = sorted(traffic.index, key=lambda s: (-entry.get(s, 0.0), -traffic[s], str(s)))
        probabilities: dict[str, dict[str, float]] = {}
        for source in order:
            rows = table[table["source"] == source].sort_values("mean", ascending=False)
            probabilities[str(source)] = dict(
                zip(rows["target"].astype(str), rows["mean"].astype(float), strict=True)
            )
        self.transition_probabilities = probabilities
        return probabilities

    def transition_table(self) -> pd.DataFrame:
        """Every transition's count, posterior mean, median and credible interval."""
        if self.transition_model is None:
            raise RuntimeError("no Markov chain yet: call build_markov_chain(traces) first")
        return self.transition_model.transition_probabilities(ci_prob=self.ci_prob)

    def predict_service_path(self, start: str, max_steps: int = 10) -> list[str]:
        """One request path drawn from the posterior predictive, starting at ``start``.

        Each call draws a new path (a transition matrix from the posterior, then a
        walk) from the model's seeded random stream. The path stops at the end of a
        trace (``END``, not listed) or after ``max_steps`` transitions.

        Raises
        ------
        ValueError
            An unknown service (the message names the closest known ones).
        """
        if self.transition_model is None:
            raise RuntimeError("no Markov chain yet: call build_markov_chain(traces) first")
        (path,) = self.transition_model.sample_paths(
            start, n=1, max_steps=max_steps, random_seed=self._path_rng
        )
        return [str(s) for s in path if s not in (S.END, UNSEEN)]

    # --------------------------------------------------------------------- clusters
    def cluster_latency_patterns(
        self, traces: pd.DataFrame, n_clusters: int | str = 3
    ) -> MixtureModel:
        """Fit a Bayesian mixture of latency regimes and label every span with one.

        Adds ``latency_cluster`` (0 = fastest regime; the most probable component,
        posterior-averaged) and ``latency_cluster_probability`` (its membership
        probability) to ``traces`` in place, as the seed expects.

        Parameters
        ----------
        traces : pandas.DataFrame
            Spans with ``latency`` (ms); modified in place.
        n_clusters : int or "auto", default 3
            Number of regimes, or chosen by LOO.

        Returns
        -------
        MixtureModel
            The fitted mixture (``.summary()`` for weights and locations with intervals).
        """
        if not isinstance(traces, pd.DataFrame):
            raise TypeError("cluster_latency_patterns labels a DataFrame in place: pass one")
        span_table(traces, (S.LATENCY,))
        self.mixture_model = MixtureModel(n_components=n_clusters).fit(
            traces, random_seed=self.random_seed, **self.sample_kwargs
        )
        proba = self.mixture_model.predict_proba(traces[[S.LATENCY]])
        values = proba.to_numpy()
        traces["latency_cluster"] = values.argmax(axis=1)
        traces["latency_cluster_probability"] = values.max(axis=1)
        return self.mixture_model

    # ------------------------------------------------------------------ persistence
    def save_models(self, path: str | os.PathLike[str]) -> Path:
        """Save every fitted model.

        A ``.pkl`` / ``.pickle`` path (the seed's) holds the whole object, pickled; any
        other path is a directory receiving each model's portable ``.nc`` file
        (``latency.nc``, ``transitions.nc``, ``mixture.nc``; read back with
        :func:`bayesperf.load`). Parent directories are created.
        """
        path = Path(path)
        models = {
            "latency": self.latency_model,
            "transitions": self.transition_model,
            "mixture": self.mixture_model,
        }
        if all(m is None for m in models.values()):
            raise RuntimeError("nothing to save: no model has been fit yet")
        if path.suffix in (".pkl", ".pickle"):
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as f:
                pickle.dump(self, f)
            return path
        path.mkdir(parents=True, exist_ok=True)
        for name, model in models.items():
            if model is not None:
                model.save(path / f"{name}.nc")
        return path

    @staticmethod
    def load_models(path: str | os.PathLike[str]) -> MicroserviceInteractionModel:
        """Read back a ``.pkl`` written by :meth:`save_models` (only open files you trust)."""
        with Path(path).open("rb") as f:
            model = pickle.load(f)
        if not isinstance(model, MicroserviceInteractionModel):
            raise TypeError(f"{path} does not hold a MicroserviceInteractionModel")
        return model


__all__ = ["SEED_LATENCY_KEYS", "MicroserviceInteractionModel", "NoStartTimeWarning"]
