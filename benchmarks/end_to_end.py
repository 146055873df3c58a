"""End-to-end request model: held-out accuracy, fault counterfactuals and speed, on real traces.

Usage::

    python benchmarks/end_to_end.py heldout [--splits 5] [--latency nonparametric lognormal]
    python benchmarks/end_to_end.py counterfactual [--latency nonparametric lognormal]
    python benchmarks/end_to_end.py speed [--quick]
    python benchmarks/end_to_end.py simulated [--splits 20]
    python benchmarks/end_to_end.py all --json out.json

heldout
    Per dataset, the traces are split in halves by trace id (``--splits`` random splits,
    fixed seeds). ``RequestModel`` is fit on one half; on the other, every entry point
    with at least 50 requests gets the 90% predictive interval of its empirical P50,
    P95 and P99 (order statistics; :meth:`RequestModel.predictive_check`). Reported:
    coverage (target 0.85-0.95) and MAPE of the predicted (posterior median) quantiles
    (target <= 10% on P50 and P95). The same check on every node type that calls
    others (its spans' durations: the composition of its subtree) is reported beside
    it, as ``subtrees``. Datasets: the Online Boutique fault-free minute (Nezha), the
    fault-day traces recorded before each injection, DeathStarBench hotel at load 25
    and 100.
counterfactual
    Nezha Online Boutique fault minutes: the model is fit on the fault-day traces before
    the injections; for each injected fault, the faulty service's self times during the
    fault replace its self-time distributions (``what_if(replace=...)``) and the entry
    point's P50/P95/P99 are predicted and compared with what was observed during the
    fault, beside the "nothing changed" baseline (the model as fit).
simulated
    The held-out check above on traces from our own generator, beside the real figure:
    per seed, a random 10-service call graph (lognormal, gamma and Weibull edges), 1,000
    traces split in halves, the model fit on one half and checked on the other; and
    whether its 90% credible intervals hold the graph's true P50/P95/P99 (from 200,000
    traces). It can only show that the model recovers what the generator assumes.
    ``--extra-edges 0`` draws trees: every service has one caller. By default (0.3)
    some services have several callers, each edge with its own latency law, which the
    model's one self-time law per (service, operation) does not follow.
speed
    A random 50-service call graph (``bayesperf.simulate.random_call_graph``):
    ``RequestModel`` fit (call structure, self-time model with 2 chains x 100 draws)
    plus 10,000 simulated requests per posterior draw for 200 draws, against the
    per-pair ``LatencyModel`` fit on the same spans (today's cost) as the baseline in
    the same run. Then how simulation cost grows with services and with tree depth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SEED = 20261206
SAMPLER = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False}
MIN_REQUESTS = 50


# ================================================================= data
def _spans(path: Path | list[Path]):
    import bayesperf

    return bayesperf.read_traces(path)


def _roots(spans: pd.DataFrame) -> pd.DataFrame:
    return spans[spans["parent_id"].isna()]


def fault_day() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fault-day spans and the faults whose injection they recorded."""
    from bayesperf.datasets.nezha import fault_windows

    fault_dir = DATA / "nezha-onlineboutique" / "fault"
    spans = _spans(sorted(fault_dir.glob("*_trace.csv")))
    first, last = spans["start_time"].min(), spans["start_time"].max()
    windows = fault_windows(fault_dir / "2022-08-22-fault_list.json")
    return spans, windows[(windows["start"] > first) & (windows["start"] < last)]


def trace_start(spans: pd.DataFrame) -> pd.Series:
    """Start of each span's trace (its root's start)."""
    start = spans.groupby("trace_id", sort=False)["start_time"].transform("min")
    return start


