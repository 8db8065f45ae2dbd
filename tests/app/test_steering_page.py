"""The Steering and Continuations pages and the chat / continuation settings, driven with AppTest."""

from __future__ import annotations

import pytest
from app_helpers import submit
from bad_input_cases import GOOD, STEER_B, STEER_CASES, steer_files  # noqa: F401  (fixture)

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.generation import continue_capture
from lib.app import session, ui
from lib.app.request import Request
from lib.core.capture import capture
from lib.core.chat import Chat

A, B = "The capital of France is", "The capital of Italy is"


def open_steering(app, model: str, **request):
    submit(app, a=A, b=B, model=model, **request)
    app.switch_page("pages/steering.py").run()
    assert not app.exception, app.exception
    return app


def steer(app, **values):
    for key, value in values.items():
        widgets = (*app.number_input, *app.selectbox, *app.text_input)
        widget = next(w for w in widgets if w.key == f"steering-{key}")
        widget.set_value(value)
    app.button(key="steering-run").click().run()
    assert not app.exception, app.exception
    return app


def test_steering_page_steers_and_sweeps(app, tiny_folders, tiny_models):
    open_steering(app, str(tiny_folders["llama"]))
    steer(app, alpha=0.0, n=5)
    table = next(df.value for df in app.dataframe if "KL vs unsteered (bits)" in df.value.columns)
    assert list(table["run"]) == ["unsteered", "steered", "negated", "random"]
    assert table["continuation"].nunique() == 1 and (table["KL vs unsteered (bits)"] == 0).all()  # α = 0
    steer(app, alpha=6.0, layer=2)
    table = next(df.value for df in app.dataframe if "KL vs unsteered (bits)" in df.value.columns)
    assert table["KL vs unsteered (bits)"].iloc[1] > 0
    loaded = tiny_models["llama"]
    plain = continue_capture(loaded, capture(loaded, B), GenerationSettings(5))
    assert table["continuation"].iloc[0] == plain.text
    app.button(key="steering-sweep-run").click().run()
    assert not app.exception, app.exception
    assert any("smallest push" in m.value or "furthest is layer" in m.value or "most at layer" in m.value
               for m in app.markdown)
    sweep = next(df.value for df in app.dataframe if "random KL (bits)" in df.value.columns)
    assert len(sweep) == (loaded.n_layers + 1) * 4


def test_steering_bad_input_keeps_the_session(app, tiny_folders):
    open_steering(app, str(tiny_folders["gpt2"]))
    app.radio(key="steering-target").set_value("a third prompt").run()
    assert "target prompt is empty" in app.error[0].value
    app.radio(key="steering-target").set_value("B").run()
    steer(app, alpha=1e30, n=3)
    assert "times as long as the residual" in app.error[0].value
    steer(app, alpha=2.0)
    assert not app.error
    assert app.session_state[session.REQUEST_KEY].a == A  # nothing the user typed was lost


def test_continuations_page_with_chat_from_a_shared_link(app, real_model):
    app.query_params.update({"model": "default", "a": "Is there a seahorse emoji?",
                             "b": "Is there a dolphin emoji?", "chat": "1", "prefill": "Yes, here it is:"})
    app.switch_page("pages/continuations.py").run()
    assert not app.exception, app.exception
    request = app.session_state[session.REQUEST_KEY]
    assert request.chat and request.runs[0].chat == Chat(prefill="Yes, here it is:")
    app.number_input(key="continuations-n").set_value(6).run()
    assert not app.exception, app.exception
    assert not any("template included" in c.value for c in app.caption)  # nothing generated before the button
    app.button(key="continuations-run").click().run()
    assert not app.exception, app.exception
    chat = Chat(prefill="Yes, here it is:")
    expected = continue_capture(real_model, capture(real_model, "Is there a seahorse emoji?", chat=chat),
                                GenerationSettings(6))
    assert any(t.value.strip() == expected.text.strip() and t.value.strip() for t in app.text)
    assert app.sidebar.radio(key="chat").value is True


def test_links_without_chat_stay_raw():
    assert Request.from_query({"a": "x", "b": "y"}).runs[0].chat is None
    assert Request.from_query({"a": "x", "b": "y", "chat": "1"}).runs[0].chat == Chat()
    request = Request(a="x", b="y", chat=True, system="Be brief", continue_for=3)
    assert Request.from_query(request.to_query()) == request
    assert "chat" not in Request(a="x", b="y").to_query()


