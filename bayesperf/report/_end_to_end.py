"""The report's "End-to-end" section: request model fit, figures, tables, HTML.

Kept apart from :mod:`bayesperf.report._build` (which calls these steps) so the
end-to-end parts of the report live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bayesperf import schema as S
from bayesperf.report import _html as H

#: Figure keys of the section.
FIGURES = ("end_to_end", "attribution")
#: Files the section writes (when the request model could be fit).
FILES = ("end_to_end.csv", "attribution.csv", "request.nc")
#: Services shown in the attribution bars.
ATTRIBUTION_TOP = 10
#: Columns needed to rebuild requests from spans.
NEEDED = (S.SPAN_ID, S.PARENT_ID, S.START_TIME)


def fit(fits: Any, options: Any, steps: Any, out: Path, result: Any) -> None:
    """Fit the request model; a table without parent links or roots is skipped, saying why."""
    from bayesperf.analysis.critical_path import attribute
    from bayesperf.diagnostics import diagnose
    from bayesperf.models import LatencyModel, RequestModel

    spans = fits.spans
    missing = [c for c in NEEDED if c not in spans.columns or spans[c].isna().all()]
    if missing:
        result.skipped["end-to-end"] = f"the spans have no {', '.join(missing)}"
        steps.say(f"request model: skipped ({result.skipped['end-to-end']})")
        return
    n_draws = min(200, options.draws * options.chains)
    detail = f"call structure + {options.family} self times, {n_draws} draws x "
    detail += f"{options.e2e_requests:,} requests"
    with steps("request model", detail):
        latency = LatencyModel(family=options.family, pooling=options.pooling)
        model = RequestModel(latency, n_draws=n_draws, n_requests=options.e2e_requests)
        try:
            model.fit(spans, random_seed=options.seed, **options.sample_kwargs)
        except ValueError as exc:  # e.g. no root span: no request to model
            result.skipped["end-to-end"] = f"not fit: {exc}"
            steps.say(f"request model: {result.skipped['end-to-end']}")
            return
        result.files["request.nc"] = model.save(out / "request.nc")
        fits.request = model
        fits.end_to_end_table = model.summary(options.ci_prob)
        fits.attribution_table = attribute(model, ci_prob=options.ci_prob)
        fits.diagnostics["request"] = diagnose(model.latency)


def draw(fits: Any, options: Any, add_figure: Callable[..., None]) -> None:
    """The predicted-vs-observed intervals and the attribution bars."""
    if fits.request is None:
        return
    from bayesperf.plots import plot_attribution, plot_end_to_end

    ci = f"{100 * options.ci_prob:.10g}%"
    add_figure(
        "end_to_end",
        lambda: plot_end_to_end(fits.end_to_end_table),
        f"End-to-end P50/P95/P99 per entry point: posterior median and {ci} credible "
        "interval of the request model (call structure and self times), against the "
        "observed quantiles (hollow diamonds).",
    )
    add_figure(
        "attribution",
        lambda: plot_attribution(fits.attribution_table, top=ATTRIBUTION_TOP),
        "Where to optimise first: the drop of the entry point's P99 if a service's self "
        f"time fell 10% (posterior mean bar, median and {ci} interval), for the busiest "
        "entry point.",
    )


def tables(fits: Any) -> dict[str, pd.DataFrame]:
    """The section's CSV tables."""
    if fits.request is None:
        return {}
    return {"end_to_end.csv": fits.end_to_end_table, "attribution.csv": fits.attribution_table}


def section(fits: Any, options: Any, result: Any, figure: Callable[[str], str]) -> str:
    """The HTML of the section."""
    if fits.request is None:
        reason = result.skipped.get("end-to-end", "not run")
        return H.note(f"End-to-end model skipped: {reason}.")
    ci = f"{100 * options.ci_prob:.10g}%"
    table = fits.end_to_end_table
    shown = pd.DataFrame({"requests": table["n"]}, index=table.index)
    for stat in ("p50", "p95", "p99"):
        shown[f"{stat.upper()} observed"] = table[f"empirical_{stat}"]
        shown[f"{stat.upper()} predicted [{ci}]"] = [
            H.fmt_interval(m, lo, hi)
            for m, lo, hi in zip(
                table[f"{stat}_median"], table[f"{stat}_lower"], table[f"{stat}_upper"], strict=True
            )
        ]
    attribution = fits.attribution_table
    ranked = pd.DataFrame(
        {
            "P99 today (ms)": attribution["today_ms"],
            "P99 drop (ms)": attribution["reduction_ms"],
            f"drop [{ci}]": [
                H.fmt_interval(m, lo, hi)
                for m, lo, hi in zip(
                    attribution["reduction_ms_median"],
                    attribution["reduction_ms_lower"],
                    attribution["reduction_ms_upper"],
                    strict=True,
                )
            ],
            "P(top 3)": attribution["p_top3"],
        },
        index=attribution.index,
    )
    skew = fits.request.skew
    parts = [
        H.note(
            "Per entry point (root service and operation), the end-to-end latency predicted "
            "from the call graph: each span's self time (its duration minus its children's) "
            f"from the hierarchical {options.family} model by (service, operation), call "
            "patterns from an exact Dirichlet posterior, requests simulated per posterior "
            f"draw ({fits.request.n_requests:,} x {fits.request.n_draws} draws). Children "
            f"moved inside their parent for clock skew: {int(skew.get('shifted', 0)):,}; "
            f"clipped: {int(skew.get('clipped', 0)):,}; not awaited (detached): "
            f"{int(skew.get('detached', 0)):,}."
        ),
        figure("end_to_end"),
        H.table(shown, table_id="end-to-end-table"),
        figure("attribution"),
        H.note(
            "Each service's self time 10% shorter in turn, on the same simulated requests: "
            "the drop of each entry point's P99 (attribution.csv has every service)."
        ),
        H.table(
            ranked.groupby(level=[0, 1], sort=False).head(ATTRIBUTION_TOP),
            table_id="attribution-table",
        ),
    ]
    return "\n".join(parts)
