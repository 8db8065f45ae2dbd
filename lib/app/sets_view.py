"""The Sets page's parts: the two sets (a shipped example, pasted lists or uploaded files), the run
with its progress (prompts run, then layers probed) and Cancel, and the drawing of a comparison:
the sentence, probe and distance curves, the lens over the sets, the vector file and the rows.

Cancel works as for NDIF jobs (lib.app.ndif): clicking it stops the running script at its next
Streamlit call, which the progress bar makes after every batch and every layer; the click marks
these sets cancelled, and the page says so instead of starting again until the user asks.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from ..analyses.sets import (
    SHIPPED,
    PromptSets,
    SetComparison,
    SetMeasures,
    measure_sets,
    prompt_sets,
    read_lines,
    read_table,
    shipped_sets,
)
from ..core.errors import Cancelled, HistoryError, PromptError
from . import charts, export, ui
from .request import Request
from .session import access, current_request, submit
from .views import file_buttons, open_history, plain, show_error

SOURCES = {"example": "a shipped example", "paste": "paste two lists", "upload": "upload files"}
SETS_KEY = "_twinlens_sets"  # the PromptSets this session last submitted
CANCELLED_KEY = "_twinlens_sets_cancelled"  # (model, sets) whose run the user cancelled
TABLE_SUFFIXES = (".csv", ".jsonl")


def model_request() -> Request:
    """The model, BOS and chat settings of the sidebar's last Compare (the defaults before one)."""
    request = current_request() or Request()
    chat = "chat" if request.chat else "raw text"
    st.caption(f"Model **{plain(request.model)}** · BOS {request.bos} · prompts read as {chat} — the "
               "sidebar's settings at its last **Compare**.")
    return request


def sets_form() -> PromptSets | None:
    """The inputs in one form; on **Compare sets**, the sets read from them (a bad input raises
    PromptError, one sentence naming the rows, and the inputs stay as typed). Then the sets this
    session last submitted, or None before any."""
    source = st.radio("Sets from", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="sets_source")
    with st.form("sets-form"):
        if source == "example":
            st.selectbox("Example (50 pairs each, CC0)", list(SHIPPED), key="sets_example")
        elif source == "paste":
            left, right = st.columns(2)
            left.text_area("Set A, one prompt a line", key="sets_a", height=200)
            right.text_area("Set B, one prompt a line", key="sets_b", height=200)
        else:
            left, right = st.columns(2)
            left.file_uploader("Set A (.txt), or one table of pairs (.csv / .jsonl with columns a, b)",
                               type=["txt", "csv", "jsonl"], key="sets_file_a")
            right.file_uploader("Set B (.txt; none with a table)", type=["txt"], key="sets_file_b")
        if source != "example":
            st.checkbox("Paired: line i of A goes with line i of B", key="sets_paired")
        st.number_input("Token position (−1: the last token; from the start when ≥ 0)", value=-1, step=1,
                        key="sets_position")
        st.checkbox("The lens over the sets", value=True, key="sets_lens",
                    help="Reads every layer of every prompt through the unembedding: on a small model "
                         "about as much work as running the prompts. Off: only each prompt's answer.")
        pressed = st.form_submit_button("Compare sets", type="primary")
    if pressed:
        st.session_state.pop(SETS_KEY, None)
        st.session_state[SETS_KEY] = _read(source)
    return st.session_state.get(SETS_KEY)


def _read(source: str) -> PromptSets:
    state = st.session_state
    if source == "example":
        return shipped_sets(state["sets_example"])
    paired = bool(state.get("sets_paired"))
    if source == "paste":
        return prompt_sets(read_lines(state.get("sets_a", ""), "A"), read_lines(state.get("sets_b", ""), "B"),
                           paired)
    files = (state.get("sets_file_a"), state.get("sets_file_b"))
    return read_uploads(*((f.name, f.getvalue()) if f is not None else None for f in files), paired)


Upload = tuple[str, bytes]  # a file's name and content


