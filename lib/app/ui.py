"""Streamlit helpers shared by the pages: the request in the sidebar, cached model and results.

The only module of `lib` that imports Streamlit. The model is cached once per process and
shared by every session (`max_entries=1`); captured prompts and comparisons are cached by value,
so switching pages or changing a display option runs no new forward pass.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ..analyses.compare import Comparison, compare_captures
from ..analyses.model_compare import check_same_tokens, compare_model_captures
from ..core.capture import Capture
from ..core.errors import HistoryError, ModelLoadError, SettingsError, TwinlensError, unexpected
from ..core.models import LoadedModel
from . import compare_frames as frames
from . import export
from .cache import ModelKey, Results, RunKey
from .examples import Example
from .export import ExportFile
from .history import DB_NAME, MAX_NAME, History, data_dir
from .request import CHAT_QUERY_FIELDS, PAIR_QUERY_FIELDS, QUERY_FIELDS, WIDGET_FIELDS, Request

if TYPE_CHECKING:
    import pandas as pd

REQUEST_KEY = "twinlens_request"
ENTRY_KEY = "_twinlens_entrypoint_running"
LAST_GOOD_KEY = "_twinlens_last_good_model"  # this session's last model spec that loaded
QUERY_READ_KEY = "_twinlens_query_read"
T = TypeVar("T")


def current_request() -> Request | None:
    """The last request submitted in this session, or None before the first Compare."""
    return st.session_state.get(REQUEST_KEY)


def set_request(request: Request) -> None:
    st.session_state[REQUEST_KEY] = request


def submit(request: Request) -> None:
    """Make `request` the current one and show it in the sidebar (call before the widgets render)."""
    for key, field in WIDGET_FIELDS.items():
        st.session_state[key] = getattr(request, field)
    set_request(request)


def use_example(example: Example) -> None:
    """An example button's on_click: both prompts (and the example's BOS, if it sets one) are filled
    in and compared with the model and top-k currently in the sidebar."""
    state = st.session_state
    submit(
        Request(
            model=str(state.get("model", "")).strip() or Request.model,
            a=example.a,
            b=example.b,
            bos=example.bos or state.get("bos", Request.bos),
            chat=example.chat,
            system=str(state.get("system", "")) if example.chat else "",
            prefill=example.prefill,
            k=int(state.get("top_k", Request.k)),
            trust_remote_code=bool(state.get("trust_remote_code", False)),
            allow_pickle=bool(state.get("allow_pickle", False)),
        )
    )


def adopt_query_params() -> None:
    """At a session's first run, a shareable URL (`?model=…&a=…&b=…&bos=…&k=…`) becomes the
    request, so the page it names draws at once. The sidebar calls this before its widgets."""
    if st.session_state.get(QUERY_READ_KEY):
        return
    st.session_state[QUERY_READ_KEY] = True
    if not any(name in st.query_params for name in QUERY_FIELDS):
        return
    try:
        submit(Request.from_query(st.query_params.to_dict()))
    except SettingsError as exc:
        st.sidebar.error(plain(str(exc)))


def write_query_params() -> None:
    """Keep the URL shareable: after each compare (and page switch), it names the current request."""
    request = current_request()
    if request is None:
        return
    wanted = request.to_query()
    for name in PAIR_QUERY_FIELDS + CHAT_QUERY_FIELDS:  # left over from a two-models or chat request
        if name in st.query_params and name not in wanted:
            del st.query_params[name]
    if any(st.query_params.get(name) != value for name, value in wanted.items()):
        st.query_params.update(wanted)


TRUST_REMOTE_CODE_HELP = (
    "Runs Python code that comes with the model (trust_remote_code): only for a model whose code "
    "you have read. Off by default."
)
ALLOW_PICKLE_HELP = (
    "Reads pytorch_model.bin weights with pickle, which can run code hidden in the file: only for "
    "files you trust. Off by default; safetensors weights never need it."
)


def expert_warning() -> None:
    """A warning in the sidebar while this session's request lets a model run code."""
    trust, pickle = expert_options()
    if trust or pickle:
        allowed = " and ".join(n for n, on in (("remote code", trust), ("pickle weights", pickle)) if on)
        st.warning(f"⚠️ This comparison allows {allowed}: the model's files can run code on this machine.")


def expert_options() -> tuple[bool, bool]:
    """This session's (trust_remote_code, allow_pickle): both off until its request turns them on."""
    request = current_request()
    return (request.trust_remote_code, request.allow_pickle) if request else (False, False)


RESULTS = Results()  # the process's models, captures and results, shared by every session


