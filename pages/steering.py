"""Steering: add α·(h_A − h_B) at one layer to B (or a third prompt) and see what it then says."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import charts, feature_steering, session, steering_app, ui, views
from lib.app.cache import RunKey

views.page(
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
  (or two you name), their probabilities, and KL(steered ‖ unsteered) in bits. **Side effect**: the
  same KL on a short neutral text. **Controls**: −α, and a random vector of the same norm — an effect the
  random vector also has is not the vector's.
- **Push**: α‖v‖ / ‖h‖, how long the added vector is next to the residual it is added to (at the
  target's last token). A push beyond 50× is refused: it only makes gibberish.
- **Sweep**: every layer × a few α at the next token, batched. Its *best* cell is the smallest push
  that moves B about all the way to A (effect ≥ 0.9); an effect far beyond 1 is marked as an
  overshoot. **Steer there** steers with that layer and α.
- Every result stays while you visit other pages, until you change what it depends on; the link
  carries the layer, α, vector and target.
- **Two models** (switch in the sidebar): each model is steered with its own vector `h_A − h_B`
  (A from the sidebar, B typed on this page), and the results are shown model by model.
""",
)



def heading(steered: steering_app.Steered) -> None:
    if steered.title:
        st.subheader(views.plain(f"{steered.title} · {steered.run_a.model.spec}"))


def draw_steering(steered: steering_app.Steered, result, layer: int, mode: str,
                  target: RunKey | None, vector_file: bytes | None) -> pd.DataFrame:
    """One model's steering result: the four continuations, their effects, the vector to download."""
    run_a, run_b = steered.run_a, steered.run_b
    st.caption(views.plain(steering_app.result_caption(result, target)))
    if result.note:
        st.info(views.plain(result.note))
    columns = st.columns(4)
    for col, outcome in zip(columns, result.outcomes, strict=True):
        with col:
            st.markdown(f"**{outcome.name}** (α = {outcome.alpha:g})")
            st.text(outcome.continuation.text or "(nothing)")
    table = steering_app.outcomes_table(result)
    st.dataframe(table, hide_index=True, width="stretch")
    if result.metric_a is not None:
        st.caption(f"logit difference of A: {result.metric_a:.3f}, of B: {result.metric_b:.3f}")
    if vector_file is None:
        vector = steering_app.vector_of(run_a, run_b, layer, mode)
        suffix = f"-{steered.title.replace(' ', '')}" if steered.title else ""
        st.download_button(f"⬇ Steering vector{' of ' + steered.title.lower() if steered.title else ''} "
                           "(safetensors)", vector.to_bytes(),
                           file_name=f"steering-layer{layer}-{mode}{suffix}.safetensors", on_click="ignore",
                           key=f"steering-download{suffix}")
    return table


def show_sweep(steered: steering_app.Steered, target: RunKey | None, alphas: str, mode: str,
               answer: str | None, wrong: str | None) -> None:
    """One model's sweep: the best layer in a sentence, the chart and the table."""
    bar = st.progress(0.0, text="Sweeping layers × coefficients…")
    try:
        sweep = steering_app.sweep_of(steered, target, alphas, mode, answer, wrong,
                                      lambda done: bar.progress(done, text=f"Sweep: {done:.0%} done"))
    finally:
        bar.empty()
    st.markdown(views.plain(sweep.reading()))
    best_layer, best_alpha = sweep.best()
    suffix = f"-{steered.title.replace(' ', '')}" if steered.title else ""
    st.button(f"Steer there: layer {best_layer}, α = {best_alpha:g}", key=f"steering-best{suffix}",
              on_click=steering_app.steer_there, args=(best_layer, best_alpha))
    table = steering_app.sweep_table(sweep)
    st.altair_chart(charts.sweep_chart(table), width="stretch")
    st.dataframe(table, hide_index=True, width="stretch")


found = ui.require_comparison()
if found is not None:
    request, _, _ = found
    models = steering_app.steered_models(request)
    depth = min(ui.get_model(m.run_a.model).n_layers for m in models)  # two models: the shallower
    steering_app.adopt_feature_link(models[0].run_a.model, ui.cached)
    steering_app.restore()
    feature_file = feature_steering.receive()  # the Features page's "steer with this feature"
    layer, alpha, mode, apply = steering_app.choices(depth)
    answer, wrong, settings = steering_app.words_and_length()
    upload = st.file_uploader("Steer with a saved vector instead (safetensors)", type=["safetensors"],
                              key="steering-file")
    vector_file = upload.getvalue() if upload is not None else feature_file
    if upload is not None:
        st.caption(views.plain(steering_app.vector_file_caption(vector_file)))
    third = steering_app.target_text()
    wanted = (request, steering_app.plain_models(models), layer, alpha, mode, apply, answer, wrong, third,
              settings,
              vector_file)
    if session.asked("Steer", "steering-run", wanted, also=steering_app.run_now(), type="primary"):
        tables, data = {}, {}
        for steered in models:
            heading(steered)
            target = steering_app.target_run(steered, third)
            result = None
            with views.errors_shown():  # two models: the other model's result still shows
                result = steering_app.steered(
                    steered.run_a, steered.run_b, target, steered.title, layer=layer, alpha=float(alpha),
                    mode=mode, apply=apply, answer=answer, wrong=wrong, settings=settings,
                    vector_file=vector_file,
                )
            if result is None:
                continue
            table = draw_steering(steered, result, layer, mode, target, vector_file)
            tables["-".join(("outcomes", *steered.title.lower().split()))] = table
            data[steered.title.lower()] = result.to_dict()
        if tables:
            views.download_buttons("steering", request, data if len(models) > 1 else data[""], tables)
    else:
        st.info("Press **Steer** to generate the unsteered and steered continuations.")

    st.subheader("Sweep over layers")
    typed = steering_app.alphas_input()
    steering_app.keep(steering_app.defaults(depth))
    sweep_wanted = (request, steering_app.plain_models(models), typed, mode, answer, wrong, third)
    if session.asked("Run sweep", "steering-sweep-run", sweep_wanted):
        for steered in models:
            heading(steered)
            with views.errors_shown():
                show_sweep(steered, steering_app.target_run(steered, third), typed, mode, answer, wrong)
