"""Streamlit helpers shared by the pages: the request in the sidebar, cached model and results.

The only module of `lib` that imports Streamlit. The model is cached once per process and
shared by every session (`max_entries=1`); captured prompts and comparisons are cached by value,
so switching pages or changing a display option runs no new forward pass.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlencode

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ..analyses.compare import Comparison, compare_captures
from ..analyses.model_compare import check_same_tokens, compare_model_captures
from ..core.capture import Capture, check_length
from ..core.errors import HistoryError, ModelLoadError, SettingsError, TwinlensError, unexpected
from ..core.models import LoadedModel
from ..core.tokens import align, check_prompts, encode
from . import access as sharing
from . import charts, export, readable
from . import compare_frames as frames
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
OPERATOR_KEY = "_twinlens_operator_proof"  # the secret from the operator link (never a widget key)
OWNER_KEY = "_twinlens_owner"  # this session's random id, stored with the comparisons it saves
PAGE_QUERY_KEY = "_twinlens_page_query"  # the opening link's page parameters, until the page takes them
KEPT = "_twinlens_kept:"  # + widget key: its value kept while the user is on another page
# A page's own state in a shared link (each page adds and removes only its own).
PAGE_PARAMS = ("watch", "answer", "wrong", "lens_layer", "lens_offset", "diff_layer")
MAX_LINK_CHARS = 2000  # longer links break in chat apps and some servers: the prompts are left out
T = TypeVar("T")


def current_request() -> Request | None:
    """The last request submitted in this session, or None before the first Compare. For a
    session without the expert options (a guest), their flags are off whatever was stored."""
    request = st.session_state.get(REQUEST_KEY)
    if request is not None and (request.trust_remote_code or request.allow_pickle) and not access().expert:
        request = st.session_state[REQUEST_KEY] = _without_expert(request)
    return request


def set_request(request: Request) -> None:
    if (request.trust_remote_code or request.allow_pickle) and not access().expert:
        request = _without_expert(request)
    st.session_state[REQUEST_KEY] = request


def _without_expert(request: Request) -> Request:
    return replace(request, trust_remote_code=False, allow_pickle=False)


def policy() -> sharing.Policy:
    """This server's sharing settings: its configured address (`server.address`, never the
    client's IP address) and the environment. A shared server started without
    $TWINLENS_OPERATOR_TOKEN (plain `streamlit run`) makes one up and prints the operator link."""
    address = st.get_option("server.address")
    token = None
    if sharing.listens_beyond_loopback(address) and not os.environ.get(sharing.TOKEN_ENV, "").strip():
        token, made_now = sharing.process_token()
        if made_now:
            links = sharing.operator_links(address, int(st.get_option("server.port")), token,
                                           [socket.gethostname()])
            print("twinlens is shared on the network. Operator link (every option; keep it to "
                  "yourself):\n    " + "\n    ".join(links), file=sys.stderr, flush=True)
    return sharing.Policy.make(address, token=token)


def access() -> sharing.Access:
    """What this browser session may do (see lib.app.access): the operator, or a guest."""
    state = st.session_state
    if not state.get(OWNER_KEY):
        state[OWNER_KEY] = uuid.uuid4().hex
    return policy().access(state.get(OPERATOR_KEY), state[OWNER_KEY])


def adopt_operator_link() -> None:
    """The operator link (`?token=…`): a session that opened it with this start's secret is the
    operator from now on. The secret leaves the address bar at once (so a link copied later does
    not carry it); a wrong or old secret leaves the session a guest, and it is told so."""
    if sharing.TOKEN_PARAM not in st.query_params:
        return
    given = st.query_params.get(sharing.TOKEN_PARAM)
    del st.query_params[sharing.TOKEN_PARAM]
    current = policy()
    if not current.shared:
        return  # on loopback every browser is the operator already
    if current.is_operator_proof(given):
        st.session_state[OPERATOR_KEY] = given
    else:
        st.sidebar.warning("This operator link does not match this start of twinlens (wrong or old "
                           "secret): you are a guest. The operator link is printed where twinlens "
                           "was started.")


def role_caption() -> None:
    """On a shared server, a line in the sidebar saying what this browser may do."""
    who = access()
    if not who.shared:
        return
    if who.operator:
        st.caption("🔑 You are the **operator** of this shared twinlens: every option is yours.")
    elif who.expert:
        st.caption("You are a guest; the operator let guests use every model option.")
    else:
        folders = ", ".join(plain(str(f)) for f in who.folders) or "none"
        st.caption(
            "You are a **guest** on this shared twinlens: models are 'default', hub ids and the folders "
            f"the operator listed ({folders}); options that run a model's code are the operator's."
        )


def remote_expert_banner() -> None:
    """A warning on every page, for everyone, while ALLOW_REMOTE_EXPERT widens what guests may do."""
    current = policy()
    if current.shared and current.remote_expert:
        st.warning(
            "⚠️ This twinlens was started with ALLOW_REMOTE_EXPERT=1: every browser on the network may "
            "turn on trust remote code and pickle weights and load any folder of the host, so a model's "
            "files can run code on the machine that runs twinlens."
        )


def submit(request: Request) -> None:
    """Make `request` the current one and show it in the sidebar (call before the widgets render)."""
    for key, field in WIDGET_FIELDS.items():
        st.session_state[key] = getattr(request, field)
    set_request(request)


EXAMPLE_BOS_KEY = "_twinlens_example_bos"  # (the BOS an example set, the user's own BOS before it)


def use_example(example: Example) -> None:
    """An example button's on_click: both prompts (and the example's BOS, if it sets one) are filled
    in and compared with the model and top-k currently in the sidebar. A BOS an example turned on
    lasts for that example only: the next example gets the user's own BOS back (unless the user
    changed the BOS in between)."""
    state = st.session_state
    bos = state.get("bos", Request.bos)
    set_by_example, own = state.pop(EXAMPLE_BOS_KEY, (None, None))
    if set_by_example is not None and bos == set_by_example:
        bos = own
    if example.bos:
        state[EXAMPLE_BOS_KEY] = (example.bos, bos)
    submit(
        Request(
            model=str(state.get("model", "")).strip() or Request.model,
            a=example.a,
            b=example.b,
            bos=example.bos or bos,
            chat=example.chat,
            system=str(state.get("system", "")) if example.chat else "",
            prefill=example.prefill,
            k=int(state.get("top_k", Request.k)),
            trust_remote_code=bool(state.get("trust_remote_code", False)),
            allow_pickle=bool(state.get("allow_pickle", False)),
            backend=str(state.get("backend", Request.backend)),
        )
    )


def adopt_query_params() -> None:
    """At a session's first run, a shareable URL (`?model=…&a=…&b=…&bos=…&k=…`) becomes the
    request, so the page it names draws at once. The sidebar calls this before its widgets."""
    if st.session_state.get(QUERY_READ_KEY):
        return
    st.session_state[QUERY_READ_KEY] = True
    st.session_state[PAGE_QUERY_KEY] = {
        name: value for name, value in st.query_params.to_dict().items() if name in PAGE_PARAMS
    }
    if not any(name in st.query_params for name in QUERY_FIELDS):
        return
    try:
        submit(Request.from_query(st.query_params.to_dict()))
    except SettingsError as exc:
        st.sidebar.error(plain(str(exc)))


def write_query_params() -> None:
    """Keep the URL shareable: after each compare (and page switch), it names the current request
    (prompts too long for a link are left out, with a note); the page then adds its own state."""
    request = current_request()
    if request is None:
        return
    wanted = request.to_query()
    if len(urlencode(wanted)) > MAX_LINK_CHARS:
        size = len(urlencode({"a": wanted.pop("a"), "b": wanted.pop("b")}))
        st.sidebar.caption(
            f"The prompts are too long for a link ({size:,} characters once encoded): a copied link "
            "carries the model and settings only. Use the JSON export to share the prompts."
        )
    for name in (*PAIR_QUERY_FIELDS, *CHAT_QUERY_FIELDS, "a", "b", *PAGE_PARAMS):  # left over
        if name in st.query_params and name not in wanted:
            del st.query_params[name]
    if any(st.query_params.get(name) != value for name, value in wanted.items()):
        st.query_params.update(wanted)


def linked(key: str, name: str, cast: Callable[[str], object] = str) -> None:
    """Call before drawing the widget `key`, whose state a link carries as `name`: a shared link's
    value fills it on the session's first visit to the page; otherwise the value the user left on
    this page comes back (Streamlit forgets a widget's value while its page is not shown)."""
    pending = st.session_state.get(PAGE_QUERY_KEY, {})
    if name in pending:
        try:
            st.session_state[key] = cast(pending.pop(name))
        except ValueError:
            pass
    elif key not in st.session_state and KEPT + key in st.session_state:
        st.session_state[key] = st.session_state[KEPT + key]


def share(key: str, name: str, value: object, default: object = None) -> None:
    """Call after drawing the widget `key`: its value is kept for the next visit to the page and
    written into the link as `name` (left out while it is empty or `default`)."""
    st.session_state[KEPT + key] = value
    if value is None or value == "" or value == default:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)


