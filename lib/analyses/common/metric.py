"""The metric every patching-style analysis measures, and its answer and wrong tokens.

    m = logit[answer] − logit[wrong]     at B's last position (or, scoring whole words,
                                          log p(answer word) − log p(wrong word))
    normalized(m) = (m − m_B) / (m_A − m_B)   0 = B's own metric, 1 = A's

The answer defaults to A's top-1 next token and the wrong token to B's; a typed word is resolved
to its pieces, whose first piece the logit metric uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch

from ...core.capture import Capture
from ...core.errors import PromptError
from ...core.models import LoadedModel
from ...core.records import Record
from ...core.tokens import readable_token, typed_word

MIN_METRIC_GAP = 1e-6  # |m_A − m_B| below this cannot normalize the effect


Score = Literal["logit", "word"]  # first pieces' logit difference, or whole words by teacher forcing


@dataclass(frozen=True)
class TokenRef(Record):
    """A token of the metric: its readable text and id. For a word of several tokens the metric
    uses its first piece (`token`, `id`) and `word` holds the whole word ('' for one token)."""

    token: str
    id: int
    word: str = ""

    @property
    def label(self) -> str:
        """'␣Paris', or '␣L (first piece of ␣Lakers)'."""
        return f"{self.token} (first piece of {self.word})" if self.word else self.token

    def scored(self, score: str) -> str:
        """What the metric scores: the whole word with score "word", else the token."""
        return (self.word or self.token) if score == "word" else self.token


def metric_words(answer: TokenRef, wrong: TokenRef, score: Score) -> str:
    """The metric in words: 'logit[␣Paris] − logit[␣Rome]' (a word by its first piece, labelled)
    or, scoring whole words, 'log p(␣Lakers) − log p(␣Celtics)'."""
    if score == "word":
        return f"log p({answer.scored(score)}) − log p({wrong.scored(score)})"
    return f"logit[{answer.label}] − logit[{wrong.label}]"


@dataclass(frozen=True)
class MetricPair(Record):
    """What every patching result is measured by: m = logit[answer] − logit[wrong] at the last
    position, m_A and m_B of the two prompts' own runs, and the prompts' tokens. Patching results
    (`PatchResult`, components' `ComponentPatching`) extend it, so these fields are written once and
    serialize flat, first, in this order.

    normalized(m) = (m − m_B) / (m_A − m_B), the effect: 0 = B's own metric, 1 = A's.
    """

    model: dict
    bos: str
    answer: TokenRef
    wrong: TokenRef
    metric_a: float
    metric_b: float
    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]

    def normalized(self, raw: float) -> float:
        return (raw - self.metric_b) / (self.metric_a - self.metric_b)

    def metric(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return logit_difference(self.answer.id, self.wrong.id)

    def shared(self) -> dict:
        """These fields by name, to build a result extending MetricPair: `PatchResult(**pair.shared(), …)`."""
        return {f.name: getattr(self, f.name) for f in fields(MetricPair)}


def logit_difference(answer_id: int, wrong_id: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """m(logits [..., vocab]) = logit[answer] − logit[wrong] → [...] float64; a closure over plain
    ints, so a remote backend can run it where the logits are."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[..., answer_id].double() - logits[..., wrong_id].double()

    return metric


def metric_pair(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: str | int | None, wrong: str | int | None
) -> MetricPair:
    """The logit-difference metric of A → B (answer and wrong as `answer_and_wrong` resolves them);
    refuses a pair whose m_A and m_B are too close to normalize the effect."""
    answer_ref, wrong_ref, _ = answer_and_wrong(loaded, cap_a, cap_b, answer, wrong)
    metric = logit_difference(answer_ref.id, wrong_ref.id)
    metric_a, metric_b = float(metric(cap_a.final_logits)), float(metric(cap_b.final_logits))
    return checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, metric_a, metric_b, "logit")


def checked_pair(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: TokenRef, wrong: TokenRef,
    metric_a: float, metric_b: float, score: Score,
) -> MetricPair:
    """The MetricPair of these values, refused when m_A and m_B are too close to normalize."""
    if abs(metric_a - metric_b) < MIN_METRIC_GAP:
        raise PromptError(
            f"{metric_words(answer, wrong, score)} is the same for A and B "
            f"({metric_a:.4g}), so the effect cannot be normalized. Name other tokens."
        )
    return MetricPair(
        model=loaded.info(), bos=cap_b.bos, answer=answer, wrong=wrong, metric_a=metric_a,
        metric_b=metric_b, tokens_a=cap_a.tokens, tokens_b=cap_b.tokens,
    )


def answer_and_wrong(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: str | int | None, wrong: str | int | None,
    score: Score = "logit",
) -> tuple[TokenRef, TokenRef, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Resolve the answer and wrong tokens: a text is a word (a typed '␣' counts as a leading space)
    whose first piece the logit metric uses, an id must exist; the defaults are A's and B's own
    top-1. Also returns each word's token ids (one id for a token)."""
    tok = loaded.tokenizer
    ids: list[tuple[int, ...]] = []

    def resolve(named: str | int | None, logits: torch.Tensor) -> TokenRef:
        if isinstance(named, str):
            word = typed_word(tok, named)
            ids.append(word.ids)
            first = readable_token(tok, word.first_id)
            return TokenRef(first, word.first_id, word.readable if len(word.ids) > 1 else "")
        token_id = int(logits.argmax()) if named is None else named
        if not 0 <= token_id < loaded.vocab_size:
            raise PromptError(
                f"Token id {token_id} does not exist; the vocabulary has {loaded.vocab_size:,}."
            )
        ids.append((token_id,))
        return TokenRef(readable_token(tok, token_id), token_id)

    answer_ref = resolve(answer, cap_a.final_logits)
    wrong_ref = resolve(wrong, cap_b.final_logits)
    if score == "word" and ids[0] != ids[1]:
        return answer_ref, wrong_ref, (ids[0], ids[1])
    if answer_ref.id == wrong_ref.id and answer_ref.word != wrong_ref.word:
        raise PromptError(
            f"'{answer_ref.word or answer_ref.token}' and '{wrong_ref.word or wrong_ref.token}' start "
            f"with the same token ('{answer_ref.token}'), so their first pieces cannot tell them apart. "
            "Score whole words instead."
        )
    if answer_ref.id == wrong_ref.id:
        if answer is None and wrong is None:
            raise PromptError(
                f"A and B both predict '{answer_ref.token}' next, so the logit difference has nothing "
                "to compare. Name the answer and wrong tokens (e.g. ' Paris' and ' Rome')."
            )
        raise PromptError(
            f"The answer and wrong tokens are the same ('{answer_ref.token}'). Name two different tokens."
        )
    return answer_ref, wrong_ref, (ids[0], ids[1])

