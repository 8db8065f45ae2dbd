"""Components: which attention heads and MLPs write the difference between A and B into the answer."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import charts, components_view, session, ui, views

views.page(
    "Components",
    """
Patching says *where* (layer, position) the difference between A and B is carried; this page asks
*which component* writes it: an attention layer or an MLP, and which attention head.

- **Metric**: `logit[answer] − logit[wrong]` at the last position, as on the Patching page (by default
  *answer* is A's predicted token and *wrong* is B's).
- **Direct logit attribution** splits each prompt's metric into what the embedding, each layer's
  attention and MLP output, and each head add to the final residual, read through the final norm
  with its scale **frozen** at the real final residual (the standard linearization, as
  TransformerLens's `residual_stack_to_logit_diff`). The parts sum exactly to that linearized
  metric; it equals the model's own unless the model caps its logits (Gemma-2). Biases (output
  projections, final norm, unembedding) are counted once, apart. *Direct* means the path straight to
  the logits: a head that acts by changing later layers shows up there, not here.
- **Attention patterns**: where each query position looks (rows sum to 1), for A and B side by side,
  from the model's own attention run eagerly.
- **Head patching** (on demand): B is rerun with A's attention output, MLP output or one head's
  output written in (all positions at once); effect = (patched − B) / (A − B), 0 = nothing, 1 = B
  behaves like A. **Attribution patching** estimates the same grid from one forward and one backward
  pass (a first-order approximation, shown beside the exact grid with their agreement, never as exact).
