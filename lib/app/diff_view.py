"""The Top-token diff page's result and tables: the diff through the results cache, read with the
lenses the page chose (`top_token_diff_of`), one row per layer (`layers_table`), one layer token by
token (`layer_table`, shared tokens highlighted by `highlight_shared`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..analyses.diff import LayerDiff, TopTokenDiff, top_token_diff
from . import lens_choice, ui
from .cache import RunKey
from .lens_choice import LensUse

HIGHLIGHT = "background-color: rgba(46, 160, 67, 0.18)"


def kl_name(a: str, b: str) -> str:
    return f"KL({a}‖{b}) bits"


def layers_table(diff: TopTokenDiff, a: str = "A", b: str = "B") -> pd.DataFrame:
    """One row per layer: the divergences and what changed (sides called `a` and `b`)."""
    return pd.DataFrame(
        {
            "layer": layer.layer,
            kl_name(a, b): layer.kl_bits,
            "JS bits": layer.js_bits,
            "top-k overlap": layer.jaccard,
            f"entropy {a} bits": layer.entropy_a_bits,
            f"entropy {b} bits": layer.entropy_b_bits,
            "most changed": layer.most_changed.token if layer.most_changed else "",
            "Δp most changed": layer.most_changed.delta_prob if layer.most_changed else 0.0,
            f"{a} top-1": layer.top_a[0].token,
            f"{b} top-1": layer.top_b[0].token,
            "shared": " · ".join(t.token for t in layer.shared),
            f"only {a}": " · ".join(t.token for t in layer.only_a),
            f"only {b}": " · ".join(t.token for t in layer.only_b),
        }
        for layer in diff.layers
    )


def layer_table(layer: LayerDiff, a: str = "A", b: str = "B") -> pd.DataFrame:
    """Shared tokens first (in A's order), then A only, then B only; A's and B's numbers side by side."""
    groups = (("both", layer.shared), (f"{a} only", layer.only_a), (f"{b} only", layer.only_b))
    return pd.DataFrame(
        {
            "token": t.token,
            "in top-k of": where,
            f"rank {a}": t.rank_a,
            f"p({a})": t.prob_a,
            f"rank {b}": t.rank_b,
            f"p({b})": t.prob_b,
            f"Δp ({b} − {a})": t.delta_prob,
            f"Δrank ({b} − {a})": t.delta_rank,
        }
        for where, tokens in groups
        for t in tokens
    )


def highlight_shared(table: pd.DataFrame, a: str = "A", b: str = "B"):
    return table.style.apply(
        lambda row: [HIGHLIGHT if row["in top-k of"] == "both" else ""] * len(row), axis=1
    ).format({f"p({a})": "{:.4f}", f"p({b})": "{:.4f}", f"Δp ({b} − {a})": "{:+.4f}",
              f"Δrank ({b} − {a})": "{:+d}"})


def top_token_diff_of(run_a: RunKey, run_b: RunKey, uses: Sequence[LensUse], position_a: int,
                      position_b: int, top_k: int) -> TopTokenDiff:
    """A's position `position_a` against B's `position_b`, layer by layer, each side read with its
    lens of `uses` (B's passed as the `_b` arguments), once per value in the results cache."""
    kinds = {**lens_choice.lens_kwargs(uses[0].kind),
             **{f"{k}_b": v for k, v in lens_choice.lens_kwargs(uses[1].kind).items()}}
    return ui.cached(top_token_diff, run_a.model, run_a, run_b, position_a=position_a, position_b=position_b,
                     top_k=top_k, loaded_b=run_b.model, **kinds)
