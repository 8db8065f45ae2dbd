"""Residual distances: how far apart A's and B's residual streams are, layer by layer."""

from __future__ import annotations

import streamlit as st

from lib.app import charts, distances_view, glossary, session, ui, views
from lib.app.distances_view import MEASURES

views.page(
    "Residual distances",
    """
This page measures how differently the model is "thinking" about A and B at each layer. 0 means it
holds exactly the same state for both; the larger the number, the further apart they are.

The **residual stream** is the model's running state; here A's and B's states are compared at the
same layer.

- **Cosine distance** `1 − cos(a, b)`: 0 when the two point the same way, 1 when at right angles.
- **Relative L2** `‖a − b‖ / ((‖a‖ + ‖b‖)/2)`: the size of the difference compared to the states' size.
  Raw norms grow with depth, so only these relative measures are shown.
- **Last token**: the two prompts' last positions (always defined).
- When both prompts have the same number of tokens, the heatmap compares them **position by position**,
  and **mean of per-position distances** is the average of that heatmap's row at each layer
  (the distance at each position first, then the mean — not the distance between averaged states).
- The **first position** is an *attention sink*: the model parks attention there and its state has a
  huge, nearly constant norm, whether or not it is a BOS token. It is left out by default.
""",
)


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    run_a, run_b = request.runs
    cap_a, cap_b = ui.get_capture(run_a), ui.get_capture(run_b)
    drop_first = st.toggle(
        "Leave out the first position (attention sink)", value=True, key="dist_drop_first",
        help=glossary.ATTENTION_SINK,
    )
    report = distances_view.distances_of(run_a, run_b, drop_first)
    st.info(report.summary())

    table = distances_view.layer_table(report)
    lines = distances_view.alignments(report)
    for column, (measure, measure_name) in zip(st.columns(2), MEASURES.items(), strict=True):
        frame = charts.distance_lines_frame(lines, measure)
        column.altair_chart(charts.layer_lines(frame, "value", y_title=measure_name, floor=0.0),
                            width="stretch")
    views.table(table, hide_index=True, width="stretch")

    tables = {"per-layer": table}
    st.subheader("Position by position")
    if report.positions is None:
        st.info(f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}: position-by-position "
                "distances need prompts with the same number of tokens.")
    else:
        per_position = charts.position_distance_frame(report.positions, cap_a.tokens, cap_b.tokens)
        tables["per-position"] = per_position.drop(columns=["column", "differs"])
        session.linked("dist_measure", "measure")
        if st.session_state.get("dist_measure") not in MEASURES.values():
            st.session_state["dist_measure"] = MEASURES["cosine"]
        measure_name = st.radio("Measure", list(MEASURES.values()), horizontal=True, key="dist_measure",
                                help=f"{glossary.COSINE} {glossary.RELATIVE_L2}")
        session.share("dist_measure", "measure", measure_name, MEASURES["cosine"])
        tooltip = ["layer", "position", "token A", "token B", charts.number(f"{measure_name}:Q", ".4f")]
        st.altair_chart(charts.heatmap(per_position, measure_name, legend=measure_name, scheme="oranges",
                                       x_title="position · token (A/B where they differ)", tooltip=tooltip),
                        width="stretch")
        views.token_legend()

    views.download_buttons("distances", request, report.to_dict(), tables)
