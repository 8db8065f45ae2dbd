"""NDIF in the app: the API key field, and a remote job's progress bar with a Cancel button.

The key typed in the sidebar lives in this browser session's state only: it is not a field of the
`Request`, so it never reaches the URL, the results cache's keys, the History or an export, and
it is handed to the nnsight backend for the duration of each call (`using_api_key`). Without it
the backend reads `NDIF_API_KEY` from the environment.

Cancel: Streamlit stops a running script when a button is clicked, at the script's next
Streamlit call; the job's progress bar is redrawn every second while the client waits for NDIF,
so the wait ends within a second. The click then marks the request cancelled, and the page says
so instead of sending the job again until the user asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import streamlit as st

from ..core.errors import Cancelled
from .request import Request

T = TypeVar("T")
API_KEY_STATE = "ndif_api_key"  # the sidebar's password field (session state only)
CANCELLED_STATE = "_twinlens_cancelled_request"  # the request whose NDIF job the user cancelled
API_KEY_HELP = (
    "Your NDIF API key (https://login.ndif.us), kept only in this browser session: never in the "
    "link, the History or an export. Empty: the server's NDIF_API_KEY."
)


def api_key_field() -> None:
    """The sidebar's password field for the NDIF key."""
    st.text_input("NDIF API key", key=API_KEY_STATE, type="password", help=API_KEY_HELP)


@contextmanager
def session_api_key() -> Iterator[None]:
    """Runs inside use this session's typed key (if any) as the NDIF key."""
    key = st.session_state.get(API_KEY_STATE) or ""
    if not key.strip():
        yield
        return
    from ..core.nnsight_backend import using_api_key

    with using_api_key(key):
        yield


def watched_job(request: Request, compute: Callable[..., T]) -> T:
    """`compute(progress=…, cancel=…)` for a request that runs on NDIF, with a progress bar that
    names the job's status and a Cancel button; raises Cancelled when this request was cancelled."""
    if st.session_state.get(CANCELLED_STATE) == request:
        st.button("Run it again", on_click=st.session_state.pop, args=(CANCELLED_STATE, None))
        raise Cancelled("You cancelled this NDIF job; nothing was saved. Press “Run it again” to send it.")
    bar, button = st.empty(), st.empty()
    bar.progress(0.0, text="Sending the job to NDIF…")
    button.button("Cancel", key="ndif-cancel", on_click=_cancel, args=(request,))

    def progress(done: float, status: str = "") -> None:
        bar.progress(done, text=f"NDIF job: {status.lower()}…")

    try:
        return compute(progress=progress)
    finally:
        bar.empty()
        button.empty()


def _cancel(request: Request) -> None:
    st.session_state[CANCELLED_STATE] = request
