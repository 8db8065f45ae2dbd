"""Steering: add α·(h_A − h_B) at one layer to B (or a third prompt) and see what it then says."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib.analyses.generation import MAX_NEW_TOKENS, GenerationSettings
from lib.analyses.steering import (
    APPLY_TO,
    DEFAULT_ALPHAS,
    VECTOR_MODES,
    SteerResult,
    SweepResult,
    steer_captures,
    steering_sweep,
    steering_vector,
)
from lib.app import feature_steering, ui
from lib.app.cache import RunKey
from lib.core.errors import PromptError, SettingsError, TwinlensError

ui.page(
    "Steering",
    """
Activation addition (Turner et al. 2023): the difference between A's and B's residual streams at
one layer is a **steering vector** `v = h_A − h_B`. Adding `α·v` at that layer to another run
pushes it toward A (α > 0) or away from it (α < 0) — e.g. 'Love' − 'Hate' makes text more positive.

- **Vector**: *last* = the difference at the last position; *mean* = of the means over positions;
  *aligned* = position by position (A and B of the same length; ActAdd's alignment), added at the
  target's positions only.
- **Layer** ℓ is the residual entering block ℓ (0 = embeddings), TransformerLens's
  `blocks.ℓ.hook_resid_pre`.
- **Apply to**: every position, the generated tokens included (default), or the prompt's only.
- **Effects** at the target's next token: the logit difference between A's and B's predicted tokens
  (or two you name), their probabilities, and KL(steered ‖ unsteered). **Side effect**: the same KL
  on a short neutral text. **Controls**: −α, and a random vector of the same norm — an effect the
  random vector also has is not the vector's.
- **Sweep**: every layer × a few α at the next token, batched; the best layer is named.
""",
)

STEER_KEY = "steering-ran-for"
SWEEP_KEY = "steering-sweep-for"


def target_run(request) -> RunKey | None:
    """None for B, else the third prompt's run (an empty one is refused)."""
    choice = st.radio("Target", ["B", "a third prompt"], horizontal=True, key="steering-target")
    if choice == "B":
        return None
    text = st.text_area("Third prompt", key="steering-third", height=70)
    if not text.strip():
        raise PromptError("The target prompt is empty. Type the third prompt to steer, or choose B.")
    return RunKey(request.model_key, text, request.bos, request.chat_settings)


def outcomes_table(result: SteerResult) -> pd.DataFrame:
    return pd.DataFrame(
        {"run": o.name, "α": o.alpha, "continuation": o.continuation.text,
         "logit diff": o.logit_diff, f"p({result.metric.answer.token if result.metric.answer else '—'})":
         o.prob_answer, f"p({result.metric.wrong.token if result.metric.wrong else '—'})": o.prob_wrong,
         "KL vs unsteered": o.kl, "side-effect KL": o.side_kl}
        for o in result.outcomes
    )


def sweep_table(sweep: SweepResult) -> pd.DataFrame:
    return pd.DataFrame(
        {"layer": layer, "α": alpha, "logit diff": sweep.logit_diff[layer][j],
         "effect": sweep.effect(layer, j), "KL": sweep.kl[layer][j], "random KL": sweep.random_kl[layer]}
        for layer in range(len(sweep.kl))
        for j, alpha in enumerate(sweep.alphas)
    )


def sweep_chart(table: pd.DataFrame) -> alt.Chart:
    measure = "effect" if table["effect"].notna().all() else "KL"
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("layer:Q"), y=alt.Y(f"{measure}:Q"), color=alt.Color("α:N"),
        tooltip=["layer", "α", alt.Tooltip("effect", format=".3f"), alt.Tooltip("KL", format=".3f")],
    ).properties(height=320)


