"""Continuations (lib.analyses.generation): token for token what transformers' `generate` gives,
with the key-value cache, on every tiny family; chat encoding; readable characters across tokens."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.decode import GenerationSettings, eos_ids
from lib.analyses.generation import complete_character, continue_capture, continue_prompt
from lib.core.capture import capture
from lib.core.errors import PromptError, SettingsError

PROMPT = "The capital of France is"


def hf_generate(loaded, ids, n, **kwargs):
    model = loaded.model
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([list(ids)]), max_new_tokens=n,
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            eos_token_id=list(eos_ids(loaded)) or None, pad_token_id=loaded.tokenizer.pad_token_id, **kwargs,
        )
    return tuple(out[0, len(ids):].tolist())


def test_greedy_is_generate(family_model):
    """Greedy continuation = model.generate(do_sample=False), token for token, with one pass per token."""
    cap = capture(family_model, PROMPT)
    before = family_model.forward_passes
    ours = continue_capture(family_model, cap, GenerationSettings(12))
    assert family_model.forward_passes - before == len(ours.token_ids)  # prefix once, then one per new token
    assert ours.token_ids == hf_generate(family_model, cap.token_ids, 12, do_sample=False)
    assert ours.prompt_token_ids == cap.token_ids


def test_sampled_is_generate(family_model):
    """Sampling with temperature T and seed K = torch.manual_seed(K); generate(do_sample=True,
    temperature=T, top_k=0, top_p=1.0): same draws from the same generator state."""
    cap = capture(family_model, PROMPT)
    ours = continue_capture(family_model, cap, GenerationSettings(10, temperature=1.5, seed=7))
    torch.manual_seed(7)
    theirs = hf_generate(family_model, cap.token_ids, 10, do_sample=True, temperature=1.5, top_k=0, top_p=1.0)
    assert ours.token_ids == theirs
    again = continue_capture(family_model, cap, GenerationSettings(10, temperature=1.5, seed=7))
    assert again.token_ids == ours.token_ids


def test_stops_at_eos(tiny_models):
    """A continuation stops at the model's EOS (kept as the last token, as generate keeps it)."""
    loaded = tiny_models["gpt2"]
    cap = capture(loaded, PROMPT)
    first = continue_capture(loaded, cap, GenerationSettings(1)).token_ids[0]
    eos = eos_ids(loaded)
    old = loaded.model.generation_config.eos_token_id
    loaded.model.generation_config.eos_token_id = first  # make the model's first new token its EOS
    try:
        out = continue_capture(loaded, cap, GenerationSettings(8))
    finally:
        loaded.model.generation_config.eos_token_id = old
    assert out.token_ids == (first,) and out.stopped_at_eos
    assert eos_ids(loaded) == eos


def test_bad_settings(tiny_models):
    loaded = tiny_models["gpt2"]
    cap = capture(loaded, PROMPT)
    with pytest.raises(PromptError, match="reads at most 128"):
        continue_capture(loaded, cap, GenerationSettings(128))
    with pytest.raises(SettingsError, match="from 1 to"):
        continue_capture(loaded, cap, GenerationSettings(0))
    with pytest.raises(SettingsError, match="temperature"):
        continue_capture(loaded, cap, GenerationSettings(4, temperature=-1.0))


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_embedded_model_is_generate(real_model, temperature):
    """The embedded SmolLM2, as a chat: same tokens as transformers' generate."""
    from lib.core.chat import Chat

    cap = capture(real_model, "Is there a seahorse emoji?", chat=Chat(prefill="Yes, here it is:"))
    settings = GenerationSettings(16, temperature=temperature, seed=3)
    ours = continue_capture(real_model, cap, settings)
    extra = {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature,
                                                           "top_k": 0, "top_p": 1.0}
    torch.manual_seed(3)
    assert ours.token_ids == hf_generate(real_model, cap.token_ids, 16, **extra)


def test_continue_prompt_chat_and_characters(real_model):
    """The continuation's text is the tokenizer's decoding; its character groups cover every token."""
    from lib.core.chat import Chat

    out = continue_prompt(real_model, "Is there a seahorse emoji?", chat=Chat(prefill="Yes, here it is:"),
                          settings=GenerationSettings(6))
    assert out.text == real_model.tokenizer.decode(list(out.token_ids), skip_special_tokens=True)
    assert [i for g in out.characters for i in range(g.start, g.end)] == list(range(len(out.token_ids)))
    assert out.to_dict()["prompt_token_ids"][-1] == out.prompt_token_ids[-1]


def test_complete_character(real_model):
    """A partial-character token is shown with the character it completes to greedily."""
    tok = real_model.tokenizer
    ids = tok("I like the fish emoji 🐠", add_special_tokens=False)["input_ids"]
    first_piece = next(i for i in ids if "\ufffd" in tok.decode([i]))
    at = ids.index(first_piece)
    done = complete_character(real_model, ids[:at], first_piece)
    assert done is not None and len(done.strip("␣")) == 1 and ord(done.strip("␣")) > 0x7F
    assert complete_character(real_model, ids[:2], ids[2]) is None  # a whole token
