"""The ``bayesperf report`` job: one self-contained HTML report of a set of traces.

:func:`write_report` reads traces, fits the hierarchical latency model, the exact
transition model and the latency mixture, compares the latency family with the mixture
by PSIS-LOO, and writes ``report.html`` (tables and inline figures: P99 forest plot,
posterior predictive checks of the worst-fitting groups, transition graph and heat map,
mixture histogram, diagnostics with failures highlighted, provenance), the tables as
CSV and the fitted models as ``.nc``.

Examples
--------
>>> from bayesperf.report import ReportOptions, write_report
>>> from bayesperf.datasets import online_boutique_path
>>> result = write_report(online_boutique_path(), "bayesperf-report")  # doctest: +SKIP
>>> result.html                  # bayesperf-report/report.html         # doctest: +SKIP
>>> write_report(spans, "out", ReportOptions.quick(components="auto"))  # doctest: +SKIP
"""

from bayesperf.report._build import (
    DEFAULT_OUTPUT,
    FIGURES,
    OUTPUT_FILES,
    QUICK,
    SECTIONS,
    ReportOptions,
    ReportResult,
    write_report,
)

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
