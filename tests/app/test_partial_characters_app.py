"""The next token and the lens cells of a partial character on the embedded model, in the app:
the seahorse question asked as a chat, whose answer starts with an emoji's first byte piece."""

from __future__ import annotations

from app_helpers import next_tokens

from lib.analyses.generation import complete_character
from lib.app import session, ui

LINK = {"model": "default", "a": "Is there a seahorse emoji?", "b": "Is there a dolphin emoji?", "chat": "1",
        "prefill": "Yes, here it is:"}


def test_compare_and_lens_show_the_character_a_partial_next_token_completes_to(app, real_model):
    app.query_params.update(LINK)
    app.run()
    assert not app.exception, app.exception
    request = app.session_state[session.REQUEST_KEY]
    lines = [m.value for m in app.markdown if m.value.startswith("**Next token (")]
    assert [t for _, t in next_tokens(app)] == ["␣<F0 9F>", "␣<F0 9F>"]
    for line, run in zip(lines, request.runs, strict=True):
        cap = ui.get_capture(run)
        whole = complete_character(real_model, cap.token_ids, int(cap.final_logits.argmax()))
        assert whole and f"`␣<F0 9F>` → `{whole}`" in line
        assert f'would next write "{whole.removeprefix("␣")}" (bird) after a space' in line
    app.switch_page("pages/logit_lens.py").run()
    assert not app.exception, app.exception
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2
    cap = ui.get_capture(request.runs[0])
    whole = complete_character(real_model, cap.token_ids, int(cap.final_logits.argmax()))
    data = b"".join(d.data.data for d in charts[0].proto.datasets)
    assert f"␣<F0 9F> → {whole}".encode() in data  # the top cell's hover
    assert any(t.value.startswith(f"Final answer '␣<F0 9F> → {whole}'") for t in app.text)