def read_uploads(file_a: Upload | None, file_b: Upload | None, paired: bool) -> PromptSets:
    """The sets from uploaded files (name, content): one table of pairs (.csv/.jsonl, paired), or
    two lists of one prompt a line."""
    if file_a is None:
        raise PromptError("Upload set A (a .txt file), or one table of pairs (.csv or .jsonl).")
    suffix = "." + file_a[0].rsplit(".", 1)[-1].lower()
    if suffix in TABLE_SUFFIXES:
        if file_b is not None:
            raise PromptError(f"'{file_a[0]}' holds both sets; remove set B's file.")
        a, b = read_table(_text(*file_a), suffix[1:])
        return prompt_sets(a, b, paired=True)
    if file_b is None:
        raise PromptError("Upload set B too (a .txt file, one prompt a line).")
    return prompt_sets(read_lines(_text(*file_a), "A"), read_lines(_text(*file_b), "B"), paired)


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptError(f"'{name}' is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc


def measured(request: Request, sets: PromptSets) -> SetMeasures:
    """The sets measured through the request's model (cached for every page and session), with a
    progress bar that counts prompts, then layers, and a Cancel button."""
    key = (request.model_key, sets, int(st.session_state.get("sets_position", -1)),
           bool(st.session_state.get("sets_lens", True)))
    if st.session_state.get(CANCELLED_KEY) == key:
        st.button("Run it again", on_click=st.session_state.pop, args=(CANCELLED_KEY, None))
        raise Cancelled("You cancelled this comparison of sets; nothing was saved. Press “Run it again”.")
    total = len(sets.a) + len(sets.b)
    bar, button = st.empty(), st.empty()
    bar.progress(0.0, text=f"Running {total:,} prompts…")
    button.button("Cancel", key="sets-cancel", on_click=_cancel, args=(key,))

    def progress(done: int, of: int, stage: str) -> None:
        if stage == "prompts":
            bar.progress(0.5 * done / of, text=f"Ran {done:,} of {of:,} prompts…")
        else:
            bar.progress(0.5 + 0.5 * done / of, text=f"Probed {done} of {of} layers…")

    try:
        return ui.cached(measure_sets, request.model_key, sets, bos=request.bos, chat=request.chat_settings,
                         position=key[2], lens=key[3], _progress=progress)
    finally:
        bar.empty()
        button.empty()


def _cancel(key: tuple) -> None:
    st.session_state[CANCELLED_KEY] = key


def probe_frame(result: SetComparison) -> pd.DataFrame:
    """Long frame (layer, series, value, low, high): the probe's accuracy and chance, ± a std."""
    return pd.DataFrame(
        {"layer": s.layer, "series": name, "value": value, "low": value - std, "high": value + std}
        for s in result.layers
        for name, value, std in (("probe, cross-validated", s.probe.accuracy, s.probe.accuracy_std),
                                 ("chance (shuffled labels)", s.probe.chance, s.probe.chance_std))
    )


def distance_frame(result: SetComparison, measure: str) -> pd.DataFrame:
    """Long frame of one measure ('cosine' or 'relative_l2') with its 95 % interval per layer."""
    name = {"cosine": "cosine distance", "relative_l2": "relative L2"}[measure]
    return pd.DataFrame(
        {"layer": s.layer, "series": name, "value": i.mean, "low": i.low, "high": i.high}
        for s in result.layers for i in (getattr(s, measure),)
    )


def layer_table(result: SetComparison) -> pd.DataFrame:
    """One row per layer: every statistic, as the CSV export holds it."""
    return pd.DataFrame({
        "layer": s.layer,
        "probe accuracy": s.probe.accuracy, "probe std": s.probe.accuracy_std,
        "chance": s.probe.chance, "chance std": s.probe.chance_std,
        "cosine distance": s.cosine.mean, "cosine 95% low": s.cosine.low, "cosine 95% high": s.cosine.high,
        "relative L2": s.relative_l2.mean, "relative L2 95% low": s.relative_l2.low,
        "relative L2 95% high": s.relative_l2.high,
        "‖mean A − mean B‖": s.difference_norm, "÷ mean ‖h‖": s.relative_norm,
        **({"A answer already top-1": lens.top1_a, "B answer already top-1": lens.top1_b} if lens else {}),
    } for s, lens in zip(result.layers, result.lens or [None] * len(result.layers), strict=True))


def lens_table(result: SetComparison, layer: int) -> pd.DataFrame:
    tokens = result.lens[layer].tokens
    return pd.DataFrame({"token": [t.token for t in tokens], "mean p in A": [t.p_a for t in tokens],
                         "mean p in B": [t.p_b for t in tokens], "A − B": [t.delta for t in tokens]})


def rows_table(result: SetComparison) -> pd.DataFrame:
    """Per pair (paired sets) or per prompt, at the comparison's layer."""
    if result.pairs:
        return pd.DataFrame([r.to_dict() for r in result.pairs]).rename(columns={
            "row": "pair", "relative_l2": "relative L2", "answer_a": "A's answer", "answer_b": "B's answer",
            "margin_a": "probe margin A", "margin_b": "probe margin B", "cosine": "cosine distance"})
    return pd.DataFrame([r.to_dict() for r in result.prompts]).rename(columns={"margin": "probe margin"})


def draw(request: Request, measures: SetMeasures) -> None:
    """The comparison: summary, curves, lens, the vector at a chosen layer, the rows, export, Save."""
    n_layers = len(measures.layers) - 1
    sets = measures.sets
    result = measures.at(measures.best_layer)
    st.info(result.summary)
    kind = "paired" if sets.paired else "unpaired"
    st.caption(f"{len(sets.a):,} prompts in A, {len(sets.b):,} in B, {kind} · position {measures.position}"
               f" · {result.layers[0].probe.folds}-fold probes, "
               f"{measures.settings['permutations']} shuffles for chance, "
               f"{measures.settings['bootstrap']:,} bootstrap resamples.")
    probe, distance = st.columns(2)
    probe.altair_chart(charts.band_lines(probe_frame(result), y_title="accuracy", domain=(0, 1),
                                         title="Linear probe A vs B (± std over folds)"), width="stretch")
    distance.altair_chart(charts.band_lines(distance_frame(result, "cosine"), y_title="cosine distance",
                                            title="Distance between the sets (95 % CI)"), width="stretch")
    table = layer_table(result)
    with st.expander("Every layer's numbers"):
        st.dataframe(table, hide_index=True, width="stretch")

    st.subheader("The lens over the sets")
    if not result.lens:
        st.caption("Left out for this run (the checkbox above the Compare sets button).")
    else:
        lens_layer = st.slider("Lens at layer", 0, n_layers, n_layers, key=f"sets_lens_layer_{n_layers}")
        st.dataframe(lens_table(result, lens_layer), hide_index=True, width="stretch")
        share = pd.DataFrame({"layer": lens.layer, "series": f"{side}: final answer already top-1",
                              "value": v}
                             for lens in result.lens for side, v in (("A", lens.top1_a), ("B", lens.top1_b)))
        st.altair_chart(charts.layer_lines(share, "value", y_title="share of prompts", floor=0.0),
                        width="stretch")

    st.subheader("The sets' steering vector and rows")
    layer = st.slider("Layer of the vector and the rows", 0, n_layers, measures.best_layer,
                      key=f"sets_layer_{n_layers}",
                      help="Default: the layer where the probe is most accurate.")
    chosen = measures.at(layer)
    stem = export.file_stem("sets", [*sets.a[:1], *sets.b[:1], chosen.model, str(len(sets.a))])
    norm = sum(v * v for v in chosen.vector) ** 0.5
    st.download_button(
        f"⬇ CAA vector at layer {layer} (‖v‖ = {norm:.3g}, safetensors for the Steering page)",
        chosen.vector_file(), file_name=f"{stem}-layer{layer}.safetensors",
        mime="application/octet-stream", key="sets-vector", on_click="ignore")
    rows = rows_table(chosen)
    picked = st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun",
                          selection_mode="single-row", key="sets-rows")
    selected = list(getattr(getattr(picked, "selection", None), "rows", []) or [])
    if chosen.pairs and selected:
        pair = chosen.pairs[selected[0]]
        st.button(f"Open pair {pair.row} on every page", key="sets-open",
                  on_click=submit, args=(replace(request, a=pair.a, b=pair.b),))

    file_buttons(export.export_files(stem, _settings(request, chosen), chosen.to_dict(),
                                     {"per-layer": table, "rows": rows}))
    _save_form(request, chosen)


def _settings(request: Request, result: SetComparison) -> dict:
    """What a saved or exported comparison of sets records as its request: the sidebar's request
    with the first pair as its prompts (History's "Open in all pages" opens that pair), and the sets."""
    sets = result.sets
    return {**request.to_dict(), "a": sets.a[0], "b": sets.b[0],
            "sets": {"name": sets.name, "prompts_a": len(sets.a), "prompts_b": len(sets.b),
                     "paired": sets.paired, "layer": result.layer, "position": result.position}}


def _save_form(request: Request, result: SetComparison) -> None:
    default = result.sets.name or f"Sets: {result.sets.a[0][:40]} | {result.sets.b[0][:40]}"
    with st.form("save-sets", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value=default, max_chars=200)
        if button_col.form_submit_button("💾 Save", width="stretch"):
            history = open_history()
            if history is not None:
                try:
                    saved = history.save(name, _settings(request, result), result, owner=access().owner)
                    st.success(f"Saved as #{saved}. Reopen it on the History page.")
                except HistoryError as exc:
                    show_error(exc)

