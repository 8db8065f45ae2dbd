"""twinlens — the entry page: navigation and the sidebar every page shares.

Run with `make run` (or `streamlit run dashboard.py`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib.app import glossary, lens_choice, ndif, registry, session, ui
from lib.app.examples import EXAMPLES
from lib.app.request import BOS_MODES, MAX_CONTINUE, MAX_TOP_K, MODES, WIDGET_FIELDS, Request

HERE = Path(__file__).parent
# A local icon: a Material or emoji page icon makes the browser fetch it from an online font service.
st.set_page_config(page_title="twinlens", page_icon=str(HERE / "lib" / "app" / "twinlens.png"), layout="wide")
def chat_settings() -> None:
    """Raw text or chat (always visible), the chat's system message and answer start, and the
    switch that appends each prompt's continuation to it for every view."""
    st.radio(
        "Read prompts as", [False, True], key="chat", horizontal=True,
        format_func=lambda chat: "chat" if chat else "raw text",
        help="chat: each prompt is a user message through the model's chat template (with the "
             "generation prompt); raw text: the prompt as typed.",
    )
    with st.expander("Chat: system message and answer start"):
        st.text_input("System message", key="system", help="Chat only; empty: the template's default")
        st.text_input("Start of the answer", key="prefill", help="Chat only, e.g. 'Yes, here it is:'")
    st.number_input(
        "Analyse the continuation (new tokens)", min_value=0, max_value=MAX_CONTINUE, key="continue_for",
        help="0: off. N: each prompt's greedy continuation of N tokens is appended to it, and every view "
             "covers the generated tokens too.",
    )


def sidebar() -> None:
    """Model and both prompts in one form, so typing does not rerun the page, with Compare right below
    them and the example pairs next, both on screen at 1440×900; then the settings (BOS, top-k, chat,
    backend), which the next Compare reads. The URL is kept in step with the request so it can be shared."""
    session.adopt_operator_link()
    session.adopt_query_params()
    who = session.access()
    defaults = session.current_request() or Request()
    for key, field in WIDGET_FIELDS.items():
        st.session_state.setdefault(key, getattr(defaults, field))
    with st.sidebar:
        st.title("twinlens")
        st.caption("Where, inside a language model, do two prompts part ways?")
        st.radio("Compare", list(MODES), format_func=MODES.get, key="mode", horizontal=True)
        two_models = st.session_state["mode"] == "models"
        with st.form("request"):
            st.text_input(
                "Model 1" if two_models else "Model", key="model",
                help="'default' (embedded SmolLM2-135M), a hub id such as gpt2, or a local folder"
                + ("" if who.expert else " inside one the operator listed"
                   + ("" if who.hub else "; hub ids only if the operator allows guests to fetch them")),
            )
            if two_models:
                st.text_input("Model 2", key="model2", help="Same tokenizer as model 1, e.g. its fine-tune")
                st.text_area("Prompt", key="prompt_a", height=90)
            else:
                st.text_area("Prompt A", key="prompt_a", height=90)
                st.text_area("Prompt B", key="prompt_b", height=90)
            if st.form_submit_button("Compare", type="primary", width="stretch"):
                values = {field: st.session_state[key] for key, field in WIDGET_FIELDS.items()}
                values["model"] = values["model"].strip() or "default"
                values["model2"] = values["model2"].strip()
                values["k"] = int(values["k"])
                values["chat"] = bool(values["chat"])
                values["continue_for"] = int(values["continue_for"])
                session.set_request(Request(**values))
        with st.expander("Example pairs", expanded=session.current_request() is None):
            for example in EXAMPLES:
                st.button(example.name, help=example.why, on_click=session.use_example, args=(example,),
                          width="stretch")
        settings(who.expert)
        session.expert_warning()
        session.role_caption()
    session.write_query_params()


def settings(expert: bool) -> None:
    """BOS, top-k, chat, backend and (for the operator) the expert options: outside the form, so
    they stay below Compare, and read by the next Compare."""
    st.caption("Settings, used at the next **Compare**:")
    left, right = st.columns(2)
    left.selectbox("Start token (BOS)", BOS_MODES, key="bos", help=glossary.BOS)
    right.number_input("Words per list", min_value=1, max_value=MAX_TOP_K, key="top_k", help=glossary.TOP_K)
    st.selectbox("Lens", lens_choice.LENS_KINDS, key="lens", help=lens_choice.LENS_HELP,
                 format_func=lens_choice.lens_label)
    chat_settings()
    st.radio("Backend", ("local", "nnsight", "ndif"), key="backend", horizontal=True,
             help=session.BACKEND_HELP, format_func=lambda b: "NDIF (remote)" if b == "ndif" else b)
    ndif.api_key_field()
    if expert:  # a guest is not shown them (and ui refuses them where models load)
        with st.expander("Expert: options that run a model's code"):
            st.checkbox("Trust remote code", key="trust_remote_code", help=session.TRUST_REMOTE_CODE_HELP)
            st.checkbox("Allow pickle weights (.bin)", key="allow_pickle", help=session.ALLOW_PICKLE_HELP)


def main() -> None:
    sidebar()
    session.remote_expert_banner()
    memory = st.sidebar.empty()
    memory.caption(ui.memory_caption())
    request = session.current_request()
    two_models = request is not None and request.mode == "models"
    sections: dict[str, list] = {}
    for analysis in registry.PAGES:
        if analysis.two_models or not two_models:
            page = st.Page(analysis.page, title=analysis.title, icon=analysis.icon,
                           default=analysis.name == registry.DEFAULT)
            sections.setdefault(analysis.section, []).append(page)
    ui.run_pages(sections)
    memory.caption(ui.memory_caption())  # with the models this run loaded


main()
