"""The Tokens page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
import torch
from app_helpers import open_page, table_with

from lib.analyses.bos import bos_effect
from lib.analyses.compare import compare_prompts
from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.capture import capture
from lib.core.tokens import encode, typed_word

A, B = "Then Claire and Mary went to the shops", "Claire and Mary went to the shops"


def test_tokens_page_calls_out_a_word_that_splits_differently(app, real_model):
    open_page(app, "pages/tokens.py", a=A, b=B)
    assert not app.error
    [warning] = app.warning
    assert "'Claire' splits differently: 1 token in A (␣Claire), 2 tokens in B (Cl · aire)" in warning.value
    tok = real_model.tokenizer
    tables = [df.value for df in app.dataframe if "position in B" in df.value.columns or
              "position in A" in df.value.columns]
    assert [t["id"].tolist() for t in tables] == [encode(tok, A), encode(tok, B)]
    assert tables[0]["position in B"].tolist()[:3] == ["—", "—", "2"]  # 'Then', '␣Claire' unmatched


def ask_for_bos(app):
    app.button(key="tokens-bos-run").click().run()
    assert not app.exception, app.exception


@pytest.mark.slow
def test_tokens_page_runs_no_forward_pass_until_bos_runs_are_asked_for(app, real_model):
    ui.clear_results()  # captures are shared by the whole process; count from none
    open_page(app, "pages/tokens.py", a=A, b=B)
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    app.run()
    assert model.forward_passes == before
    assert not [df for df in app.dataframe if "BOS on" in df.value.columns]
    ask_for_bos(app)
    assert model.forward_passes == before + 4  # A and B, each with BOS on and off
    app.text_input[1].input("␣Rome").run()  # a new pair reuses the four runs
    assert model.forward_passes == before + 4


def test_tokens_page_bos_tables_hold_what_bos_effect_returns(app, real_model):
    open_page(app, "pages/tokens.py", a=A, b=B, k=3)
    ask_for_bos(app)
    own = compare_prompts(real_model, A, B, top_k=3)
    first = own.a.final[0]
    second = own.b.final[0] if own.b.final[0].id != first.id else own.a.final[1]
    expected = {
        text: bos_effect(real_model, capture(real_model, text, "on"), capture(real_model, text, "off"),
                         top_k=3, pair=(first.id, second.id))
        for text in (A, B)
    }
    logit_table = table_with(app, "on − off")
    for column, run in (("BOS on", "on"), ("BOS off", "off")):
        values = [getattr(expected[t], run).logit_difference for t in (A, B)]
        assert logit_table[column].tolist() == pytest.approx(values, abs=1e-4)
    top_a = next(df.value for df in app.dataframe if "BOS on" in df.value.columns and "#1" in df.value.index)
    assert top_a.loc["#1", "BOS on"] == f"{expected[A].on.top[0].token}  {expected[A].on.top[0].prob:.3f}"
    assert top_a.loc["#1", "BOS off"] == f"{expected[A].off.top[0].token}  {expected[A].off.top[0].prob:.3f}"


def test_tokens_page_takes_a_word_of_several_tokens_for_the_bos_pair(app, real_model):
    """'Claire' is 'Cl' + 'aire': the logit difference takes its first piece (labelled), and the
    whole word is scored by teacher forcing, against a direct computation with the model."""
    open_page(app, "pages/tokens.py", a=A, b=B)
    ask_for_bos(app)
    app.text_input[0].input("Claire")
    app.text_input[1].input("␣Rome").run()
    assert not app.exception, app.exception
    assert not app.error
    assert any(t.value == "token 1 = Cl (first piece of Claire), token 2 = ␣Rome" for t in app.text)
    _, words = [df.value for df in app.dataframe if "on − off" in df.value.columns]  # first piece, whole
    claire, rome = (typed_word(real_model.tokenizer, w).ids for w in ("Claire", " Rome"))
    assert len(claire) == 2 and len(rome) == 1
    for column, bos in (("BOS on", "on"), ("BOS off", "off")):
        expected = []
        for text in (A, B):
            prefix = capture(real_model, text, bos).token_ids
            with torch.no_grad():
                logits = real_model.model(input_ids=torch.tensor([[*prefix, claire[0]]])).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            expected.append(float(logp[-2, claire[0]] + logp[-1, claire[1]] - logp[-2, rome[0]]))
        assert words[column].tolist() == pytest.approx(expected, abs=1e-4)
