"""Compiled loops of the nonparametric family's draws (numba, a dependency of PyTensor).

``ppf`` inverts one group's draws at many (level, draw) queries: a binary search in the
draw's cumulative weights over its pieces (lower-tail atoms, body cells, upper-tail
atoms), then in the cell's sub-bins. It does in one pass, without temporaries, what
NumPy needs several full-size gathers for; end-to-end simulation calls it on 10^7-10^8
uniforms. ``ppf_packed`` does it for queries of many groups at once, on a block that
holds every group's rows of a few hundred draws side by side. ``group_order`` is a
counting sort of query positions by group.
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


@cached_njit(nogil=True, inline="always")
def _invert(
    cum: np.ndarray,
    row: int,
    first: int,
    pieces: int,
    atom_loc: np.ndarray,
    first_atom: int,
    n_atoms: int,
    first_cell: int,
    sub_start: np.ndarray,
    before: np.ndarray,
    mass: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    q: float,
) -> float:
    """``F⁻¹(q)`` of one draw: its pieces are ``cum[row, first:first + pieces]``.

    Its atoms are ``atom_loc[row, first_atom:first_atom + 2 n_atoms]``; its body cell
    ``c`` has sub-bins ``sub_start[first_cell + c]:sub_start[first_cell + c + 1]``.
    """
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
        return atom_loc[row, first_atom + j]
    if j >= n_atoms + n_cells:
        return atom_loc[row, first_atom + j - n_cells]
    prev = cum[row, first + j - 1] if j > 0 else 0.0
    w = cum[row, first + j] - prev
    f = (q - prev) / w if w > 0 else 0.0
    f = min(max(f, 0.0), 1.0)
    c = first_cell + j - n_atoms
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
        return lo[s] * math.exp(within * math.log(hi[s] / lo[s]))
    return hi[s] * within


@cached_njit(nogil=True)
def ppf(
    cum: np.ndarray,
    atom_loc: np.ndarray,
    n_atoms: int,
    n_cells: int,
    sub_start: np.ndarray,
    before: np.ndarray,
    mass: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    u: np.ndarray,
    draw: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write ``F⁻¹(u[i])`` of draw ``draw[i]`` into ``out[i]`` for one group.

    ``cum`` (draws, pieces): cumulative weights of the lower atoms (``n_atoms``), the
    body cells (``n_cells``) and the upper atoms; ``atom_loc`` (draws, 2 n_atoms).
    Body cell ``c`` has sub-bins ``sub_start[c]:sub_start[c + 1]`` with the share of
    the cell before each (``before``), its own (``mass``) and edges ``lo``/``hi``;
    inside a sub-bin latency is uniform in log (uniform from 0 when ``lo`` is 0).
    """
    pieces = n_cells + 2 * n_atoms
    for i in range(len(u)):
        out[i] = _invert(
            cum,
            draw[i],
            0,
            pieces,
            atom_loc,
            0,
            n_atoms,
            0,
            sub_start,
            before,
            mass,
            lo,
            hi,
            u[i],
        )


@cached_njit(nogil=True)
def ppf_packed(
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
    """:func:`ppf` for queries of any groups, on every group's draws packed side by side.

    ``cum`` (draws, all pieces): group ``g``'s pieces are the columns
    ``piece_start[g]:piece_start[g + 1]``, its atoms the columns ``2 n_atoms g`` on of
    ``atom_loc``, its cells ``cell_start[g]`` on of ``sub_start`` (whose sub-bin
    positions index the concatenated ``before``, ``mass``, ``lo``, ``hi``). One draw's
    row holds every group: queries in draw order (as simulation makes them) read one
    small block of memory after another, with no sorting by group.
    """
    for i in range(len(u)):
        g = group[i]
        first = piece_start[g]
        out[i] = _invert(
            cum,
            draw[i],
            first,
            piece_start[g + 1] - first,
            atom_loc,
            2 * n_atoms * g,
            n_atoms,
            cell_start[g],
            sub_start,
            before,
            mass,
            lo,
            hi,
            u[i],
        )
