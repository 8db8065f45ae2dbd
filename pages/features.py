"""Features: the SAE features each prompt lights up at one layer, shared and different, with cards."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import charts, feature_steering, features_app, glossary, paths, session, ui, views

views.page(
    "Features",
    """
A **sparse autoencoder** (SAE) rewrites one residual vector as a few active *features* out of
thousands, each closer to one concept than any single neuron. This page encodes both prompts with
the SAE at the chosen layer and shows which features each lights up.

- **What carries the difference** (first table): the features ranked by their *attribution* to
  the difference in the answer — how much each one's change from B to A moves
  logit[A's answer] − logit[B's answer] (its change × the gradient of that difference at B, summed
  over positions). The SAE's **error** (what it fails to reconstruct) is its own row, so the rows
  add up to the estimate for patching the whole residual. Generic features (firing on more than
  5% of all tokens) are marked: they say little about this pair.
- **Labels**: the words a feature fires on most in the SAE's training text and one short example
  context; what it *promotes* (the words it makes more likely next) is a separate column.
- **At the last position** (where the next token is read): the strongest features of each side,
  then those **shared** by both and those **only** in one, ranked by |activation A − activation B|.
- **Density** is how often a feature fires on the SAE's training text: a feature that fires on
  almost every token tops any contrast ranking without saying much.
- **FVU** (fraction of variance unexplained) says how well the SAE reconstructs each prompt's
  residual: 0 is perfect; above about 0.5 the features describe little of what the model holds.
