"""The Tokens page's effect of BOS: both prompts run with exactly one BOS and with none, through
the results cache (`bos_effects`), and the tables drawn from them (`top_table`, `difference_table`)."""

from __future__ import annotations

import pandas as pd

from ..analyses.bos import BosEffect, bos_effect
from ..analyses.common.lens import TokenProb
from . import ui
from .cache import RunKey
from .request import Request


def bos_effects(request: Request,
                pair: tuple[tuple[int, ...], tuple[int, ...]] | None) -> dict[str, BosEffect]:
    """Prompts A and B ('A', 'B'), each with BOS on and off (`bos_effect`, four forward passes the
    first time): the top-k and the difference of the two words of `pair` (their token ids)."""
    effects = {}
    for label, text in {"A": request.a, "B": request.b}.items():
        on, off = (RunKey(request.model_key, text, bos, request.chat_settings) for bos in ("on", "off"))
        effects[label] = ui.cached(bos_effect, request.model_key, on, off, top_k=request.k, pair=pair)
    return effects


def top_table(effect: BosEffect) -> pd.DataFrame:
    def column(top: tuple[TokenProb, ...]) -> list[str]:
        return [f"{t.token}  {t.prob:.3f}" for t in top]

    return pd.DataFrame(
        {"BOS on": column(effect.on.top), "BOS off": column(effect.off.top)},
        index=[f"#{i + 1}" for i in range(len(effect.on.top))],
    )


def difference_table(effects: dict[str, BosEffect], difference: str) -> pd.DataFrame:
    """Per prompt, the `difference` ('logit_difference' or 'word_difference') with BOS on and off."""
    rows = []
    for label, e in effects.items():
        on, off = getattr(e.on, difference), getattr(e.off, difference)
        rows.append({"prompt": label, "BOS on": on, "BOS off": off, "on − off": on - off})
    return pd.DataFrame(rows)
