"""Logit lens: for A and B side by side (or model 1 and model 2 on one prompt), what every layer
would predict at each position."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import charts, lens_choice, lens_view, readable, session, ui, views, words
from lib.app.compare_frames import lens_grid_long_frame

views.page(
    "Logit lens",
    """
At every layer you can ask the model "what would you write next if you stopped here?". This page
shows that guess for every layer and every word of A and B, so you can see where the answer appears.

Each cell is one **layer** (rows) at one **position** of the prompt (columns, labelled with the
input token there). It shows the token the model would predict next if it stopped at that layer —
the final norm and the unembedding applied to that layer's residual stream (the *logit lens*) —
coloured by that token's probability (or by the entropy of the whole distribution, in bits:
low = sure).

- The top row is the model's own prediction at each position.
- A **red outline** marks cells whose top token is already the model's final prediction there.
- Hover a cell for its top-k. A top-1 that is only part of a character (an emoji is 2–4 byte
  pieces such as `<F0 9F>`) is shown with the character the model completes it to (its greedy
  continuation after writing that piece there); an input piece names the character it belongs to.
- Click a cell (or use the pickers) to see its top-k for both prompts,
  with each token's rank one layer below: a token that *climbs* is being promoted by that layer.
- Long prompts show a window of positions (the last 16 by default; in chat mode, from the start of
  your message to the last token); only the cells shown are computed.
- **Two models** (switch in the sidebar): one prompt through model 1 and model 2, each read through
  its own final norm and unembedding.
- **Lens** (sidebar): the *tuned* lens first applies a trained affine translator per layer, the
  *Jacobian* lens the layer's average linear effect on the last layer; both read early layers more
  faithfully than the logit lens, and all three agree at the last layer. Where the model has a
  Jacobian lens, **Where the logit lens misleads** lists, per layer, the positions at which the
  logit and Jacobian lenses' top-1 differ for A and B.
