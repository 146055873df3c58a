"""Demo benchmark: every stage of ``bayesperf report --demo``, each run in a fresh process.

Usage::

    python benchmarks/demo.py                       # 3 runs of this checkout
    python benchmarks/demo.py --against main        # and of another revision, alternating
    python benchmarks/demo.py --cold                # empty compile caches in every run
    python benchmarks/demo.py --quick               # one run with --quick sampler settings

What is measured
    Each run is a fresh Python process that imports bayesperf and calls
    :func:`bayesperf.report.write_report` on the bundled Online Boutique minute with the
    report's default options, as ``bayesperf report --demo`` does. It records the
    report's own step timings (read traces, summarise, latency model, transition model,
    mixture model, model comparison, figures, write tables and HTML), the import time,
    and the process's wall time seen from outside (what ``time bayesperf report --demo``
    shows) and CPU time (user + system, all threads: the work done, whatever the machine's
    load), plus the mixture's convergence checks and posterior table.

Baseline in the same run
    ``--against REV`` exports that git revision (``git archive``) to a temporary folder
    and runs it on the same interpreter and packages, alternating with this checkout
    (A B A B ...), so both see the same machine load. Stage times are compared as the
    ratio of medians.

Compile caches
    PyTensor compiles every model's log-density with numba and caches the compiled
    pieces on disk (``~/.pytensor``); the mixture's hand-written density and the
    nonparametric and request kernels are numba functions cached in
    ``~/.cache/bayesperf/numba`` (``bayesperf._numba``). A first run on a machine
    compiles everything; later runs (of any checkout) load what they can. ``--cold``
    points every run at empty cache directories (``PYTENSOR_FLAGS=base_compiledir=...``,
    ``NUMBA_CACHE_DIR``): the first-run-ever cost. Without it, the first run of a new
    model may still be cold: look at the spread.

Prints markdown and writes ``benchmarks/out/demo.json`` (``--quick`` writes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parents[1]
#: The mixture step's target on the bundled minute (issue 13), seconds.
MIXTURE_TARGET_S = 5.0

#: Runs inside the fresh process; prints one JSON line.
_DRIVER = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import pandas as pd
import bayesperf
from bayesperf import datasets
from bayesperf.report import ReportOptions, write_report
imported = time.perf_counter() - t0
# CPU seconds per step too (all threads of the process), by wrapping the report's timer.
from contextlib import contextmanager
from bayesperf.report import _build
cpu_steps = {}
timer = _build._Steps.__call__
@contextmanager
def timed(self, name, detail=""):
    start = time.process_time()
    with timer(self, name, detail):
        yield
    cpu_steps[name] = time.process_time() - start
_build._Steps.__call__ = timed
options = ReportOptions.quick() if sys.argv[2] == "quick" else ReportOptions()
result = write_report(datasets.online_boutique_path(), sys.argv[1], options)
diag = result.diagnostics
mixture = pd.read_csv(result.files["mixture_summary.csv"], index_col=0)
print(json.dumps({
    "bayesperf": bayesperf.__file__,
    "import": imported,
    "steps": result.timings,
    "cpu_steps": cpu_steps,
    "in_process_total": time.perf_counter() - t0,
    "diagnostics": diag.to_dict(orient="records"),
    "mixture_summary": mixture.to_dict(orient="index"),
}))
"""


