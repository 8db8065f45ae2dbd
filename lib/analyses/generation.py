"""Continuations: what the model answers to each prompt, token for token as transformers' `generate`.

Greedy by default (argmax at each step), or sampled from softmax(logits / T) with a seeded
generator (no top-k, no top-p: `generate(do_sample=True, temperature=T, top_k=0, top_p=1.0)` after
`torch.manual_seed(seed)` draws the same tokens on the CPU). The model's key-value cache is used:
one pass over the prompt, then one pass per new token; a row stops at the model's EOS tokens.

A token that is only the opening of a character (an emoji's first byte piece, '<F0 9F>') is shown
with the character it completes to: the model continues greedily after it, and the tokenizer's own
decoder says where the character ends (`complete_characters`, `lens_completions` for lens cells).

    >>> from lib.core.models import load_model
    >>> c = continue_prompt(load_model(), "The capital of France is", settings=GenerationSettings(8))
    >>> len(c.token_ids) <= 8
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.capture import Capture, capture
from ..core.chat import Chat
from ..core.models import LoadedModel
from ..core.tokens import CharacterGroup, character_groups, token_bytes
from .common.decode import DEFAULT_SETTINGS, Continuation, GenerationSettings, continuation_of, generate_ids
from .common.lens import LensGrid

MAX_LENS_COMPLETIONS = 16  # partial-character lens cells completed per grid (one short generation each)


def continue_capture(loaded: LoadedModel, cap: Capture, settings: GenerationSettings = DEFAULT_SETTINGS,
                     progress: Callable[[float, str], None] | None = None) -> Continuation:
    """The continuation of a prompt already run (its ids, template included). `progress(fraction,
    text so far)` hears each new token: the share of `max_new_tokens` written and the new tokens
    decoded (an exception it raises stops the continuation)."""
    on_token = None
    if progress is not None:
        def on_token(rows: Sequence[Sequence[int]]) -> None:
            (row,) = rows
            text = loaded.tokenizer.decode(list(row), skip_special_tokens=True)
            progress(len(row) / settings.max_new_tokens, text)
    (new,), _ = generate_ids(loaded, [cap.token_ids], settings, on_token=on_token)
    return continuation_of(loaded, cap.token_ids, new, settings)


def continue_prompt(
    loaded: LoadedModel,
    text: str,
    *,
    bos: str = "auto",
    chat: Chat | None = None,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Continuation:
    """The continuation of `text` (raw, or as a chat message with `chat`)."""
    return continue_capture(loaded, capture(loaded, text, bos, chat), settings)


@dataclass(frozen=True)
class ContinuationPair:
    """Both prompts' continuations with the same settings."""

    a: Continuation
    b: Continuation

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict()}


def continue_captures(loaded: LoadedModel, cap_a: Capture, cap_b: Capture,
                      settings: GenerationSettings = DEFAULT_SETTINGS) -> ContinuationPair:
    """A's and B's continuations (one cached run each)."""
    return ContinuationPair(
        continue_capture(loaded, cap_a, settings), continue_capture(loaded, cap_b, settings)
    )


def continue_pair(
    loaded: LoadedModel, text_a: str, text_b: str, *, bos: str = "auto", chat: Chat | None = None,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> ContinuationPair:
    """`twinlens generate`: both prompts continued."""
    return continue_captures(loaded, capture(loaded, text_a, bos, chat), capture(loaded, text_b, bos, chat),
                             settings)


def complete_character(
    loaded: LoadedModel, prompt_ids: Sequence[int], token_id: int, max_steps: int = 3
) -> str | None:
    """The character a partial-character token completes to when the model continues greedily
    (e.g. '<F0 9F>' → '🐠'), or None when the token is whole already or no character completes."""
    return complete_characters(loaded, prompt_ids, (token_id,), max_steps)[0]


def complete_characters(
    loaded: LoadedModel, prompt_ids: Sequence[int], token_ids: Sequence[int], max_steps: int = 3
) -> tuple[str | None, ...]:
    """`complete_character` for several tokens written at the same place: the tokens that can
    complete are continued as rows of one batched greedy generation of up to `max_steps` tokens;
    the joined character is read with the tokenizer's own decoder (character_groups)."""
    out: list[str | None] = [None] * len(token_ids)
    rows = [i for i, t in enumerate(token_ids) if completable(loaded.tokenizer, t)]
    limit = loaded.max_tokens
    n_ids = len(prompt_ids) + 1
    steps = max_steps if limit is None else min(max_steps, limit - n_ids)
    if not rows or steps < 1:
        return tuple(out)
    prompts = [[*map(int, prompt_ids), int(token_ids[i])] for i in rows]
    new, _ = generate_ids(loaded, prompts, GenerationSettings(steps))
    for i, generated in zip(rows, new, strict=True):
        pieces = [int(token_ids[i]), *generated]
        for end in range(2, len(pieces) + 1):
            group = character_groups(loaded.tokenizer, pieces[:end])[0]
            if group.end == end:
                out[i] = group.text
                break
    return tuple(out)


def completable(tokenizer, token_id: int) -> bool:
    """True when the token alone is only part of a character (the tokenizer's decoder gives U+FFFD)
    that later tokens can complete: its bytes (token_bytes, the tokenizer's own) end in the opening of
    a UTF-8 character, not in a stray continuation byte that nothing can complete."""
    if "\ufffd" not in tokenizer.decode([int(token_id)]):
        return False
    try:
        token_bytes(tokenizer, token_id).decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return False


def lens_completions(loaded: LoadedModel, cap: Capture, grid: LensGrid, limit: int = MAX_LENS_COMPLETIONS
                     ) -> tuple[tuple[int, int, str], ...]:
    """(position, token id, character) for the lens cells of `grid` whose top-1 is only the opening
    of a character: the character the model completes it to when it writes that token after the
    prompt's tokens up to the position and continues greedily (`complete_characters`). The same
    (position, token) at several layers is completed once; at most `limit` of them, those covering
    most cells first (the rest keep their pieces)."""
    counts: dict[tuple[int, int], int] = {}
    partial: dict[int, bool] = {}
    for row in grid.cells:
        for cell in row:
            token = cell.top[0].id
            if token not in partial:
                partial[token] = completable(loaded.tokenizer, token)
            if partial[token]:
                counts[cell.position, token] = counts.get((cell.position, token), 0) + 1
    wanted = sorted(counts, key=lambda c: (-counts[c], c))[:limit]
    found = []
    for position in sorted({p for p, _ in wanted}):  # one batched generation per position
        tokens = [t for p, t in sorted(wanted) if p == position]
        wholes = complete_characters(loaded, cap.token_ids[: position + 1], tokens)
        found.extend((position, t, w) for t, w in zip(tokens, wholes, strict=True) if w is not None)
    return tuple(found)


def token_characters(loaded: LoadedModel, cap: Capture) -> tuple[CharacterGroup, ...]:
    """The captured prompt's tokens grouped into characters (byte pieces joined, see character_groups)."""
    return character_groups(loaded.tokenizer, cap.token_ids)
