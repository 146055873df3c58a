"""Figures of fitted transition models: the service call graph and the transition matrix.

:func:`plot_transition_graph` draws the Markov chain as a layered directed graph
(``START`` at the left, ``END`` at the right), each edge labelled with its posterior mean
and credible interval; :func:`plot_transition_heatmap` draws the source x target matrix
of posterior means. Both use plain matplotlib (no graphviz or networkx): the graphs are
small after filtering (tens of nodes), and a hand-made layered layout keeps every
function able to draw on a given ``ax=``. Each returns the matplotlib
:class:`~matplotlib.figure.Figure` it drew on.

Examples
--------
>>> from bayesperf.plots.transitions import plot_transition_graph, plot_transition_heatmap
>>> fig = plot_transition_graph(model, ci_prob=0.9, min_prob=0.02)   # doctest: +SKIP
>>> fig.savefig("calls.png", dpi=150)                                  # doctest: +SKIP
>>> fig = plot_transition_heatmap(model)                               # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict, deque
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesperf import schema as S
from bayesperf.errors import NotFittedError
from bayesperf.models.transitions import UNSEEN, TransitionModel
from bayesperf.plots._axes import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.path import Path
    from matplotlib.text import Text

__all__ = ["plot_transition_graph", "plot_transition_heatmap"]

#: Edges toward ``END`` (to a later layer) and edges back toward ``START`` or within a
#: layer (returns to a caller in sequence mode; cycles).
FORWARD_COLOR = "#1f63a8"
BACKWARD_COLOR = "#c45a00"
NODE_FONTSIZE = 9.0
LABEL_FONTSIZE = 7.0
#: Padding of a node's box and of an edge label's box, in units of their font size.
_NODE_PAD = 0.3
_LABEL_PAD = 0.15
#: Layout in inches (data units of the graph are inches at the figure's own size).
_LAYER_GAP = 1.7
_NODE_SPACING = 1.05
#: Self-loop geometry above a node's box, in points: half-width at the box, width and
#: height of the Bézier control polygon.
_LOOP_FOOT, _LOOP_WIDTH, _LOOP_HEIGHT = 6.0, 16.0, 24.0
#: Positions along an edge (Bézier parameter) tried for its label, best first.
_LABEL_SPOTS = np.array([0.5, 0.6, 0.4, 0.68, 0.32, 0.75, 0.25, 0.82, 0.18])
#: Heatmaps annotate their cells up to this many states.
ANNOTATE_MAX_STATES = 20


# --------------------------------------------------------------------------- helpers
def _check_model(model: Any, who: str) -> None:
    if not isinstance(model, TransitionModel):
        raise TypeError(f"{who} needs a TransitionModel, got {type(model).__name__}")
    if not model.is_fitted:
        raise NotFittedError(f"{who} needs a fitted TransitionModel: call .fit(spans) first")


def format_probability(p: float) -> str:
    """A probability as short text: two decimals from 0.1, two significant digits below.

    Below 0.001 it is ``"<0.001"``, which keeps labels and cells short.

    Examples
    --------
    >>> [format_probability(p) for p in (0.4213, 0.05612, 0.00834, 0.99996, 3e-5, 0.0)]
    ['0.42', '0.056', '0.0083', '1.00', '<0.001', '0']
    """
    if p == 0:
        return "0"
    if p < 0.001:
        return "<0.001"
    return f"{p:.2f}" if p >= 0.0995 else f"{p:.2g}"


def edge_label(mean: float, lower: float, upper: float) -> str:
    """``"0.42 [0.38–0.46]"``: posterior mean and credible interval of a transition.

    Examples
    --------
    >>> edge_label(0.4213, 0.3791, 0.4622)
    '0.42 [0.38–0.46]'
    """
    return f"{format_probability(mean)} [{format_probability(lower)}–{format_probability(upper)}]"


def _text_width_pt(text: str, fontsize: float) -> float:
    """Width of one line of text in points, from the default font's glyph outlines."""
    from matplotlib.textpath import TextPath

    if not text:
        return 0.0
    return float(TextPath((0, 0), text, size=fontsize).get_extents().width)


