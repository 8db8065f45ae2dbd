"""This browser session: the request it submitted, the link it opened (and the page state a link
carries), and what it may do on a shared server (lib.app.access). Streamlit session state only.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import streamlit as st

from ..core.errors import SettingsError
from . import access as sharing
from . import glossary
from .examples import Example
from .readable import plain
from .request import (
    CHAT_QUERY_FIELDS,
    LENS_QUERY_FIELDS,
    PAIR_QUERY_FIELDS,
    QUERY_FIELDS,
    WIDGET_FIELDS,
    Request,
)

if TYPE_CHECKING:
    pass


REQUEST_KEY = "twinlens_request"


QUERY_READ_KEY = "_twinlens_query_read"


OPERATOR_KEY = "_twinlens_operator_proof"  # the secret from the operator link (never a widget key)


OWNER_KEY = "_twinlens_owner"  # this session's random id, stored with the comparisons it saves


PAGE_QUERY_KEY = "_twinlens_page_query"  # the opening link's page parameters, until the page takes them


KEPT = "_twinlens_kept:"  # + widget key: its value kept while the user is on another page


# A page's own state in a shared link (each page adds and removes only its own).
PAGE_PARAMS = ("watch", "answer", "wrong", "lens_layer", "lens_offset", "diff_layer", "score", "patch_layer",
               "patch_position", "measure",
               "features_layer", "steer_layer", "steer_alpha", "steer_mode", "steer_vector", "steer_target")
PAGE_PARAMS += ("circuit_edges", "circuit_ig", "circuit_coarse", "circuit_node")  # the Circuit page


# Widgets whose value was typed for one pair of prompts (the words a metric compares): reset when
# the pair changes, so an example clicked on Patching does not run with the last pair's words.
PAIR_STATE = ("patching-answer", "patching-wrong", "components-answer", "components-wrong",
              "steering-answer", "steering-wrong")


MAX_LINK_CHARS = 2000  # longer links break in chat apps and some servers: the prompts are left out


def current_request() -> Request | None:
    """The last request submitted in this session, or None before the first Compare. For a
    session without the expert options (a guest), their flags are off whatever was stored."""
    request = st.session_state.get(REQUEST_KEY)
    if request is not None and (request.trust_remote_code or request.allow_pickle) and not access().expert:
        request = st.session_state[REQUEST_KEY] = _without_expert(request)
    return request


def set_request(request: Request) -> None:
    """Make `request` the current one; when it is another pair (`Request.pair`), the page state
    that belongs to a pair (`PAIR_STATE`) is forgotten."""
    if (request.trust_remote_code or request.allow_pickle) and not access().expert:
        request = _without_expert(request)
    previous = st.session_state.get(REQUEST_KEY)
    if previous is not None and previous.pair != request.pair:
        for key in PAIR_STATE:
            st.session_state.pop(key, None)
            st.session_state.pop(KEPT + key, None)
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
        hub = " hub ids," if who.hub else ""
        st.caption(
            f"You are a **guest** on this shared twinlens: models are 'default',{hub} and models and SAEs "
            f"in the folders the operator listed ({folders}); options that run a model's code are the "
            "operator's."
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
            lens=str(state.get("lens", Request.lens)),
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
    leftover = (*PAIR_QUERY_FIELDS, *CHAT_QUERY_FIELDS, *LENS_QUERY_FIELDS, "a", "b", *PAGE_PARAMS)
    for name in leftover:
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
    else:
        kept(key)


def kept(key: str) -> None:
    """Call before drawing the widget `key`: the value the user left on this page comes back
    (Streamlit forgets a widget's value while its page is not shown); `keep` stores it."""
    if key not in st.session_state and KEPT + key in st.session_state:
        st.session_state[key] = st.session_state[KEPT + key]


def keep(key: str, value: object) -> None:
    """Call after drawing the widget `key`: its value comes back on the next visit (see `kept`)."""
    st.session_state[KEPT + key] = value


def link_carries(name: str) -> bool:
    """Whether the link this session opened carries the page parameter `name`, not yet taken by its widget."""
    return name in st.session_state.get(PAGE_QUERY_KEY, {})


def share(key: str, name: str, value: object, default: object = None) -> None:
    """Call after drawing the widget `key`: its value is kept for the next visit to the page and
    written into the link as `name` (left out while it is empty or `default`)."""
    keep(key, value)
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
    + glossary.NDIF
    + " NDIF (remote): the model runs on NDIF, which hosts e.g. meta-llama/Llama-3.1-8B, Llama-3.1-70B "
    "and Llama-3.1-405B (type its hub id as the model); the API key comes from the field below or "
    "NDIF_API_KEY. On NDIF the Compare page runs reduced on the server; views that need whole "
    "residual streams say so (docs/scale.md)."
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


def asked(label: str, key: str, wanted: object, *, also: bool = False, **button: object) -> bool:
    """A "run when asked" gate: a button whose press (or `also`, e.g. a shared link that names a
    result) keeps its work shown for as long as `wanted` (the inputs the work depends on) stays the
    same; a change of input asks again."""
    if st.button(label, key=key, **button) or also:
        st.session_state[f"{key}-asked"] = wanted
    return st.session_state.get(f"{key}-asked") == wanted