def test_analyse_the_continuation_appends_generated_tokens(app, tiny_folders, tiny_models):
    submit(app, a=A, b=B, model=str(tiny_folders["gpt2"]))
    app.sidebar.number_input(key="continue_for").set_value(4)
    app.sidebar.button[0].click().run()
    assert not app.exception, app.exception
    request = app.session_state[session.REQUEST_KEY]
    assert request.continue_for == 4
    loaded = tiny_models["gpt2"]
    cap = ui.get_capture(request.runs[0])
    new = continue_capture(loaded, capture(loaded, A), GenerationSettings(4)).token_ids
    assert cap.token_ids == capture(loaded, A).token_ids + new
    assert cap.roles[-len(new):] == ("generated",) * len(new)


APP_CASES = [c for c in STEER_CASES if not any(a.startswith("{file:") for a in c.args)
             and c.name not in ("layer_out_of_range", "coefficient_not_a_number", "new_tokens_zero")]


@pytest.mark.parametrize("case", APP_CASES, ids=lambda c: c.name)
def test_bad_input_table_in_the_app(app, steer_files, case):  # noqa: F811
    """The steering rows of the bad-input table through the page's widgets (the sidebar for chat):
    one st.error with the message, no exception, the request kept."""
    chat = "--chat" in case.args
    if not chat:
        submit(app, a=GOOD, b=STEER_B, model=steer_files[case.model])
        page = "pages/steering.py"
    else:
        app.run()
        app.sidebar.text_input(key="model").input(steer_files[case.model])
        app.sidebar.text_area(key="prompt_a").input(GOOD)
        app.sidebar.text_area(key="prompt_b").input(STEER_B)
        app.sidebar.radio(key="chat").set_value(True)
        app.sidebar.button[0].click().run()
        page = "pages/continuations.py"
    app.switch_page(page).run()
    args = dict(zip(case.args[::2], case.args[1::2], strict=False))
    if not chat:
        if "--target" in args:
            app.radio(key="steering-target").set_value("a third prompt").run()
            app.text_area(key="steering-third").input(args["--target"]).run()
        values = {"alpha": float(args.get("--alpha", 2.0)), "n": int(args.get("--max-new-tokens", 3)),
                  "layer": int(args.get("--layer", 1)), "mode": args.get("--vector", "last")}
        if not app.error:
            steer(app, **values)
    assert not app.exception, app.exception
    assert app.error and case.refused in app.error[0].value.replace("\\", ""), [e.value for e in app.error]
    assert app.session_state[session.REQUEST_KEY].a == GOOD


def test_tokens_page_marks_template_tokens(app, real_model):
    app.query_params.update({"model": "default", "a": "Is there a seahorse emoji?",
                             "b": "Is there a dolphin emoji?", "chat": "1"})
    app.switch_page("pages/tokens.py").run()
    assert not app.exception, app.exception
    table = next(df.value for df in app.dataframe if "from" in getattr(df.value, "columns", ()))
    assert set(table["from"]) == {"template", "user"}
    assert "".join(table[table["from"] == "user"]["token"]).replace("␣", " ") == "Is there a seahorse emoji?"


def test_steering_page_says_which_kind_of_vector_it_holds(app, tiny_folders, tiny_models):
    """The Vector choice reads in words, and a set's vector file (from the Sets page) is described
    with its provenance — the sets, pairs, layer, position and model — and steers at its layer."""
    from lib.analyses.sets import compare_sets, prompt_sets

    open_steering(app, str(tiny_folders["llama"]))
    mode = app.selectbox(key="steering-mode")
    assert list(mode.options) == ["h_A − h_B at the last token", "mean over A's positions − mean over B's",
                                  "h_A − h_B position by position (A and B equally long)"]
    loaded = tiny_models["llama"]
    sets = prompt_sets(("I am happy today", "She felt glad", "We were cheerful"),
                       ("I am angry today", "She felt mad", "We were furious"), paired=True, name="Moods")
    vector = compare_sets(loaded, sets, layer=1, folds=2, permutations=1, bootstrap=20).vector_file()
    app.file_uploader(key="steering-file").set_value(("moods.safetensors", vector, "application/x-binary"))
    app.run()
    assert not app.exception, app.exception
    caption = next(c.value for c in app.caption if "contrast set" in c.value)
    for part in ("contrastive activation addition", "“Moods”", "3 pairs", "layer 1", "position −1",
                 loaded.name):
        assert part in caption.replace("\\", ""), (part, caption)
    steer(app, layer=1, alpha=2.0, n=3)
    assert any("a contrast set's mean of h_A − h_B (CAA)" in c.value.replace("\\", "") for c in app.caption)