def _row_traffic(table: pd.DataFrame) -> pd.Series:
    """Observed transitions out of each source (its row's total count)."""
    return table.groupby("source", sort=False)["count"].sum()


def _layers(edges: list[tuple[str, str, float]]) -> dict[str, int]:
    """Layer of every node: longest distance from ``START`` over the acyclic edges.

    ``edges`` are ``(source, target, weight)``. Depth is first the shortest distance
    from ``START`` (nodes it cannot reach start new searches at depth 1, true roots
    and then the busiest node first). Edges back to a smaller depth are dropped, and
    so are, within a depth, the lightest edges closing a cycle (a depth-first search
    following heavier edges first); the rest is a DAG whose longest paths give the
    layers, so calls get the next layer of their caller even when a shortcut exists.
    ``START`` is layer 0 and ``END`` one past the last layer.
    """
    nodes: dict[str, None] = {}
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    indeg: dict[str, int] = defaultdict(int)
    traffic: dict[str, float] = defaultdict(float)
    for s, t, w in edges:
        nodes.setdefault(s)
        nodes.setdefault(t)
        traffic[s] += w
        if s != t and t != S.END:
            out[s].append((t, w))
            indeg[t] += 1
    for s in out:
        out[s].sort(key=lambda tw: -tw[1])
    inner = [n for n in nodes if n != S.END]

    depth: dict[str, int] = {}

    def search(seed: str, d: int) -> None:
        depth[seed] = d
        queue = deque([seed])
        while queue:
            u = queue.popleft()
            for v, _ in out[u]:
                if v not in depth:
                    depth[v] = depth[u] + 1
                    queue.append(v)

    if S.START in nodes:
        search(S.START, 0)
    while len(depth) < len(inner):
        left = [n for n in inner if n not in depth]
        reached = {v for u in left for v, _ in out[u]}
        roots = [n for n in left if n not in reached]
        search(max(roots or left, key=lambda n: (traffic[n], n)), 1)

    # Acyclic part: edges to a larger depth, plus same-depth edges not closing a cycle.
    dag: dict[str, list[str]] = defaultdict(list)
    same: dict[str, list[str]] = defaultdict(list)
    for u in inner:
        for v, _ in out[u]:
            if depth[v] > depth[u]:
                dag[u].append(v)
            elif depth[v] == depth[u]:
                same[u].append(v)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(same, key=lambda n: (-traffic[n], n)):
        if root in state:
            continue
        stack = [(root, iter(same[root]))]
        state[root] = 1
        while stack:
            u, it = stack[-1]
            v = next(it, None)
            if v is None:
                state[u] = 2
                stack.pop()
            elif state.get(v) != 1:  # an edge to a node on the stack closes a cycle
                dag[u].append(v)
                if v not in state:
                    state[v] = 1
                    stack.append((v, iter(same[v])))

    layer = {n: (0 if n == S.START else 1) for n in inner}
    incoming: dict[str, int] = defaultdict(int)
    for u in inner:
        for v in dag[u]:
            incoming[v] += 1
    queue = deque(n for n in inner if incoming[n] == 0)
    while queue:  # Kahn's topological order: longest path
        u = queue.popleft()
        for v in dag[u]:
            layer[v] = max(layer[v], layer[u] + 1)
            incoming[v] -= 1
            if incoming[v] == 0:
                queue.append(v)
    if S.END in nodes:
        layer[S.END] = max(layer.values(), default=0) + 1
    return layer


