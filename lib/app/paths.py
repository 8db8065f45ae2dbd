"""The app's inputs that name a path or a remote spec: drawn here, read only through the access policy.

A page never reads such a text input's value itself: `path_input` draws the input declared in
`access.PATH_INPUTS` (by its widget key) and hands back what `Access.check_input` returns — the
operator's text as typed, a guest's path inside a listed folder (resolved), or an AccessError with
the one message that says nothing of the disk (shown by the page's error boundary). The model
fields of the sidebar are checked where models load (`ui.check_key`), with the same function.
"""

from __future__ import annotations

import streamlit as st

from . import access as sharing
from .session import access


def declared(key: str) -> sharing.PathInput:
    """The declaration of the path input with widget key `key` (a bug when there is none)."""
    for entry in sharing.PATH_INPUTS:
        if entry.key == key:
            return entry
    raise LookupError(f"'{key}' is not declared in lib.app.access.PATH_INPUTS")


def path_input(label: str, key: str, *, help: str | None = None, **kwargs) -> str:  # noqa: A002
    """A text input for a path or remote spec of the kind declared for `key`: '' when empty, else
    what the access policy lets this session read (raises AccessError otherwise)."""
    entry = declared(key)
    who = access()
    if not who.expert:
        where = ", ".join(str(f) for f in who.folders) or "none"
        help = ((help + " ") if help else "") + f"On this shared twinlens: inside {where} only."
    value = st.text_input(label, key=key, help=help, **kwargs)
    return who.check_input(value, entry.kind)
