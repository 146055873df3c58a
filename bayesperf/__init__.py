"""bayesperf: Bayesian performance models of microservices from distributed traces."""

from bayesperf import datasets
from bayesperf.errors import NotFittedError, TraceFormatError
from bayesperf.io import ReadReport, read_traces
from bayesperf.simulate import simulate_traces
from bayesperf.summaries import (
    LatencySummary,
    LogBins,
    TransitionCounts,
    count_transitions,
    summarize_latency,
)

__all__ = [
    "LatencySummary",
    "LogBins",
    "NotFittedError",
    "ReadReport",
    "TraceFormatError",
    "TransitionCounts",
    "count_transitions",
    "datasets",
    "read_traces",
    "simulate_traces",
    "summarize_latency",
]
__version__ = "0.1.0"
