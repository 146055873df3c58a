"""Latency-model benchmark: fit time, accuracy and memory of ``LatencyModel``.

Usage::

    python benchmarks/latency_fit.py               # everything, full sizes
    python benchmarks/latency_fit.py --only 1 3    # some cases
    python benchmarks/latency_fit.py --quick       # tiny sizes: checks the script works

Cases
    1. 10^6 lognormal spans x 200 pairs: ``summarize_latency`` + ``LatencyModel().fit``
       against a naive per-observation PyMC model with the same hierarchy, priors,
       per-group centring weights and sampler settings (nutpie, 1,000 + 1,000 draws, 2
       chains, same seed). The naive model is first timed on 10^5 spans; when the
       extrapolation to 10^6 exceeds 25 minutes it runs at the largest size fitting about
       20 minutes instead, and the report says so. A second bayesperf fit with another
       seed gives the MCMC noise floor of the comparison.
    2. 10^7 lognormal spans x 1,000 pairs: summarize and fit wall time (compile
       included) and the subprocess's peak RSS.
    3. Lognormal (exact) vs binned gamma / weibull, 50 pairs x 2,000 spans each,
       against the true P99; the binning cost on lognormal data (exact vs
       ``likelihood="binned"``); and binned gamma against a per-observation PyMC gamma
       model (20 pairs x 500 spans).

Cases 1 and 2 also time the default model (``LatencyModel()``: the nonparametric family,
exact draws without MCMC) on the same spans: in case 1 with the naive model's chains and
draws, in case 2 with its defaults, plus the time of ``summary()`` (P50/P95/P99 with
intervals for every pair).

Every measured case runs in a fresh subprocess (its peak RSS, ``VmHWM``, is its own).
Times include PyTensor/nutpie compilation; the compile and sampling parts are also
reported separately (by timing ``nutpie.compile_pymc_model`` and ``nutpie.sample``).
Note that PyTensor keeps a numba cache on disk (``~/.pytensor``), so a first-ever run
on a machine compiles more slowly than the numbers here.

Prints markdown tables and writes ``benchmarks/out/latency_fit.json`` (with ``--only``,
the other cases' results already in that file are kept; each case records when it was
measured and a hash of the bayesperf model sources it ran on; ``--quick`` writes
nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _measure import peak_rss_bytes, rss_bytes

OUT = Path(__file__).resolve().parent / "out"
RESULT_FILE = OUT / "latency_fit.json"
SEED = 20261126
FIT_SEED = 7
#: Sampler settings of the comparisons (cases 1 and 3): both sides use the same ones.
SAMPLER = {"draws": 1000, "tune": 1000, "chains": 2, "target_accept": 0.9}
#: Case 2 fits twice: with ``LatencyModel``'s defaults (4 chains, 1,000 + 1,000 draws,
#: target_accept 0.9 for the exact lognormal), and with these overrides (2 chains: half
#: the sampling), which must still pass every convergence check (R-hat <= 1.01, ESS >=
#: 400, no divergences) to count.
CASE2_LIGHT = {"chains": 2}
QUICK_SAMPLER = {"draws": 200, "tune": 200, "chains": 2, "target_accept": 0.9}
#: Naive model: extrapolated time above which it is not run at full size, and the
#: time budget of the reduced run (seconds).
NAIVE_LIMIT_S = 25 * 60
NAIVE_BUDGET_S = 20 * 60

FULL = {
    "c1_spans": 1_000_000,
    "c1_pairs": 200,
    "c1_probe": 100_000,
    "c2_spans": 10_000_000,
    "c2_pairs": 1_000,
    "c3_pairs": 50,
    "c3_spans": 2_000,
    "c3_naive_pairs": 20,
    "c3_naive_spans": 500,
    "noise": True,
}
QUICK = {
    "c1_spans": 20_000,
    "c1_pairs": 40,
    "c1_probe": 5_000,
    "c2_spans": 200_000,
    "c2_pairs": 100,
    "c3_pairs": 8,
    "c3_spans": 300,
    "c3_naive_pairs": 5,
    "c3_naive_spans": 200,
    "noise": False,  # no second-seed fits: each costs a compile
}


# ============================================================== data generation
def pair_parameters(n_pairs: int, family: str, seed: int) -> dict[str, Any]:
    """True per-pair parameters and P99 (from scipy) of one latency family.

    lognormal: medians log-uniform in 0.1-500 ms, sigma uniform in 0.2-1.5;
    gamma: means log-uniform in 1-500 ms, shape uniform in 1-8;
    weibull: scales log-uniform in 1-500 ms, shape uniform in 0.8-3.
    """
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng([seed, n_pairs])
    if family == "lognormal":
        median = np.exp(rng.uniform(np.log(0.1), np.log(500.0), n_pairs))
        sigma = rng.uniform(0.2, 1.5, n_pairs)
        dist = stats.lognorm(s=sigma, scale=median)
        params = {"median": median, "sigma": sigma}
    elif family == "gamma":
        mean = np.exp(rng.uniform(np.log(1.0), np.log(500.0), n_pairs))
        k = rng.uniform(1.0, 8.0, n_pairs)
        dist = stats.gamma(a=k, scale=mean / k)
        params = {"mean": mean, "k": k}
    elif family == "weibull":
        scale = np.exp(rng.uniform(np.log(1.0), np.log(500.0), n_pairs))
        k = rng.uniform(0.8, 3.0, n_pairs)
        dist = stats.weibull_min(c=k, scale=scale)
        params = {"scale": scale, "k": k}
    else:
        raise ValueError(family)
    return {"family": family, **params, "p99": dist.ppf(0.99)}


def pair_counts(n_pairs: int, n_total: int, seed: int, n_small: int | None = None):
    """Spans per pair summing to ``n_total``: a few pairs with 3-20 spans, most with many.

    ``n_small`` pairs (default 5% of them, at least 2) get 3-20 spans; the rest share
    the remainder with lognormal weights (sd 0.5), so they hold thousands each at 10^6.
    """
    import numpy as np

    rng = np.random.default_rng([seed, n_pairs, 1])
    n_small = max(2, n_pairs // 20) if n_small is None else n_small
    small = rng.integers(3, 21, n_small)
    rest = n_total - int(small.sum())
    weights = rng.lognormal(0.0, 0.5, n_pairs - n_small)
    big = np.floor(rest * weights / weights.sum()).astype(np.int64)
    big[np.argmax(big)] += rest - int(big.sum())
    counts = np.concatenate([small, big])
    return counts[rng.permutation(n_pairs)]


def sample_family(family: str, params: dict, codes, rng):
    """Latencies (ms) for spans of the given pair codes, from the true parameters."""
    import numpy as np

    if family == "lognormal":
        return np.exp(
            np.log(params["median"])[codes]
            + params["sigma"][codes] * rng.standard_normal(codes.size)
        )
    if family == "gamma":
        k = params["k"][codes]
        return rng.gamma(k, params["mean"][codes] / k)
    return params["scale"][codes] * rng.weibull(params["k"][codes])


def span_table(
    family: str, n_pairs: int, counts, seed: int, chunk: int = 1_000_000
) -> tuple[Any, Any, dict]:
    """A span table (caller/callee categorical, latency in ms) plus codes and truth.

    Spans are shuffled across pairs; latencies are generated in chunks of ``chunk``
    spans so generation needs little memory beyond the table itself.
    """
    import numpy as np
    import pandas as pd

    truth = pair_parameters(n_pairs, family, seed)
    rng = np.random.default_rng([seed, int(counts.sum()), 2])
    codes = np.repeat(np.arange(n_pairs, dtype=np.int32), counts)
    rng.shuffle(codes)
    latency = np.empty(codes.size)
    for start in range(0, codes.size, chunk):
        part = codes[start : start + chunk]
        latency[start : start + chunk] = sample_family(family, truth, part, rng)
    callers = [f"svc{i:04d}" for i in range(n_pairs)]
    callees = [f"dep{i:04d}" for i in range(n_pairs)]
    spans = pd.DataFrame(
        {
            "caller": pd.Categorical.from_codes(codes, callers),
            "callee": pd.Categorical.from_codes(codes, callees),
            "latency": latency,
        }
    )
    return spans, codes, truth


# ======================================================= measuring helpers (child)
class NutpieTimer:
    """Times ``nutpie.compile_pymc_model`` and ``nutpie.sample`` as PyMC calls them."""

    def __init__(self) -> None:
        import nutpie

        self.nutpie = nutpie
        self.compile_s = 0.0
        self.sample_s = 0.0
        self._orig = (nutpie.compile_pymc_model, nutpie.sample)

        def compile_(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self._orig[0](*args, **kwargs)
            finally:
                self.compile_s += time.perf_counter() - t0

        def sample(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self._orig[1](*args, **kwargs)
            finally:
                self.sample_s += time.perf_counter() - t0

        nutpie.compile_pymc_model, nutpie.sample = compile_, sample

    def reset(self) -> dict[str, float]:
        """Return and zero the accumulated times."""
        out = {"compile_s": self.compile_s, "sample_s": self.sample_s}
        self.compile_s = self.sample_s = 0.0
        return out


def diagnostics(idata) -> dict[str, float]:
    """Worst R-hat, smallest bulk/tail ESS and divergences over all posterior blocks."""
    from bayesperf.diagnostics import diagnose

    table = diagnose(idata)
    return {
        "r_hat_max": float(table["r_hat_max"].max()),
        "ess_bulk_min": float(table["ess_bulk_min"].min()),
        "ess_tail_min": float(table["ess_tail_min"].min()),
        "divergences": int(table["divergences"].max()),
    }


def p99_interval(family: str, posterior, ci: float = 0.9) -> dict[str, list[float]]:
    """Posterior median and equal-tailed ``ci`` interval of each group's P99."""
    import numpy as np

    from bayesperf.models.families import get_family

    loc = posterior["location"].stack(s=("chain", "draw")).transpose(..., "s").to_numpy()
    shape = posterior["shape"].stack(s=("chain", "draw")).transpose(..., "s").to_numpy()
    p99 = get_family(family).quantile(0.99, loc, shape)
    lo, med, hi = np.quantile(p99, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=-1)
    return {"median": med.tolist(), "lower": lo.tolist(), "upper": hi.tolist()}


