"""Ingest benchmark: read + summarize 10^6 / 10^7 spans, against a plain pandas baseline.

Usage::

    python benchmarks/ingest.py --sizes 1e6 1e7 --repeat 3

Generates synthetic canonical span tables once into ``benchmarks/out/`` (git-ignored)
as CSV and Parquet, then runs each variant in a fresh subprocess so that its peak
resident memory (``ru_maxrss``) is its own:

``baseline-csv``
    ``pd.read_csv(path, engine="pyarrow")`` + a pandas ``groupby(["caller", "callee"])``
    of the statistics a :class:`~bayesperf.summaries.LatencySummary` holds — count,
    Σ log y, Σ (log y)², Σ y, min, max and the counts on the 1% log-bin grid per pair
    (see :func:`baseline_summary`) — the target's reference.
``baseline-csv-simple``
    ``pd.read_csv`` + ``groupby(...).latency.agg(["count", "mean", "min", "max"])``:
    fewer statistics than a summary holds (no log moments, no bins); for reference only
    (it was the reference before, and the ratios against it are the ones first quoted).
``bayesperf-csv``
    ``bayesperf.read_traces(csv)`` + ``summarize_latency(spans)``.
``bayesperf-csv-parents``
    The same spans in a CSV without the ``caller`` column: ``read_traces`` derives each
    caller from the parent links (as for Jaeger, Zipkin, OTLP and span CSVs).
``bayesperf-parquet``
    ``bayesperf.read_traces(parquet)`` + ``summarize_latency(spans)``.
``batched-csv``
    ``summarize_latency(csv_path)``: the CSV streamed in blocks, bounded memory (no
    de-duplication or dropping of rows: what ``read_traces`` adds).
``batched-parquet``
    ``summarize_latency(parquet_path)``: Parquet batches of 10^6 rows, bounded memory.
``baseline-parquet``
    ``pd.read_parquet`` + the same groupby (for reference only).

Every repeat runs all variants once (in an order rotated from repeat to repeat), so
each repeat's ratios compare runs made under the same load (the machine may be shared,
and timings there vary by 2x from minute to minute): the table shows the median
seconds and the ratio of every repeat, and the CPU seconds (all threads), which load
disturbs less. A second table splits the seconds by stage (:data:`STAGES`): pandas'
read and groupby for the baseline; for ``read_traces`` the CSV parse, type coercion and
validation, span keys (de-duplication, parent look-up), callers, canonical dtypes
(categoricals) and the rest; for ``summarize_latency`` group codes, bins and the rest
(fixed-point sums, min, max). Each variant checks that its per-pair counts and Σ log y
agree with the baseline's ("same stats").

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
    "baseline-csv-simple",
    "bayesperf-csv",
    "bayesperf-csv-parents",
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


def parents_csv(csv_path: Path) -> Path:
    """The CSV of the same spans without the ``caller`` column."""
    return csv_path.with_name(f"{csv_path.stem}-parents.csv")


def ensure_data(n_spans: int, force: bool = False) -> tuple[Path, Path]:
    """Write ``spans-<n>.csv``, ``spans-<n>-parents.csv`` (no ``caller`` column) and
    ``spans-<n>.parquet`` once; return the paths of the first and the last."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    OUT.mkdir(parents=True, exist_ok=True)
    csv_path, pq_path = OUT / f"spans-{n_spans}.csv", OUT / f"spans-{n_spans}.parquet"
    paths = (csv_path, parents_csv(csv_path), pq_path)
    if all(p.exists() for p in paths) and not force:
        return csv_path, pq_path
    t0 = time.perf_counter()
    table = generate(n_spans)
    # CSV: plain text columns (the canonical CSV), missing values as empty fields.
    plain = table.select(table.column_names)
    for i, name in enumerate(plain.column_names):
        if pa.types.is_dictionary(plain.schema.field(name).type):
            plain = plain.set_column(i, name, plain.column(name).cast(pa.string()))
    for path, columns in ((csv_path, plain), (paths[1], plain.drop_columns(["caller"]))):
        tmp = path.with_suffix(".csv.tmp")
        pacsv.write_csv(columns, tmp, pacsv.WriteOptions(quoting_style="needed"))
        tmp.replace(path)
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
KEYS = ["caller", "callee"]


