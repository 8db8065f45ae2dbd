"""Circuit: which paths between components carry the difference between A and B into the answer."""

from __future__ import annotations

from functools import partial

import streamlit as st

from lib.app import circuit_view, session, ui, views

views.page(
    "Circuit",
    """
This page finds the paths between parts of the model that carry the difference between A and B into
the answer. The Components page says which heads and MLPs write it; this page asks which earlier
parts feed them, and checks the answer by running the model.

- **Metric**: `logit[answer] − logit[wrong]` at B's last position, as on the Patching page.
- **Nodes**: the embedding, each attention head (or each layer's attention, coarse), each MLP and
  the logits. An edge u → v is scored by **edge attribution patching** (Syed et al. 2023): the
  change in u's output from B to A, dotted with the gradient of the metric with respect to what v
  reads, at B's run — a first-order estimate of patching A's u into v's input only. EAP-IG (Hanna
  et al. 2024) averages that gradient over runs moved from B toward A. Prompts of equal length only.
- **The circuit** is the top edges by |score|. Its **faithfulness** is measured by running it:
  every edge in the circuit carries A's values, every other edge B's; 0 = B's metric, 1 = A's.
  **Knockout** runs the rest without the circuit.
- **Checked**: the top edges are patched exactly (A's u into v's input, in B's run) beside their
  scores, with Pearson r: the scores are estimates, never shown as exact.
""",
)



def linked_input(column, widget: str, key: str, name: str, default, cast=str, **options):
    """A widget whose value a link carries as `name` (left out while it is `default`)."""
    session.linked(key, name, cast)
    st.session_state.setdefault(key, default)
    value = getattr(column, widget)(key=key, **options)
    session.share(key, name, value, default)
    return value


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    left, right = st.columns(2)
    answer = linked_input(left, "text_input", "circuit-answer", "answer", "", label="Answer token",
                          placeholder=f"A's top-1: {comparison.a.final[0].token}",
                          help="␣ stands for a leading space. Empty: A's predicted next token.") or None
    wrong = linked_input(right, "text_input", "circuit-wrong", "wrong", "", label="Wrong token",
                         placeholder=f"B's top-1: {comparison.b.final[0].token}",
                         help="␣ stands for a leading space. Empty: B's predicted next token.") or None
    views.token_legend()
    left, middle, right = st.columns(3)
    edges = linked_input(left, "number_input", "circuit-edges", "circuit_edges", 30, int,
                         label="Edges in the circuit", min_value=1, max_value=5000)
    steps = linked_input(middle, "number_input", "circuit-ig", "circuit_ig", 1, int,
                         label="EAP-IG steps (1: EAP)", min_value=1, max_value=64)
    coarse = linked_input(right, "toggle", "circuit-coarse", "circuit_coarse", False, lambda v: v == "True",
                          label="One node per layer's attention",
                          help="Off: a node per head. Families that normalize each attention output "
                               "before adding it (Gemma-2) have only this view.")
    asked = (request, answer, wrong, int(edges), int(steps), coarse)
    # a link with a chosen node was shared from a circuit: draw it
    if not session.asked("Find the circuit", "circuit-run", asked, also=session.link_carries("circuit_node"),
                         type="primary"):
        st.info("Press **Find the circuit**: one forward and one backward pass for the scores, then the "
                "circuit run block by block over a curve of sizes, and one batched pass of exact checks.")
        st.stop()
    with st.spinner("Scoring every edge and running the circuit…"):  # bad input: the app's error boundary
        result = circuit_view.found_circuit(run_a, run_b, answer, wrong, int(edges), int(steps), coarse)
    st.text(f"Metric: logit[{result.answer.label}] − logit[{result.wrong.label}]   "
            f"A: {result.metric_a:.3f}   B: {result.metric_b:.3f}")
    st.markdown(views.plain(circuit_view.reading(result)))
    st.caption(views.plain(result.note))
    event = st.altair_chart(circuit_view.graph_chart(result), on_select="rerun", key="circuit-graph",
                            width="stretch")
    for column, (kind, mime) in zip(st.columns(4)[:2], circuit_view.IMAGE_KINDS.items(), strict=True):
        column.download_button(f"⬇ graph ({kind.upper()})", partial(circuit_view.graph_image, result, kind),
                               file_name=f"circuit.{kind}", mime=mime, key=f"circuit-graph-{kind}",
                               on_click="ignore")  # drawn when clicked, not on every rerun
    clicked = circuit_view.clicked_node(event)
    if clicked is not None and clicked != st.session_state.get("circuit-clicked"):  # a new click
        st.session_state["circuit-clicked"] = st.session_state["circuit-node"] = clicked
    st.subheader("Faithfulness over circuit sizes")
    st.altair_chart(circuit_view.curve_chart(result), width="stretch")
    st.subheader("Edges")
    table = circuit_view.edge_frame(result)
    st.dataframe(table[table.in_circuit], hide_index=True, width="stretch")
    st.subheader("One node")
    nodes = {node.name: node for node in result.nodes}
    choices = circuit_view.circuit_nodes(result)
    session.linked("circuit-node", "circuit_node")
    if st.session_state.get("circuit-node") not in choices:  # another circuit, or a link's unknown node
        st.session_state.pop("circuit-node", None)
    name = st.selectbox("Node (or click one on the graph)", choices, key="circuit-node")
    session.share("circuit-node", "circuit_node", name, choices[0])
    node = nodes[name]
    st.dataframe(circuit_view.node_edges(result, name), hide_index=True, width="stretch")
    if node.kind in ("embed", "head", "attn", "mlp"):
        st.text(circuit_view.node_effect(run_a, run_b, answer, wrong, node))
    if node.kind == "head":
        st.markdown(f"**Where {views.plain(name)} looks from the last position**")
        st.dataframe(circuit_view.node_pattern(run_a, run_b, node), hide_index=True, width="stretch")
    views.download_buttons("circuit", request, {"circuit": result.to_dict()}, {"edges": table})
    views.save_form(request, result, "circuit")
