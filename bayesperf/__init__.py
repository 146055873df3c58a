"""bayesperf: Bayesian performance models of microservices from distributed traces."""

from bayesperf import datasets
from bayesperf.errors import NotFittedError, TraceFormatError, TraceReadWarning
from bayesperf.io import ReadReport, read_traces
from bayesperf.simulate import simulate_traces
from bayesperf.summaries import (
    LatencySummary,
    LogBins,
    TraceTransitionCounts,
    TransitionCounts,
    count_trace_transitions,
    count_transitions,
    summarize_latency,
)

__all__ = [
    "LatencyModel",
    "LatencySummary",
    "LogBins",
    "MicroserviceInteractionModel",
    "MixtureModel",
    "NotFittedError",
    "OverdispersedTransitionModel",
    "PerformanceAnalyzer",
    "ReadReport",
    "RequestModel",
    "TraceFormatError",
    "TraceReadWarning",
    "TraceTransitionCounts",
    "TransitionCounts",
    "TransitionModel",
    "compare",
    "count_trace_transitions",
    "count_transitions",
    "datasets",
    "diagnose",
    "load",
    "loo",
    "read_traces",
    "simulate_traces",
    "summarize_latency",
]
__version__ = "0.1.0"

# Models pull in PyMC (seconds to import): load them on first use, so reading and
# summarising traces (and the CLI) stay fast.
_LAZY = {
    "MicroserviceInteractionModel": "bayesperf.interaction",
    "PerformanceAnalyzer": "bayesperf.analysis",
    "LatencyModel": "bayesperf.models",
    "MixtureModel": "bayesperf.models",
    "OverdispersedTransitionModel": "bayesperf.models",
    "TransitionModel": "bayesperf.models",
    "RequestModel": "bayesperf.models",
    "load": "bayesperf.models",
    "compare": "bayesperf.diagnostics",
    "diagnose": "bayesperf.diagnostics",
    "loo": "bayesperf.diagnostics",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bayesperf' has no attribute {name!r}")
