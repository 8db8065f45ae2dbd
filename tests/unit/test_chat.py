"""Chat mode (lib.core.chat) and readable characters across tokens (lib.core.tokens.character_groups)."""

from __future__ import annotations

import pytest

from lib.core.capture import capture
from lib.core.chat import Chat, encode_chat, encode_prompt
from lib.core.errors import PromptError, SettingsError
from lib.core.tokens import character_groups, readable_text

CHATML = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)
FAILING = "{{ raise_exception('this template only takes user messages') }}"


@pytest.fixture
def chat_model(tiny_models, monkeypatch):
    """The tiny Llama with a ChatML-like template (tiny tokenizers have none of their own)."""
    loaded = tiny_models["llama"]
    monkeypatch.setattr(loaded.tokenizer, "chat_template", CHATML, raising=False)
    return loaded


def test_chat_ids_are_the_template(chat_model):
    """The ids are apply_chat_template(..., add_generation_prompt=True)'s, then the prefill's."""
    tok = chat_model.tokenizer
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is Paris big?"}]
    expected = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
    plain = encode_chat(tok, "Is Paris big?", Chat(system="Be brief."))
    assert list(plain.ids) == expected
    with_prefill = encode_chat(tok, "Is Paris big?", Chat(system="Be brief.", prefill="Yes"))
    assert list(with_prefill.ids[: len(expected)]) == expected
    assert tok.decode(list(with_prefill.ids[len(expected):])) == "Yes"
    assert set(with_prefill.roles) == {"template", "system", "user", "prefill"}
    user = [i for i, r in zip(with_prefill.ids, with_prefill.roles, strict=True) if r == "user"]
    assert tok.decode(user) == "Is Paris big?"
    template = [i for i, r in zip(with_prefill.ids, with_prefill.roles, strict=True) if r == "template"]
    assert tok.bos_token_id in template and tok.eos_token_id in template


def test_capture_in_chat_mode(chat_model):
    """A chat capture reads the templated ids; raw stays what it was (chat=None is the default)."""
    chat = Chat(prefill="Paris")
    cap = capture(chat_model, "Where?", chat=chat)
    assert cap.token_ids == encode_prompt(chat_model.tokenizer, "Where?", chat=chat).ids
    assert cap.chat == chat and len(cap.roles) == cap.n_tokens and cap.roles[-1] == "prefill"
    raw = capture(chat_model, "Where?")
    assert raw.chat is None and set(raw.roles) == {"user"} and raw.n_tokens < cap.n_tokens


def test_continuation_ids_are_appended(chat_model):
    cap = capture(chat_model, "Where?", continuation=(5, 6, 7))
    assert cap.token_ids[-3:] == (5, 6, 7) and cap.roles[-3:] == ("generated",) * 3


def test_no_chat_template_is_refused(tiny_models):
    with pytest.raises(SettingsError, match="no chat template"):
        capture(tiny_models["gpt2"], "Where?", chat=Chat())


def test_failing_template_is_refused(tiny_models, monkeypatch):
    loaded = tiny_models["gpt2"]
    monkeypatch.setattr(loaded.tokenizer, "chat_template", FAILING, raising=False)
    with pytest.raises(PromptError, match="failed to render.*only takes user messages"):
        capture(loaded, "Where?", chat=Chat())


def test_bos_setting_in_chat_mode(chat_model):
    tok = chat_model.tokenizer
    auto = encode_prompt(tok, "Where?", "auto", Chat())
    off = encode_prompt(tok, "Where?", "off", Chat())
    on = encode_prompt(tok, "Where?", "on", Chat())
    assert auto.ids[0] == tok.bos_token_id and off.ids == auto.ids[1:] and on.ids == auto.ids


def test_embedded_template_adds_its_system_prompt(real_model):
    enc = encode_prompt(real_model.tokenizer, "Is there a seahorse emoji?", chat=Chat())
    template_text = real_model.tokenizer.decode([i for i, r in zip(enc.ids, enc.roles, strict=True)
                                                 if r == "template"])
    assert "You are a helpful AI assistant" in template_text
    assert real_model.tokenizer.decode([i for i, r in zip(enc.ids, enc.roles, strict=True) if r == "user"]) \
        == "Is there a seahorse emoji?"


def test_characters_across_tokens(tiny_tokenizer):
    """🐠 is not in the tiny tokenizer's merges: its 4 bytes come as pieces the decoder joins."""
    ids = tiny_tokenizer("a 🐠 b", add_special_tokens=False)["input_ids"]
    groups = character_groups(tiny_tokenizer, ids)
    fish = next(g for g in groups if g.joined)
    assert fish.text.lstrip("␣") == "🐠" and len(fish.pieces) == fish.end - fish.start >= 2
    assert all("<" in p for p in fish.pieces)  # each piece alone is bytes shown in hex
    assert [i for g in groups for i in range(g.start, g.end)] == list(range(len(ids)))
    assert readable_text(tiny_tokenizer, ids) == "a␣🐠␣b"


def test_characters_on_the_embedded_tokenizer(real_model):
    tok = real_model.tokenizer
    ids = tok("I like 🐠 and 東京!", add_special_tokens=False)["input_ids"]
    groups = character_groups(tok, ids)
    texts = [g.text for g in groups]
    assert "␣🐠" in texts and "␣東" in texts and "京" in texts
    fish = groups[texts.index("␣🐠")]
    assert fish.pieces == ("␣<F0 9F>", "<90>", "<A0>")
    for g in groups:  # each group is what the tokenizer's own decoder makes of its ids
        assert tok.decode(ids[g.start:g.end]).replace(" ", "␣") == g.text


def test_a_piece_that_never_completes_stays_alone(tiny_tokenizer):
    ids = tiny_tokenizer("🐠", add_special_tokens=False)["input_ids"]
    groups = character_groups(tiny_tokenizer, ids[:1])
    assert len(groups) == 1 and not groups[0].joined and groups[0].text.startswith("<F0")
