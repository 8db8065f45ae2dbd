"""The Features page's "steer with this feature" → the Steering page, through session state.

The Features page sends the feature's decoder direction (`feature_steering_vector`, a
`SteeringVector` at the SAE's residual) with a suggested α; the Steering page, before drawing its
widgets, takes the layer and α once and steers with the vector (as a vector file: the same path as
an uploaded one, so the layer and model checks are `load_vector`'s) until the user goes back to A − B.
"""

from __future__ import annotations

import streamlit as st

from ..analyses.common.vector import SteeringVector

VECTOR_KEY = "steering-feature-vector"  # {"file": bytes, "layer": int, "source": str}
PENDING_KEY = "steering-feature-pending"  # {"layer": int, "alpha": float}: applied once to the widgets
LAYER_WIDGET, ALPHA_WIDGET = "steering-layer", "steering-alpha"  # the Steering page's widget keys


def send(vector: SteeringVector, alpha: float) -> None:
    """Hand `vector` to the Steering page (call before `st.switch_page("pages/steering.py")`)."""
    st.session_state[VECTOR_KEY] = {"file": vector.to_bytes(), "layer": vector.layer, "source": vector.source}
    st.session_state[PENDING_KEY] = {"layer": vector.layer, "alpha": float(alpha)}


def receive() -> bytes | None:
    """On the Steering page, before its layer and α widgets: the feature's vector file (None when no
    feature was sent), with a line saying so and a button to steer with A − B again."""
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending is not None:
        st.session_state[LAYER_WIDGET] = pending["layer"]
        st.session_state[ALPHA_WIDGET] = pending["alpha"]
    held = st.session_state.get(VECTOR_KEY)
    if held is None:
        return None
    text, button = st.columns([5, 1])
    text.info(f"Steering with {held['source']}: its decoder direction, added at layer {held['layer']} "
              "(α = the feature's activation added).")
    if button.button("Use A − B instead", key="steering-feature-clear"):
        del st.session_state[VECTOR_KEY]
        st.rerun()
    return held["file"]
