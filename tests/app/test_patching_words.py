"""The Patching page accepts words of several tokens: first piece or the whole word, defined on the page."""

from __future__ import annotations

import torch
from app_helpers import open_page

from lib.core.capture import capture
from lib.core.tokens import typed_word

A, B = "The capital of France is", "The capital of Italy is"


def metric_line(app) -> str:
    return next(t.value for t in app.text if t.value.startswith("Metric:"))


def word_logprob(model, prompt: str, word: str) -> float:
    """log p(word | prompt): the model's own log-probabilities of the word's pieces, teacher forced."""
    prefix, ids = capture(model, prompt).token_ids, typed_word(model.tokenizer, word).ids
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([[*prefix, *ids[:-1]]])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(prefix) - 1 + j, piece]) for j, piece in enumerate(ids))


def test_a_two_piece_answer_is_scored_whole_with_the_definition_on_the_page(app, real_model):
    open_page(app, "pages/patching.py", a=A, b=B)
    assert not app.main.radio  # one-token words: no choice to make
    app.text_input(key="patching-answer").input("␣Lakers")
    app.text_input(key="patching-wrong").input("␣Rome").run()
    assert app.radio(key="patching-score").value == "word"
    assert any("log p(word) = Σ" in c.value and "final layer" in c.value for c in app.caption)
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    metric_a = word_logprob(real_model, A, "␣Lakers") - word_logprob(real_model, A, "␣Rome")
    assert metric_line(app).startswith("Metric: log p(␣Lakers) − log p(␣Rome) at B's last position.")
    assert f"A: {metric_a:.3f}" in metric_line(app)
    assert "score" not in app.query_params  # the default is left out of the link

    app.radio(key="patching-score").set_value("logit").run()
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    assert metric_line(app).startswith("Metric: logit[␣L (first piece of ␣Lakers)] − logit[␣Rome]")
    assert app.query_params["score"] == "logit"
