"""Top-token diff: layer by layer, A's and B's top-k at one position each, and KL / JS between them."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib import ui
from lib.diff import LayerDiff, TopTokenDiff
from lib.errors import TwinlensError

ui.page(
    "Top-token diff",
    """
At every layer the logit lens gives each prompt a next-token distribution (here at one position of
each prompt, by default the last). This page compares the two distributions.

- **Top-k lists**: tokens in both lists (*both*, highlighted) sit on one row with A's and B's
  probability and rank; *A only* / *B only* tokens show where they fell in the other prompt.
  **Δp = p(B) − p(A)**; **Δrank = rank(B) − rank(A)** (positive: the token is less likely in B).
  Ranks count over the whole vocabulary (1 = most likely).
- **KL(A‖B)** = Σ p_A log₂(p_A / p_B), in **bits**: how surprised B's distribution is by A's
  (0 when equal, unbounded, not symmetric).
- **Jensen–Shannon** = ½KL(A‖M) + ½KL(B‖M) with M = (A + B)/2, in **bits**: symmetric, between 0
  (same) and 1 (no overlap at all).
- **Top-k overlap**: shared tokens / all tokens of both lists (Jaccard). **Entropy** (bits): how
  spread out a distribution is.
- **Most changed**: the token, over the whole vocabulary, whose probability moved most between A and B.
""",
)

HIGHLIGHT = "background-color: rgba(46, 160, 67, 0.18)"
NUMBER_COLUMNS = (
    "KL(A‖B) bits", "JS bits", "top-k overlap", "entropy A bits", "entropy B bits", "Δp most changed"
)


def position_picker(label: str, tokens: tuple[str, ...]) -> int:
    """A position of one prompt, shown as 'index · token'; the last by default."""
    return st.selectbox(
        f"Position in prompt {label}",
        range(len(tokens)),
        index=len(tokens) - 1,
        format_func=lambda i: f"{i} · {tokens[i]}",
        key=f"diff-position-{label}-{len(tokens)}",
    )


def layers_table(diff: TopTokenDiff) -> pd.DataFrame:
    """One row per layer: the divergences and what changed."""
    return pd.DataFrame(
        {
            "layer": layer.layer,
            "KL(A‖B) bits": layer.kl_bits,
            "JS bits": layer.js_bits,
            "top-k overlap": layer.jaccard,
            "entropy A bits": layer.entropy_a_bits,
            "entropy B bits": layer.entropy_b_bits,
            "most changed": layer.most_changed.token if layer.most_changed else "",
            "Δp most changed": layer.most_changed.delta_prob if layer.most_changed else 0.0,
            "A top-1": layer.top_a[0].token,
            "B top-1": layer.top_b[0].token,
            "shared": " · ".join(t.token for t in layer.shared),
            "only A": " · ".join(t.token for t in layer.only_a),
            "only B": " · ".join(t.token for t in layer.only_b),
        }
        for layer in diff.layers
    )


def layer_table(layer: LayerDiff) -> pd.DataFrame:
    """Shared tokens first (in A's order), then A only, then B only; A's and B's numbers side by side."""
    groups = (("both", layer.shared), ("A only", layer.only_a), ("B only", layer.only_b))
    return pd.DataFrame(
        {
            "token": t.token,
            "in top-k of": where,
            "rank A": t.rank_a,
            "p(A)": t.prob_a,
            "rank B": t.rank_b,
            "p(B)": t.prob_b,
            "Δp (B − A)": t.delta_prob,
            "Δrank (B − A)": t.delta_rank,
        }
        for where, tokens in groups
        for t in tokens
    )


def highlight_shared(table: pd.DataFrame):
    return table.style.apply(
        lambda row: [HIGHLIGHT if row["in top-k of"] == "both" else ""] * len(row), axis=1
    ).format({"p(A)": "{:.4f}", "p(B)": "{:.4f}", "Δp (B − A)": "{:+.4f}", "Δrank (B − A)": "{:+d}"})


def divergence_chart(table: pd.DataFrame) -> alt.LayerChart:
    """KL (left axis) and JS (right axis, 0…1 bit) per layer; each JS point carries the most-changed token."""
    base = alt.Chart(table.rename(columns={"KL(A‖B) bits": "kl", "JS bits": "js", "most changed": "token"}))
    tooltip = ["layer", alt.Tooltip("kl", title="KL(A‖B) bits", format=".4f"),
               alt.Tooltip("js", title="JS bits", format=".4f"), alt.Tooltip("token", title="most changed")]
    kl = base.mark_line(point=True, color="#d62728").encode(
        x=alt.X("layer:Q"),
        y=alt.Y("kl:Q", title="KL(A‖B), bits", axis=alt.Axis(titleColor="#d62728")),
        tooltip=tooltip,
    )
    js = base.mark_line(point=True, color="#1f77b4").encode(
        x="layer:Q",
        y=alt.Y("js:Q", title="Jensen–Shannon, bits", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(titleColor="#1f77b4", orient="right")),
        tooltip=tooltip,
    )
    labels = base.mark_text(dy=-12, angle=320, fontSize=10, align="left").encode(
        x="layer:Q", y="js:Q", text="token:N"
    )
    return alt.layer(kl, js + labels).resolve_scale(y="independent").properties(height=320)


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    left, right = st.columns(2)
    with left:
        position_a = position_picker("A", comparison.a.tokens)
    with right:
        position_b = position_picker("B", comparison.b.tokens)
    try:
        diff = ui.get_top_token_diff(request, position_a, position_b)
    except TwinlensError as exc:
        st.error(str(exc))
        st.stop()

    overview = layers_table(diff)
    st.subheader("How far apart the two distributions are, per layer")
    st.altair_chart(divergence_chart(overview), width="stretch")
    peak = max(diff.layers, key=lambda layer: layer.js_bits)
    st.caption(
        f"Jensen–Shannon peaks at layer {peak.layer} ({peak.js_bits:.3f} bits); at the last layer it is "
        f"{diff.layers[-1].js_bits:.3f} bits and the top-{diff.top_k} lists share "
        f"{len(diff.layers[-1].shared)} tokens. Labels: the token whose probability changed most."
    )

    st.subheader("One layer, token by token")
    chosen = st.select_slider("Layer", options=range(len(diff.layers)), value=len(diff.layers) - 1)
    detail = layer_table(diff.layers[chosen])
    st.dataframe(highlight_shared(detail), hide_index=True, width="stretch")

    st.subheader("Every layer")
    numbers = {name: st.column_config.NumberColumn(format="%.4g") for name in NUMBER_COLUMNS}
    st.dataframe(overview, hide_index=True, width="stretch", column_config=numbers)
    tables = {"layers": overview, f"layer-{chosen}": detail}
    ui.download_buttons("top-token-diff", request, diff.to_dict(), tables)
