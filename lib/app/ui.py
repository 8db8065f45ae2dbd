"""Streamlit helpers shared by the pages: the request in the sidebar, cached model and results.

The only module of `lib` that imports Streamlit. The model is cached once per process and
shared by every session (`max_entries=1`); captured prompts and comparisons are cached by value,
so switching pages or changing a display option runs no new forward pass.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ..analyses.bos import BosEffect, bos_effect
from ..analyses.compare import Comparison, compare_captures
from ..analyses.diff import TopTokenDiff, check_model_pair, top_token_diff
from ..analyses.distances import DistanceReport, distance_report
from ..analyses.lens import CellDetail, LensGrid, cell_detail, lens_grid
from ..analyses.model_compare import check_same_tokens, compare_model_captures
from ..analyses.patching import PatchedLens, PatchResult, patch_captures, patched_lens_captures
from ..analyses.watch import Watch, watch_tokens
from ..core.capture import Capture, capture
from ..core.checks import has_bos
from ..core.errors import HistoryError, ModelLoadError, SettingsError, TwinlensError, unexpected
from ..core.models import LoadedModel, load_model
from . import export
from .examples import Example
from .export import ExportFile
from .history import DB_NAME, MAX_NAME, History, data_dir
from .request import PAIR_QUERY_FIELDS, QUERY_FIELDS, WIDGET_FIELDS, Request

if TYPE_CHECKING:
    import pandas as pd

REQUEST_KEY = "twinlens_request"
ENTRY_KEY = "_twinlens_entrypoint_running"
LAST_GOOD_KEY = "_twinlens_last_good_model"  # this session's last model spec that loaded
QUERY_READ_KEY = "_twinlens_query_read"


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
    for name in PAIR_QUERY_FIELDS:  # left over from a two-models request
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


# (spec, device, dtype) → (the model the cache holds now, the expert options it was loaded with)
_resident: dict[tuple[str, str, str], tuple[LoadedModel, tuple[bool, bool]]] = {}


def _release_model(model: LoadedModel) -> None:
    """The cache dropped `model`: forget it, so its next use shows the loading status again."""
    for key in [k for k, (m, _) in _resident.items() if m is model]:
        del _resident[key]


@st.cache_resource(max_entries=2, show_spinner=False, on_release=_release_model)  # 2: two-models mode
def _cached_model(spec: str, device: str, dtype: str) -> LoadedModel:
    """Loaded with the expert options of the session that asked first (see `get_model`)."""
    trust, pickle = expert_options()
    model = load_model(spec, device=device, dtype=dtype, trust_remote_code=trust, allow_pickle=pickle)
    _resident[(spec, device, dtype)] = (model, (trust, pickle))
    return model


def get_model(spec: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """The loaded model, with a status box saying what happens while the first load runs.

    The one cached model is shared by every session, but a session never gets a model loaded
    with an expert option it has off (another session's pickle weights or remote code): the
    model is then loaded again under this session's options, which refuses it plainly.
    """
    key = (spec, device, dtype)
    _, used = _resident.get(key, (None, (False, False)))
    if any(on and not mine for on, mine in zip(used, expert_options(), strict=True)):
        _cached_model.clear()
        _resident.clear()
    if key in _resident:
        return _cached_model(spec, device, dtype)
    box = st.empty()  # the status shows while the model loads, then leaves the page
    with box.container(), st.status(f"Loading model '{plain(spec)}'…", expanded=True):
        st.write("The first start of the embedded model unpacks it (about 15 s); later starts take a second.")
        model = _cached_model(spec, device, dtype)
    box.empty()
    return model


@st.cache_resource(max_entries=8, show_spinner=False)
def _cached_capture(spec: str, device: str, dtype: str, text: str, bos: str) -> Capture:
    return capture(_cached_model(spec, device, dtype), text, bos)


def get_capture(request: Request, text: str) -> Capture:
    """One prompt's forward pass, run once per (model, text, BOS) and kept for every page."""
    get_model(request.model, request.device, request.dtype)
    return _cached_capture(request.model, request.device, request.dtype, text, request.bos)


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_comparison(spec: str, device: str, dtype: str, a: str, b: str, bos: str, k: int) -> Comparison:
    model = _cached_model(spec, device, dtype)
    cap_a = _cached_capture(spec, device, dtype, a, bos)
    cap_b = _cached_capture(spec, device, dtype, b, bos)
    return compare_captures(model, cap_a, cap_b, top_k=k)


def get_comparison(request: Request) -> Comparison:
    """The comparison for `request` (cached by value)."""
    if request.mode == "models":
        return get_model_comparison(request)
    get_model(request.model, request.device, request.dtype)
    with st.spinner("Running both prompts through the model…"):
        return _cached_comparison(
            request.model, request.device, request.dtype, request.a, request.b, request.bos, request.k
        )


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_model_comparison(
    spec1: str, spec2: str, device: str, dtype: str, text: str, bos: str, k: int
) -> Comparison:
    model1, model2 = _cached_model(spec1, device, dtype), _cached_model(spec2, device, dtype)
    check_same_tokens(model1, model2, text, bos)  # before either forward pass
    cap1 = _cached_capture(spec1, device, dtype, text, bos)
    cap2 = _cached_capture(spec2, device, dtype, text, bos)
    return compare_model_captures(model1, model2, cap1, cap2, top_k=k)


def _model_pair_key(request: Request) -> tuple[str, str, str, str]:
    """(model 1, model 2, device, dtype) of a two-models request, both loaded (the loading status
    shows while they load) and cached at once."""
    if not request.model2.strip():
        raise SettingsError("Type a second model to compare with (a hub id or a folder).")
    get_model(request.model, request.device, request.dtype)
    get_model(request.model2, request.device, request.dtype)
    return request.model, request.model2, request.device, request.dtype


def get_model_comparison(request: Request) -> Comparison:
    """Prompt `a` through model 1 (`model`) and model 2 (`model2`), both cached at once."""
    key = _model_pair_key(request)
    with st.spinner("Running the prompt through both models…"):
        return _cached_model_comparison(*key, request.a, request.bos, request.k)


def memory_caption() -> str:
    """The models held in memory, the bytes their weights take and where they run, e.g.
    'In memory: SmolLM2 (513 MB, cpu, float32), gpt2 (498 MB, cpu, float32) · 1.0 GB'."""
    models = [model for model, _ in _resident.values()]
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


def _model_key(request: Request) -> tuple[str, str, str]:
    return request.model, request.device, request.dtype


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_lens_grid(
    spec: str, device: str, dtype: str, text: str, bos: str, positions: tuple[int, ...], k: int
) -> LensGrid:
    cap = _cached_capture(spec, device, dtype, text, bos)
    return lens_grid(_cached_model(spec, device, dtype), cap, positions, k)


def get_lens_grid(request: Request, text: str, positions: tuple[int, ...]) -> LensGrid:
    """The lens at every layer for `positions` of one prompt: only those cells, once per value."""
    get_model(*_model_key(request))
    return _cached_lens_grid(*_model_key(request), text, request.bos, tuple(positions), request.k)


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_cell_detail(
    spec: str, device: str, dtype: str, text: str, bos: str, layer: int, position: int, k: int
) -> CellDetail:
    cap = _cached_capture(spec, device, dtype, text, bos)
    return cell_detail(_cached_model(spec, device, dtype), cap, layer, position, k)


def get_cell_detail(request: Request, text: str, layer: int, position: int) -> CellDetail:
    """One lens cell's top-k with each token's rank one layer below (cached by value)."""
    get_model(*_model_key(request))
    return _cached_cell_detail(*_model_key(request), text, request.bos, layer, position, request.k)


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_distance_report(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str, drop_bos: bool
) -> DistanceReport:
    model = _cached_model(spec, device, dtype)
    cap_a = _cached_capture(spec, device, dtype, a, bos)
    cap_b = _cached_capture(spec, device, dtype, b, bos)
    bos_a, bos_b = has_bos(model, cap_a), has_bos(model, cap_b)
    return distance_report(cap_a.residual, cap_b.residual, bos_a=bos_a, bos_b=bos_b, drop_bos=drop_bos)


def get_distance_report(request: Request, drop_bos: bool) -> DistanceReport:
    """A and B's residual distances per layer (and per position for equal lengths), cached by value."""
    get_model(*_model_key(request))
    return _cached_distance_report(*_model_key(request), request.a, request.b, request.bos, drop_bos)


def _model_and_captures(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str
) -> tuple[LoadedModel, Capture, Capture]:
    """The cached model and the cached captures of both prompts, for a cached result to start from."""
    model = _cached_model(spec, device, dtype)
    return model, _cached_capture(spec, device, dtype, a, bos), _cached_capture(spec, device, dtype, b, bos)


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_top_token_diff(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str, k: int, position_a: int, position_b: int
) -> TopTokenDiff:
    model, cap_a, cap_b = _model_and_captures(spec, device, dtype, a, b, bos)
    return top_token_diff(model, cap_a, cap_b, position_a=position_a, position_b=position_b, top_k=k)


def get_top_token_diff(request: Request, position_a: int, position_b: int) -> TopTokenDiff:
    """A's and B's lens distributions compared at every layer, at one position of each (cached by
    value); in two-models mode, prompt `a` through model 1 and through model 2."""
    if request.mode == "models":
        return get_model_token_diff(request, position_a, position_b)
    get_model(*_model_key(request))
    return _cached_top_token_diff(
        *_model_key(request), request.a, request.b, request.bos, request.k, position_a, position_b
    )


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_model_token_diff(
    spec1: str, spec2: str, device: str, dtype: str, text: str, bos: str, k: int,
    position_a: int, position_b: int,
) -> TopTokenDiff:
    model1, model2 = _cached_model(spec1, device, dtype), _cached_model(spec2, device, dtype)
    check_model_pair(model1, model2)  # before either forward pass
    check_same_tokens(model1, model2, text, bos)
    cap1 = _cached_capture(spec1, device, dtype, text, bos)
    cap2 = _cached_capture(spec2, device, dtype, text, bos)
    return top_token_diff(
        model1, cap1, cap2, position_a=position_a, position_b=position_b, top_k=k, loaded_b=model2
    )


def get_model_token_diff(request: Request, position_a: int, position_b: int) -> TopTokenDiff:
    """Model 1's and model 2's lens distributions on prompt `a`, compared at every layer (cached by value)."""
    return _cached_model_token_diff(
        *_model_pair_key(request), request.a, request.bos, request.k, position_a, position_b
    )


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_watch(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str, token_ids: tuple[int, ...]
) -> Watch:
    return watch_tokens(*_model_and_captures(spec, device, dtype, a, b, bos), token_ids)


def get_watch(request: Request, token_ids: tuple[int, ...]) -> Watch:
    """The watched tokens' logit, probability and rank per layer at the last position of A and B."""
    get_model(*_model_key(request))
    return _cached_watch(*_model_key(request), request.a, request.b, request.bos, tuple(token_ids))


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_bos_effect(
    spec: str, device: str, dtype: str, text: str, k: int, pair: tuple[int, int] | None
) -> BosEffect:
    cap_on, cap_off = (_cached_capture(spec, device, dtype, text, bos) for bos in ("on", "off"))
    return bos_effect(_cached_model(spec, device, dtype), cap_on, cap_off, top_k=k, pair=pair)


def get_bos_effect(request: Request, text: str, pair: tuple[int, int] | None) -> BosEffect:
    """`text` run with BOS on and with BOS off (two extra forward passes, once per value)."""
    get_model(*_model_key(request))
    with st.spinner("Running the prompt with and without BOS…"):
        return _cached_bos_effect(*_model_key(request), text, request.k, pair)


@st.cache_data(max_entries=16, show_spinner=False)
def _cached_patching(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str, answer: str | None, wrong: str | None
) -> PatchResult:
    cap_a = _cached_capture(spec, device, dtype, a, bos)
    cap_b = _cached_capture(spec, device, dtype, b, bos)
    # Made inside the cached function: updating an element made outside it cannot be replayed.
    bar = st.progress(0.0, text="Patching A into B…")
    try:
        return patch_captures(
            _cached_model(spec, device, dtype), cap_a, cap_b, answer=answer, wrong=wrong,
            progress=lambda done: bar.progress(done, text=f"Patching A into B: {done:.0%} of the runs done"),
        )
    finally:
        bar.empty()


def get_patching(request: Request, answer: str | None, wrong: str | None) -> PatchResult:
    """A's residual patched into B at every (layer, position), with a progress bar while it runs;
    answer / wrong as typed (None: A's and B's top-1). Cached by value."""
    get_model(*_model_key(request))
    return _cached_patching(*_model_key(request), request.a, request.b, request.bos, answer, wrong)


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_patched_lens(
    spec: str, device: str, dtype: str, a: str, b: str, bos: str, layer: int, position: int, k: int
) -> PatchedLens:
    cap_a = _cached_capture(spec, device, dtype, a, bos)
    cap_b = _cached_capture(spec, device, dtype, b, bos)
    return patched_lens_captures(_cached_model(spec, device, dtype), cap_a, cap_b, layer, position, top_k=k)


def get_patched_lens(request: Request, layer: int, position: int) -> PatchedLens:
    """B's lens column at its last position after patching A in at (layer, position): one pass, cached."""
    get_model(*_model_key(request))
    return _cached_patched_lens(
        *_model_key(request), request.a, request.b, request.bos, layer, position, request.k
    )


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
        model = get_model(request.model, request.device, request.dtype)
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
    'model 1'), its heading ('Prompt A', 'Model 1 · name'), its text, and a request whose `model` is
    the model that runs it — pass that request and text to `get_capture`, `get_lens_grid`…"""

    name: str
    title: str
    text: str
    request: Request


def sides(request: Request, comparison: Comparison) -> tuple[Side, Side]:
    """Sides a and b: prompts A and B through one model, or prompt `a` through model 1 and model 2."""
    from . import compare_frames as frames

    names, titles = frames.side_names(comparison), frames.side_titles(comparison)
    if request.mode == "models":
        second = (replace(request, model=request.model2), request.a)
    else:
        second = (request, request.b)
    runs = ((request, request.a), second)
    return tuple(Side(n, t, text, r) for n, t, (r, text) in zip(names, titles, runs, strict=True))


def draw_comparison(comparison: Comparison) -> None:
    """The Compare page's body for `comparison`, fresh or reopened from History: both prompts (as
    plain text) with their tokens and next token, the distance per layer, both logit lenses."""
    from . import compare_frames as frames

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
    """Run the selected page, marking that the entrypoint (and so the sidebar) ran first."""
    st.session_state[ENTRY_KEY] = True
    try:
        st.navigation(pages).run()
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
