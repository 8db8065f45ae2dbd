"""A comparison of two prompts on one model: tokens, the lens at the last position, distances.

    >>> from lib.core.models import load_model
    >>> from lib.analyses.compare import compare_prompts
    >>> c = compare_prompts(load_model(), "The capital of France is", "The capital of Italy is")
    >>> c.a.final[0].token, c.b.final[0].token
    ('␣Paris', '␣Rome')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.capture import Capture, capture
from ..core.checks import check_top_k, has_bos
from ..core.models import LoadedModel
from ..core.records import Record
from .distances import LayerDistances, layer_distances
from .lens import LensCell, TokenProb, lens_column, lens_columns, top_k_table


@dataclass(frozen=True)
class PromptResult(Record):
    """One prompt's side of a comparison, at its last position.

    lens[ℓ] is the top-k of the logit lens at layer ℓ = 0…L; final is the top-k of the model's
    own logits (equal to lens[L] up to float error).
    """

    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    has_bos: bool
    lens: tuple[tuple[TokenProb, ...], ...]
    entropy: tuple[float, ...]
    final: tuple[TokenProb, ...]


@dataclass(frozen=True)
class Comparison(Record):
    """Everything the Compare page and `python -m lib compare` show.

    mode "prompts": two prompts (a, b) through one model. mode "models": one prompt through
    model 1 (a, `model`) and model 2 (b, `model2`), see `lib.analyses.model_compare`; there `distance` is
    None when the two residual streams differ in shape, and `note` says why.
    """

    model: dict
    settings: dict
    a: PromptResult
    b: PromptResult
    distance: LayerDistances | None
    mode: str = "prompts"
    model2: dict | None = None
    note: str = ""  # a plain sentence for the pages, e.g. why there are no distances


def prompt_result(
    loaded: LoadedModel, cap: Capture, top_k: int, *, column: Sequence[LensCell] | None = None
) -> PromptResult:
    """The lens column at the last position and the model's own top-k for one captured prompt
    (`column`: that lens column when already computed, e.g. by `lens_columns` for both prompts)."""
    if column is None:
        column = lens_column(loaded, cap.residual, -1, top_k)
    return PromptResult(
        text=cap.text,
        tokens=cap.tokens,
        token_ids=cap.token_ids,
        has_bos=has_bos(loaded, cap),
        lens=tuple(cell.top for cell in column),
        entropy=tuple(cell.entropy for cell in column),
        final=top_k_table(loaded, cap.final_logits[None], top_k)[0],
    )


def compare_captures(loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, top_k: int = 10) -> Comparison:
    """A comparison from two prompts already run (no forward pass)."""
    check_top_k(loaded, top_k)
    column_a, column_b = lens_columns(loaded, [cap_a.residual, cap_b.residual], -1, top_k)
    return Comparison(
        model=loaded.info(),
        settings={"top_k": top_k, "bos": cap_a.bos},
        a=prompt_result(loaded, cap_a, top_k, column=column_a),
        b=prompt_result(loaded, cap_b, top_k, column=column_b),
        distance=layer_distances(cap_a.residual, cap_b.residual, "last"),
    )


def compare_prompts(
    model: LoadedModel, prompt_a: str, prompt_b: str, *, top_k: int = 10, bos: str = "auto"
) -> Comparison:
    """Run both prompts once each and compare them layer by layer at the last position."""
    check_top_k(model, top_k)
    return compare_captures(model, capture(model, prompt_a, bos), capture(model, prompt_b, bos), top_k=top_k)
