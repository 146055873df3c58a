"""Transition-model benchmark: exact conjugate fit, full table and paths at scale.

Usage::

    python benchmarks/transitions.py            # 10^6 transitions over 3,000 services
    python benchmarks/transitions.py --quick    # 10^5 over 300: checks the script works
    python benchmarks/transitions.py --json out.json   # also write the results

Cases (each in a fresh subprocess, so its peak RSS, ``VmHWM``, is its own)
    counts  A synthetic sparse ``TransitionCounts``: 10^6 transitions over 3,000
            services (each calls ~30 random others, 10% of its transitions end the
            request; ~9 x 10^4 edges). Timed: ``TransitionModel().fit(counts)`` +
            ``transition_probabilities()`` (exact Beta means, medians, 90% intervals of
            every edge and every row's ``(unseen)`` bucket). Limits: 5 s, 1 GB.
    spans   A synthetic span table whose sequence-mode transitions number ~10^6: random
            walks on the same chain, ~9 x 10^4 traces of ~10 spans (string trace ids and
            services, UTC timestamps, rows shuffled). Timed: ``count_transitions`` + fit
            + full table. Limits: 5 s, 1 GB (the table itself included).
    paths   10^4 posterior predictive paths (``sample_paths``) on the fitted 3,000-service
            model. Limit: 2 s. Also timed, without limits: ``most_likely_paths(k=10)``,
            ``path_probability`` of a sampled path, ``expected_visits(draws=100)`` and
            ``sample_posterior(draws=100, chains=2)``.

Times are the median of 3 repetitions in the subprocess (min and max reported too);
the verdict uses the slowest (the first, cold one). The peak RSS covers the whole
subprocess (imports — PyMC comes with ``bayesperf.models`` — data generation and all
repetitions). Prints markdown tables; exits 1 when a full-size case misses a limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from _measure import peak_rss_bytes

SEED = 20261126
REPEATS = 3
FULL = {"services": 3000, "transitions": 1_000_000, "paths": 10_000, "fanout": 30}
QUICK = {"services": 300, "transitions": 100_000, "paths": 1_000, "fanout": 30}
LIMITS = {"counts": (5.0, 1e9), "spans": (5.0, 1e9), "paths": (2.0, None)}


# ============================================================== data generation
def chain(services: int, fanout: int, seed: int):
    """A sparse random chain: (source, target, weight) arrays of state names.

    Service ``i`` calls ``1 + Poisson(fanout)`` distinct random services with
    lognormal weights summing to 0.9, and ends the request with weight 0.1; ``START``
    enters at 10 random roots.
    """
    import numpy as np

    rng = np.random.default_rng([seed, services])
    names = np.array([f"s{i:04d}" for i in range(services)], dtype=object)
    k = 1 + rng.poisson(fanout, services)
    src = np.repeat(np.arange(services), k)
    tgt = np.concatenate([rng.choice(services, size=kk, replace=False) for kk in k])
    w = rng.lognormal(0, 1, len(src))
    w *= 0.9 / np.bincount(src, weights=w)[src]
    roots = rng.choice(services, 10, replace=False)
    source = np.concatenate([np.full(10, "START", dtype=object), names[src], names])
    target = np.concatenate([names[roots], names[tgt], np.full(services, "END", dtype=object)])
    weight = np.concatenate([np.full(10, 0.1), w, np.full(services, 0.1)])
    return source, target, weight


def synthetic_counts(p: dict):
    """``TransitionCounts`` with exactly ``p["transitions"]`` transitions."""
    import numpy as np
    import pandas as pd

    from bayesperf.summaries.transitions import TransitionCounts

    source, target, weight = chain(p["services"], p["fanout"], SEED)
    rng = np.random.default_rng([SEED, 1])
    counts = rng.multinomial(p["transitions"], weight / weight.sum())
    frame = pd.DataFrame({"source": source, "target": target, "count": counts})
    return TransitionCounts.from_frame(frame, "sequence")


def synthetic_spans(p: dict):
    """A span table of random walks on :func:`chain` with ~``p["transitions"]`` transitions.

    Each trace walks from ``START`` until ``END`` (at most 500 spans); its spans are the
    states visited, 1 µs apart. Rows are shuffled across traces.
    """
    import numpy as np
    import pandas as pd

    source, target, weight = chain(p["services"], p["fanout"], SEED)
    states = pd.Index(["START", *sorted(set(source) - {"START"}), "END"])
    s, t = states.get_indexer(source), states.get_indexer(target)
    order = np.lexsort((t, s))
    s, t, weight = s[order], t[order], weight[order]
    # Every state but END has a row (services end with weight 0.1; START has roots).
    ptr = np.searchsorted(s, np.arange(len(states)))
    lengths = np.diff(ptr)
    total = np.cumsum(weight)
    before = np.repeat(total[ptr[:-1]] - weight[ptr[:-1]], lengths)
    key = s + (total - before) / np.add.reduceat(weight, ptr[:-1])[s]
    key[ptr[1:] - 1] = s[ptr[1:] - 1] + 1  # increasing: row + cumulative probability
    rng = np.random.default_rng([SEED, 2])
    n_traces = round(p["transitions"] / 11)  # ~10 spans + START per trace
    end = len(states) - 1
    trace_of, state_of, step_of = [], [], []
    active = np.arange(n_traces)
    cur = np.zeros(n_traces, np.int64)
    for step in range(500):
        idx = np.searchsorted(key, cur + rng.random(len(active)), side="right")
        idx = np.clip(idx, ptr[cur], ptr[cur + 1] - 1)
        cur = t[idx]
        keep = cur != end
        active, cur = active[keep], cur[keep]
        if not len(active):
            break
        trace_of.append(active)
        state_of.append(cur)
        step_of.append(np.full(len(active), step))
    trace = np.concatenate(trace_of)
    shuffle = rng.permutation(len(trace))
    trace = trace[shuffle]
    base = pd.Timestamp("2026-01-01", tz="UTC")
    ids = np.char.add("t", np.char.zfill(np.arange(n_traces).astype(str), 7))
    return pd.DataFrame(
        {
            "trace_id": pd.array(ids[trace], dtype="str"),
            "service": pd.array(states.to_numpy()[np.concatenate(state_of)[shuffle]], "str"),
            "start_time": base + pd.to_timedelta(np.concatenate(step_of)[shuffle], unit="us"),
            "latency": 1.0,
        }
    )


# ======================================================= measuring helpers (child)
def timed(fn, repeats: int = REPEATS) -> tuple[dict[str, float], Any]:
    """Median, min and max wall time of ``fn()`` over ``repeats`` calls; its last result."""
    import numpy as np

    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"s": float(np.median(times)), "min_s": min(times), "max_s": max(times)}, out


def child_counts(p: dict) -> dict:
    from bayesperf.models.transitions import TransitionModel

    data = synthetic_counts(p)
    before = peak_rss_bytes()
    timing, table = timed(lambda: TransitionModel().fit(data).transition_probabilities())
    return {
        **timing,
        "edges": len(data.counts),
        "rows": len(table),
        "transitions": data.total,
        "states": len(data.states),
        "rss_before": before,
        "peak_rss": peak_rss_bytes(),
    }


def child_spans(p: dict) -> dict:
    from bayesperf.models.transitions import TransitionModel
    from bayesperf.summaries.transitions import count_transitions

    spans = synthetic_spans(p)
    before = peak_rss_bytes()
    parts: dict[str, float] = {}

    def run():
        t0 = time.perf_counter()
        data = count_transitions(spans, mode="sequence")
        t1 = time.perf_counter()
        model = TransitionModel().fit(data)
        table = model.transition_probabilities()
        parts.update(count_s=t1 - t0, fit_table_s=time.perf_counter() - t1)
        return data, table

    timing, (data, table) = timed(run)
    return {
        **timing,
        **parts,
        "spans": len(spans),
        "traces": int(spans["trace_id"].nunique()),
        "edges": len(data.counts),
        "rows": len(table),
        "transitions": data.total,
        "states": len(data.states),
        "rss_before": before,
        "peak_rss": peak_rss_bytes(),
    }


def child_paths(p: dict) -> dict:
    import numpy as np

    from bayesperf.models.transitions import TransitionModel

    model = TransitionModel().fit(synthetic_counts(p), random_seed=SEED)
    timing, paths = timed(lambda: model.sample_paths("START", n=p["paths"], random_seed=1))
    lengths = np.array([len(x) for x in paths])
    extra = {}
    for name, fn in {
        "most_likely_paths(k=10)": lambda: model.most_likely_paths(k=10),
        "path_probability (4,000 draws)": lambda: model.path_probability(paths[0]),
        "expected_visits(draws=100)": lambda: model.expected_visits(draws=100),
        "sample_posterior(100 x 2 chains)": lambda: model.sample_posterior(100, chains=2),
    }.items():
        extra[name] = timed(fn, repeats=1)[0]["s"]
    ends = {
        "END": sum(x[-1] == "END" for x in paths),
        "(unseen)": sum(x[-1] == "(unseen)" for x in paths),
    }
    return {
        **timing,
        "paths": len(paths),
        "mean_states": float(lengths.mean()),
        "max_states": int(lengths.max()),
        "ends": ends,
        "extra": extra,
        "peak_rss": peak_rss_bytes(),
    }


CHILD_CASES = {"counts": child_counts, "spans": child_spans, "paths": child_paths}


# ================================================================== parent side
def run_child(case: str, params: dict) -> dict:
    """Run one case in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, __file__, "--run-case", case, json.dumps(params)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def mb(x: float) -> str:
    return f"{x / 1e6:,.0f} MB"


