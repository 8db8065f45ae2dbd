"""Watch tokens: chosen tokens' probability and rank per layer for A and B, and their logit difference."""

from __future__ import annotations

import streamlit as st

from lib.app import charts, lens_choice, session, ui, views, watch_view, words

views.page(
    "Watch tokens",
    """
Type a few words the model might write next, and see how likely each one is at every layer, after
A and after B. A word that rises late is one the model only "decides on" late.

Name a few words and follow them through the layers at the last position of each prompt, with the
logit lens (what the model would predict if it stopped at that layer).

- **Probability** of each token, per layer, for A (solid) and B (dashed).
- **Rank**: 1 = the lens's most likely token; counted over the whole vocabulary.
- **Logit difference** `logit[token 1] − logit[token 2]`: positive when the lens prefers token 1.
  It is the usual measure of a choice between two answers (" Claire" vs " Mary", " Paris" vs " Rome").

A word the model splits into several tokens (`␣Lakers` = `␣L` + `akers`) is followed in the
probability, rank and logit-difference charts by its **first piece** (labelled so), and scored
**whole** in the last chart by teacher forcing:
`score_ℓ = log p_ℓ(piece 1) + Σ log p_L(piece j | prompt + pieces before it)` — the first piece read
through the lens at layer ℓ, the later pieces read at the final layer L. At the last layer it is the
model's own log-probability of the whole word.
Write a leading space as a space or as `␣`: `␣Paris` is not `Paris`.
""",
)


def watched(tokenizer, typed: str) -> list:
    """The distinct words among the typed lines (one token or several); a line that gives no
    token gets an st.error."""
    found, refused = words.typed_words(tokenizer, typed)
    for exc in refused:
        views.show_error(exc)
    return found


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    default = "\n".join(words.contrast_words(model.tokenizer, comparison))
    key = f"watch-tokens-{default}"
    session.linked(key, "watch")
    st.session_state.setdefault(key, default)
    typed = st.text_area(
        "Words to watch, one per line", key=key,
        help="␣ stands for a leading space; the defaults are A's and B's predicted next tokens.",
    )
    session.share(key, "watch", typed, default)
    views.token_legend()
    tokens = watched(model.tokenizer, typed)
    if not tokens:
        st.info("Type at least one word to watch.")
        st.stop()
    lens = lens_choice.lens_of(request)
    use = lens_choice.lens_use(model, lens)
    watch = watch_view.watched_tokens(request, tokens, lens)
    st.caption(use.caption)
    table = charts.watch_frame(watch, labels=[t.label() for t in tokens])
    tooltip = ["prompt", "token", "layer", charts.number("probability", ".4f"), "rank",
               charts.number("logit", ".3f")]
    left, right = st.columns(2)
    left.altair_chart(charts.layer_lines(table, "probability", y_title="probability", colour="token",
                                         side="prompt", floor=0.0, tooltip=tooltip), width="stretch")
    rank = charts.layer_lines(table, "rank", y_title="rank (1 = top)", colour="token", side="prompt",
                              log=True, reverse=True, tooltip=tooltip)
    right.altair_chart(rank, width="stretch")
    tables = {"per-layer": table}

    st.subheader("Logit difference per layer")
    if len(tokens) < 2:
        st.info("Watch two tokens or more to see their logit difference.")
    else:
        names = [t.label() for t in tokens]
        left, right = st.columns(2)
        first = left.selectbox("Token 1", range(len(names)), index=0, format_func=names.__getitem__)
        second = right.selectbox("Token 2", range(len(names)), index=1, format_func=names.__getitem__)
        tables["logit-difference"] = watch_view.difference_table(watch, first, second)
        long = tables["logit-difference"].melt("layer", ["A", "B"], "prompt", "logit difference")
        tooltip = ["layer", "prompt", charts.number("logit difference", ".3f")]
        chart = charts.layer_lines(long, "logit difference", y_title="logit difference", colour="prompt",
                                   side="prompt", tooltip=tooltip, height=260)
        st.altair_chart(chart, width="stretch")
        st.text(f"logit[{names[first]}] − logit[{names[second]}] through the lens, at the last position")
        views.table(tables["logit-difference"], hide_index=True, width="stretch")

    st.subheader("Whole words, per layer")
    scores = watch_view.whole_words(request, tokens, lens)
    words = tables["whole-words"] = charts.word_frame(scores)
    tooltip = ["prompt", "word", "layer", charts.number("probability", ".4g"),
               charts.number("log-probability", ".3f")]
    st.altair_chart(charts.layer_lines(words, "log-probability", y_title="log-probability of the whole word",
                                       colour="word", side="prompt", tooltip=tooltip), width="stretch")
    st.caption(
        "Score at layer ℓ = log p_ℓ(first piece) through the lens + Σ log p(each later piece | the prompt "
        "and the pieces before it) read at the final layer (teacher forcing). Natural log; at the last "
        "layer it is the model's own log-probability of the whole word."
    )
    with st.expander("Whole-word numbers"):
        views.table(words, hide_index=True, width="stretch")

    st.subheader("Every layer")
    probability = {"probability": st.column_config.NumberColumn(format="percent")}  # 8e-12 reads 0.00%
    views.table(table, hide_index=True, width="stretch", column_config=probability)
    data = {**watch.to_dict(), "words": scores.to_dict(), "lens": lens_choice.lens_export((use, use), "AB")}
    views.download_buttons("watch", request, data, {name: lens_choice.tagged(table, use)
                                                    for name, table in tables.items()})
