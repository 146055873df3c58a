"""How many CPU cores this process may use: for sampler chains and diagnostic threads.

A module of its own, below everything that uses it (``bayesperf.models`` for the
sampler defaults, ``bayesperf.diagnostics`` for its threads), so neither imports the
other for it.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on.

    PyMC's default for ``cores`` assumes half of ``cpu_count()`` are hyper-threads:
    on a 2-core machine it ran all chains on one core, doubling sampling time.

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
