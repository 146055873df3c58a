"""``PerformanceAnalyzer``: the seed notebook's analysis calls, answered with posteriors.

The analyzer holds configuration (model family, grouping, interval mass, FDR level,
seed, sampler settings) and a small cache of fitted
:class:`~bayesperf.models.LatencyModel` s keyed by the *content* of the data (a hash
of its latency summary), so asking several questions of one window fits it once. Every
answer is computed from a model's posterior; the modules beside this one hold the
computations (:mod:`~bayesperf.analysis.hotspots`,
:mod:`~bayesperf.analysis.anomalies`, :mod:`~bayesperf.analysis.regression`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bayesperf import schema as S
from bayesperf.analysis import anomalies as _anomalies
from bayesperf.analysis import critical_path as _critical_path
from bayesperf.analysis import hotspots as _hotspots
from bayesperf.analysis import regression as _regression
from bayesperf.analysis._input import Traces, find_group, span_table, summary_digest
from bayesperf.models.latency import NONPARAMETRIC, LatencyModel, LatencyPriors, Pooling
from bayesperf.models.request import RequestModel
from bayesperf.summaries.calls import summarize_calls
from bayesperf.summaries.latency import By, LatencySummary, normalize_by, summarize_latency

#: Seed-style keys of :meth:`PerformanceAnalyzer.analyze_latency_distribution`, and the
#: LatencyModel summary statistic behind each.
LATENCY_KEYS = {"mean": "mean", "median": "p50", "p95": "p95", "p99": "p99"}

ModelInput = Traces | LatencySummary | LatencyModel


class PerformanceAnalyzer:
    """Latency statistics, hotspots, anomalies, regressions and SLOs with posterior uncertainty.

    Parameters
    ----------
    family : {"nonparametric", "lognormal", "gamma", "weibull"}, default "nonparametric"
        Latency family of the :class:`~bayesperf.models.LatencyModel` behind every answer
        (its default: intervals that hold on held-out real traces).
    by : str or sequence of str, default ("caller", "callee")
        Grouping of spans: a caller→callee pair by default.
    pooling : {"partial", "none", "complete"}, default "partial"
        Passed to the latency model.
    priors : dict or LatencyPriors, optional
        Passed to the latency model.
    ci_prob : float, default 0.9
        Mass of the equal-tailed credible intervals reported.
    alpha : float, default 0.05
        False discovery rate of :meth:`detect_anomalies`.
    random_seed : int or None, default 0
        Seeds every random step (the sampler, call-rate draws, draw pairing): the same
        data give the same answers. ``None`` for fresh randomness.
    cache_size : int, default 8
        Fitted models kept (least recently used dropped first).
    **sample_kwargs
        Passed to :meth:`LatencyModel.fit` / :func:`pymc.sample` (e.g. ``draws=500,
        tune=500, chains=2`` for speed, ``progressbar=False``).

    Examples
    --------
    The seed notebook's calls:

    >>> import bayesperf
    >>> traces = bayesperf.datasets.load_online_boutique()
    >>> analyzer = bayesperf.PerformanceAnalyzer(chains=2, draws=500)  # doctest: +SKIP
    >>> for key, value in analyzer.analyze_latency_distribution(traces).items():  # doctest: +SKIP
    ...     print(f"  {key}: {value:.2f} ms")
    >>> print(analyzer.identify_hotspots(traces, top_n=5))  # doctest: +SKIP
    >>> anomalies = analyzer.detect_anomalies(traces)  # doctest: +SKIP
    >>> print(f"Detected {len(anomalies)} anomalous traces")  # doctest: +SKIP

    And what the Bayesian version adds:

    >>> analyzer.compare_windows(before, after, q=0.99)  # doctest: +SKIP
    >>> analyzer.slo_probability(traces, threshold_ms=500.0, q=0.99)  # doctest: +SKIP
    """

    def __init__(
        self,
        family: str = NONPARAMETRIC,
        *,
        by: By = (S.CALLER, S.CALLEE),
        pooling: Pooling = "partial",
        priors: dict[str, Any] | LatencyPriors | None = None,
        ci_prob: float = 0.9,
        alpha: float = 0.05,
        random_seed: int | None = 0,
        cache_size: int = 8,
        **sample_kwargs: Any,
    ) -> None:
        # Building a model validates family, pooling and priors with the model's errors.
        template = LatencyModel(family=family, by=by, pooling=pooling, priors=priors)
        self._config = template.get_config()
        self._config["by"] = tuple(self._config["by"])
        if not 0 < ci_prob < 1:
            raise ValueError(f"ci_prob must be in (0, 1), got {ci_prob}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.ci_prob = float(ci_prob)
        self.alpha = float(alpha)
        self.random_seed = random_seed
        self.cache_size = int(cache_size)
        self.sample_kwargs = dict(sample_kwargs)
        self._cache: OrderedDict[str, LatencyModel] = OrderedDict()
        self._requests: OrderedDict[str, RequestModel] = OrderedDict()

    @property
    def by(self) -> tuple[str, ...]:
        """Grouping columns of the models."""
        return normalize_by(self._config["by"])

    @property
    def family(self) -> str:
        """Latency family of the models."""
        return self._config["family"]

    def __repr__(self) -> str:
        return (
            f"PerformanceAnalyzer(family={self.family!r}, by={self.by}, "
            f"ci_prob={self.ci_prob:g}, alpha={self.alpha:g}, random_seed={self.random_seed}; "
            f"{len(self._cache)} fitted model(s) cached)"
        )

    # ------------------------------------------------------------------------ models
    def latency_model(self, traces: ModelInput) -> LatencyModel:
        """The fitted latency model of ``traces`` (fit once per distinct data, then cached).

        Parameters
        ----------
        traces : pandas.DataFrame, path, LatencySummary or LatencyModel
            Spans (or their summary) to fit; a fitted model is returned as it is.

        Returns
        -------
        LatencyModel
        """
        if isinstance(traces, LatencyModel):
            if not traces.is_fitted:
                raise ValueError("the LatencyModel passed is not fitted: call .fit(data) first")
            return traces
        summary = self._summary(traces)
        return self._fit(summary, summary_digest(summary))

    def _summary(self, traces: Traces | LatencySummary) -> LatencySummary:
        if isinstance(traces, LatencySummary):
            if traces.by != self.by:
                raise ValueError(
                    f"the summary is grouped by {traces.by}, the analyzer by {self.by}"
                )
            return traces
        spans = span_table(traces, (*self.by, S.LATENCY))
        return summarize_latency(spans, self.by)

    def _fit(self, summary: LatencySummary, key: str) -> LatencyModel:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        model = LatencyModel(**self._config).fit(
            summary, random_seed=self.random_seed, **self.sample_kwargs
        )
        self._cache[key] = model
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return model

    def request_model(self, traces: Traces | RequestModel) -> RequestModel:
        """The fitted end-to-end :class:`~bayesperf.models.request.RequestModel` of ``traces``.

        Self times use the analyzer's latency configuration (family, pooling, priors);
        fit once per distinct data, then cached like the latency models.
        """
        if isinstance(traces, RequestModel):
            if not traces.is_fitted:
                raise ValueError("the RequestModel passed is not fitted: call .fit(spans) first")
            return traces
        spans = span_table(traces, (S.TRACE_ID, S.SPAN_ID, S.PARENT_ID, S.START_TIME))
        summary = summarize_calls(spans)
        patterns = summary.patterns.to_frame().to_json().encode()
        key = summary_digest(summary.self_time) + hashlib.sha256(patterns).hexdigest()
        if key in self._requests:
            self._requests.move_to_end(key)
            return self._requests[key]
        config = {k: v for k, v in self._config.items() if k not in ("by", "likelihood")}
        model = RequestModel(LatencyModel(**config)).fit(
            summary, random_seed=self.random_seed, **self.sample_kwargs
        )
        self._requests[key] = model
        while len(self._requests) > self.cache_size:
            self._requests.popitem(last=False)
        return model

    def critical_path(
        self,
        traces: Traces | RequestModel,
        q: float = 0.99,
        reduction: float = 0.1,
        top_n: int = 5,
    ) -> pd.DataFrame:
        """Per entry point, the expected drop of its ``q``-quantile if a service got faster.

        See :func:`bayesperf.analysis.critical_path.attribute` (the table, all services).

        Examples
        --------
        >>> analyzer.critical_path(traces, q=0.99, reduction=0.1)  # doctest: +SKIP
        """
        return _critical_path.attribute(
            self.request_model(traces), q=q, reduction=reduction, top_n=top_n, ci_prob=self.ci_prob
        )

    # ------------------------------------------------------------- the seed's calls
    def analyze_latency_distribution(
        self, traces: ModelInput, pair: Sequence[str | None] | str | None = None
    ) -> dict[str, float]:
        """Mean, median, P95 and P99 latency (ms), each with its credible interval.

        Parameters
        ----------
        traces : pandas.DataFrame, path, LatencySummary or LatencyModel
            The spans.
        pair : tuple, optional
            One group, e.g. ``("frontend", "cartservice")`` (``None`` as the caller of
            root spans). By default all spans together: the count-weighted mixture of
            the groups' posterior distributions.

        Returns
        -------
        dict of str to float
            ``mean``, ``median``, ``p95``, ``p99``: posterior medians (ms); and for each,
            ``<key>_lower`` / ``<key>_upper``: the equal-tailed ``ci_prob`` interval.
            (A seed-era analyzer's ``std``, ``min`` and ``max`` are not returned: sample
            extremes have no posterior, and every value here carries an interval.)

        Examples
        --------
        >>> stats = analyzer.analyze_latency_distribution(traces)  # doctest: +SKIP
        >>> stats["p99"], stats["p99_lower"], stats["p99_upper"]  # doctest: +SKIP
        """
        model = self.latency_model(traces)
        if pair is None:
            row = model.overall_summary(self.ci_prob).iloc[0]
        else:
            row = model.summary(self.ci_prob, overall=False).iloc[find_group(model, pair)]
        out: dict[str, float] = {}
        for key, stat in LATENCY_KEYS.items():
            out[key] = float(row[f"{stat}_median"])
            out[f"{key}_lower"] = float(row[f"{stat}_lower"])
            out[f"{key}_upper"] = float(row[f"{stat}_upper"])
        return out

    def identify_hotspots(
        self,
        traces: Traces,
        top_n: int = 5,
        *,
        per: _hotspots.Per = "trace",
        method: _hotspots.Method = "contribution",
    ) -> pd.DataFrame:
        """The ``top_n`` groups by posterior contribution (call rate × mean latency).

        Parameters
        ----------
        traces : pandas.DataFrame or path
            The spans (``trace_id`` needed for ``per="trace"``, ``start_time`` for
            ``per="second"``).
        top_n : int, default 5
            Rows returned, and the ``n`` of the ranking probability.
        per : {"trace", "second"}, default "trace"
            Contribution in ms per trace, or ms per second of the window.
        method : {"contribution", "critical_path"}, default "contribution"
            ``"critical_path"`` ranks services per entry point by the expected drop of
            its P99 if their self time fell by 10% (:meth:`critical_path`; the table of
            :func:`~bayesperf.analysis.hotspots.rank_critical_path`; ``per`` unused).

        Returns
        -------
        pandas.DataFrame
            Indexed by group, largest contribution first: ``calls``,
            ``calls_per_trace``, ``mean_ms`` (posterior median of the mean latency),
            ``ms_per_trace`` with ``_lower`` / ``_upper`` (posterior mean and interval
            of the contribution), ``share`` (of all groups' time), ``p_top<n>`` (the
            posterior probability that the group is among the ``top_n``; ranked per
            draw). See :mod:`bayesperf.analysis.hotspots`.

        Examples
        --------
        >>> print(analyzer.identify_hotspots(traces, top_n=5))  # doctest: +SKIP
        >>> analyzer.identify_hotspots(traces, method="critical_path")  # doctest: +SKIP
        """
        if method not in _hotspots.METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {_hotspots.METHODS}")
        if method == "critical_path":
            model = self.request_model(traces)
            return _hotspots.rank_critical_path(model, top_n, ci_prob=self.ci_prob)
        needed = (S.TRACE_ID,) if per == "trace" else (S.START_TIME,)
        spans = span_table(traces, (*self.by, S.LATENCY, *needed))
        model = self.latency_model(spans)
        table = _hotspots.rank_hotspots(
            model,
            _hotspots.exposure(spans, per),
            top_n,
            per=per,
            ci_prob=self.ci_prob,
            random_seed=self.random_seed,
        )
        return table.head(top_n)

    def detect_anomalies(
        self,
        traces: Traces,
        baseline: ModelInput | None = None,
        *,
        alpha: float | None = None,
        level: _anomalies.Level = "trace",
        tail: _anomalies.Tail = "upper",
        predictive: _anomalies.Predictive = "splice",
        combine: _anomalies.Combine = "simes",
        flagged_only: bool = True,
    ) -> pd.DataFrame:
        """Traces (or spans) whose latency is improbable under the baseline's posterior.

        Each span gets its posterior predictive tail probability under its group's
        model; a trace combines its spans (Simes); Benjamini–Hochberg across traces
        keeps the expected share of false flags among the flagged at most ``alpha``.
        Details, and why the default predictive splices the baseline's own tail
        frequencies with the family's tail: :mod:`bayesperf.analysis.anomalies`.

        Parameters
        ----------
        traces : pandas.DataFrame or path
            Spans to score.
        baseline : pandas.DataFrame, path, LatencySummary or LatencyModel, optional
            What normal looks like (e.g. a fault-free window). By default ``traces``
            itself, each span scored against the others.
        alpha : float, optional
            FDR level (default: the analyzer's ``alpha``).
        level : {"trace", "span"}, default "trace"
            Flag traces, or individual spans (BH across spans).
        tail : {"upper", "lower", "both"}, default "upper"
            Slow spans; fast spans (early returns, errors); or either.
        predictive : {"splice", "model"}, default "splice"
            The baseline's tail frequencies extended by the family beyond its range, or
            the family alone.
        combine : {"simes", "bonferroni"}, default "simes"
            How a trace's span p-values are combined.
        flagged_only : bool, default True
            Return only flagged rows (``len(result)`` is the number of anomalies).

        Returns
        -------
        pandas.DataFrame
            Per flagged trace: ``trace_id``, ``p_value``, ``q_value``, ``flagged``,
            ``n_spans``, ``start_time``, and the most anomalous span's ``span_id``,
            ``caller``, ``callee``, ``latency``, ``span_p_value``; sorted by
            ``p_value``. ``attrs``: ``alpha``, ``tested``, ``spans_unscored``, ``method``.

        Examples
        --------
        >>> flagged = analyzer.detect_anomalies(fault, baseline=normal)  # doctest: +SKIP
        >>> flagged[["trace_id", "q_value", "caller", "callee", "latency"]]  # doctest: +SKIP
        """
        needed = (S.TRACE_ID,) if level == "trace" else ()
        spans = span_table(traces, (*self.by, S.LATENCY, *needed))
        summary = summarize_latency(spans, self.by)
        digest = summary_digest(summary)
        if baseline is None:
            model = self._fit(summary, digest)
        else:
            model = self.latency_model(baseline)
        # Spans that are the baseline's own data are scored against the other spans.
        self_scored = summary_digest(model.fit_summary) == digest
        return _anomalies.detect(
            model,
            spans,
            alpha=self.alpha if alpha is None else alpha,
            level=level,
            tail=tail,
            predictive=predictive,
            combine=combine,
            leave_one_out=self_scored,
            flagged_only=flagged_only,
        )

    # --------------------------------------------------------- what Bayes adds
    def compare_windows(
        self,
        before: ModelInput,
        after: ModelInput,
        q: float = 0.99,
        threshold: float = 0.1,
    ) -> pd.DataFrame:
        """Posterior of each group's ``q``-quantile ratio, after / before, and P(regression).

        Both windows are fit with the same configuration and seed.

        Parameters
        ----------
        before, after : pandas.DataFrame, path, LatencySummary or LatencyModel
            The two windows.
        q : float, default 0.99
            The quantile compared.
        threshold : float, default 0.1
            ``p_regression`` is P(ratio > 1 + threshold): a rise of more than 10%.

        Returns
        -------
        pandas.DataFrame
            Groups in both windows, most probable regression first: ``n_before``,
            ``n_after``, ``empirical_ratio``, ``p99_before``, ``p99_after`` (posterior
            medians), ``ratio`` (posterior median) with ``ratio_lower`` /
            ``ratio_upper``, ``p_increase`` = P(ratio > 1), ``p_regression``. See
            :mod:`bayesperf.analysis.regression`.

        Examples
        --------
        >>> analyzer.compare_windows(load25, load100, q=0.99, threshold=0.1)  # doctest: +SKIP
        """
        return _regression.compare(
            self.latency_model(before),
            self.latency_model(after),
            q=q,
            threshold=threshold,
            ci_prob=self.ci_prob,
            random_seed=self.random_seed,
        )

    def slo_probability(
        self, traces: ModelInput, threshold_ms: float, q: float = 0.99
    ) -> pd.DataFrame:
        """Posterior probability per group that its ``q`` quantile is at most ``threshold_ms``.

        For an end-to-end SLO read the root group's row (caller ``(none)``).

        Returns
        -------
        pandas.DataFrame
            ``n``, ``p99`` (posterior median, ms) with ``p99_lower`` / ``p99_upper``, and
            ``p_meets`` = P(P99 ≤ threshold), least likely to meet first.

        Examples
        --------
        >>> analyzer.slo_probability(traces, threshold_ms=250.0, q=0.99)  # doctest: +SKIP
        """
        return _regression.slo(self.latency_model(traces), threshold_ms, q=q, ci_prob=self.ci_prob)
