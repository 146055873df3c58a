"""Held-out checks on real traces: whether a model's intervals predict fresh traffic.

Simulations from our own generator only show that a model recovers what it assumes.
Here the judge is real traffic: the traces are split in two halves by a hash of the
trace id, a model is fit on one half, and for every group with enough spans in the
other half the model predicts *the empirical quantile of that many new spans*. Per
posterior draw that is ``F⁻¹(u)`` with ``u ~ Beta(k, n - k + 1)``, ``k = ⌈q n⌉`` (the
k-th order statistic of ``n`` draws from ``F``), so the prediction carries both what
the model does not know about ``F`` and the sampling noise of ``n`` spans.

Examples
--------
>>> spans = bayesperf.datasets.load_online_boutique()  # doctest: +SKIP
>>> fit_half, test_half = split_traces(spans)  # doctest: +SKIP
>>> model = bayesperf.LatencyModel().fit(fit_half, random_seed=1)  # doctest: +SKIP
>>> check = holdout_check(model, test_half, fit_half)  # doctest: +SKIP
>>> check["covered"].mean()  # held-out P99 inside the 90% interval  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.models.latency import LatencyModel, posterior_interval

#: Groups need at least this many held-out spans to be checked (the issue's protocol).
MIN_TEST_SPANS = 20


def split_traces(
    spans: pd.DataFrame, *, salt: int = 0, fraction: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split spans into two parts by a hash of their trace id (whole traces stay together).

    The hash (pandas' SipHash with a fixed key, salted) is the same on every machine
    and run, so a split is reproducible; other salts give other splits.

    Parameters
    ----------
    spans : pandas.DataFrame
        A span table with ``trace_id``.
    salt : int, default 0
        Selects the split.
    fraction : float, default 0.5
        Share of the traces in the first part.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The first part (to fit on) and the rest (to predict).

    Examples
    --------
    >>> spans = pd.DataFrame({"trace_id": list("aabbccdd"), "latency": range(8)})
    >>> first, rest = split_traces(spans)
    >>> len(first) + len(rest), set(first["trace_id"]) & set(rest["trace_id"])
    (8, set())
    """
    if S.TRACE_ID not in spans.columns:
        raise ValueError("spans need a trace_id column to be split by trace")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ids = spans[S.TRACE_ID].astype("string").fillna("")
    codes, uniques = pd.factorize(ids)
    key = f"bayesperf{salt:07d}"[-16:].encode()
    hashed = pd.util.hash_array(np.asarray(uniques, dtype=object), hash_key=key.decode())
    first = (hashed % np.uint64(2**32)) < np.uint64(fraction * 2**32)
    mask = first[codes]
    return spans[mask], spans[~mask]


def order_statistic_quantile(values: np.ndarray, q: float) -> float:
    """The empirical ``q`` quantile as the k-th smallest of n, ``k = ⌈q n⌉``.

    Examples
    --------
    >>> order_statistic_quantile(np.arange(1.0, 101.0), 0.99)
    99.0
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        raise ValueError("no values")
    k = min(max(math.ceil(q * x.size - 1e-9), 1), x.size)
    return float(x[k - 1])


def holdout_check(
    model: LatencyModel,
    test_spans: pd.DataFrame,
    fit_spans: pd.DataFrame | None = None,
    *,
    q: float = 0.99,
    ci_prob: float = 0.9,
    min_spans: int = MIN_TEST_SPANS,
    random_seed: int | None = 0,
) -> pd.DataFrame:
    """Predict each group's empirical ``q`` quantile in held-out spans, and score it.

    Parameters
    ----------
    model : LatencyModel
        Fitted on the other part of the traces.
    test_spans : pandas.DataFrame
        The held-out spans (grouped as the model is).
    fit_spans : pandas.DataFrame, optional
        The spans the model was fit on: adds the fitted half's own empirical quantile
        and its error, the estimate a trace tool would show.
    q : float, default 0.99
        The quantile checked.
    ci_prob : float, default 0.9
        Probability of the predictive interval.
    min_spans : int, default 20
        Groups with fewer held-out spans are not checked.
    random_seed : int, optional
        Seeds the order-statistic draws.

    Returns
    -------
    pandas.DataFrame
        One row per checked group (the model's labels): ``n_fit``, ``n_test``,
        ``observed`` (the held-out empirical quantile), ``lower``, ``median``,
        ``upper`` (the predictive interval), ``covered``, ``log_error``
        (``|log(median / observed)|``) and, with ``fit_spans``, ``empirical`` and
        ``empirical_log_error``.
    """
    if not 0 < q < 1 or not 0 < ci_prob < 1:
        raise ValueError(f"q and ci_prob must be in (0, 1), got {q}, {ci_prob}")
    by = list(model.by)
    draws = model.latency_draws(None)
    labels = model.groups
    rng = np.random.default_rng(random_seed)
    fit_groups = _grouped(fit_spans, by) if fit_spans is not None else None
    rows = []
    for key, latency in _grouped(test_spans, by):
        values = latency.to_numpy(dtype=np.float64)
        n = values.size
        label = _label(key, labels)
        if n < min_spans or label is None:
            continue
        g = labels.get_loc(label)
        k = min(max(math.ceil(q * n - 1e-9), 1), n)
        u = rng.beta(k, n - k + 1, size=draws.n_draws)
        predicted = draws.ppf(u, g, np.arange(draws.n_draws))
        interval = posterior_interval(predicted, ci_prob)
        observed = order_statistic_quantile(values, q)
        row = {
            "n_fit": int(model.fit_summary.count[g]),
            "n_test": n,
            "observed": observed,
            "lower": float(interval["lower"]),
            "median": float(interval["median"]),
            "upper": float(interval["upper"]),
        }
        row["covered"] = bool(row["lower"] <= observed <= row["upper"])
        row["log_error"] = _log_ratio(row["median"], observed)
        if fit_groups is not None:
            own = dict(fit_groups).get(key)
            if own is not None and len(own):
                row["empirical"] = order_statistic_quantile(own.to_numpy(np.float64), q)
                row["empirical_log_error"] = _log_ratio(row["empirical"], observed)
        rows.append((label, row))
    if not rows:
        return pd.DataFrame(
            columns=["n_fit", "n_test", "observed", "lower", "median", "upper", "covered"]
        )
    index = pd.Index([label for label, _ in rows], tupleize_cols=True)
    if isinstance(labels, pd.MultiIndex):
        index = pd.MultiIndex.from_tuples(list(index), names=labels.names)
    else:
        index.name = labels.name
    return pd.DataFrame([row for _, row in rows], index=index)


def _grouped(spans: pd.DataFrame, by: list[str]):
    if not by:
        return [(None, spans[S.LATENCY])]
    return list(spans.groupby(by, observed=True, dropna=False, sort=True)[S.LATENCY])


def _label(key, labels: pd.Index):
    """The model's label for a groupby key (missing keys are spelled ``(none)``)."""
    from bayesperf.models.latency import MISSING_KEY

    if key is None:
        return labels[0] if len(labels) == 1 else None
    parts = key if isinstance(key, tuple) else (key,)
    spelled = tuple(MISSING_KEY if pd.isna(p) else str(p) for p in parts)
    label = spelled if isinstance(labels, pd.MultiIndex) else spelled[0]
    return label if label in labels else None


def _log_ratio(a: float, b: float) -> float:
    if a > 0 and b > 0:
        return float(abs(math.log(a / b)))
    return 0.0 if a == b else float("inf")
