"""Build the report: read, summarise, fit three models, draw, write files and HTML."""

from __future__ import annotations

import html
import io
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.report import _end_to_end as E2E
from bayesperf.report import _html as H
from bayesperf.summaries import LatencySummary, summarize_latency
from bayesperf.summaries.latency import By, normalize_by

__all__ = [
    "DEFAULT_OUTPUT",
    "FIGURES",
    "OUTPUT_FILES",
    "QUICK",
    "SECTIONS",
    "ReportOptions",
    "ReportResult",
    "write_report",
]

#: Default output directory of ``bayesperf report``.
DEFAULT_OUTPUT = "bayesperf-report"
#: Sampler settings of ``--quick``: a fast look (convergence checks usually fail).
QUICK = {"draws": 200, "tune": 200, "chains": 2}
#: Section ids of the HTML page, in order.
SECTIONS = (
    "data",
    "latency",
    "transitions",
    "end-to-end",
    "mixture",
    "comparison",
    "diagnostics",
    "provenance",
)
#: Figure keys (``<figure data-figure=...>`` and ``figures/<key>.png``); the heat map is
#: drawn only for models with at most :data:`HEATMAP_MAX_STATES` states.
FIGURES = (
    "p99_forest",
    "ppc_worst",
    "transition_graph",
    "transition_heatmap",
    *E2E.FIGURES,
    "mixture",
)
#: Files always written (the mixture and end-to-end files only when those models could
#: be fit).
OUTPUT_FILES = (
    "report.html",
    "latency_summary.csv",
    "transitions.csv",
    "mixture_summary.csv",
    "diagnostics.csv",
    "latency.nc",
    "transitions.nc",
    "mixture.nc",
    *E2E.FILES,
)
#: Files written only when they apply (``components="auto"``; a comparison ran).
OPTIONAL_FILES = ("mixture_selection.csv", "comparison.csv", "holdout_check.csv")
HEATMAP_MAX_STATES = 40
#: Forest plot rows and PPC panels (the worst-fitting groups) at most.
FOREST_TOP = 40
PPC_PANELS = 6
#: Rows of the long tables shown in the HTML (the CSVs have them all).
HTML_MAX_ROWS = 150
_DPI = 100

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ReportOptions:
    """What the report fits and how.

    The sampler defaults (2 chains × 1,000 draws after 500 tuning steps) are half the
    cost of ``LatencyModel``'s own defaults (4 × 1,000 + 1,000) and pass the
    convergence checks on the bundled demo; use :meth:`quick` for a faster, rougher
    look.

    Attributes
    ----------
    by : str, sequence of str or None
        Grouping of the latency model (default caller→callee pairs).
    family, pooling : str
        Latency family and pooling of :class:`~bayesperf.models.LatencyModel`.
    mode : {"calls", "sequence"}
        Transition definition of :class:`~bayesperf.models.TransitionModel`.
    components : int or "auto"
        Mixture components (``"auto"`` chooses K by PSIS-LOO).
    mixture_by : str, sequence of str or None
        Grouping of the mixture (default ``None``: one mixture of all spans).
    draws, tune, chains : int
        NUTS settings of every sampled model.
    seed : int
        Random seed of every model.
    ci_prob : float
        Credible interval mass of every table and figure.
    progressbar : bool
        Show the sampler's progress bar.
    nuts_sampler : str
        ``"nutpie"`` (default) or ``"pymc"``.
    e2e_requests : int
        Requests simulated per posterior draw by the end-to-end model (4,000: the
        P99 of each draw from its 40 slowest; ``quick``: 2,000).

    Examples
    --------
    >>> ReportOptions.quick(seed=3).draws
    200
    """

    by: By = (S.CALLER, S.CALLEE)
    family: str = "nonparametric"  # LatencyModel's default (a test keeps them equal)
    pooling: str = "partial"
    mode: str = "calls"
    components: int | str = 3
    mixture_by: By = None
    draws: int = 1000
    tune: int = 500
    chains: int = 2
    seed: int = 1
    ci_prob: float = 0.9
    progressbar: bool = False
    nuts_sampler: str = "nutpie"
    e2e_requests: int = 4_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", normalize_by(self.by))
        object.__setattr__(self, "mixture_by", normalize_by(self.mixture_by))
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            least = 0 if name == "tune" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not 0 < self.ci_prob < 1:
            raise ValueError(f"ci_prob must be in (0, 1), got {self.ci_prob}")
        if self.components != "auto" and (
            isinstance(self.components, bool)
            or not isinstance(self.components, int)
            or self.components < 1
        ):
            raise ValueError(
                f"components must be a positive integer or 'auto', got {self.components!r}"
            )

    @classmethod
    def quick(cls, **overrides: Any) -> ReportOptions:
        """Options with :data:`QUICK` sampler settings (then ``overrides``)."""
        return cls(**{**QUICK, "e2e_requests": 2_000, **overrides})

    @property
    def sample_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every ``fit`` call."""
        return {
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "progressbar": self.progressbar,
            "nuts_sampler": self.nuts_sampler,
        }


@dataclass
class ReportResult:
    """What :func:`write_report` wrote and found.

    Attributes
    ----------
    directory : pathlib.Path
        The output directory.
    files : dict
        Name (``"report.html"``, ``"latency.nc"``, ...) -> path written.
    timings : dict
        Step name -> seconds.
    diagnostics : pandas.DataFrame
        The convergence table of every sampled model (column ``model``).
    failures : list of str
        ``"<model>: <block>"`` for every failed convergence check.
    skipped : dict
        Part (``"mixture"``, ``"comparison"``, a figure key) -> why it is missing.
    """

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame)
    failures: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        """Path of ``report.html``."""
        return self.files["report.html"]

    @property
    def converged(self) -> bool:
        """Whether every convergence check passed."""
        return not self.failures

    def failures_text(self) -> str:
        """The failed checks per model: ``"latency (location, shape); mixture (sigma)"``."""
        by_model: dict[str, list[str]] = {}
        for failure in self.failures:
            model, block = failure.split(": ", 1)
            by_model.setdefault(model, []).append(block)
        return "; ".join(f"{m} ({', '.join(blocks)})" for m, blocks in by_model.items())


class _Steps:
    """Named, timed steps with progress lines ``[elapsed] step ...`` (to ``progress``)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(f"[{time.perf_counter() - self.start:6.1f} s] {message}")

    @contextmanager
    def __call__(self, name: str, detail: str = "") -> Iterator[None]:
        self.say(f"{name}{': ' + detail if detail else ''} ...")
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        self.say(f"{name}: done in {self.timings[name]:.1f} s")