def fit_bayesperf(summary, family: str, seed: int, sampler: dict, timer, **model_kwargs):
    """Fit ``LatencyModel`` on a summary; return the model, wall time and its split."""
    import warnings

    from bayesperf import LatencyModel

    timer.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        model = LatencyModel(family=family, **model_kwargs).fit(
            summary, random_seed=seed, progressbar=False, **sampler
        )
        seconds = time.perf_counter() - t0
    split = timer.reset()
    warned = sorted(
        {str(w.message)[:160] for w in caught if "onvergence" in type(w.message).__name__}
    )
    return model, {
        "fit_s": seconds,
        **split,
        "other_s": seconds - sum(split.values()),
        "warnings": warned,
    }


def naive_model(family: str, y, codes, summary, priors_json: str | None):
    """Per-observation PyMC model with bayesperf's hierarchy, priors and parameterisation.

    Priors are resolved exactly as ``LatencyModel.fit`` does (and checked against the
    ones bayesperf stored, when given). Locations and log-shapes are bayesperf's own
    conditionally centred levels (``_group_level``, with ``_sampling_variances``); the
    locations are sampled, not integrated out, and every span is its own likelihood
    term. Spans below the clock resolution (the summary's underflow bin) enter as
    left-censored, one CDF term per group, as in bayesperf.
    """
    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt

    from bayesperf.models.families import get_family
    from bayesperf.models.latency import (
        LatencyPriors,
        _FitData,
        _group_level,
        _sampling_variances,
    )

    fam = get_family(family)
    data = _FitData.from_summary(summary)
    pilot_loc, pilot_shape = fam.pilot(data.pilot_log_mean, data.pilot_log_sd)
    priors = LatencyPriors().resolved(pilot_loc, pilot_shape)
    if priors_json is not None:
        stored = json.loads(priors_json)
        for key, value in priors.to_dict().items():
            if not math.isclose(stored[key], value, rel_tol=1e-12):
                raise AssertionError(f"prior {key}: bayesperf {stored[key]} vs naive {value}")
    v_loc, v_shape = _sampling_variances(data)
    observed = y >= data.censor_at
    g_obs, y_obs = codes[observed], y[observed]
    censored = np.flatnonzero(data.n_cens > 0)
    with pm.Model(coords={"pair": np.arange(len(data.labels))}) as model:
        shape = _group_level("shape", pilot_shape, v_shape, priors, True, "pair")
        loc = _group_level("location", pilot_loc, v_loc, priors, True, "pair")
        if family == "lognormal":
            pm.LogNormal("y", mu=loc[g_obs], sigma=pt.exp(shape[g_obs]), observed=y_obs)
            below = pm.LogNormal.dist(mu=loc[censored], sigma=pt.exp(shape[censored]))
        elif family == "gamma":
            k = pt.exp(shape)
            rate = k / pt.exp(loc)
            pm.Gamma("y", alpha=k[g_obs], beta=rate[g_obs], observed=y_obs)
            below = pm.Gamma.dist(alpha=k[censored], beta=rate[censored])
        else:
            raise ValueError(f"no naive model for {family}")
        if censored.size:
            logcdf = pm.logcdf(below, np.full(censored.size, data.censor_at))
            pm.Potential("censored", pt.sum(data.n_cens[censored] * logcdf))
    return model, {"n_censored": int(data.n_cens.sum())}