def parse_alphas(typed: str) -> tuple[float, ...]:
    try:
        alphas = tuple(float(a) for a in typed.split(",") if a.strip())
    except ValueError as exc:
        raise SettingsError(
            f"The sweep's coefficients must be numbers separated by commas, not '{typed}'."
        ) from exc
    if not alphas:
        raise SettingsError("Give at least one coefficient for the sweep.")
    return alphas


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    run_a, run_b = run_a.prompt_only, run_b.prompt_only
    feature_file = feature_steering.receive()  # the Features page's "steer with this feature"
    top = st.columns(4)
    layer = top[0].selectbox("Layer", range(model.n_layers + 1), index=model.n_layers // 2,
                             key="steering-layer")
    alpha = top[1].number_input("α", value=4.0, step=0.5, key="steering-alpha")
    mode = top[2].selectbox("Vector", VECTOR_MODES, key="steering-mode")
    apply = top[3].selectbox("Apply to", APPLY_TO, key="steering-apply",
                             help="all: every position, generated tokens included; prompt: the prompt's only")
    left, mid, right = st.columns(3)
    answer = left.text_input("Answer token", key="steering-answer", placeholder="A's top-1") or None
    wrong = mid.text_input("Wrong token", key="steering-wrong", placeholder="B's top-1") or None
    n = right.number_input("New tokens", 1, MAX_NEW_TOKENS, 24, key="steering-n")
    upload = st.file_uploader("Steer with a saved vector instead (safetensors)", type=["safetensors"],
                              key="steering-file")
    vector_file = upload.getvalue() if upload is not None else feature_file
    try:
        target = target_run(request)
    except TwinlensError as exc:
        ui.show_error(exc)
        st.stop()
    settings = GenerationSettings(int(n))
    wanted = (request, layer, alpha, mode, apply, answer, wrong, target, settings, vector_file)
    if st.button("Steer", type="primary", key="steering-run"):
        st.session_state[STEER_KEY] = wanted
    if st.session_state.get(STEER_KEY) == wanted:
        try:
            with st.spinner("Generating the unsteered, steered, −α and random-vector continuations…"):
                result = ui.cached(
                    steer_captures, run_a.model, run_a, run_b, target, layer=layer, alpha=float(alpha),
                    mode=mode, apply=apply, answer=answer, wrong=wrong, settings=settings,
                    vector_file=vector_file,
                )
        except TwinlensError as exc:
            ui.show_error(exc)
            st.stop()
        st.caption(ui.plain(
            f"{result.site}: ‖v‖ = {result.vector_norm:.3f} ({result.mode}), α = {result.alpha:g}, "
            f"added to {'B' if target is None else 'the third prompt'} at "
            f"{'every position' if result.apply == 'all' else 'the prompt only'}."
        ))
        if result.note:
            st.info(ui.plain(result.note))
        columns = st.columns(4)
        for col, outcome in zip(columns, result.outcomes, strict=True):
            with col:
                st.markdown(f"**{outcome.name}** (α = {outcome.alpha:g})")
                st.text(outcome.continuation.text or "(nothing)")
        table = outcomes_table(result)
        st.dataframe(table, hide_index=True, width="stretch")
        if result.metric_a is not None:
            st.caption(f"logit difference of A: {result.metric_a:.3f}, of B: {result.metric_b:.3f}")
        if vector_file is None:
            vector = ui.cached(steering_vector, run_a.model, run_a, run_b, layer, mode)
            st.download_button("⬇ Steering vector (safetensors)", vector.to_bytes(),
                               file_name=f"steering-layer{layer}-{mode}.safetensors", on_click="ignore",
                               key="steering-download")
        ui.download_buttons("steering", request, result.to_dict(), {"outcomes": table})
    else:
        st.info("Press **Steer** to generate the unsteered and steered continuations.")

    st.subheader("Sweep over layers")
    typed = st.text_input("Coefficients", ", ".join(f"{a:g}" for a in DEFAULT_ALPHAS), key="steering-alphas")
    sweep_wanted = (request, typed, mode, answer, wrong, target)
    if st.button("Run sweep", key="steering-sweep-run"):
        st.session_state[SWEEP_KEY] = sweep_wanted
    if st.session_state.get(SWEEP_KEY) == sweep_wanted:
        bar = st.progress(0.0, text="Sweeping layers × coefficients…")
        try:
            try:
                sweep = ui.cached(steering_sweep, run_a.model, run_a, run_b, target,
                                  alphas=parse_alphas(typed), mode=mode, answer=answer, wrong=wrong,
                                  _progress=lambda done: bar.progress(done, text=f"Sweep: {done:.0%} done"))
            finally:
                bar.empty()
        except TwinlensError as exc:
            ui.show_error(exc)
            st.stop()
        st.markdown(ui.plain(sweep.reading()))
        table = sweep_table(sweep)
        st.altair_chart(sweep_chart(table), width="stretch")
        st.dataframe(table, hide_index=True, width="stretch")