def report(results: dict[str, dict], sizes: dict) -> str:
    """Markdown tables of the results and verdicts against the limits."""
    lines = [
        f"### TransitionModel at {sizes['transitions']:,} transitions over "
        f"{sizes['services']:,} services (2 cores)",
        "",
        "| case | what is timed | size | time: median of 3 (min-max) | limit (on max) | "
        "peak RSS | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    what = {
        "counts": "fit + full table",
        "spans": "count_transitions + fit + full table",
        "paths": f"sample_paths(n={sizes['paths']:,})",
    }
    for case, r in results.items():
        limit_s, limit_mem = LIMITS[case]
        if case == "paths":
            size = f"{r['paths']:,} paths, {r['mean_states']:.1f} states each"
        else:
            size = f"{r['transitions']:,} transitions, {r['edges']:,} edges, {r['rows']:,} rows"
            if case == "spans":
                size = f"{r['spans']:,} spans / {r['traces']:,} traces → " + size
        ok = r["max_s"] <= limit_s and (limit_mem is None or r["peak_rss"] < limit_mem)
        limit = f"≤ {limit_s:g} s" + (f", < {mb(limit_mem)}" if limit_mem else "")
        lines.append(
            f"| {case} | {what[case]} | {size} | {r['s']:.2f} s ({r['min_s']:.2f}-"
            f"{r['max_s']:.2f}) | {limit} | {mb(r['peak_rss'])} | {'pass' if ok else 'FAIL'} |"
        )
    if "spans" in results:
        r = results["spans"]
        lines += [
            "",
            f"spans: count_transitions {r['count_s']:.2f} s, fit + table "
            f"{r['fit_table_s']:.2f} s (last repetition); RSS before timing "
            f"{mb(r['rss_before'])} (imports and the span table).",
        ]
    if "counts" in results:
        lines.append(f"counts: RSS before timing {mb(results['counts']['rss_before'])}.")
    if "paths" in results:
        r = results["paths"]
        lines += [
            "",
            f"paths end at END: {r['ends']['END']:,}, at (unseen): {r['ends']['(unseen)']:,}, "
            f"cut at max_steps: {r['paths'] - sum(r['ends'].values()):,}.",
            "",
            "| other call on the same model (no limit) | time |",
            "|---|---|",
            *(f"| {name} | {s:.2f} s |" for name, s in r["extra"].items()),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^5 transitions, 300 services")
    parser.add_argument("--only", nargs="+", choices=list(CHILD_CASES), default=list(CHILD_CASES))
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--run-case", nargs=2, metavar=("CASE", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        case, params = args.run_case
        print(json.dumps(CHILD_CASES[case](json.loads(params))))
        return 0
    sizes = QUICK if args.quick else FULL
    results = {case: run_child(case, sizes) for case in args.only}
    print(report(results, sizes))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"quick": args.quick, "sizes": sizes, "results": results}, fh, indent=1)
    failed = [
        c
        for c, r in results.items()
        if r["max_s"] > LIMITS[c][0] or (LIMITS[c][1] and r["peak_rss"] >= LIMITS[c][1])
    ]
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
