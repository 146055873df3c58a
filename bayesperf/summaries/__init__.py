"""Summaries: spans reduced to small, mergeable per-group statistics."""

# Registers the Parquet, CSV and Dask inputs of summarize_latency and count_transitions.
from bayesperf.summaries import backends as _backends  # noqa: F401
from bayesperf.summaries.bins import DEFAULT_BINS, LogBins
from bayesperf.summaries.latency import LatencySummary, summarize_latency
from bayesperf.summaries.transitions import (
    TraceTransitionCounts,
    TransitionCounts,
    count_trace_transitions,
    count_transitions,
)

__all__ = [
    "DEFAULT_BINS",
    "LatencySummary",
    "LogBins",
    "TraceTransitionCounts",
    "TransitionCounts",
    "count_trace_transitions",
    "count_transitions",
    "summarize_latency",
]