- **Steer with this feature** (on a feature's card) opens the Steering page with the feature's
  decoder direction as the steering vector, at the SAE's layer.
- twinlens ships TopK SAEs for the embedded SmolLM2 at residuals 6, 15 and 24 (trained here on a
  Wikipedia sample); any SAELens folder or Gemma Scope `params.npz` can be given instead.
""",
)

FVU_WARNING = 0.5


def feature_columns(names: tuple[str, str]) -> dict:
    """How feature_table's numbers read: activations to 2 decimals, Δ signed, density in percent."""
    number = st.column_config.NumberColumn
    return {
        **{f"activation {n}": number(format="%.2f") for n in names},
        "Δ": number(format="%+.2f", help=f"activation {names[0]} − activation {names[1]}"),
        "density": number(format="percent", help=glossary.DENSITY),
    }


def sae_choice(model, default: int | None) -> tuple[int | None, str | None, bool]:
    """Layer (for the shipped SAEs; `default` first), an SAE path typed by the user, and 'any model'."""
    shipped = features_app.shipped_layers(model)
    left, right = st.columns([1, 2])
    with right.expander("Use another SAE (SAELens folder or Gemma Scope params.npz)"):
        path = paths.path_input("SAE folder", key="features-sae", placeholder="/path/to/sae-folder")
        any_model = st.checkbox("Use it on a model it was not trained on (a fine-tune of it)",
                                key="features-any-model")
    if path:
        return None, path, any_model
    if not shipped:
        st.info(f"twinlens ships no SAE for {views.plain(model.name)}; give an SAE folder above.")
        st.stop()
    layers = list(shipped)
    session.linked("features-layer", "features_layer", int)
    index = layers.index(default) if default in layers else min(1, len(layers) - 1)
    layer = left.selectbox("Layer (residual)", layers, index=index, key="features-layer",
                           help="By default the SAE layer nearest to where the difference reaches the last "
                                "position (the Patching page's reading).")
    session.share("features-layer", "features_layer", layer)
    return layer, None, any_model


def draw_card(result, feature: int, names: tuple[str, str], trace) -> None:
    card = features_app.card_of(result, feature)
    label = card.label if card is not None else "(no precomputed data)"
    st.markdown(f"**Feature {feature}** — {views.plain(label)}")
    if card is not None:
        st.caption(f"Fires on {card.density:.3%} of the SAE's training tokens.")
        left, right = st.columns(2)
        left.dataframe(pd.DataFrame(card.promoted, columns=["promotes", "logit"]), hide_index=True)
        right.dataframe(pd.DataFrame(card.suppressed, columns=["suppresses", "logit"]), hide_index=True)
        lines = []
        for context in card.contexts:
            text = "".join(f"【{t}】" if i == context.peak else t for i, t in enumerate(context.tokens))
            lines.append({"activation": context.activation, "context (peak in 【】)": text})
        st.dataframe(pd.DataFrame(lines), hide_index=True, width="stretch")
    positions = pd.DataFrame(
        [{"side": names[0], "position": f"{p} · {t}", "p": p, "activation": v}
         for p, (t, v) in enumerate(zip(result.tokens_a, trace.activations_a, strict=True))]
        + [{"side": names[1], "position": f"{p} · {t}", "p": p, "activation": v}
           for p, (t, v) in enumerate(zip(result.tokens_b, trace.activations_b, strict=True))]
    )
    st.altair_chart(charts.feature_positions(positions))
    layers = pd.DataFrame(
        [{"layer": ℓ, "side": names[0], "pre-activation": v} for ℓ, v in enumerate(trace.across_layers_a)]
        + [{"layer": ℓ, "side": names[1], "pre-activation": v} for ℓ, v in enumerate(trace.across_layers_b)]
    )
    st.caption(
        "Where it comes from: the feature's encoder direction read at every layer's residual (last "
        f"position). At layer {result.residual} this is the feature's own input; elsewhere it is a probe."
    )
    st.altair_chart(charts.feature_layers(layers), width="stretch")


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    side_a, side_b = views.sides(request, comparison)
    names = (side_a.name, side_b.name)
    run_a, run_b = request.runs
    default_layer = features_app.default_layer(request, model)
    layer, path, any_model = sae_choice(model, default_layer)
    top = st.slider("Features per list", 3, 30, 10, key="features-top")
    result = features_app.features_of(run_a, run_b, layer, path, top, any_model)
    card_info = features_app.sae_card(result)
    fvu = "  ".join(f"FVU {n}: " + ("—" if v is None else f"{v:.3f}")
                    for n, v in zip(names, (result.fvu_a, result.fvu_b), strict=True))
    held = f"  (held-out FVU on its card: {card_info['fvu_heldout']:.3f})" if card_info else ""
    st.caption(views.plain(f"SAE {result.hook_name} = residual {result.residual}, {result.d_sae:,} features, "
                        f"{result.architecture}. {fvu}{held}"), help=glossary.SAE_CAPTION)
    worst = max((v for v in (result.fvu_a, result.fvu_b) if v is not None), default=0.0)
    if worst > FVU_WARNING:
        st.warning(f"The SAE leaves {worst:.0%} of a prompt's variance unexplained: read its features "
                   "with care.")

    tables = {}
    if not request.two_models:
        attribution = features_app.attribution_section(request, layer, path, top, any_model)
        if attribution is not None:  # None: no logit difference to attribute, said on the page
            tables["attribution"] = attribution
    left, right = st.columns(2)
    for column, side, rows in ((left, side_a, result.top_a), (right, side_b, result.top_b)):
        column.subheader(f"Top features of {side.name} (last position)")
        tables[f"top-{side.name}"] = features_app.feature_table(rows, names)
        column.dataframe(tables[f"top-{side.name}"], hide_index=True, width="stretch",
                         column_config=feature_columns(names))
    groups = (("Shared", "shared", result.shared), (f"Only {names[0]}", "only-a", result.only_a),
              (f"Only {names[1]}", "only-b", result.only_b))
    for title, key, rows in groups:
        st.subheader(f"{title} (ranked by |Δ|)")
        tables[key] = features_app.feature_table(rows, names)
        if rows:
            st.dataframe(tables[key], hide_index=True, width="stretch", column_config=feature_columns(names))
        else:
            st.caption("None.")

    st.subheader("Features × positions")
    bound = result.heat_bound
    st.caption(f"Colour up to {bound:.2f}, the highest activation after the first token; the first "
               "token (position 0, outside what SAEs are trained on) can run far higher and is drawn "
               "clipped at that colour — its value is in the tooltip.")
    left, right = st.columns(2)
    for column, side, key in ((left, side_a, "a"), (right, side_b, "b")):
        table = features_app.heat_table(result, key)
        tables[f"heatmap-{side.name}"] = table
        column.caption(side.title)
        if len(table):
            column.altair_chart(charts.feature_heatmap(table, bound), width="stretch")

    st.subheader("Feature card")
    listed = list(dict.fromkeys(
        list(features_app.attributed_features(tables.get("attribution")))
        + [r.feature for r in (*result.only_a, *result.only_b, *result.shared, *result.top_a, *result.top_b)]
        + list(result.heat_features)
    ))
    if listed:
        named = features_app.feature_labels(result, listed)
        labels = {f"{f} — {named[f]}"[:90].rstrip(" —"): f for f in listed}  # unique: id first
        feature = labels[st.selectbox("Feature", list(labels), key=f"features-card-{result.residual}")]
        trace = features_app.trace_of(run_a, run_b, feature, layer, path, any_model)
        draw_card(result, feature, names, trace)
        if st.button("Steer with this feature", key=f"features-steer-{result.residual}-{feature}",
                     help="Opens Steering with this feature's decoder direction as the vector, at this layer;"
                          " α starts at the feature's highest activation on the two prompts."):
            vector = features_app.steering_vector_of(run_a, feature, layer, path, any_model)
            alpha = max((*trace.activations_a, *trace.activations_b, 0.0))
            feature_steering.send(vector, round(alpha, 2) if alpha > 0 else 4.0)
            st.switch_page("pages/steering.py")
    else:
        st.caption("No feature is active on either prompt.")
    views.download_buttons("features", request, result.to_dict(), tables)
