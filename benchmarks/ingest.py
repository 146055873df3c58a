"""Ingest benchmark: read + summarize 10^6 / 10^7 spans, against a plain pandas baseline.

Usage::

    python benchmarks/ingest.py --sizes 1e6 1e7 --repeat 1

Generates synthetic canonical span tables once into ``benchmarks/out/`` (git-ignored)
as CSV and Parquet, then runs each variant in a fresh subprocess so that its peak
resident memory (``ru_maxrss``) is its own:

``baseline-csv``
    ``pd.read_csv(path, engine="pyarrow")`` + ``groupby(["caller", "callee"])``
    ``.latency.agg(["count", "mean", "min", "max"])`` — the target's reference.
``bayesperf-csv``
    ``bayesperf.read_traces(csv)`` + ``summarize_latency(spans)``.
``bayesperf-parquet``
    ``bayesperf.read_traces(parquet)`` + ``summarize_latency(spans)``.
``batched-csv``
    ``summarize_latency(csv_path)``: the CSV streamed in blocks, bounded memory (no
    de-duplication or dropping of rows: what ``read_traces`` adds).
``batched-parquet``
    ``summarize_latency(parquet_path)``: Parquet batches of 10^6 rows, bounded memory.
``baseline-parquet``
    ``pd.read_parquet`` + the same groupby (for reference only).

Seconds cover the work only (not interpreter start-up and imports). "peak MB" is the
subprocess's peak RSS (``VmHWM``); "work MB" is that peak minus the RSS right after the
imports, the memory the variant itself needed. Raw-column bytes are the in-memory size
of the columns as pandas holds them after the baseline read
(``memory_usage(deep=True)``). Targets (issue): time within 1.5x the baseline, peak
memory at most 2x the raw columns (reported for both "peak MB" and "work MB").

Prints a markdown table and writes ``benchmarks/out/ingest-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _measure import peak_rss_bytes, rss_bytes

OUT = Path(__file__).resolve().parent / "out"
VARIANTS = (
    "baseline-csv",
    "bayesperf-csv",
    "bayesperf-parquet",
    "batched-csv",
    "batched-parquet",
    "baseline-parquet",
)
N_SERVICES = 40
OUT_DEGREE = 5  # 40 services x 5 callees = 200 caller -> callee pairs (+ roots)
MEAN_TRACE_SIZE = 20
ROW_GROUP = 1_000_000


# ------------------------------------------------------------------------ data
def generate(n_spans: int, seed: int = 0):
    """A synthetic canonical span table (pyarrow Table) of about ``n_spans`` rows.

    Call trees: each span's parent is an earlier span of its trace; its service is one
    of the parent service's 5 callees, so ``caller -> callee`` takes ~200 values.
    Latency is lognormal per pair, in ms with microsecond precision, as exporters write.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.poisson(MEAN_TRACE_SIZE - 1, n_spans // MEAN_TRACE_SIZE + 1) + 1, 1, 60)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_spans) + 1]
    sizes[-1] -= sizes.sum() - n_spans
    sizes = sizes[sizes > 0]
    n, n_traces = int(sizes.sum()), len(sizes)
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    pos = np.arange(n) - first
    parent = np.where(pos > 0, first + (rng.random(n) * pos).astype(np.int64), -1)

    names = np.array(
        [f"{w}-service" for w in ("frontend", "cart", "checkout", "payment")]
        + [f"svc-{i:02d}" for i in range(N_SERVICES - 4)]
    )
    callees = np.stack([rng.choice(N_SERVICES, OUT_DEGREE, replace=False) for _ in names])
    service = np.zeros(n, dtype=np.int64)  # roots: frontend-service
    order = np.argsort(pos, kind="stable")  # parents are assigned before their children
    bounds = np.searchsorted(pos[order], np.arange(pos.max() + 2))
    for j in range(1, pos.max() + 1):
        rows = order[bounds[j] : bounds[j + 1]]
        service[rows] = callees[service[parent[rows]], rng.integers(0, OUT_DEGREE, len(rows))]
    caller = np.where(pos > 0, service[np.maximum(parent, 0)], -1)

    pair = (caller + 1) * N_SERVICES + service
    mu = rng.normal(0.5, 1.5, (N_SERVICES + 1) * N_SERVICES)
    sigma = rng.uniform(0.3, 1.2, (N_SERVICES + 1) * N_SERVICES)
    latency = np.round(np.exp(mu[pair] + sigma[pair] * rng.standard_normal(n)), 3)

    def hex_ids(count: int, nbytes: int) -> pa.Array:
        raw = np.frombuffer(rng.bytes(count * nbytes).hex().encode(), dtype=f"S{2 * nbytes}")
        return pa.array(raw, type=pa.binary(2 * nbytes)).cast(pa.string())

    trace_ids = hex_ids(n_traces, 16).take(pa.array(np.repeat(np.arange(n_traces), sizes)))
    span_ids = hex_ids(n, 8)
    parent_ids = span_ids.take(pa.array(np.maximum(parent, 0)))
    parent_ids = pc.if_else(pa.array(pos > 0), parent_ids, pa.scalar(None, pa.string()))
    trace_start = rng.integers(1_700_000_000, 1_700_003_600, n_traces) * 10**9
    start = np.repeat(trace_start, sizes) + pos * rng.integers(10_000, 2_000_000, n)

    def names_of(codes: np.ndarray) -> pa.Array:
        dictionary = pa.array(names)
        return pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int8), mask=codes < 0), dictionary
        )

    return pa.table(
        {
            "trace_id": trace_ids,
            "span_id": span_ids,
            "parent_id": parent_ids,
            "service": names_of(service),
            "caller": names_of(caller),
            "callee": names_of(service),
            "start_time": pa.array(start, pa.int64()),
            "latency": pa.array(latency, pa.float64()),
        }
    )


