"""Simulated traces with known ground truth, for parameter-recovery tests.

A :class:`CallGraph` says which services call which, how often, and how long each
caller→callee call takes. :func:`simulate_traces` draws traces from it and returns the
canonical span table (exactly as a reader would, through the shared table builder)
together with the exact truth: per-pair latency quantiles and means, branching
probabilities and the Markov-chain transition probabilities that follow from the spec.

The generative model
--------------------
* Every trace enters at ``START`` and calls the root service once; the root span's
  ``caller`` is missing in the table (as in read tables) and its truth row is keyed
  ``(START, root)``.
* A span of service ``s`` makes each of its outgoing :class:`Call` s independently: with
  probability ``probability`` the call is made, and then it is made ``repeat`` times in a
  row (a loop over three cart items is ``repeat=3``). The behaviour of ``s`` does not
  depend on who called it, so the service sequence is a Markov chain.
* A span's ``latency`` is its **own** duration, drawn from the latency distribution of
  its caller→callee edge (zero with probability ``zero_prob``, as tracers report spans
  shorter than their clock resolution). It is *not* the sum of its children, so the
  truth of a pair is exactly its distribution. With ``inclusive=True`` a span's latency
  is its own duration plus the (inclusive) latencies of all its children; the per-pair
  quantiles are then no longer analytic (reported as NaN; the means stay exact).
* ``error`` is an independent Bernoulli draw per span with the edge's ``error_prob``.
* Traces arrive as a Poisson process (``arrival_rate`` per second) from ``start``. A
  parent's children run one after the other in spec order (repeats consecutive): the
  first starts 1 µs after its parent, each next one 1 µs after the previous one ends.
  In the default (exclusive) mode start times only fix the order of spans: children can
  end after their parent does.

Examples
--------
>>> from bayesperf.simulate import online_boutique_graph, simulate_traces
>>> sim = simulate_traces(online_boutique_graph(), 1_000, random_seed=1)
>>> spans, truth = sim
>>> list(spans.columns)[:4]
['trace_id', 'span_id', 'parent_id', 'service']
>>> float(truth.latency.loc[("frontend", "recommendationservice"), "median"])
4.0

"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from bayesperf import schema as S
from bayesperf.io._table import RawSpans, build_span_table

__all__ = [
    "Call",
    "CallGraph",
    "Gamma",
    "LatencyDistribution",
    "LogNormal",
    "Mixture",
    "SimulatedTraces",
    "Truth",
    "Weibull",
    "ZeroInflated",
    "online_boutique_graph",
    "random_call_graph",
    "simulate_traces",
]

FloatArray = NDArray[np.float64]

#: Source name of simulated tables in their ReadReport.
SOURCE = "<simulated>"
#: Gap between a parent's start and its first child, and between siblings (ns).
GAP_NS = 1_000
#: Quantiles reported in the latency truth.
TRUTH_QUANTILES: dict[str, float] = {"median": 0.5, "p95": 0.95, "p99": 0.99}


# --------------------------------------------------------------------------------------
# Latency distributions
# --------------------------------------------------------------------------------------


def _positive(owner: str, name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")
    return number


def _shaped(values: FloatArray, scalar: bool) -> float | FloatArray:
    return float(values) if scalar else values


class LatencyDistribution(ABC):
    """A distribution of span durations in milliseconds (support ``[0, inf)``).

    Subclasses are frozen dataclasses. ``cdf`` and ``quantile`` accept a scalar (and
    then return a float) or an array.
    """

    #: Short family name used in truth tables.
    family: ClassVar[str] = "distribution"

    @abstractmethod
    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""

    @abstractmethod
    def _cdf(self, x: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _quantile(self, q: FloatArray) -> FloatArray: ...

    @property
    @abstractmethod
    def mean(self) -> float:
        """Mean duration (ms)."""

    def cdf(self, x: ArrayLike) -> float | FloatArray:
        """Probability that a duration is at most ``x`` ms."""
        arr = np.asarray(x, dtype=np.float64)
        out = np.where(arr < 0, 0.0, self._cdf(np.maximum(arr, 0.0)))
        return _shaped(out, arr.ndim == 0)

    def quantile(self, q: ArrayLike) -> float | FloatArray:
        """Exact ``q``-quantile (ms): the smallest ``x`` with ``cdf(x) >= q``.

        Raises
        ------
        ValueError
            If a ``q`` is outside ``[0, 1]``.

        """
        arr = np.asarray(q, dtype=np.float64)
        if np.any(~((arr >= 0) & (arr <= 1))):
            raise ValueError(f"{self!r}: quantile levels must be in [0, 1], got {q!r}")
        return _shaped(self._quantile(arr), arr.ndim == 0)

    @property
    def median(self) -> float:
        """Median duration (ms)."""
        return float(self.quantile(0.5))


@dataclass(frozen=True)
class LogNormal(LatencyDistribution):
    """Log-normal durations: ``log(latency)`` is normal with mean ``log(median_ms)``.

    Parameters
    ----------
    median_ms : float
        Median duration (ms), > 0.
    sigma : float
        Standard deviation of ``log(latency)``, > 0.

    Examples
    --------
    >>> d = LogNormal(median_ms=10.0, sigma=0.5)
    >>> d.median
    10.0
    >>> round(d.quantile(0.95), 3)
    22.76
    >>> round(d.cdf(10.0), 3)
    0.5

    """

    family: ClassVar[str] = "lognormal"
    median_ms: float
    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "median_ms", _positive("LogNormal", "median_ms", self.median_ms))
        object.__setattr__(self, "sigma", _positive("LogNormal", "sigma", self.sigma))

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""
        return rng.lognormal(math.log(self.median_ms), self.sigma, size)

    def _cdf(self, x: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):
            return special.ndtr((np.log(x) - math.log(self.median_ms)) / self.sigma)

    def _quantile(self, q: FloatArray) -> FloatArray:
        return self.median_ms * np.exp(self.sigma * special.ndtri(q))

    @property
    def mean(self) -> float:
        """Mean duration (ms): ``median * exp(sigma**2 / 2)``."""
        return self.median_ms * math.exp(self.sigma**2 / 2)


@dataclass(frozen=True)
class Gamma(LatencyDistribution):
    """Gamma durations with a given mean and shape (scale = ``mean_ms / shape``).

    Parameters
    ----------
    mean_ms : float
        Mean duration (ms), > 0.
    shape : float
        Shape parameter, > 0 (1 is exponential; large is nearly normal).

    Examples
    --------
    >>> d = Gamma(mean_ms=4.0, shape=1.0)
    >>> round(d.median, 4)  # exponential: mean * log 2
    2.7726

    """

    family: ClassVar[str] = "gamma"
    mean_ms: float
    shape: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean_ms", _positive("Gamma", "mean_ms", self.mean_ms))
        object.__setattr__(self, "shape", _positive("Gamma", "shape", self.shape))

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""
        return rng.gamma(self.shape, self.mean_ms / self.shape, size)

    def _cdf(self, x: FloatArray) -> FloatArray:
        return special.gammainc(self.shape, x * self.shape / self.mean_ms)

    def _quantile(self, q: FloatArray) -> FloatArray:
        return special.gammaincinv(self.shape, q) * self.mean_ms / self.shape

    @property
    def mean(self) -> float:
        """Mean duration (ms)."""
        return self.mean_ms


@dataclass(frozen=True)
class Weibull(LatencyDistribution):
    """Weibull durations: ``cdf(x) = 1 - exp(-(x / scale_ms) ** shape)``.

    Parameters
    ----------
    scale_ms : float
        Scale (ms), > 0: the 63.2 % quantile.
    shape : float
        Shape, > 0 (below 1: heavy tail; 1: exponential).

    Examples
    --------
    >>> d = Weibull(scale_ms=2.0, shape=1.5)
    >>> round(float(d.cdf(2.0)), 4)
    0.6321

    """

    family: ClassVar[str] = "weibull"
    scale_ms: float
    shape: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_ms", _positive("Weibull", "scale_ms", self.scale_ms))
        object.__setattr__(self, "shape", _positive("Weibull", "shape", self.shape))

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""
        return self.scale_ms * rng.weibull(self.shape, size)

    def _cdf(self, x: FloatArray) -> FloatArray:
        return -np.expm1(-((x / self.scale_ms) ** self.shape))

    def _quantile(self, q: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):
            return self.scale_ms * (-np.log1p(-q)) ** (1 / self.shape)

    @property
    def mean(self) -> float:
        """Mean duration (ms): ``scale * Gamma(1 + 1/shape)``."""
        return self.scale_ms * math.gamma(1 + 1 / self.shape)


@dataclass(frozen=True)
class Mixture(LatencyDistribution):
    """A finite mixture of latency distributions (multimodal pairs: cache hit / miss).

    Parameters
    ----------
    components : sequence of (weight, distribution)
        Positive weights summing to 1 (within 1e-6) and their distributions.

    Notes
    -----
    ``quantile`` is exact up to floating point: it solves ``cdf(x) = q`` by Brent's
    method, bracketed by the smallest and largest component quantiles at ``q``.

    Examples
    --------
    >>> d = Mixture([(0.8, LogNormal(1.0, 0.3)), (0.2, LogNormal(20.0, 0.3))])
    >>> x = d.quantile(0.9)
    >>> round(float(d.cdf(x)), 12)
    0.9

    """

    family: ClassVar[str] = "mixture"
    components: Sequence[tuple[float, LatencyDistribution]]

    def __post_init__(self) -> None:
        try:
            parts = tuple((w, d) for w, d in self.components)
        except (TypeError, ValueError):
            raise ValueError(
                f"Mixture: components must be (weight, distribution) pairs, got {self.components!r}"
            ) from None
        if not parts:
            raise ValueError("Mixture: needs at least one component")
        checked = []
        for i, (w, d) in enumerate(parts):
            weight = _positive("Mixture", f"weight of component {i}", w)
            if not isinstance(d, LatencyDistribution):
                raise ValueError(f"Mixture: component {i} is {d!r}, not a LatencyDistribution")
            checked.append((weight, d))
        total = sum(w for w, _ in checked)
        if abs(total - 1) > 1e-6:
            raise ValueError(f"Mixture: weights must sum to 1, they sum to {total!r}")
        object.__setattr__(self, "components", tuple(checked))

    @property
    def weights(self) -> FloatArray:
        """Component weights."""
        return np.array([w for w, _ in self.components])

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""
        which = rng.choice(len(self.components), size=size, p=self.weights / self.weights.sum())
        out = np.empty(size)
        for k, (_, dist) in enumerate(self.components):
            mask = which == k
            out[mask] = dist.sample(rng, int(mask.sum()))
        return out

    def _cdf(self, x: FloatArray) -> FloatArray:
        return sum(w * np.asarray(d.cdf(x)) for w, d in self.components)

    def _quantile(self, q: FloatArray) -> FloatArray:
        flat = np.atleast_1d(q).ravel()
        out = np.empty(flat.shape)
        for i, level in enumerate(flat):
            out[i] = self._solve(float(level))
        return out.reshape(np.shape(q))

    def _solve(self, level: float) -> float:
        if level <= 0:
            return 0.0
        if level >= 1:
            return math.inf
        bounds = [float(d.quantile(level)) for _, d in self.components]
        lo, hi = min(bounds), max(bounds)
        if float(self.cdf(lo)) >= level:
            return lo
        if lo == hi:
            return hi
        return optimize.brentq(
            lambda x: float(self.cdf(x)) - level,
            lo,
            hi,
            xtol=1e-13 * hi,
            rtol=4 * np.finfo(float).eps,
            maxiter=500,
        )

    @property
    def mean(self) -> float:
        """Mean duration (ms)."""
        return sum(w * d.mean for w, d in self.components)


@dataclass(frozen=True)
class ZeroInflated(LatencyDistribution):
    """``base`` with an extra point mass at zero (spans below the clock resolution).

    :class:`Call` builds this from its ``zero_prob``; it is public so that the law of a
    pair can be written down and evaluated on its own.

    Parameters
    ----------
    base : LatencyDistribution
        Law of the non-zero durations.
    zero_prob : float
        Probability of an exact zero, in ``[0, 1)``.

    Examples
    --------
    >>> d = ZeroInflated(LogNormal(1.0, 0.5), zero_prob=0.1)
    >>> d.quantile(0.05), round(float(d.cdf(0.0)), 3)
    (0.0, 0.1)

    """

    family: ClassVar[str] = "zero-inflated"
    base: LatencyDistribution
    zero_prob: float

    def __post_init__(self) -> None:
        if not isinstance(self.base, LatencyDistribution):
            raise ValueError(f"ZeroInflated: base is {self.base!r}, not a LatencyDistribution")
        z = float(self.zero_prob)
        if not (0 <= z < 1):
            raise ValueError(f"ZeroInflated: zero_prob must be in [0, 1), got {self.zero_prob!r}")
        object.__setattr__(self, "zero_prob", z)

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Draw ``size`` durations (ms) with ``rng``."""
        out = self.base.sample(rng, size)
        out[rng.random(size) < self.zero_prob] = 0.0
        return out

    def _cdf(self, x: FloatArray) -> FloatArray:
        return self.zero_prob + (1 - self.zero_prob) * np.asarray(self.base.cdf(x))

    def _quantile(self, q: FloatArray) -> FloatArray:
        z = self.zero_prob
        inner = np.clip((q - z) / (1 - z), 0.0, 1.0)
        return np.where(q <= z, 0.0, np.asarray(self.base.quantile(inner)))

    @property
    def mean(self) -> float:
        """Mean duration (ms)."""
        return (1 - self.zero_prob) * self.base.mean


