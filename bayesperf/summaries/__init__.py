"""Summaries: spans reduced to small, mergeable per-group statistics."""

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