def baseline_summary(frame):
    """What a pandas user would write for the statistics of a ``LatencySummary``.

    Float sums (not fixed point) and the plain ``floor(log)`` bin index (without the
    check on the edges that ``LogBins.index`` adds); root spans' missing caller kept as
    a group (``dropna=False``), as ``summarize_latency`` keeps it. Returns the per-pair
    statistics and the per-(pair, bin) counts.
    """
    import numpy as np

    from bayesperf.summaries.bins import DEFAULT_BINS as bins

    y = frame["latency"].to_numpy()
    with np.errstate(divide="ignore"):
        log_y = np.log(y)
    k = np.floor((log_y - np.log(bins.lowest_ms)) / np.log(bins.gamma))
    observed = y >= bins.lowest_ms
    frame = frame.assign(
        log=np.where(observed, log_y, 0.0),
        log2=np.where(observed, log_y**2, 0.0),
        bin=np.where(observed, np.minimum(k + 1, bins.n_bins - 1), 0).astype(np.int64),
    )
    grouped = frame.groupby(KEYS, dropna=False)
    stats = grouped.agg(
        count=("latency", "size"),
        sum_log=("log", "sum"),
        sum_log2=("log2", "sum"),
        sum=("latency", "sum"),
        min=("latency", "min"),
        max=("latency", "max"),
    )
    bin_counts = frame.groupby([*KEYS, "bin"], dropna=False).size()
    return stats, bin_counts


def _digest(groups, count, sum_log, n_bin_cells) -> dict:
    """What the driver compares across variants: counts per pair, Σ log y, cells."""
    import numpy as np

    count, sum_log = np.asarray(count), np.asarray(sum_log)
    labels = ["/".join("" if v != v or v is None else str(v) for v in g) for g in groups]
    order = np.argsort(labels)
    return {
        "labels": [labels[i] for i in order],
        "count": [int(count[i]) for i in order],
        "sum_log": [float(sum_log[i]) for i in order],
        "bin_cells": int(n_bin_cells),
    }


#: Stages of read_traces + summarize_latency timed on their own: (label, module, function).
#: Each function is wrapped where its caller looks it up, so the measured run is the real
#: code path; what the stages leave out of "read" / "summarize" is shown as "rest".
STAGES = (
    ("parse", "bayesperf.io.canonical_csv", "read_csv"),
    ("coerce", "bayesperf.io._table", "coerce"),
    ("span keys", "bayesperf.io._table", "_SpanKeys.of"),
    ("callers", "bayesperf.io._table", "_callers_from_parents"),
    ("dtypes", "bayesperf.io._table", "_canonical"),
    ("group codes", "bayesperf.summaries.latency", "_group_codes"),
    ("bins", "bayesperf.summaries.bins", "LogBins.index"),
)


