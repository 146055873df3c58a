"""Command line: ``bayesperf summary|fit TRACES... | --demo``.

``summary`` reads traces (any supported format), prints what was read and dropped, then
the per-group latency table (count, exact mean/min/max, P50/P95/P99 from the 1% bins)
and, optionally, the transition counts. ``fit`` fits the hierarchical latency model and
prints posterior P50/P95/P99 with credible intervals and the convergence checks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from bayesperf import datasets
from bayesperf.errors import TraceFormatError
from bayesperf.io import FORMATS, read_traces
from bayesperf.summaries import count_transitions, summarize_latency


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="*", help="trace files, globs or directories")
    parser.add_argument(
        "--demo", action="store_true", help="use the bundled Online Boutique traces"
    )
    parser.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="trace format (default: auto)"
    )
    parser.add_argument(
        "--by",
        default="caller,callee",
        help="comma-separated grouping columns, or 'all' (default: caller,callee)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesperf", description="Bayesian performance models from distributed traces."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser(
        "summary",
        help="read traces and print the per-pair latency summary",
        description="Read traces and print the per-group latency summary table.",
    )
    _add_source_arguments(summary)
    summary.add_argument(
        "--transitions",
        choices=["sequence", "calls"],
        help="also print transition counts of this kind",
    )
    summary.add_argument("-o", "--output", help="also write the summary table to this CSV file")

    fit = commands.add_parser(
        "fit",
        help="fit the hierarchical latency model: P50/P95/P99 with credible intervals",
        description="Fit the hierarchical latency model and print posterior quantiles.",
    )
    _add_source_arguments(fit)
    fit.add_argument("--family", default="lognormal", choices=["lognormal", "gamma", "weibull"])
    fit.add_argument("--pooling", default="partial", choices=["partial", "none", "complete"])
    fit.add_argument("--ci", type=float, default=0.9, help="credible interval mass (0.9)")
    fit.add_argument("--draws", type=int, default=1000, help="draws per chain (1000)")
    fit.add_argument("--tune", type=int, default=1000, help="tuning steps per chain (1000)")
    fit.add_argument("--chains", type=int, default=4, help="chains (4)")
    fit.add_argument("--seed", type=int, default=1, help="random seed (1)")
    fit.add_argument("-o", "--output", help="save the fitted model (.nc or .zarr)")
    fit.add_argument("--csv", help="also write the posterior table to this CSV file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.demo == bool(args.traces):
        print(f"bayesperf {args.command}: give trace files or --demo (not both)", file=sys.stderr)
        return 2
    try:
        source = datasets.online_boutique_path() if args.demo else args.traces
        spans = read_traces(source, format=args.format)
    except TraceFormatError as exc:
        print(f"bayesperf: cannot read traces: {exc}", file=sys.stderr)
        return 1
    print(spans.attrs["read_report"])
    print(
        f"\n{len(spans):,} spans, {spans['trace_id'].nunique():,} traces, "
        f"{spans['service'].nunique():,} services\n"
    )
    by = None if args.by == "all" else tuple(c.strip() for c in args.by.split(","))
    try:
        if args.command == "fit":
            return _fit(spans, by, args)
        table = summarize_latency(spans, by=by).to_frame()
    except ValueError as exc:
        print(f"bayesperf: {exc}", file=sys.stderr)
        return 1
    table = table.sort_values("n", ascending=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print("Latency (ms) per group; quantiles from log bins of 1% relative width")
        print(table.round(3).to_string())
        if args.transitions:
            counts = count_transitions(spans, mode=args.transitions)
            print(f"\nTransitions ({args.transitions}): {counts.total:,}")
            print(counts.to_frame().to_string(index=False))
    if args.output:
        table.to_csv(args.output)
        print(f"\nwrote {args.output}")
    return 0


def _fit(spans: pd.DataFrame, by, args: argparse.Namespace) -> int:
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import LatencyModel

    summary = summarize_latency(spans, by=by)
    model = LatencyModel(family=args.family, by=by, pooling=args.pooling)
    print(
        f"Fitting {args.family} latency model, {args.pooling} pooling, "
        f"{summary.n_groups} groups ({args.chains} chains x {args.draws} draws)...",
        flush=True,
    )
    model.fit(
        summary,
        random_seed=args.seed,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        progressbar=sys.stdout.isatty(),
    )
    table = model.summary(ci_prob=args.ci)
    columns = (
        ["n", "empirical_p50", "empirical_p99"]
        + [f"{stat}_{part}" for stat in ("p50", "p99") for part in ("median", "lower", "upper")]
        + ["p99_ppc_p"]
    )
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(f"\nPosterior latency (ms): median and {args.ci:.0%} equal-tailed interval")
        print(table[columns].round(3).to_string())
        misfit = table["p99_ppc_p"] < 0.01
        if misfit.any():
            print(
                f"\n{int(misfit.sum())} group(s) with p99_ppc_p < 0.01: the {args.family} family "
                "does not reproduce their empirical P99 (multimodal latency?)"
            )
        checks = diagnose(model)
        print("\nConvergence (R-hat <= 1.01, ESS >= 400, no divergences)")
        print(checks.round(3).to_string())
    if args.output:
        print(f"\nsaved the model to {model.save(args.output)}")
    if args.csv:
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0 if checks["ok"].all() else 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
