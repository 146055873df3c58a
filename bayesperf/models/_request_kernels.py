"""Compiled loops of the request simulation (numba, a dependency of PyTensor).

Three kernels, each over one chunk of requests, called by
:mod:`bayesperf.models.request_trees`:

``expand``
    Draws the call trees: each request is grown breadth-first, so a span's children
    are contiguous, in stage order, and come after it (every request's spans are
    contiguous too).
``uniforms``
    The uniform of every span, correlated within a request through the nested Gaussian
    copula (:mod:`bayesperf.models.dependence`), or independent.
``compose``
    End-to-end latency bottom-up: spans in reverse order, each parent keeping the
    running maximum of its current stage and the sum of its finished stages.

Random numbers come from a small counter-based generator (splitmix64) with one stream
per span, keyed by ``(seed, request, node type, occurrence)`` — the occurrence is the
span's rank among the request's spans of its type, in breadth-first order — and one
per shared copula factor, keyed by ``(seed, request, factor)``. A chunk gives the same
numbers in any thread, and a span's numbers do not depend on which other spans exist:
a what-if that removes a call (``call_prob``) changes the spans under it and nothing
else, so the change it reports is not buried in Monte Carlo noise. Self times
themselves are *not* drawn here: the uniforms go through the latency model's ``ppf`` in
NumPy, its only interface.
"""

from __future__ import annotations

import math

import numpy as np

