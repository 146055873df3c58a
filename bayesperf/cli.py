"""Command line: ``bayesperf summary TRACES... | --demo``.

Reads traces (any supported format), prints what was read and dropped, then the
per-group latency table (count, exact mean/min/max, P50/P95/P99 from the 1% bins) and,
optionally, the transition counts. The model-fitting report builds on this.
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
    summary.add_argument("traces", nargs="*", help="trace files, globs or directories")
    summary.add_argument(
        "--demo", action="store_true", help="use the bundled Online Boutique traces"
    )
    summary.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="trace format (default: auto)"
    )
    summary.add_argument(
        "--by",
        default="caller,callee",
        help="comma-separated grouping columns, or 'all' (default: caller,callee)",
    )
    summary.add_argument(
        "--transitions",
        choices=["sequence", "calls"],
        help="also print transition counts of this kind",
    )
    summary.add_argument("-o", "--output", help="also write the summary table to this CSV file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.demo == bool(args.traces):
        print("bayesperf summary: give trace files or --demo (not both)", file=sys.stderr)
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
