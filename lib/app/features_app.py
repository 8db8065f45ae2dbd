"""The Features page's results and tables: the SAE features of both prompts, a feature's trace
and its steering vector through the results cache (`features_of`, `trace_of`,
`steering_vector_of`), the SAE's card and a feature's (`sae_card`, `card_of`, `feature_labels`),
the lists as tables (`feature_table`, `heat_table`); the ranking by attribution
(`attribute_features`, as the Findings page's `attribution_of_captures`) and the default layer: the
shipped SAE layer nearest to where the difference reaches the last position (the Patching page's
reading, from the same cached grid).

The gradient is taken once for every shipped layer (and a given SAE's) and kept in the results
cache, so choosing another layer or list length runs no pass; the ranking itself is a few
products of tensors already held."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import views

from ..analyses.common.sae import FeatureCard, feature_book, read_card, sae_for_layer, shipped_saes
from ..analyses.common.vector import SteeringVector
from ..analyses.features import (
    FeatureAttribution,
    FeatureComparison,
    FeatureRow,
    FeatureTrace,
    attribute_features,
    feature_steering_vector,
    features_of_captures,
    metric_gradients,
    nearest_sae_layer,
    trace_of_captures,
)
from ..analyses.patching import arrival_layer
from ..core.errors import TwinlensError
from ..core.models import LoadedModel
from . import patching_view, ui
from .cache import RunKey
from .request import Request

MAX_TOP = 30  # the page's "features per list" slider's end: the ranking is cut, not recomputed


def default_layer(request: Request, model: LoadedModel) -> int | None:
    """The shipped SAE layer nearest to the patching grid's arrival layer; None when there is no
    shipped SAE or no grid (two models, a pair without a logit difference)."""
    layers = shipped_layers(model)
    if not layers or request.two_models:
        return None
    run_a, run_b = request.runs
    try:  # the Patching page's default grid, the same results-cache entry
        patch = patching_view.patched(run_a, run_b, None, None, "logit")
    except TwinlensError:
        return None
    return nearest_sae_layer(layers, arrival_layer(patch))


def attribution_table(result: FeatureAttribution, top: int) -> pd.DataFrame:
    """One row per feature of the first `top` (largest |attribution| first), then the SAE's error row."""
    def share(score: float) -> float | None:
        return score / result.total if result.total else None

    rows = [{"feature": str(f.feature), "attribution": f.score, "share": share(f.score),
             "at A's last token": f.activation_a, "at B's last token": f.activation_b,
             "generic": "generic" if f.generic else "", "fires on (label)": f.label,
             "promotes": ", ".join(f.promotes)} for f in result.features[:top]]
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
        model = ui.get_model(run_a.model)
        sae = sae_for_layer(model, layer, path, any_model=any_model)
        residuals = tuple(sorted(set(shipped_saes(model)) | {sae.residual}))
        gradients = ui.cached(metric_gradients, run_a.model, run_a, run_b, residuals, answer=None, wrong=None)
        result = attribute_features(model, sae, ui.get_capture(run_a), ui.get_capture(run_b), top=MAX_TOP,
                                    book=feature_book(sae.path), gradients=gradients)
    except TwinlensError as exc:
        st.info(views.plain(f"No ranking by attribution: {exc}"))
        return None
    st.markdown(views.plain(
        f"Attribution to logit[{result.answer.token}] − logit[{result.wrong.token}] (A: "
        f"{result.metric_a:.2f}, B: {result.metric_b:.2f}): the {min(top, len(result.features))} features "
        f"below and all others together give {result.features_sum:+.2f}, the SAE's error "
        f"{result.error:+.2f}; together {result.total:+.2f}, the first-order estimate of patching A's whole "
        "residual at this layer into B."
    ))
    if result.note:
        st.caption(views.plain(result.note))
    table = attribution_table(result, top)
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


def shipped_layers(model: LoadedModel) -> list[int]:
    """The residual layers twinlens ships an SAE for, for `model` (none for most models)."""
    return list(shipped_saes(model))


def features_of(run_a: RunKey, run_b: RunKey, layer: int | None, path: str | None, top: int,
                any_model: bool) -> FeatureComparison:
    """Both prompts encoded with the SAE at `layer` (shipped) or at `path` (`features_of_captures`,
    once per value in the results cache); two models: each side its own model's run."""
    return ui.cached(features_of_captures, run_a.model, run_b.model, run_a, run_b, layer=layer, sae_path=path,
                     top=top, any_model=any_model)


def trace_of(run_a: RunKey, run_b: RunKey, feature: int, layer: int | None, path: str | None,
             any_model: bool) -> FeatureTrace:
    """One feature's activation at every position and its encoder direction read at every layer."""
    return ui.cached(trace_of_captures, run_a.model, run_a, run_b, feature, layer=layer, sae_path=path,
                     any_model=any_model)


def steering_vector_of(run_a: RunKey, feature: int, layer: int | None, path: str | None,
                       any_model: bool) -> SteeringVector:
    """The feature's decoder direction as a steering vector at the SAE's layer
    (`feature_steering_vector`)."""
    return ui.cached(feature_steering_vector, run_a.model, feature, layer=layer, sae_path=path,
                     any_model=any_model)


def sae_card(result: FeatureComparison) -> dict | None:
    """The SAE's own card (its held-out FVU, ...), None when it has none (`read_card`)."""
    return read_card(result.sae_path)


def card_of(result: FeatureComparison, feature: int) -> FeatureCard | None:
    """The feature's precomputed card (label, density, promoted tokens, contexts), None without one."""
    book = feature_book(result.sae_path)
    return book.card(feature) if book is not None else None


def feature_labels(result: FeatureComparison, features: list[int]) -> dict[int, str]:
    """Each feature's label: the result's own, else its card's ('' when neither has one)."""
    book = feature_book(result.sae_path)
    return {f: result.label(f) or (book.label(f) if book is not None and f < book.n_features else "")
            for f in features}


def feature_table(rows: tuple[FeatureRow, ...], names: tuple[str, str]) -> pd.DataFrame:
    a, b = names
    return pd.DataFrame(
        [{"feature": r.feature, f"activation {a}": r.activation_a, f"activation {b}": r.activation_b,
          "Δ": r.delta, "density": r.density, "label": r.label} for r in rows],
        columns=["feature", f"activation {a}", f"activation {b}", "Δ", "density", "label"],
    )


def heat_table(result: FeatureComparison, side: str) -> pd.DataFrame:
    tokens = result.tokens_a if side == "a" else result.tokens_b
    rows = result.heat_a if side == "a" else result.heat_b
    return pd.DataFrame(
        {"feature": f"{f} {result.label(f)}"[:60], "label": f"{f} {result.label(f)}", "position": p,
         "column": f"{p} · {tokens[p]}", "token": tokens[p], "activation": values[p]}
        for f, values in zip(result.heat_features, rows, strict=True)
        for p in range(len(tokens))
    )