@dataclass
class _Fits:
    """Everything computed before rendering."""

    spans: pd.DataFrame
    latency_summary: LatencySummary
    latency: Any = None
    latency_table: pd.DataFrame | None = None
    transitions: Any = None
    transition_table: pd.DataFrame | None = None
    mixture: Any = None
    mixture_table: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    comparison_note: str = ""
    holdout: pd.DataFrame | None = None
    request: Any = None
    end_to_end_table: pd.DataFrame | None = None
    attribution_table: pd.DataFrame | None = None
    diagnostics: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, H.Figure] = field(default_factory=dict)


def _import_mixture() -> tuple[Any, Any] | None:
    """The mixture model and its plot, or None when this installation lacks them."""
    try:
        from bayesperf.models.mixture import MixtureModel
        from bayesperf.plots.mixture import plot_mixture
    except ImportError:
        return None
    return MixtureModel, plot_mixture


def write_report(
    traces: pd.DataFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    directory: str | os.PathLike[str] = DEFAULT_OUTPUT,
    options: ReportOptions | None = None,
    *,
    format: str = "auto",
    command: str | None = None,
    progress: Progress | None = None,
) -> ReportResult:
    """Read traces, fit the latency, transition and mixture models, and write a report.

    Writes into ``directory`` (created if needed): ``report.html`` (self-contained:
    tables and base64 PNG figures), the figures again as ``figures/*.png``, the tables
    ``latency_summary.csv``, ``transitions.csv``, ``mixture_summary.csv`` (and
    ``mixture_selection.csv`` for ``components="auto"``, ``comparison.csv`` when the
    comparison ran), ``diagnostics.csv``, and the fitted models ``latency.nc``,
    ``transitions.nc``, ``mixture.nc`` (:func:`bayesperf.load` reads them back).

    Parameters
    ----------
    traces : DataFrame, path, glob or sequence of them
        A canonical span table (as :func:`bayesperf.read_traces` returns) or trace
        files to read.
    directory : str or path, default "bayesperf-report"
        Output directory; the files an earlier report wrote there are removed first
        (a model skipped now leaves no stale file behind).
    options : ReportOptions, optional
        Models and sampler settings (default :class:`ReportOptions`).
    format : str, default "auto"
        Reader format for trace files.
    command : str, optional
        The command line, recorded in the provenance section.
    progress : callable, optional
        Receives one line per step start and end, with elapsed seconds.

    Returns
    -------
    ReportResult
        Files written, timings, the diagnostics and the failed checks. A model that
        cannot be fit on these data (a mixture on spans that fill too few bins) is
        reported in the page and in ``skipped``, not raised.

    Raises
    ------
    bayesperf.TraceFormatError
        Unreadable traces (the message names the file and the problem).
    ValueError
        Data with nothing to fit, or an unknown grouping column.

    Examples
    --------
    >>> from bayesperf.report import ReportOptions, write_report
    >>> result = write_report("traces/*.json", "out", ReportOptions.quick())  # doctest: +SKIP
    >>> result.html, result.converged                                         # doctest: +SKIP
    """
    from bayesperf.io import read_traces
    from bayesperf.models import ConvergenceWarning

    options = options or ReportOptions()
    out = Path(directory)
    steps = _Steps(progress)
    started = datetime.now(UTC)
    result = ReportResult(directory=out)

    with steps("read traces"):
        if isinstance(traces, pd.DataFrame):
            spans = traces
        else:
            spans = read_traces(traces, format=format)
        steps.say(
            f"{len(spans):,} spans, {spans[S.TRACE_ID].nunique():,} traces, "
            f"{spans[S.SERVICE].nunique():,} services"
        )
    with steps("summarise"):
        summary = summarize_latency(spans, by=options.by)
        if summary.n_groups == 0:
            raise ValueError("no spans with a usable latency were read: nothing to report")
        fits = _Fits(spans=spans, latency_summary=summary)
    _clear(out)

    # Convergence is reported in the page and by the exit code, not as warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _fit_latency(fits, options, steps, out, result)
        _check_holdout(fits, options, steps, result)
        _fit_transitions(fits, options, steps, out, result)
        E2E.fit(fits, options, steps, out, result)
        _fit_mixture(fits, options, steps, out, result)
        _compare(fits, options, steps, result)
    with steps("figures"):
        _draw(fits, options, out, result)
    with steps("write tables and HTML"):
        _write_tables(fits, out, result)
        # The page cannot time its own writing: that step is in the result and log only.
        page = _render(fits, options, result, command, started, dict(steps.timings))
        (out / "report.html").write_text(page, encoding="utf-8")
        result.files["report.html"] = out / "report.html"
    result.timings = steps.timings
    return result


