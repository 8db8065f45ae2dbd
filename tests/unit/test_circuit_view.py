"""The Circuit view's frames and charts (lib.app.circuit_view): the graph holds the circuit's edges
and only the nodes they touch, edge width follows |score| and colour its sign, and the charts and
the edge table are built from the result alone."""

from __future__ import annotations

import pytest

from lib.app.circuit_view import curve_chart, edge_frame, find_circuit, graph_chart, graph_frames, reading
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"


@pytest.fixture(scope="module", params=["heads", "layers"])
def result(request, tiny_models):
    model = tiny_models["llama"]
    return find_circuit(model, capture(model, A), capture(model, B), answer=10, wrong=11, edges=8,
                        granularity=request.param)


def test_graph_holds_the_circuit_edges_and_the_nodes_they_touch(result):
    nodes, edges = graph_frames(result)
    circuit = result.circuit_edges()
    assert sorted(edges.edge.unique()) == list(range(1, len(circuit) + 1))
    assert (edges.groupby("edge").order.apply(list) == [[0, 1, 2]] * len(circuit)).all()
    touched = {"embed", "logits"} | {e.source for e in circuit} | {e.target for e in circuit}
    assert set(nodes.name) == touched
    first = edges[edges.edge == 1]
    assert first.width.iloc[0] == pytest.approx(10.0)  # the largest |score| is the widest
    for rank, e in enumerate(circuit, 1):
        row = edges[edges.edge == rank].iloc[0]
        assert row.sign == ("toward A" if e.score >= 0 else "toward B")
        start, end = nodes[nodes.name == e.source].iloc[0], nodes[nodes.name == e.target].iloc[0]
        drawn = edges[edges.edge == rank]
        assert (drawn.x.iloc[0], drawn.y.iloc[0]) == (start.x, start.y)
        assert (drawn.x.iloc[2], drawn.y.iloc[2]) == (end.x, end.y)
        assert start.x < end.x  # left to right along the residual stream


def test_charts_and_table_come_from_the_result(result):
    spec = graph_chart(result).to_dict()
    assert len(spec["layer"]) == 3 and spec["layer"][0]["mark"]["type"] == "line"
    assert curve_chart(result).to_dict()["layer"][0]["encoding"]["x"]["scale"]["type"] == "symlog"
    table = edge_frame(result)
    assert len(table) == len(result.edges) and table.in_circuit.sum() == result.size
    assert table.score.abs().is_monotonic_decreasing
    assert f"restore {result.faithfulness:.0%}" in reading(result)


def test_one_node_shows_its_edges_its_direct_effect_and_its_pattern(result, tiny_models):
    from lib.analyses.components import attention_patterns, attribute_captures
    from lib.app.circuit_view import (
        circuit_nodes,
        clicked_node,
        direct_effect,
        head_pattern_frame,
        node_edges,
    )

    assert circuit_nodes(result)[0] == "embed" and circuit_nodes(result)[-1] == "logits"
    name = result.edges[0].target
    edges = node_edges(result, name, count=3)
    into = edges[edges.direction == "in"]
    assert list(into.other) == [e.source for e in result.edges if e.target == name][:3]
    assert into["rank"].iloc[0] == 1
    model = tiny_models["llama"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    attribution = attribute_captures(model, cap_a, cap_b, answer=10, wrong=11)
    nodes = {n.name: n for n in result.nodes}
    mlp = nodes["MLP 1"]
    change = attribution.a.mlp[1] - attribution.b.mlp[1]
    assert f"A − B {change:+.3f}" in direct_effect(attribution, mlp)
    assert direct_effect(attribution, nodes["logits"]) is None
    patterns = attention_patterns(model, cap_a, cap_b)
    frame = head_pattern_frame(patterns, 2, 1)
    assert frame["A weight"].tolist() == pytest.approx(patterns.a[2, 1, -1].tolist())
    assert frame["B weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert clicked_node({"selection": {"node": [{"name": "MLP 1"}]}}) == "MLP 1"
    assert clicked_node({"selection": {"node": []}}) is None and clicked_node(None) is None


def test_graph_exports_as_svg_and_png(result):
    from lib.app.circuit_view import graph_image

    svg = graph_image(result, "svg").decode()
    assert svg.startswith("<svg") and result.circuit_edges()[0].source in svg
    assert graph_image(result, "png").startswith(b"\x89PNG")
