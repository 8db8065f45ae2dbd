"""Patching: A's residual written into B's run at each (layer, position), and how far B moves toward A."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib.analyses.compare import Comparison
from lib.analyses.patching import PatchedLens, PatchResult, patch_captures, patched_lens_captures, reading
from lib.app import ui

ui.page(
    "Patching",
    """
Distances and the lens show *where* A and B differ; patching asks *which* state carries the
difference into the answer. B is run again, but at one layer and one position its residual stream
(the model's running state) is replaced by A's at the same place. If B's answer then turns into A's,
that state carried what makes A answer differently.

- **Metric**: the logit difference `logit[answer] − logit[wrong]` at B's last position. By default
  *answer* is A's predicted next token and *wrong* is B's (e.g. ␣Paris vs ␣Rome).
- **Effect** = (patched − B) / (A − B): **0** = the patch changed nothing, **1** = B now behaves like A
  on this metric. Values outside 0…1 mean the patch overshoots or pushes the other way.
- **Layer 0** is the embedding: only positions whose *token* differs can matter there.
  The **last layer** is the final state: only the last position can matter there (it is A's answer).
  In between, the effect moves from the differing word to the last position as layers pass it on.
- Prompts with different numbers of tokens cannot be matched position by position: then only the
  last position is patched.
- Pick a cell below the map to see B's logit lens (last position) after that one patch, next to
  B's and A's own.
""",
)

RUN_KEY = "patching-ran-for"  # the (request, answer, wrong) the grid was last asked for
MAX_LABELLED_CELLS = 400  # beyond this the numbers no longer fit in the cells


def column_labels(result: PatchResult) -> list[str]:
    """'position · token' for each patched position: unique even when a token repeats."""
    return [f"{p} · {result.tokens_b[p]}" for p in result.positions]


def effect_table(result: PatchResult) -> pd.DataFrame:
    """Layers as rows (0 first), B's patched positions as columns, the normalized effect as values."""
    return pd.DataFrame(
        [list(row) for row in result.effect], columns=column_labels(result)
    ).rename_axis("layer").reset_index()


def long_table(result: PatchResult) -> pd.DataFrame:
    """One row per cell: layer, position, token, effect and the raw logit difference."""
    labels = column_labels(result)
    return pd.DataFrame(
        {"layer": layer, "position": p, "column": labels[j], "token": result.tokens_b[p],
         "effect": result.effect[layer][j], "logit difference": result.raw[layer][j]}
        for layer in range(len(result.effect))
        for j, p in enumerate(result.positions)
    )


def heatmap(table: pd.DataFrame) -> alt.LayerChart:
    """Layers × positions, diverging colours centred on 0 (red: toward A, blue: away from it)."""
    bound = max(1.0, float(table["effect"].abs().max()))
    base = alt.Chart(table).encode(
        x=alt.X("column:N", sort=list(dict.fromkeys(table["column"])), title="position · token (B)",
                axis=alt.Axis(labelAngle=-45, labelLimit=120)),
        y=alt.Y("layer:O", sort="descending"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("effect:Q", scale=alt.Scale(scheme="redblue", reverse=True, domain=[-bound, bound],
                                                     domainMid=0), title="effect"),
        tooltip=["layer", "position", "token", alt.Tooltip("effect", format=".3f"),
                 alt.Tooltip("logit difference", format=".3f")],
    )
    labels = base.mark_text(fontSize=9).encode(
        text=alt.Text("effect:Q", format=".2f"),
        color=alt.condition(f"abs(datum.effect) > {bound / 2}", alt.value("white"), alt.value("black")),
    )
    layers = [cells] if len(table) > MAX_LABELLED_CELLS else [cells, labels]
    return alt.layer(*layers).properties(height=min(18 * table["layer"].nunique() + 60, 900))


def lens_side_by_side(comparison: Comparison, patched: PatchedLens) -> pd.DataFrame:
    """Top-1 of the lens at the last position, per layer: B's own, B after the patch, A's own."""
    rows = []
    for layer, (own_b, after, own_a) in enumerate(zip(comparison.b.lens, patched.lens, comparison.a.lens,
                                                       strict=True)):
        rows.append({
            "layer": layer,
            "B": own_b[0].token, "p(B)": own_b[0].prob,
            "B patched": after[0].token, "p(B patched)": after[0].prob,
            "A": own_a[0].token, "p(A)": own_a[0].prob,
        })
    return pd.DataFrame(rows)


def token_inputs(comparison: Comparison) -> tuple[str | None, str | None]:
    """The answer and wrong tokens as typed; empty means A's (answer) or B's (wrong) top-1."""
    left, right = st.columns(2)
    answer = left.text_input(
        "Answer token", key="patching-answer", placeholder=f"A's top-1: {comparison.a.final[0].token}",
        help="One token of the vocabulary; ␣ stands for a leading space. Empty: A's predicted next token.",
    )
    wrong = right.text_input(
        "Wrong token", key="patching-wrong", placeholder=f"B's top-1: {comparison.b.final[0].token}",
        help="One token of the vocabulary; ␣ stands for a leading space. Empty: B's predicted next token.",
    )
    return answer or None, wrong or None


def cell_picker(result: PatchResult) -> tuple[int, int]:
    """A (layer, position) of the grid; by default where layer 0's effect is largest."""
    first = result.effect[0]
    strongest = max(range(len(first)), key=lambda j: abs(first[j]))
    labels = column_labels(result)
    left, right = st.columns(2)
    layer = left.selectbox("Layer", range(len(result.effect)), key=f"patching-layer-{len(result.effect)}")
    column = right.selectbox("Position in B", range(len(labels)), index=strongest,
                             format_func=labels.__getitem__, key=f"patching-position-{'|'.join(labels)}")
    return layer, result.positions[column]


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    answer, wrong = token_inputs(comparison)
    wanted = (request, answer, wrong)
    if st.button("Run patching", type="primary", key="patching-run"):
        st.session_state[RUN_KEY] = wanted
    if st.session_state.get(RUN_KEY) != wanted:
        same_length = len(comparison.a.tokens) == len(comparison.b.tokens)
        cells = (model.n_layers + 1) * (len(comparison.b.tokens) if same_length else 1)
        st.info(f"Press **Run patching**: {cells:,} patched runs of B, batched into a few forward passes.")
        st.stop()
    run_a, run_b = request.runs
    bar = st.progress(0.0, text="Patching A into B…")
    try:
        result = ui.cached(
            patch_captures, run_a.model, run_a, run_b, answer=answer, wrong=wrong,
            _progress=lambda done: bar.progress(done, text=f"Patching A into B: {done:.0%} done"),
        )
    finally:
        bar.empty()
    st.text(
        f"Metric: logit[{result.answer.token}] − logit[{result.wrong.token}] at B's last position. "
        f"A: {result.metric_a:.3f}   B: {result.metric_b:.3f}"
    )
    if result.note:
        st.info(ui.plain(result.note))
    st.markdown(ui.plain(reading(result)))
    table = long_table(result)
    st.altair_chart(heatmap(table), width="stretch")
    grid = effect_table(result)
    st.dataframe(grid, hide_index=True, width="stretch")

    st.subheader("B's logit lens after one patch")
    layer, position = cell_picker(result)
    patched = ui.cached(patched_lens_captures, run_a.model, run_a, run_b, layer, position, top_k=request.k)
    st.caption(ui.plain(
        f"Top-1 of the lens at B's last position, per layer, after writing A's residual at layer {layer}, "
        f"position {position} ('{result.tokens_b[position]}') into B. Layers below {layer} are B's own."
    ))
    side_by_side = lens_side_by_side(comparison, patched)
    st.dataframe(side_by_side, hide_index=True, width="stretch",
                 height=min(40 + 35 * (len(side_by_side) + 1), 900))
    tables = {"cells": table, "lens-after-patch": side_by_side}
    ui.download_buttons("patching", request, result.to_dict(), tables)