def _clear(out: Path) -> None:
    """Create ``out`` and remove what an earlier report wrote there (no stale files)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    names = [*OUTPUT_FILES, *OPTIONAL_FILES, *(f"figures/{key}.png" for key in FIGURES)]
    for name in names:
        (out / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- models
def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _fit_latency(
    fits: _Fits, options: ReportOptions, steps: _Steps, out: Path, result: ReportResult
) -> None:
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import LatencyModel

    groups = _plural(fits.latency_summary.n_groups, "group")
    if options.family == "nonparametric":
        draws = f"{options.chains * options.draws:,} exact draws"
    else:
        draws = f"{options.chains} chains x {options.draws} draws (+{options.tune} tuning)"
    detail = f"{options.family}, {options.pooling} pooling, {groups}, {draws}"
    with steps("latency model", detail):
        model = LatencyModel(family=options.family, by=options.by, pooling=options.pooling)
        model.fit(fits.latency_summary, random_seed=options.seed, **options.sample_kwargs)
        result.files["latency.nc"] = model.save(out / "latency.nc")
        fits.latency = model
        fits.latency_table = model.summary(options.ci_prob)
        fits.diagnostics["latency"] = diagnose(model)


#: The held-out check needs at least this many traces (two halves with data).
HOLDOUT_MIN_TRACES = 20


def _check_holdout(
    fits: _Fits, options: ReportOptions, steps: _Steps, result: ReportResult
) -> None:
    """The latency model's P99 intervals against half of the traces it did not see.

    The same model is fit on half of the traces (split by a hash of the trace id) and
    predicts the other half's empirical P99 of every group with enough held-out spans
    (:func:`bayesperf.analysis.holdout.holdout_check`): a group whose held-out P99 falls
    outside the interval is one whose interval should not be trusted.
    """
    from bayesperf.analysis.holdout import MIN_TEST_SPANS, holdout_check, split_traces
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import LatencyModel

    spans = fits.spans
    n_traces = spans[S.TRACE_ID].nunique() if S.TRACE_ID in spans.columns else 0
    if n_traces < HOLDOUT_MIN_TRACES:
        result.skipped["held-out check"] = (
            f"{n_traces} traces: the check needs at least {HOLDOUT_MIN_TRACES}"
        )
        return
    with steps("held-out check", "fit on half of the traces, predict the other half's P99"):
        fit_half, test_half = split_traces(spans)
        model = LatencyModel(family=options.family, by=options.by, pooling=options.pooling)
        model.fit(fit_half, random_seed=options.seed, **options.sample_kwargs)
        fits.diagnostics["latency, held-out half"] = diagnose(model)
        table = holdout_check(
            model, test_half, fit_half, ci_prob=options.ci_prob, random_seed=options.seed
        )
        if len(table) == 0:
            result.skipped["held-out check"] = (
                f"no group has {MIN_TEST_SPANS} spans in the held-out half"
            )
            return
        fits.holdout = table


def _fit_transitions(
    fits: _Fits, options: ReportOptions, steps: _Steps, out: Path, result: ReportResult
) -> None:
    from bayesperf.models import TransitionModel

    with steps("transition model", f"{options.mode} mode, exact Dirichlet posterior"):
        model = TransitionModel(mode=options.mode).fit(fits.spans, random_seed=options.seed)
        result.files["transitions.nc"] = model.save(out / "transitions.nc")
        fits.transitions = model
        fits.transition_table = model.transition_probabilities(options.ci_prob)


def _fit_mixture(
    fits: _Fits, options: ReportOptions, steps: _Steps, out: Path, result: ReportResult
) -> None:
    from bayesperf.diagnostics import diagnose

    found = _import_mixture()
    if found is None:
        result.skipped["mixture"] = (
            "the mixture model is not available in this bayesperf installation"
        )
        steps.say(f"mixture model: skipped ({result.skipped['mixture']})")
        return
    mixture_cls = found[0]
    where = "all spans" if not options.mixture_by else f"by {', '.join(options.mixture_by)}"
    detail = f"K={options.components}, {where}"
    with steps("mixture model", detail):
        summary = (
            fits.latency_summary
            if options.mixture_by == options.by
            else summarize_latency(fits.spans, by=options.mixture_by)
        )
        model = mixture_cls(n_components=options.components, by=options.mixture_by)
        try:
            model.fit(summary, random_seed=options.seed, **options.sample_kwargs)
        except ValueError as exc:  # data a mixture cannot describe: say so, go on
            result.skipped["mixture"] = f"not fit: {exc}"
            steps.say(f"mixture model: {result.skipped['mixture']}")
            return
        result.files["mixture.nc"] = model.save(out / "mixture.nc")
        fits.mixture = model
        fits.mixture_table = model.summary(options.ci_prob)
        fits.diagnostics["mixture"] = diagnose(model)


def _compare(fits: _Fits, options: ReportOptions, steps: _Steps, result: ReportResult) -> None:
    """PSIS-LOO of the latency family against the mixture, on the mixture's cells.

    With the same grouping the two fitted models are compared directly; otherwise a
    one-distribution latency model of the same family (complete pooling: two
    parameters, a few seconds) is fit on the mixture's summary, so the cells match.
    """
    from bayesperf.diagnostics import compare, diagnose
    from bayesperf.models import LatencyModel

    mixture = fits.mixture
    if mixture is None:
        result.skipped["comparison"] = "no mixture fit to compare with"
        return
    with steps("model comparison", "PSIS-LOO, one span per unit"):
        name = f"mixture (K={mixture.k})"
        if tuple(mixture.by) == tuple(fits.latency.by):
            baseline, label = fits.latency, f"{options.family} (the latency model)"
            note = "Both fitted models score the same cells (same summary and grouping)."
        else:
            # One distribution of all spans: complete pooling for a parametric family;
            # a single group needs no pooling (and the nonparametric family has none).
            one = not mixture.by and options.family != "nonparametric"
            pooling = "complete" if one else options.pooling
            baseline = LatencyModel(family=options.family, by=mixture.by, pooling=pooling)
            baseline.fit(mixture.fit_summary, random_seed=options.seed, **options.sample_kwargs)
            label = f"{options.family} ({'one distribution' if not mixture.by else pooling})"
            ok = bool(diagnose(baseline)["ok"].all())
            note = (
                f"The {options.family} baseline is fit on the mixture's data "
                f"({'all spans' if not mixture.by else 'the same groups'}) so that both "
                f"score the same cells; its convergence checks "
                f"{'passed' if ok else 'FAILED (treat the comparison with care)'}."
            )
        try:
            baseline.compute_log_likelihood()
            if "log_likelihood" not in mixture.idata:
                mixture.compute_log_likelihood()
            fits.comparison = compare({label: baseline, name: mixture})
            fits.comparison_note = note
        except ValueError as exc:
            result.skipped["comparison"] = f"not comparable: {exc}"


# --------------------------------------------------------------------------- figures
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _add_figure(
    fits: _Fits,
    out: Path,
    result: ReportResult,
    key: str,
    draw: Callable[[], Any],
    caption: str,
) -> None:
    try:
        png = _png(draw())
    except ValueError as exc:  # e.g. nothing to draw: the page says why
        result.skipped[key] = str(exc)
        return
    filename = f"figures/{key}.png"
    (out / filename).write_bytes(png)
    result.files[filename] = out / filename
    fits.figures[key] = H.Figure(key, png, caption, filename)


def _worst_groups(table: pd.DataFrame, k: int) -> list[int]:
    """Positions of the ``k`` groups whose P99 the model reproduces worst (PPC p)."""
    groups = table.drop(index=table.index[-1])  # the last row is the overall one
    order = np.lexsort((-groups["n"].to_numpy(), groups["p99_ppc_p"].to_numpy()))
    return [int(i) for i in order[:k]]


#: Groups need this many spans to be shown as one a lognormal misdescribes.
MISFIT_MIN_SPANS = 50


def _least_lognormal_groups(summary: LatencySummary, k: int) -> list[int]:
    """Positions of the ``k`` groups one lognormal describes worst.

    The score is how far (in log) the empirical P99 is from the P99 of a lognormal with
    the group's own mean and sd of log-latency: large for multimodal and heavy-tailed
    groups, which are the ones to look at in the nonparametric model's histograms.
    """
    table = summary.to_frame()
    with np.errstate(divide="ignore", invalid="ignore"):
        lognormal_p99 = table["log_mean"] + 2.3263 * table["log_sd"]
        score = np.abs(np.log(table["p99"].to_numpy()) - lognormal_p99.to_numpy())
    score = np.where(np.isfinite(score) & (table["n"].to_numpy() >= MISFIT_MIN_SPANS), score, -1)
    order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[:k] if score[i] >= 0] or [int(order[0])]


def _draw(fits: _Fits, options: ReportOptions, out: Path, result: ReportResult) -> None:
    from bayesperf.plots import (
        plot_ppc_grid,
        plot_quantile_forest,
        plot_transition_graph,
        plot_transition_heatmap,
    )

    ci = f"{100 * options.ci_prob:.10g}%"
    latency = fits.latency
    n_groups = len(latency.groups)
    top = FOREST_TOP if n_groups > FOREST_TOP else None
    _add_figure(
        fits,
        out,
        result,
        "p99_forest",
        lambda: plot_quantile_forest(latency, q=0.99, ci_prob=options.ci_prob, top=top),
        f"Posterior P99 latency per group: median and {ci} credible interval; hollow "
        "diamonds are the empirical P99 of the spans"
        + (f" (the {FOREST_TOP} slowest of {n_groups} groups)" if top else "")
        + ".",
    )
    if latency.nonparametric:
        worst = _least_lognormal_groups(fits.latency_summary, PPC_PANELS)
        which = (
            f"the {len(worst)} groups one lognormal describes worst (empirical P99 "
            "furthest from that of a lognormal with the group's mean and sd of log-latency)"
        )
    else:
        worst = _worst_groups(fits.latency_table, PPC_PANELS)
        which = (
            f"the {len(worst)} groups whose empirical P99 the model reproduces worst "
            "(smallest P99 PPC p-values)"
        )
    _add_figure(
        fits,
        out,
        result,
        "ppc_worst",
        lambda: plot_ppc_grid(
            latency, worst, max_groups=PPC_PANELS, ci_prob=options.ci_prob, random_seed=0
        ),
        f"Posterior predictive histograms of {which}: observed spans per fitting cell "
        f"against the {ci} predictive interval.",
    )
    _add_figure(
        fits,
        out,
        result,
        "transition_graph",
        lambda: plot_transition_graph(fits.transitions, ci_prob=options.ci_prob),
        f"Service transition graph ({options.mode} mode): edge width is the posterior "
        f"mean probability, labels the mean and {ci} credible interval.",
    )
    n_states = len(fits.transitions.states)
    if n_states <= HEATMAP_MAX_STATES:
        _add_figure(
            fits,
            out,
            result,
            "transition_heatmap",
            lambda: plot_transition_heatmap(fits.transitions, ci_prob=options.ci_prob),
            "Transition matrix: posterior mean probability of each source → target "
            "(blank: never observed; (unseen): all never-observed targets together).",
        )
    else:
        result.skipped["transition_heatmap"] = (
            f"{n_states} states, more than {HEATMAP_MAX_STATES}: the graph shows the busiest edges"
        )
    E2E.draw(fits, options, lambda *a: _add_figure(fits, out, result, *a))
    if fits.mixture is not None:
        plot_mixture = _import_mixture()[1]
        _add_figure(
            fits,
            out,
            result,
            "mixture",
            lambda: plot_mixture(fits.mixture, ci_prob=options.ci_prob),
            f"Latency histogram of all spans, coloured by most probable component, with "
            f"the posterior mixture density ({ci} band) and each weighted component.",
        )


# ---------------------------------------------------------------------------- tables
def _write_tables(fits: _Fits, out: Path, result: ReportResult) -> None:
    def write(name: str, frame: pd.DataFrame, index: bool = True) -> None:
        frame.to_csv(out / name, index=index)
        result.files[name] = out / name

    write("latency_summary.csv", fits.latency_table)
    write("transitions.csv", fits.transition_table, index=False)
    for name, frame in E2E.tables(fits).items():
        write(name, frame)
    if fits.mixture_table is not None:
        write("mixture_summary.csv", fits.mixture_table)
        selection = fits.mixture.selection
        if selection is not None:
            write("mixture_selection.csv", selection)
    if fits.holdout is not None:
        write("holdout_check.csv", fits.holdout)
    if fits.comparison is not None:
        comparison = fits.comparison.copy()
        comparison.index.name = "model"
        write("comparison.csv", comparison)
    frames = [table.reset_index().assign(model=model) for model, table in fits.diagnostics.items()]
    diagnostics = pd.concat(frames, ignore_index=True)
    diagnostics = diagnostics[["model", *[c for c in diagnostics.columns if c != "model"]]]
    write("diagnostics.csv", diagnostics, index=False)
    result.diagnostics = diagnostics
    result.failures = [
        f"{row.model}: {row.block}" for row in diagnostics.itertuples() if not row.ok
    ]


# ------------------------------------------------------------------------------ HTML
def _fig_or_missing(fits: _Fits, result: ReportResult, key: str) -> str:
    if key in fits.figures:
        return H.figure(fits.figures[key])
    return H.missing_figure(key, result.skipped.get(key, "not drawn"))


def _interval_columns(table: pd.DataFrame, stats: dict[str, str]) -> pd.DataFrame:
    """``median [lower, upper]`` text columns for each ``stat`` prefix."""
    return pd.DataFrame(
        {
            label: [
                H.fmt_interval(m, lo, hi)
                for m, lo, hi in zip(
                    table[f"{stat}_median"],
                    table[f"{stat}_lower"],
                    table[f"{stat}_upper"],
                    strict=True,
                )
            ]
            for stat, label in stats.items()
        },
        index=table.index,
    )


def _data_section(fits: _Fits) -> str:
    spans = fits.spans
    report = spans.attrs.get("read_report")
    rows: list[tuple[str, Any]] = []
    if report is not None:
        rows += [("format", report.format)]
        listed = report.rows()
        # Always say how many were dropped, also when none were.
        dropped = ("dropped (all reasons)", sum(report.dropped.values()))
        rows += [*listed[:2], dropped, *listed[2:]]
    rows += [
        ("spans", len(spans)),
        ("traces", int(spans[S.TRACE_ID].nunique())),
        ("services", int(spans[S.SERVICE].nunique())),
        (
            "latency groups (" + ", ".join(fits.latency_summary.by or ["all"]) + ")",
            fits.latency_summary.n_groups,
        ),
    ]
    if S.START_TIME in spans and spans[S.START_TIME].notna().any():
        first, last = spans[S.START_TIME].min(), spans[S.START_TIME].max()
        rows.append(("time window (UTC)", f"{first:%Y-%m-%d %H:%M:%S} – {last:%H:%M:%S}"))
    frame = pd.DataFrame(
        {"value": [H.fmt_num(v) if not isinstance(v, str) else v for _, v in rows]},
        index=pd.Index([label for label, _ in rows], name="read"),
    )
    parts = [
        H.note(
            "What was read: every record is either kept or dropped with a reason "
            "(records = kept + dropped); flagged rows are kept but incomplete."
        ),
        H.table(frame),
    ]
    if report is not None and report.sources:
        shown = report.sources[:10]
        more = len(report.sources) - len(shown)
        text = ", ".join(Path(s).name for s in shown) + (f" and {more} more" if more else "")
        parts.append(H.note(f"sources: {text}"))
    return "\n".join(parts)


def _latency_section(fits: _Fits, options: ReportOptions, result: ReportResult) -> str:
    table = fits.latency_table
    ci = f"{100 * options.ci_prob:.10g}%"
    body = table.iloc[:-1].sort_values("p99_median", ascending=False)
    ordered = pd.concat([body, table.iloc[-1:]])
    shown = pd.DataFrame(
        {
            "n": ordered["n"],
            "empirical P50": ordered["empirical_p50"],
            "empirical P99": ordered["empirical_p99"],
        }
    )
    shown = shown.join(
        _interval_columns(ordered, {"p50": "P50 ms", "p95": "P95 ms", "p99": "P99 ms"})
    )
    bad: dict[str, np.ndarray] = {}
    if not fits.latency.nonparametric:  # in-sample PPC: vacuous for the nonparametric model
        shown["P99 PPC p"] = ordered["p99_ppc_p"]
        bad["P99 PPC p"] = (shown["P99 PPC p"] < 0.01).to_numpy()
    outside = np.zeros(len(shown), dtype=bool)
    if fits.holdout is not None:
        check = fits.holdout.reindex(ordered.index)
        shown["held-out P99 ms"] = check["observed"]
        shown["held-out check"] = check["covered"].map({True: "in", False: "outside"}).fillna("")
        outside = (shown["held-out check"] == "outside").to_numpy()
        bad["held-out check"] = outside
    misfit = bad.get("P99 PPC p", np.zeros(len(shown), dtype=bool))
    parts = [
        H.note(
            f"{_model_name(options)}: posterior median [{ci} equal-tailed credible interval] "
            "in ms; the last row pools all spans (posterior means are in "
            "latency_summary.csv)."
            + (
                " A P99 PPC p-value below 0.01 (red) means the family does not reproduce "
                "that group's empirical P99: see the mixture section."
                if "P99 PPC p" in bad
                else ""
            )
        ),
        _holdout_note(fits, options),
        _fig_or_missing(fits, result, "p99_forest"),
        H.table(
            shown,
            bad_cells=bad,
            max_rows=HTML_MAX_ROWS,
            table_id="latency-table",
        ),
        _fig_or_missing(fits, result, "ppc_worst"),
    ]
    if misfit[:-1].any():
        parts.insert(
            1,
            H.note(f"{int(misfit[:-1].sum())} group(s) misfit at P99 (PPC p < 0.01).", "note bad"),
        )
    if outside.any():
        names = ", ".join(str(ix) for ix in shown.index[outside][:5])
        parts.insert(
            1,
            H.note(
                f"{int(outside.sum())} group(s) whose held-out P99 falls outside the predicted "
                f"interval: {names}{' ...' if outside.sum() > 5 else ''}.",
                "note bad",
            ),
        )
    return "\n".join(p for p in parts if p)


def _model_name(options: ReportOptions) -> str:
    """What the latency model is, in words, for the page."""
    if options.family == "nonparametric":
        return (
            "Nonparametric model (bayesperf's default): each group's own spans with "
            "Dirichlet weights on their spacings, and tails beyond the data from a Pareto "
            "tail whose index is pooled across groups"
        )
    return f"Hierarchical {options.family} model, {options.pooling} pooling"


def _holdout_note(fits: _Fits, options: ReportOptions) -> str:
    """The held-out check in one sentence (or nothing when it did not run)."""
    check = fits.holdout
    if check is None:
        return ""
    ci = f"{100 * options.ci_prob:.10g}%"
    covered = int(check["covered"].sum())
    return H.note(
        "Held-out check: the same model fit on half of the traces (split by trace id) "
        f"predicted the empirical P99 of the other half for {len(check)} group(s) with at "
        f"least 20 held-out spans; {covered} of {len(check)} fall inside the {ci} "
        f"predictive interval (expect about {options.ci_prob:.0%}). Groups outside "
        "(red) have intervals not to trust."
    )


def _transition_section(fits: _Fits, options: ReportOptions, result: ReportResult) -> str:
    table = fits.transition_table
    ci = f"{100 * options.ci_prob:.10g}%"
    shown = table[["source", "target", "count"]].copy()
    shown[f"probability [{ci} CI]"] = [
        H.fmt_interval(m, lo, hi)
        for m, lo, hi in zip(table["median"], table["lower"], table["upper"], strict=True)
    ]
    shown["mean"] = table["mean"]
    return "\n".join(
        [
            H.note(
                f"Exact Dirichlet posterior of the transitions ({options.mode} mode; "
                f"{int(table['count'].sum()):,} transitions between "
                f"{len(fits.transitions.states)} states). (unseen) is each source's "
                "probability of targets never observed from it."
            ),
            _fig_or_missing(fits, result, "transition_graph"),
            _fig_or_missing(fits, result, "transition_heatmap"),
            H.table(shown, index=False, max_rows=HTML_MAX_ROWS, table_id="transition-table"),
        ]
    )


def _mixture_section(fits: _Fits, options: ReportOptions, result: ReportResult) -> str:
    if fits.mixture is None:
        return H.missing_figure("mixture", f"mixture model {result.skipped['mixture']}")
    model, table = fits.mixture, fits.mixture_table
    ci = f"{100 * options.ci_prob:.10g}%"
    shown = _interval_columns(
        table,
        {
            "weight": f"weight [{ci} CI]",
            "median_ms": f"median ms [{ci} CI]",
            "sigma": f"sigma of log latency [{ci} CI]",
        },
    )
    where = "all spans" if not model.grouped else f"groups by {', '.join(model.by)}"
    parts = [
        H.note(
            f"Mixture of {model.k} lognormal components fit on {where} (binned "
            "likelihood); component 0 is the fastest."
        ),
        _fig_or_missing(fits, result, "mixture"),
        H.table(shown, table_id="mixture-table"),
    ]
    selection = model.selection
    if selection is not None:
        columns = [
            c
            for c in ("elpd", "se", "elpd_diff", "dse", "p", "weight", "r_hat_max", "divergences")
            if c in selection.columns
        ]
        chosen = selection["chosen"].astype(bool).to_numpy()
        parts += [
            H.note(
                "Choice of K (components='auto'): span-weighted PSIS-LOO of each "
                "candidate; the chosen K (green) is the smallest within 2 dse of the best."
            ),
            H.table(
                selection[columns],
                formats={"r_hat_max": _fmt_rhat},
                row_class=["chosen" if c else "" for c in chosen],
                table_id="selection-table",
            ),
        ]
    return "\n".join(parts)


def _comparison_section(fits: _Fits, result: ReportResult) -> str:
    if fits.comparison is None:
        reason = result.skipped.get("comparison", "not run")
        return H.note(f"Model comparison skipped: {reason}.")
    table = fits.comparison
    columns = [
        c
        for c in ("rank", "elpd", "se", "elpd_diff", "dse", "p_worse", "weight", "diag_elpd")
        if c in table.columns
    ]
    frame = table[columns].copy()
    frame.index.name = "model"
    return "\n".join(
        [
            H.note(
                "Expected log predictive density per span (PSIS-LOO, count-weighted "
                "cells), best first: elpd_diff and its standard error dse against the "
                "best; weight is the stacking weight. " + fits.comparison_note
            ),
            H.table(frame, table_id="comparison-table"),
        ]
    )


def _fmt_rhat(x: float) -> str:
    # Three decimals: 1.013 must not print as a passing-looking "1.01".
    return "" if not np.isfinite(x) else f"{x:.3f}"


def _diagnostics_section(fits: _Fits, result: ReportResult) -> str:
    from bayesperf.diagnostics import ESS_MIN, RHAT_MAX

    parts = [
        H.note(
            f"Checks per parameter block: R-hat ≤ {RHAT_MAX}, bulk and tail ESS ≥ "
            f"{ESS_MIN}, no divergences; failing blocks are red. The transition model's "
            "posterior is exact (conjugate), so it has nothing to check."
        )
    ]
    diag = result.diagnostics
    for model, table in diag.groupby("model", sort=False):
        table = table.set_index("block").drop(columns="model")
        bad = {
            "r_hat_max": (table["r_hat_max"] > RHAT_MAX).to_numpy(),
            "ess_bulk_min": (table["ess_bulk_min"] < ESS_MIN).to_numpy(),
            "ess_tail_min": (table["ess_tail_min"] < ESS_MIN).to_numpy(),
            "divergences": (table["divergences"] > 0).to_numpy(),
        }
        status = "pass" if table["ok"].all() else "FAIL"
        parts.append(f"<h3>{model}: {status}</h3>")
        parts.append(
            H.table(
                table,
                formats={"r_hat_max": _fmt_rhat},
                row_class=["" if ok else "fail" for ok in table["ok"]],
                bad_cells=bad,
                table_id=f"diagnostics-{model}",
            )
        )
    return "\n".join(parts)


def _versions() -> dict[str, str]:
    out = {}
    for name in ("bayesperf", "pymc", "nutpie", "arviz", "numpy", "pandas", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _provenance_section(
    options: ReportOptions,
    result: ReportResult,
    command: str | None,
    started: datetime,
    timings: dict[str, float],
) -> str:
    versions = _versions()
    settings = asdict(options)
    settings["by"] = ", ".join(options.by) or "all"
    settings["mixture_by"] = ", ".join(options.mixture_by) or "all"
    rows = [
        ("command", command or "(Python API)"),
        ("started (UTC)", f"{started:%Y-%m-%d %H:%M:%S}"),
        ("python", f"{platform.python_version()} ({sys.platform})"),
        *((f"version: {k}", v) for k, v in versions.items()),
        *((f"option: {k}", str(v)) for k, v in settings.items()),
        (
            "sampler",
            f"NUTS ({options.nuts_sampler}), {options.chains} chains × {options.draws} "
            f"draws after {options.tune} tuning steps, seed {options.seed} (report "
            f"defaults: 2 × 1000 + 500; --quick: {QUICK['chains']} × {QUICK['draws']} + "
            f"{QUICK['tune']}; the models' own defaults are 4 × 1000 + 1000)",
        ),
    ]
    info = pd.DataFrame({"value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows]))
    steps = pd.DataFrame(
        {"seconds": [round(v, 2) for v in timings.values()]},
        index=pd.Index(list(timings), name="step"),
    )
    steps.loc["total before writing"] = round(sum(timings.values()), 2)
    return "\n".join(
        [
            H.table(info.rename_axis("item"), table_id="provenance-table"),
            H.note("Time per step:"),
            H.table(steps, table_id="timings-table"),
        ]
    )


def _render(
    fits: _Fits,
    options: ReportOptions,
    result: ReportResult,
    command: str | None,
    started: datetime,
    timings: dict[str, float],
) -> str:
    version = _versions()["bayesperf"]
    if result.failures:
        banner = (
            '<div class="banner fail">Convergence checks failed: '
            + html.escape(result.failures_text())
            + ' — see <a href="#diagnostics">diagnostics</a>; more draws (or fewer '
            "components) usually help. Intervals from these fits are not reliable.</div>"
        )
    else:
        banner = '<div class="banner ok">All convergence checks passed.</div>'
    spans = fits.spans
    subtitle = (
        f"{len(spans):,} spans · {spans[S.TRACE_ID].nunique():,} traces · "
        f"{fits.latency_summary.n_groups} latency groups · bayesperf {html.escape(version)}"
    )
    sections = [
        ("data", "Data", _data_section(fits)),
        ("latency", "Latency", _latency_section(fits, options, result)),
        ("transitions", "Transitions", _transition_section(fits, options, result)),
        (
            "end-to-end",
            "End-to-end",
            E2E.section(fits, options, result, lambda key: _fig_or_missing(fits, result, key)),
        ),
        ("mixture", "Latency mixture", _mixture_section(fits, options, result)),
        ("comparison", "Model comparison", _comparison_section(fits, result)),
        ("diagnostics", "Diagnostics", _diagnostics_section(fits, result)),
        (
            "provenance",
            "Provenance",
            _provenance_section(options, result, command, started, timings),
        ),
    ]
    return H.page(
        title="bayesperf report",
        subtitle=subtitle,
        sections=sections,
        banner=banner,
        version=version,
    )