""",
)

def clamp_state(key: str, options: list[int]) -> None:
    """Forget a picker's remembered value that the current prompts no longer offer."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def adopt_chart_click(event, n_tokens: int, offsets: list[int]) -> None:
    """A click on a heatmap cell moves the pickers to it (once per new click)."""
    picked = (event or {}).get("selection", {}).get("cell") or []
    if not picked or picked == st.session_state.get("lens_applied_click"):
        return
    st.session_state["lens_applied_click"] = picked
    layer, offset = int(picked[0]["layer"]), n_tokens - 1 - int(picked[0]["position"])
    if offset in offsets:
        st.session_state["lens_layer"], st.session_state["lens_offset"] = layer, offset


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    sides = views.sides(request, comparison)  # prompts A and B, or model 1 and model 2 on one prompt
    uses = lens_choice.lens_uses(request, model, ui.get_model(sides[1].run.model))  # two models: each its own
    views.lens_notes(uses)
    kinds = {side.name: use.kind for side, use in zip(sides, uses, strict=True)}
    results = (comparison.a, comparison.b)
    cap_a, cap_b = caps = tuple(ui.get_capture(side.run) for side in sides)
    shortest = min(cap_a.n_tokens, cap_b.n_tokens)

    colour_col, size_col, back_col = st.columns(3)
    colour_by = colour_col.radio("Colour by", ["probability", "entropy"], horizontal=True, key="lens_colour")
    default_size = max(readable.lens_window(cap.roles) for cap in caps)  # chat: the user's text to the last
    if st.session_state.get("lens_size_default") != default_size:  # new prompts: the window follows them
        st.session_state["lens_size_default"] = st.session_state["lens_size"] = default_size
    size = size_col.number_input("Positions shown", min_value=1, max_value=readable.MAX_LENS_WINDOW,
                                 key="lens_size")
    st.session_state["lens_back"] = min(st.session_state.get("lens_back", 0), shortest - 1)
    back = back_col.number_input("Window ends this many tokens before the last", min_value=0,
                                 max_value=shortest - 1, key="lens_back")

    windows = [lens_view.window(cap.n_tokens, int(size), int(back)) for cap in caps]
    grids = {side.name: lens_view.grid(side.run, window, request.k, kinds[side.name])
             for side, window in zip(sides, windows, strict=True)}
    aligned = words.token_split(ui.get_model(sides[0].run.model).tokenizer, cap_a.token_ids, cap_b.token_ids)
    unmatched = {sides[0].name: [m is None for m in aligned.match_a],
                 sides[1].name: [m is None for m in aligned.match_b]}
    completes = {side.name: lens_view.completions(side.run, grids[side.name]) for side in sides}
    frames = {
        side.name: charts.lens_grid_frame(
            side.name, grids[side.name], [unmatched[side.name][p] for p in grids[side.name].positions],
            completes=completes[side.name],
            characters=lens_view.piece_characters(side.run),
        )
        for side in sides
    }
    offsets = list(range(int(back), min(int(back) + int(size), shortest)))
    layers = list(range(max(len(result.lens) for result in results) - 1, -1, -1))  # two models: the deeper

    if uses[0] == uses[1]:
        st.caption(uses[0].caption)
    present = views.presentation_toggle("lens_present")
    for column, side, cap, result, use in zip(views.side_columns(present), sides, caps, results, uses,
                                              strict=True):
        with column:
            st.subheader(views.plain(side.title))
            if uses[0] != uses[1]:  # two models read with different lenses: each says its own
                st.caption(use.caption)
            views.prompt_text(side.text)
            whole = completes[side.name].get((cap.n_tokens - 1, result.final[0].id))
            st.text(lens_view.answer_sentence(result, request.k, whole))
            chart = charts.lens_heatmap(frames[side.name], colour_by, present)
            event = st.altair_chart(chart, on_select="rerun", key=f"lens-chart-{side.name}")
            adopt_chart_click(event, cap.n_tokens, offsets)
    st.caption("Red outline: the cell's top-1 is already the model's final prediction at that position. "
               "Red labels: positions whose token has no partner in the other prompt.")
    views.token_legend()

    a, b = (side.name for side in sides)
    st.subheader("One cell, both models" if comparison.mode == "models" else "One cell, both prompts")
    session.linked("lens_layer", "lens_layer", int)
    session.linked("lens_offset", "lens_offset", int)
    clamp_state("lens_layer", layers)
    clamp_state("lens_offset", offsets)
    layer_col, offset_col = st.columns(2)
    layer = layer_col.selectbox("Layer", layers, key="lens_layer")
    offset = offset_col.selectbox(
        f"Position (counted from the last token, so {a} and {b} line up)", offsets, key="lens_offset",
        format_func=lambda o: f"last − {o}: {a} {cap_a.tokens[-1 - o]} · {b} {cap_b.tokens[-1 - o]}",
    )
    session.share("lens_layer", "lens_layer", layer, layers[0])
    session.share("lens_offset", "lens_offset", offset, offsets[0])
    details = {}
    for column, side, cap, result in zip(st.columns(2), sides, caps, results, strict=True):
        with column:
            if layer >= len(result.lens):
                st.text(f"{side.name}: has layers 0…{len(result.lens) - 1} only.")
                continue
            position = cap.n_tokens - 1 - offset
            detail = details[side.name] = lens_view.cell(side.run, layer, position, request.k,
                                                         kinds[side.name])
            st.text(f"{side.name}: layer {layer}, position {detail.position} (input '{detail.input_token}'), "
                    f"entropy {detail.entropy_bits:.2f} bits")
            views.table(lens_view.detail_frame(detail), hide_index=True, width="stretch",
                         column_config={"prob": st.column_config.NumberColumn(format="%.4f"),
                                        "prob below": st.column_config.NumberColumn(format="%.4f")})
    if layer == 0:
        st.caption("Layer 0 has no layer below, so there is no rank change.")

    disagreement = {}
    if comparison.mode != "models" and "jacobian" in lens_choice.lenses_here(model):
        st.subheader("Where the logit lens misleads")
        st.caption("Per layer, the positions of the window where the logit lens's top-1 differs from the "
                   "Jacobian lens's (logit → Jacobian). " + lens_choice.lens_caption(model, "jacobian"))
        for column, side, window in zip(st.columns(2), sides, windows, strict=True):
            plain_grid = lens_view.grid(side.run, window, request.k, "logit")
            jacobian_grid = lens_view.grid(side.run, window, request.k, "jacobian")
            rows = disagreement[side.name] = lens_choice.disagreement_rows(plain_grid, jacobian_grid)
            with column:
                st.text(f"{side.name}: the lenses differ at {sum(r['differ'] for r in rows)} of "
                        f"{sum(r['of'] for r in rows)} cells")
                st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

    views.download_buttons(
        "logit-lens",
        request,
        {
            "lens": lens_choice.lens_export(uses, [side.name for side in sides]),
            "lens_disagreement": disagreement,
            "grids": {label: grid.to_dict() for label, grid in grids.items()},
            "cell": {label: detail.to_dict() for label, detail in details.items()},
            "final_answer": {
                side.name: {key: value.to_dict() if hasattr(value, "to_dict") else value
                            for key, value in lens_view.answer_arrivals(result, request.k).items()}
                for side, result in zip(sides, results, strict=True)
            },
        },
        {
            "grid": lens_choice.tagged(
                pd.concat(lens_grid_long_frame(name, grid) for name, grid in grids.items()),
                uses, [side.name for side in sides], side="prompt"),
            "cell": lens_choice.tagged(
                pd.concat(lens_view.detail_frame(detail).assign(prompt=name)
                          for name, detail in details.items()),
                uses, [side.name for side in sides], side="prompt"),
        },
    )
