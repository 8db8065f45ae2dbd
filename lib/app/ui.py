"""The pages' door to the library: the process's models and results (`cached`), the current
comparison, the page runner with its one error boundary. The only layer that imports Streamlit is
lib/app; this module, `session` (this browser's request and link) and `views` (shared drawing) are
its three jobs. Pages may reach all three through `ui`.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import TypeVar

import streamlit as st

from ..analyses.common.comparison import Comparison
from ..analyses.compare import compare_captures, compare_prompts
from ..analyses.model_compare import check_same_tokens, compare_model_captures
from ..core.capture import Capture, check_length
from ..core.errors import ModelLoadError, TwinlensError, unexpected
from ..core.models import LoadedModel
from ..core.tokens import check_prompts, encode
from . import access as sharing
from . import lens_choice, ndif, readable, registry
from .cache import ModelKey, Results, RunKey
from .request import Request
from .session import access, current_request, submit
from .views import ENTRY_KEY, nav_bar, plain, show_error

LAST_GOOD_KEY = "_twinlens_last_good_model"  # this session's last model spec that loaded
T = TypeVar("T")
RESULTS = Results()  # the process's models, captures and results, shared by every session
_LOAD_TURN = threading.Lock()  # loads (and the choice of which model they unload) take turns
_LOADED_BY: dict[ModelKey, tuple[bool, str]] = {}  # model → (loaded by the operator, loader's owner id)


class _NotLoaded(Exception):
    pass


def _absent() -> LoadedModel:
    raise _NotLoaded


def get_model(key: ModelKey) -> LoadedModel:
    """The loaded model for `key`, with a status box while its first load runs (then it leaves).

    Checked first against what this session may load (AccessError). A load that needs room
    unloads the least recently used model — for a guest, only a model a guest loaded."""
    who = access()
    check_key(key, who)
    try:
        return RESULTS.models.get(key, _absent)
    except _NotLoaded:
        pass
    with _LOAD_TURN:
        held = RESULTS.models.items()
        victim = None
        if key not in dict(held):
            loaded_by = [(k, _LOADED_BY.get(k, (True, ""))[0]) for k, _ in held]
            victim = sharing.eviction(loaded_by, RESULTS.models.max_entries, who.operator)

        def load() -> LoadedModel:
            try:
                model = key.load()
            except TwinlensError as exc:
                raise who.explain_failure(key.spec, exc) from exc
            if victim is not None:  # make room only once the new model has loaded
                RESULTS.models.discard(victim)
                _LOADED_BY.pop(victim, None)
            _LOADED_BY[key] = (who.operator, who.owner)
            return model

        box = st.empty()
        try:
            with box.container(), st.status(f"Loading model '{plain(key.spec)}'…", expanded=True):
                st.write("The first start of the embedded model unpacks it (about 15 s); later starts "
                         "take a second.")
                with ndif.session_api_key():
                    model = RESULTS.models.get(key, load)
        finally:
            box.empty()  # also after a failed load: the error alone stays
    return model


def check_key(key: ModelKey | RunKey, who: sharing.Access | None = None) -> None:
    """Raise AccessError unless this session may use the model of `key` (its options and folder)."""
    model = key.model if isinstance(key, RunKey) else key
    who = who or access()
    who.check_options(model.trust_remote_code, model.allow_pickle)
    who.check_model(model.spec)


def get_capture(run: RunKey) -> Capture:
    """One prompt's forward pass, run once per (model, text, BOS) and kept for every page."""
    get_model(run.model)
    return RESULTS.capture(run)