def get_model(key: ModelKey) -> LoadedModel:
    """The loaded model for `key`, with a status box while its first load runs (then it leaves)."""
    if key in RESULTS.models:
        return RESULTS.model(key)
    box = st.empty()
    with box.container(), st.status(f"Loading model '{plain(key.spec)}'…", expanded=True):
        st.write("The first start of the embedded model unpacks it (about 15 s); later starts take a second.")
        model = RESULTS.model(key)
    box.empty()
    return model


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
            get_model(value if isinstance(value, ModelKey) else value.model)
    return RESULTS.get(fn, *args, _progress=_progress, **kwargs)


def clear_results() -> None:
    """Forget every capture and result (the loaded models stay)."""
    RESULTS.clear()


def get_comparison(request: Request) -> Comparison:
    """The comparison for `request`: prompts A and B through one model, or prompt A through two."""
    run_a, run_b = request.runs
    with st.spinner("Running both sides through the model…"):
        if request.two_models:
            check_model_pair_tokens(request)
            return cached(compare_model_captures, run_a.model, run_b.model, run_a, run_b, top_k=request.k)
        return cached(compare_captures, run_a.model, run_a, run_b, top_k=request.k)


def check_model_pair_tokens(request: Request) -> None:
    """Two-models mode: both models load and read prompt A as the same tokens (before any pass)."""
    run_1, run_2 = request.runs
    check_same_tokens(get_model(run_1.model), get_model(run_2.model), run_1.text, run_1.bos)


def memory_caption() -> str:
    """The models held in memory, the bytes their weights take and where they run, e.g.
    'In memory: SmolLM2 (513 MB, cpu, float32), gpt2 (498 MB, cpu, float32) · 1.0 GB'."""
    models = RESULTS.models.values()
    if not models:
        return "No model in memory yet."
    total = sum(m.memory_bytes for m in models)
    listed = ", ".join(f"{plain(m.name)} ({_size(m.memory_bytes)}, {_runs_on(m)})" for m in models)
    return f"In memory: {listed} · {_size(total)}" if len(models) > 1 else f"In memory: {listed}"


def _runs_on(model: LoadedModel) -> str:
    """The device and dtype `load_model` chose ('auto': CUDA, then MPS, then the CPU; float32 on the CPU)."""
    return f"{model.device.type}, {str(model.dtype).removeprefix('torch.')}"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def export_files(
    name: str, request: Request, data: Mapping, tables: Mapping[str, pd.DataFrame]
) -> list[ExportFile]:
    """`data` with the request as `<name>.json`, then each table as `<name>-<table>.csv`."""
    return export.export_files(name, request.to_dict(), data, tables)


def download_buttons(name: str, request: Request, data: Mapping, tables: Mapping[str, pd.DataFrame]) -> None:
    """Export buttons for what a page shows (see `export_files`); downloading does not rerun the page."""
    files = export_files(name, request, data, tables)
    for column, file in zip(st.columns(len(files)), files, strict=True):
        column.download_button(
            f"⬇ {file.label}", file.content, file_name=file.file_name, mime=file.mime,
            key=f"download-{file.file_name}", on_click="ignore",
        )


def require_comparison() -> tuple[Request, LoadedModel, Comparison] | None:
    """For a page: the current request, its model and comparison — or a message and None.

    Errors a user can cause are shown with st.error; the page then draws nothing more.
    """
    request = current_request()
    if request is None:
        st.info("Type two prompts in the sidebar and press **Compare**.")
        return None
    try:
        model = get_model(request.model_key)
        st.session_state[LAST_GOOD_KEY] = request.model
        return request, model, get_comparison(request)
    except TwinlensError as exc:
        show_error(exc)
        last_good = st.session_state.get(LAST_GOOD_KEY)
        if isinstance(exc, ModelLoadError) and last_good and last_good != request.model:
            st.button(f"Back to the last model that worked: {plain(last_good)}",
                      on_click=submit, args=(replace(request, model=last_good),))
        return None


@dataclass(frozen=True)
class Side:
    """One side of the current comparison as a page reads it: what the page calls it ('A' or
    'model 1'), its heading ('Prompt A', 'Model 1 · name') and its run (model and text) — pass
    `run` to `get_capture` or `cached`."""

    name: str
    title: str
    run: RunKey

    @property
    def text(self) -> str:
        return self.run.text


def sides(request: Request, comparison: Comparison) -> tuple[Side, Side]:
    """Sides a and b: prompts A and B through one model, or prompt `a` through model 1 and model 2."""
    names, titles = frames.side_names(comparison), frames.side_titles(comparison)
    return tuple(Side(n, t, run) for n, t, run in zip(names, titles, request.runs, strict=True))


