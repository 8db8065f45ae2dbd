"""In chat mode the template writes tokens around the user's text; position pickers still start on the
user's text and the last position (logit lens window, diff, patching, components)."""

from __future__ import annotations

import shutil

import pytest
from app_helpers import submit

from lib.app import session, ui

CHATML = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)
A = "Claire and Mary went to the shops, then Mary gave a bottle of milk to"
B = "Claire and Mary went to the shops, then Claire gave a bottle of milk to"


@pytest.fixture(scope="module")
def chat_folder(tiny_folders, tmp_path_factory):
    """The tiny Llama with a ChatML-like chat template saved beside its tokenizer."""
    folder = tmp_path_factory.mktemp("chat") / "llama-chat"
    shutil.copytree(tiny_folders["llama"], folder)
    (folder / "chat_template.jinja").write_text(CHATML)
    return folder


def open_chat(app, folder, page: str):
    app.run()
    app.sidebar.radio(key="chat").set_value(True)
    submit(app, a=A, b=B, model=str(folder))
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    request = app.session_state[session.REQUEST_KEY]
    caps = [ui.get_capture(run) for run in request.runs]
    assert request.chat and caps[0].roles[0] == "template" and caps[0].roles[-1] == "template"
    return caps


def user_positions(cap) -> list[int]:
    return [p for p, role in enumerate(cap.roles) if role == "user"]


def test_lens_window_covers_the_users_text_and_the_last_position(app, chat_folder):
    caps = open_chat(app, chat_folder, "pages/logit_lens.py")
    assert min(c.n_tokens - user_positions(c)[0] for c in caps) > 16  # a window of 16 would miss its start
    size = app.number_input(key="lens_size").value
    assert app.number_input(key="lens_back").value == 0  # ending at the last position
    for cap in caps:
        shown = range(cap.n_tokens - size, cap.n_tokens)
        assert set(user_positions(cap)) <= set(shown) and cap.n_tokens - 1 in shown
        assert size == cap.n_tokens - user_positions(cap)[0]  # and no template token before the user's text
    assert app.selectbox(key="lens_offset").value == 0  # the cell picker: the last position


def test_diff_positions_default_to_the_last(app, chat_folder):
    caps = open_chat(app, chat_folder, "pages/diff.py")
    pickers = [s for s in app.selectbox if s.key and s.key.startswith("diff-position")]
    assert [p.value for p in pickers] == [c.n_tokens - 1 for c in caps]


def test_patching_position_defaults_to_the_users_text(app, chat_folder):
    caps = open_chat(app, chat_folder, "pages/patching.py")
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    picker = next(s for s in app.selectbox if s.label == "Position in B")
    position = int(picker.value)
    assert position in user_positions(caps[1]) or position == caps[1].n_tokens - 1


def test_components_position_defaults_to_the_last(app, chat_folder):
    caps = open_chat(app, chat_folder, "pages/components.py")
    app.button(key="components-run").click().run()
    app.toggle(key="components-per-position").set_value(True).run()
    app.button(key="components-patch").click().run()
    assert not app.exception, app.exception
    assert app.selectbox(key="components-position").value == caps[1].n_tokens - 1
