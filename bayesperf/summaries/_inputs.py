"""Where summaries of inputs other than a pandas table are computed.

:func:`~bayesperf.summarize_latency` and :func:`~bayesperf.count_transitions` reduce a
pandas table themselves and hand a Parquet or CSV path or a Dask DataFrame to
:mod:`bayesperf.summaries.backends`, which is built on those two functions. So that the
summary modules do not import the module built on them (an import circle), the backends
register their entry points here when ``bayesperf.summaries`` is imported, and the
summary modules look them up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_HANDLERS: dict[str, Callable[..., Any]] = {}


def register(name: str, handler: Callable[..., Any]) -> None:
    """Make ``handler`` the summariser of non-pandas inputs for the function ``name``."""
    _HANDLERS[name] = handler


def handler(name: str) -> Callable[..., Any]:
    """The summariser of non-pandas inputs registered for the function ``name``.

    Examples
    --------
    >>> import bayesperf.summaries
    >>> handler("summarize_latency").__name__
    'summarize_latency_any'
    """
    try:
        return _HANDLERS[name]
    except KeyError:
        raise RuntimeError(
            f"no summariser of Parquet, CSV or Dask inputs is registered for {name!r}: "
            "import bayesperf.summaries, whose backends module registers them"
        ) from None
