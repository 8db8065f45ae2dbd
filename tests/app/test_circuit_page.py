"""The Circuit page, driven with AppTest on a tiny model: nothing runs before the button, the edge
table and the reading hold what the library finds, the graph and curve are drawn, and bad input
is one plain message."""

from __future__ import annotations

import pytest
from app_helpers import open_page, table_with
from bad_input_cases import CIRCUIT_CASES, circuit_kwargs

from lib.analyses.circuit import find_circuit
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"
PAGE = "pages/circuit.py"


def press(app):
    app.button(key="circuit-run").click().run()
    assert not app.exception, app.exception
    return app


def test_circuit_page_shows_what_the_library_finds(app, tiny_folders, tiny_models):
    open_page(app, PAGE, a=A, b=B, model=str(tiny_folders["gpt2"]))
    assert app.info and "Find the circuit" in app.info[0].value  # nothing runs before the button
    app.text_input(key="circuit-answer").input("␣Paris")
    app.text_input(key="circuit-wrong").input("␣Rome")
    app.number_input(key="circuit-edges").set_value(6)
    press(app)
    assert not app.error
    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    expected = find_circuit(model, cap_a, cap_b, answer=" Paris", wrong=" Rome", edges=6)
    table = table_with(app, "exact")
    shown = list(zip(table.source, table.target, strict=True))
    assert shown == [(e.source, e.target) for e in expected.edges[:6]]
    assert table.score.tolist() == pytest.approx([e.score for e in expected.edges[:6]], abs=1e-6)
    assert any(f"restore {expected.faithfulness:.0%}" in m.value for m in app.markdown)
    assert len(app.get("vega_lite_chart")) == 2  # the graph and the curve
    labels = [b.label for b in app.get("download_button")]
    assert {"⬇ graph (SVG)", "⬇ graph (PNG)"} <= set(labels) and any("CSV" in label for label in labels)
    head = next(e.source for e in expected.circuit_edges() if e.source.startswith("L"))
    app.selectbox(key="circuit-node").set_value(head).run()
    assert not app.exception, app.exception
    assert any(t.value.startswith(f"Direct effect of {head}") for t in app.text)
    assert table_with(app, "A weight")["A weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert set(table_with(app, "direction").direction) <= {"in", "out"}


def test_coarse_view_and_eap_ig_run_on_the_page(app, tiny_folders):
    open_page(app, PAGE, a=A, b=B, model=str(tiny_folders["gemma2"]))
    app.text_input(key="circuit-answer").input("␣Paris")
    app.text_input(key="circuit-wrong").input("␣Rome")
    press(app)
    assert app.error and "per-layer view" in app.error[0].value  # Gemma-2's heads do not add up
    app.toggle(key="circuit-coarse").set_value(True).run()
    app.number_input(key="circuit-ig").set_value(3).run()
    press(app)
    assert not app.error
    assert any("EAP-IG with 3 steps" in c.value for c in app.caption)


@pytest.mark.parametrize("case", [c for c in CIRCUIT_CASES if set(circuit_kwargs(c)) <= {"answer", "wrong"}],
                         ids=lambda c: c.name)
def test_circuit_bad_input_is_one_message_on_the_page(case, app, tiny_folders):
    open_page(app, PAGE, a=case.a, b=case.b, model=str(tiny_folders["llama"]))
    kwargs = circuit_kwargs(case)
    app.text_input(key="circuit-answer").input(kwargs["answer"].replace(" ", "␣"))
    app.text_input(key="circuit-wrong").input(kwargs["wrong"].replace(" ", "␣"))
    press(app)
    assert len(app.error) == 1 and case.refused in app.error[0].value


def test_a_link_opens_the_circuit_at_its_settings_and_node(app, tiny_folders):
    shared = {"model": str(tiny_folders["gpt2"]), "a": A, "b": B, "k": "3"}
    app.query_params.update({**shared, "answer": "␣Paris", "wrong": "␣Rome", "circuit_edges": "4",
                             "circuit_coarse": "True", "circuit_node": "logits"})
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    assert app.number_input(key="circuit-edges").value == 4 and app.toggle(key="circuit-coarse").value
    assert app.selectbox(key="circuit-node").value == "logits"  # the circuit was drawn at once
    assert any(t.value.startswith("Metric: logit[␣Paris] − logit[␣Rome]") for t in app.text)
    app.number_input(key="circuit-ig").set_value(2).run()
    press(app)
    app.selectbox(key="circuit-node").set_value("embed").run()  # the first node: left out of the link
    assert "circuit_node" not in app.query_params
    app.selectbox(key="circuit-node").set_value("logits").run()
    shared = app.query_params
    assert (shared["circuit_node"], shared["circuit_ig"], shared["circuit_edges"]) == ("logits", "2", "4")


def test_a_word_of_several_tokens_is_scored_by_its_first_piece_and_says_so(app, tiny_folders):
    open_page(app, PAGE, a=A, b=B, model=str(tiny_folders["gpt2"]))
    app.text_input(key="circuit-answer").input("␣Parisians")
    app.text_input(key="circuit-wrong").input("␣Rome")
    press(app)
    assert not app.error
    metric = next(t.value for t in app.text if t.value.startswith("Metric: logit["))
    assert "(first piece of ␣Parisians)" in metric
