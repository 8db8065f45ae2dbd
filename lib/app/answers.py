"""What the model answers, in the app: a continuation written under a progress bar that shows the
tokens so far, with a Cancel button; and each prompt's *answer* on the Compare page — the first
line of its greedy continuation, with the answer start and system message the user typed shown as
part of it (so nobody takes the typed start for the model's own choice). The Continuations page's
settings and its characters table live here too, and the character a partial token completes to
(`completes_to`, `first_completes_to`), so the pages call no analysis themselves.

Cancel: Streamlit stops a running script at its next Streamlit call once a button is clicked; the
progress bar is redrawn after every new token, so the continuation stops within one token (the
exception leaves the results cache without a value, lib.app.cache). The click marks the
continuation cancelled, and the page says so instead of starting it again until the user asks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ..analyses.common.decode import DEFAULT_NEW_TOKENS, MAX_NEW_TOKENS
from ..analyses.generation import (
    DEFAULT_SETTINGS,
    Continuation,
    GenerationSettings,
    complete_character,
    continue_capture,
)
from ..core.chat import Chat
from ..core.errors import Cancelled, TwinlensError
from . import session
from .cache import RunKey
from .readable import emoji_name, emoji_names, plain
from .views import Side

CANCELLED_KEY = "_twinlens_cancelled_generations"  # the continuations this session cancelled
ASKED = "_twinlens_asked:"  # + a Generate button's key: the (prompts, settings) it was pressed for
ANSWER_SETTINGS = DEFAULT_SETTINGS  # the Continuations page's default: Compare's answers are reused there
ANSWER_HELP = (
    "The model's answer: the first line of its greedy continuation (the most likely token each time, "
    f"up to {ANSWER_SETTINGS.max_new_tokens} new tokens; the Continuations page shows all of it). "
    "Highlighted: the start of the answer typed in the sidebar — the model continues from it, it did "
    "not choose it."
)


@dataclass(frozen=True)
class Answer:
    """One prompt's answer as a reader sees it.

    system: the system message typed in the sidebar (chat), or None
    given: the start of the answer typed in the sidebar (chat), "" when none — part of the answer,
        but not the model's choice
    said: the model's own words: the first non-empty line of its continuation
    more: whether the continuation goes on after that line
    """

    system: str | None
    given: str
    said: str
    more: bool

    def to_dict(self) -> dict:
        return {"system": self.system, "given": self.given, "said": self.said, "more": self.more}


def answer_of(continuation: Continuation, chat: Chat | None) -> Answer:
    """The answer a continuation gives: the first line of its text with something on it, after the
    chat's answer start (if any)."""
    text = continuation.text
    lines = text.lstrip("\r\n").split("\n", 1)
    said = lines[0].rstrip()
    more = len(lines) > 1 and bool(lines[1].strip())
    return Answer(chat.system if chat else None, chat.prefill if chat else "", said, more)


def answer_markdown(label: str, answer: Answer) -> str:
    """'**Answer (A)**: :blue-background[Yes, here it is:] 🐦 …' — the typed start highlighted, the
    model's words as plain text (Markdown signs escaped)."""
    given = f":blue-background[{plain(answer.given)}] " if answer.given else ""
    said = plain(answer.said.strip()) or "*(nothing: the model ended at once)*"
    names = emoji_names(answer.said)
    named = f" :gray[({plain(names)})]" if names else ""
    return f"**Answer ({plain(label)})**: {given}{said}{' …' if answer.more else ''}{named}"


def continuation(run: RunKey, settings: GenerationSettings, place: DeltaGenerator, label: str,
                 together: Sequence[RunKey] = ()) -> Continuation:
    """`continue_capture` for `run`'s prompt through the results cache; while it is written, `place`
    shows a progress bar with the tokens so far and a Cancel button, which cancels the continuations
    of `together` too (a cached one returns at once). Raises Cancelled when the user cancelled this
    continuation (see the module docstring)."""
    from . import ui  # the page door: models load with their status box, NDIF keys apply

    key = (run.prompt_only, settings)
    if key in st.session_state.get(CANCELLED_KEY, set()):
        raise Cancelled(f"You cancelled {label}'s continuation; nothing was kept.")
    if ui.RESULTS.has(continue_capture, run.model, run.prompt_only, settings):
        return ui.cached(continue_capture, run.model, run.prompt_only, settings)
    with place.container():  # two slots, each emptied after: the place can be drawn into again
        bar, button = st.empty(), st.empty()
    bar.progress(0.0, text=f"Writing {plain(label)}…")
    cancelled = {key, *((other.prompt_only, settings) for other in together)}
    button.button("Cancel", key=f"cancel-{label}", on_click=_cancel, args=(cancelled,))

    def progress(done: float, text: str) -> None:
        bar.progress(min(done, 1.0), text=f"Writing {plain(label)}: {plain(text.strip()) or '…'}")

    try:
        return ui.cached(continue_capture, run.model, run.prompt_only, settings, _progress=progress)
    finally:
        bar.empty()
        button.empty()