def before_faults(spans: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Traces that started before any injection and after the previous fault's end."""
    start = trace_start(spans)
    faulty = np.zeros(len(spans), bool)
    for w in windows.itertuples():
        # Everything from an injection to the next recorded episode is affected.
        faulty |= ((start >= w.start) & (start < w.end + pd.Timedelta("5min"))).to_numpy()
    return spans[~faulty]


def datasets() -> dict[str, pd.DataFrame]:
    ob = DATA / "nezha-onlineboutique"
    out = {"ob-fault-free": _spans(ob / "fault_free" / "2022-08-23_17_00_trace.csv")}
    day, windows = fault_day()
    out["ob-fault-day-before"] = before_faults(day, windows)
    for load in (25, 100):
        out[f"hotel-load{load}"] = _spans(
            DATA / "jaeger-hotel-reservation" / f"hotel_load{load}.json"
        )
    return out


def split(spans: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Halves by trace id (random, seeded)."""
    ids = np.sort(spans["trace_id"].unique())
    rng = np.random.default_rng([SEED, seed])
    fit_ids = set(rng.permutation(ids)[: len(ids) // 2])
    in_fit = spans["trace_id"].isin(fit_ids).to_numpy()
    return spans[in_fit], spans[~in_fit]


def fit(spans: pd.DataFrame, latency: str, seed: int):
    from bayesperf import RequestModel
    from bayesperf.models import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RequestModel(latency).fit(spans, random_seed=seed, **SAMPLER)
    return model


# ================================================================= held-out
def heldout(latencies: list[str], n_splits: int) -> dict[str, Any]:
    rows = []
    for name, spans in datasets().items():
        for s in range(n_splits):
            train, test = split(spans, s)
            for latency in latencies:
                t0 = time.perf_counter()
                model = fit(train, latency, SEED + s)
                for level, check in (
                    ("entry", model.predictive_check(test, min_requests=MIN_REQUESTS)),
                    (
                        "subtrees",
                        model.predictive_check(
                            test, min_requests=MIN_REQUESTS, spans=True, n_requests=2000
                        ),
                    ),
                ):
                    frame = check.reset_index().assign(
                        dataset=name, split=s, latency=latency, level=level
                    )
                    rows.append(frame)
                print(
                    f"  {name} split {s} {latency}: {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    table = pd.concat(rows, ignore_index=True)
    table["ape"] = table["error"].abs()
    return {"rows": table}


def heldout_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset/entry point and overall: n, coverage and MAPE per quantile."""
    out = {}
    entry = table[table["level"] == "entry"]
    per = entry.pivot_table(
        index=["latency", "dataset", "service", "operation"],
        columns="quantile",
        values=["covered", "ape"],
        aggfunc="mean",
    )
    per.columns = [f"{'coverage' if a == 'covered' else 'MAPE'} {q}" for a, q in per.columns]
    per.insert(0, "n", entry.groupby(["latency", "dataset", "service", "operation"])["n"].mean())
    out["entry points"] = per
    for level in ("entry", "subtrees"):
        part = table[table["level"] == level]
        overall = part.pivot_table(
            index="latency", columns="quantile", values=["covered", "ape"], aggfunc="mean"
        )
        overall.columns = [
            f"{'coverage' if a == 'covered' else 'MAPE'} {q}" for a, q in overall.columns
        ]
        overall.insert(0, "checks", part.groupby("latency").size())
        out[f"overall ({level})"] = overall
    subtrees = table[table["level"] == "subtrees"]
    out["subtrees by dataset"] = subtrees.pivot_table(
        index=["latency", "dataset"], columns="quantile", values="covered", aggfunc="mean"
    )
    return out


# ============================================================ counterfactual
def simulated(latencies: list[str], n_seeds: int, extra_edges: float) -> dict[str, Any]:
    """Held-out and true-quantile coverage on simulated traces (one graph per seed)."""
    from bayesperf.simulate import random_call_graph, simulate_traces

    rows = []
    for s in range(n_seeds):
        graph = random_call_graph(
            10,
            random_seed=SEED + s,
            n_traces=1000,
            families=("lognormal", "gamma", "weibull"),
            extra_edges=extra_edges,
        )
        spans = simulate_traces(graph, 1000, random_seed=s, inclusive=True).spans
        big = simulate_traces(graph, 200_000, random_seed=10_000 + s, inclusive=True).spans
        truth = np.quantile(_roots(big)["latency"], [0.5, 0.95, 0.99])
        train, test = split(spans, s)
        for latency in latencies:
            model = fit(train, latency, SEED + s)
            check = model.predictive_check(test, min_requests=MIN_REQUESTS).reset_index()
            row = model.summary().iloc[0]
            check["true"] = truth
            check["true_covered"] = [
                row[f"{q}_lower"] <= t <= row[f"{q}_upper"]
                for q, t in zip(("p50", "p95", "p99"), truth, strict=True)
            ]
            rows.append(check.assign(seed=s, latency=latency))
        print(f"  seed {s}", file=sys.stderr, flush=True)
    table = pd.concat(rows, ignore_index=True)
    table["ape"] = table["error"].abs()
    return {"rows": table}


def simulated_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per self-time model and quantile: held-out coverage, MAPE, true-quantile coverage."""
    return table.pivot_table(
        index=["latency", "quantile"],
        values=["covered", "ape", "true_covered"],
        aggfunc="mean",
    ).rename(
        columns={
            "covered": "held-out coverage",
            "ape": "MAPE",
            "true_covered": "true quantile covered",
        }
    )


def counterfactual(latencies: list[str]) -> dict[str, Any]:
    from bayesperf.summaries.calls import summarize_calls

    spans, windows = fault_day()
    start = trace_start(spans)
    train = before_faults(spans, windows)
    rows = []
    for latency in latencies:
        model = fit(train, latency, SEED)
        for w in windows.itertuples():
            during = spans[((start >= w.start) & (start < w.end)).to_numpy()]
            if during["trace_id"].nunique() < MIN_REQUESTS:
                continue
            measured = summarize_calls(during).self_time
            faulty = measured.select([g for g in measured.groups if g[0] == w.service])
            scenario = model.scenario(replace={w.service: faulty})
            checks = {
                "nothing changed": model.predictive_check(during, min_requests=MIN_REQUESTS),
                "what-if": model.predictive_check(
                    during, min_requests=MIN_REQUESTS, scenario=scenario
                ),
            }
            for method, check in checks.items():
                rows.append(
                    check.reset_index().assign(
                        latency=latency,
                        fault=f"{w.service} {w.kind}",
                        method=method,
                        injected=str(w.start),
                    )
                )
    table = pd.concat(rows, ignore_index=True)
    table["ape"] = table["error"].abs()
    return {"rows": table}


def counterfactual_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.pivot_table(
        index=["latency", "fault", "quantile"],
        columns="method",
        values=["observed", "predicted", "lower", "upper", "covered", "ape"],
        aggfunc="first",
    )
    shown.columns = [f"{m}: {v}" for v, m in shown.columns]
    order = [
        f"{m}: {v}"
        for m in ("nothing changed", "what-if")
        for v in ("predicted", "lower", "upper", "covered", "ape")
    ]
    shown.insert(0, "observed", table.groupby(["latency", "fault", "quantile"])["observed"].first())
    return shown[["observed", *order]]


# ===================================================================== speed
def speed(quick: bool) -> dict[str, Any]:
    from bayesperf import LatencyModel, RequestModel
    from bayesperf.models import ConvergenceWarning
    from bayesperf.simulate import random_call_graph, simulate_traces
    from bayesperf.summaries.calls import summarize_calls

    n_traces = 2_000 if quick else 10_000
    graph = random_call_graph(50, random_seed=SEED, n_traces=n_traces)
    spans = simulate_traces(graph, n_traces, random_seed=SEED, inclusive=True).spans
    sampler = {"draws": 100, "tune": 200, "chains": 2, "progressbar": False}
    n_draws, n_requests = (50, 2_000) if quick else (200, 10_000)
    out: dict[str, Any] = {"spans": len(spans), "traces": n_traces}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        LatencyModel().fit(spans, random_seed=SEED, **sampler)
        out["baseline: per-pair LatencyModel fit (s)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = RequestModel(n_draws=n_draws, n_requests=n_requests)
        model.fit(spans, random_seed=SEED, **sampler)
        out["fit (s)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        simulated = model.simulate()
        out["simulate (s)"] = time.perf_counter() - t0
    out["fit + simulate (s)"] = out["fit (s)"] + out["simulate (s)"]
    out["ratio to baseline"] = (
        out["fit + simulate (s)"] / out["baseline: per-pair LatencyModel fit (s)"]
    )
    out["spans simulated"] = int(simulated.attrs["spans_simulated"])
    out["spans per request"] = out["spans simulated"] / (n_draws * n_requests)
    out["simulated spans per second"] = out["spans simulated"] / out["simulate (s)"]
    out["node types"] = model.graph.n_types
    out["summarize_calls spans/s"] = len(spans) / _timed(lambda: summarize_calls(spans))
    out["growth"] = growth(model, quick)
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def growth(model, quick: bool) -> pd.DataFrame:
    """Simulation time per million spans for graphs of growing size and depth."""
    from bayesperf import RequestModel
    from bayesperf.simulate import Call, CallGraph, LogNormal, random_call_graph, simulate_traces

    graphs = {}
    for n in (10, 50, 200) if not quick else (10, 50):
        graphs[f"random, {n} services"] = random_call_graph(n, random_seed=SEED)
    for depth in (2, 4, 8, 16) if not quick else (2, 8):
        # Each level calls the next one and a leaf: 2 * depth + 1 spans per request.
        names = [f"d{i:02d}" for i in range(depth + 1)]
        calls: dict[str, list] = {names[-1]: []}
        for i in range(depth):
            leaf = f"leaf{i:02d}"
            calls[names[i]] = [
                Call(names[i + 1], 1.0, LogNormal(1.0, 0.5)),
                Call(leaf, 1.0, LogNormal(0.5, 0.5)),
            ]
            calls[leaf] = []
        graphs[f"chain, depth {depth}"] = CallGraph(names[0], LogNormal(2.0, 0.5), calls)
    rows = []
    for name, graph in graphs.items():
        spans = simulate_traces(graph, 1000, random_seed=SEED, inclusive=True).spans
        m = RequestModel(n_draws=50, n_requests=2000).fit(spans, random_seed=SEED)
        t = _timed(m.simulate)
        sim = m.simulate()
        spans_sim = int(sim.attrs["spans_simulated"])
        rows.append(
            {
                "graph": name,
                "node types": m.graph.n_types,
                "spans per request": spans_sim / (50 * 2000),
                "seconds": t,
                "ns per simulated span": 1e9 * t / spans_sim,
            }
        )
    return pd.DataFrame(rows).set_index("graph")


# ====================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["heldout", "simulated", "counterfactual", "speed", "all"])
    parser.add_argument("--latency", nargs="+", default=["nonparametric", "lognormal"])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--extra-edges", type=float, default=0.3, help="simulated: DAG edges per service"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    results: dict[str, Any] = {}
    if args.what in ("heldout", "all"):
        table = heldout(args.latency, 1 if args.quick else args.splits)["rows"]
        results["heldout"] = table
        for title, frame in heldout_tables(table).items():
            print(f"\n## Held-out: {title}\n")
            print(frame.round(3).to_string())
    if args.what in ("simulated", "all"):
        n_seeds = 2 if args.quick else max(args.splits, 20)
        table = simulated(args.latency, n_seeds, args.extra_edges)["rows"]
        results["simulated"] = table
        print("\n## Simulated traces (our generator): held-out and true quantiles\n")
        print(simulated_table(table).round(3).to_string())
    if args.what in ("counterfactual", "all"):
        table = counterfactual(args.latency)["rows"]
        results["counterfactual"] = table
        print("\n## Counterfactual: Nezha fault minutes\n")
        print(counterfactual_table(table).round(3).to_string())
    if args.what in ("speed", "all"):
        out = speed(args.quick)
        grow = out.pop("growth")
        print("\n## Speed: 50-service graph\n")
        for k, v in out.items():
            print(f"- {k}: {v:,.3f}" if isinstance(v, float) else f"- {k}: {v:,}")
        print("\n## Cost growth (simulation only)\n")
        print(grow.round(3).to_string())
        results["speed"] = {**out, "growth": grow}
    if args.json:
        serial = {
            k: (v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v)
            for k, v in results.items()
        }
        if "speed" in serial:
            serial["speed"]["growth"] = serial["speed"]["growth"].reset_index().to_dict("records")
        Path(args.json).write_text(json.dumps(serial, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
