"""The Logit lens page's results and tables, through the results cache: each side's grid over a
window of positions (`window`, `grid`), one cell's top-k with ranks one layer below (`cell`,
`detail_frame`), the partial characters the grid's top-1s and the prompt's pieces complete to
(`completions`, `piece_characters`), and where the final answer settles (`answer_sentence`)."""

from __future__ import annotations

import pandas as pd

from ..analyses.common.comparison import PromptResult
from ..analyses.common.lens import CellDetail, LensGrid, arrival, cell_detail, lens_grid, position_window
from ..analyses.generation import lens_completions, token_characters
from . import lens_choice, readable, ui
from .cache import RunKey


def window(n_tokens: int, size: int, back: int) -> tuple[int, ...]:
    """The `size` positions that end `back` tokens before the last one (`position_window`)."""
    return position_window(n_tokens, size, back)


def grid(run: RunKey, positions: tuple[int, ...], k: int, kind: str) -> LensGrid:
    """The lens grid of `run` at `positions` (every layer, top-k), read with lens `kind` — the
    logit lens's entry shared with every page that never chooses a lens (`lens_kwargs`)."""
    return ui.cached(lens_grid, run.model, run, tuple(positions), k, **lens_choice.lens_kwargs(kind))


def cell(run: RunKey, layer: int, position: int, k: int, kind: str) -> CellDetail:
    """One cell's top-k with each token's rank and probability one layer below (`cell_detail`)."""
    return ui.cached(cell_detail, run.model, run, layer, position, k, **lens_choice.lens_kwargs(kind))


def completions(run: RunKey, grid: LensGrid) -> dict[tuple[int, int], str]:
    """(position, token id) → the character a partial-character top-1 of the grid completes to,
    greedily (`lens_completions`); none when the backend cannot generate yet (the pieces alone are
    shown)."""
    return {(p, t): whole for p, t, whole in ui.cached_or((), lens_completions, run.model, run, grid)}


def piece_characters(run: RunKey) -> dict[int, str]:
    """Position → 'piece 2 of 3 of ␣🐠' for every input token of `run` that is only a piece of a
    character (`token_characters`, `readable.piece_characters`)."""
    return readable.piece_characters(ui.cached(token_characters, run.model, run))


def answer_arrivals(side: PromptResult, k: int) -> dict:
    """Where the model's final answer (last position) settles in the lens: top-1 and top-k."""
    answer = side.final[0]
    return {"token": answer.token, "id": answer.id, "top1": arrival(side.lens, answer.id),
            "top_k": arrival(side.lens, answer.id, within=k)}


def answer_sentence(side: PromptResult, k: int, completes: str | None = None) -> str:
    """Where the model's final answer settles in the lens, in plain words: the layer from which it
    stays top-1 (not its first, perhaps brief, appearance), and from which it stays in the top-k.
    `completes`: the character a partial-character answer completes to (named after it)."""
    found = answer_arrivals(side, k)
    top1, top_k = found["top1"], found["top_k"]
    named = found["token"] if completes is None else f"{found['token']} → {completes}"
    sentence = top1.sentence(f"Final answer '{named}'") + f" (layers 0…{len(side.lens) - 1})"
    if top_k.stays_from is not None and (top1.stays_from is None or top_k.stays_from < top1.stays_from):
        sentence += f"; in the top-{k} from layer {top_k.stays_from} on"
    return sentence + "."


def detail_frame(detail: CellDetail) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": [t.rank for t in detail.top],
            "token": [t.token for t in detail.top],
            "prob": [t.prob for t in detail.top],
            "rank below": pd.array([t.rank_below for t in detail.top], dtype="Int64"),
            "climbed": pd.array([t.rank_change for t in detail.top], dtype="Int64"),
            "prob below": [t.prob_below for t in detail.top],
        }
    )