def _cancel(keys: set[Hashable]) -> None:
    st.session_state.setdefault(CANCELLED_KEY, set()).update(keys)


def run_again(key: str = "generate-again") -> None:
    """A button that forgets this session's cancelled continuations, so they are written again."""
    st.button("Write it again", key=key, on_click=st.session_state.pop, args=(CANCELLED_KEY, None))


def generate_button(runs: Sequence[RunKey], settings: GenerationSettings, key: str) -> bool:
    """A Generate button (widget `key`); True once it was pressed for these prompts and settings —
    kept in the session until they change (the top-k or anything else of the request may change) —
    or when every continuation is in the results cache already (Compare's answers are, for the
    default settings): results whose inputs did not change are kept."""
    from . import ui

    wanted, state_key = (tuple(run.prompt_only for run in runs), settings), ASKED + key
    if st.button("Generate", type="primary", key=key):
        st.session_state[state_key] = wanted
    return st.session_state.get(state_key) == wanted or all(
        ui.RESULTS.has(continue_capture, run.model, run.prompt_only, settings) for run in runs
    )


def cancelled_any(runs: Sequence[RunKey], settings: GenerationSettings) -> bool:
    """Whether the user cancelled the continuation of any of `runs` with `settings`."""
    cancelled = st.session_state.get(CANCELLED_KEY, set())
    return any((run.prompt_only, settings) in cancelled for run in runs)


def show_answers(sides: Sequence[Side], chat: Chat | None, places: Sequence[DeltaGenerator]) -> None:
    """Compare's answers: each side's answer in its place (drawn last, so the rest of the page is
    on screen while they are written). An answer that cannot be written says why in one line."""
    for side, place in zip(sides, places, strict=True):
        try:
            written = continuation(side.run, ANSWER_SETTINGS, place, f"answer {side.name}",
                                   [s.run for s in sides])
        except Cancelled:
            with place.container():
                st.caption(f"Answer ({plain(side.name)}): not written — you cancelled it.")
                run_again(f"answer-again-{side.name}")
            continue
        except TwinlensError as exc:
            place.caption(f"Answer ({plain(side.name)}): not available — {plain(str(exc))}")
            continue
        answer = answer_of(written, chat)
        with place.container():
            if answer.system:
                st.caption(f"System message: {plain(answer.system)}")
            st.markdown(answer_markdown(side.name, answer), help=ANSWER_HELP)


def settings_inputs() -> GenerationSettings:
    """The Continuations page's generation settings: new tokens, greedy or sampled (temperature,
    seed); what was left on the page comes back after a visit to another page."""
    left, mid, right = st.columns(3)
    for key in ("continuations-n", "continuations-mode", "continuations-t", "continuations-seed"):
        session.kept(key)
    n = left.number_input("New tokens", 1, MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS, key="continuations-n")
    sampled = mid.radio("Decoding", ["greedy", "sampled"], horizontal=True, key="continuations-mode")
    session.keep("continuations-n", n)
    session.keep("continuations-mode", sampled)
    if sampled == "greedy":
        return GenerationSettings(int(n))
    temperature = right.number_input("Temperature", 0.05, 5.0, 0.8, key="continuations-t")
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="continuations-seed")
    session.keep("continuations-t", temperature)
    session.keep("continuations-seed", seed)
    return GenerationSettings(int(n), float(temperature), int(seed))


def characters_table(continuation: Continuation) -> pd.DataFrame:
    """One row per character: the tokens it spans, the character, its pieces (joined ones only differ)."""
    return pd.DataFrame(
        {"tokens": f"{g.start}" if not g.joined else f"{g.start}–{g.end - 1}", "character": g.text,
         "name": emoji_name(g.text) or "", "pieces": " ".join(g.pieces) if g.joined else ""}
        for g in continuation.characters
    )


def completes_to(side: Side, token: int) -> str | None:
    """The character `token` completes to after the side's prompt, greedily (`complete_character`,
    cached); None when it is whole, or when the backend cannot generate yet (the pieces alone are
    shown)."""
    from . import ui

    prompt = ui.get_capture(side.run).token_ids
    return ui.cached_or(None, complete_character, side.run.model, prompt, token)


def first_completes_to(run: RunKey, written: Continuation) -> str | None:
    """The character the first new token of a continuation completes to, greedily (cached); None
    when it is whole or nothing was written."""
    from . import ui

    first = written.token_ids[:1]
    return ui.cached(complete_character, run.model, written.prompt_token_ids, first[0]) if first else None