def fit_naive(family, y, codes, summary, priors_json, seed, sampler, timer):
    """Build and sample the naive model (timed from model construction on)."""
    import pymc as pm
    import xarray as xr

    timer.reset()
    t0 = time.perf_counter()
    model, info = naive_model(family, y, codes, summary, priors_json)
    t_build = time.perf_counter() - t0
    with model:
        idata = pm.sample(nuts_sampler="nutpie", random_seed=seed, progressbar=False, **sampler)
    seconds = time.perf_counter() - t0
    split = timer.reset()
    post = idata.posterior.to_dataset()
    idata["posterior"] = xr.DataTree(
        post.drop_vars([v for v in post.data_vars if v.endswith("_raw")])
    )
    timing = {
        "fit_s": seconds,
        "build_s": t_build,
        **split,
        "other_s": seconds - t_build - sum(split.values()),
    }
    return idata, {**timing, **info}


# ================================================================= child cases
def case1_bayesperf(p: dict) -> dict:
    """Case 1, bayesperf side: summarize + fit (timed), plus a second-seed fit."""
    import numpy as np

    from bayesperf import summarize_latency

    timer = NutpieTimer()
    counts = pair_counts(p["pairs"], p["spans"], SEED)
    spans, _, _ = span_table("lognormal", p["pairs"], counts, SEED)
    t0 = time.perf_counter()
    summary = summarize_latency(spans)
    t_sum = time.perf_counter() - t0
    model, timing = fit_bayesperf(summary, "lognormal", p["seed"], p["sampler"], timer)
    out = {
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        "n": summary.count.tolist(),
        "n_censored": int(summary.n_censored.sum()),
        "summarize_s": t_sum,
        **timing,
        "total_s": t_sum + timing["fit_s"],
        "diag": diagnostics(model.idata),
        "p99": p99_interval("lognormal", model.idata.posterior),
        "resolved_priors": model.idata.attrs["resolved_priors"],
        "labels": [f"{a}->{b}" for a, b in model.groups],
    }
    table = model.summary(overall=False)
    assert np.allclose(table["p99_median"].to_numpy(), out["p99"]["median"], rtol=1e-9)
    if p.get("noise_seed") is not None:
        again, t2 = fit_bayesperf(summary, "lognormal", p["noise_seed"], p["sampler"], timer)
        out["noise"] = {
            "p99": p99_interval("lognormal", again.idata.posterior),
            "fit_s": t2["fit_s"],
        }
    out["peak_rss"] = peak_rss_bytes()
    return out


def default_fit(summary, seed: int, sampler: dict) -> dict:
    """Fit the default model (nonparametric) and time ``fit`` and ``summary``."""
    import warnings

    from bayesperf import LatencyModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        model = LatencyModel().fit(summary, random_seed=seed, **sampler)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = model.summary()
        summary_s = time.perf_counter() - t0
    warned = sorted({str(w.message)[:160] for w in caught if "onvergence" in str(type(w.message))})
    post = model.idata.posterior
    return {
        "family": model.family,
        "draws": int(post.sizes["chain"] * post.sizes["draw"]),
        "fit_s": fit_s,
        "summary_s": summary_s,
        "diag": diagnostics(model.idata),
        "warnings": warned,
        "p99_median": table["p99_median"].iloc[:-1].tolist(),
    }


def case_default(p: dict) -> dict:
    """Cases 1 and 2, default model: summarize + fit (+ summary) on the same spans."""
    from bayesperf import summarize_latency

    counts = pair_counts(p["pairs"], p["spans"], p["data_seed"])
    spans, _, _ = span_table("lognormal", p["pairs"], counts, p["data_seed"])
    t0 = time.perf_counter()
    summary = summarize_latency(spans)
    t_sum = time.perf_counter() - t0
    del spans
    fit = default_fit(summary, p["seed"], p["sampler"])
    return {
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        "summarize_s": t_sum,
        **fit,
        "total_s": t_sum + fit["fit_s"],
        "peak_rss": peak_rss_bytes(),
    }