# --------------------------------------------------------------------------------------
# Call graph spec
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One outgoing call of a service: to ``callee``, how often, and how long it takes.

    Values are checked when the call is placed in a :class:`CallGraph`, so that errors
    can name the whole caller→callee edge.

    Parameters
    ----------
    callee : str
        Service called.
    probability : float
        Probability, in ``[0, 1]``, that a span of the caller makes this call (each call
        of a span is an independent Bernoulli draw: the branching probability).
    latency : LatencyDistribution
        Distribution of the callee span's own duration (ms) on this edge.
    repeat : int, default 1
        When the call is made, it is made this many times in a row.
    zero_prob : float, default 0.0
        Probability that a span's duration is exactly zero (below clock resolution).
    error_prob : float, default 0.0
        Probability that a span is flagged as an error.
    operation : str, optional
        Operation name of the callee spans; defaults to ``"<callee>.call"``.

    Examples
    --------
    >>> Call("productcatalogservice", 1.0, LogNormal(0.5, 0.4), repeat=3).expected_calls
    3.0

    """

    callee: str
    probability: float
    latency: LatencyDistribution
    repeat: int = 1
    zero_prob: float = 0.0
    error_prob: float = 0.0
    operation: str | None = None

    @property
    def law(self) -> LatencyDistribution:
        """Distribution of the callee span's duration, including ``zero_prob``."""
        if self.zero_prob > 0:
            return ZeroInflated(self.latency, self.zero_prob)
        return self.latency

    @property
    def expected_calls(self) -> float:
        """Expected number of callee spans per caller span: ``probability * repeat``."""
        return float(self.probability) * int(self.repeat)

    @property
    def operation_name(self) -> str:
        """Operation name used in the span table."""
        return self.operation if self.operation is not None else f"{self.callee}.call"


