"""The Components page's results, through the results cache (the Circuit page reads the same
entries): the direct logit attribution (`attribution_of`, per layer as `layer_table`, in words as
`reading_of`), both prompts' attention patterns (`patterns_of`) and the head and component
patching grid (`patching_of`)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..analyses.components import (
    AttentionPatterns,
    ComponentAttribution,
    ComponentPatching,
    attention_patterns,
    attribute_captures,
    patch_components,
    reading,
)
from . import ui
from .cache import RunKey


def attribution_of(run_a: RunKey, run_b: RunKey, answer: str | None,
                   wrong: str | None) -> ComponentAttribution:
    """Each prompt's logit[answer] − logit[wrong] split over the embedding, layers and heads
    (`attribute_captures`; None: A's and B's predicted tokens)."""
    return ui.cached(attribute_captures, run_a.model, run_a, run_b, answer=answer, wrong=wrong)


def patterns_of(run_a: RunKey, run_b: RunKey) -> AttentionPatterns:
    """Both prompts' attention patterns at every layer (`attention_patterns`, eager attention)."""
    return ui.cached(attention_patterns, run_a.model, run_a, run_b)


def patching_of(run_a: RunKey, run_b: RunKey, answer: str | None, wrong: str | None, per_position: bool,
                progress: Callable[[float], None] | None = None) -> ComponentPatching:
    """A's attention, MLP and head outputs patched into B, exact and by attribution patching
    (`patch_components`), all positions at once or one position at a time."""
    return ui.cached(patch_components, run_a.model, run_a, run_b, answer=answer, wrong=wrong,
                     per_position=per_position, _progress=progress)


def reading_of(result: ComponentAttribution) -> str:
    """The attribution in plain sentences (`reading`)."""
    return reading(result)


def layer_table(result: ComponentAttribution) -> pd.DataFrame:
    """One row per (side, layer, component): the direct contribution to the metric."""
    rows = []
    for side, values in (("A", result.a), ("B", result.b)):
        for layer in range(len(values.attn)):
            rows += [{"side": side, "layer": layer, "component": "attention", "value": values.attn[layer]},
                     {"side": side, "layer": layer, "component": "MLP", "value": values.mlp[layer]}]
    frame = pd.DataFrame(rows)
    a, b = frame[frame.side == "A"].reset_index(drop=True), frame[frame.side == "B"].reset_index(drop=True)
    diff = a.assign(side="A − B", value=a["value"] - b["value"])
    return pd.concat([frame, diff], ignore_index=True)