def case1_naive(p: dict) -> dict:
    """Case 1, naive side: per-observation PyMC model on the same spans."""
    from bayesperf import summarize_latency

    timer = NutpieTimer()
    counts = pair_counts(p["pairs"], p["spans"], SEED)
    spans, codes, _ = span_table("lognormal", p["pairs"], counts, SEED)
    summary = summarize_latency(spans)  # for the centring weights only (not timed)
    y = spans["latency"].to_numpy()
    idata, timing = fit_naive(
        "lognormal", y, codes, summary, p.get("priors"), p["seed"], p["sampler"], timer
    )
    return {
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        **timing,
        "diag": diagnostics(idata),
        "p99": p99_interval("lognormal", idata.posterior),
        "peak_rss": peak_rss_bytes(),
    }


def case2(p: dict) -> dict:
    """Case 2: 10^7 spans x 1,000 pairs, summarize and fit time, peak memory.

    Fits with the model's defaults and with ``CASE2_LIGHT``; each fit compiles anew.
    """
    from bayesperf import summarize_latency

    timer = NutpieTimer()
    rss_start = rss_bytes()
    t0 = time.perf_counter()
    counts = pair_counts(p["pairs"], p["spans"], SEED + 2)
    spans, codes, _ = span_table("lognormal", p["pairs"], counts, SEED + 2)
    del codes
    t_gen = time.perf_counter() - t0
    rss_table = rss_bytes()
    table_bytes = int(spans.memory_usage(deep=True).sum())
    t0 = time.perf_counter()
    summary = summarize_latency(spans)
    t_sum = time.perf_counter() - t0
    del spans
    fits = {}
    for name, sampler in p["samplers"].items():
        model, timing = fit_bayesperf(summary, "lognormal", p["seed"], sampler, timer)
        fits[name] = {
            "sampler": sampler,
            **timing,
            "total_s": t_sum + timing["fit_s"],
            "diag": diagnostics(model.idata),
        }
        del model
    return {
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        "min_pair_n": int(counts.min()),
        "max_pair_n": int(counts.max()),
        "generate_s": t_gen,
        "summarize_s": t_sum,
        "fits": fits,
        "rss_after_imports": rss_start,
        "rss_with_table": rss_table,
        "table_bytes": table_bytes,
        "peak_rss": peak_rss_bytes(),
    }


def _truth_errors(p99: dict, truth, empirical) -> dict:
    """Errors of posterior-median P99 against the true P99, and 90% coverage."""
    import numpy as np

    med, lo, hi = (np.asarray(p99[k]) for k in ("median", "lower", "upper"))
    rel = med / truth - 1
    emp = np.asarray(empirical) / truth - 1
    return {
        "p99_abs_err_median": float(np.median(np.abs(rel))),
        "p99_abs_err_max": float(np.max(np.abs(rel))),
        "empirical_abs_err_median": float(np.median(np.abs(emp))),
        "empirical_abs_err_max": float(np.max(np.abs(emp))),
        "coverage90": float(np.mean((lo <= truth) & (truth <= hi))),
        "width_rel_median": float(np.median((hi - lo) / med)),
    }


def case3_family(p: dict) -> dict:
    """Case 3: fit one family on its own data; for lognormal also the binned likelihood."""
    from bayesperf import summarize_latency

    timer = NutpieTimer()
    family = p["family"]
    counts = pair_counts(p["pairs"], p["pairs"] * p["per_pair"], SEED + 3, n_small=0)
    spans, _, truth = span_table(family, p["pairs"], counts, SEED + 3)
    summary = summarize_latency(spans)
    empirical = summary.quantile(0.99)[:, 0]
    model, timing = fit_bayesperf(summary, family, p["seed"], p["sampler"], timer)
    p99 = p99_interval(family, model.idata.posterior)
    out = {
        "family": family,
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        "likelihood": "exact (moments)" if family == "lognormal" else "binned",
        "cells": len(_cells(summary)),
        **timing,
        "diag": diagnostics(model.idata),
        "p99": p99,
        "truth_p99": truth["p99"].tolist(),
        **_truth_errors(p99, truth["p99"], empirical),
    }
    if family == "lognormal":
        binned, t_b = fit_bayesperf(
            summary, family, p["seed"], p["sampler"], timer, likelihood="binned"
        )
        p99_b = p99_interval(family, binned.idata.posterior)
        out["binned"] = {
            **t_b,
            "diag": diagnostics(binned.idata),
            "p99": p99_b,
            **_truth_errors(p99_b, truth["p99"], empirical),
        }
        if p["noise"]:
            noise, _ = fit_bayesperf(summary, family, p["seed"] + 1, p["sampler"], timer)
            out["noise"] = {"p99": p99_interval(family, noise.idata.posterior)}
    out["peak_rss"] = peak_rss_bytes()
    return out


def _cells(summary):
    """The fitting cells of a summary (for reporting the binned likelihood's size)."""
    from bayesperf.models.latency import _FitData

    return _FitData.from_summary(summary).cell_count


def case3_gamma_naive(p: dict) -> dict:
    """Case 3: binned gamma (bayesperf) vs per-observation PyMC gamma on the same spans."""
    from bayesperf import summarize_latency

    timer = NutpieTimer()
    counts = pair_counts(p["pairs"], p["pairs"] * p["per_pair"], SEED + 4, n_small=0)
    spans, codes, truth = span_table("gamma", p["pairs"], counts, SEED + 4)
    summary = summarize_latency(spans)
    model, t_b = fit_bayesperf(summary, "gamma", p["seed"], p["sampler"], timer)
    idata, t_n = fit_naive(
        "gamma",
        spans["latency"].to_numpy(),
        codes,
        summary,
        model.idata.attrs["resolved_priors"],
        p["seed"],
        p["sampler"],
        timer,
    )
    out = {
        "spans": int(counts.sum()),
        "pairs": p["pairs"],
        "bayesperf": {
            **t_b,
            "diag": diagnostics(model.idata),
            "p99": p99_interval("gamma", model.idata.posterior),
        },
        "naive": {**t_n, "diag": diagnostics(idata), "p99": p99_interval("gamma", idata.posterior)},
        "truth_p99": truth["p99"].tolist(),
    }
    if p["noise"]:
        noise, _ = fit_bayesperf(summary, "gamma", p["seed"] + 1, p["sampler"], timer)
        out["noise"] = {"p99": p99_interval("gamma", noise.idata.posterior)}
    out["peak_rss"] = peak_rss_bytes()
    return out


