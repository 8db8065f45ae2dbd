"""The bad-input table (tests/bad_input_cases.py) through the app, with AppTest on a tiny model:
a refusal is one st.error and no exception, the session stays usable, unusual prompts are shown
as the text they are (st.text, tables), never inside an element that renders Markdown or HTML."""

from __future__ import annotations

import pytest
from app_helpers import ROOT, AppTest, lens_tables, next_tokens, submit
from bad_input_cases import GOOD, MODEL_CASE_NAMES, PROMPT_CASES, model_cases  # noqa: F401  (fixture)

from lib.analyses.compare import compare_prompts

B = "The capital of Italy is"
MARKDOWN_KINDS = ("markdown", "caption", "error", "warning", "info", "success", "title", "header",
                  "subheader")


def rendered_markdown(at) -> list[str]:
    """The bodies of every element the browser renders as Markdown (which may hold HTML)."""
    return [element.value for kind in MARKDOWN_KINDS for element in getattr(at, kind)]


@pytest.fixture(scope="module")
def tiny(tiny_folders) -> str:
    return str(tiny_folders["gpt2"])


@pytest.mark.parametrize("case", PROMPT_CASES, ids=lambda c: c.name)
def test_app_refuses_bad_prompt_or_shows_it_as_text(app, tiny, case):
    submit(app, model=tiny, a=case.text, b=B, k=3)
    assert not app.exception
    if case.refused:
        assert len(app.error) == 1 and case.refused in app.error[0].value
        assert not lens_tables(app)
    else:
        assert not app.error
        assert [t.value for t in app.text] == [case.text, B]
        assert len(lens_tables(app)) == 2
        if case.text.strip():
            assert not any(case.text in body for body in rendered_markdown(app))


def test_app_quotes_user_text_in_messages_escaped(app):
    """A model name is quoted in the message; its Markdown and HTML signs are escaped."""
    submit(app, model="<img src=x onerror=alert(1)>")
    assert not app.exception
    assert "\\<img src=x onerror=alert(1)\\>" in app.error[0].value
    assert not any("<img" in body.replace("\\<img", "") for body in rendered_markdown(app))


def test_app_stays_usable_after_every_bad_model(app, tiny, model_cases, tiny_models):  # noqa: F811
    submit(app, model=tiny, a=GOOD, b=B, k=3)
    first = lens_tables(app)
    for name in MODEL_CASE_NAMES:
        case = model_cases[name]
        submit(app, model=case.spec)
        assert not app.exception, (name, app.exception)
        assert len(app.error) == 1 and case.refused in app.error[0].value.replace("\\", ""), name
    [back] = [b for b in app.button if b.label.startswith("Back to the last model")]
    back.click().run()
    assert not app.exception and not app.error
    assert all(a.equals(b) for a, b in zip(lens_tables(app), first, strict=True))
    expected = compare_prompts(tiny_models["gpt2"], GOOD, B, top_k=3)
    assert next_tokens(app)[0] == ("A", expected.a.final[0].token)


def test_app_pickle_weights_need_the_expert_option_and_warn(app, model_cases):  # noqa: F811
    pickle_only = model_cases["pickle_weights_only"].spec
    app.run()
    assert app.sidebar.checkbox(key="allow_pickle").value is False
    assert app.sidebar.checkbox(key="trust_remote_code").value is False
    submit(app, model=pickle_only, a=GOOD, b=B, k=3)
    assert "pickle" in app.error[0].value and not lens_tables(app)
    assert not app.sidebar.warning
    app.sidebar.checkbox(key="allow_pickle").check()
    submit(app)
    assert not app.exception and not app.error
    assert len(lens_tables(app)) == 2
    assert "pickle weights" in app.sidebar.warning[0].value


def test_app_session_without_the_option_never_gets_another_sessions_pickle_model(
    app, model_cases  # noqa: F811
):
    pickle_only = model_cases["pickle_weights_only"].spec
    app.run()
    app.sidebar.checkbox(key="allow_pickle").check()
    submit(app, model=pickle_only, a=GOOD, b=B, k=3)
    assert len(lens_tables(app)) == 2
    other = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)
    submit(other, model=pickle_only, a=GOOD, b=B, k=3)
    assert not other.exception
    assert "pickle" in other.error[0].value and not lens_tables(other)


@pytest.mark.parametrize("k", ["0", "1000", "three"])
def test_app_refuses_top_k_out_of_range_in_a_link(app, k):
    app.query_params.update({"model": "default", "a": GOOD, "b": B, "k": k})
    app.run()
    assert not app.exception
    assert any("k=" in e.value for e in app.error)


def test_app_measures_an_answer_word_of_several_tokens_whole_or_by_its_first_piece(app, tiny):
    submit(app, model=tiny, a=GOOD, b=B, k=3)
    app.switch_page("pages/patching.py").run()
    app.text_input(key="patching-answer").input(" Parisianism")
    app.button(key="patching-run").click().run()
    assert not app.exception
    assert not app.error
    assert any(t.value.startswith("Metric: log p(␣Parisianism) − log p(") for t in app.text)
    app.radio(key="patching-score").set_value("logit")
    app.button(key="patching-run").click().run()
    assert not app.exception and not app.error
    assert any("(first piece of ␣Parisianism)" in t.value for t in app.text if t.value.startswith("Metric"))
