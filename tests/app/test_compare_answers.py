"""Compare shows each prompt's answer: the first line of its greedy continuation (through the app's
results cache, so Continuations reuses it), with the typed answer start and system message shown
as part of it; a cancelled answer says so and can be written again."""

from __future__ import annotations

import pytest
from app_helpers import submit

from lib.analyses.generation import DEFAULT_SETTINGS, continue_capture, continue_prompt
from lib.app import answers, session, ui, views
from lib.app.examples import EXAMPLES
from lib.core.chat import Chat


def answer_lines(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Answer (")]


def first_line(text: str) -> str:
    return text.lstrip("\r\n").split("\n", 1)[0].strip()


def test_compare_shows_both_answers_as_the_first_line_of_the_greedy_continuation(app, real_model):
    a, b = "The capital of France is", "The capital of Italy is"
    submit(app, a=a, b=b, k=3)
    assert not app.exception, app.exception
    lines = answer_lines(app)
    assert [line.split("**:")[0] for line in lines] == ["**Answer (A)", "**Answer (B)"]
    for line, prompt in zip(lines, (a, b), strict=True):
        said = first_line(continue_prompt(real_model, prompt, settings=DEFAULT_SETTINGS).text)
        assert views.plain(said) in line
        assert ":blue-background[" not in line  # raw text: nothing was typed for the model


@pytest.mark.slow
def test_the_answers_are_cached_for_the_continuations_page(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    request = app.session_state[session.REQUEST_KEY]
    for run in request.runs:
        assert ui.RESULTS.has(continue_capture, run.model, run.prompt_only, DEFAULT_SETTINGS)
    app.switch_page("pages/continuations.py").run()
    assert not app.exception, app.exception
    assert not [i for i in app.info if "Press **Generate**" in i.value]  # shown at once, not asked for


@pytest.mark.slow
def test_seahorse_answer_start_is_visibly_part_of_the_answer(app, real_model):
    seahorse = next(e for e in EXAMPLES if e.prefill)
    app.run()
    next(b for b in app.sidebar.button if b.label == seahorse.name).click().run()
    assert not app.exception, app.exception
    lines = answer_lines(app)
    assert len(lines) == 2
    for line in lines:
        assert f":blue-background[{views.plain(seahorse.prefill)}]" in line
    assert "🐦 bird" in lines[0]  # the emoji the model writes, named for screens without its glyph
    assert [m for m in app.markdown if m.value.startswith("**Next token (A)") and "(bird)" in m.value]


@pytest.mark.slow
def test_system_message_is_shown_with_the_answer(app, real_model):
    app.run()
    app.sidebar.radio(key="chat").set_value(True)
    app.sidebar.text_input(key="system").input("You answer in French.")
    submit(app, a="Hello", b="Good morning")
    assert not app.exception, app.exception
    assert [c for c in app.caption if c.value == "System message: You answer in French."]


@pytest.mark.slow
def test_a_cancelled_answer_says_so_and_can_be_written_again(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    request = app.session_state[session.REQUEST_KEY]
    ui.clear_results()
    app.session_state[answers.CANCELLED_KEY] = {
        (run.prompt_only, DEFAULT_SETTINGS) for run in request.runs
    }
    app.run()
    assert not app.exception, app.exception
    assert not answer_lines(app)
    assert [c for c in app.caption if "you cancelled it" in c.value]
    next(b for b in app.button if b.label == "Write it again").click().run()
    assert not app.exception, app.exception
    assert len(answer_lines(app)) == 2


def test_answer_of_puts_the_typed_start_before_the_models_first_line(real_model):
    chat = Chat(system="Be brief.", prefill="Yes, here it is:")
    written = continue_prompt(real_model, "Is there a seahorse emoji?", chat=chat)
    answer = answers.answer_of(written, chat)
    assert (answer.system, answer.given) == ("Be brief.", "Yes, here it is:")
    assert answer.said.strip() == first_line(written.text)
    assert "\n" not in answer.said
    assert answer.more == bool(written.text.lstrip("\r\n").partition("\n")[2].strip())
