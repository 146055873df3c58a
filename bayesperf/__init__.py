"""bayesperf: Bayesian performance models of microservices from distributed traces."""

from bayesperf.errors import NotFittedError, TraceFormatError
from bayesperf.io import ReadReport, read_traces

__all__ = ["NotFittedError", "ReadReport", "TraceFormatError", "read_traces"]
__version__ = "0.1.0"
