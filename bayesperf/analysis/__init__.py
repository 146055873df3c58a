"""Posterior answers to the questions users ask of their traces.

:class:`PerformanceAnalyzer` serves the seed notebook's calls
(``analyze_latency_distribution``, ``identify_hotspots``, ``detect_anomalies``) and adds
``compare_windows`` and ``slo_probability``; each answer comes from a fitted
:class:`~bayesperf.models.LatencyModel` posterior.

Modules: :mod:`~bayesperf.analysis.analyzer` (the class, configuration and the model
cache), :mod:`~bayesperf.analysis.hotspots`, :mod:`~bayesperf.analysis.anomalies`,
:mod:`~bayesperf.analysis.regression` (window comparison and SLOs).
"""

from bayesperf.analysis.analyzer import PerformanceAnalyzer
from bayesperf.analysis.anomalies import benjamini_hochberg, tail_probabilities

__all__ = ["PerformanceAnalyzer", "benjamini_hochberg", "tail_probabilities"]
