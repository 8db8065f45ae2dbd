"""The Steering page's inputs and memory: the models steered and the target prompt (refused
plainly when empty), the sweep's coefficients, the steered continuation written under a progress
bar with Cancel; the vector, the sweep and their tables through the results cache (`vector_of`,
`sweep_of`, `outcomes_table`, `sweep_table`); what the user set and ran stays in the session until the inputs
change (leaving the page and coming back, or running the sweep, keeps the steer result), the
link carries layer, α, vector, vector source and target, and the sweep's best cell is one click
away ("Steer there").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from ..analyses.common.decode import MAX_NEW_TOKENS, GenerationSettings
from ..analyses.common.vector import SteeringVector, describe_vector_file, kind_label
from ..analyses.features import feature_steering_vector
from ..analyses.steering import (
    APPLY_TO,
    DEFAULT_ALPHAS,
    VECTOR_MODES,
    SteerResult,
    SweepResult,
    steer_captures,
    steering_sweep,
    steering_vector,
)
from ..core.errors import PromptError, SettingsError, TwinlensError
from . import feature_steering
from .cache import ModelKey, RunKey
from .readable import plain
from .session import KEPT, PAGE_QUERY_KEY, linked, share

VECTOR_SOURCE = "steering-vector-source"  # not a widget: where the steering vector comes from
STEER_ASKED = "steering-run-asked"  # session.asked's state for the Steer button
RUN_NOW = "steering-run-now"  # set by "Steer there": the next run steers as if Steer was pressed
LINKED = {  # widget key → the link's parameter
    "steering-layer": "steer_layer", "steering-alpha": "steer_alpha", "steering-mode": "steer_mode",
    "steering-third": "steer_target",
}
CASTS = {"steering-layer": int, "steering-alpha": float}
REMEMBERED = ("steering-apply", "steering-answer", "steering-wrong", "steering-n", "steering-target",
              "steering-alphas")


def restore() -> None:
    """Before the page's widgets: a link's values (first visit) or the values left on the page."""
    for key, name in LINKED.items():
        linked(key, name, CASTS.get(key, str))
    if st.session_state.get("steering-third"):
        st.session_state.setdefault("steering-target", "a third prompt")
    for key in REMEMBERED:
        if key not in st.session_state and KEPT + key in st.session_state:
            st.session_state[key] = st.session_state[KEPT + key]


def feature_source() -> str | None:
    """'feature:N' while the page steers with shipped SAE feature N's direction, else None (A − B)."""
    held = st.session_state.get(feature_steering.VECTOR_KEY)
    found = re.match(r"SAE feature (\d+)", held["source"]) if held else None
    return f"feature:{found.group(1)}" if found else None


def adopt_feature_link(model: ModelKey, cached) -> None:
    """A link with steer_vector=feature:N (and steer_layer=ℓ): steer with the shipped SAE's
    feature N at residual ℓ, as the Features page's button would (its α: the link's steer_alpha)."""
    pending = st.session_state.get(PAGE_QUERY_KEY, {})
    found = re.fullmatch(r"feature:(\d+)", pending.pop("steer_vector", "") or "")
    if not found:
        return
    try:
        layer = int(pending.get("steer_layer", ""))
        vector = cached(feature_steering_vector, model, int(found.group(1)), layer=layer, sae_path=None,
                        any_model=False)
        feature_steering.send(vector, float(pending.get("steer_alpha", 4.0)))
    except (TwinlensError, ValueError) as exc:
        st.warning(f"The link's steering vector could not be rebuilt ({exc}); steering with A − B.")


def keep(defaults: dict[str, object]) -> None:
    """After the page's widgets: remember every value; the linked ones also go into the link
    (left out while they equal `defaults`), with the vector's source (`feature_source`)."""
    for key, name in LINKED.items():
        share(key, name, st.session_state.get(key), defaults.get(key))
        if key not in st.session_state:  # not drawn (B is the target): nothing to bring back
            del st.session_state[KEPT + key]
    share(VECTOR_SOURCE, "steer_vector", feature_source())
    for key in REMEMBERED:
        if key in st.session_state:
            st.session_state[KEPT + key] = st.session_state[key]


def steer_there(layer: int, alpha: float) -> None:
    """A button callback: set layer and α to the sweep's best cell and steer on the next run."""
    st.session_state["steering-layer"] = int(layer)
    st.session_state["steering-alpha"] = float(alpha)
    st.session_state[RUN_NOW] = True