def draw_comparison(comparison: Comparison) -> None:
    """The Compare page's body for `comparison`, fresh or reopened from History: both prompts (as
    plain text) with their tokens and next token, the distance per layer, both logit lenses."""
    st.caption(frames.model_caption(comparison))
    names = frames.side_names(comparison)  # A/B, or model 1/model 2
    sides = tuple(zip(names, frames.side_titles(comparison), (comparison.a, comparison.b), strict=True))
    for col, (label, title, side) in zip(st.columns(2), sides, strict=True):
        with col:
            st.subheader(plain(title))
            st.text(side.text)
            top = side.final[0]
            st.metric(f"Model's next token ({label})", top.token, f"p = {top.prob:.3f}", delta_color="off")
            st.dataframe(frames.tokens_frame(side).T.astype(str), width="stretch")
    st.subheader(f"Distance between {names[0]} and {names[1]} at the last token, per layer")
    distance = comparison.distance
    if distance is None:
        st.info(comparison.note)
    else:
        peak = distance.peak_layer("cosine")
        st.altair_chart(frames.distance_chart(distance), width="stretch")
        st.caption(
            f"The cosine distance peaks at layer {peak} ({distance.cosine[peak]:.3f}); "
            f"at the last layer it is {distance.cosine[-1]:.3f}. {comparison.note}"
        )
    st.subheader("Logit lens at the last token")
    for col, (_, title, side) in zip(st.columns(2), sides, strict=True):
        with col:
            st.markdown(f"**{plain(title)}**")
            height = min(40 + 35 * (len(side.lens) + 1), 900)
            st.dataframe(frames.lens_frame(side), width="stretch", height=height)


_MARKDOWN_SIGNS = re.compile(r"([\\`*_\[\]<>$~|])")  # emphasis, code, links, HTML, LaTeX, tables


def plain(text: str) -> str:
    """`text` escaped for Streamlit's Markdown (st.error, st.info...): the signs of Markdown
    emphasis, code, links and images, HTML, LaTeX and tables get a backslash, so a prompt, token
    or model name quoted in a message shows literally."""
    return _MARKDOWN_SIGNS.sub(r"\\\1", text)


def show_error(exc: BaseException) -> None:
    """An error a user caused, as an st.error whose quoted prompts or names show literally."""
    st.error(plain(str(exc)))


def open_history() -> History | None:
    """The saved comparisons, or None after an st.error. A damaged database is reported, set
    aside by `History` (never overwritten) and replaced by a fresh one at once."""
    for _ in range(2):
        try:
            return History()
        except HistoryError as exc:
            show_error(exc)
            if (data_dir() / DB_NAME).exists():  # not set aside, so a second try cannot help
                return None
    return None


def save_form(request: Request, comparison: Comparison) -> None:
    """A name and a Save button: stores `comparison` with `request` in the History."""
    default = f"{comparison.a.text[:40]} | {comparison.b.text[:40]}"
    with st.form("save-comparison", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value=" ".join(default.split()), max_chars=MAX_NAME)
        if button_col.form_submit_button("💾 Save", width="stretch"):
            history = open_history()
            if history is not None:
                try:
                    saved_id = history.save(name, request.to_dict(), comparison)
                    st.success(f"Saved as #{saved_id}. Reopen it on the History page.")
                except HistoryError as exc:
                    show_error(exc)


def run_pages(pages: list) -> None:
    """Run the selected page, marking that the entrypoint (and so the sidebar) ran first.

    The one error boundary: an error the user caused (a `TwinlensError`, raised anywhere below a
    page) becomes one st.error and the page stops there; anything else is a bug and gets the
    "something went wrong" message with details for a report.
    """
    st.session_state[ENTRY_KEY] = True
    try:
        st.navigation(pages).run()
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


def page(title: str, explanation: str) -> None:
    """Open a page: its header and its "What am I looking at?" expander (our text, never user data).

    On the very first run of a server process, Streamlit runs a file of a `pages/` folder by
    itself, without the entrypoint and its sidebar (its multipage "v1" mode); such a run is
    restarted through the entrypoint.
    """
    if ENTRY_KEY not in st.session_state:
        # The mode is a process-wide flag that only the public st.navigation clears, and that call
        # is in the entrypoint this run skipped: clear it here, or the rerun runs this file alone again.
        PagesManager.uses_pages_directory = False
        st.rerun()
    st.header(title)
    with st.expander("What am I looking at?"):
        st.markdown(explanation)
