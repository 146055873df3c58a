"""numba's ``njit`` with its on-disk cache in the user's cache folder.

``cache=True`` alone writes compiled kernels beside their source files when that folder
is writable. For an installed (non-editable) copy that is ``site-packages/bayesperf``,
and pip's uninstall does not know those files: they outlive it and leave a bare
``bayesperf/`` folder there, a namespace package that shadows a later editable install
of the project in every process not started from the repository (a Jupyter kernel, for
one). :func:`cached_njit` sends the cache to ``$XDG_CACHE_HOME/bayesperf/numba``
(``~/.cache/bayesperf/numba``) instead, unless ``NUMBA_CACHE_DIR`` already names one,
and leaves numba's setting for other packages as it found it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

__all__ = ["cache_dir", "cached_njit"]


def cache_dir() -> Path:
    """Where :func:`cached_njit` keeps compiled kernels.

    Examples
    --------
    >>> cache_dir().parts[-2:]
    ('bayesperf', 'numba')
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesperf" / "numba"


def cached_njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, cached in :func:`cache_dir`.

    numba picks a function's cache folder when it is decorated, from
    ``numba.config.CACHE_DIR``; that setting is ours only for the decoration.

    Examples
    --------
    >>> from bayesperf.models._spacing_kernels import group_order  # @cached_njit(nogil=True)
    >>> Path(group_order._cache.cache_path).is_relative_to(cache_dir())
    True
    """

    def decorate(function: Callable[..., Any]) -> Any:
        user_setting = numba.config.CACHE_DIR
        if not user_setting:
            numba.config.CACHE_DIR = str(cache_dir())
        try:
            return numba.njit(cache=True, **options)(function)
        finally:
            numba.config.CACHE_DIR = user_setting

    return decorate