def time_stages(stages: dict[str, float]) -> None:
    """Wrap the functions of :data:`STAGES` so that their seconds add up in ``stages``."""
    import importlib
    import inspect

    for label, module, path in STAGES:
        owner = importlib.import_module(module)
        *parents, attr = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        original = inspect.getattr_static(owner, attr)
        is_classmethod = isinstance(original, classmethod)
        func = original.__func__ if is_classmethod else original

        def timed(*args, _func=func, _label=label, **kwargs):
            t = time.perf_counter()
            try:
                return _func(*args, **kwargs)
            finally:
                stages[_label] = stages.get(_label, 0.0) + time.perf_counter() - t

        setattr(owner, attr, classmethod(timed) if is_classmethod else timed)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(name: str, csv_path: Path, pq_path: Path) -> dict:
    """Run one variant in this (fresh) process; return timings and memory."""
    import numpy as np
    import pandas as pd

    import bayesperf

    stages: dict[str, float] = {}
    if name.startswith("bayesperf"):
        time_stages(stages)
    rss_imported = rss_bytes()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if name.startswith("baseline"):
        if name.startswith("baseline-csv"):
            frame = pd.read_csv(csv_path, engine="pyarrow")
        else:
            frame = pd.read_parquet(pq_path)
        t1 = time.perf_counter()
        if name == "baseline-csv-simple":
            stats = frame.groupby(KEYS, dropna=False).latency.agg(["count", "mean", "min", "max"])
            stats["sum_log"], bin_counts = np.nan, ()
        else:
            stats, bin_counts = baseline_summary(frame)
        stages.update(read=t1 - t0, parse=t1 - t0, summarize=time.perf_counter() - t1)
    elif name.startswith("batched"):
        summary = bayesperf.summarize_latency(csv_path if name == "batched-csv" else pq_path)
    else:
        source = {"bayesperf-csv": csv_path, "bayesperf-csv-parents": parents_csv(csv_path)}
        source = source.get(name, pq_path)
        table = bayesperf.read_traces(source)
        t1 = time.perf_counter()
        summary = bayesperf.summarize_latency(table)
        stages.update(read=t1 - t0, summarize=time.perf_counter() - t1)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    peak = peak_rss_bytes()
    raw_bytes = None
    if name.startswith("baseline"):
        spans, groups = len(frame), len(stats)
        digest = _digest(stats.index, stats["count"], stats["sum_log"], len(bin_counts))
        raw_bytes = int(frame.memory_usage(deep=True).sum())
    else:
        spans, groups = int(summary.count.sum()), summary.n_groups
        cells = int((summary.bin_counts > 0).sum())
        digest = _digest(summary.groups, summary.count, summary.sum_log, cells)
    if "read" in stages and name.startswith("bayesperf"):
        read_parts = ("parse", "coerce", "span keys", "callers", "dtypes")
        stages["read: rest"] = stages["read"] - sum(stages.get(k, 0.0) for k in read_parts)
        summary_parts = ("group codes", "bins")
        stages["summarize: rest"] = stages["summarize"] - sum(
            stages.get(k, 0.0) for k in summary_parts
        )
    return {
        "variant": name,
        "spans": spans,
        "groups": groups,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "stages": stages,
        "peak_bytes": peak,
        "rss_after_imports": rss_imported,
        "raw_column_bytes": raw_bytes,
        "digest": digest,
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
def same_statistics(result: dict, base: dict) -> str:
    """Whether a variant's per-pair counts and Σ log y agree with the baseline's."""
    import numpy as np

    a, b = result["digest"], base["digest"]
    if a["labels"] != b["labels"] or a["count"] != b["count"]:
        return "NO: groups or counts differ"
    if np.all(np.isnan(a["sum_log"])):
        return "counts only"  # a baseline without log moments
    # Fixed point rounds each span's log y by at most 2^-21.
    tolerance = np.asarray(a["count"]) * 2.0**-21 + 1e-9 * np.abs(b["sum_log"])
    if np.any(np.abs(np.subtract(a["sum_log"], b["sum_log"])) > tolerance):
        return "NO: sums of log y differ"
    return "yes"


def table(results: list[dict]) -> str:
    head = (
        "| variant | spans | seconds (median) | time / baseline, each run | median ratio "
        "| CPU s | CPU / baseline | peak MB | work MB | peak / raw cols | work / raw cols "
        "| same stats |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in results:
        raw = r["raw_column_bytes_baseline"]
        lines.append(
            "| {variant} | {spans:,} | {s:.2f} | {ratios} | {ratio:.2f}x | {cpu:.2f} | "
            "{cpu_ratio:.2f}x | {peak:,.0f} | "
            "{work:,.0f} | {peak_raw:.2f}x | {work_raw:.2f}x | {same} |".format(
                variant=r["variant"],
                spans=r["spans"],
                s=r["seconds"],
                ratios=", ".join(f"{x:.2f}" for x in r["time_ratios"]),
                ratio=r["time_ratio"],
                cpu=r["cpu_seconds"],
                cpu_ratio=r["cpu_ratio"],
                peak=r["peak_bytes"] / 1e6,
                work=r["work_bytes"] / 1e6,
                peak_raw=r["peak_bytes"] / raw,
                work_raw=r["work_bytes"] / raw,
                same=r["same_statistics"],
            )
        )
    return "\n".join(lines)


#: Columns of the stage table: the read and its parts, then the summary and its parts.
STAGE_ORDER = (
    "read",
    "parse",
    "coerce",
    "span keys",
    "callers",
    "dtypes",
    "read: rest",
    "summarize",
    "group codes",
    "bins",
    "summarize: rest",
)


def stage_table(results: list[dict]) -> str:
    """Median seconds per stage of the variants that time their stages."""
    timed = [r for r in results if r["stage_medians"]]
    names = [k for k in STAGE_ORDER if any(k in r["stage_medians"] for r in timed)]
    lines = [
        "| variant | " + " | ".join(names) + " | total |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for r in timed:
        cells = [r["stage_medians"].get(k) for k in names]
        shown = " | ".join("" if c is None else f"{c:.3f}" for c in cells)
        lines.append(f"| {r['variant']} | {shown} | {r['seconds']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6])
    parser.add_argument("--repeat", type=int, default=3, help="runs of every variant")
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
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for repeat in range(args.repeat):
            # Every variant once per repeat (ratios under one load), the order rotated
            # from one repeat to the next so that no variant always runs first.
            shift = repeat % len(variants)
            for name in variants[shift:] + variants[:shift]:
                runs[name].append(measure(name, csv_path, pq_path))
                print(
                    f"  run {repeat + 1} {name}: {runs[name][-1]['seconds']:.2f} s", file=sys.stderr
                )
        base_runs = runs["baseline-csv"]
        results = []
        for name in variants:
            these = runs[name]
            r = dict(these[0])
            r["runs"] = [x["seconds"] for x in these]
            r["seconds"] = statistics.median(r["runs"])
            r["time_ratios"] = [
                x["seconds"] / b["seconds"] for x, b in zip(these, base_runs, strict=True)
            ]
            r["time_ratio"] = statistics.median(r["time_ratios"])
            r["cpu_seconds"] = statistics.median(x["cpu_seconds"] for x in these)
            r["cpu_ratio"] = statistics.median(
                x["cpu_seconds"] / b["cpu_seconds"] for x, b in zip(these, base_runs, strict=True)
            )
            stage_names = dict.fromkeys(k for x in these for k in x["stages"])
            r["stage_medians"] = {
                k: statistics.median(x["stages"].get(k, 0.0) for x in these) for k in stage_names
            }
            r["peak_bytes"] = max(x["peak_bytes"] for x in these)
            r["work_bytes"] = r["peak_bytes"] - min(x["rss_after_imports"] for x in these)
            results.append(r)
        base = results[0]
        for r in results:
            r["raw_column_bytes_baseline"] = base["raw_column_bytes"]
            r["peak_ratio"] = r["peak_bytes"] / base["raw_column_bytes"]
            r["work_ratio"] = r["work_bytes"] / base["raw_column_bytes"]
            r["same_statistics"] = same_statistics(r, base)
        print(f"\n### {n:,} spans (raw columns: {base['raw_column_bytes'] / 1e6:,.0f} MB)\n")
        print(table(results))
        print("\nseconds per stage (median over the runs):\n")
        print(stage_table(results))
        for r in results:
            del r["digest"]
        all_results.extend(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = OUT / f"ingest-{stamp}.json"
    meta = {"python": sys.version, "cpus": os.cpu_count(), "sizes": args.sizes}
    out.write_text(json.dumps({"meta": meta, "results": all_results}, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