def run_now() -> bool:
    """Whether "Steer there" asked for a steer in this run (asked once)."""
    return bool(st.session_state.pop(RUN_NOW, False))


@dataclass(frozen=True)
class Steered:
    """One model's steering inputs: its heading (empty with one model), and prompts A and B through it."""

    title: str
    run_a: RunKey
    run_b: RunKey



def steered_models(request) -> list[Steered]:
    """Two prompts: one model, A and B from the sidebar. Two models: each model steered with its own
    h_A − h_B, A from the sidebar and B typed here (the sidebar holds one prompt in that mode)."""
    run_a, run_b = (run.prompt_only for run in request.runs)
    if not request.two_models:
        return [Steered("", run_a, run_b)]
    st.session_state.setdefault("steering-b", request.b)
    typed = st.text_area("Prompt B (each model's vector is its own h_A − h_B)", key="steering-b", height=70,
                         help="Two-models mode has one prompt (A); steering needs a second one.")
    if not typed.strip():
        raise PromptError("Prompt B is empty. Type the second prompt: each model is steered with its "
                          "own A − B.")
    return [Steered(side, run, RunKey(run.model, typed, run.bos, run.chat))
            for side, run in zip(("Model 1", "Model 2"), (run_a, run_b), strict=True)]



def plain_models(models: list[Steered]) -> tuple:
    """The models as plain values, to compare with an earlier run's: this file's `Steered` class is
    made anew on every run, so its instances from an earlier run never equal today's."""
    return tuple((m.title, m.run_a, m.run_b) for m in models)



def target_text() -> str | None:
    """None for B, else the third prompt (an empty one is refused)."""
    choice = st.radio("Target", ["B", "a third prompt"], horizontal=True, key="steering-target")
    if choice == "B":
        st.session_state.pop("steering-third", None)
    if choice == "B":
        return None
    text = st.text_area("Third prompt", key="steering-third", height=70)
    if not text.strip():
        raise PromptError("The target prompt is empty. Type the third prompt to steer, or choose B.")
    return text



def target_run(steered: Steered, text: str | None) -> RunKey | None:
    """The third prompt through the steered model (None: B)."""
    run = steered.run_a
    return None if text is None else RunKey(run.model, text, run.bos, run.chat)



def parse_alphas(typed: str) -> tuple[float, ...]:
    try:
        alphas = tuple(float(a) for a in typed.split(",") if a.strip())
    except ValueError as exc:
        raise SettingsError(
            f"The sweep's coefficients must be numbers separated by commas, not '{typed}'."
        ) from exc
    if not alphas:
        raise SettingsError("Give at least one coefficient for the sweep.")
    return alphas


def steered(run_a: RunKey, run_b: RunKey, target: RunKey | None, title: str = "",
            **settings: object) -> object:
    """`steer_captures` through the results cache; while it is written, a progress bar shows the
    steered continuation so far, with a Cancel button (one per model: `title`) that stops it
    (Streamlit ends the run at the bar's next redraw) and closes the Steer gate, so nothing starts
    again until Steer is pressed."""
    from . import ui  # the page door: models load with their status box

    args = (steer_captures, run_a.model, run_a, run_b, target)
    if ui.RESULTS.has(*args, **settings):
        return ui.cached(*args, **settings)
    bar, button = st.empty(), st.empty()
    bar.progress(0.0, text="Steering: writing the unsteered, steered, −α and random-vector continuations…")
    button.button("Cancel", key=f"steering-cancel{title}", on_click=st.session_state.pop,
                  args=(STEER_ASKED, None))

    def progress(done: float, text: str) -> None:
        bar.progress(min(done, 1.0), text=f"Steered so far: {plain(text.strip()) or '…'}")

    try:
        return ui.cached(*args, _progress=progress, **settings)
    finally:
        bar.empty()
        button.empty()


def result_caption(result: SteerResult, target: RunKey | None) -> str:
    """Where and how hard the result steered: the site, ‖v‖ and what v is made of, α, the push, the
    target (B or the third prompt) and the positions."""
    push = "" if result.push is None else f", push {result.push:.2f}× the residual's norm"
    return (f"{result.site}: ‖v‖ = {result.vector_norm:.3f} ({kind_label(result.mode)}), "
            f"α = {result.alpha:g}{push}, "
            f"added to {'B' if target is None else 'the third prompt'} at "
            f"{'every position' if result.apply == 'all' else 'the prompt only'}.")


