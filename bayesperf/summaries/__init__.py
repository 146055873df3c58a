"""Summaries: spans reduced to small, mergeable per-group statistics."""

from bayesperf.summaries.bins import DEFAULT_BINS, LogBins
from bayesperf.summaries.latency import LatencySummary, summarize_latency
from bayesperf.summaries.transitions import TransitionCounts, count_transitions

__all__ = [
    "DEFAULT_BINS",
    "LatencySummary",
    "LogBins",
    "TransitionCounts",
    "count_transitions",
    "summarize_latency",
]