def export(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` under ``into`` (``git archive``)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_once(source: Path, work: Path, quick: bool, cold: bool) -> dict[str, Any]:
    """One fresh process running the demo report from the checkout at ``source``."""
    out = Path(tempfile.mkdtemp(dir=work, prefix="report-"))
    env = {**os.environ, "PYTHONPATH": str(source), "MPLBACKEND": "Agg"}
    if cold:
        cache = tempfile.mkdtemp(dir=work, prefix="pytensor-")
        env["PYTENSOR_FLAGS"] = f"base_compiledir={cache}"
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=work, prefix="numba-")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(out), "quick" if quick else "full"],
        env=env,
        capture_output=True,
        text=True,
        cwd=work,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"demo run failed ({source}):\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    if not record["bayesperf"].startswith(str(source)):
        raise RuntimeError(f"ran {record['bayesperf']}, not the checkout at {source}")
    record["process_wall"] = wall
    record["process_cpu"] = cpu
    return record


def mixture_checks(record: dict[str, Any]) -> dict[str, float]:
    rows = [r for r in record["diagnostics"] if r["model"] == "mixture"]
    return {
        "r_hat_max": max(r["r_hat_max"] for r in rows),
        "ess_bulk_min": min(r["ess_bulk_min"] for r in rows),
        "ess_tail_min": min(r["ess_tail_min"] for r in rows),
        "divergences": max(r["divergences"] for r in rows),
    }


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def stage_table(runs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Per stage and checkout: wall and CPU seconds over the runs (median, min, max)."""
    first = next(iter(runs.values()))[0]
    table = []
    for stage in [*first["steps"], "import"]:
        row = {}
        for label, records in runs.items():
            wall = [r[stage] if stage == "import" else r["steps"][stage] for r in records]
            cpu = [r["cpu_steps"].get(stage, float("nan")) for r in records]
            row[label] = {"wall": _stats(wall), "cpu": _stats(cpu)}
        table.append((stage, row))
    table.append(
        (
            "whole process",
            {
                label: {
                    "wall": _stats([r["process_wall"] for r in records]),
                    "cpu": _stats([r["process_cpu"] for r in records]),
                }
                for label, records in runs.items()
            },
        )
    )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per checkout (default 3)")
    parser.add_argument("--against", metavar="REV", help="also run this git revision")
    parser.add_argument("--cold", action="store_true", help="empty compile caches per run")
    parser.add_argument("--quick", action="store_true", help="one run, --quick sampler")
    args = parser.parse_args(argv)
    runs_per = 1 if args.quick else args.runs

    with tempfile.TemporaryDirectory(prefix="bayesperf-demo-bench-") as tmp:
        work = Path(tmp)
        sources = {"this checkout": REPO}
        if args.against:
            sources[args.against] = export(args.against, work / "baseline")
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sources}
        for i in range(runs_per):
            for label, source in sources.items():  # alternate: same load for both
                record = run_once(source, work, args.quick, args.cold)
                runs[label].append(record)
                mix = record["steps"].get("mixture model", float("nan"))
                print(
                    f"run {i + 1}/{runs_per} {label}: process {record['process_wall']:.1f} s, "
                    f"mixture step {mix:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )

    labels = list(runs)
    table = stage_table(runs)
    cache = "empty compile caches per run (--cold)" if args.cold else "compile caches as found"
    print(f"\n## `bayesperf report --demo`, stage by stage ({runs_per} run(s) each; {cache})\n")
    print("Wall seconds: median (min-max); CPU seconds (all threads): median.\n")
    ratio = len(labels) == 2
    header = [
        "stage",
        *(f"{label} wall" for label in labels),
        *(f"{label} CPU" for label in labels),
    ]
    if ratio:
        header += ["wall ratio", "CPU ratio"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for stage, row in table:
        wall = [row[label]["wall"] for label in labels]
        cpu = [row[label]["cpu"]["median"] for label in labels]
        cells = [stage, *(f"{w['median']:.2f} ({w['min']:.1f}-{w['max']:.1f})" for w in wall)]
        cells += [f"{c:.2f}" for c in cpu]
        if ratio:
            cells += [
                f"{wall[0]['median'] / wall[1]['median']:.2f}" if wall[1]["median"] else "",
                f"{cpu[0] / cpu[1]:.2f}" if cpu[1] else "",
            ]
        print("| " + " | ".join(cells) + " |")

    print("\n## Mixture: convergence checks per run (R-hat <= 1.01, ESS >= 400, 0 divergences)\n")
    for label in labels:
        for i, record in enumerate(runs[label]):
            checks = mixture_checks(record)
            text = ", ".join(f"{k} {v:.4g}" for k, v in checks.items())
            print(f"- {label}, run {i + 1}: {text}")
    print("\n## Mixture posterior (first run of each): mean [90% interval] per component\n")
    for label in labels:
        summary = runs[label][0]["mixture_summary"]
        for comp, row in summary.items():
            parts = [
                f"{stat} {row[f'{stat}_mean']:.4g} [{row[f'{stat}_lower']:.4g}, "
                f"{row[f'{stat}_upper']:.4g}]"
                for stat in ("weight", "median_ms", "sigma")
            ]
            print(f"- {label}, component {comp}: " + "; ".join(parts))

    mixture = dict(table)["mixture model"][labels[0]]["wall"]["median"]
    verdict = "meets" if mixture <= MIXTURE_TARGET_S else "MISSES"
    target = f"{MIXTURE_TARGET_S:.0f} s"
    print(f"\nMixture step {mixture:.1f} s (median, this checkout): {verdict} the {target} target")
    if not args.quick:
        OUT.mkdir(exist_ok=True)
        payload = {
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cold_cache": args.cold,
            "runs_per_checkout": runs_per,
            "stages": {stage: row for stage, row in table},
            "mixture_checks": {
                label: [mixture_checks(r) for r in records] for label, records in runs.items()
            },
            "runs": runs,
        }
        (OUT / "demo.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
