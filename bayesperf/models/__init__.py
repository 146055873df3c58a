"""Bayesian models fit on summaries; results are ``xarray.DataTree`` posteriors."""

from bayesperf.models._base import BayesModel, ConvergenceWarning, load
from bayesperf.models.calls import CallModel
from bayesperf.models.latency import LatencyModel, LatencyPriors
from bayesperf.models.mixture import MixtureModel, MixturePriors
from bayesperf.models.overdispersed import ConcentrationPrior, OverdispersedTransitionModel
from bayesperf.models.request import RequestModel
from bayesperf.models.transitions import TransitionModel, TransitionPrior

__all__ = [
    "BayesModel",
    "CallModel",
    "ConcentrationPrior",
    "ConvergenceWarning",
    "LatencyModel",
    "LatencyPriors",
    "MixtureModel",
    "MixturePriors",
    "OverdispersedTransitionModel",
    "RequestModel",
    "TransitionModel",
    "TransitionPrior",
    "load",
]