def _check_probability(where: str, name: str, value: object, *, below_one: bool = False) -> None:
    numeric = isinstance(value, int | float | np.floating | np.integer)
    number = math.nan if isinstance(value, bool) or not numeric else float(value)
    if not (0 <= number and (number < 1 if below_one else number <= 1)):
        interval = "[0, 1)" if below_one else "[0, 1]"
        raise ValueError(f"{where}: {name} {value!r} is not in {interval}")


@dataclass(frozen=True)
class CallGraph:
    """Which services call which: the spec that :func:`simulate_traces` draws from.

    Parameters
    ----------
    root : str
        Service every request enters (the edge ``START -> root``).
    root_latency : LatencyDistribution
        Own duration (ms) of root spans.
    calls : mapping of str to sequence of Call
        Every service, with its outgoing calls in the order they are made. Services that
        call nothing are listed with an empty sequence. The graph must be acyclic and
        each caller may list a callee once (use ``repeat`` or :class:`Mixture` instead).
    root_operation : str, default "request"
        Operation name of root spans.
    root_error_prob : float, default 0.0
        Error probability of root spans.

    Raises
    ------
    ValueError
        Naming the offending service or edge: unknown services, probabilities outside
        ``[0, 1]``, ``repeat`` below 1, missing latency, duplicate edges, cycles.

    Examples
    --------
    >>> g = CallGraph(
    ...     root="api",
    ...     root_latency=LogNormal(5.0, 0.5),
    ...     calls={"api": [Call("db", 0.7, LogNormal(1.0, 0.3))], "db": []},
    ... )
    >>> g.services
    ('api', 'db')
    >>> g.expected_spans()["db"]
    0.7

    """

    root: str
    root_latency: LatencyDistribution
    calls: Mapping[str, Sequence[Call]] = field(hash=False)
    root_operation: str = "request"
    root_error_prob: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.calls, Mapping):
            raise ValueError(f"calls must be a mapping service -> [Call, ...], got {self.calls!r}")
        frozen: dict[str, tuple[Call, ...]] = {}
        for service, outgoing in self.calls.items():
            if not isinstance(service, str) or not service:
                raise ValueError(f"service names must be non-empty strings, got {service!r}")
            if service in (S.START, S.END):
                raise ValueError(f"service name {service!r} is reserved for the Markov chain")
            if isinstance(outgoing, Call | str) or not isinstance(outgoing, Sequence):
                raise ValueError(
                    f"service {service!r}: outgoing calls must be a list of Call, got {outgoing!r}"
                )
            frozen[service] = tuple(outgoing)
        object.__setattr__(self, "calls", MappingProxyType(frozen))
        if self.root not in frozen:
            raise ValueError(
                f"root service {self.root!r} is not a key of calls (services: {sorted(frozen)})"
            )
        if not isinstance(self.root_latency, LatencyDistribution):
            raise ValueError(
                f"edge START -> {self.root!r}: root_latency {self.root_latency!r} is not a "
                "LatencyDistribution"
            )
        _check_probability(f"edge START -> {self.root!r}", "root_error_prob", self.root_error_prob)
        for caller, outgoing in frozen.items():
            seen: set[str] = set()
            for call in outgoing:
                self._check_call(caller, call, frozen)
                if call.callee in seen:
                    raise ValueError(
                        f"edge {caller!r} -> {call.callee!r} is listed twice; use repeat= or "
                        "a Mixture latency instead"
                    )
                seen.add(call.callee)
        self._check_acyclic(frozen)

    @staticmethod
    def _check_call(caller: str, call: object, services: Mapping[str, object]) -> None:
        if not isinstance(call, Call):
            raise ValueError(f"service {caller!r}: {call!r} is not a Call")
        where = f"edge {caller!r} -> {call.callee!r}"
        if call.callee not in services:
            raise ValueError(
                f"{where}: unknown service {call.callee!r} (every service must be a key of "
                "calls; list leaves with [])"
            )
        _check_probability(where, "probability", call.probability)
        _check_probability(where, "zero_prob", call.zero_prob, below_one=True)
        _check_probability(where, "error_prob", call.error_prob)
        if not isinstance(call.repeat, int | np.integer) or isinstance(call.repeat, bool):
            raise ValueError(f"{where}: repeat must be an integer, got {call.repeat!r}")
        if call.repeat < 1:
            raise ValueError(f"{where}: repeat must be >= 1, got {call.repeat!r}")
        if not isinstance(call.latency, LatencyDistribution):
            raise ValueError(f"{where}: latency {call.latency!r} is not a LatencyDistribution")

    @staticmethod
    def _check_acyclic(calls: Mapping[str, Sequence[Call]]) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in calls:
            if state.get(start):
                continue
            path: list[str] = [start]
            stack: list[Iterator[Call]] = [iter(calls[start])]
            state[start] = 1
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                    continue
                target = nxt.callee
                if state.get(target) == 1:
                    cycle = [*path[path.index(target) :], target]
                    raise ValueError(f"the call graph has a cycle: {' -> '.join(cycle)}")
                if not state.get(target):
                    state[target] = 1
                    path.append(target)
                    stack.append(iter(calls[target]))

    @property
    def services(self) -> tuple[str, ...]:
        """All services, in declaration order."""
        return tuple(self.calls)

    @property
    def entry(self) -> Call:
        """The ``START -> root`` edge as a :class:`Call`."""
        return Call(
            self.root,
            1.0,
            self.root_latency,
            error_prob=self.root_error_prob,
            operation=self.root_operation,
        )

    def edges(self) -> list[tuple[str, Call]]:
        """``(caller, call)`` for every edge, ``START -> root`` first, then in spec order."""
        return [(S.START, self.entry)] + [(s, c) for s in self.calls for c in self.calls[s]]

    def topological_order(self) -> tuple[str, ...]:
        """Services reachable from the root, every caller before its callees."""
        reachable = {self.root}
        frontier = [self.root]
        while frontier:
            for call in self.calls[frontier.pop()]:
                if call.callee not in reachable:
                    reachable.add(call.callee)
                    frontier.append(call.callee)
        indegree = dict.fromkeys(reachable, 0)
        for service in reachable:
            for call in self.calls[service]:
                indegree[call.callee] += 1
        order: list[str] = []
        ready = [s for s in self.calls if s in reachable and indegree[s] == 0]
        while ready:
            service = ready.pop(0)
            order.append(service)
            for call in self.calls[service]:
                indegree[call.callee] -= 1
                if indegree[call.callee] == 0:
                    ready.append(call.callee)
        return tuple(order)

    def expected_spans(self) -> dict[str, float]:
        """Return the expected number of spans of each service per trace (0 if unreachable)."""
        visits = dict.fromkeys(self.calls, 0.0)
        visits[self.root] = 1.0
        for service in self.topological_order():
            for call in self.calls[service]:
                visits[call.callee] += visits[service] * call.expected_calls
        return visits


