"""Command line: ``bayesperf summary|fit|report|what-if TRACES... | --demo``.

``summary`` reads traces (any supported format), prints what was read and dropped, then
the per-group latency table (count, exact mean/min/max, P50/P95/P99 from the 1% bins)
and, optionally, the transition counts. ``fit`` fits the latency model and
prints posterior P50/P95/P99 with credible intervals and the convergence checks.
``report`` fits the latency, transition and mixture models and writes a self-contained
HTML report with the tables as CSV and the models as ``.nc`` (see
:mod:`bayesperf.report`). ``what-if`` fits the end-to-end request model and prints each
entry point's P50/P95/P99 today and after a change (``--scale SERVICE=FACTOR``,
``--add-ms SERVICE=MS``, ``--call-prob CALLER:CALLEE=P``), with credible intervals, and
optionally where to optimise first (``--attribution``). Every command exits with 2 for
unreadable input and 3 when a convergence check fails (``fit``, ``report``,
``what-if``: the results are still printed or written).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bayesperf import datasets
from bayesperf.errors import TraceFormatError
from bayesperf.io import FORMATS, read_traces
from bayesperf.summaries import count_transitions, summarize_latency

#: The latency families, the default first: ``bayesperf.models.latency.FAMILIES``, spelled
#: here so that ``bayesperf --help`` and ``summary`` need not import the models (seconds);
#: a test keeps the two equal.
LATENCY_FAMILIES = ("nonparametric", "lognormal", "gamma", "weibull")


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
        help="fit the latency model: P50/P95/P99 with credible intervals",
        description=(
            "Fit the latency model (nonparametric by default, or a hierarchical parametric "
            "family) and print posterior quantiles."
        ),
    )
    _add_source_arguments(fit)
    fit.add_argument("--family", default=LATENCY_FAMILIES[0], choices=LATENCY_FAMILIES)
    fit.add_argument("--pooling", default="partial", choices=["partial", "none", "complete"])
    fit.add_argument("--ci", type=float, default=0.9, help="credible interval mass (0.9)")
    fit.add_argument("--draws", type=int, default=1000, help="draws per chain (1000)")
    fit.add_argument("--tune", type=int, default=1000, help="tuning steps per chain (1000)")
    fit.add_argument("--chains", type=int, default=4, help="chains (4)")
    fit.add_argument("--seed", type=int, default=1, help="random seed (1)")
    fit.add_argument("-o", "--output", help="save the fitted model (.nc or .zarr)")
    fit.add_argument("--csv", help="also write the posterior table to this CSV file")
    _add_report_parser(commands)
    _add_what_if_parser(commands)
    return parser


def _components(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return k


def _add_report_parser(commands: Any) -> None:
    from bayesperf.report import DEFAULT_OUTPUT, QUICK, ReportOptions

    d = ReportOptions()
    report = commands.add_parser(
        "report",
        help="fit the latency, transition and mixture models and write an HTML report",
        description=(
            "Read traces, fit the latency, transition and mixture models and write "
            "report.html (tables and figures), the tables as CSV and the models as .nc. "
            "Exit code 0: done; 2: unreadable input; 3: a convergence check failed "
            "(the report is still written, with the failures highlighted)."
        ),
    )
    _add_source_arguments(report)
    report.add_argument(
        "-o", "--output", default=DEFAULT_OUTPUT, help=f"output directory ({DEFAULT_OUTPUT}/)"
    )
    report.add_argument("--family", default=d.family, choices=LATENCY_FAMILIES)
    report.add_argument("--pooling", default=d.pooling, choices=["partial", "none", "complete"])
    report.add_argument(
        "--mode",
        default=d.mode,
        choices=["calls", "sequence"],
        help=f"transition definition ({d.mode})",
    )
    report.add_argument(
        "--components",
        type=_components,
        default=d.components,
        help=f"mixture components, or 'auto' to choose by PSIS-LOO ({d.components})",
    )
    report.add_argument(
        "--mixture-by",
        default="all",
        help="mixture grouping: 'all' (one mixture of all spans) or columns, e.g. "
        "caller,callee (slower) (default: all)",
    )
    report.add_argument("--ci", type=float, default=d.ci_prob, help="credible interval mass")
    report.add_argument(
        "--draws", type=int, help=f"draws per chain ({d.draws}; --quick: {QUICK['draws']})"
    )
    report.add_argument(
        "--tune", type=int, help=f"tuning steps per chain ({d.tune}; --quick: {QUICK['tune']})"
    )
    report.add_argument(
        "--chains", type=int, help=f"chains ({d.chains}; --quick: {QUICK['chains']})"
    )
    report.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    report.add_argument(
        "--sampler",
        default=d.nuts_sampler,
        choices=["nutpie", "pymc"],
        help=f"NUTS implementation ({d.nuts_sampler}; pymc caches its compiled models)",
    )
    report.add_argument(
        "--quick",
        action="store_true",
        help="short chains for a fast look (convergence checks usually fail: exit code 3)",
    )


def _assignment(kind: str):
    """Parser of ``KEY=VALUE`` options: a float value and a service (or node type) key.

    ``SERVICE`` names all its operations, ``SERVICE::OPERATION`` one node type;
    ``--call-prob`` keys are ``CALLER:CALLEE``.
    """

    def parse(text: str) -> tuple[Any, float]:
        key, sep, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not key or number != number:
            raise argparse.ArgumentTypeError(f"expected {kind}=NUMBER, got {text!r}")
        if kind == "CALLER:CALLEE":
            caller, colon, callee = key.partition(":")
            if not colon or not caller or not callee:
                raise argparse.ArgumentTypeError(f"expected CALLER:CALLEE=P, got {text!r}")
            return (_node(caller), _node(callee)), number
        return _node(key), number

    return parse


def _node(key: str) -> str | tuple[str, str]:
    service, sep, operation = key.partition("::")
    return (service, operation) if sep else key


def _add_what_if_parser(commands: Any) -> None:
    what_if = commands.add_parser(
        "what-if",
        help="end-to-end P50/P95/P99 per entry point today and after a change",
        description=(
            "Fit the end-to-end request model (call structure + self times) and print, per "
            "entry point, P50/P95/P99 today and after the change, with credible "
            "intervals and P(improvement). Exit code 0: done; 2: unreadable input or "
            "options; 3: a convergence check of the self-time model failed."
        ),
    )
    _add_source_arguments(what_if)
    what_if.add_argument(
        "--scale",
        action="append",
        type=_assignment("SERVICE"),
        default=[],
        metavar="SERVICE=FACTOR",
        help="multiply the service's self times (0.7: 30%% faster); SERVICE::OPERATION "
        "for one operation; repeatable",
    )
    what_if.add_argument(
        "--add-ms",
        action="append",
        type=_assignment("SERVICE"),
        default=[],
        metavar="SERVICE=MS",
        help="add milliseconds to the service's self times; repeatable",
    )
    what_if.add_argument(
        "--call-prob",
        action="append",
        type=_assignment("CALLER:CALLEE"),
        default=[],
        metavar="CALLER:CALLEE=P",
        help="probability that a CALLER span calls CALLEE; repeatable",
    )
    what_if.add_argument(
        "--improvement",
        type=float,
        default=0.1,
        help="P(improves) is P(after < (1 - x) today) (0.1)",
    )
    what_if.add_argument(
        "--attribution",
        action="store_true",
        help="also rank services by the expected P99 drop if their self time fell 10%%",
    )
    what_if.add_argument(
        "--latency",
        default=LATENCY_FAMILIES[0],
        choices=LATENCY_FAMILIES,
        help="self-time model family (default: nonparametric, each node type's own histogram)",
    )
    what_if.add_argument("--ci", type=float, default=0.9, help="credible interval mass (0.9)")
    what_if.add_argument("--draws", type=int, default=500, help="draws per chain (500)")
    what_if.add_argument("--tune", type=int, default=500, help="tuning steps per chain (500)")
    what_if.add_argument("--chains", type=int, default=2, help="chains (2)")
    what_if.add_argument("--n-draws", type=int, default=200, help="posterior draws simulated (200)")
    what_if.add_argument("--n-requests", type=int, default=10_000, help="requests per draw (10000)")
    what_if.add_argument("--seed", type=int, default=1, help="random seed (1)")
    what_if.add_argument("--csv", help="also write the what-if table to this CSV file")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.demo == bool(args.traces):
        print(f"bayesperf {args.command}: give trace files or --demo (not both)", file=sys.stderr)
        return 2
    if args.command == "report":
        return _report(args, argv)
    if args.command == "what-if" and not (args.scale or args.add_ms or args.call_prob):
        print(
            "bayesperf what-if: give at least one --scale, --add-ms or --call-prob", file=sys.stderr
        )
        return 2
    try:
        source = datasets.online_boutique_path() if args.demo else args.traces
        spans = read_traces(source, format=args.format)
    except TraceFormatError as exc:
        print(f"bayesperf: cannot read traces: {exc}", file=sys.stderr)
        return 2
    print(spans.attrs["read_report"])
    print(
        f"\n{len(spans):,} spans, {spans['trace_id'].nunique():,} traces, "
        f"{spans['service'].nunique():,} services\n"
    )
    by = None if args.by == "all" else tuple(c.strip() for c in args.by.split(","))
    try:
        if args.command == "fit":
            return _fit(spans, by, args)
        if args.command == "what-if":
            return _what_if(spans, args)
        table = summarize_latency(spans, by=by).to_frame()
    except ValueError as exc:
        print(f"bayesperf: {exc}", file=sys.stderr)
        return 2
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


def _split_by(value: str) -> tuple[str, ...] | None:
    return None if value == "all" else tuple(c.strip() for c in value.split(","))


def _report(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import matplotlib

    from bayesperf.report import QUICK, ReportOptions, write_report

    matplotlib.use("Agg")  # files only: never open a window
    sampler = {k: getattr(args, k) for k in QUICK if getattr(args, k) is not None}
    words = list(sys.argv[1:] if argv is None else argv)
    command = "bayesperf " + " ".join(shlex.quote(w) for w in words)
    tty = sys.stderr.isatty()
    try:
        options = (ReportOptions.quick if args.quick else ReportOptions)(
            by=_split_by(args.by),
            family=args.family,
            pooling=args.pooling,
            mode=args.mode,
            components=args.components,
            mixture_by=_split_by(args.mixture_by),
            seed=args.seed,
            ci_prob=args.ci,
            progressbar=tty,  # the sampler's bar only on a terminal
            nuts_sampler=args.sampler,
            **sampler,
        )
    except ValueError as exc:
        print(f"bayesperf report: {exc}", file=sys.stderr)
        return 2
    source = datasets.online_boutique_path() if args.demo else args.traces
    start = time.perf_counter()

    def progress(line: str) -> None:
        print(f"bayesperf report {line}", file=sys.stderr, flush=True)

    try:
        result = write_report(
            source,
            args.output,
            options,
            format=args.format,
            command=command,
            progress=progress,
        )
    except TraceFormatError as exc:
        print(f"bayesperf report: cannot read traces: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"bayesperf report: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for name, why in result.skipped.items():
        print(f"bayesperf report: {name} skipped: {why}", file=sys.stderr)
    print(
        f"wrote {result.html} ({len(result.files)} files in {result.directory}/, {elapsed:.0f} s)"
    )
    if not result.converged:
        print(
            f"convergence checks failed: {result.failures_text()}; see the report's "
            "diagnostics (more --draws usually help)",
            file=sys.stderr,
        )
        return 3
    return 0


def _fit(spans: pd.DataFrame, by, args: argparse.Namespace) -> int:
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import LatencyModel

    summary = summarize_latency(spans, by=by)
    try:
        model = LatencyModel(family=args.family, by=by, pooling=args.pooling)
    except ValueError as exc:
        print(f"bayesperf fit: {exc}", file=sys.stderr)
        return 2
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
        if misfit.any() and not model.nonparametric:
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


def _what_if(spans: pd.DataFrame, args: argparse.Namespace) -> int:
    import warnings

    from bayesperf.analysis.critical_path import attribute
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import ConvergenceWarning, LatencyModel, RequestModel

    model = RequestModel(args.latency, n_draws=args.n_draws, n_requests=args.n_requests)
    print(
        f"Fitting the request model ({args.latency} self times, {args.chains} chains x "
        f"{args.draws} draws), then {args.n_requests:,} requests x {args.n_draws} draws...",
        flush=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(
            spans,
            random_seed=args.seed,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            progressbar=sys.stdout.isatty(),
        )
    try:
        table = model.what_if(
            scale=dict(args.scale) or None,
            add_ms=dict(args.add_ms) or None,
            call_prob=dict(args.call_prob) or None,
            improvement=args.improvement,
            ci_prob=args.ci,
        )
    except KeyError as exc:  # an unknown service or operation
        print(f"bayesperf what-if: {exc.args[0]}", file=sys.stderr)
        return 2
    ci = f"{100 * args.ci:.10g}%"
    shown = pd.DataFrame(index=table.index)
    shown["n"] = table["n"]
    shown["observed"] = table["observed"].round(2)
    for prefix, label in (("today", "today"), ("after", "after"), ("change_pct", "change %")):
        shown[f"{label} [{ci}]"] = [
            f"{m:,.4g} [{lo:,.4g}, {hi:,.4g}]"
            for m, lo, hi in zip(
                table[f"{prefix}_median"],
                table[f"{prefix}_lower"],
                table[f"{prefix}_upper"],
                strict=True,
            )
        ]
    shown[f"P(better by >{100 * args.improvement:g}%)"] = table["p_improves"].round(3)
    shown[f"P(worse by >{100 * args.improvement:g}%)"] = table["p_worsens"].round(3)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(f"\nEnd-to-end latency (ms) per entry point: median [{ci} credible interval]")
        print(shown.to_string())
        if args.attribution:
            ranking = attribute(model, ci_prob=args.ci)
            columns = ["today_ms", "reduction_ms", "reduction_ms_lower", "reduction_ms_upper"]
            print("\nWhere to optimise first: P99 drop (ms) if the service's self time fell 10%")
            print(ranking[[*columns, "p_top3"]].round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
        print(f"\nwrote {args.csv}")
    checks = diagnose(model.latency) if isinstance(model.latency, LatencyModel) else None
    if checks is not None and not checks["ok"].all():
        failed = ", ".join(checks.index[~checks["ok"]])
        print(
            f"convergence checks failed for {failed} (more --draws usually help)", file=sys.stderr
        )
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
