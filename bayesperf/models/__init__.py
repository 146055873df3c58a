"""Bayesian models fit on summaries; results are ``xarray.DataTree`` posteriors."""

from bayesperf.models._base import BayesModel, ConvergenceWarning, load
from bayesperf.models.latency import LatencyModel, LatencyPriors
from bayesperf.models.transitions import TransitionModel, TransitionPrior

__all__ = [
    "BayesModel",
    "ConvergenceWarning",
    "LatencyModel",
    "LatencyPriors",
    "TransitionModel",
    "TransitionPrior",
    "load",
]
