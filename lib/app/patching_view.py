"""The Patching page's results and tables: the grid of A's residual patched into B through the
results cache (`patched`, by first piece or whole word), B's lens after one patch (`patched_lens`),
the grid as a table (`effect_table`) and in words (`reading_of`), the cell a view opens on
(`strongest_position`), and the one-click fix for a word typed without its leading space
(`space_hint_of`)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..analyses.common.comparison import Comparison
from ..analyses.patching import (
    PatchedLens,
    PatchResult,
    SpaceHint,
    patch_captures,
    patched_lens_captures,
    reading,
    space_hint,
    strongest_cell,
)
from ..core.capture import Capture
from ..core.models import LoadedModel
from . import lens_choice, ui
from .cache import RunKey


def patched(run_a: RunKey, run_b: RunKey, answer: str | None, wrong: str | None, score: str,
            progress: Callable[[float], None] | None = None) -> PatchResult:
    """A's residual written into B's run at every (layer, position) (`patch_captures`, once per
    value in the results cache), the words scored whole when `score` is 'word', else by their
    first piece's logit difference."""
    whole = {"score": "word"} if score == "word" else {}
    return ui.cached(patch_captures, run_b.model, run_a, run_b, answer=answer, wrong=wrong,
                     model_a=run_a.model, **whole, _progress=progress)


def patched_lens(run_a: RunKey, run_b: RunKey, layer: int, position: int, k: int, kind: str) -> PatchedLens:
    """B's lens (lens `kind`) at its last position after writing A's residual at (layer, position)."""
    return ui.cached(patched_lens_captures, run_b.model, run_a, run_b, layer, position, top_k=k,
                     **lens_choice.lens_kwargs(kind))


def reading_of(result: PatchResult) -> str:
    """Where the effect sits, in one or two plain sentences (`reading`)."""
    return reading(result)


def strongest_position(result: PatchResult) -> int:
    """The B position a view of one patch opens on (`strongest_cell`: largest at layer 0)."""
    return strongest_cell(result)[1]


def space_hint_of(model: LoadedModel, cap: Capture, typed: str) -> SpaceHint | None:
    """The hint for a typed word whose space-prefixed variant ranks far higher at the capture's
    last position ('Mary' vs '␣Mary'); None for nothing typed or no such variant."""
    return space_hint(model, cap.final_logits, typed) if typed else None


def column_labels(result: PatchResult) -> list[str]:
    """'position · token' for each patched position: unique even when a token repeats."""
    return [f"{p} · {result.tokens_b[p]}" for p in result.positions]


EFFECT_DECIMALS = 3  # what the figure supports: the metric's float error is ~1e-6 of the A–B gap


def effect_table(result: PatchResult) -> pd.DataFrame:
    """Layers as rows (0 first), B's patched positions as columns, the normalized effect as values,
    rounded to `EFFECT_DECIMALS` (an empty cell reads 0, not 0.00000009; the export keeps every digit)."""
    effects = pd.DataFrame([list(row) for row in result.effect], columns=column_labels(result))
    return (effects.round(EFFECT_DECIMALS) + 0.0).rename_axis("layer").reset_index()  # + 0.0: no "-0"


def lens_side_by_side(comparison: Comparison, patched: PatchedLens) -> pd.DataFrame:
    """Top-1 of the lens at the last position, per layer: B's own, B after the patch, A's own."""
    rows = []
    for layer, (own_b, after, own_a) in enumerate(zip(comparison.b.lens, patched.lens, comparison.a.lens,
                                                       strict=True)):
        rows.append({
            "layer": layer,
            "B": own_b[0].token, "p(B)": own_b[0].prob,
            "B patched": after[0].token, "p(B patched)": after[0].prob,
            "A": own_a[0].token, "p(A)": own_a[0].prob,
        })
    return pd.DataFrame(rows)
