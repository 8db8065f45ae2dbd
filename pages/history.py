"""History: the saved comparisons; reopen one (no model run), open it in all pages, rename, delete
(confirmed), export. On a shared twinlens, renaming and deleting are the operator's and the saver's."""

from __future__ import annotations

import zlib
from functools import partial

import pandas as pd
import streamlit as st

from lib.app import readable, session, views
from lib.app.access import Access
from lib.app.history import COMPARISON_KIND, History, SavedComparison, SavedEntry

views.page(
    "History",
    """
Comparisons saved with **Save** on the Compare page, newest first. They are kept in a local
database (`history.sqlite3` in the folder `$TWINLENS_DATA`, by default `~/.local/share/twinlens`)
and reopen exactly as they were saved, without running the model again. **Open in all pages**
makes the saved prompts and settings the current comparison (sidebar and address bar), so every
page shows it and a link copied afterwards shares it.

**Who may change what.** On a twinlens shared on a network, every browser can save comparisons,
reopen any of them and read the whole list. Renaming and deleting a comparison is for the
operator (the browser that opened the operator link) and for the browser session that saved it
(until that tab is reloaded or closed). **Export all** is the operator's; a guest exports its own
saves. On this machine alone (the default), every browser is the operator.
""",
)

CHOICE_KEY = "history_choice"  # the selectbox's key starts so; its options are ids
SELECTED_KEY = "history_selected"  # the id the page is on, kept across renames and deletes
CONFIRM_KEY = "history_confirm_delete"  # the id whose deletion waits for "Yes, delete"
PROMPT_SHOWN = 160  # characters of each prompt the delete confirmation quotes


def _remember_choice(key: str) -> None:
    st.session_state[SELECTED_KEY] = st.session_state[key]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PROMPT_SHOWN else text[: PROMPT_SHOWN - 1] + "…"


def confirm_delete(history: History, entry: SavedEntry, who: Access, neighbour: int | None) -> None:
    """The confirmation names the comparison (name and both prompts); Yes deletes exactly that id
    and moves the selection to its neighbour in the list."""
    st.warning(
        f"Delete saved comparison #{entry.id} **{views.plain(entry.name)}** "
        f"(prompt A: “{views.plain(_short(entry.prompt_a))}”, "
        f"prompt B: “{views.plain(_short(entry.prompt_b))}”) "
        "for good? This cannot be undone."
    )
    yes_col, no_col = st.columns(2)
    if yes_col.button("Yes, delete", type="primary", width="stretch"):
        history.delete(entry.id, by=who)
        st.session_state.pop(CONFIRM_KEY)
        st.session_state[SELECTED_KEY] = neighbour
        st.rerun()
    if no_col.button("Cancel", width="stretch"):
        st.session_state.pop(CONFIRM_KEY)
        st.rerun()


def manage(history: History, saved: SavedComparison, who: Access, neighbour: int | None) -> None:
    """Open in all pages; rename, delete (after a confirmation) when this browser may; export."""
    entry = saved.entry
    may_change = who.may_manage(entry.owner)
    st.button(
        "Open in all pages", icon=":material/open_in_new:", on_click=session.submit,
        args=(views.saved_request(saved, who),),
        help="Make this the current comparison: the sidebar, the address bar and every page show it.",
    )
    if may_change:
        with st.form("rename", border=False):
            name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
            name = name_col.text_input("Name", value=entry.name, key=f"rename-{entry.id}")
            if button_col.form_submit_button("Rename", width="stretch"):
                history.rename(entry.id, name, by=who)
                st.rerun()
    else:
        st.caption(
            f"Renaming and deleting #{entry.id} is for the operator and for the browser session that "
            "saved it."
        )
    delete_col, export_col, all_col = st.columns(3)
    if may_change and delete_col.button("🗑 Delete…", width="stretch"):
        st.session_state[CONFIRM_KEY] = entry.id
    export_col.download_button(
        "⬇ Export this (JSON)", history.export([entry.id]), file_name=f"twinlens-{entry.id}.json",
        mime="application/json", on_click="ignore", width="stretch",
    )
    all_col.download_button(  # built only when clicked: every saved comparison (a guest: its own)
        "⬇ Export all (JSON)" if who.operator else "⬇ Export mine (JSON)", partial(history.export, by=who),
        file_name="twinlens-history.json", mime="application/json", on_click="ignore", width="stretch",
    )
    if may_change and st.session_state.get(CONFIRM_KEY) == entry.id:
        confirm_delete(history, entry, who, neighbour)


def show(history: History) -> None:
    who = session.access()
    entries = history.list()
    if not entries:
        st.info("Nothing saved yet: compare two prompts, then press **Save** on the Compare page.")
        return
    table = pd.DataFrame([e.to_dict() for e in entries]).set_index("id")
    table["saved_at"] = [readable.when(e.saved_at) for e in entries]  # 'today 09:14', '3 Dec'
    table = table.rename(columns={"saved_at": "saved"})
    if who.shared:
        table["saved by"] = ["you" if who.owner == e.owner else "another browser" for e in entries]
    st.dataframe(table, width="stretch")
    ids = [e.id for e in entries]
    labels = {e.id: f"#{e.id} · {e.name}" for e in entries}
    chosen = st.session_state.get(SELECTED_KEY)
    if chosen not in ids:
        chosen = ids[0]
    st.session_state[SELECTED_KEY] = chosen
    # The browser answers with the text of the option it shows, so after a rename it would name an
    # option that no longer exists, and Streamlit would fall back to the first (another comparison).
    # A new list of labels is therefore a new widget, opened on the selected id.
    key = f"{CHOICE_KEY}-{zlib.crc32(repr(sorted(labels.items())).encode()):08x}"
    st.selectbox("Saved comparison", ids, index=ids.index(chosen), format_func=labels.__getitem__,
                 key=key, on_change=_remember_choice, args=(key,))
    position = ids.index(chosen)  # after a delete, the selection moves to the next older one (or newer)
    neighbour = next(iter(ids[position + 1:] or ids[:position][-1:]), None)
    saved = history.get(chosen)
    manage(history, saved, who, neighbour)
    st.divider()
    value = saved.value()  # rebuilt (a kind this twinlens cannot reopen is refused here)
    if saved.kind == COMPARISON_KIND:  # value() rebuilt a Comparison
        views.draw_comparison(value)
    else:  # another page's result: its saved numbers, as that page exported them
        st.caption(views.plain(f"A saved {saved.kind} result (as saved; no model was run to show it)."))
        st.json(saved.result["data"], expanded=1)


history = views.open_history()
if history is not None:
    show(history)