# --------------------------------------------------------------------------------------
# Truth and result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """The exact ground truth of a simulation.

    Attributes
    ----------
    graph : CallGraph
        The spec the traces were drawn from.
    latency : pandas.DataFrame
        Indexed by ``(caller, callee)`` (the root pair is ``(START, root)``); columns
        ``distribution`` (the exact law of the pair's span latency, including
        ``zero_prob``), ``family``, ``operation``, ``zero_prob``, ``error_prob``,
        ``median``, ``p95``, ``p99``, ``mean`` (ms), ``count`` (spans realised) and
        ``expected_count``. With ``inclusive=True`` the quantiles are NaN (not analytic)
        and ``mean`` is the exact mean of the inclusive latency.
    transitions : pandas.DataFrame
        One row per edge, plus ``START -> root`` and ``service -> END`` for every
        service. Columns: ``source``, ``target``, ``probability`` (branching probability
        of the edge; 1 for ``START -> root``; for ``-> END`` the probability that a span
        of the source makes no call), ``repeat``, ``calls_per_span`` (expected
        transitions source→target per span of source), ``calls_probability`` (the
        exact "calls"-mode Markov transition probability, see Notes), ``count``
        (realised transitions) and ``expected_count``.
    n_traces : int
        Traces simulated.
    inclusive : bool
        Whether span latencies include their children.

    Notes
    -----
    "Calls" mode is that of ``bayesperf.count_transitions(spans, mode="calls")``: one
    transition ``caller -> callee`` per span (``START -> root`` per trace) and one
    ``service -> END`` per span that made no call (a leaf of the call tree). Per span of
    ``s`` the expected number of ``s -> t`` transitions is ``probability * repeat`` and
    of ``s -> END`` it is ``prod(1 - probability)`` over the calls of ``s``;
    ``calls_probability`` normalises these per source, which is the limit of the
    empirical transition frequencies. The ``count`` column equals those counts exactly.

    """

    graph: CallGraph
    latency: pd.DataFrame
    transitions: pd.DataFrame
    n_traces: int
    inclusive: bool = False


@dataclass(frozen=True)
class SimulatedTraces:
    """Output of :func:`simulate_traces`: the span table and its truth.

    Unpacks as ``spans, truth = simulate_traces(...)``.

    Attributes
    ----------
    spans : pandas.DataFrame
        The canonical span table (:data:`bayesperf.schema.SPAN_COLUMNS`), with a
        :class:`~bayesperf.io.report.ReadReport` in ``attrs["read_report"]``.
    truth : Truth
        Exact per-pair latency and transition truth.

    """

    spans: pd.DataFrame
    truth: Truth

    @property
    def graph(self) -> CallGraph:
        """The spec the traces were drawn from."""
        return self.truth.graph

    def __iter__(self) -> Iterator[pd.DataFrame | Truth]:
        return iter((self.spans, self.truth))


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """Spans of one edge, created together (all repeats)."""

    edge: int
    trace: NDArray[np.int64]
    parent: NDArray[np.int64]  # global index of the parent span, -1 for roots
    rows: NDArray[np.int64]  # row of the parent in its service's span list
    slot: NDArray[np.int64]  # position among the parent's child slots
    latency: FloatArray
    error: NDArray[np.bool_]
    offset: int = 0  # global index of the first span


def simulate_traces(
    graph: CallGraph,
    n_traces: int,
    *,
    random_seed: int | np.random.Generator | None,
    start: str | datetime | pd.Timestamp = "2024-01-01T00:00:00Z",
    arrival_rate: float = 100.0,
    inclusive: bool = False,
) -> SimulatedTraces:
    """Draw traces from a call graph, with their exact ground truth.

    Generation is vectorised per edge (numpy draws for all spans of a service at once),
    so cost grows with the number of spans, not with Python loops over traces.

    Parameters
    ----------
    graph : CallGraph
        The spec; see the module docstring for the generative model.
    n_traces : int
        Number of traces (requests), >= 1.
    random_seed : int, numpy.random.Generator or None
        Seed; the same seed gives an identical table. ``None`` draws fresh entropy
        (not reproducible), and must be passed explicitly.
    start : str, datetime or pandas.Timestamp, default "2024-01-01T00:00:00Z"
        Time of the first arrival; naive times are UTC.
    arrival_rate : float, default 100.0
        Mean traces per second (Poisson arrivals).
    inclusive : bool, default False
        If True, a span's latency is its own duration plus its children's latencies
        (then per-pair quantiles are not analytic and are NaN in the truth).

    Returns
    -------
    SimulatedTraces
        ``spans``: the canonical span table, built by the same code as a read table
        (format ``"simulated"``), rows sorted by trace and start time, ``span_id`` the
        0-based position of the span in its trace (the root is ``"0"``); ``truth``.

    Raises
    ------
    ValueError
        For a bad ``n_traces`` or ``arrival_rate``, or a graph that is not a CallGraph.

    Examples
    --------
    >>> sim = simulate_traces(online_boutique_graph(), 200, random_seed=7)
    >>> sim.spans["caller"].isna().sum()  # one root per trace
    np.int64(200)
    >>> sim.truth.latency.loc[("checkoutservice", "paymentservice"), "family"]
    'lognormal'

    """
    if not isinstance(graph, CallGraph):
        raise ValueError(f"graph must be a CallGraph, got {type(graph).__name__}")
    if not isinstance(n_traces, int | np.integer) or isinstance(n_traces, bool) or n_traces < 1:
        raise ValueError(f"n_traces must be a positive integer, got {n_traces!r}")
    n_traces = int(n_traces)
    rate = _positive("simulate_traces", "arrival_rate", arrival_rate)
    rng = np.random.default_rng(random_seed)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t0_ns = int(t0.as_unit("ns").value)

    edges = graph.edges()
    edge_id = {(caller, call.callee): i for i, (caller, call) in enumerate(edges)}
    laws = [call.law for _, call in edges]
    order = graph.topological_order()

    # Pass 1 (callers before callees): which calls are made, own durations and errors.
    everyone = np.arange(n_traces, dtype=np.int64)
    root = _Chunk(
        edge=0,
        trace=everyone,
        parent=np.full(n_traces, -1, np.int64),
        rows=everyone,
        slot=np.zeros(n_traces, np.int64),
        latency=laws[0].sample(rng, n_traces),
        error=rng.random(n_traces) < graph.root_error_prob,
    )
    chunks: list[_Chunk] = [root]
    incoming: dict[str, list[_Chunk]] = {graph.root: [root]}
    outgoing: dict[str, list[_Chunk]] = {}
    total = n_traces
    for service in order:
        index = _span_index(incoming[service])
        traces = np.concatenate([c.trace for c in incoming[service]])
        base = 0
        outgoing[service] = []
        for call in graph.calls[service]:
            i = edge_id[(service, call.callee)]
            made = np.flatnonzero(rng.random(len(index)) < call.probability)
            r = int(call.repeat)
            size = len(made) * r
            chunk = _Chunk(
                edge=i,
                trace=np.repeat(traces[made], r),
                parent=np.repeat(index[made], r),
                rows=np.repeat(made, r),
                slot=base + np.tile(np.arange(r, dtype=np.int64), len(made)),
                latency=laws[i].sample(rng, size),
                error=rng.random(size) < call.error_prob,
                offset=total,
            )
            total += size
            base += r
            chunks.append(chunk)
            outgoing[service].append(chunk)
            incoming.setdefault(call.callee, []).append(chunk)

    trace = np.concatenate([c.trace for c in chunks])
    parent = np.concatenate([c.parent for c in chunks])
    edge = np.concatenate([np.full(len(c.latency), c.edge, np.int64) for c in chunks])
    latency = np.concatenate([c.latency for c in chunks])
    error = np.concatenate([c.error for c in chunks])

    # Pass 2 (children before parents): inclusive latencies. A chunk's children were all
    # created after it, so walking the chunks backwards finalises each before it is used.
    if inclusive:
        for c in reversed(chunks[1:]):
            np.add.at(latency, c.parent, latency[c.offset : c.offset + len(c.latency)])

    # Pass 3 (callers before callees): start times. Children of a span run in slot order,
    # each GAP_NS after the previous one ended (the first GAP_NS after the parent began).
    start_ns = np.empty(total, np.int64)
    gaps = rng.exponential(1e9 / rate, n_traces)
    gaps[0] = 0.0
    start_ns[:n_traces] = t0_ns + np.round(np.cumsum(gaps)).astype(np.int64)
    lat_ns = np.round(latency * 1e6).astype(np.int64)
    for service in order:
        kids = outgoing[service]
        index = _span_index(incoming[service])
        width = sum(int(call.repeat) for call in graph.calls[service])
        busy = np.zeros((len(index), width), np.int64)
        for c in kids:
            busy[c.rows, c.slot] = lat_ns[c.offset : c.offset + len(c.latency)] + GAP_NS
        before = np.cumsum(busy, axis=1) - busy
        for c in kids:
            start_ns[c.offset : c.offset + len(c.latency)] = (
                start_ns[index[c.rows]] + GAP_NS + before[c.rows, c.slot]
            )

    spans = _table(edges, n_traces, trace, parent, edge, start_ns, latency, error)
    truth = _truth(graph, edges, laws, n_traces, inclusive, spans_edge=edge, parent=parent)
    return SimulatedTraces(spans=spans, truth=truth)


def _span_index(chunks: list[_Chunk]) -> NDArray[np.int64]:
    """Global indices of the spans in these chunks, in order."""
    return np.concatenate([np.arange(c.offset, c.offset + len(c.latency)) for c in chunks])


def _table(
    edges: list[tuple[str, Call]],
    n_traces: int,
    trace: NDArray[np.int64],
    parent: NDArray[np.int64],
    edge: NDArray[np.int64],
    start_ns: NDArray[np.int64],
    latency: FloatArray,
    error: NDArray[np.bool_],
) -> pd.DataFrame:
    """Sort spans by trace and start time, name them, and build the canonical table."""
    total = len(parent)
    order = np.lexsort((start_ns, trace))
    rank = np.empty(total, np.int64)
    rank[order] = np.arange(total)
    counts = np.bincount(trace, minlength=n_traces)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(total) - first[trace[order]]  # position in trace, sorted rows
    parent_sorted = parent[order]
    has_parent = parent_sorted >= 0
    parent_position = np.where(has_parent, position[rank[np.maximum(parent_sorted, 0)]], 0)

    width = max(len(f"{n_traces - 1:x}"), 8)
    trace_names = pa.array([f"{t:0{width}x}" for t in range(n_traces)], pa.large_string())
    position_names = pa.array([str(k) for k in range(int(counts.max()))], pa.large_string())
    callers = [None if caller == S.START else caller for caller, _ in edges]
    edge_sorted = edge[order]

    def strings(names: pa.Array | list[str | None], codes: NDArray[np.int64], mask=None):
        values = names if isinstance(names, pa.Array) else pa.array(names, pa.large_string())
        return pd.Series(values.take(pa.array(codes, mask=mask)), dtype="str")

    frame = pd.DataFrame(
        {
            S.TRACE_ID: strings(trace_names, trace[order]),
            S.SPAN_ID: strings(position_names, position),
            S.PARENT_ID: strings(position_names, parent_position, mask=~has_parent),
            S.SERVICE: strings([c.callee for _, c in edges], edge_sorted),
            S.OPERATION: strings([c.operation_name for _, c in edges], edge_sorted),
            S.CALLER: strings(callers, edge_sorted),
            S.CALLEE: strings([c.callee for _, c in edges], edge_sorted),
            S.START_TIME: pd.Series(start_ns[order]),
            S.LATENCY: pd.Series(latency[order]),
            S.ERROR: pd.Series(error[order]),
        }
    )
    return build_span_table([RawSpans(frame, source=SOURCE)], format="simulated")


def _truth(
    graph: CallGraph,
    edges: list[tuple[str, Call]],
    laws: list[LatencyDistribution],
    n_traces: int,
    inclusive: bool,
    *,
    spans_edge: NDArray[np.int64],
    parent: NDArray[np.int64],
) -> Truth:
    visits = graph.expected_spans()
    counts = np.bincount(spans_edge, minlength=len(edges))
    inclusive_mean = _inclusive_means(graph) if inclusive else {}
    rows = []
    for i, ((caller, call), law) in enumerate(zip(edges, laws, strict=True)):
        quantiles = law.quantile(np.array(list(TRUTH_QUANTILES.values())))
        if inclusive:
            quantiles = np.full(len(TRUTH_QUANTILES), np.nan)
            mean = law.mean + inclusive_mean[call.callee]
        else:
            mean = law.mean
        per_trace = 1.0 if caller == S.START else visits[caller] * call.expected_calls
        rows.append(
            {
                S.CALLER: caller,
                S.CALLEE: call.callee,
                "distribution": law,
                "family": law.family,
                "operation": call.operation_name,
                "zero_prob": float(call.zero_prob),
                "error_prob": float(call.error_prob),
                **dict(zip(TRUTH_QUANTILES, map(float, quantiles), strict=True)),
                "mean": float(mean),
                "count": int(counts[i]),
                "expected_count": n_traces * per_trace,
            }
        )
    latency = pd.DataFrame(rows).set_index([S.CALLER, S.CALLEE])

    # Transitions: edges, START -> root, service -> END (leaf spans).
    is_parent = np.zeros(len(spans_edge), bool)
    is_parent[parent[parent >= 0]] = True
    callee_of_edge = np.array([c.callee for _, c in edges], dtype=object)
    leaf_services = pd.Series(callee_of_edge[spans_edge[~is_parent]]).value_counts()
    trows = []
    for i, (caller, call) in enumerate(edges):
        per_span = call.expected_calls
        per_trace = 1.0 if caller == S.START else visits[caller] * per_span
        trows.append(
            {
                "source": caller,
                "target": call.callee,
                "probability": float(call.probability),
                "repeat": int(call.repeat),
                "calls_per_span": per_span,
                "count": int(counts[i]),
                "expected_count": n_traces * per_trace,
            }
        )
    for service, outgoing in graph.calls.items():
        none = math.prod(1 - float(c.probability) for c in outgoing)
        trows.append(
            {
                "source": service,
                "target": S.END,
                "probability": none,
                "repeat": 1,
                "calls_per_span": none,
                "count": int(leaf_services.get(service, 0)),
                "expected_count": n_traces * visits[service] * none,
            }
        )
    transitions = pd.DataFrame(trows)
    per_source = transitions.groupby("source", sort=False)["calls_per_span"].transform("sum")
    transitions.insert(5, "calls_probability", transitions["calls_per_span"] / per_source)
    return Truth(
        graph=graph,
        latency=latency,
        transitions=transitions,
        n_traces=n_traces,
        inclusive=inclusive,
    )


def _inclusive_means(graph: CallGraph) -> dict[str, float]:
    """Return the expected total inclusive latency of one span's children, per service."""
    below = dict.fromkeys(graph.calls, 0.0)
    for service in reversed(_all_topological(graph)):
        below[service] = sum(
            c.expected_calls * (c.law.mean + below[c.callee]) for c in graph.calls[service]
        )
    return below


