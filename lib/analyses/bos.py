"""The effect of the BOS token on one prompt: the model's next-token top-k, and the logit difference
`logit[t1] − logit[t2]` of two chosen tokens, with exactly one BOS first ("on") versus none ("off").

The two may be words of several tokens, as in Watch tokens: the logit difference takes each word's
first piece, and the whole words are scored by teacher forcing (lib.analyses.watch):
`log p(w1) − log p(w2)`, log p(w) = Σ_j log p(w_j | prompt, w_1 … w_{j−1}) at the final layer
(natural log). For two one-token words the two differences are equal (the softmax's normaliser cancels).

Many models were trained with a BOS token and behave oddly without one (the first position then
soaks up attention in its place); some tokenizers add none by themselves (SmolLM2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.capture import Capture
from ..core.checks import check_top_k
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.tokens import readable_token
from .common.lens import TokenProb, top_k_table
from .common.pieces import forced_piece_logprobs

Word = int | Sequence[int]  # a token id, or a word's token ids


@dataclass(frozen=True)
class BosRun(Record):
    """One prompt run with one BOS mode; the differences are None when no pair was chosen."""

    bos: str
    tokens: tuple[str, ...]
    top: tuple[TokenProb, ...]
    logit_difference: float | None  # logit[first piece of w1] − logit[first piece of w2]
    word_difference: float | None = None  # log p(w1) − log p(w2), whole words by teacher forcing


@dataclass(frozen=True)
class BosEffect(Record):
    """The same text with BOS on and off; `pair` names the words (w1, w2) of the differences
    (readable, e.g. '␣Lakers') and `first_pieces` the tokens of the logit difference ('␣L')."""

    text: str
    bos_token: str | None  # None: the tokenizer has no BOS token, so on and off are the same run
    pair: tuple[str, str] | None
    on: BosRun
    off: BosRun
    first_pieces: tuple[str, str] | None = None

    @property
    def several_pieces(self) -> bool:
        """Whether a word of the pair has several tokens (the two differences then disagree)."""
        return self.pair is not None and self.pair != self.first_pieces


def _run(loaded: LoadedModel, cap: Capture, top_k: int, words: tuple[tuple[int, ...], ...] | None) -> BosRun:
    logits = cap.final_logits
    top = top_k_table(loaded, logits[None], top_k)[0]
    if not words:
        return BosRun(cap.bos, cap.tokens, top, None)
    first, second = (float(forced_piece_logprobs(loaded, cap, ids).sum()) for ids in words)
    return BosRun(cap.bos, cap.tokens, top, float(logits[words[0][0]] - logits[words[1][0]]), first - second)


def bos_effect(
    loaded: LoadedModel, cap_on: Capture, cap_off: Capture, *, top_k: int = 10,
    pair: tuple[Word, Word] | None = None,
) -> BosEffect:
    """Compare the model's own next-token prediction for one text captured with bos="on" and bos="off",
    and the two words of `pair` (token ids, or one id for a one-token word) after it."""
    check_top_k(loaded, top_k)
    bos_id = loaded.tokenizer.bos_token_id
    tok = loaded.tokenizer
    words = tuple((w,) if isinstance(w, int) else tuple(int(i) for i in w) for w in pair) if pair else None

    def readable(pieces: Sequence[int]) -> str:
        return "".join(readable_token(tok, i) for i in pieces)

    return BosEffect(
        text=cap_on.text,
        bos_token=readable_token(tok, bos_id) if bos_id is not None else None,
        pair=(readable(words[0]), readable(words[1])) if words else None,
        on=_run(loaded, cap_on, top_k, words),
        off=_run(loaded, cap_off, top_k, words),
        first_pieces=(readable(words[0][:1]), readable(words[1][:1])) if words else None,
    )