def _crossings(pos: dict[str, tuple[float, float]], pairs: list[tuple[str, str]]) -> int:
    """Proper crossings between the straight segments of ``pairs`` (no shared node)."""
    if len(pairs) < 2:
        return 0
    a = np.array([pos[s] for s, _ in pairs], dtype=float)
    b = np.array([pos[t] for _, t in pairs], dtype=float)

    def orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.sign(
            (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
            - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        )

    A, B = a[:, None], b[:, None]
    C, D = a[None, :], b[None, :]
    cross = (orient(A, B, C) * orient(A, B, D) < 0) & (orient(C, D, A) * orient(C, D, B) < 0)
    return int(np.triu(cross, 1).sum())


def _order(
    layer: dict[str, int], pairs: list[tuple[str, str]], sweeps: int = 6
) -> dict[str, tuple[float, float]]:
    """Position ``(layer, slot)`` of each node, ordered within layers by barycentres.

    Alternating sweeps (left to right, then right to left) sort each layer by the mean
    slot of the node's neighbours in the layers already placed; the ordering with the
    fewest straight-line crossings is kept. Slots are centred on 0 in every layer.
    """
    n_layers = max(layer.values()) + 1
    by_layer: list[list[str]] = [[] for _ in range(n_layers)]
    for node in sorted(layer):
        by_layer[layer[node]].append(node)
    nbrs: dict[str, list[str]] = defaultdict(list)
    for s, t in pairs:
        # START and END sit alone in their layers: they carry no order information.
        if s != t and S.START not in (s, t) and S.END not in (s, t):
            nbrs[s].append(t)
            nbrs[t].append(s)

    def positions() -> dict[str, tuple[float, float]]:
        return {
            node: (float(lay), i - (len(nodes) - 1) / 2)
            for lay, nodes in enumerate(by_layer)
            for i, node in enumerate(nodes)
        }

    links = [(s, t) for s, t in pairs if s != t]
    pos = positions()
    best, best_cross = [list(nodes) for nodes in by_layer], _crossings(pos, links)
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        for lay in range(1, n_layers) if forward else range(n_layers - 2, -1, -1):
            key = {}
            for node in by_layer[lay]:
                ys = [
                    pos[m][1] for m in nbrs[node] if (layer[m] < lay if forward else layer[m] > lay)
                ]
                key[node] = float(np.mean(ys)) if ys else pos[node][1]
            by_layer[lay].sort(key=key.__getitem__)
            pos = positions()
        crossings = _crossings(pos, links)
        if crossings < best_cross:
            best, best_cross = [list(nodes) for nodes in by_layer], crossings
    by_layer = best
    return positions()


def _bezier(a: np.ndarray, c: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points ``(len(t), 2)`` of the quadratic Bézier ``a, c, b``."""
    t = np.asarray(t, float)[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b


def _control(a: np.ndarray, b: np.ndarray, rad: float) -> np.ndarray:
    """Control point bending ``a -> b`` by ``rad`` x its length to the right of travel.

    The reverse edge with the same ``rad`` bends to the other side, so the two
    directions of a pair never overlap.
    """
    d = b - a
    return (a + b) / 2 + rad * np.array([d[1], -d[0]])


def _overlap(box: np.ndarray, boxes: np.ndarray) -> float:
    """Total overlap area of ``box`` (x0, y0, x1, y1) with each row of ``boxes``."""
    if len(boxes) == 0:
        return 0.0
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))


def _inside(points: np.ndarray, boxes: np.ndarray) -> int:
    """How many ``points`` lie in any of ``boxes``."""
    if len(boxes) == 0 or len(points) == 0:
        return 0
    x, y = points[:, 0, None], points[:, 1, None]
    hit = (x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])
    return int(hit.any(axis=1).sum())


class _Arc:
    """Connection style of an edge: a quadratic Bézier through a data-space control point.

    Called by :class:`~matplotlib.patches.FancyArrowPatch` at draw time with the end
    points in display coordinates; clips the curve to the two nodes' boxes as rendered
    then, so arrows end at the box whatever the font, dpi or axes size.
    """

    def __init__(self, control: np.ndarray, source: Text, target: Text) -> None:
        self.control = control
        self.source = source
        self.target = target

    def __call__(
        self,
        posA: Any,
        posB: Any,
        patchA: Any = None,
        patchB: Any = None,
        shrinkA: float = 0.0,
        shrinkB: float = 0.0,
    ) -> Path:
        from matplotlib.bezier import split_path_inout
        from matplotlib.path import Path

        control = self.source.axes.transData.transform(self.control)
        path = Path([posA, control, posB], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
        start, stop = _node_box(self.source), _node_box(self.target)
        try:
            _, path = split_path_inout(path, lambda xy: start.contains(*xy))
        except ValueError:  # the curve does not leave the box (overlapping nodes)
            pass
        try:
            path, _ = split_path_inout(path, lambda xy: stop.contains(*xy))
        except ValueError:
            pass
        return path


class _Loop:
    """Connection style of a self-loop: a cubic loop above the node's box."""

    def __init__(self, node: Text) -> None:
        self.node = node

    def __call__(self, posA: Any, posB: Any, *args: Any, **kwargs: Any) -> Path:
        from matplotlib.path import Path

        box = _node_box(self.node)
        pt = self.node.get_figure(root=True).dpi / 72
        x, top = box.x0 + box.width / 2, box.y1
        foot, width, height = _LOOP_FOOT * pt, _LOOP_WIDTH * pt, _LOOP_HEIGHT * pt
        return Path(
            [
                (x - foot, top),
                (x - width, top + height),
                (x + width, top + height),
                (x + foot, top),
            ],
            [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4],
        )


def _node_box(node: Text) -> Any:
    """Display-space box of a node as drawn (its text, its box padding, a 2 pt gap)."""
    extent = node.get_window_extent()
    pad = (_NODE_PAD * node.get_fontsize() + 2.0) * node.get_figure(root=True).dpi / 72
    return extent.padded(pad)


def _select_edges(
    table: pd.DataFrame, min_prob: float, max_edges: int | None
) -> tuple[pd.DataFrame, int, int]:
    """Edges to draw, edges hidden below ``min_prob``, edges cut by ``max_edges``."""
    observed = table[table["target"] != UNSEEN]
    traffic = _row_traffic(table)
    low = observed["mean"].to_numpy() < min_prob
    kept = observed[~low].copy()
    kept["flow"] = kept["mean"].to_numpy() * traffic.loc[kept["source"]].to_numpy()
    cut = 0
    if max_edges is not None and len(kept) > max_edges:
        cut = len(kept) - max_edges
        kept = kept.nlargest(max_edges, "flow", keep="first").sort_index()
    return kept, int(low.sum()), cut


# ----------------------------------------------------------------------- graph plot
def plot_transition_graph(
    model: TransitionModel,
    *,
    ci_prob: float = 0.9,
    min_prob: float = 0.01,
    max_edges: int | None = 60,
    ax: Axes | None = None,
    labels: bool = True,
    max_width: float = 6.0,
) -> Figure:
    """The service transition graph: nodes are states, edges posterior probabilities.

    A layered drawing: ``START`` at the left, ``END`` at the right, every other state in
    the layer of its longest acyclic distance from ``START`` (edges back toward
    ``START`` and within a layer are drawn curved and in a second colour; self-loops as
    loops above the node); nodes are ordered within layers to reduce crossings. Edge
    width is proportional to the posterior mean probability, and each edge is labelled
    ``"mean [lower–upper]"`` with the ``ci_prob`` equal-tailed credible interval (the
    values of :meth:`TransitionModel.transition_probabilities`).

    Nothing is dropped silently: the title counts the edges hidden below ``min_prob``
    and those beyond ``max_edges``. Each source's ``(unseen)`` bucket (the probability of
    targets never observed from it) is not drawn; it is in the heatmap and in
    :meth:`TransitionModel.transition_probabilities`.

    Parameters
    ----------
    model : TransitionModel
        A fitted model (either mode).
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed credible interval in the labels.
    min_prob : float, default 0.01
        Hide edges whose posterior mean is below this (they are counted in the title).
    max_edges : int or None, default 60
        Draw at most this many edges: those with the largest expected flow, posterior
        mean x the source's observed transitions. ``None`` draws every edge above
        ``min_prob`` (large graphs, e.g. hundreds of services, become unreadable).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (its aspect is set equal and its axis hidden); a new figure
        sized to the graph otherwise.
    labels : bool, default True
        Label the edges with mean and interval.
    max_width : float, default 6.0
        Line width (points) of an edge of probability 1; edges are at least 0.6 pt wide.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot. Artists carry ids for inspection: nodes are
        texts with gid ``"node:<state>"``, edges patches with gid
        ``"edge:<source>-><target>"``, labels texts with gid ``"label:<source>-><target>"``.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~bayesperf.models.transitions.TransitionModel`.
    NotFittedError
        The model is not fitted.
    ValueError
        ``ci_prob``, ``min_prob`` or ``max_edges`` out of range, or no edge to draw.

    Examples
    --------
    >>> from bayesperf.plots.transitions import plot_transition_graph
    >>> fig = plot_transition_graph(model, min_prob=0.02)                # doctest: +SKIP
    >>> fig = plot_transition_graph(big_model, max_edges=40)             # doctest: +SKIP
    >>> fig.savefig("graph.png", dpi=150)                                 # doctest: +SKIP
    """
    from matplotlib.patches import FancyArrowPatch

    _check_model(model, "plot_transition_graph")
    if not 0 <= min_prob < 1:
        raise ValueError(f"min_prob must be in [0, 1), got {min_prob!r}")
    if max_edges is not None and (
        isinstance(max_edges, bool) or not isinstance(max_edges, Integral) or max_edges < 1
    ):
        raise ValueError(f"max_edges must be a positive integer or None, got {max_edges!r}")
    table = model.transition_probabilities(ci_prob)  # validates ci_prob
    shown, n_low, n_cut = _select_edges(table, min_prob, max_edges)
    if shown.empty:
        raise ValueError(
            f"no transition has a posterior mean of at least min_prob={min_prob}: lower it"
        )
    src = shown["source"].astype(str).tolist()
    tgt = shown["target"].astype(str).tolist()
    flow = shown["flow"].to_numpy()
    mean, lower, upper = (shown[c].to_numpy() for c in ("mean", "lower", "upper"))
    pairs = list(zip(src, tgt, strict=True))
    layer = _layers([(s, t, f) for (s, t), f in zip(pairs, flow, strict=True)])
    slots = _order(layer, pairs)
    nodes = list(slots)
    n_layers = max(layer.values()) + 1

    # Geometry in inches: node widths from the font, layers packed left to right.
    pt = 1 / 72
    half_w = {
        n: (_text_width_pt(n, NODE_FONTSIZE) / 2 + _NODE_PAD * NODE_FONTSIZE) * pt for n in nodes
    }
    half_h = (0.65 * NODE_FONTSIZE + _NODE_PAD * NODE_FONTSIZE) * pt
    widest = [
        max((half_w[n] for n in nodes if layer[n] == k), default=0.0) for k in range(n_layers)
    ]
    x_of = np.cumsum([0.0] + [widest[k] + widest[k + 1] + _LAYER_GAP for k in range(n_layers - 1)])
    pos = {n: np.array([x_of[layer[n]], -slots[n][1] * _NODE_SPACING]) for n in nodes}

    node_boxes = {
        n: np.array([*(pos[n] - [half_w[n], half_h]), *(pos[n] + [half_w[n], half_h])])
        for n in nodes
    }
    # Obstacles for labels: node boxes, and the loop with its label above self-looping nodes.
    loop_h = 0.75 * _LOOP_HEIGHT * pt
    label_h = (1.25 * LABEL_FONTSIZE + 2 * _LABEL_PAD * LABEL_FONTSIZE + 2) * pt
    obstacles = [node_boxes[n] for n in nodes]
    loop_box = {}
    for s, t in pairs:
        if s == t:
            top = pos[s][1] + half_h + 2 * pt
            x = pos[s][0]
            loop_box[s] = np.array([x - 14 * pt, top, x + 14 * pt, top + loop_h])
    obstacles += list(loop_box.values())

    # Route: straight to the next layer; bent for returns, pairs, long and same-layer edges.
    order = np.argsort(-flow, kind="stable")
    pair_set = set(pairs)
    controls: dict[int, np.ndarray] = {}
    curve_pts: list[np.ndarray] = []
    routed: list[tuple[str, str]] = []
    samples = np.linspace(0.06, 0.94, 33)
    for i in order:
        s, t = pairs[i]
        if s == t:
            continue
        a, b = pos[s], pos[t]
        step = layer[t] - layer[s]
        if step == 1 and (t, s) not in pair_set:
            rads = [0.0]
        elif abs(step) == 1:
            rads = [0.15]
        else:
            rads = [0.0] if step > 1 and (t, s) not in pair_set else []
            rads += [r for m in (0.12, 0.22, 0.35, 0.5) for r in (m, -m)]
        others = np.array(
            [node_boxes[n] for n in nodes if n not in (s, t)] + list(loop_box.values())
        ).reshape(-1, 4)
        best = None
        for k, rad in enumerate(rads):
            c = _control(a, b, rad)
            pts = _bezier(a, c, b, samples)
            # Avoid other nodes first, then running along an edge already routed (edges
            # sharing a node meet there anyway).
            near = sum(
                float(np.mean(np.linalg.norm(pts - q, axis=1) < 0.12))
                for q, ends in zip(curve_pts, routed, strict=True)
                if s not in ends and t not in ends
            )
            score = 10 * _inside(pts, others) + near + 0.05 * k
            if best is None or score < best[0]:
                best = (score, c, pts)
        assert best is not None
        controls[i] = best[1]
        curve_pts.append(best[2])
        routed.append((s, t))

    # Labels: greedily, busiest edge first, where they overlap other labels and nodes least.
    label_at: dict[int, np.ndarray] = {}
    placed: list[np.ndarray] = []
    # Self-loop labels have fixed places: take them first.
    for i in sorted(order if labels else [], key=lambda i: pairs[i][0] != pairs[i][1]):
        s, t = pairs[i]
        text = edge_label(float(mean[i]), float(lower[i]), float(upper[i]))
        half = (_text_width_pt(text, LABEL_FONTSIZE) / 2 + _LABEL_PAD * LABEL_FONTSIZE + 1.5) * pt
        if s == t:
            x = pos[s][0]
            top = loop_box[s][3]
            box = np.array([x - half, top, x + half, top + label_h])
        else:
            along = _bezier(pos[s], controls[i], pos[t], _LABEL_SPOTS)
            box, best_score = None, np.inf
            for p in along:
                candidate = np.array(
                    [p[0] - half, p[1] - label_h / 2, p[0] + half, p[1] + label_h / 2]
                )
                score = _overlap(candidate, np.array(placed).reshape(-1, 4)) + 2 * _overlap(
                    candidate, np.array(obstacles)
                )
                if score < best_score - 1e-12:
                    box, best_score = candidate, score
                if score == 0:
                    break
            assert box is not None
        placed.append(box)
        label_at[i] = box

    boxes = np.array(
        obstacles + placed + [np.array([*p.min(axis=0), *p.max(axis=0)]) for p in curve_pts]
    )
    margin = 0.15
    x0, y0 = boxes[:, :2].min(axis=0) - margin
    x1, y1 = boxes[:, 2:].max(axis=0) + margin

    fig, ax = new_axes(ax, (max(x1 - x0 + 0.3, 8.0), y1 - y0 + 1.2))
    texts: dict[str, Text] = {}
    for n in nodes:
        terminal = n in (S.START, S.END)
        texts[n] = ax.text(
            *pos[n],
            n,
            ha="center",
            va="center",
            fontsize=NODE_FONTSIZE,
            color="white" if terminal else "0.1",
            fontweight="bold" if terminal else "normal",
            bbox={
                "boxstyle": f"round,pad={_NODE_PAD}",
                "facecolor": "0.35" if terminal else "#eef3f9",
                "edgecolor": "0.25",
                "linewidth": 0.8,
            },
            zorder=5,
            gid=f"node:{n}",
        )
    for i in order:
        s, t = pairs[i]
        color = BACKWARD_COLOR if s == t or layer[t] <= layer[s] else FORWARD_COLOR
        width = max(max_width * float(mean[i]), 0.6)
        style = _Loop(texts[s]) if s == t else _Arc(controls[i], texts[s], texts[t])
        arrow = FancyArrowPatch(
            posA=tuple(pos[s]),
            posB=tuple(pos[t]),
            connectionstyle=style,
            arrowstyle="-|>",
            mutation_scale=9 + 1.2 * width,
            linewidth=width,
            color=color,
            alpha=0.75,
            zorder=2,
            gid=f"edge:{s}->{t}",
        )
        ax.add_artist(arrow)  # not add_patch: the limits are set once, below
        if i not in label_at:
            continue
        style_kw: dict[str, Any] = {
            "ha": "center",
            "fontsize": LABEL_FONTSIZE,
            "color": color,
            "zorder": 4,
            "gid": f"label:{s}->{t}",
            "bbox": {
                "boxstyle": f"round,pad={_LABEL_PAD}",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.85,
            },
        }
        text = edge_label(float(mean[i]), float(lower[i]), float(upper[i]))
        if s == t:
            # Offset in points from the node, so that it follows the loop at any scale.
            rise = (half_h + 2 * pt + loop_h) / pt + 1
            ax.annotate(
                text, pos[s], xytext=(0, rise), textcoords="offset points", va="bottom", **style_kw
            )
        else:
            box = label_at[i]
            ax.text(*(box[:2] + box[2:]) / 2, text, va="center", **style_kw)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()

    pct = f"{100 * ci_prob:.10g}%"
    observed = int((table["target"] != UNSEEN).sum())
    hidden = f"{n_low} edge{'s' if n_low != 1 else ''} with mean < {min_prob:g} hidden"
    if n_cut:
        hidden += (
            f" · of the {len(shown) + n_cut} others, the top {len(shown)} by "
            "mean × source transitions shown"
        )
    ax.set_title(
        f"Service transitions ({model.mode} mode): {len(shown)} of {observed} observed "
        f"edges, {len(nodes)} of {len(model.states)} states\n"
        f"width ∝ posterior mean · labels: mean [{pct} interval]\n"
        f"orange: back toward START or within a layer · {UNSEEN} buckets not drawn\n" + hidden,
        fontsize="medium",
    )
    return fig


# -------------------------------------------------------------------------- heatmap
def _state_order(table: pd.DataFrame, states: pd.Index) -> list[str]:
    """``START``, services by layer then decreasing traffic, ``END``."""
    observed = table[table["target"] != UNSEEN]
    traffic = _row_traffic(table)
    edges = list(
        zip(
            observed["source"].astype(str),
            observed["target"].astype(str),
            observed["count"].astype(float),
            strict=True,
        )
    )
    layer = _layers(edges)
    names = [str(s) for s in states]
    services = [n for n in names if n not in (S.START, S.END)]
    services.sort(key=lambda n: (layer.get(n, 1), -float(traffic.get(n, 0)), n))
    head = [S.START] if S.START in names else []
    tail = [S.END] if S.END in names else []
    return head + services + tail


def plot_transition_heatmap(
    model: TransitionModel,
    *,
    ci_prob: float = 0.9,
    max_states: int = 40,
    annotate: bool = True,
    unseen: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """The transition matrix: posterior mean probability of each source -> target.

    Rows are sources, columns targets, both in the same order: ``START`` first, the
    services by layer of the call graph (as in :func:`plot_transition_graph`) and then
    by decreasing traffic, ``END`` last, followed (with ``unseen=True``) by a separate
    ``(unseen)`` column holding each row's probability of targets never observed from
    it, so that every row sums to 1. Cells never observed are blank.

    Parameters
    ----------
    model : TransitionModel
        A fitted model with at most ``max_states`` states.
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed credible interval in the annotations.
    max_states : int, default 40
        Refuse larger models (a matrix of hundreds of services is unreadable; use
        :func:`plot_transition_graph`, which keeps the busiest edges).
    annotate : bool, default True
        Write ``mean`` and ``[lower–upper]`` in each observed cell when the model has
        at most 20 states.
    unseen : bool, default True
        Add the ``(unseen)`` column.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (the colourbar takes room from it); a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the matrix (an image) and its colourbar.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~bayesperf.models.transitions.TransitionModel`.
    NotFittedError
        The model is not fitted.
    ValueError
        More than ``max_states`` states, or ``ci_prob`` out of range.

    Examples
    --------
    >>> from bayesperf.plots.transitions import plot_transition_heatmap
    >>> fig = plot_transition_heatmap(model, ci_prob=0.95)               # doctest: +SKIP
    """
    _check_model(model, "plot_transition_heatmap")
    states = model.states
    if len(states) > max_states:
        raise ValueError(
            f"the model has {len(states)} states, more than max_states={max_states}: a "
            "matrix that large is unreadable; use plot_transition_graph(model, "
            "max_edges=...), which draws the busiest edges, or raise max_states"
        )
    table = model.transition_probabilities(ci_prob)
    order = _state_order(table, states)
    rows = [s for s in order if s != S.END]
    cols = [s for s in order if s != S.START] + ([UNSEEN] if unseen else [])
    grid = table.assign(source=table["source"].astype(str), target=table["target"].astype(str))
    grid = grid[grid["target"].isin(cols)]
    r = pd.Index(rows).get_indexer(grid["source"])
    c = pd.Index(cols).get_indexer(grid["target"])
    values = np.full((len(rows), len(cols)), np.nan)
    values[r, c] = grid["mean"].to_numpy()

    write = annotate and len(states) <= ANNOTATE_MAX_STATES
    cell_w, cell_h = (0.82, 0.42) if write else (0.32, 0.28)
    longest = max(_text_width_pt(s, 9.0) for s in order) / 72
    fig, ax = new_axes(
        ax,
        (longest + 1.9 + cell_w * len(cols), longest * 0.75 + 1.3 + cell_h * len(rows)),
    )
    import matplotlib as mpl

    cmap = mpl.colormaps["Blues"].with_extremes(bad="white")
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(np.arange(len(cols)), cols, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xticks(np.arange(len(cols) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    if unseen:
        ax.axvline(len(cols) - 1.5, color="0.3", linewidth=1.2)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    pct = f"{100 * ci_prob:.10g}%"
    if write:
        for (i, j), m, lo, hi in zip(
            zip(r, c, strict=True),
            grid["mean"].to_numpy(),
            grid["lower"].to_numpy(),
            grid["upper"].to_numpy(),
            strict=True,
        ):
            ax.text(
                j,
                i,
                f"{format_probability(m)}\n[{format_probability(lo)}–{format_probability(hi)}]",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if m > 0.55 else "0.1",
                gid=f"cell:{rows[i]}->{cols[j]}",
            )
    fig.colorbar(image, ax=ax, label="posterior mean transition probability", shrink=0.8)
    what = f"cells: mean and {pct} credible interval · " if write else ""
    ax.set_title(
        f"Transition probabilities ({model.mode} mode, {len(states)} states)\n"
        f"{what}blank: never observed (its share is in {UNSEEN})",
        fontsize="medium",
    )
    return fig
