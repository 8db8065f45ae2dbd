"""The Watch tokens page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
from app_helpers import open_page, table_with

from lib.analyses.watch import logit_difference, trajectories, word_score
from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.capture import capture
from lib.core.tokens import single_token, typed_word

A, B = "The capital of France is", "The capital of Italy is"


def test_watch_tables_hold_what_the_library_returns(app, real_model):
    ids = [single_token(real_model.tokenizer, w).id for w in (" Paris", " Rome")]
    paris_a, rome_a = trajectories(real_model, capture(real_model, A).residual, ids)
    paris_b, rome_b = trajectories(real_model, capture(real_model, B).residual, ids)
    open_page(app, "pages/watch.py", a=A, b=B)
    assert not app.error
    assert app.text_area[0].value == "␣Paris\n␣Rome"  # A's and B's predictions by default
    table = table_with(app, "rank")
    for prompt, paris in (("A", paris_a), ("B", paris_b)):
        rows = table[(table["prompt"] == prompt) & (table["token"] == "␣Paris")]
        assert rows["probability"].tolist() == pytest.approx(paris.prob, abs=1e-6)
        assert rows["rank"].tolist() == list(paris.rank)
    difference = table_with(app, "B")
    assert difference["A"].tolist() == pytest.approx(logit_difference(paris_a, rome_a), abs=1e-4)
    assert difference["B"].tolist() == pytest.approx(logit_difference(paris_b, rome_b), abs=1e-4)
    assert len(app.get("vega_lite_chart")) == 4  # probability, rank, logit difference, whole words


def test_watch_follows_a_multi_token_word_by_its_first_piece_and_scores_it_whole(app, real_model):
    open_page(app, "pages/watch.py", a=A, b=B)
    app.text_area[0].input("Claire\n␣Paris").run()
    assert not app.exception, app.exception
    assert not app.error
    assert set(table_with(app, "rank")["token"]) == {"Claire (first piece Cl)", "␣Paris"}
    words = table_with(app, "log-probability")
    claire = words[(words["prompt"] == "A") & (words["word"] == "Claire")]
    assert claire["pieces"].iloc[0] == "Cl + aire"
    ids = typed_word(real_model.tokenizer, "Claire").ids
    expected = word_score(real_model, capture(real_model, A), ids)
    assert claire["log-probability"].tolist() == pytest.approx(expected.logprob, abs=1e-5)


@pytest.mark.slow
def test_watch_swapping_the_pair_negates_the_difference_without_a_forward_pass(app, real_model):
    open_page(app, "pages/watch.py", a=A, b=B)
    before_table = table_with(app, "B")
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    app.selectbox[0].set_value(1).run()
    app.selectbox[1].set_value(0).run()
    assert not app.exception, app.exception
    after_table = table_with(app, "B")
    assert after_table["A"].tolist() == pytest.approx((-before_table["A"]).tolist())
    assert model.forward_passes == before
