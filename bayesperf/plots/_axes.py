"""Axis helpers every figure module shares: log-millisecond axes, units, new axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Colours (matplotlib's default cycle) of the posterior and of the data.
POSTERIOR_COLOR = "C0"
DATA_COLOR = "0.1"
EMPIRICAL_COLOR = "C3"


def quantile_name(q: float) -> str:
    """``0.99`` -> ``"P99"``, ``0.999`` -> ``"P99.9"``."""
    return f"P{100 * q:.10g}"


def format_ms(x: float) -> str:
    """A latency in ms as text with a readable unit: ``0.001`` -> ``"1 µs"``."""
    if x < 1:
        return f"{x * 1000:.3g} µs"
    if x < 1000:
        return f"{x:.3g} ms"
    return f"{x / 1000:.3g} s"


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def log_ticks(
    lo: float, hi: float, avoid: Sequence[float] = (), room: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled and unlabelled tick positions of a log axis from ``lo`` to ``hi``.

    Labels decades when at least two fit; narrower axes also label 1-2-5, 1-2-3-5 or
    all 1..9 multiples, so that every axis has readable numbers. Positions within
    ``room`` decades of an ``avoid`` position (a stand-in's label) are not labelled.
    """
    d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = 10.0 ** np.arange(d0, d1 + 1)
    every = np.unique((decades[:, None] * np.arange(1, 10)[None, :]).ravel())
    every = every[(every >= lo) & (every <= hi)]
    if avoid:
        far = np.abs(np.log10(every[:, None] / np.asarray(avoid)[None, :])).min(axis=1)
        every = every[far >= room]
    mantissa = np.round(every / 10.0 ** np.floor(np.log10(every)), 6)
    labelled = every
    for digits, enough in (((1,), 2), ((1, 2, 5), 3), ((1, 2, 3, 5), 2)):
        candidate = every[np.isin(mantissa, digits)]
        if candidate.size >= enough:
            labelled = candidate
            break
    return labelled, np.setdiff1d(every, labelled)


def set_log_ms_axis(
    ax: Axes,
    lo: float,
    hi: float,
    extra: dict[float, str] | None = None,
    scale: tuple[float, float] | None = None,
) -> None:
    """Log x axis over ``[lo, hi]`` ms with plain-number ticks.

    Real ticks are placed within ``scale`` (default: the whole axis); ``extra`` maps
    positions of stand-in cells outside it to their labels.
    """
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    extra = extra or {}
    # Real ticks too close to a stand-in's label would collide with it.
    room = 0.08 * math.log10(hi / lo)
    major, minor = log_ticks(*(scale or (lo, hi)), avoid=list(extra), room=room)
    positions = np.array([*major, *extra])
    labels = [f"{x:.10g}" for x in major] + list(extra.values())
    order = np.argsort(positions)
    ax.set_xticks(positions[order], [labels[i] for i in order])
    ax.xaxis.set_minor_locator(FixedLocator(minor))
    ax.xaxis.set_minor_formatter(NullFormatter())
