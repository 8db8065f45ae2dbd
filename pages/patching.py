"""Patching: A's residual written into B's run at each (layer, position), and how far B moves toward A."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from lib.app import charts, lens_choice, patching_view, session, ui, views, words

views.page(
    "Patching",
    """
Here a piece of the model's memory of A is copied into its reading of B, one place at a time. If B's
answer then turns into A's, that place carried what made the two answers differ.

Distances and the lens show *where* A and B differ; patching asks *which* state carries the
difference into the answer. B is run again, but at one layer and one position its residual stream
(the model's running state) is replaced by A's at the same place. If B's answer then turns into A's,
that state carried what makes A answer differently.

- **Metric**: the logit difference `logit[answer] − logit[wrong]` at B's last position. By default
  *answer* is A's predicted next token and *wrong* is B's (e.g. ␣Paris vs ␣Rome).
- **Words of several tokens** (␣Lakers = ␣L + akers) are either followed by their first piece (the
  logit difference of the first pieces, labelled so) or scored **whole** by teacher forcing:
  `log p(answer) − log p(wrong)`, where a word's log-probability is the sum of its pieces'
  log-probabilities, each read at the final layer with the pieces before it appended to the prompt.
- **Effect** = (patched − B) / (A − B): **0** = the patch changed nothing, **1** = B now behaves like A
  on this metric. Values outside 0…1 mean the patch overshoots or pushes the other way.
- **Layer 0** is the embedding: only positions whose *token* differs can matter there.
  The **last layer** is the final state: only the last position can matter there (it is A's answer).
  In between, the effect moves from the differing word to the last position as layers pass it on.
- Prompts with different numbers of tokens cannot be matched position by position: then only the
  last position is patched.
- Pick a cell below the map to see B's lens (last position; the lens chosen in the sidebar) after
  that one patch, next to B's and A's own.
""",
)

MAX_LABELLED_CELLS = 400  # beyond this the numbers no longer fit in the cells


WORD_HELP = ("A word or token; ␣ stands for a leading space. A word of several tokens is scored whole or "
             "by its first piece (the choice below). Empty: {whose} predicted next token.")
SCORES = {"word": "whole word (teacher forcing)", "logit": "first piece (logit difference)"}
SCORE_DEFINITION = (
    "Whole word: log p(answer) − log p(wrong) after B, where log p(word) = Σ_j log p(piece j | B's prompt, "
    "pieces 1…j−1), every piece read at the final layer of B's (patched) run with the pieces before it "
    "appended. First piece: logit[first piece of answer] − logit[first piece of wrong], as for one-token "
    "words."
)


def set_state(key: str, value: str) -> None:
    st.session_state[key] = value


def token_inputs(comparison, model, caps: tuple) -> tuple[str | None, str | None]:
    """The answer and wrong words as typed (empty means A's or B's top-1), each with a one-click
    fix when its space-prefixed variant ranks far higher ('Mary' vs '␣Mary')."""
    columns = st.columns(2)
    typed = []
    for column, key, link_name, label, side, cap, whose in (
        (columns[0], "patching-answer", "answer", "Answer token", comparison.a, caps[0], "A's"),
        (columns[1], "patching-wrong", "wrong", "Wrong token", comparison.b, caps[1], "B's"),
    ):
        with column:
            session.linked(key, link_name)
            value = st.text_input(label, key=key, placeholder=f"{whose} top-1: {side.final[0].token}",
                                  help=WORD_HELP.format(whose=whose))
            session.share(key, link_name, value)
            hint = patching_view.space_hint_of(model, cap, value)
            if hint is not None:
                st.warning(views.plain(hint.message(whose)))
                st.button(f"Use '{hint.spaced}'", key=f"{key}-spaced", on_click=set_state,
                          args=(key, hint.spaced))
            typed.append(value or None)
    return typed[0], typed[1]


def several_pieces(model, typed: str | None) -> bool:
    """Whether a typed word has several tokens (a word the tokenizer refuses is reported by the run)."""
    return words.pieces(model.tokenizer, typed) > 1


def score_choice(model, answer: str | None, wrong: str | None) -> str:
    """'word' or 'logit': asked only while a typed word has several tokens (for one-token words the
    two are the same number, the softmax's normaliser cancelling)."""
    if not (several_pieces(model, answer) or several_pieces(model, wrong)):
        return "logit"
    session.linked("patching-score", "score")
    if st.session_state.get("patching-score") not in SCORES:
        st.session_state["patching-score"] = "word"
    score = st.radio("Score words of several tokens by", list(SCORES), format_func=SCORES.get,
                     horizontal=True, key="patching-score")
    session.share("patching-score", "score", score, "word")
    st.caption(views.plain(SCORE_DEFINITION))
    return score


def one_of(options: range | tuple[int, ...]) -> Callable[[str], int]:
    """A link value cast to int, refused (ValueError) unless it is one of `options`."""
    def cast(value: str) -> int:
        if int(value) not in options:
            raise ValueError(value)
        return int(value)
    return cast


def cell_picker(result) -> tuple[int, int]:
    """A (layer, B position) of the grid, carried by the link; by default where layer 0's effect is
    largest (on a tie, the later position: the last one, never a chat template's opening tokens)."""
    strongest = patching_view.strongest_position(result)
    labels = dict(zip(result.positions, patching_view.column_labels(result), strict=True))
    layers = range(len(result.effect))
    layer_key = f"patching-layer-{len(layers)}"
    position_key = f"patching-position-{'|'.join(labels.values())}"
    session.linked(layer_key, "patch_layer", one_of(layers))
    session.linked(position_key, "patch_position", one_of(result.positions))
    if st.session_state.get(position_key) not in result.positions:
        st.session_state[position_key] = strongest
    left, right = st.columns(2)
    layer = left.selectbox("Layer", layers, key=layer_key)
    position = right.selectbox("Position in B", result.positions, format_func=labels.get, key=position_key)
    session.share(layer_key, "patch_layer", layer)
    session.share(position_key, "patch_position", position)
    return layer, position


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    views.token_legend()
    answer, wrong = token_inputs(comparison, model, tuple(ui.get_capture(run) for run in request.runs))
    score = score_choice(model, answer, wrong)
    wanted = (request, answer, wrong, score)
    # a link with a chosen cell was shared from a grid: draw it
    if not session.asked("Run patching", "patching-run", wanted, also=session.link_carries("patch_layer"),
                         type="primary"):
        same_length = len(comparison.a.tokens) == len(comparison.b.tokens)
        cells = (model.n_layers + 1) * (len(comparison.b.tokens) if same_length else 1)
        st.info(f"Press **Run patching**: {cells:,} patched runs of B, batched into a few forward passes.")
        st.stop()
    run_a, run_b = request.runs
    bar = st.progress(0.0, text="Patching A into B…")
    try:
        result = patching_view.patched(
            run_a, run_b, answer, wrong, score,
            lambda done: bar.progress(done, text=f"Patching A into B: {done:.0%} done"),
        )
    finally:
        bar.empty()
    st.text(
        f"Metric: {result.metric_label} at B's last position. "
        f"A: {result.metric_a:.3f}   B: {result.metric_b:.3f}"
    )
    if result.note:
        st.info(views.plain(result.note))
    st.markdown(views.plain(patching_view.reading_of(result)))
    table = charts.patching_frame(result)
    st.altair_chart(charts.effect_heatmap(table, labelled=len(table) <= MAX_LABELLED_CELLS), width="stretch")
    grid = patching_view.effect_table(result)
    st.dataframe(grid, hide_index=True, width="stretch")

    tables = {"cells": table.drop(columns=["column", "differs"])}
    uses = lens_choice.lens_uses(request, model, ui.get_model(run_b.model))  # two models: each its own
    st.subheader(f"B's {lens_choice.lens_label(uses[1].kind)} after one patch")
    if run_b.model.remote:
        st.info("On NDIF this view is not run: it reads B's patched residual stream at every layer, "
                "which would have to come back from the server. The grid above came back as one number "
                "per cell.")
        views.download_buttons("patching", request, result.to_dict(), tables)
        views.save_form(request, result, "patching")
        st.stop()
    views.lens_notes(uses)
    layer, position = cell_picker(result)
    patched = patching_view.patched_lens(run_a, run_b, layer, position, request.k, uses[1].kind)
    read_with = (f"Read with: {uses[1].provenance}." if uses[0] == uses[1] else
                 f"Read with: B's model (B, B patched): {uses[1].provenance}; "
                 f"A's model (A): {uses[0].provenance}.")
    st.caption(views.plain(
        f"Top-1 of the lens at B's last position, per layer, after writing A's residual at layer {layer}, "
        f"position {position} ('{result.tokens_b[position]}') into B. Layers below {layer} are B's own. "
        + read_with
    ))
    side_by_side = patching_view.lens_side_by_side(comparison, patched)
    st.dataframe(side_by_side, hide_index=True, width="stretch",
                 height=min(40 + 35 * (len(side_by_side) + 1), 900))
    tables["lens-after-patch"] = lens_choice.tagged(side_by_side, uses, ("A", "B"))
    data = {**result.to_dict(), "lens_after_patch": patched.to_dict(),
            "lens": lens_choice.lens_export(uses, ("A", "B"))}
    views.download_buttons("patching", request, data, tables)
    views.save_form(request, result, "patching")
