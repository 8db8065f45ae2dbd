"""Watch tokens: chosen tokens' probability and rank per layer for A and B, and their logit difference."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib.analyses.watch import Watch, contrast_pair, logit_difference, watch_tokens
from lib.app import charts, ui
from lib.core.errors import PromptError
from lib.core.tokens import WatchedToken, typed_token

ui.page(
    "Watch tokens",
    """
Name a few tokens and follow them through the layers at the last position of each prompt, with the
logit lens (what the model would predict if it stopped at that layer).

- **Probability** of each token, per layer, for A (solid) and B (dashed).
- **Rank**: 1 = the lens's most likely token; counted over the whole vocabulary.
- **Logit difference** `logit[token 1] − logit[token 2]`: positive when the lens prefers token 1.
  It is the usual measure of a choice between two answers (" Claire" vs " Mary", " Paris" vs " Rome").

A token must be **one** token of the model's vocabulary; a word it splits into several pieces is
refused, naming the pieces. Write a leading space as a space or as `␣`: `␣Paris` is not `Paris`.
""",
)


def watched(tokenizer, typed: str) -> list[WatchedToken]:
    """The distinct single tokens among the typed lines; each line that is not one token gets an st.error."""
    found: dict[int, WatchedToken] = {}
    for line in typed.splitlines():
        if not line:
            continue
        try:
            token = typed_token(tokenizer, line)
        except PromptError as exc:
            ui.show_error(exc)
            continue
        found.setdefault(token.id, token)
    return list(found.values())


def difference_table(watch: Watch, first: int, second: int) -> pd.DataFrame:
    a = logit_difference(watch.a[first], watch.a[second])
    b = logit_difference(watch.b[first], watch.b[second])
    return pd.DataFrame({"layer": range(len(a)), "A": a, "B": b})


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    default = "\n".join(contrast_pair(model.tokenizer, comparison.a.final, comparison.b.final))
    typed = st.text_area(
        "Tokens to watch, one per line", value=default, key=f"watch-tokens-{default}",
        help="␣ stands for a leading space; the defaults are A's and B's predicted next tokens.",
    )
    tokens = watched(model.tokenizer, typed)
    if not tokens:
        st.info("Type at least one token to watch.")
        st.stop()
    watch = ui.cached(watch_tokens, request.model_key, *request.runs, tuple(t.id for t in tokens))
    table = charts.watch_frame(watch)
    tooltip = ["prompt", "token", "layer", alt.Tooltip("probability", format=".4f"), "rank",
               alt.Tooltip("logit", format=".3f")]
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
        names = [t.readable for t in tokens]
        left, right = st.columns(2)
        first = left.selectbox("Token 1", range(len(names)), index=0, format_func=names.__getitem__)
        second = right.selectbox("Token 2", range(len(names)), index=1, format_func=names.__getitem__)
        tables["logit-difference"] = difference_table(watch, first, second)
        long = tables["logit-difference"].melt("layer", ["A", "B"], "prompt", "logit difference")
        tooltip = ["layer", "prompt", alt.Tooltip("logit difference", format=".3f")]
        chart = charts.layer_lines(long, "logit difference", y_title="logit difference", colour="prompt",
                                   side="prompt", tooltip=tooltip, height=260)
        st.altair_chart(chart, width="stretch")
        st.text(f"logit[{names[first]}] − logit[{names[second]}] through the lens, at the last position")
        st.dataframe(tables["logit-difference"], hide_index=True, width="stretch")

    st.subheader("Every layer")
    probability = {"probability": st.column_config.NumberColumn(format="%.4g")}
    st.dataframe(table, hide_index=True, width="stretch", column_config=probability)
    ui.download_buttons("watch", request, watch.to_dict(), tables)
