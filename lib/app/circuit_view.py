"""The Circuit view: the circuit and a node's numbers through the results cache (`found_circuit`,
`node_effect`, `node_pattern`: the page calls no analysis itself), and its frames and charts
(Altair + pandas): the graph of the circuit, its faithfulness curve, the edge list for export, and
a sentence that reads it.

The graph puts components left to right in the order the residual stream meets them: the
embedding, then per layer ℓ the attention (heads stacked top to bottom) and the MLP, and the
logits last. In the per-head view an edge into a layer's attention ends at an "attn ℓ" node just
left of and above its heads (they all read that one input). Edges bow upward (more the longer they
are), so edges between nodes of one row stay apart. Edge width ∝ |score|, colour = sign (red: the
edge pushes the metric toward A, blue: toward B); hovering shows the numbers.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..analyses.circuit import Circuit, Node, find_circuit
from ..analyses.components import AttentionPatterns, ComponentAttribution
from . import charts, components_view, ui
from .cache import RunKey

__all__ = [
    "IMAGE_KINDS", "circuit_nodes", "clicked_node", "curve_chart", "direct_effect", "edge_frame",
    "found_circuit", "graph_chart", "graph_frames", "graph_image", "head_pattern_frame", "node_edges",
    "node_effect", "node_pattern", "reading",
]

SIGN_COLOURS = {"toward A": "#c0392b", "toward B": "#2e6db4"}
MAX_WIDTH = 10.0  # pixels: the widest edge
IMAGE_KINDS = {"svg": "image/svg+xml", "png": "image/png"}  # the graph's image files (`graph_image`)


def _place(node: Node, n_heads: int, heads: bool) -> tuple[float, float]:
    """(x, y) of a node: x in stages along the residual stream, y within a stage."""
    middle = (n_heads - 1) / 2 if heads else 0.0
    if node.kind == "embed":
        return 0.0, middle
    if node.kind == "logits":
        return 2.0 * node.layer + 1, middle
    if node.kind == "head":
        return 2.0 * node.layer + 1, float(node.head)
    if node.kind == "mlp":
        return 2.0 * node.layer + 2, float(n_heads) if heads else 1.0
    if node.kind == "block" or heads:  # the input every head of the layer reads, above its heads
        return 2.0 * node.layer + 0.6, -1.0 if heads else middle
    return 2.0 * node.layer + 1, 0.0


def edge_frame(result: Circuit) -> pd.DataFrame:
    """Every edge, largest |score| first: rank, source, target, score (EAP, logit units), exact
    (path patching, for the checked edges), in_circuit."""
    return pd.DataFrame(
        {"rank": i + 1, "source": e.source, "target": e.target, "score": e.score, "exact": e.exact,
         "in_circuit": i < result.size}
        for i, e in enumerate(result.edges)
    )


def graph_frames(result: Circuit) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, edges) of the circuit's drawing: each circuit edge as three points (source, a bowed
    middle, target; `order` 0–2, `edge` its rank), and the nodes the edges touch (with the embedding
    and the logits always). Node names are unique: in the coarse view "attn ℓ" is one node."""
    heads = result.granularity == "heads"
    n_heads = 1 + max((n.head for n in result.nodes if n.head is not None), default=0)
    names = {n.name: n for n in result.nodes}
    circuit = result.circuit_edges()
    peak = max((abs(e.score) for e in circuit), default=1.0) or 1.0
    points = []
    for rank, e in enumerate(circuit, 1):
        (x, y), (x2, y2) = _place(names[e.source], n_heads, heads), _place(names[e.target], n_heads, heads)
        bow = 0.3 + 0.04 * (x2 - x)
        sign = "toward A" if e.score >= 0 else "toward B"
        shared = {"edge": rank, "source": e.source, "target": e.target, "score": e.score, "exact": e.exact,
                  "width": MAX_WIDTH * abs(e.score) / peak, "sign": sign}
        for order, (px, py) in enumerate(((x, y), ((x + x2) / 2, (y + y2) / 2 - bow), (x2, y2))):
            points.append({**shared, "order": order, "x": px, "y": py})
    drawn = set(circuit_nodes(result))
    nodes = []
    for node in result.nodes:
        if node.name in drawn:
            x, y = _place(node, n_heads, heads)
            nodes.append({"x": x, "y": y, "name": node.name, "kind": node.kind, "layer": node.layer})
    columns = ["edge", "order", "x", "y", "source", "target", "score", "exact", "width", "sign"]
    return pd.DataFrame(nodes), pd.DataFrame(points, columns=columns)


def graph_chart(result: Circuit) -> alt.LayerChart:
    """The circuit as a graph (`charts.circuit_graph` of `graph_frames`)."""
    nodes, edges = graph_frames(result)
    return charts.circuit_graph(nodes, edges, max(n.layer for n in result.nodes), SIGN_COLOURS)


def graph_image(result: Circuit, kind: str) -> bytes:
    """The graph as an image file: kind "svg" (text, UTF-8) or "png", drawn by vl-convert from the
    same Vega-Lite spec the page shows (1,200 pixels wide)."""
    import vl_convert

    spec = graph_chart(result).properties(width=1200).to_json()
    if kind == "svg":
        return vl_convert.vegalite_to_svg(spec).encode()
    return vl_convert.vegalite_to_png(spec, scale=2)


