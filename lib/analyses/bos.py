"""The effect of the BOS token on one prompt: the model's next-token top-k, and the logit difference
`logit[t1] − logit[t2]` of two chosen tokens, with exactly one BOS first ("on") versus none ("off").

Many models were trained with a BOS token and behave oddly without one (the first position then
soaks up attention in its place); some tokenizers add none by themselves (SmolLM2).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.capture import Capture
from ..core.checks import check_top_k
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.tokens import readable_token
from .lens import TokenProb, top_k_table


@dataclass(frozen=True)
class BosRun(Record):
    """One prompt run with one BOS mode; logit_difference is None when no pair was chosen."""

    bos: str
    tokens: tuple[str, ...]
    top: tuple[TokenProb, ...]
    logit_difference: float | None


@dataclass(frozen=True)
class BosEffect(Record):
    """The same text with BOS on and off; `pair` names the tokens (t1, t2) of the logit difference."""

    text: str
    bos_token: str | None  # None: the tokenizer has no BOS token, so on and off are the same run
    pair: tuple[str, str] | None
    on: BosRun
    off: BosRun


def _run(loaded: LoadedModel, cap: Capture, top_k: int, pair: tuple[int, int] | None) -> BosRun:
    logits = cap.final_logits
    diff = float(logits[pair[0]] - logits[pair[1]]) if pair else None
    return BosRun(cap.bos, cap.tokens, top_k_table(loaded, logits[None], top_k)[0], diff)


def bos_effect(
    loaded: LoadedModel, cap_on: Capture, cap_off: Capture, *, top_k: int = 10,
    pair: tuple[int, int] | None = None,
) -> BosEffect:
    """Compare the model's own next-token prediction for one text captured with bos="on" and bos="off"."""
    check_top_k(loaded, top_k)
    bos_id = loaded.tokenizer.bos_token_id
    tok = loaded.tokenizer
    return BosEffect(
        text=cap_on.text,
        bos_token=readable_token(tok, bos_id) if bos_id is not None else None,
        pair=(readable_token(tok, pair[0]), readable_token(tok, pair[1])) if pair else None,
        on=_run(loaded, cap_on, top_k, pair),
        off=_run(loaded, cap_off, top_k, pair),
    )