CHILD_CASES = {
    "default": case_default,
    "c1_bayesperf": case1_bayesperf,
    "c1_naive": case1_naive,
    "c2": case2,
    "c3_family": case3_family,
    "c3_gamma_naive": case3_gamma_naive,
}


# ================================================================ driver side
def library_fingerprint() -> str:
    """Short hash of the model sources, to tell which library version a case measured."""
    import hashlib

    import bayesperf

    root = Path(bayesperf.__file__).parent
    digest = hashlib.sha256()
    for name in (
        "models/latency.py",
        "models/families.py",
        "models/_base.py",
        "models/nonparametric.py",
        "models/draws.py",
    ):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:12]


def run_child(case: str, params: dict) -> dict:
    """Run one case in a fresh interpreter; return its JSON result (with wall time)."""
    cmd = [sys.executable, __file__, "--run-case", case, json.dumps(params)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"case {case} {params} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["children_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return result


def compare(a: dict, b: dict, n: list[int] | None = None, labels: list[str] | None = None) -> dict:
    """Relative differences of P99 posterior medians and 90% widths, ``a`` against ``b``.

    Returns the maxima over groups (and over groups with >= 1,000 spans when ``n`` is
    given), with the group where each maximum occurs.
    """
    med_a, med_b = a["median"], b["median"]
    wid_a = [u - lo for u, lo in zip(a["upper"], a["lower"], strict=True)]
    wid_b = [u - lo for u, lo in zip(b["upper"], b["lower"], strict=True)]
    d_med = [abs(x / y - 1) for x, y in zip(med_a, med_b, strict=True)]
    d_wid = [abs(x / y - 1) for x, y in zip(wid_a, wid_b, strict=True)]

    def worst(values: list[float], keep: list[bool]) -> dict:
        idx = [i for i, k in enumerate(keep) if k]
        if not idx:
            return {"max": None}
        i = max(idx, key=lambda j: values[j])
        ordered = sorted(values[j] for j in idx)
        return {
            "max": values[i],
            "median": ordered[len(ordered) // 2],
            "at": labels[i] if labels else i,
            "n_at": n[i] if n else None,
        }

    everyone = [True] * len(d_med)
    out = {"median_all": worst(d_med, everyone), "width_all": worst(d_wid, everyone)}
    if n is not None:
        rich = [k >= 1000 for k in n]
        out["median_rich"] = worst(d_med, rich)
        out["width_rich"] = worst(d_wid, rich)
        poor = [k < 100 for k in n]
        out["median_poor"] = worst(d_med, poor)
        out["width_poor"] = worst(d_wid, poor)
    return out


#: Stands in for a noise-floor comparison that was not run (``--quick``).
NO_COMPARISON = {
    f"{stat}_{subset}": {"max": None, "median": None}
    for stat in ("median", "width")
    for subset in ("all", "rich", "poor")
}


def run_case1(sizes: dict, sampler: dict) -> dict:
    """Case 1 driver: bayesperf at full size, naive probe, naive at full or reduced size."""
    pairs, full = sizes["c1_pairs"], sizes["c1_spans"]
    common = {"pairs": pairs, "seed": FIT_SEED, "sampler": sampler}
    noise = FIT_SEED + 1 if sizes["noise"] else None
    print(f"[1] bayesperf, {full:,} spans x {pairs} pairs ...", file=sys.stderr, flush=True)
    bp_full = run_child("c1_bayesperf", {**common, "spans": full, "noise_seed": noise})
    priors = bp_full["resolved_priors"]
    probe = sizes["c1_probe"]
    print(f"[1] naive probe, {probe:,} spans ...", file=sys.stderr, flush=True)
    bp_probe = run_child("c1_bayesperf", {**common, "spans": probe, "noise_seed": noise})
    nv_probe = run_child(
        "c1_naive", {**common, "spans": probe, "priors": bp_probe["resolved_priors"]}
    )
    per_span = nv_probe["sample_s"] / probe
    fixed = nv_probe["fit_s"] - nv_probe["sample_s"]
    expected_full = fixed + per_span * full
    runs = [{"size": probe, "bayesperf": bp_probe, "naive": nv_probe}]
    note = (
        f"naive at {probe:,}: {nv_probe['fit_s']:.0f} s; "
        f"extrapolated to {full:,}: {expected_full:.0f} s"
    )
    if expected_full <= NAIVE_LIMIT_S:
        print(f"[1] {note}; running naive at full size", file=sys.stderr, flush=True)
        nv_full = run_child("c1_naive", {**common, "spans": full, "priors": priors})
        runs.append({"size": full, "bayesperf": bp_full, "naive": nv_full})
        reduced = None
    else:
        reduced = int((NAIVE_BUDGET_S - fixed) / per_span)
        unit = 10 ** math.floor(math.log10(max(reduced, 1)))
        reduced = max(probe, reduced // unit * unit)  # rounded down to one digit
        note += f" (> {NAIVE_LIMIT_S / 60:.0f} min): naive run at {reduced:,} spans instead"
        print(f"[1] {note}", file=sys.stderr, flush=True)
        if reduced > probe:
            bp_red = run_child("c1_bayesperf", {**common, "spans": reduced, "noise_seed": noise})
            nv_red = run_child(
                "c1_naive", {**common, "spans": reduced, "priors": bp_red["resolved_priors"]}
            )
            runs.append({"size": reduced, "bayesperf": bp_red, "naive": nv_red})
    for run in runs:
        print(f"[1] default model, {run['size']:,} spans ...", file=sys.stderr, flush=True)
        # The naive model's chains and draws (the default draws exactly: no tuning).
        same = {"chains": sampler["chains"], "draws": sampler["draws"]}
        run["default"] = run_child(
            "default",
            {
                "pairs": pairs,
                "spans": run["size"],
                "seed": FIT_SEED,
                "sampler": same,
                "data_seed": SEED,
            },
        )
        run["default_time_ratio"] = run["naive"]["fit_s"] / run["default"]["total_s"]
    for run in runs:
        bp, nv = run["bayesperf"], run["naive"]
        run["time_ratio"] = nv["fit_s"] / bp["total_s"]
        run["vs_naive"] = compare(bp["p99"], nv["p99"], bp["n"], bp["labels"])
        run["noise_floor"] = (
            compare(bp["noise"]["p99"], bp["p99"], bp["n"], bp["labels"])
            if "noise" in bp
            else NO_COMPARISON
        )
    return {
        "bayesperf_full": bp_full,
        "runs": runs,
        "naive_expected_full_s": expected_full,
        "naive_per_span_sample_s": per_span,
        "naive_fixed_s": fixed,
        "reduced_size": reduced,
        "note": note,
    }


def run_case2(sizes: dict, sampler: dict) -> dict:
    """Case 2 driver."""
    print(
        f"[2] {sizes['c2_spans']:,} spans x {sizes['c2_pairs']} pairs ...",
        file=sys.stderr,
        flush=True,
    )
    out = run_child(
        "c2",
        {
            "spans": sizes["c2_spans"],
            "pairs": sizes["c2_pairs"],
            "seed": FIT_SEED,
            "samplers": {"defaults": {}, "light": sampler if sizes is QUICK else CASE2_LIGHT},
        },
    )
    print("[2] default model ...", file=sys.stderr, flush=True)
    out["default"] = run_child(
        "default",
        {
            "spans": sizes["c2_spans"],
            "pairs": sizes["c2_pairs"],
            "seed": FIT_SEED,
            "sampler": {},
            "data_seed": SEED + 2,
        },
    )
    return out


def run_case3(sizes: dict, sampler: dict) -> dict:
    """Case 3 driver: three families, binning cost, naive gamma reference."""
    out: dict[str, Any] = {"families": {}}
    for family in ("lognormal", "gamma", "weibull"):
        print(f"[3] {family} ...", file=sys.stderr, flush=True)
        out["families"][family] = run_child(
            "c3_family",
            {
                "family": family,
                "pairs": sizes["c3_pairs"],
                "per_pair": sizes["c3_spans"],
                "seed": FIT_SEED,
                "sampler": sampler,
                "noise": sizes["noise"],
            },
        )
    ln = out["families"]["lognormal"]
    out["binning_cost"] = compare(ln["binned"]["p99"], ln["p99"])
    out["binning_noise_floor"] = (
        compare(ln["noise"]["p99"], ln["p99"]) if "noise" in ln else NO_COMPARISON
    )
    print("[3] gamma: binned vs per-observation ...", file=sys.stderr, flush=True)
    g = run_child(
        "c3_gamma_naive",
        {
            "pairs": sizes["c3_naive_pairs"],
            "per_pair": sizes["c3_naive_spans"],
            "seed": FIT_SEED,
            "sampler": sampler,
            "noise": sizes["noise"],
        },
    )
    g["vs_naive"] = compare(g["bayesperf"]["p99"], g["naive"]["p99"])
    g["noise_floor"] = (
        compare(g["noise"]["p99"], g["bayesperf"]["p99"]) if "noise" in g else NO_COMPARISON
    )
    out["gamma_naive"] = g
    return out


# ==================================================================== report
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _diag(d: dict) -> str:
    ess = f"{d['ess_bulk_min']:.0f} / {d['ess_tail_min']:.0f}"
    return f"{d['r_hat_max']:.3f} / {ess} / {d['divergences']}"


def report_case1(r: dict) -> str:
    """Markdown tables of case 1."""
    lines = [
        "### 1. bayesperf vs naive per-observation PyMC (lognormal)",
        "",
        "| spans | pairs | model | summarize s | fit s (compile + sample + other) | total s "
        "| R-hat max / ESS bulk min / ESS tail min / div | peak MB |",
        "|---:|---:|---|---:|---|---:|---|---:|",
    ]
    shown = {id(run["bayesperf"]) for run in r["runs"]}
    rows = [(run["size"], "bayesperf", run["bayesperf"]) for run in r["runs"]]
    rows += [(run["size"], "naive PyMC", run["naive"]) for run in r["runs"]]
    if id(r["bayesperf_full"]) not in shown:
        rows.append((r["bayesperf_full"]["spans"], "bayesperf", r["bayesperf_full"]))
    for size, name, x in sorted(rows, key=lambda t: (t[0], t[1])):
        summ = f"{x['summarize_s']:.2f}" if "summarize_s" in x else "-"
        total = x.get("total_s", x["fit_s"])
        lines.append(
            f"| {size:,} | {x['pairs']} | {name} | {summ} | {x['fit_s']:.1f} "
            f"({x['compile_s']:.1f} + {x['sample_s']:.1f} "
            f"+ {x['fit_s'] - x['compile_s'] - x['sample_s']:.1f}) "
            f"| {total:.1f} | {_diag(x['diag'])} | {x['peak_rss'] / 1e6:,.0f} |"
        )
    lines += [
        "",
        "| spans | time ratio naive / bayesperf | P99 median: max rel diff (pair, n) "
        "| same, pairs n >= 1000 | 90% width: max rel diff (pair, n) | same, pairs n >= 1000 "
        "| noise floor (bayesperf seed 7 vs 8): median / width, all pairs | same, n >= 1000 |",
        "|---:|---:|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        c, f = run["vs_naive"], run["noise_floor"]
        lines.append(
            f"| {run['size']:,} | {run['time_ratio']:.1f}x "
            f"| {_pct(c['median_all']['max'])} "
            f"({c['median_all']['at']}, n={c['median_all']['n_at']}) "
            f"| {_pct(c['median_rich']['max'])} "
            f"| {_pct(c['width_all']['max'])} ({c['width_all']['at']}, n={c['width_all']['n_at']}) "
            f"| {_pct(c['width_rich']['max'])} "
            f"| {_pct(f['median_all']['max'])} / {_pct(f['width_all']['max'])} "
            f"| {_pct(f['median_rich']['max'])} / {_pct(f['width_rich']['max'])} |"
        )
    lines += [
        "",
        "Default model (nonparametric, exact draws; the naive model's chains and draws):",
        "",
        "| spans | summarize s | fit s | summarize + fit s | summary() s "
        "| time ratio naive / default | R-hat max / ESS bulk min / ESS tail min / div |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in r["runs"]:
        d = run["default"]
        lines.append(
            f"| {run['size']:,} | {d['summarize_s']:.2f} | {d['fit_s']:.2f} | {d['total_s']:.2f} "
            f"| {d['summary_s']:.2f} | {run['default_time_ratio']:.0f}x | {_diag(d['diag'])} |"
        )
    lines += ["", f"Naive model: {r['note']}."]
    if r["reduced_size"] is not None:
        bp = r["bayesperf_full"]
        ratio = r["naive_expected_full_s"] / bp["total_s"]
        lines.append(
            f"Extrapolated ratio at {bp['spans']:,} spans: {r['naive_expected_full_s']:.0f} s / "
            f"{bp['total_s']:.1f} s = {ratio:.0f}x "
            f"(naive sampling {1e6 * r['naive_per_span_sample_s']:.2f} "
            f"µs per span, {r['naive_fixed_s']:.0f} s fixed)."
        )
    return "\n".join(lines)


def _sampler_text(sampler: dict) -> str:
    if not sampler:
        return "model defaults (4 chains, 1,000 + 1,000, target_accept 0.9)"
    if set(sampler) >= {"chains", "tune", "draws", "target_accept"}:
        return (
            f"{sampler['chains']} chains, {sampler['tune']:,} + {sampler['draws']:,}, "
            f"target_accept {sampler['target_accept']}"
        )
    return "model defaults with " + ", ".join(f"{k}={v}" for k, v in sampler.items())


def report_case2(r: dict) -> str:
    """Markdown table of case 2."""
    lines = [
        f"### 2. {r['spans']:,} spans x {r['pairs']:,} pairs "
        f"(pair sizes {r['min_pair_n']:,}-{r['max_pair_n']:,})",
        "",
        "| sampler | summarize s | fit s | of which compile | sample | other "
        "| summarize + fit s | R-hat max / ESS bulk min / ESS tail min / div |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for fit in r["fits"].values():
        lines.append(
            f"| {_sampler_text(fit['sampler'])} | {r['summarize_s']:.2f} | {fit['fit_s']:.1f} "
            f"| {fit['compile_s']:.1f} | {fit['sample_s']:.1f} | {fit['other_s']:.1f} "
            f"| {fit['total_s']:.1f} | {_diag(fit['diag'])} |"
        )
    d = r["default"]
    lines.append(
        f"| default model (nonparametric, {d['draws']:,} exact draws) | {d['summarize_s']:.2f} "
        f"| {d['fit_s']:.1f} | - | - | - | {d['total_s']:.1f} | {_diag(d['diag'])} |"
    )
    lines += [
        "",
        f"Default model: summary() of every pair {d['summary_s']:.1f} s; "
        f"peak RSS {d['peak_rss'] / 1e6:,.0f} MB.",
        "",
        f"Span table {r['table_bytes'] / 1e6:,.0f} MB; peak RSS {r['peak_rss'] / 1e6:,.0f} MB "
        f"(after imports {r['rss_after_imports'] / 1e6:,.0f} MB, with the span table "
        f"{r['rss_with_table'] / 1e6:,.0f} MB). Generation (not timed) {r['generate_s']:.1f} s.",
    ]
    return "\n".join(lines)


def report_case3(r: dict) -> str:
    """Markdown tables of case 3."""
    lines = [
        "### 3. Families: exact lognormal vs binned gamma / weibull (P99 vs truth)",
        "",
        "| family | likelihood | spans | cells | fit s (compile + sample) "
        "| R-hat / ESS bulk / ESS tail / div "
        "| median abs err P99 | max abs err P99 | empirical P99 median / max abs err "
        "| 90% coverage "
        "| median rel 90% width |",
        "|---|---|---:|---:|---|---|---:|---:|---|---:|---:|",
    ]
    for fam, x in r["families"].items():
        rows = [(x["likelihood"], x)]
        if "binned" in x:
            rows.append(("binned", {**x["binned"], "cells": x["cells"]}))
        for lik, y in rows:
            lines.append(
                f"| {fam} | {lik} | {x['spans']:,} | {y['cells'] if lik == 'binned' else '-'} "
                f"| {y['fit_s']:.1f} ({y['compile_s']:.1f} + {y['sample_s']:.1f}) "
                f"| {_diag(y['diag'])} "
                f"| {_pct(y['p99_abs_err_median'])} | {_pct(y['p99_abs_err_max'])} "
                f"| {_pct(y['empirical_abs_err_median'])} / {_pct(y['empirical_abs_err_max'])} "
                f"| {100 * y['coverage90']:.0f}% | {_pct(y['width_rel_median'])} |"
            )
    b, f = r["binning_cost"], r["binning_noise_floor"]
    g = r["gamma_naive"]
    c, gf = g["vs_naive"], g["noise_floor"]
    lines += [
        "",
        "| comparison | P99 median: max (median) rel diff | 90% width: max (median) rel diff "
        "| noise floor (other seed): median / width max |",
        "|---|---|---|---|",
        "| binning cost: lognormal binned vs exact "
        f"({r['families']['lognormal']['spans']:,} spans) "
        f"| {_pct(b['median_all']['max'])} ({_pct(b['median_all']['median'])}) "
        f"| {_pct(b['width_all']['max'])} ({_pct(b['width_all']['median'])}) "
        f"| {_pct(f['median_all']['max'])} / {_pct(f['width_all']['max'])} |",
        "| gamma: bayesperf binned vs per-observation PyMC "
        f"({g['pairs']} x {g['spans'] // g['pairs']}) "
        f"| {_pct(c['median_all']['max'])} ({_pct(c['median_all']['median'])}) "
        f"| {_pct(c['width_all']['max'])} ({_pct(c['width_all']['median'])}) "
        f"| {_pct(gf['median_all']['max'])} / {_pct(gf['width_all']['max'])} |",
        "",
        f"Gamma timing: bayesperf binned {g['bayesperf']['fit_s']:.1f} s "
        f"(compile {g['bayesperf']['compile_s']:.1f}), naive {g['naive']['fit_s']:.1f} s "
        f"(compile {g['naive']['compile_s']:.1f}); "
        f"diagnostics bayesperf {_diag(g['bayesperf']['diag'])}, "
        f"naive {_diag(g['naive']['diag'])}.",
    ]
    return "\n".join(lines)


def verdicts(results: dict) -> str:
    """One line per target: met or not, with the measured value."""
    lines = ["### Targets", ""]
    if "case1" in results:
        r = results["case1"]
        full = [run for run in r["runs"] if run["size"] == r["bayesperf_full"]["spans"]]
        run = full[0] if full else r["runs"][-1]
        where = "" if full else f" (measured at {run['size']:,} spans, not 10^6)"
        lines += [
            f"- time ratio >= 50x: {run['time_ratio']:.1f}x{where} -> "
            f"{'MET' if run['time_ratio'] >= 50 else 'NOT MET'}",
            f"- default model >= 50x faster than naive: {run['default_time_ratio']:.0f}x{where} -> "
            f"{'MET' if run['default_time_ratio'] >= 50 else 'NOT MET'}",
            "- P99 median max rel diff <= 1%: "
            f"{_pct(run['vs_naive']['median_all']['max'])} all pairs, "
            f"{_pct(run['vs_naive']['median_rich']['max'])} pairs with n >= 1000 "
            f"(noise floor {_pct(run['noise_floor']['median_all']['max'])} / "
            f"{_pct(run['noise_floor']['median_rich']['max'])})",
            "- P99 90% width max rel diff <= 5%: "
            f"{_pct(run['vs_naive']['width_all']['max'])} all pairs, "
            f"{_pct(run['vs_naive']['width_rich']['max'])} pairs with n >= 1000 "
            f"(noise floor {_pct(run['noise_floor']['width_all']['max'])} / "
            f"{_pct(run['noise_floor']['width_rich']['max'])})",
        ]
    if "case2" in results:
        r = results["case2"]
        for name, fit in r["fits"].items():
            d = fit["diag"]
            converged = (
                d["r_hat_max"] <= 1.01
                and min(d["ess_bulk_min"], d["ess_tail_min"]) >= 400
                and d["divergences"] == 0
            )
            lines.append(
                f"- 10^7 summarize + fit <= 20 s ({name}: {_sampler_text(fit['sampler'])}): "
                f"{fit['total_s']:.1f} s -> {'MET' if fit['total_s'] <= 20 else 'NOT MET'}, "
                f"{'converged' if converged else 'NOT converged'}"
                f" (peak RSS {r['peak_rss'] / 1e6:,.0f} MB)"
            )
        d = r["default"]
        lines.append(
            f"- 10^7 summarize + fit <= 20 s (default model): {d['total_s']:.1f} s -> "
            f"{'MET' if d['total_s'] <= 20 else 'NOT MET'}"
        )
    return "\n".join(lines)


def provenance(obj: Any) -> str:
    """The library hashes (and source-change warnings) found in a case's child results."""
    found: set[str] = set()
    warned = False

    def walk(x: Any) -> None:
        nonlocal warned
        if isinstance(x, dict):
            if isinstance(x.get("library"), str):
                found.add(x["library"])
            warned = warned or "warning" in x
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(obj)
    note = " — sources changed DURING a case" if warned else ""
    return f"bayesperf model sources {', '.join(sorted(found))}{note}"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", type=int, choices=(1, 2, 3), default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (< 2 minutes)")
    parser.add_argument("--run-case", nargs=2, metavar=("CASE", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_case:
        case, params = args.run_case
        fingerprint = library_fingerprint()  # before the case imports the models
        result = CHILD_CASES[case](json.loads(params))
        if library_fingerprint() != fingerprint:
            result["warning"] = "bayesperf model sources changed while the case ran"
        print(json.dumps({**result, "library": fingerprint}))
        return 0

    sizes, sampler = (QUICK, QUICK_SAMPLER) if args.quick else (FULL, SAMPLER)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"quick": args.quick, "sizes": sizes, "sampler": sampler}
    previous: dict[str, Any] = {}
    if not args.quick and RESULT_FILE.exists():  # keep the cases not run this time
        previous = json.loads(RESULT_FILE.read_text())
        if previous.get("quick"):
            previous = {}
    runners = {1: run_case1, 2: run_case2, 3: run_case3}
    reporters = {1: report_case1, 2: report_case2, 3: report_case3}
    sections = []
    for case in sorted(set(args.only)):
        results[f"case{case}"] = runners[case](sizes, sampler)
        results[f"case{case}"]["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        sections.append(
            reporters[case](results[f"case{case}"])
            + f"\n\nMeasured {results[f'case{case}']['measured_at']}, "
            + provenance(results[f"case{case}"])
            + "."
        )
        print(sections[-1] + "\n", flush=True)
    results["wall_s"] = time.perf_counter() - t0
    sections.append(verdicts(results))
    print(sections[-1])
    if args.quick:  # a smoke test: never overwrite measured results
        print(f"\n--quick: {results['wall_s']:.0f} s, nothing written", file=sys.stderr)
        return 0
    kept = {k: v for k, v in previous.items() if k.startswith("case") and k not in results}
    results = {**results, **kept}
    OUT.mkdir(exist_ok=True)
    RESULT_FILE.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {RESULT_FILE} ({results['wall_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