def _all_topological(graph: CallGraph) -> list[str]:
    """All services (reachable or not), callers before callees."""
    order: list[str] = []
    done: set[str] = set()

    def visit(service: str) -> None:
        if service in done:
            return
        done.add(service)
        for call in graph.calls[service]:
            visit(call.callee)
        order.append(service)

    for service in graph.calls:
        visit(service)
    return order[::-1]


# --------------------------------------------------------------------------------------
# Ready-made graphs
# --------------------------------------------------------------------------------------


def online_boutique_graph() -> CallGraph:
    """Return a hand-written spec resembling Google Online Boutique (10 services).

    ``frontend`` calls ``currencyservice`` (price conversions, 3 per page),
    ``productcatalogservice``, ``cartservice``, ``recommendationservice`` (which calls
    ``productcatalogservice``), ``adservice`` and, for 5 % of requests,
    ``checkoutservice``, which calls ``cartservice`` (get + empty), the catalog (3
    items), ``shippingservice`` (quote + ship), ``currencyservice``,
    ``paymentservice`` and ``emailservice``. Latencies are own durations in ms; the
    catalog read is bimodal (cache hit / miss), currency conversions are sometimes below
    the clock resolution, payments fail 1 % of the time.

    Returns
    -------
    CallGraph

    Examples
    --------
    >>> g = online_boutique_graph()
    >>> len(g.services)
    10
    >>> round(sum(g.expected_spans().values()), 2)  # spans per trace
    7.25

    """
    catalog = Mixture([(0.85, LogNormal(0.4, 0.35)), (0.15, LogNormal(4.0, 0.5))])
    return CallGraph(
        root="frontend",
        root_latency=LogNormal(12.0, 0.6),
        root_operation="hipstershop.Frontend/Request",
        root_error_prob=0.002,
        calls={
            "frontend": [
                Call(
                    "currencyservice",
                    0.95,
                    LogNormal(0.3, 0.5),
                    repeat=3,
                    zero_prob=0.03,
                    operation="hipstershop.CurrencyService/Convert",
                ),
                Call(
                    "productcatalogservice",
                    0.8,
                    catalog,
                    operation="hipstershop.ProductCatalogService/ListProducts",
                ),
                Call(
                    "cartservice",
                    0.7,
                    Gamma(2.5, 3.0),
                    operation="hipstershop.CartService/GetCart",
                ),
                Call(
                    "recommendationservice",
                    0.4,
                    LogNormal(4.0, 0.45),
                    operation="hipstershop.RecommendationService/ListRecommendations",
                ),
                Call(
                    "adservice",
                    0.5,
                    Weibull(1.8, 1.4),
                    operation="hipstershop.AdService/GetAds",
                ),
                Call(
                    "checkoutservice",
                    0.05,
                    LogNormal(25.0, 0.4),
                    error_prob=0.005,
                    operation="hipstershop.CheckoutService/PlaceOrder",
                ),
            ],
            "recommendationservice": [
                Call(
                    "productcatalogservice",
                    1.0,
                    LogNormal(0.5, 0.5),
                    operation="hipstershop.ProductCatalogService/ListProducts",
                ),
            ],
            "checkoutservice": [
                Call(
                    "cartservice",
                    1.0,
                    LogNormal(2.0, 0.5),
                    repeat=2,
                    operation="hipstershop.CartService/GetCart",
                ),
                Call(
                    "productcatalogservice",
                    1.0,
                    LogNormal(0.5, 0.4),
                    repeat=3,
                    operation="hipstershop.ProductCatalogService/GetProduct",
                ),
                Call(
                    "shippingservice",
                    1.0,
                    LogNormal(0.8, 0.4),
                    repeat=2,
                    operation="hipstershop.ShippingService/GetQuote",
                ),
                Call(
                    "currencyservice",
                    1.0,
                    LogNormal(0.35, 0.5),
                    repeat=2,
                    zero_prob=0.03,
                    operation="hipstershop.CurrencyService/Convert",
                ),
                Call(
                    "paymentservice",
                    1.0,
                    LogNormal(1.5, 0.6),
                    error_prob=0.01,
                    operation="hipstershop.PaymentService/Charge",
                ),
                Call(
                    "emailservice",
                    0.98,
                    Gamma(8.0, 2.0),
                    operation="hipstershop.EmailService/SendOrderConfirmation",
                ),
            ],
            "currencyservice": [],
            "productcatalogservice": [],
            "cartservice": [],
            "adservice": [],
            "shippingservice": [],
            "paymentservice": [],
            "emailservice": [],
        },
    )