def cached(fn: Callable[..., T], *args: Hashable, _progress: Callable[[float], None] | None = None,
           **kwargs: Hashable) -> T:
    """`fn(*args, **kwargs)` computed once per value and kept for every page and session
    (`Results.get`: a ModelKey argument arrives as the loaded model, a RunKey as its capture);
    a model's first load shows its status box."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, (ModelKey, RunKey)):
            key = value if isinstance(value, ModelKey) else value.model
            if key.remote:
                registry.check_on_ndif(fn)  # rather than fetch residual streams from NDIF
            get_model(key)
    with ndif.session_api_key():
        return RESULTS.get(fn, *args, _progress=_progress, **kwargs)


def cached_or(default: T, fn: Callable[..., T], *args: Hashable, **kwargs: Hashable) -> T:
    """`cached(fn, …)`, or `default` when it raises a TwinlensError: for an extra a view can do
    without (a partial character completed, shown as its pieces when the backend cannot generate)."""
    try:
        return cached(fn, *args, **kwargs)
    except TwinlensError:
        return default


def clear_results() -> None:
    """Forget every capture and result (the loaded models stay)."""
    RESULTS.clear()


def get_comparison(request: Request) -> Comparison:
    """The comparison for `request`: prompts A and B through one model, or prompt A through two."""
    run_a, run_b = request.runs
    check_sides(request)
    with st.spinner("Running both sides through the model…"):
        if request.two_models:
            check_model_pair_tokens(request)
            uses = lens_choice.lens_uses(request, get_model(run_a.model), get_model(run_b.model))
            kinds = {"lens": uses[0].kind, "lens2": uses[1].kind} if request.lens != "logit" else {}
            return cached(compare_model_captures, run_a.model, run_b.model, run_a, run_b, top_k=request.k,
                          **kinds)
        lens = {"lens": request.lens} if request.lens != "logit" else {}  # the default keeps its cache key
        if request.backend != "local" and not request.continue_for:  # reduced inside the trace
            def compute(progress: Callable | None = None) -> Comparison:
                return cached(compare_prompts, run_a.model, run_a.text, run_b.text, top_k=request.k,
                              bos=request.bos, chat=request.chat_settings, _progress=progress, **lens)
            return ndif.watched_job(request, compute) if run_a.model.remote else compute()
        return cached(compare_captures, run_a.model, run_a, run_b, top_k=request.k, **lens)


def check_sides(request: Request) -> None:
    """Before any pass: an empty or too long prompt is named ('Prompt B is empty'); two-models
    mode with the same model twice gets a warning (every difference would be 0)."""
    texts = (request.a,) if request.two_models else (request.a, request.b)
    names = ("The prompt",) if request.two_models else ("Prompt A", "Prompt B")
    check_prompts(*texts, names=names)
    model = get_model(request.model_key)
    for text, name in zip(texts, names, strict=True):
        check_length(model, len(encode(model.tokenizer, text, request.bos)), name)
    if request.two_models and request.model2.strip() == request.model.strip():
        st.warning(f"Model 1 and model 2 are the same ('{plain(request.model)}'): the two sides are "
                   "identical, so every difference below is 0. Type another model as model 2.")


def check_model_pair_tokens(request: Request) -> None:
    """Two-models mode: both models load and read prompt A as the same tokens (before any pass)."""
    run_1, run_2 = request.runs
    check_same_tokens(get_model(run_1.model), get_model(run_2.model), run_1.text, run_1.bos)


def memory_caption() -> str:
    """The models held in memory, the bytes their weights take and where they run, e.g.
    'In memory: SmolLM2 (513 MB, cpu, float32), gpt2 (498 MB, cpu, float32) · 1.0 GB'; on a
    shared server each also says who loaded it ('; loaded by the operator', 'by a guest', 'by you')."""
    held = RESULTS.models.items()
    if not held:
        return "No model in memory yet."
    who = access()
    models = [m for _, m in held]
    total = sum(m.memory_bytes for m in models)
    listed = ", ".join(
        f"{plain(m.name)} ({readable.size_text(m.memory_bytes)}, {readable.runs_on(m)}{_loaded_by(k, who)})"
        for k, m in held
    )
    total_text = readable.size_text(total)
    return f"In memory: {listed} · {total_text}" if len(models) > 1 else f"In memory: {listed}"


def _loaded_by(key: object, who: sharing.Access) -> str:
    """On a shared server, who loaded the model: you, the operator or a guest."""
    if not who.shared:
        return ""
    operator, owner = _LOADED_BY.get(key, (True, ""))  # type: ignore[arg-type]
    if owner and owner == who.owner:
        return "; loaded by you"
    return "; loaded by the operator" if operator else "; loaded by a guest"


def require_comparison() -> tuple[Request, LoadedModel, Comparison] | None:
    """For a page: the current request, its model and comparison — or a message and None.

    Errors a user can cause are shown with st.error; the page then draws nothing more.
    """
    request = current_request()
    if request is None:
        st.info("Type two prompts in the sidebar and press **Compare** — or, to start with a pair that "
                "shows something, click one of the **Example pairs** in the sidebar.")
        return None
    try:
        model = get_model(request.model_key)
        st.session_state[LAST_GOOD_KEY] = request.model
        return request, model, get_comparison(request)
    except TwinlensError as exc:
        show_error(exc)
        last_good = st.session_state.get(LAST_GOOD_KEY)
        refused = isinstance(exc, (ModelLoadError, sharing.AccessError))
        if refused and last_good and last_good != request.model:
            st.button(f"Back to the last model that worked: {plain(last_good)}",
                      on_click=submit, args=(replace(request, model=last_good),))
        return None


def run_pages(pages: list | dict) -> None:
    """Run the selected page, marking that the entrypoint (and so the sidebar) ran first.

    The one error boundary: an error the user caused (a `TwinlensError`, raised anywhere below a
    page) becomes one st.error and the page stops there; anything else is a bug and gets the
    "something went wrong" message with details for a report.
    """
    st.session_state[ENTRY_KEY] = True
    try:
        current = st.navigation(pages, position="hidden")
        nav_bar(pages if isinstance(pages, dict) else {"": pages})
        current.run()
    except TwinlensError as exc:  # the user's input, wherever a page raised it: one plain message
        show_error(exc)
    except Exception as exc:  # a bug, not the user's input: a plain message, the page stays usable
        if os.environ.get("TWINLENS_DEBUG"):
            raise
        st.error(plain(unexpected(exc)) + " Your prompts and settings are kept.")
        with st.expander("Details for a bug report"):
            st.code(traceback.format_exc(), language=None)
    finally:
        st.session_state.pop(ENTRY_KEY, None)