def vector_file_caption(data: bytes) -> str:
    """What an uploaded steering-vector file holds, and that it replaces A − B."""
    return describe_vector_file(data) + " It replaces A − B (the Vector choice)."


DEFAULT_ALPHA = 4.0


def choices(depth: int) -> tuple[int, float, str, str]:
    """The row of steering choices: the layer (0…`depth`, the middle by default), α, what the
    vector is made of and where it is added."""
    top = st.columns(4)
    layer = top[0].selectbox("Layer", range(depth + 1), index=depth // 2, key="steering-layer")
    alpha = top[1].number_input("α", value=DEFAULT_ALPHA, step=0.5, key="steering-alpha")
    mode = top[2].selectbox("Vector", VECTOR_MODES, format_func=kind_label, key="steering-mode",
                            help="What v is made of, from A and B; a vector file brings its own.")
    apply = top[3].selectbox("Apply to", APPLY_TO, key="steering-apply",
                             help="all: every position, generated tokens included; prompt: the prompt's only")
    return layer, alpha, mode, apply


def words_and_length() -> tuple[str | None, str | None, GenerationSettings]:
    """The answer and wrong words typed (None: A's and B's top-1) and the greedy settings of every
    steered continuation (its number of new tokens)."""
    left, mid, right = st.columns(3)
    answer = left.text_input("Answer token", key="steering-answer", placeholder="A's top-1") or None
    wrong = mid.text_input("Wrong token", key="steering-wrong", placeholder="B's top-1") or None
    n = right.number_input("New tokens", 1, MAX_NEW_TOKENS, 24, key="steering-n")
    return answer, wrong, GenerationSettings(int(n))


def alphas_input() -> str:
    """The sweep's coefficients as typed (by default the analysis's `DEFAULT_ALPHAS`)."""
    st.session_state.setdefault("steering-alphas", ", ".join(f"{a:g}" for a in DEFAULT_ALPHAS))
    return st.text_input("Coefficients", key="steering-alphas")


def defaults(depth: int) -> dict[str, object]:
    """The linked choices' defaults, left out of the link (`keep`)."""
    return {"steering-layer": depth // 2, "steering-alpha": DEFAULT_ALPHA, "steering-mode": VECTOR_MODES[0]}


def vector_of(run_a: RunKey, run_b: RunKey, layer: int, mode: str) -> SteeringVector:
    """v = h_A − h_B at residual `layer`, made as `mode` says (`steering_vector`, cached)."""
    from . import ui

    return ui.cached(steering_vector, run_a.model, run_a, run_b, layer, mode)


def sweep_of(steered: Steered, target: RunKey | None, alphas: str, mode: str, answer: str | None,
             wrong: str | None, progress: Callable[[float], None] | None = None) -> SweepResult:
    """Every layer × the typed coefficients at the target's next token (`steering_sweep`, cached);
    coefficients that are not numbers are refused (`parse_alphas`)."""
    from . import ui

    return ui.cached(steering_sweep, steered.run_a.model, steered.run_a, steered.run_b, target,
                     alphas=parse_alphas(alphas), mode=mode, answer=answer, wrong=wrong, _progress=progress)


def outcomes_table(result: SteerResult) -> pd.DataFrame:
    return pd.DataFrame(
        {"run": o.name, "α": o.alpha, "continuation": o.continuation.text,
         "logit diff": o.logit_diff, f"p({result.metric.answer.token if result.metric.answer else '—'})":
         o.prob_answer, f"p({result.metric.wrong.token if result.metric.wrong else '—'})": o.prob_wrong,
         "KL vs unsteered (bits)": o.kl, "side-effect KL (bits)": o.side_kl}
        for o in result.outcomes
    )


def reach_word(sweep: SweepResult, layer: int, j: int) -> str:
    """'yes' when the cell moves B about all the way to A, 'overshoot' when far past it, else ''."""
    return "overshoot" if sweep.overshoot(layer, j) else ("yes" if sweep.reaches(layer, j) else "")


def sweep_table(sweep: SweepResult) -> pd.DataFrame:
    return pd.DataFrame(
        {"layer": layer, "α": alpha, "logit diff": sweep.logit_diff[layer][j],
         "effect": sweep.effect(layer, j), "push": sweep.push(layer, j),
         "reaches A": reach_word(sweep, layer, j),
         "KL (bits)": sweep.kl[layer][j], "random KL (bits)": sweep.random_kl[layer]}
        for layer in range(len(sweep.kl))
        for j, alpha in enumerate(sweep.alphas)
    )
