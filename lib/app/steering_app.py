"""The Steering page's memory: what the user set and ran stays in the session until the inputs
change (leaving the page and coming back, or running the sweep, keeps the steer result), the
link carries layer, α, vector, vector source and target, and the sweep's best cell is one click
away ("Steer there").
"""

from __future__ import annotations

import re

import streamlit as st

from ..analyses.features import feature_steering_vector
from ..core.errors import TwinlensError
from . import feature_steering
from .cache import ModelKey
from .session import KEPT, PAGE_QUERY_KEY, linked, share

VECTOR_SOURCE = "steering-vector-source"  # not a widget: where the steering vector comes from
RUN_NOW = "steering-run-now"  # set by "Steer there": the next run steers as if Steer was pressed
LINKED = {  # widget key → the link's parameter
    "steering-layer": "steer_layer", "steering-alpha": "steer_alpha", "steering-mode": "steer_mode",
    "steering-third": "steer_target",
}
CASTS = {"steering-layer": int, "steering-alpha": float}
REMEMBERED = ("steering-apply", "steering-answer", "steering-wrong", "steering-n", "steering-target",
              "steering-alphas")


def restore() -> None:
    """Before the page's widgets: a link's values (first visit) or the values left on the page."""
    for key, name in LINKED.items():
        linked(key, name, CASTS.get(key, str))
    if st.session_state.get("steering-third"):
        st.session_state.setdefault("steering-target", "a third prompt")
    for key in REMEMBERED:
        if key not in st.session_state and KEPT + key in st.session_state:
            st.session_state[key] = st.session_state[KEPT + key]


def feature_source() -> str | None:
    """'feature:N' while the page steers with shipped SAE feature N's direction, else None (A − B)."""
    held = st.session_state.get(feature_steering.VECTOR_KEY)
    found = re.match(r"SAE feature (\d+)", held["source"]) if held else None
    return f"feature:{found.group(1)}" if found else None


def adopt_feature_link(model: ModelKey, cached) -> None:
    """A link with steer_vector=feature:N (and steer_layer=ℓ): steer with the shipped SAE's
    feature N at residual ℓ, as the Features page's button would (its α: the link's steer_alpha)."""
    pending = st.session_state.get(PAGE_QUERY_KEY, {})
    found = re.fullmatch(r"feature:(\d+)", pending.pop("steer_vector", "") or "")
    if not found:
        return
    try:
        layer = int(pending.get("steer_layer", ""))
        vector = cached(feature_steering_vector, model, int(found.group(1)), layer=layer, sae_path=None,
                        any_model=False)
        feature_steering.send(vector, float(pending.get("steer_alpha", 4.0)))
    except (TwinlensError, ValueError) as exc:
        st.warning(f"The link's steering vector could not be rebuilt ({exc}); steering with A − B.")


def keep(defaults: dict[str, object]) -> None:
    """After the page's widgets: remember every value; the linked ones also go into the link
    (left out while they equal `defaults`), with the vector's source (`feature_source`)."""
    for key, name in LINKED.items():
        share(key, name, st.session_state.get(key), defaults.get(key))
        if key not in st.session_state:  # not drawn (B is the target): nothing to bring back
            del st.session_state[KEPT + key]
    share(VECTOR_SOURCE, "steer_vector", feature_source())
    for key in REMEMBERED:
        if key in st.session_state:
            st.session_state[KEPT + key] = st.session_state[key]


def steer_there(layer: int, alpha: float) -> None:
    """A button callback: set layer and α to the sweep's best cell and steer on the next run."""
    st.session_state["steering-layer"] = int(layer)
    st.session_state["steering-alpha"] = float(alpha)
    st.session_state[RUN_NOW] = True


def run_now() -> bool:
    """Whether "Steer there" asked for a steer in this run (asked once)."""
    return bool(st.session_state.pop(RUN_NOW, False))