""",
)

MEAN = "mean of heads"


def token_inputs(comparison) -> tuple[str | None, str | None]:
    left, right = st.columns(2)
    answer = left.text_input(
        "Answer token", key="components-answer", placeholder=f"A's top-1: {comparison.a.final[0].token}",
        help="One token of the vocabulary; ␣ stands for a leading space. Empty: A's predicted next token.",
    )
    wrong = right.text_input(
        "Wrong token", key="components-wrong", placeholder=f"B's top-1: {comparison.b.final[0].token}",
        help="One token of the vocabulary; ␣ stands for a leading space. Empty: B's predicted next token.",
    )
    return answer or None, wrong or None


def head_table(heads: tuple[tuple[float, ...], ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {"layer": layer, "head": head, "value": value}
        for layer, row in enumerate(heads) for head, value in enumerate(row)
    )


def draw_attribution(result) -> pd.DataFrame:
    st.text(
        f"Metric: logit[{result.answer.token}] − logit[{result.wrong.token}] at the last position. "
        f"A: {result.a.logit_diff:.3f} (linearized {result.a.linearized_logit_diff:.3f})   "
        f"B: {result.b.logit_diff:.3f} (linearized {result.b.linearized_logit_diff:.3f})"
    )
    st.caption(views.plain(result.note))
    st.markdown(views.plain(components_view.reading_of(result)))
    table = components_view.layer_table(result)
    for column, side in zip(st.columns(3), ("A", "B", "A − B"), strict=True):
        column.markdown(f"**Per layer, {side}**")
        column.altair_chart(charts.component_bars(table, side), width="stretch")
    st.caption(
        f"Embedding: A {result.a.embed:.3f}, B {result.b.embed:.3f}. Biases: A {result.a.bias:.3f}, "
        f"B {result.b.bias:.3f}."
    )
    diff = tuple(tuple(x - y for x, y in zip(ra, rb, strict=True))
                 for ra, rb in zip(result.a.heads, result.b.heads, strict=True))
    grids = (("A", result.a.heads), ("B", result.b.heads), ("A − B", diff))
    bound = max(abs(v) for _, heads in grids for row in heads for v in row) or 1e-9
    for column, (name, heads) in zip(st.columns(3), grids, strict=True):
        chart = charts.signed_grid(head_table(heads), "head", "layer", f"Heads, {name}", bound)
        column.altair_chart(chart, width="stretch")
    return table


def pattern_frame(weights, tokens: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {"query": f"{q} · {tokens[q]}", "key": f"{k} · {tokens[k]}", "q": q, "k": k, "value": w}
        for q, row in enumerate(weights) for k, w in enumerate(row)
    )


def draw_patterns(patterns, n_layers: int) -> pd.DataFrame:
    """Both prompts' pattern at a chosen layer and head (or the heads' mean), and their difference for
    equal lengths; where one query position looks in each. Choosing runs nothing: every layer is kept."""
    st.subheader("Attention patterns, A and B side by side")
    left, right = st.columns(2)
    layer = left.selectbox("Layer", range(n_layers), index=n_layers - 1, key="components-layer")
    head = right.selectbox("Head", [MEAN, *range(patterns.n_heads)], key="components-head")
    chosen = None if head == MEAN else head
    a, b = patterns.view("a", layer, chosen), patterns.view("b", layer, chosen)
    frame_a, frame_b = pattern_frame(a, patterns.tokens_a), pattern_frame(b, patterns.tokens_b)
    name = MEAN if head == MEAN else f"head {head}"
    columns = st.columns(3 if len(a) == len(b) else 2)
    shown = [(frame_a, f"A, layer {layer}, {name}", False), (frame_b, f"B, layer {layer}, {name}", False)]
    if len(a) == len(b):
        diff = frame_a.assign(value=frame_a["value"] - frame_b["value"])
        shown.append((diff, "A − B (query · key from A)", True))
    for column, (frame, title, diverging) in zip(columns, shown, strict=True):
        column.altair_chart(charts.attention_chart(frame, title, diverging), width="stretch")
    query = st.selectbox("Query position (counted from the end)", range(1, min(len(a), len(b)) + 1),
                         format_func=lambda back: "last" if back == 1 else f"{back}th from the end",
                         key="components-query")
    left, right = st.columns(2)
    shown = ((left, "A", a, patterns.tokens_a), (right, "B", b, patterns.tokens_b))
    for column, side, weights, tokens in shown:
        looks = pd.DataFrame({f"{side} key": [f"{k} · {tokens[k]}" for k in range(len(weights[-query]))],
                              f"{side} weight": weights[-query]})
        column.dataframe(looks, hide_index=True, width="stretch")
    return pd.concat([frame_a.assign(side="A"), frame_b.assign(side="B")], ignore_index=True)


def draw_patching(result, column: int) -> pd.DataFrame:
    label = result.columns[column]
    where = {"all": "all positions at once", "last": "A's last position into B's last"}.get(
        label, f"position {label} ('{result.tokens_b[int(label)]}')" if label.isdigit() else label)
    st.text(f"Metric A: {result.metric_a:.3f}   B: {result.metric_b:.3f}   patched: {where}")
    if result.note:
        st.info(views.plain(result.note))
    exact = [[cell[column] for cell in row] for row in result.heads]
    atp = [[cell[column] for cell in row] for row in result.atp_heads]
    bound = max(1.0, *(abs(v) for row in exact + atp for v in row))
    left, right = st.columns(2)
    for place, heads, title in ((left, exact, "Head patching (exact)"),
                                (right, atp, "Attribution patching (estimate)")):
        grid = charts.signed_grid(head_table(heads), "head", "layer", title, bound)
        place.altair_chart(grid, width="stretch")
    comps = pd.DataFrame(
        {"layer": layer, "component": name, "exact": result.components[layer][c][column],
         "attribution": result.atp_components[layer][c][column]}
        for layer in range(len(result.components)) for c, name in enumerate(("attention", "MLP"))
    )
    left, right = st.columns(2)
    for place, kind, title in ((left, "exact", "Attention / MLP patching (exact)"),
                               (right, "attribution", "Attention / MLP (attribution estimate)")):
        grid = comps.rename(columns={kind: "value"})
        place.altair_chart(charts.signed_grid(grid, "component", "layer", title, bound), width="stretch")
    r = result.agreement.pearson_r
    st.markdown(views.plain(
        f"Agreement of attribution patching with exact head patching: Pearson r = "
        f"{'undefined (a constant grid)' if r is None else f'{r:.3f}'}. Cells where they differ most:"
    ))
    views.table(pd.DataFrame(
        [{"layer": l, "head": h, "exact": e, "attribution": a} for l, h, e, a in result.agreement.worst]
    ), hide_index=True, width="stretch")
    heads = head_table(exact).rename(columns={"value": "exact"}).assign(
        attribution=head_table(atp)["value"])
    views.table(heads, hide_index=True, width="stretch")
    return heads


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    answer, wrong = token_inputs(comparison)
    asked = (request, answer, wrong)
    if not session.asked("Run components", "components-run", asked, type="primary"):
        st.info("Press **Run components**: one forward pass per prompt for the attribution, and one with "
                "eager attention per prompt for the patterns.")
        st.stop()
    with st.spinner("Attributing the logit difference and reading attention…"):
        attribution = components_view.attribution_of(run_a, run_b, answer, wrong)
    st.subheader("Direct logit attribution")
    tables = {"layers": draw_attribution(attribution)}
    data = {"attribution": attribution.to_dict()}
    with views.errors_shown():  # patterns need eager attention; the rest of the page does without
        patterns = components_view.patterns_of(run_a, run_b)
        tables["patterns"] = draw_patterns(patterns, model.n_layers)

    st.subheader("Head and component patching")
    same_length = len(comparison.a.tokens) == len(comparison.b.tokens)
    per_position = st.toggle(
        "Position by position", key="components-per-position", disabled=not same_length,
        help="One patched run per position (equal lengths only); off: all positions at once.",
    )
    wanted = (request, answer, wrong, per_position)
    if session.asked("Run head patching", "components-patch", wanted, type="primary"):
        bar = st.progress(0.0, text="Patching A's components into B…")
        try:
            patching = components_view.patching_of(
                run_a, run_b, answer, wrong, per_position,
                lambda done: bar.progress(done, text=f"Patching A's components into B: {done:.0%}"),
            )
        finally:
            bar.empty()
        column = 0
        if len(patching.columns) > 1:
            column = st.selectbox("Position in B", range(len(patching.columns)), key="components-position",
                                  index=len(patching.columns) - 1,  # the last position, as elsewhere
                                  format_func=lambda j: f"{j} · {patching.tokens_b[j]}")
        tables["heads"] = draw_patching(patching, column)
        data["patching"] = patching.to_dict()
    else:
        heads = len(attribution.a.heads[0])
        st.info(f"Press **Run head patching**: {model.n_layers * (heads + 2):,} patched runs of B per "
                "position group, batched into a few forward passes, plus one backward pass for "
                "attribution patching.")
    views.download_buttons("components", request, data, tables)