TRUST_REMOTE_CODE_HELP = (
    "Runs Python code that comes with the model (trust_remote_code): only for a model whose code "
    "you have read. Off by default."
)
ALLOW_PICKLE_HELP = (
    "Reads pytorch_model.bin weights with pickle, which can run code hidden in the file: only for "
    "files you trust. Off by default; safetensors weights never need it."
)


BACKEND_HELP = (
    "local: PyTorch hooks in this process. nnsight: the same views as nnsight traces (same numbers). "
    "Models too big for this machine run on NDIF, which hosts e.g. meta-llama/Llama-3.1-8B, "
    "Llama-3.1-70B and Llama-3.1-405B: from the command line for now, with --remote and the API key in "
    "NDIF_API_KEY (docs/scale.md)."
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
            get_model(value if isinstance(value, ModelKey) else value.model)
    return RESULTS.get(fn, *args, _progress=_progress, **kwargs)


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
            return cached(compare_model_captures, run_a.model, run_b.model, run_a, run_b, top_k=request.k)
        return cached(compare_captures, run_a.model, run_a, run_b, top_k=request.k)


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
        f"{plain(m.name)} ({_size(m.memory_bytes)}, {_runs_on(m)}{_loaded_by(k, who)})" for k, m in held
    )
    return f"In memory: {listed} · {_size(total)}" if len(models) > 1 else f"In memory: {listed}"


