"""Top-token diff: layer by layer, A's and B's top-k at one position each, and KL / JS between them
(two-models mode: model 1's and model 2's on one prompt)."""

from __future__ import annotations

import streamlit as st

from lib.app import charts, diff_view, lens_choice, session, ui, views
from lib.app import compare_frames as frames

views.page(
    "Top-token diff",
    """
At every layer the model has a list of words it might write next, after A and after B. This page
shows how different those two lists are, layer by layer, and which words moved the most.

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
- **Two models** (switch in the sidebar): A and B are model 1 and model 2 reading the same prompt,
  each layer through its own model's final norm and unembedding; the two need as many layers.
""",
)

def position_picker(name: str, tokens: tuple[str, ...], label: str) -> int:
    """A position of one prompt, shown as 'index · token'; the last by default."""
    return st.selectbox(
        label,
        range(len(tokens)),
        index=len(tokens) - 1,
        format_func=lambda i: f"{i} · {tokens[i]}",
        key=f"diff-position-{name}-{len(tokens)}",
    )

found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    a, b = frames.side_names(comparison)
    if comparison.mode == "models":  # one prompt: one position for both models
        st.caption(views.plain(frames.model_caption(comparison)))
        position_a = position_b = position_picker("prompt", comparison.a.tokens, "Position in the prompt")
    else:
        left, right = st.columns(2)
        with left:
            position_a = position_picker("A", comparison.a.tokens, "Position in prompt A")
        with right:
            position_b = position_picker("B", comparison.b.tokens, "Position in prompt B")
    models = model, ui.get_model(run_b.model)
    uses = lens_choice.alike(lens_choice.lens_uses(request, *models), models)  # KL compares like with like
    views.lens_notes(uses)
    diff = diff_view.top_token_diff_of(run_a, run_b, uses, position_a, position_b, request.k)
    if uses[0] == uses[1]:
        st.caption(uses[0].caption)
    else:
        st.caption(f"Read with: {a}: {uses[0].provenance}; {b}: {uses[1].provenance}.")
    if uses[0].chosen != uses[0].kind or uses[1].chosen != uses[1].kind:
        st.caption("Both models are read with the logit lens here, so the divergences compare like "
                   "with like.")

    overview = diff_view.layers_table(diff, a, b)
    st.subheader("How far apart the two distributions are, per layer")
    kl = diff_view.kl_name(a, b)
    divergences = charts.divergence_chart(charts.divergence_frame(diff), kl.removesuffix(" bits"))
    st.altair_chart(divergences, width="stretch")
    peak = max(diff.layers, key=lambda layer: layer.js_bits)
    st.caption(
        f"Jensen–Shannon peaks at layer {peak.layer} ({peak.js_bits:.3f} bits); at the last layer it is "
        f"{diff.layers[-1].js_bits:.3f} bits and the top-{diff.top_k} lists share "
        f"{len(diff.layers[-1].shared)} tokens. Label: the token whose probability changed most at the peak "
        "(hover any point for its own)."
    )

    st.subheader("One layer, token by token")
    views.token_legend()
    last = len(diff.layers) - 1
    session.linked("diff-layer", "diff_layer", int)
    if st.session_state.get("diff-layer") not in range(last + 1):
        st.session_state["diff-layer"] = last
    chosen = st.select_slider("Layer", options=range(last + 1), key="diff-layer")
    session.share("diff-layer", "diff_layer", chosen, last)
    detail = diff_view.layer_table(diff.layers[chosen], a, b)
    st.dataframe(diff_view.highlight_shared(detail, a, b), hide_index=True, width="stretch")

    st.subheader("Every layer")
    number_columns = (kl, "JS bits", "top-k overlap", f"entropy {a} bits", f"entropy {b} bits",
                      "Δp most changed")
    numbers = {name: st.column_config.NumberColumn(format="%.4g") for name in number_columns}
    views.table(overview, hide_index=True, width="stretch", column_config=numbers)
    tables = {name: lens_choice.tagged(table, uses, (a, b))
              for name, table in {"layers": overview, f"layer-{chosen}": detail}.items()}
    data = {**diff.to_dict(), "lens": lens_choice.lens_export(uses, (a, b))}
    views.download_buttons("top-token-diff", request, data, tables)
