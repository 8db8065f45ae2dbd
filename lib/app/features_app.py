"""The Features page's ranking by attribution (the same `attribution_of_captures` the Findings
page reads) and its default layer: the shipped SAE layer nearest to where the difference reaches
the last position (the Patching page's reading, from the same cached patching grid)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..analyses.features import FeatureAttribution, attribution_of_captures, nearest_sae_layer
from ..analyses.patching import arrival_layer, patch_captures
from ..analyses.sae import shipped_saes
from ..core.errors import TwinlensError
from ..core.models import LoadedModel
from . import ui
from .request import Request


def default_layer(request: Request, model: LoadedModel) -> int | None:
    """The shipped SAE layer nearest to the patching grid's arrival layer; None when there is no
    shipped SAE or no grid (two models, a pair without a logit difference)."""
    layers = list(shipped_saes(model))
    if not layers or request.two_models:
        return None
    run_a, run_b = request.runs
    try:
        patch = ui.cached(patch_captures, run_b.model, run_a, run_b, answer=None, wrong=None,
                          model_a=run_a.model)
    except TwinlensError:
        return None
    return nearest_sae_layer(layers, arrival_layer(patch))


def attribution_table(result: FeatureAttribution) -> pd.DataFrame:
    """One row per feature (largest |attribution| first), then the SAE's error row."""
    def share(score: float) -> float | None:
        return score / result.total if result.total else None

    rows = [{"feature": str(f.feature), "attribution": f.score, "share": share(f.score),
             "at A's last token": f.activation_a, "at B's last token": f.activation_b,
             "generic": "generic" if f.generic else "", "fires on (label)": f.label,
             "promotes": ", ".join(f.promotes)} for f in result.features]
    rows.append({"feature": "SAE error", "attribution": result.error,
                 "share": share(result.error),
                 "fires on (label)": "what the SAE does not reconstruct"})
    return pd.DataFrame(rows)


def attribution_section(request: Request, layer: int | None, path: str | None, top: int,
                        any_model: bool) -> pd.DataFrame | None:
    """The features that carry the difference, ranked by attribution, with a sentence; the table
    (None when there is no logit difference to attribute, said in a line)."""
    run_a, run_b = request.runs
    st.subheader("Features that carry the difference (ranked by attribution)")
    try:
        result = ui.cached(attribution_of_captures, run_a.model, run_a, run_b, layer=layer, sae_path=path,
                           top=top, any_model=any_model)
    except TwinlensError as exc:
        st.info(ui.plain(f"No ranking by attribution: {exc}"))
        return None
    st.markdown(ui.plain(
        f"Attribution to logit[{result.answer.token}] − logit[{result.wrong.token}] (A: "
        f"{result.metric_a:.2f}, B: {result.metric_b:.2f}): the {len(result.features)} features below and "
        f"all others together give {result.features_sum:+.2f}, the SAE's error {result.error:+.2f}; together "
        f"{result.total:+.2f}, the first-order estimate of patching A's whole residual at this layer into B."
    ))
    if result.note:
        st.caption(ui.plain(result.note))
    table = attribution_table(result)
    number = st.column_config.NumberColumn
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "attribution": number(format="%+.3f", help="Σ over positions of (activation A − activation B) × "
                              "the difference's gradient along the feature's direction, at B"),
        "share": number(format="percent", help="of the whole estimate (features + error)"),
        "at A's last token": number(format="%.2f", help="the feature's activation there"),
        "at B's last token": number(format="%.2f", help="the feature's activation there"),
        "fires on (label)": st.column_config.TextColumn(width="large"),
    })
    return table


def attributed_features(table: pd.DataFrame | None) -> list[int]:
    """The feature ids of an attribution table, in its order (the error row left out)."""
    if table is None:
        return []
    return [int(f) for f in table["feature"] if f != "SAE error"]
