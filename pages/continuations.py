"""Continuations: what the model answers to each side, side by side, with characters joined across tokens."""

from __future__ import annotations

import streamlit as st

from lib.app import answers, ui, views

views.page(
    "Continuations",
    """
What the model *says* after each prompt: its continuation, token by token, exactly what
transformers' `generate` gives with the same settings (the key-value cache is used: the prompt is
read once, then one pass per new token).

- **Greedy** takes the most likely token at each step; **sampled** draws from the distribution
  (divided by the temperature) with a seed, so the same seed gives the same text again.
- A continuation stops at the model's end-of-sequence token or after the number of new tokens.
- **Characters across tokens**: an emoji is usually 2–4 byte pieces (`<F0 9F>`, `<90>`, `<A0>`);
  the table joins them into the character they form (🐠), with the pieces beneath.
- To run the lens, distances, diff, watch and patching over the generated tokens too, set
  **Analyse the continuation** in the sidebar.
""",
)


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    settings = answers.settings_inputs()
    sides = views.sides(request, comparison)
    runs = [side.run for side in sides]
    if not answers.generate_button(runs, settings, "continuations-run"):
        st.info(f"Press **Generate**: up to {settings.max_new_tokens} new tokens for each side, "
                "one forward pass per token.")
        st.stop()
    results = {}
    with views.errors_shown():
        for side in sides:
            results[side.name] = answers.continuation(side.run, settings, st.empty(), side.name, runs)
    if len(results) < len(sides):  # refused or cancelled: said above
        if answers.cancelled_any(runs, settings):
            answers.run_again()
        st.stop()
    tables = {}
    for col, side in zip(st.columns(2), sides, strict=True):
        result = results[side.name]
        with col:
            st.subheader(views.plain(side.title))
            ending = "stopped at EOS" if result.stopped_at_eos else "length"
            framing = " (chat template included)" if request.chat else ""
            st.caption(f"{len(result.prompt_token_ids)} prompt tokens{framing} · "
                       f"{len(result.token_ids)} new · {ending}")
            st.text(result.text or "(nothing: the model ended at once)")
            completes = answers.first_completes_to(side.run, result)
            if completes:
                st.caption(views.plain(f"The first new token {result.tokens[0]} is part of a character: "
                                       f"greedily it completes to {completes}."))
            tables[f"characters-{side.name}"] = answers.characters_table(result)
            st.dataframe(tables[f"characters-{side.name}"], hide_index=True, width="stretch")
    data = {name: r.to_dict() for name, r in results.items()}
    views.download_buttons("continuations", request, data, tables)
