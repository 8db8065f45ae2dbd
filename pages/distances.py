"""Residual distances: how far apart A's and B's residual streams are, layer by layer."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from lib.analyses.distances import DistanceReport, PositionDistances, capture_distances
from lib.app import ui
from lib.core.capture import Capture

ui.page(
    "Residual distances",
    """
The **residual stream** is the model's running state; here A's and B's states are compared at the
same layer.

- **Cosine distance** `1 − cos(a, b)`: 0 when the two point the same way, 1 when at right angles.
- **Relative L2** `‖a − b‖ / ((‖a‖ + ‖b‖)/2)`: the size of the difference compared to the states' size.
  Raw norms grow with depth, so only these relative measures are shown.
- **Last token**: the two prompts' last positions (always defined). **Mean over positions**: each
  prompt's states averaged over its positions first.
- When both prompts have the same number of tokens, the heatmap compares them **position by position**.
- The **BOS** position (a start-of-text token some models put first) has a huge, nearly constant
  state; it is left out by default because it would swamp the averages.
""",
)

MEASURES = {"cosine": "cosine distance", "relative_l2": "relative L2"}
ALIGNMENTS = {"last": "last token", "mean": "mean over positions"}


def layer_table(report: DistanceReport) -> pd.DataFrame:
    """One row per layer, one column per (measure, alignment)."""
    columns = {"layer": range(len(report.last.cosine))}
    for alignment, name in ALIGNMENTS.items():
        for measure, measure_name in MEASURES.items():
            columns[f"{measure_name}, {name}"] = getattr(getattr(report, alignment), measure)
    return pd.DataFrame(columns)


def layer_chart(table: pd.DataFrame, measure_name: str) -> alt.Chart:
    series = [f"{measure_name}, {name}" for name in ALIGNMENTS.values()]
    long = table.melt("layer", series, "series", "distance")
    long["alignment"] = long["series"].str.split(", ").str[1]
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x="layer:Q",
            y=alt.Y("distance:Q", title=measure_name),
            color=alt.Color("alignment:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=["layer", "alignment", alt.Tooltip("distance", format=".4f")],
        )
        .properties(height=280)
    )


def position_table(positions: PositionDistances, cap_a: Capture, cap_b: Capture) -> pd.DataFrame:
    """One row per (layer, position); `column` names the position by its index and both tokens."""
    rows = []
    for layer, (cos_row, rel_row) in enumerate(zip(positions.cosine, positions.relative_l2, strict=True)):
        for i, (cos, rel) in enumerate(zip(cos_row, rel_row, strict=True)):
            p = positions.first_position + i
            a, b = cap_a.tokens[p], cap_b.tokens[p]
            rows.append({"layer": layer, "position": p, "column": f"{p} {a}" if a == b else f"{p} {a} / {b}",
                         "token A": a, "token B": b, "cosine distance": cos, "relative L2": rel})
    return pd.DataFrame(rows)


def position_heatmap(table: pd.DataFrame, measure_name: str) -> alt.Chart:
    return (
        alt.Chart(table)
        .mark_rect()
        .encode(
            x=alt.X("column:N", sort=list(dict.fromkeys(table["column"])), title="position · token (A / B)",
                    axis=alt.Axis(labelAngle=-45, labelLimit=120)),
            y=alt.Y("layer:O", sort="descending"),
            color=alt.Color(f"{measure_name}:Q", scale=alt.Scale(scheme="oranges")),
            tooltip=["layer", "position", "token A", "token B",
                     alt.Tooltip(f"{measure_name}:Q", format=".4f")],
        )
        .properties(height=12 * (int(table["layer"].max()) + 1) + 60)
    )


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    cap_a, cap_b = ui.get_capture(run_a), ui.get_capture(run_b)
    drop_bos = st.toggle("Leave out the BOS position", value=True, key="dist_drop_bos")
    if not (comparison.a.has_bos or comparison.b.has_bos):
        st.caption("Neither prompt starts with a BOS token, so this switch changes nothing.")
    report = ui.cached(capture_distances, run_a.model, run_a, run_b, drop_bos=drop_bos)
    st.info(report.summary())

    table = layer_table(report)
    for column, measure_name in zip(st.columns(2), MEASURES.values(), strict=True):
        column.altair_chart(layer_chart(table, measure_name), width="stretch")
    st.dataframe(table, hide_index=True, width="stretch")

    tables = {"per-layer": table}
    st.subheader("Position by position")
    if report.positions is None:
        st.info(f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}: position-by-position "
                "distances need prompts with the same number of tokens.")
    else:
        tables["per-position"] = per_position = position_table(report.positions, cap_a, cap_b)
        measure_name = st.radio("Measure", list(MEASURES.values()), horizontal=True, key="dist_measure")
        st.altair_chart(position_heatmap(per_position, measure_name), width="stretch")

    ui.download_buttons("distances", request, report.to_dict(), tables)
