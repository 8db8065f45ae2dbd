"""Tokens: A's and B's tokens side by side, words that split differently, and the effect of BOS."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import session, tokens_view, ui, views, words
from lib.app.request import Request

views.page(
    "Tokens",
    """
The model does not read letters or words but pieces of text called tokens. This page shows how A and
B were cut into tokens, and which pieces differ between them.

The model never sees letters, only **tokens**: pieces of text, each with an id. `␣` marks a leading
space, `↵` a newline, and `<F0 9F>` bytes that are only part of a character (an emoji split over
several tokens).

- **Tokens of A and B**: rows that have no partner in the other prompt are highlighted (the
  alignment follows the longest runs of identical tokens).
- **Words that split differently**: the same word can become different tokens depending on what
  precedes it — `␣Claire` (one token, after a space) but `Cl`, `aire` at the very start. The model
  then reads a different input, which can matter more than the word itself.
- **Effect of BOS**: many models were trained with a beginning-of-sequence token first. On request,
  each prompt runs with exactly one BOS (*on*) and with none (*off*): the model's next-token top-k
  and the **logit difference** `logit[token 1] − logit[token 2]` of two tokens you choose. A word of
  several tokens (␣Lakers = ␣L + akers) counts by its first piece there, and is also scored whole:
  `log p(word 1) − log p(word 2)`, where a word's log-probability is the sum of its pieces'
  log-probabilities, each read at the final layer with the pieces before it appended (teacher forcing).
""",
)

HIGHLIGHT = "background-color: rgba(255, 170, 0, 0.25)"
DIM = "color: rgba(128, 128, 128, 0.7)"  # tokens the chat template added


def token_table(tokens: tuple[str, ...], ids: tuple[int, ...], match: tuple[int | None, ...], other: str,
                roles: tuple[str, ...] = ()):
    """One row per token; rows with no partner in the other prompt highlighted; in chat mode a
    'from' column says who wrote each token and the template's are dimmed."""
    partner = f"position in {other}"
    columns = {"position": range(len(ids)), "id": ids, "token": tokens,
               partner: ["—" if m is None else str(m) for m in match]}
    if roles and set(roles) != {"user"}:
        columns["from"] = list(roles)
    table = pd.DataFrame(columns)

    def style(row):
        looks = [HIGHLIGHT if row[partner] == "—" else ""]
        if row.get("from") == "template":
            looks.append(DIM)
        return ["; ".join(x for x in looks if x)] * len(row)

    return table, table.style.apply(style, axis=1)


def splits_callout(diff) -> None:
    unmatched = sum(m is None for m in diff.match_a) + sum(m is None for m in diff.match_b)
    if diff.splits:
        lines = "\n".join(f"- {views.plain(split.message())}" for split in diff.splits)
        st.warning(f"Some words are tokenized differently in A and B:\n\n{lines}")
    elif unmatched == 0:
        st.success("A and B are the same tokens.")
    else:
        st.info(f"{unmatched} tokens have no partner in the other prompt (highlighted); every word "
                "the two prompts share is tokenized the same way.")


def chosen_pair(tokenizer, defaults: tuple[str, str]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Two words typed by the user (`␣` = space) as their token ids, or None after showing why they
    cannot be used."""
    left, right = st.columns(2)
    typed = (
        left.text_input("Token 1", value=defaults[0], key=f"bos-token-1-{defaults[0]}"),
        right.text_input("Token 2", value=defaults[1], key=f"bos-token-2-{defaults[1]}"),
    )
    found = None
    with views.errors_shown():
        found = words.word_ids(tokenizer, typed[0]), words.word_ids(tokenizer, typed[1])
    return found


def bos_section(request: Request, model, comparison, tables: dict) -> dict:
    """Both prompts with BOS on and off, once asked for (four forward passes): the top-k and the
    logit difference of two typed tokens. Adds its tables to `tables`; returns the effects drawn."""
    if model.tokenizer.bos_token_id is None:
        st.info("This model's tokenizer has no BOS token, so there is nothing to switch on or off.")
        return {}
    with_bos = {True: "a BOS", False: "no BOS"}
    st.caption(
        f"The sidebar's BOS setting '{request.bos}' gives prompt A {with_bos[comparison.a.has_bos]} and "
        f"prompt B {with_bos[comparison.b.has_bos]}."
    )
    if not session.asked("Run A and B with BOS on and off", "tokens-bos-run", request,
                         help="Four more forward passes, once for this comparison."):
        return {}
    st.caption("Type tokens or words with ␣ (or a space) for a leading space.")
    defaults = (*words.contrast_words(model.tokenizer, comparison), "", "")
    pair = chosen_pair(model.tokenizer, defaults[:2])
    with st.spinner("Running the prompts with and without BOS…"):
        effects = tokens_view.bos_effects(request, pair)
    for col, (label, effect) in zip(st.columns(2), effects.items(), strict=True):
        with col:
            st.markdown(f"**Prompt {label}: next-token top-{request.k}, BOS on vs off**")
            tables[f"bos-top-{label}"] = tokens_view.top_table(effect)
            views.table(tables[f"bos-top-{label}"], width="stretch")
    if pair is not None:
        effect = effects["A"]
        labels = [first if first == word else f"{first} (first piece of {word})"
                  for first, word in zip(effect.first_pieces, effect.pair, strict=True)]
        st.markdown("**Logit difference** `logit[token 1] − logit[token 2]` (the model's own logits)")
        st.text(f"token 1 = {labels[0]}, token 2 = {labels[1]}")
        tables["logit-difference"] = tokens_view.difference_table(effects, "logit_difference")
        views.table(tables["logit-difference"], hide_index=True, width="stretch")
        if effect.several_pieces:
            st.markdown("**Whole words** `log p(word 1) − log p(word 2)` (natural log)")
            st.caption(views.plain(
                f"word 1 = {effect.pair[0]}, word 2 = {effect.pair[1]}. log p(word) is the sum of its "
                "pieces' log-probabilities, each read at the final layer with the prompt and the pieces "
                "before it as input (teacher forcing)."
            ))
            tables["word-difference"] = tokens_view.difference_table(effects, "word_difference")
            views.table(tables["word-difference"], hide_index=True, width="stretch")
    return effects


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    diff = words.token_split(model.tokenizer, comparison.a.token_ids, comparison.b.token_ids)
    splits_callout(diff)
    tables = {}
    left, right = st.columns(2)
    run_a, run_b = request.runs
    for col, label, other, tokens, ids, match, text, run in (
        (left, "A", "B", diff.tokens_a, diff.ids_a, diff.match_a, request.a, run_a),
        (right, "B", "A", diff.tokens_b, diff.ids_b, diff.match_b, request.b, run_b),
    ):
        roles = ui.get_capture(run).roles
        tables[f"tokens-{label}"], styled = token_table(tokens, ids, match, other, roles)
        with col:
            st.subheader(f"Prompt {label} · {len(ids)} tokens")
            views.prompt_text(text)
            views.token_chips(tokens, [m is None for m in match], ids)
            with st.expander(f"{label}'s tokens as a table (ids, partners in {other})"):
                st.dataframe(styled, hide_index=True, width="stretch")
    views.token_legend()
    st.caption("Highlighted: tokens with no partner in the other prompt.")

    st.subheader("Effect of BOS")
    effects = bos_section(request, model, comparison, tables)
    views.download_buttons(
        "tokens", request,
        {"tokenization": diff.to_dict(), "bos": {label: e.to_dict() for label, e in effects.items()}},
        tables,
    )
