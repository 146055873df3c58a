"""Compiled loops of the nonparametric family's draws (numba, a dependency of PyTensor).

``ppf`` inverts one group's draws at many (level, draw) queries: a binary search in the
draw's cumulative weights over its pieces (lower-tail atoms, body cells, upper-tail
atoms), then in the cell's sub-bins. It does in one pass, without temporaries, what
NumPy needs several full-size gathers for; end-to-end simulation calls it on 10^7-10^8
uniforms, on a block that holds every group's rows of a few hundred draws side by side;
other callers pass one group at a time. ``group_order`` is a counting sort of query
positions by group.
"""

from __future__ import annotations

import math

import numpy as np

from bayesperf._numba import cached_njit


@cached_njit(nogil=True)
def group_order(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by group (stable) and each group's start: ``(order, starts)``.

    ``starts`` has ``n_groups + 1`` entries; group ``g``'s positions are
    ``order[starts[g]:starts[g + 1]]``.
    """
    starts = np.zeros(n_groups + 1, np.int64)
    for i in range(len(groups)):
        starts[groups[i] + 1] += 1
    for g in range(n_groups):
        starts[g + 1] += starts[g]
    fill = starts[:-1].copy()
    order = np.empty(len(groups), np.int64)
    for i in range(len(groups)):
        g = groups[i]
        order[fill[g]] = i
        fill[g] += 1
    return order, starts


@cached_njit(nogil=True)
def ppf(
    cum: np.ndarray,
    piece_start: np.ndarray,
    atom_loc: np.ndarray,
    n_atoms: int,
    cell_start: np.ndarray,
    sub_start: np.ndarray,
    before: np.ndarray,
    mass: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    u: np.ndarray,
    group: np.ndarray,
    draw: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write ``F⁻¹(u[i])`` of group ``group[i]`` in draw ``draw[i]`` into ``out[i]``.

    Groups lie side by side (one group is a block of one). ``cum`` (draws, pieces of
    all groups): group ``g``'s pieces are the columns ``piece_start[g]:piece_start[g +
    1]`` — cumulative weights of its lower atoms (``n_atoms``), body cells and upper
    atoms; its atoms' locations are the columns ``2 n_atoms g`` on of ``atom_loc``. Its
    body cell ``c`` has the sub-bins ``sub_start[cell_start[g] + c]:sub_start[cell_start
    [g] + c + 1]`` of the concatenated ``before`` (the share of the cell before each),
    ``mass`` (its own) and edges ``lo``/``hi``; inside a sub-bin latency is uniform in
    log (uniform from 0 when ``lo`` is 0). With one draw's pieces of every group in one
    row, queries in draw order (as simulation makes them) read one small block of
    memory after another.
    """
    for i in range(len(u)):
        g, row, q = group[i], draw[i], u[i]
        first = piece_start[g]
        pieces = piece_start[g + 1] - first
        n_cells = pieces - 2 * n_atoms
        a, b = 0, pieces - 1  # first piece whose cumulative weight reaches q
        while a < b:
            m = (a + b) // 2
            if cum[row, first + m] >= q:
                b = m
            else:
                a = m + 1
        j = a
        if j < n_atoms:
            out[i] = atom_loc[row, 2 * n_atoms * g + j]
            continue
        if j >= n_atoms + n_cells:
            out[i] = atom_loc[row, 2 * n_atoms * g + j - n_cells]
            continue
        prev = cum[row, first + j - 1] if j > 0 else 0.0
        w = cum[row, first + j] - prev
        f = (q - prev) / w if w > 0 else 0.0
        f = min(max(f, 0.0), 1.0)
        c = cell_start[g] + j - n_atoms
        a, b = sub_start[c], sub_start[c + 1] - 1  # first sub-bin whose share reaches f
        while a < b:
            m = (a + b) // 2
            if before[m] + mass[m] >= f:
                b = m
            else:
                a = m + 1
        s = a
        within = (f - before[s]) / mass[s] if mass[s] > 0 else 1.0
        within = min(max(within, 0.0), 1.0)
        if lo[s] > 0:
            out[i] = lo[s] * math.exp(within * math.log(hi[s] / lo[s]))
        else:
            out[i] = hi[s] * within
