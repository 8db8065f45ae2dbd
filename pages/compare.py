"""Compare: both prompts' tokens, the distance between them per layer, and both logit lenses."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib import ui
from lib.compare import Comparison, PromptResult

ui.page(
    "Compare",
    """
Each prompt flows through the model layer by layer; the **residual stream** is the model's running
state. *Layer 0* is just the embedded last token, the last layer is what the model predicts from.

- **Distance per layer**: how different the two states are at the last token. *Cosine distance* is 0
  when the two point the same way; *relative L2* is the size of the difference compared to their size.
  Both are 0 for identical states.
- **Logit lens**: what the model *would* say next if it stopped at that layer (the final norm and the
  unembedding applied to that layer's state). The top row is the model's own prediction; the
  bottom row (layer 0) usually just echoes the input token.
"""
)

found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    st.caption(f"{model.name} · {model.n_layers} layers · d_model {model.d_model} · vocab {model.vocab_size:,} · BOS {request.bos}")

    def tokens_frame(side: PromptResult) -> pd.DataFrame:
        return pd.DataFrame({"token": list(side.tokens), "id": list(side.token_ids)})

    def lens_frame(side: PromptResult) -> pd.DataFrame:
        """Rows: the model's own top-k, then layers L…0; cells 'token  p'."""
        rows = [("model", side.final)] + [(f"layer {l}", side.lens[l]) for l in range(len(side.lens) - 1, -1, -1)]
        return pd.DataFrame(
            [[f"{t.token}  {t.prob:.3f}" for t in top] for _, top in rows],
            index=[name for name, _ in rows],
            columns=[f"#{i + 1}" for i in range(len(side.final))],
        )

    def distance_chart(c: Comparison) -> alt.Chart:
        data = pd.DataFrame(
            {
                "layer": list(range(len(c.distance.cosine))) * 2,
                "distance": list(c.distance.cosine) + list(c.distance.relative_l2),
                "measure": ["cosine distance"] * len(c.distance.cosine)
                + ["relative L2"] * len(c.distance.relative_l2),
            }
        )
        return (
            alt.Chart(data)
            .mark_line(point=True)
            .encode(x="layer:Q", y="distance:Q", color="measure:N", tooltip=["layer", "measure", alt.Tooltip("distance", format=".4f")])
            .properties(height=260)
        )

    left, right = st.columns(2)
    for col, label, side in ((left, "A", comparison.a), (right, "B", comparison.b)):
        with col:
            st.subheader(f"Prompt {label}")
            st.text(side.text)
            top = side.final[0]
            st.metric(f"Model's next token ({label})", top.token, f"p = {top.prob:.3f}", delta_color="off")
            st.dataframe(tokens_frame(side).T, use_container_width=True)

    st.subheader("Distance between A and B at the last token, per layer")
    peak = comparison.distance.peak_layer("cosine")
    st.altair_chart(distance_chart(comparison), use_container_width=True)
    st.caption(
        f"The cosine distance peaks at layer {peak} ({comparison.distance.cosine[peak]:.3f}); "
        f"at the last layer it is {comparison.distance.cosine[-1]:.3f}."
    )

    st.subheader("Logit lens at the last token")
    left, right = st.columns(2)
    for col, label, side in ((left, "A", comparison.a), (right, "B", comparison.b)):
        with col:
            st.markdown(f"**Prompt {label}**")
            st.dataframe(lens_frame(side), use_container_width=True, height=min(40 + 35 * (len(side.lens) + 1), 900))
