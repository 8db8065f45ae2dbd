"""A comparison of two prompts on one model: tokens, the lens at the last position, distances.

    >>> from lib.core.models import load_model
    >>> from lib.analyses.compare import compare_prompts
    >>> c = compare_prompts(load_model(), "The capital of France is", "The capital of Italy is")
    >>> c.a.final[0].token, c.b.final[0].token
    ('␣Paris', '␣Rome')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.capture import Capture, capture
from ..core.checks import check_top_k, has_bos
from ..core.models import LoadedModel
from .distances import LayerDistances, layer_distances
from .lens import LensCell, TokenProb, lens_column, lens_columns, top_k_table


@dataclass(frozen=True)
class PromptResult:
    """One prompt's side of a comparison, at its last position.

    lens[ℓ] is the top-k of the logit lens at layer ℓ = 0…L; final is the top-k of the model's
    own logits (equal to lens[L] up to float error).
    """

    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    has_bos: bool
    lens: tuple[tuple[TokenProb, ...], ...]
    entropy_bits: tuple[float, ...]  # of the lens distribution at each layer
    final: tuple[TokenProb, ...]

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "has_bos": self.has_bos,
            "lens": [[t.to_dict() for t in row] for row in self.lens],
            "entropy_bits": list(self.entropy_bits),
            "final": [t.to_dict() for t in self.final],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PromptResult:
        """The inverse of `to_dict` (a saved comparison is reopened without running the model)."""

        def top(row: list[dict]) -> tuple[TokenProb, ...]:
            return tuple(TokenProb(**t) for t in row)

        return cls(
            text=data["text"],
            tokens=tuple(data["tokens"]),
            token_ids=tuple(data["token_ids"]),
            has_bos=data["has_bos"],
            lens=tuple(top(row) for row in data["lens"]),
            entropy_bits=_entropy_bits(data),
            final=top(data["final"]),
        )


def _entropy_bits(data: dict) -> tuple[float, ...]:
    """Entropies in bits from a saved side; comparisons saved before bits were the one unit kept nats."""
    if "entropy_bits" in data:
        return tuple(data["entropy_bits"])
    return tuple(e / math.log(2) for e in data["entropy"])


@dataclass(frozen=True)
class Comparison:
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

    def to_dict(self) -> dict:
        return {
            "model": dict(self.model),
            "settings": dict(self.settings),
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "distance": None if self.distance is None else self.distance.to_dict(),
            "mode": self.mode,
            "model2": None if self.model2 is None else dict(self.model2),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        """The inverse of `to_dict`: `Comparison.from_dict(json.loads(json.dumps(c.to_dict()))) == c`."""
        distance = data["distance"]
        return cls(
            model=dict(data["model"]),
            settings=dict(data["settings"]),
            a=PromptResult.from_dict(data["a"]),
            b=PromptResult.from_dict(data["b"]),
            distance=None if distance is None else LayerDistances(
                alignment=distance["alignment"],
                cosine=tuple(distance["cosine"]),
                relative_l2=tuple(distance["relative_l2"]),
            ),
            mode=data.get("mode", "prompts"),
            model2=None if data.get("model2") is None else dict(data["model2"]),
            note=data.get("note", ""),
        )


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