from bayesperf._numba import cached_njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@cached_njit(nogil=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@cached_njit(nogil=True, inline="always")
def _stream(seed, request):
    """The first state of a request's stream."""
    return _mix(np.uint64(seed) ^ _mix(np.uint64(request) + _GOLDEN))


@cached_njit(nogil=True, inline="always")
def _keyed(seed, request, kind, index):
    """The first state of the stream of (request, kind, index): a span or a factor."""
    return _mix(_stream(seed, request) ^ _mix(np.uint64(kind) * _MIX1 + np.uint64(index)))


#: Kinds of the shared factors' streams (node types use their own non-negative code).
_SERVICE_FACTOR = np.uint64(1) << np.uint64(40)
_TYPE_FACTOR = np.uint64(1) << np.uint64(41)


@cached_njit(nogil=True, inline="always")
def _uniform(state):
    """The next state and a uniform in (0, 1)."""
    state = state + _GOLDEN
    return state, (float(_mix(state) >> np.uint64(11)) + 0.5) * 2.0**-53


@cached_njit(nogil=True, inline="always")
def _normal(state):
    """The next state and a standard normal (Box-Muller)."""
    state, u1 = _uniform(state)
    state, u2 = _uniform(state)
    return state, math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@cached_njit(nogil=True)
def _search(cum: np.ndarray, lo: int, hi: int, u: float) -> int:
    """First position in ``cum[lo:hi]`` (increasing, ending at 1) whose value exceeds u."""
    while lo < hi - 1:  # the answer is in [lo, hi - 1]
        mid = (lo + hi - 1) // 2
        if cum[mid] > u:
            hi = mid + 1
        else:
            lo = mid + 1
    return lo


@cached_njit(nogil=True)
def expand(
    seed,
    root_type,
    root_draw,
    first_draw,
    row_ptr,
    variable,
    entry_is_new,
    child_ptr,
    child_type,
    child_stage,
    cum,
    kind_ptr,
    kind_child_ptr,
    kind_child_type,
    count_ptr,
    count_value,
    count_cum,
    max_depth,
    capacity,
):
    """Grow every request's tree; returns the span arrays, their number and cuts.

    ``cum[d - first_draw, e]`` is the cumulative probability of entry ``e`` within its
    node type's row in draw ``d``. Returns ``(type, draw, root, parent, stage,
    occurrence, n, truncated)``; ``n = -1`` when ``capacity`` was too small (call again,
    larger).
    """
    n_types = len(row_ptr) - 1
    seen = np.zeros(n_types, np.int64)  # spans of each type so far in this request
    seen_stamp = np.full(n_types, -1, np.int64)
    span_occ = np.empty(capacity, np.int64)
    span_type = np.empty(capacity, np.int64)
    span_draw = np.empty(capacity, np.int64)
    span_root = np.empty(capacity, np.int64)
    span_parent = np.empty(capacity, np.int64)
    span_stage = np.empty(capacity, np.int64)
    depth = np.empty(capacity, np.int64)
    n = 0
    truncated = 0
    for r in range(len(root_type)):
        if n >= capacity:
            return (
                span_type, span_draw, span_root, span_parent, span_stage, span_occ, -1, truncated
            )  # fmt: skip
        span_type[n], span_draw[n], span_root[n] = root_type[r], root_draw[r], r
        span_parent[n], span_stage[n], depth[n] = -1, 0, 0
        span_occ[n] = _occurrence(seen, seen_stamp, root_type[r], r)
        i, n = n, n + 1
        cut = False
        while i < n:
            t, d = span_type[i], span_draw[i]
            state = _keyed(seed, r, t, span_occ[i])
            lo, hi = row_ptr[t], row_ptr[t + 1]
            e = lo
            if variable[t]:
                state, u = _uniform(state)
                e = _search(cum[d - first_draw], lo, hi, u)
            if depth[i] >= max_depth:
                if entry_is_new[e] or child_ptr[e + 1] > child_ptr[e]:
                    cut = True
                i += 1
                continue
            if entry_is_new[e]:  # a new pattern: every stage kind repeated independently
                stage = 0
                for j in range(kind_ptr[t], kind_ptr[t + 1]):
                    state, u = _uniform(state)
                    c = _search(count_cum, count_ptr[j], count_ptr[j + 1], u)
                    for _ in range(count_value[c]):
                        for k in range(kind_child_ptr[j], kind_child_ptr[j + 1]):
                            if n >= capacity:
                                return (
                                    span_type, span_draw, span_root, span_parent, span_stage,
                                    span_occ, -1, truncated,
                                )  # fmt: skip
                            c_type = kind_child_type[k]
                            span_type[n], span_draw[n], span_root[n] = c_type, d, r
                            span_parent[n], span_stage[n], depth[n] = i, stage, depth[i] + 1
                            span_occ[n] = _occurrence(seen, seen_stamp, c_type, r)
                            n += 1
                        stage += 1
            else:
                for k in range(child_ptr[e], child_ptr[e + 1]):
                    if n >= capacity:
                        return (
                            span_type, span_draw, span_root, span_parent, span_stage, span_occ,
                            -1, truncated,
                        )  # fmt: skip
                    span_type[n], span_draw[n], span_root[n] = child_type[k], d, r
                    span_parent[n], span_stage[n], depth[n] = i, child_stage[k], depth[i] + 1
                    span_occ[n] = _occurrence(seen, seen_stamp, child_type[k], r)
                    n += 1
            i += 1
        truncated += cut
    return span_type, span_draw, span_root, span_parent, span_stage, span_occ, n, truncated


@cached_njit(nogil=True, inline="always")
def _occurrence(seen, stamp, t, request):
    """The next occurrence number of node type ``t`` in ``request`` (0, 1, ...)."""
    if stamp[t] != request:
        stamp[t] = request
        seen[t] = 0
    k = seen[t]
    seen[t] = k + 1
    return k


@cached_njit(nogil=True)
def uniforms(
    seed,
    span_type,
    span_draw,
    span_root,
    span_occ,
    n,
    service_of_type,
    load_r,
    load_s,
    load_t,
    load_e,
):
    """Each span's uniform ``Φ(x)``, ``x`` the copula's factors (loadings per draw, type).

    ``load_*`` are square roots of variance shares: ``load_r[d]`` of the request
    factor, ``load_s[d, t]``, ``load_t[d, t]``, ``load_e[d, t]`` of the (request,
    service), (request, node type) and own factors (all zero but ``load_e``:
    independent). A request's spans are contiguous: its shared factors are drawn when
    first needed and kept in tables stamped with the request. Every draw comes from its
    own keyed stream (see the module docstring).
    """
    out = np.empty(n)
    n_services = service_of_type.max() + 1 if len(service_of_type) else 1
    z_service = np.zeros(n_services)
    stamp_service = np.full(n_services, -1, np.int64)
    z_node = np.zeros(len(service_of_type))
    stamp_node = np.full(len(service_of_type), -1, np.int64)
    z_request = 0.0
    current = -1
    for i in range(n):
        r, t, d = span_root[i], span_type[i], span_draw[i]
        if r != current:  # a new request: its own request factor
            current = r
            _, z_request = _normal(_stream(seed, r))
        _, own = _normal(_keyed(seed, r, t, span_occ[i]))
        x = load_e[d, t] * own + load_r[d] * z_request
        if load_s[d, t] > 0:
            s = service_of_type[t]
            if stamp_service[s] != r:
                stamp_service[s] = r
                _, z_service[s] = _normal(_keyed(seed, r, _SERVICE_FACTOR, s))
            x += load_s[d, t] * z_service[s]
        if load_t[d, t] > 0:
            if stamp_node[t] != r:
                stamp_node[t] = r
                _, z_node[t] = _normal(_keyed(seed, r, _TYPE_FACTOR, t))
            x += load_t[d, t] * z_node[t]
        out[i] = 0.5 * math.erfc(-x * 0.7071067811865476)
    return out


@cached_njit(nogil=True)
def compose(self_time, span_parent, span_stage, n, n_roots):
    """Latency of every request: ``self + Σ_stages max(children)``, bottom-up.

    Spans must come after their parents with each parent's children contiguous in
    stage order (as :func:`expand` writes them). Returns the roots' latencies in
    order.
    """
    done = np.zeros(n)  # sum of the finished stages below each span
    stage_max = np.zeros(n)
    stage_of = np.full(n, -1, np.int64)
    out = np.empty(n_roots)
    root = n_roots
    for i in range(n - 1, -1, -1):
        latency = self_time[i] + done[i]
        if stage_of[i] >= 0:
            latency += stage_max[i]
        p = span_parent[i]
        if p < 0:
            root -= 1
            out[root] = latency
        elif stage_of[p] == span_stage[i]:
            stage_max[p] = max(stage_max[p], latency)
        else:
            if stage_of[p] >= 0:
                done[p] += stage_max[p]
            stage_of[p] = span_stage[i]
            stage_max[p] = latency
    return out