def ensure_data(n_spans: int, force: bool = False) -> tuple[Path, Path]:
    """Write ``spans-<n>.csv`` and ``spans-<n>.parquet`` once; return their paths."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    OUT.mkdir(parents=True, exist_ok=True)
    csv_path, pq_path = OUT / f"spans-{n_spans}.csv", OUT / f"spans-{n_spans}.parquet"
    if csv_path.exists() and pq_path.exists() and not force:
        return csv_path, pq_path
    t0 = time.perf_counter()
    table = generate(n_spans)
    # CSV: plain text columns (the canonical CSV), missing values as empty fields.
    plain = table.select(table.column_names)
    for i, name in enumerate(plain.column_names):
        if pa.types.is_dictionary(plain.schema.field(name).type):
            plain = plain.set_column(i, name, plain.column(name).cast(pa.string()))
    tmp = csv_path.with_suffix(".csv.tmp")
    pacsv.write_csv(plain, tmp, pacsv.WriteOptions(quoting_style="needed"))
    tmp.replace(csv_path)
    # Parquet: as write_parquet writes it (zstd, service columns dictionary-encoded).
    tmp = pq_path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP)
    tmp.replace(pq_path)
    print(
        f"generated {table.num_rows:,} spans in {time.perf_counter() - t0:.1f} s: "
        f"{csv_path.stat().st_size / 1e6:.0f} MB CSV, {pq_path.stat().st_size / 1e6:.0f} MB "
        "Parquet",
        file=sys.stderr,
    )
    return csv_path, pq_path


# -------------------------------------------------------------------- variants
def run_variant(name: str, csv_path: Path, pq_path: Path) -> dict:
    """Run one variant in this (fresh) process; return timings and memory."""
    import pandas as pd

    import bayesperf

    stages: dict[str, float] = {}
    raw_bytes = None
    rss_imported = rss_bytes()
    t0 = time.perf_counter()
    if name.startswith("baseline"):
        frame = (
            pd.read_csv(csv_path, engine="pyarrow")
            if name == "baseline-csv"
            else pd.read_parquet(pq_path)
        )
        t1 = time.perf_counter()
        result = frame.groupby(["caller", "callee"]).latency.agg(["count", "mean", "min", "max"])
        spans, groups = len(frame), len(result)
        raw_bytes = int(frame.memory_usage(deep=True).sum())
        stages = {"read": t1 - t0, "summarize": time.perf_counter() - t1}
    elif name.startswith("batched"):
        summary = bayesperf.summarize_latency(csv_path if name == "batched-csv" else pq_path)
        spans, groups = int(summary.count.sum()), summary.n_groups
    else:
        source = csv_path if name == "bayesperf-csv" else pq_path
        table = bayesperf.read_traces(source)
        t1 = time.perf_counter()
        summary = bayesperf.summarize_latency(table)
        spans, groups = len(table), summary.n_groups
        stages = {"read": t1 - t0, "summarize": time.perf_counter() - t1}
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes()
    return {
        "variant": name,
        "spans": spans,
        "groups": groups,
        "seconds": seconds,
        "stages": stages,
        "peak_bytes": peak,
        "rss_after_imports": rss_imported,
        "raw_column_bytes": raw_bytes,
    }


def measure(name: str, csv_path: Path, pq_path: Path) -> dict:
    """Run a variant in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, __file__, "--run-variant", name, str(csv_path), str(pq_path)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"variant {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------- report