#: Latency families :func:`random_call_graph` can draw.
FAMILIES = ("lognormal", "gamma", "weibull", "mixture")


def _latency_like(family: str, median: float, sigma: float, rng: np.random.Generator):
    """Return a distribution of ``family`` with this median and about this log-spread."""
    if family == "lognormal":
        return LogNormal(median, sigma)
    if family == "gamma":
        shape = 1 / sigma**2  # var(log X) ~ 1/shape
        return Gamma(median * shape / float(special.gammaincinv(shape, 0.5)), shape)
    if family == "weibull":
        shape = math.pi / (sigma * math.sqrt(6))  # sd(log X) = pi / (shape sqrt 6)
        return Weibull(median / math.log(2) ** (1 / shape), shape)
    if family == "mixture":
        slow = float(rng.uniform(0.05, 0.3))
        factor = float(rng.uniform(5, 20))
        return Mixture(
            [(1 - slow, LogNormal(median, sigma)), (slow, LogNormal(median * factor, sigma))]
        )
    raise ValueError(f"unknown latency family {family!r}; choose from {FAMILIES}")


def random_call_graph(
    n_services: int,
    *,
    random_seed: int | np.random.Generator | None,
    rare_pairs: int | None = None,
    rare_calls: float = 3.0,
    n_traces: int = 10_000,
    extra_edges: float = 0.3,
    max_fanout: int = 4,
    median_range: tuple[float, float] = (0.1, 500.0),
    sigma_range: tuple[float, float] = (0.2, 1.2),
    families: Sequence[str] = ("lognormal",),
    zero_prob: float = 0.0,
) -> CallGraph:
    """Build a random tree-ish acyclic call graph with data-rich and rare pairs.

    Services ``s000, s001, ...`` (``s000`` is the root). Each service after the root
    gets a parent drawn among the earlier services with fewer than ``max_fanout`` calls
    (a random tree), plus about ``extra_edges * (n_services - 1)`` extra edges into
    leaves of the tree (making it a DAG without duplicating subtrees). These data-rich
    edges have branching probabilities in ``[0.6, 1]`` (10 % of them repeated 2-3
    times). Then ``rare_pairs`` further forward edges get probabilities tuned so that
    each is expected to be called ``rare_calls`` times in ``n_traces`` traces; their
    callees also get traffic through their tree parent, so only the *pair* is rare.
    Medians are log-uniform on ``median_range`` and log-scale spreads uniform on
    ``sigma_range``.

    Parameters
    ----------
    n_services : int
        Number of services, >= 2.
    random_seed : int, numpy.random.Generator or None
        Seed for the spec (pass the same seed for the same graph).
    rare_pairs : int, optional
        Number of rare edges; default ``max(1, n_services // 4)`` (capped by the number
        of free forward pairs).
    rare_calls : float, default 3.0
        Expected calls of each rare pair in ``n_traces`` traces.
    n_traces : int, default 10000
        Simulation size the rare probabilities are tuned for.
    extra_edges : float, default 0.3
        Extra (non-tree) data-rich edges per service.
    max_fanout : int, default 4
        Most tree children per service.
    median_range, sigma_range : tuple of float
        Ranges of per-edge medians (ms) and log-scale spreads.
    families : sequence of str, default ("lognormal",)
        Latency families drawn uniformly per edge, from :data:`FAMILIES`; other families
        are matched to the drawn median and (approximately) spread.
    zero_prob : float, default 0.0
        Zero-duration probability of every edge.

    Returns
    -------
    CallGraph

    Raises
    ------
    ValueError
        If the sizes are impossible (too few services, more rare pairs than free pairs).

    Examples
    --------
    >>> g = random_call_graph(30, random_seed=0, rare_pairs=5)
    >>> len(g.services)
    30
    >>> n = 10_000
    >>> sorted(round(n * g.expected_spans()[s] * c.probability * c.repeat, 6)
    ...        for s in g.services for c in g.calls[s])[:5]
    [3.0, 3.0, 3.0, 3.0, 3.0]

    """
    if not isinstance(n_services, int) or n_services < 2:
        raise ValueError(f"n_services must be an integer >= 2, got {n_services!r}")
    if not isinstance(max_fanout, int) or max_fanout < 1:
        raise ValueError(f"max_fanout must be an integer >= 1, got {max_fanout!r}")
    bad_family = [f for f in families if f not in FAMILIES]
    if bad_family or not families:
        raise ValueError(f"unknown latency families {bad_family}; choose from {FAMILIES}")
    _positive("random_call_graph", "rare_calls", rare_calls)
    _positive("random_call_graph", "n_traces", n_traces)
    lo_m, hi_m = (_positive("random_call_graph", "median_range", v) for v in median_range)
    lo_s, hi_s = (_positive("random_call_graph", "sigma_range", v) for v in sigma_range)
    rng = np.random.default_rng(random_seed)
    width = len(str(n_services - 1))
    names = [f"s{i:0{max(width, 3)}d}" for i in range(n_services)]

    def latency() -> LatencyDistribution:
        median = float(np.exp(rng.uniform(math.log(lo_m), math.log(hi_m))))
        sigma = float(rng.uniform(lo_s, hi_s))
        family = families[int(rng.integers(len(families)))]
        return _latency_like(family, median, sigma, rng)

    def rich_call(j: int) -> Call:
        repeat = int(rng.integers(2, 4)) if rng.random() < 0.1 else 1
        p = float(np.round(rng.uniform(0.6, 1.0), 3))
        return Call(names[j], p, latency(), repeat=repeat, zero_prob=zero_prob)

    edges: dict[int, dict[int, Call]] = {i: {} for i in range(n_services)}
    for j in range(1, n_services):
        open_ = [i for i in range(j) if len(edges[i]) < max_fanout]
        i = open_[int(rng.integers(len(open_)))]
        edges[i][j] = rich_call(j)
    # Extra edges only call leaves of the tree, so no subtree is duplicated and the
    # number of spans per trace stays about that of the tree.
    leaves = [j for j in range(1, n_services) if not edges[j]]
    free = [(i, j) for j in leaves for i in range(j) if j not in edges[i]]
    n_extra = min(round(extra_edges * (n_services - 1)), len(free))
    for k in sorted(rng.choice(len(free), n_extra, replace=False)) if n_extra else []:
        i, j = free[k]
        edges[i][j] = rich_call(j)

    latency_root = latency()

    def spec() -> CallGraph:
        return CallGraph(
            root=names[0],
            root_latency=latency_root,
            calls={names[i]: [edges[i][j] for j in sorted(edges[i])] for i in edges},
        )

    visits = spec().expected_spans()
    need = rare_calls / n_traces
    free = [
        (i, j)
        for i in range(n_services)
        for j in range(i + 1, n_services)
        if j not in edges[i] and visits[names[i]] >= 10 * need
    ]
    n_rare = max(1, n_services // 4) if rare_pairs is None else rare_pairs
    if rare_pairs is None:
        n_rare = min(n_rare, len(free))
    if not isinstance(n_rare, int) or n_rare < 0:
        raise ValueError(f"rare_pairs must be a non-negative integer, got {rare_pairs!r}")
    if n_rare > len(free):
        raise ValueError(
            f"rare_pairs={n_rare} but only {len(free)} free forward pairs have callers busy "
            f"enough for {rare_calls} calls in {n_traces} traces; use more services"
        )
    rare = [free[k] for k in sorted(rng.choice(len(free), n_rare, replace=False))] if n_rare else []
    for i, j in rare:
        edges[i][j] = Call(names[j], 0.0, latency(), zero_prob=zero_prob)
    # A rare edge adds a little traffic downstream (possibly to another rare edge's
    # caller): iterate to the fixed point where each rare pair expects rare_calls calls.
    for _ in range(50):
        visits = spec().expected_spans()
        tuned = {(i, j): min(1.0, need / visits[names[i]]) for i, j in rare}
        if all(
            math.isclose(edges[i][j].probability, p, rel_tol=1e-12) for (i, j), p in tuned.items()
        ):
            break
        for (i, j), p in tuned.items():
            edges[i][j] = Call(names[j], p, edges[i][j].latency, zero_prob=zero_prob)
    return spec()
