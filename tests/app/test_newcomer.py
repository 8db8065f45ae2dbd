"""What a newcomer hit (issue 16), driven with AppTest on a tiny model: every token visible as a
chip, the next token in words, help that starts in plain words, the token legend, long prompts."""

from __future__ import annotations

import re

import pytest
from app_helpers import submit

A = "You have happy emotion in yourself! You have happy emotion in yourself today"
B = "You have angry emotion in yourself! You have happy emotion in yourself today"
PAGES = ["pages/compare.py", "pages/logit_lens.py", "pages/distances.py", "pages/diff.py", "pages/tokens.py",
         "pages/watch.py", "pages/patching.py"]


@pytest.fixture
def tiny(tiny_folders):
    return str(tiny_folders["llama"])


def chips(app) -> list[str]:
    return [e.proto.body for e in app.get("html") if "twinlens-chip" in e.proto.body]


def test_compare_shows_every_token_as_a_chip_and_the_next_token_in_words(app, tiny):
    submit(app, model=tiny, a=A, b=B)
    assert not app.exception, app.exception
    body_a, body_b = chips(app)
    n_tokens = body_a.count('<span class="twinlens-chip')
    assert n_tokens >= 15  # all of them, where the transposed table showed 7
    assert body_a.count("twinlens-chip differs") >= 1 and body_b.count("twinlens-chip differs") >= 1
    assert "happy" in re.findall(r'chip differs"[^>]*><span[^>]*>\d+</span>([^<]*)<', body_a)[0]
    assert not app.metric  # no green ↑ badge that reads as "went up"
    sentences = [m.value for m in app.markdown if "The model would next write" in m.value]
    assert len(sentences) == 2 and all(re.search(r"\d%\s*sure\.$", s) for s in sentences)
    assert any("␣ = a space" in c.value for c in app.caption)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_help_starts_with_two_plain_sentences_and_shows_the_token_legend(app, tiny, page):
    submit(app, model=tiny, a=A, b=B)
    app.switch_page(page).run()
    assert not app.exception, app.exception
    [help_box] = [e for e in app.expander if e.label == "What am I looking at?"]
    first = help_box.markdown[0].value.strip().split("\n\n")[0]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", first.replace("\n", " ")) if s]
    assert len(sentences) == 2, first
    assert not re.search(r"[`*$]|\|", first), first  # no code, bold or formulas before the plain words
    assert any("␣ = a space" in c.value for c in app.caption), page


def test_a_long_prompt_shows_its_start_and_end_with_the_whole_in_an_expander(app, tiny):
    long = "The capital of France is Paris. " * 13 + "The capital of Italy is"  # 440 characters
    submit(app, model=tiny, a=long, b="The capital of Italy is")
    assert not app.exception, app.exception
    assert not app.error, app.error[0].value
    shown = [t.value for t in app.text]
    assert any(" … " in t and t.endswith("The capital of Italy is") for t in shown)
    [whole] = [e for e in app.expander if e.label.startswith("Whole prompt")]
    assert [t.value for t in whole.text] == [long]


def test_an_empty_or_too_long_prompt_is_named(app, tiny):
    submit(app, model=tiny, a="The capital of France is", b="   ")
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Prompt B is empty")
    submit(app, model=tiny, a="the " * 200, b="The capital of Italy is")
    assert app.error[0].value.startswith("Prompt A is ") and "reads at most 128" in app.error[0].value


def test_a_failed_load_leaves_only_the_error(app):
    submit(app, model="/no/such/model/folder", a="The capital of France is", b="The capital of Italy is")
    assert not app.exception, app.exception
    assert app.error
    assert not [s for s in app.status if "Loading model" in s.label]


def test_two_models_that_are_the_same_model_get_a_warning(app, tiny):
    from app_helpers import compare_two

    compare_two(app, tiny, tiny, prompt="The capital of France is")
    assert not app.exception, app.exception
    assert any("Model 1 and model 2 are the same" in w.value for w in app.warning)


def test_the_empty_landing_page_points_to_the_examples(app):
    app.run()
    assert "Example pairs" in app.info[0].value
    assert [e.label for e in app.sidebar.expander].count("Example pairs") == 1
