"""A comparison's result: per prompt the logit lens at the last position (layers 0…L, top-k with
probabilities, entropy in bits) and the model's own final prediction, and the distances between
A and B per layer. `compare` builds it for two prompts, `model_compare` for one prompt in two models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ...core.capture import Capture
from ...core.checks import has_bos
from ...core.models import LoadedModel
from ...core.records import Record, decode
from .distances import LayerDistances
from .lens import LensCell, TokenProb, lens_column, top_k_table


@dataclass(frozen=True)
class PromptResult(Record):
    """One prompt's side of a comparison, at its last position.

    lens[ℓ] is the top-k of the lens (the logit lens unless the comparison's settings name another)
    at layer ℓ = 0…L; final is the top-k of the model's own logits (equal to lens[L] up to float
    error, whichever the lens).
    """

    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    has_bos: bool
    lens: tuple[tuple[TokenProb, ...], ...]
    entropy_bits: tuple[float, ...]  # of the lens distribution at each layer
    final: tuple[TokenProb, ...]

    @classmethod
    def from_dict(cls, data: dict) -> PromptResult:
        """The inverse of `to_dict`, also for sides saved before bits were the one unit."""
        return decode(cls, _in_bits(data))


def _in_bits(side: dict) -> dict:
    """A saved side with its entropies in bits: comparisons saved before bits were the one unit
    kept them in nats under 'entropy'."""
    if "entropy_bits" in side or "entropy" not in side:
        return side
    return {**side, "entropy_bits": [e / math.log(2) for e in side["entropy"]]}


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

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        """The inverse of `to_dict`, also for comparisons saved before bits were the one unit."""
        return decode(cls, {**data, **{side: _in_bits(data[side]) for side in ("a", "b") if side in data}})


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
        entropy_bits=tuple(cell.entropy_bits for cell in column),
        final=top_k_table(loaded, cap.final_logits[None], top_k)[0],
    )

