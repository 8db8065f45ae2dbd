"""Drawing the pages share: plain text for Markdown, tokens as chips with their legend, the
Compare body (fresh or reopened from History), export buttons and the save form.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ..analyses.common.comparison import Comparison
from ..core.errors import HistoryError, TwinlensError
from ..core.tokens import align
from . import charts, export, glossary, readable
from . import compare_frames as frames
from .access import Access
from .cache import RunKey
from .export import ExportFile
from .history import DB_NAME, MAX_NAME, History, SavedComparison, data_dir
from .readable import plain
from .request import Request
from .session import access, keep, kept

if TYPE_CHECKING:
    import pandas as pd

ENTRY_KEY = "_twinlens_entrypoint_running"  # set while the entry page (and its sidebar) runs


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
    file_buttons(export_files(name, request, data, tables))


def file_buttons(files: Sequence[ExportFile]) -> None:
    """One download button per file, side by side; downloading does not rerun the page."""
    for column, file in zip(st.columns(len(files)), files, strict=True):
        column.download_button(
            f"⬇ {file.label}", file.content, file_name=file.file_name, mime=file.mime,
            key=f"download-{file.file_name}", on_click="ignore",
        )


def lens_notes(uses: Sequence) -> None:
    """Two-models mode: one sentence for each model read with the logit lens because it has no lens
    of the chosen kind (`lens_choice.LensUse.missing`)."""
    for note in dict.fromkeys(use.missing for use in uses if use.missing):
        st.info(plain(note))


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


def draw_comparison(comparison: Comparison, completes: Sequence[str | None] = (None, None)) -> list:
    """The Compare page's body for `comparison`, fresh or reopened from History: both prompts (as
    plain text) with their tokens and next token, the distance per layer, both logit lenses.
    `completes[i]`: the character side i's next token completes to when it is only part of one.
    Returns each side's empty place below its next token, for its answer (lib.app.answers)."""
    st.caption(frames.model_caption(comparison), help=glossary.MODEL_CAPTION)
    names = frames.side_names(comparison)  # A/B, or model 1/model 2
    sides = tuple(zip(names, frames.side_titles(comparison), (comparison.a, comparison.b), strict=True))
    matches = align(comparison.a.token_ids, comparison.b.token_ids)
    unmatched = [[m is None for m in match] for match in matches]
    places = []
    for col, (label, title, side), differs, whole in zip(st.columns(2), sides, unmatched, completes,
                                                          strict=True):
        with col:
            st.subheader(plain(title))
            prompt_text(side.text)
            top = side.final[0]
            into = f" → `{whole}`" if whole else ""
            st.markdown(f"**Next token ({plain(label)})**: `{top.token}`{into} — "
                        f"{plain(readable.next_token_sentence(top.token, top.prob, whole))}")
            places.append(st.empty())
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
    caption = comparison.settings.get("lens_caption")
    if caption and "lens2_caption" in comparison.settings:  # two models, each through its own lens
        caption = f"{names[0]}: {caption}; {names[1]}: {comparison.settings['lens2_caption']}"
    st.subheader("Lens at the last token" if caption else "Logit lens at the last token")
    if caption:
        st.caption(f"Read with: {caption} (every lens is the model's own prediction at the last layer).")
    for col, (_, title, side) in zip(st.columns(2), sides, strict=True):
        with col:
            st.markdown(f"**{plain(title)}**")
            st.html(readable.lens_table_html(frames.lens_frame(side)))  # fits the column, any k
    return places


def table(data: pd.DataFrame, column_config: Mapping | None = None, **kwargs) -> None:
    """st.dataframe whose float columns show `readable.READING_FORMAT` (4 decimals: float noise such
    as 0.000000000008 reads 0.0000) unless `column_config` formats them; only the display is
    rounded: the table (and its export) keeps every digit."""
    config = {
        column: st.column_config.NumberColumn(format=readable.READING_FORMAT)
        for column in data.columns if data[column].dtype.kind == "f"
    }
    st.dataframe(data, column_config={**config, **(column_config or {})}, **kwargs)


PRESENTATION_HELP = "Larger text and rows, one chart under the other: for a projector or a shared screen."


def presentation_toggle(key: str) -> bool:
    """A 'Presentation size' switch, kept while the user visits other pages."""
    kept(key)
    value = st.toggle("Presentation size", key=key, help=PRESENTATION_HELP)
    keep(key, value)
    return value


def side_columns(stacked: bool) -> list:
    """Places for sides a and b: side by side, or one under the other at the full width (`stacked`)."""
    return [st.container(), st.container()] if stacked else st.columns(2)


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


def save_form(request: Request, result: object, what: str = "comparison") -> None:
    """A name and a Save button: stores `result` (a Comparison, or any analysis's result) with
    `request` in the History."""
    default = " | ".join(run.text[:40] for run in request.runs)
    with st.form(f"save-{what}", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value=" ".join(default.split()), max_chars=MAX_NAME)
        if button_col.form_submit_button("💾 Save", width="stretch"):
            history = open_history()
            if history is not None:
                try:
                    saved_id = history.save(name, request.to_dict(), result, owner=access().owner)
                    st.success(f"Saved as #{saved_id}. Reopen it on the History page.")
                except HistoryError as exc:
                    show_error(exc)


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


def nav_bar(sections: Mapping[str, Sequence]) -> None:
    """Every page one click away, grouped: 'Where: Logit lens · Residual distances · …' on a line or
    two above the page (Streamlit's own top navigation folds sections into menus, and pages that do
    not fit into "more")."""
    with st.container(horizontal=True, gap="medium", key="twinlens-nav"):
        for name, pages in sections.items():
            with st.container(horizontal=True, gap="small", width="content"):
                if name:
                    st.caption(f"**{name}**")
                for page in pages:
                    st.page_link(page, label=page.title, icon=page.icon)


@contextmanager
def errors_shown() -> Iterator[None]:
    """A part of a page that may fail on its own while the rest goes on (e.g. attention patterns
    beside attributions): a TwinlensError raised inside becomes one st.error where the part stands.
    Anything else, and errors outside such parts, reach the page's one boundary (ui.run_pages)."""
    try:
        yield
    except TwinlensError as exc:
        show_error(exc)


def saved_request(saved: SavedComparison, who: Access) -> Request:
    """The request a saved comparison was made with (options a guest may not use turned off)."""
    known = {f.name for f in fields(Request)}
    try:
        request = Request(**{k: v for k, v in saved.settings.items() if k in known})
    except TypeError as exc:
        raise HistoryError(f"The settings saved with #{saved.entry.id} cannot be read: {exc}.") from exc
    if not who.expert:
        request = Request(**{**request.to_dict(), "trust_remote_code": False, "allow_pickle": False})
    return request

