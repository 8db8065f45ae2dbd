"""History: the saved comparisons; reopen one (no model run), rename, delete (confirmed), export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.app import ui
from lib.app.history import History, SavedComparison
from lib.core.errors import HistoryError

ui.page(
    "History",
    """
Comparisons saved with **Save** on the Compare page, newest first. They are kept in a local
database (`history.sqlite3` in the folder `$TWINLENS_DATA`, by default `~/.local/share/twinlens`)
and reopen exactly as they were saved, without running the model again.
""",
)

CHOICE_KEY = "history_choice"
CONFIRM_KEY = "history_confirm_delete"  # the id whose deletion waits for "Yes, delete"


def manage(history: History, saved: SavedComparison) -> None:
    """Rename, delete (after a confirmation) and export the chosen comparison; all exports too."""
    entry = saved.entry
    with st.form("rename", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value=entry.name, key=f"rename-{entry.id}")
        if button_col.form_submit_button("Rename", width="stretch"):
            history.rename(entry.id, name)
            st.rerun()
    delete_col, export_col, all_col = st.columns(3)
    if delete_col.button("🗑 Delete…", width="stretch"):
        st.session_state[CONFIRM_KEY] = entry.id
    export_col.download_button(
        "⬇ Export this (JSON)", history.export([entry.id]), file_name=f"twinlens-{entry.id}.json",
        mime="application/json", on_click="ignore", width="stretch",
    )
    all_col.download_button(  # built only when clicked: every saved comparison in one file
        "⬇ Export all (JSON)", history.export, file_name="twinlens-history.json",
        mime="application/json", on_click="ignore", width="stretch",
    )
    if st.session_state.get(CONFIRM_KEY) == entry.id:
        st.warning(f"Delete saved comparison #{entry.id} for good? This cannot be undone.")
        yes_col, no_col = st.columns(2)
        if yes_col.button("Yes, delete", type="primary", width="stretch"):
            history.delete(entry.id)
            st.session_state.pop(CONFIRM_KEY)
            st.rerun()
        if no_col.button("Cancel", width="stretch"):
            st.session_state.pop(CONFIRM_KEY)
            st.rerun()


def show(history: History) -> None:
    entries = history.list()
    if not entries:
        st.info("Nothing saved yet: compare two prompts, then press **Save** on the Compare page.")
        return
    st.dataframe(pd.DataFrame([e.to_dict() for e in entries]).set_index("id"), width="stretch")
    labels = {e.id: f"#{e.id} · {e.name}" for e in entries}
    chosen = st.selectbox("Saved comparison", list(labels), format_func=labels.__getitem__, key=CHOICE_KEY)
    saved = history.get(chosen)
    manage(history, saved)
    st.divider()
    ui.draw_comparison(saved.comparison())


history = ui.open_history()
if history is not None:
    try:
        show(history)
    except HistoryError as exc:
        ui.show_error(exc)
