"""Real-data predictive benchmark: do P99 intervals predict held-out real traces?

For each dataset the traces are split in two halves by a hash of the trace id
(:func:`bayesperf.analysis.holdout.split_traces`, salts 0, 1, ...). A model is fit on
one half; for every (caller, callee) pair with at least 20 spans in the other half it
predicts the empirical P99 of that many new spans (per posterior draw ``F⁻¹(u)``,
``u ~ Beta(k, n - k + 1)``, ``k = ⌈0.99 n⌉``). Reported per dataset and pooled:

- coverage: the share of pairs whose held-out empirical P99 lies in the 90% interval;
- point error: the median ``|log(predicted median / held-out P99)|``, beside the same
  error of the fitted half's own empirical P99 (what trace tools show);
- the same for pairs with fewer than 100 spans in the fitted half.

Regimes: ``half`` is the protocol above. ``sparse`` fits on a random 10% of the fitted
half's traces (the same held-out half), which turns most pairs sparse: it is where a
model must lean on what pairs share, and the only place the real datasets have many
pairs under 100 spans.

Usage::

    python benchmarks/realdata.py                      # 10 splits, both models
    python benchmarks/realdata.py --splits 3 --models nonparametric
    python benchmarks/realdata.py --quick              # 2 splits, default model only

Prints markdown tables; writes ``benchmarks/out/realdata.json`` (not with ``--quick``).
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

import bayesperf
from bayesperf.analysis.holdout import holdout_check, split_traces
from bayesperf.models import ConvergenceWarning, LatencyModel

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"
DATASETS = {
    "Online Boutique (fault-free minute)": (
        "nezha-onlineboutique/fault_free/2022-08-23_17_00_trace.csv",
        {"format": "span-csv", "preset": "nezha"},
    ),
    "hotel-reservation, load 25": ("jaeger-hotel-reservation/hotel_load25.json", {}),
    "hotel-reservation, load 100": ("jaeger-hotel-reservation/hotel_load100.json", {}),
}
MODELS = {
    "nonparametric": {},  # the default
    "lognormal": {"family": "lognormal"},  # the default before it
}
SPARSE_FRACTION = 0.1
SMALL = 100


def thin(spans: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A random ``fraction`` of the traces of ``spans`` (at least two)."""
    ids = spans["trace_id"].unique()
    rng = np.random.default_rng(seed)
    keep = rng.choice(ids, size=max(2, int(fraction * len(ids))), replace=False)
    return spans[spans["trace_id"].isin(keep)]


def run(dataset: str, spans: pd.DataFrame, model: str, regime: str, salt: int) -> pd.DataFrame:
    """One split: fit, check, and return the per-pair table with run labels."""
    fit_half, test_half = split_traces(spans, salt=salt)
    if regime == "sparse":
        fit_half = thin(fit_half, SPARSE_FRACTION, seed=1000 + salt)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fitted = LatencyModel(**MODELS[model]).fit(fit_half, random_seed=salt, progressbar=False)
    fit_s = time.perf_counter() - t0
    table = holdout_check(fitted, test_half, fit_half, random_seed=salt)
    table = table.reset_index().rename(columns={"index": "pair"})
    table["pair"] = [f"{a} → {b}" for a, b in zip(table["caller"], table["callee"], strict=True)]
    table = table.drop(columns=["caller", "callee"])
    table["dataset"], table["model"], table["regime"], table["salt"] = dataset, model, regime, salt
    table["fit_s"] = fit_s
    table["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return table


def summarise(rows: pd.DataFrame) -> dict:
    """Coverage and point errors of a set of (pair, split) checks."""
    small = rows[rows["n_fit"] < SMALL]
    return {
        "checks": len(rows),
        "coverage": float(rows["covered"].mean()),
        "error": float(rows["log_error"].median()),
        "empirical_error": float(rows["empirical_log_error"].median()),
        "coverage_per_split": rows.groupby("salt")["covered"].mean().round(3).tolist(),
        "small_checks": len(small),
        "small_coverage": float(small["covered"].mean()) if len(small) else None,
        "small_error": float(small["log_error"].median()) if len(small) else None,
        "small_empirical_error": float(small["empirical_log_error"].median())
        if len(small)
        else None,
        "fit_s_median": float(rows.groupby("salt")["fit_s"].first().median()),
        "all_converged": bool(rows["converged"].all()),
    }


def report(results: dict) -> str:
    """Markdown tables: one row per (regime, model, dataset) plus pooled."""
    lines = []
    for regime, by_model in results.items():
        title = (
            "fit on half the traces"
            if regime == "half"
            else (f"fit on {SPARSE_FRACTION:.0%} of that half's traces (sparse pairs)")
        )
        lines += [
            f"### {title}",
            "",
            "| model | dataset | checks | coverage (90% nominal) | per split "
            "| median abs log error: model / fitted half's empirical P99 "
            f"| pairs n < {SMALL}: checks, coverage, error model / empirical | fit s | converged |",
            "|---|---|---:|---:|---|---|---|---:|---|",
        ]
        for model, by_dataset in by_model.items():
            for dataset, x in by_dataset.items():
                small = (
                    f"{x['small_checks']}, {x['small_coverage']:.2f}, "
                    f"{x['small_error']:.3f} / {x['small_empirical_error']:.3f}"
                    if x["small_checks"]
                    else "0"
                )
                lines.append(
                    f"| {model} | {dataset} | {x['checks']} | {x['coverage']:.3f} "
                    f"| {', '.join(f'{c:.2f}' for c in x['coverage_per_split'])} "
                    f"| {x['error']:.3f} / {x['empirical_error']:.3f} | {small} "
                    f"| {x['fit_s_median']:.1f} | {'yes' if x['all_converged'] else 'NO'} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=10, help="salts 0 .. splits-1")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--regimes", nargs="+", choices=("half", "sparse"), default=["half", "sparse"]
    )
    parser.add_argument("--quick", action="store_true", help="2 splits, default model only")
    args = parser.parse_args(argv)
    if args.quick:
        args.splits, args.models = 2, ["nonparametric"]
    if not DATA.is_dir():
        print(f"real traces not found at {DATA}", file=sys.stderr)
        return 2
    loaded = {
        name: bayesperf.read_traces(DATA / path, **options)
        for name, (path, options) in DATASETS.items()
    }
    rows = []
    for regime in args.regimes:
        for model in args.models:
            for dataset, spans in loaded.items():
                print(f"{regime} / {model} / {dataset} ...", file=sys.stderr, flush=True)
                for salt in range(args.splits):
                    rows.append(run(dataset, spans, model, regime, salt))
    table = pd.concat(rows, ignore_index=True)
    results: dict = {}
    for (regime, model), part in table.groupby(["regime", "model"], sort=False):
        by_dataset = {d: summarise(x) for d, x in part.groupby("dataset", sort=False)}
        by_dataset["pooled"] = summarise(part)
        results.setdefault(regime, {})[model] = by_dataset
    text = report(results)
    print(text)
    if not args.quick:
        OUT.mkdir(exist_ok=True)
        payload = {
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "splits": args.splits,
            "results": results,
            "checks": json.loads(table.to_json(orient="records")),
        }
        (OUT / "realdata.json").write_text(json.dumps(payload, indent=1))
        print(f"wrote {OUT / 'realdata.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
