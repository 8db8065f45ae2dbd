"""The bad-input table (tests/bad_input_cases.py) through the library: a plain one-line error of our
own type for what is refused, a normal result for what is merely unusual."""

from __future__ import annotations

import httpx2 as httpx  # what huggingface_hub 2 speaks HTTP with
import pytest
from bad_input_cases import GOOD, MODEL_CASE_NAMES, PROMPT_CASES, PromptCase, model_cases  # noqa: F401
from huggingface_hub import errors as hub_errors

from lib.analyses.compare import compare_prompts
from lib.analyses.patching import patch_residual
from lib.core.errors import ModelLoadError, PromptError, SettingsError, TwinlensError
from lib.core.models import load_model
from lib.core.tokens import single_token


def _is_plain(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message and len(message) < 400


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    return tiny_models["gpt2"]


@pytest.mark.parametrize("case", PROMPT_CASES, ids=lambda c: c.name)
def test_prompt_case_is_refused_plainly_or_works(gpt2, case: PromptCase):
    if case.refused:
        with pytest.raises(PromptError) as caught:
            compare_prompts(gpt2, case.text, GOOD, top_k=3)
        assert case.refused in str(caught.value) and _is_plain(str(caught.value))
        with pytest.raises(PromptError):  # as prompt B too
            compare_prompts(gpt2, GOOD, case.text, top_k=3)
    else:
        result = compare_prompts(gpt2, case.text, GOOD, top_k=3)
        assert result.a.text == case.text  # kept as typed, not escaped or stripped
        assert len(result.a.lens) == gpt2.n_layers + 1
        assert all(0 <= t.prob <= 1 for row in result.a.lens for t in row)


@pytest.mark.parametrize("case", [c for c in PROMPT_CASES if c.refused is None], ids=lambda c: c.name)
def test_unusual_prompt_can_be_patched(gpt2, case: PromptCase):
    result = patch_residual(gpt2, case.text, GOOD, answer=" Paris", wrong=" Rome")
    assert result.effect[-1][-1] == pytest.approx(1.0, abs=1e-6)  # A's whole last residual: fully A


def test_prompt_that_is_not_utf8_is_refused(gpt2):
    with pytest.raises(PromptError, match="not UTF-8"):
        compare_prompts(gpt2, "caf\udce9", GOOD)  # b"caf\xe9" read as UTF-8 with surrogateescape


@pytest.mark.parametrize("name", MODEL_CASE_NAMES)
def test_model_case_is_refused_with_a_plain_message(model_cases, name):  # noqa: F811
    case = model_cases[name]
    with pytest.raises(ModelLoadError) as caught:
        load_model(case.spec)
    message = str(caught.value)
    assert case.refused in message, message
    assert _is_plain(message), message


def test_pickle_weights_load_when_explicitly_allowed(model_cases, gpt2):  # noqa: F811
    loaded = load_model(model_cases["pickle_weights_only"].spec, allow_pickle=True)
    from_pickle = compare_prompts(loaded, GOOD, "The capital of Italy is", top_k=3)
    from_safetensors = compare_prompts(gpt2, GOOD, "The capital of Italy is", top_k=3)
    assert (from_pickle.a, from_pickle.b) == (from_safetensors.a, from_safetensors.b)


def _hub_answer(status: int) -> dict:
    request = httpx.Request("GET", "https://huggingface.co/api/models/some-org/some-model")
    return {"response": httpx.Response(status, request=request)}


@pytest.mark.parametrize(
    ("raise_", "phrase"),
    [
        (lambda: hub_errors.RepositoryNotFoundError("404 Not Found", **_hub_answer(404)), "No model called"),
        (lambda: hub_errors.GatedRepoError("403 gated", **_hub_answer(403)), "gated"),
        (lambda: httpx.ConnectError("[Errno -3] Temporary failure in name resolution"), "cannot be reached"),
    ],
    ids=["unknown_id_online", "gated_repo", "network_down"],
)
def test_hub_failures_are_explained(monkeypatch, raise_, phrase):
    """What the hub answers when it can be reached (here it cannot: the hub call is replaced)."""
    import transformers

    def fail(*args, **kwargs):
        raise OSError("transformers' own wording, which must not matter") from raise_()

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fail)
    with pytest.raises(ModelLoadError) as caught:
        load_model("some-org/some-model")
    assert phrase in str(caught.value) and _is_plain(str(caught.value))


def test_top_k_zero_and_above_the_vocabulary_are_refused(gpt2):
    for k, phrase in ((0, "at least 1"), (gpt2.vocab_size + 1, "vocabulary has only")):
        with pytest.raises(SettingsError, match=phrase):
            compare_prompts(gpt2, GOOD, GOOD, top_k=k)
    assert len(compare_prompts(gpt2, GOOD, GOOD, top_k=gpt2.vocab_size).a.final) == gpt2.vocab_size


def test_a_single_token_of_several_is_refused_but_a_patching_word_is_measured_by_its_first_piece(gpt2):
    with pytest.raises(PromptError) as caught:
        single_token(gpt2.tokenizer, " Parisianism")
    assert "tokens (" in str(caught.value) and "not one" in str(caught.value)
    result = patch_residual(gpt2, GOOD, "The capital of Italy is", answer=" Parisianism")
    assert result.answer.word == "␣Parisianism" and result.answer.token == "␣Paris"


def test_every_refusal_is_a_twinlens_error():
    """The UI and the CLI catch TwinlensError; every type raised above must be one."""
    assert all(issubclass(t, TwinlensError) for t in (PromptError, ModelLoadError, SettingsError))


@pytest.mark.parametrize(("device", "phrase"), [("cuda:99", "no device"), ("meta", "Unknown device")])
def test_device_this_machine_lacks_is_refused(tiny_folders, device, phrase):
    with pytest.raises(ModelLoadError, match=phrase):
        load_model(str(tiny_folders["gpt2"]), device=device)
