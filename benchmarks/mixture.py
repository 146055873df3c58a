"""Mixture-model benchmark: fit time, convergence and accuracy of ``MixtureModel``.

Usage::

    python benchmarks/mixture.py           # full sizes
    python benchmarks/mixture.py --quick   # tiny sizes: checks the script works

Cases
    1. 10^6 spans from a 3-component lognormal mixture (weights 0.6/0.3/0.1, medians
       1/8/60 ms): ``summarize_latency`` + ``MixtureModel(3).fit`` (nutpie, 2 chains,
       1,000 + 1,000 draws, the model's other defaults). R-hat / ESS / divergences, and
       a label-switching check: per-chain posterior means of the locations must be
       increasing and agree across chains.
    2. 10^5 spans of the same mixture: bayesperf (binned) against a naive
       per-observation PyMC ``NormalMixture`` on log latency with the same priors
       (bayesperf's resolved ones), ordered locations, initial values and sampler
       settings. Reports the time ratio and the largest relative difference of the
       posterior means of component medians and weights.

Times include compilation. Prints markdown and writes ``benchmarks/out/mixture.json``
(``--quick`` writes nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out"
SEED = 20261126
SAMPLER = {"draws": 1000, "tune": 1000, "chains": 2, "progressbar": False}
QUICK_SAMPLER = {"draws": 200, "tune": 200, "chains": 2, "progressbar": False}
WEIGHTS = np.array([0.6, 0.3, 0.1])
MEDIANS = np.array([1.0, 8.0, 60.0])
SIGMAS = np.array([0.3, 0.25, 0.2])


def spans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, n])
    z = rng.choice(3, size=n, p=WEIGHTS)
    y = np.exp(np.log(MEDIANS[z]) + SIGMAS[z] * rng.standard_normal(n))
    return pd.DataFrame({"latency": y})


def diag(idata) -> dict:
    from bayesperf.diagnostics import diagnose

    table = diagnose(idata)
    return {
        "r_hat_max": float(table["r_hat_max"].max()),
        "r_hat_location": float(table.loc["location", "r_hat_max"]),
        "ess_bulk_min": float(table["ess_bulk_min"].min()),
        "ess_tail_min": float(table["ess_tail_min"].min()),
        "divergences": int(table["divergences"].max()),
    }


def label_switching(idata) -> dict:
    per_chain = idata.posterior["location"].mean("draw").to_numpy()  # (chain, K)
    return {
        "ordered_in_every_chain": bool(np.all(np.diff(per_chain, axis=1) > 0)),
        "max_chain_disagreement_log_ms": float(np.ptp(per_chain, axis=0).max()),
    }


def n_cells(model) -> int:
    from bayesperf.models.latency import _FitData

    return int(_FitData.from_summary(model.fit_summary).cell_count.size)


def posterior_means(idata) -> dict:
    post = idata.posterior
    w = post["weights"]
    return {
        "median_ms": np.exp(post["location"]).mean(("chain", "draw")).to_numpy().tolist(),
        "weight": w.mean(("chain", "draw")).to_numpy().tolist(),
    }


def fit_bayesperf(data: pd.DataFrame, sampler: dict):
    from bayesperf import summarize_latency
    from bayesperf.models.mixture import MixtureModel

    t0 = time.perf_counter()
    summary = summarize_latency(data, by=None)
    t_sum = time.perf_counter() - t0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        model = MixtureModel(3).fit(summary, random_seed=7, **sampler)
        t_fit = time.perf_counter() - t0
    warned = sorted({str(w.message)[:120] for w in caught if "Convergence" in str(w.category)})
    return model, {"summarize_s": t_sum, "fit_s": t_fit, "warnings": warned}


def fit_naive(data: pd.DataFrame, model, sampler: dict):
    """Per-observation NormalMixture on log latency, bayesperf's priors and start."""
    import pymc as pm

    from bayesperf.models.latency import _FitData
    from bayesperf.models.mixture import _em_start, _pooled

    priors = json.loads(model.idata.attrs["resolved_priors"])
    fit = _FitData.from_summary(model.fit_summary)
    mu0, sd0, w0 = _em_start(fit, _pooled(model.fit_summary, fit), 3)
    log_y = np.log(data["latency"].to_numpy())
    t0 = time.perf_counter()
    with pm.Model(coords={"component": np.arange(3)}):
        location = pm.Normal(
            "location",
            priors["location_mean"],
            priors["location_sd"],
            dims="component",
            transform=pm.distributions.transforms.ordered,
        )
        sigma = pm.LogNormal(
            "sigma", np.log(priors["sigma_median"]), priors["sigma_log_sd"], dims="component"
        )
        weights = pm.Dirichlet("weights", np.full(3, priors["weight_concentration"]))
        pm.NormalMixture("log_y", w=weights, mu=location, sigma=sigma, observed=log_y)
        idata = pm.sample(
            random_seed=7,
            nuts_sampler="nutpie",
            initvals={"location": mu0, "sigma": sd0, "weights": w0},
            compile_kwargs={"jitter_rvs": set()},
            compute_convergence_checks=False,
            target_accept=0.98,
            **sampler,
        )
    return idata, {"fit_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sampler = QUICK_SAMPLER if args.quick else SAMPLER
    big, small = (20_000, 5_000) if args.quick else (1_000_000, 100_000)
    results: dict = {
        "sampler": sampler,
        "truth": {"weights": WEIGHTS.tolist(), "medians_ms": MEDIANS.tolist()},
    }

    data = spans(big, SEED)
    model, timing = fit_bayesperf(data, sampler)
    results["case1"] = {
        "spans": big,
        "cells": n_cells(model),
        **timing,
        "total_s": timing["summarize_s"] + timing["fit_s"],
        **diag(model.idata),
        **label_switching(model.idata),
        **posterior_means(model.idata),
    }
    r = results["case1"]
    print(f"### 1. {big:,} spans ({r['cells']} fitting cells), K=3\n")
    print(
        "| summarize s | fit s | R-hat max (location) | ESS bulk / tail min | div "
        "| ordered per chain | chain disagreement (ln ms) |"
    )
    print("|---:|---:|---|---|---:|---|---:|")
    print(
        f"| {r['summarize_s']:.2f} | {r['fit_s']:.1f} | {r['r_hat_max']:.3f} "
        f"({r['r_hat_location']:.3f}) | {r['ess_bulk_min']:.0f} / {r['ess_tail_min']:.0f} "
        f"| {r['divergences']} | {r['ordered_in_every_chain']} "
        f"| {r['max_chain_disagreement_log_ms']:.4f} |"
    )
    print(
        f"\nposterior means: medians {np.round(r['median_ms'], 3).tolist()} ms, weights "
        f"{np.round(r['weight'], 4).tolist()}; warnings: {r['warnings'] or 'none'}\n",
        flush=True,
    )

    data = spans(small, SEED + 1)
    model, timing = fit_bayesperf(data, sampler)
    idata, naive_timing = fit_naive(data, model, sampler)
    mine, theirs = posterior_means(model.idata), posterior_means(idata)
    rel = {
        key: float(np.max(np.abs(np.array(mine[key]) / np.array(theirs[key]) - 1)))
        for key in ("median_ms", "weight")
    }
    results["case2"] = {
        "spans": small,
        "bayesperf": {**timing, **diag(model.idata), **mine},
        "naive": {**naive_timing, **diag(idata), **theirs},
        "time_ratio": naive_timing["fit_s"] / (timing["summarize_s"] + timing["fit_s"]),
        "max_rel_diff": rel,
    }
    r = results["case2"]
    print(f"### 2. {small:,} spans: binned bayesperf vs per-observation NormalMixture\n")
    print("| | fit s | R-hat max | ESS bulk min | div | medians (ms) | weights |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name in ("bayesperf", "naive"):
        x = r[name]
        print(
            f"| {name} | {x['fit_s']:.1f} | {x['r_hat_max']:.3f} | {x['ess_bulk_min']:.0f} "
            f"| {x['divergences']} | {np.round(x['median_ms'], 3).tolist()} "
            f"| {np.round(x['weight'], 4).tolist()} |"
        )
    print(
        f"\ntime ratio {r['time_ratio']:.1f}x; max rel diff of component medians "
        f"{100 * rel['median_ms']:.2f}%, of weights {100 * rel['weight']:.2f}%"
    )
    if not args.quick:
        OUT.mkdir(exist_ok=True)
        results["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        (OUT / "mixture.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
