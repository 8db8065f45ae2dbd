"""The Watch tokens page's results: the typed words followed through the layers at the last
position of A and B, read with the page's lens, through the results cache — by their first piece
(`watched_tokens`) and whole (`whole_words`) — and the logit difference of two of them
(`difference_table`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..analyses.watch import Watch, WordWatch, logit_difference, watch_tokens, word_scores
from ..core.tokens import TypedWord
from . import lens_choice, ui
from .request import Request


def watched_tokens(request: Request, words: Sequence[TypedWord], lens: str) -> Watch:
    """Each word's first piece: probability, rank and logit per layer, for A and B (`watch_tokens`)."""
    return ui.cached(watch_tokens, request.model_key, *request.runs, tuple(w.first_id for w in words),
                     **lens_choice.lens_kwargs(lens))


def whole_words(request: Request, words: Sequence[TypedWord], lens: str) -> WordWatch:
    """Each word scored whole per layer by teacher forcing, for A and B (`word_scores`)."""
    return ui.cached(word_scores, request.model_key, *request.runs, tuple(w.ids for w in words),
                     **lens_choice.lens_kwargs(lens))


def difference_table(watch: Watch, first: int, second: int) -> pd.DataFrame:
    a = logit_difference(watch.a[first], watch.a[second])
    b = logit_difference(watch.b[first], watch.b[second])
    return pd.DataFrame({"layer": range(len(a)), "A": a, "B": b})