def _loaded_by(key: object, who: sharing.Access) -> str:
    """On a shared server, who loaded the model: you, the operator or a guest."""
    if not who.shared:
        return ""
    operator, owner = _LOADED_BY.get(key, (True, ""))  # type: ignore[arg-type]
    if owner and owner == who.owner:
        return "; loaded by you"
    return "; loaded by the operator" if operator else "; loaded by a guest"


def _runs_on(model: LoadedModel) -> str:
    """The device and dtype `load_model` chose ('auto': CUDA, then MPS, then the CPU; float32 on the CPU)."""
    return f"{model.device.type}, {str(model.dtype).removeprefix('torch.')}"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def export_files(
    name: str, request: Request, data: Mapping, tables: Mapping[str, pd.DataFrame]
) -> list[ExportFile]:
    """`data` with the request as `<stem>.json`, then each table as `<stem>-<table>.csv`; the stem
    is `name` with a slug of the prompts (`export.file_stem`), so two exports do not collide."""
    texts = [request.a] if request.two_models else [request.a, request.b]
    stem = export.file_stem(name, [*texts, request.model, request.model2])
    return export.export_files(stem, request.to_dict(), data, tables)


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


def prompt_text(text: str) -> None:
    """A prompt as plain text; a long one as its start … end, the whole of it in an expander."""
    short = readable.shortened(text)
    if short is None:
        st.text(text)
        return
    st.text(short)
    with st.expander(f"Whole prompt ({len(text):,} characters)"):
        st.text(text)


def token_chips(tokens: Sequence[str], differs: Sequence[bool] | None = None,
                ids: Sequence[int] | None = None) -> None:
    """Tokens as chips that wrap, the differing ones highlighted (see `readable.chips_html`)."""
    st.html(readable.chips_html(tokens, differs, ids))


def token_legend() -> None:
    """The one-line legend of the marks in readable tokens (␣, ↵, <F0 9F>)."""
    st.caption(plain(readable.TOKEN_LEGEND))


def draw_comparison(comparison: Comparison) -> None:
    """The Compare page's body for `comparison`, fresh or reopened from History: both prompts (as
    plain text) with their tokens and next token, the distance per layer, both logit lenses."""
    st.caption(frames.model_caption(comparison))
    names = frames.side_names(comparison)  # A/B, or model 1/model 2
    sides = tuple(zip(names, frames.side_titles(comparison), (comparison.a, comparison.b), strict=True))
    matches = align(comparison.a.token_ids, comparison.b.token_ids)
    unmatched = [[m is None for m in match] for match in matches]
    for col, (label, title, side), differs in zip(st.columns(2), sides, unmatched, strict=True):
        with col:
            st.subheader(plain(title))
            prompt_text(side.text)
            top = side.final[0]
            st.markdown(f"**Next token ({plain(label)})**: `{top.token}` — "
                        f"{plain(readable.next_token_sentence(top.token, top.prob))}")
            token_chips(side.tokens, differs, side.token_ids)
    token_legend()
    st.subheader(f"Distance between {names[0]} and {names[1]} at the last token, per layer")
    distance = comparison.distance
    if distance is None:
        st.info(comparison.note)
    else:
        peak = distance.peak_layer("cosine")
        lines = charts.layer_lines(charts.measures_frame(distance), "value", y_title="distance", floor=0.0)
        st.altair_chart(lines, width="stretch")
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
                    saved_id = history.save(name, request.to_dict(), comparison, owner=access().owner)
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