def table(results: list[dict]) -> str:
    head = (
        "| variant | spans | seconds | spans/s | time / baseline | peak MB | work MB "
        "| peak / raw cols | work / raw cols | read s | summarize s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in results:
        stages = r.get("stages") or {}
        raw = r["raw_column_bytes_baseline"]
        lines.append(
            "| {variant} | {spans:,} | {s:.2f} | {rate:,.0f} | {ratio:.2f}x | {peak:,.0f} | "
            "{work:,.0f} | {peak_raw:.2f}x | {work_raw:.2f}x | {read} | {summ} |".format(
                variant=r["variant"],
                spans=r["spans"],
                s=r["seconds"],
                rate=r["spans"] / r["seconds"],
                ratio=r["time_ratio"],
                peak=r["peak_bytes"] / 1e6,
                work=r["work_bytes"] / 1e6,
                peak_raw=r["peak_bytes"] / raw,
                work_raw=r["work_bytes"] / raw,
                read=f"{stages['read']:.2f}" if "read" in stages else "",
                summ=f"{stages['summarize']:.2f}" if "summarize" in stages else "",
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6])
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (best time)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--force", action="store_true", help="regenerate the data")
    parser.add_argument("--run-variant", nargs=3, metavar=("NAME", "CSV", "PARQUET"))
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_variant:
        name, csv_path, pq_path = args.run_variant
        print(json.dumps(run_variant(name, Path(csv_path), Path(pq_path))))
        return 0
    if args.generate:
        ensure_data(args.generate, force=args.force)
        return 0

    variants = ["baseline-csv", *[v for v in args.variants if v != "baseline-csv"]]
    all_results = []
    for size in args.sizes:
        n = int(size)
        # In a subprocess: the driver stays small, and its memory out of the measurements.
        cmd = [sys.executable, __file__, "--generate", str(n), *(["--force"] if args.force else [])]
        subprocess.run(cmd, check=True)
        csv_path, pq_path = OUT / f"spans-{n}.csv", OUT / f"spans-{n}.parquet"
        results = []
        for name in variants:
            runs = [measure(name, csv_path, pq_path) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_bytes"] = max(r["peak_bytes"] for r in runs)
            best["work_bytes"] = best["peak_bytes"] - min(r["rss_after_imports"] for r in runs)
            best["runs"] = [r["seconds"] for r in runs]
            results.append(best)
            print(f"  {name}: {best['seconds']:.2f} s", file=sys.stderr)
        base = results[0]
        for r in results:
            r["time_ratio"] = r["seconds"] / base["seconds"]
            r["raw_column_bytes_baseline"] = base["raw_column_bytes"]
            r["peak_ratio"] = r["peak_bytes"] / base["raw_column_bytes"]
            r["work_ratio"] = r["work_bytes"] / base["raw_column_bytes"]
        print(f"\n### {n:,} spans (raw columns: {base['raw_column_bytes'] / 1e6:,.0f} MB)\n")
        print(table(results))
        all_results.extend(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = OUT / f"ingest-{stamp}.json"
    meta = {"python": sys.version, "cpus": os.cpu_count(), "sizes": args.sizes}
    out.write_text(json.dumps({"meta": meta, "results": all_results}, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