def curve_frame(result: Circuit) -> pd.DataFrame:
    """Faithfulness and knockout per circuit size, long form: size, share, measure, value."""
    rows = []
    for point in result.curve:
        rows += [{"size": point.size, "share": point.share, "measure": "faithfulness (circuit alone)",
                  "value": point.faithfulness},
                 {"size": point.size, "share": point.share, "measure": "knockout (everything else)",
                  "value": point.knockout}]
    return pd.DataFrame(rows)


def curve_chart(result: Circuit) -> alt.LayerChart:
    """Faithfulness (and knockout) against the number of top edges kept, the chosen size marked."""
    return charts.circuit_curve(curve_frame(result), result.size)


def reading(result: Circuit) -> str:
    """One plain paragraph: what the circuit restores, what knocking it out leaves, and how well the
    scores agree with exact patching."""
    point = next(p for p in result.curve if p.size == result.size)
    checked = sum(e.exact is not None for e in result.edges)
    r = "undefined" if result.pearson_r is None else f"{result.pearson_r:.2f}"
    return (
        f"The top {result.size:,} of {len(result.edges):,} edges ({point.share:.0%} of the total |score|) "
        f"restore {result.faithfulness:.0%} of m_A − m_B when they alone carry A's values; with them knocked "
        f"out the rest restores {result.knockout:.0%}. Over the top {checked} edges the scores agree with "
        f"exact path patching at Pearson r = {r}."
    )


def circuit_nodes(result: Circuit) -> list[str]:
    """The names of the nodes the graph draws (the embedding, the logits and the nodes the circuit's
    edges touch), in the order of `result.nodes`."""
    touched = {"embed", "logits", *(e.source for e in result.circuit_edges()),
               *(e.target for e in result.circuit_edges())}
    return [node.name for node in result.nodes if node.name in touched]


def clicked_node(event: object) -> str | None:
    """The node a click on the graph chose (Streamlit's selection event), or None."""
    picked = (event or {}).get("selection", {}).get("node") or []  # type: ignore[union-attr]
    return str(picked[0]["name"]) if picked else None


def node_edges(result: Circuit, name: str, count: int = 10) -> pd.DataFrame:
    """The node's `count` largest edges in and `count` out: direction, other (the node at the other
    end), score, exact, rank (among all edges; in the circuit when rank ≤ its size)."""
    rows: dict[str, list[dict]] = {"in": [], "out": []}
    for rank, e in enumerate(result.edges, 1):
        for direction, here, other in (("in", e.target, e.source), ("out", e.source, e.target)):
            if here == name and len(rows[direction]) < count:
                rows[direction].append({"direction": direction, "other": other, "score": e.score,
                                        "exact": e.exact, "rank": rank})
    return pd.DataFrame([*rows["in"], *rows["out"]], columns=["direction", "other", "score", "exact", "rank"])


def direct_effect(attribution: ComponentAttribution, node: Node) -> str | None:
    """The node's direct logit attribution (the Components page's row) in A, in B and A − B, for
    the embedding, a head, a layer's attention or an MLP; None for the others."""
    pick = {
        "embed": lambda side: side.embed,
        "head": lambda side: side.heads[node.layer][node.head],
        "attn": lambda side: side.attn[node.layer],
        "mlp": lambda side: side.mlp[node.layer],
    }.get(node.kind)
    if pick is None:
        return None
    a, b = pick(attribution.a), pick(attribution.b)
    return f"Direct effect of {node.name} on the metric (DLA): A {a:.3f}, B {b:.3f}, A − B {a - b:+.3f}."


def head_pattern_frame(patterns: AttentionPatterns, layer: int, head: int) -> pd.DataFrame:
    """Where one head looks from the last position in A and in B: one row per key position."""
    a, b = patterns.view("a", layer, head)[-1], patterns.view("b", layer, head)[-1]
    return pd.DataFrame({"key": range(len(a)), "A token": patterns.tokens_a, "A weight": a,
                         "B token": patterns.tokens_b, "B weight": b})


def found_circuit(run_a: RunKey, run_b: RunKey, answer: str | None, wrong: str | None, edges: int,
                  ig_steps: int, coarse: bool) -> Circuit:
    """The circuit of the pair (`find_circuit`, once per value in the results cache): one node per
    layer's attention when `coarse`, else one per head."""
    return ui.cached(find_circuit, run_a.model, run_a, run_b, answer=answer, wrong=wrong, edges=edges,
                     ig_steps=ig_steps, granularity="layers" if coarse else "heads")


def node_effect(run_a: RunKey, run_b: RunKey, answer: str | None, wrong: str | None,
                node: Node) -> str | None:
    """`direct_effect` of `node` from the Components page's attribution of the same pair (cached:
    the one it computed, when it did)."""
    return direct_effect(components_view.attribution_of(run_a, run_b, answer, wrong), node)


def node_pattern(run_a: RunKey, run_b: RunKey, node: Node) -> pd.DataFrame:
    """Where head `node` looks from the last position (`head_pattern_frame` of the pair's cached
    attention patterns, the Components page's)."""
    return head_pattern_frame(components_view.patterns_of(run_a, run_b), node.layer, node.head)
