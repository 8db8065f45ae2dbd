"""Findings on tiny models: the steps run in order and each finding comes before the next step
runs; a step that cannot run says why in its row and the rest still appear; sentences quote the
numbers they carry; the report is self-contained HTML whose numbers are the JSON's."""

from __future__ import annotations

import json

import pytest
from json_close import json_close

from lib.app.findings import STEPS, Finding, first_line, in_order, in_words, run_findings
from lib.app.report import report_data, report_html
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"


def direct(calls: list):
    def get(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args, **kwargs)
    return get


def test_each_finding_comes_before_the_next_step_runs(tiny_models):
    """With both answers written already (`has`: the Compare page wrote them) "says" comes first;
    otherwise it comes just before "flip", from the flip's batch, and each finding still comes
    before the next step runs."""
    loaded = tiny_models["llama"]
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    calls: list[str] = []
    steps = run_findings(loaded, loaded, cap_a, cap_b, direct(calls), has=lambda fn, *a, **k: True)
    first = next(steps)
    assert first.step == "says" and calls == ["continue_capture", "continue_capture"]
    rest = list(steps)
    assert [f.step for f in (first, *rest)] == list(STEPS)
    assert "steer_to_flip" in calls and calls.index("steer_to_flip") > calls.index("patch_captures")
    assert "steer_with_answer" not in calls

    calls.clear()
    found: list[Finding] = []
    before: dict[str, list[str]] = {}  # step → the calls made when its finding came
    for finding in run_findings(loaded, loaded, cap_a, cap_b, direct(calls)):
        found.append(finding)
        before[finding.step] = list(calls)
    assert [f.step for f in found] == ["part", "carries", "writes", "concepts", "says", "flip"]
    assert [f.step for f in in_order(found)] == list(STEPS)
    assert "steer_to_flip" not in before["concepts"] and "patch_captures" not in before["part"]
    assert found[-1].number("alpha") is not None, "the tiny llama flips France/Italy"
    assert "steer_with_answer" in before["says"] and "continue_capture" not in before["flip"]


def test_findings_keep_the_flip_batch_for_the_pages_behind_them(tiny_models):
    """`keep` hands B's steered run and both answers to the keys the Steering and Continuations
    pages read; the values are the ones the findings quote."""
    loaded = tiny_models["llama"]
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    kept: dict = {}

    def keep(value, fn, *args, **kwargs):
        kept.setdefault(fn.__name__, []).append(value)

    found = {f.step: f for f in run_findings(loaded, loaded, cap_a, cap_b, direct([]), keep=keep)}
    assert found["flip"].number("alpha") is not None, "the tiny llama flips France/Italy"
    steered = kept["steer_captures"][0]
    assert found["flip"].number("side_kl_bits") == steered.steered.side_kl
    answers = kept["continue_capture"]
    assert len(answers) == 2 and answers[0].token_ids != () and steered.unsteered.continuation in answers
    assert f"\u201c{in_words(first_line(answers[-1]))}\u201d" in found["says"].sentence


def test_a_step_that_cannot_run_says_why_and_the_rest_still_appear(tiny_models):
    """The tiny models have no shipped SAE; a pair with the same prediction has no logit
    difference to patch, attribute or flip."""
    loaded = tiny_models["gpt2"]
    cap = capture(loaded, A)
    findings = in_order(run_findings(loaded, loaded, cap, cap, direct([])))
    assert [f.step for f in findings] == list(STEPS)
    by_step = {f.step: f for f in findings}
    assert by_step["says"].status == "ok" and by_step["part"].status == "ok"
    for step in ("carries", "writes", "concepts", "flip"):
        assert by_step[step].status == "cannot"
        assert by_step[step].sentence.startswith("This step could not run")
    assert "both predict" in by_step["carries"].sentence
    paris, rome = capture(loaded, "The Paris is"), capture(loaded, "The Rome is")
    assert int(paris.final_logits.argmax()) != int(rome.final_logits.argmax())  # a logit difference
    found = {f.step: f for f in run_findings(loaded, loaded, paris, rome, direct([]))}
    assert found["concepts"].status == "cannot" and "ships no SAE" in found["concepts"].sentence
    assert found["carries"].status != "cannot" and found["flip"].status != "cannot"


def test_two_models_mode_patches_model_1_into_model_2_and_says_why_the_rest_do_not_run(tiny_models):
    """Models of the same depth and width: model 1's residual is written into model 2 (what the
    Patching page runs in two-models mode); the steps comparing two prompts in one model each say why."""
    from lib.analyses.patching import arrival_layer, patch_captures
    from lib.app.findings import TWO_MODELS, contrast_tokens

    model_1, model_2 = tiny_models["llama"], tiny_models["mistral"]
    cap_1, cap_2 = capture(model_1, A), capture(model_2, A)
    calls: list[str] = []
    findings = list(run_findings(model_1, model_1, cap_1, cap_2, direct(calls), names=("model 1", "model 2"),
                                 model_b=model_2))
    assert [f.step for f in findings] == list(STEPS)
    by_step = {f.step: f for f in findings}
    assert by_step["says"].status == by_step["part"].status == "ok"
    assert "model 1 would next write" in by_step["says"].sentence
    carries = by_step["carries"]
    assert carries.status != "cannot", carries.sentence
    contrast = contrast_tokens(model_1, cap_1, cap_2, ("model 1", "model 2"))
    expected = patch_captures(model_2, cap_1, cap_2, answer=contrast.answer, wrong=contrast.wrong,
                              model_a=model_1)
    assert carries.number("arrival_layer") == arrival_layer(expected)
    assert carries.number("metric_a") == pytest.approx(expected.metric_a)
    assert carries.number("metric_b") == pytest.approx(expected.metric_b)
    for step in ("writes", "concepts", "flip"):
        assert by_step[step].status == "cannot"
        assert by_step[step].sentence == f"This step could not run: {TWO_MODELS[step]}"
    for banned in ("attribute_captures", "steer_to_flip", "attribution_of_captures"):
        assert banned not in calls


def test_two_models_of_different_depths_say_so_in_the_patching_step(tiny_models, partner_folders):
    from lib.core.models import load_model

    deep, shallow = tiny_models["gpt2"], load_model(str(partner_folders["gpt2-shallow"]))
    found = {f.step: f for f in run_findings(deep, deep, capture(deep, A), capture(shallow, A), direct([]),
                                              names=("model 1", "model 2"), model_b=shallow)}
    assert found["carries"].status == "cannot"
    assert "have 3 and 2 layers" in found["carries"].sentence
    assert all(found[s].status == "cannot" and "two-models mode" in found[s].sentence
               for s in ("writes", "concepts", "flip"))


def test_emoji_are_named_and_chat_answer_starts_are_said():
    assert in_words("🐦") == "🐦 bird" and in_words("Paris") == "Paris"


def test_report_html_is_self_contained_and_quotes_the_json_numbers():
    finding = Finding("carries", "It reaches the last position at layer 24.", caveat="c",
                      numbers=(("arrival_layer", 24), ("metric_a", 7.3125)),
                      chart=(("last position", "0", 0.0), ("last position", "1", 0.5)),
                      link=(("patch_layer", "24"),))
    data = report_data([finding], prompts={"A": A, "B": "<script>alert(1)</script>"}, model={"name": "m"},
                       settings={"bos": "auto"}, query={"a": A})
    page = report_html(data, [finding])
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page and "<svg" in page
    assert 'data-number="metric_a">7.3125<' in page
    assert json.loads(json.dumps(data))["findings"][0]["numbers"] == {"arrival_layer": 24, "metric_a": 7.3125}
    for tag in ("<link", "src=\"http", "href=\"http", "@import", "url(http"):
        assert tag not in page
    assert data["link"].startswith("/findings?")


@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_a_title_and_a_page(step):
    finding = Finding(step, "x")
    assert finding.title and finding.page and finding.to_dict()["step"] == step


def test_the_history_keeps_the_findings(tiny_models, tmp_path):
    from lib.app.findings import Findings
    from lib.app.history import History

    loaded = tiny_models["gpt2"]
    paris, rome = capture(loaded, "The Paris is"), capture(loaded, "The Rome is")
    found = Findings(tuple(in_order(run_findings(loaded, loaded, paris, rome, direct([])))))
    history = History(tmp_path)
    saved_id = history.save("pair", {"model": "tiny", "a": "The Paris is", "b": "The Rome is"}, found)
    again = history.get(saved_id)
    assert again.kind == "findings.Findings"
    assert again.value() == found


def test_report_command_writes_html_and_json_and_refuses_plainly(tiny_folders, tmp_path):
    from cli_run import run_cli

    model = str(tiny_folders["gpt2"])
    out = tmp_path / "r.html"
    done = run_cli("report", "The Paris is", "The Rome is", "--model", model, "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert json.loads(done.stdout) == data and [f["step"] for f in data["findings"]] == list(STEPS)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    nowhere = run_cli("report", "The Paris is", "The Rome is", "--model", model, "-o",
                      str(tmp_path / "no" / "such" / "r.html"))
    assert nowhere.returncode == 1 and nowhere.stderr.count("\n") == 1
    assert "Cannot write the report" in nowhere.stderr
    chat = run_cli("report", "The Paris is", "The Rome is", "--model", model, "--chat")
    assert chat.returncode == 1 and "chat template" in chat.stderr


def test_an_answer_start_and_a_system_message_are_said_as_part_of_the_answer(tiny_models):
    from lib.analyses.generation import ContinuationPair, GenerationSettings, continue_capture
    from lib.app.findings import says_finding

    loaded = tiny_models["llama"]
    pair = ContinuationPair(*(continue_capture(loaded, capture(loaded, t), GenerationSettings(3))
                              for t in (A, B)))
    said = says_finding(pair, ("A", "B"), {"system": "Be brief.", "prefill": "Yes, here it is:"})
    assert "“Yes, here it is:” is typed in, part of each answer" in said.sentence
    assert "system message “Be brief.”" in said.sentence
    assert said.number("answer_A") in said.sentence
    assert "typed in" not in says_finding(pair, ("A", "B"), None).sentence


# --- on NDIF (nnsight's remote serialization path, remote="local": no network) -------------------


def gated(calls: list):
    """A direct call through the NDIF gate, as `twinlens report --remote` makes it."""
    from lib.app.registry import check_on_ndif

    def get(fn, *args, **kwargs):
        calls.append(fn.__name__)
        check_on_ndif(fn)
        return fn(*args, **kwargs)
    return get


PAIR = ("The Paris is", "The Rome is")  # a logit difference on the tiny GPT-2


@pytest.fixture
def remote_gpt2(tiny_folders):
    from lib.core.models import load_model

    return load_model(str(tiny_folders["gpt2"]), backend="nnsight", remote="local")


def test_on_ndif_steps_1_to_3_run_reduced_with_the_local_numbers_and_4_to_6_say_why(remote_gpt2, tiny_models):
    from lib.app.findings import LOCAL_HINT, ON_NDIF

    caps = [capture(remote_gpt2, t, keep_residual=False) for t in PAIR]
    calls: list[str] = []
    remote = {f.step: f for f in run_findings(remote_gpt2, remote_gpt2, *caps, gated(calls), remote=True)}
    local_model = tiny_models["gpt2"]
    local_caps = [capture(local_model, t) for t in PAIR]
    local = {f.step: f for f in run_findings(local_model, local_model, *local_caps, direct([]))}
    assert all(c.residual is None for c in caps)  # nothing whole came back
    assert list(remote) == list(STEPS)
    for step in ("says", "part", "carries"):
        assert remote[step].status != "cannot", remote[step].sentence
        assert json_close(dict(remote[step].numbers), dict(local[step].numbers), tol=1e-4), step
        assert remote[step].sentence == local[step].sentence
    assert dict(remote["part"].numbers)["peak_layer"] is not None
    for step in ("writes", "concepts", "flip"):
        assert remote[step].status == "cannot" and remote[step].caveat == LOCAL_HINT
        assert remote[step].sentence == f"This step could not run: {ON_NDIF[step]}"
    assert "compare_prompts" in calls and "compare_captures" not in calls


def test_the_ndif_gate_refuses_the_steps_that_would_fetch_residual_streams(remote_gpt2):
    """Planted: run the findings on NDIF captures as if the model were local (remote=False), so the
    steps needing residual streams are tried; the gate refuses each before it runs."""
    caps = [capture(remote_gpt2, t, keep_residual=False) for t in PAIR]
    calls: list[str] = []
    found = {f.step: f for f in run_findings(remote_gpt2, remote_gpt2, *caps, gated(calls))}
    for step in ("part", "writes", "flip"):  # compare_captures, attribute_captures, steer_to_flip
        assert found[step].status == "cannot"
        assert "needs each prompt's whole residual stream" in found[step].sentence
    assert found["says"].status == "ok" and found["carries"].status != "cannot"


def test_report_remote_runs_the_reduced_steps_and_says_why_not_for_the_rest(
    tiny_folders, tmp_path, monkeypatch, run_cli
):
    """`twinlens report A B --remote`: the model "on NDIF" is the tiny GPT-2 on nnsight's
    local-remote path; steps 1–3 give the local report's numbers, 4–6 say why not."""
    from lib.app.findings import ON_NDIF
    from lib.core import models
    from lib.core.models import load_model

    folder = str(tiny_folders["gpt2"])
    monkeypatch.setattr(models, "_load_remote",
                        lambda spec, **settings: load_model(folder, backend="nnsight", remote="local"))
    remote = run_cli("report", *PAIR, "--remote", "--model", "meta-llama/Llama-3.1-8B",
                     "-o", str(tmp_path / "remote.html"))
    assert remote.returncode == 0, remote.stderr
    local = run_cli("report", *PAIR, "--model", folder, "-o", str(tmp_path / "local.html"))
    assert local.returncode == 0, local.stderr
    remote_steps, local_steps = ({f["step"]: f for f in json.loads(r.stdout)["findings"]}
                                 for r in (remote, local))
    for step in ("says", "part", "carries"):
        assert remote_steps[step]["status"] != "cannot"
        assert json_close(remote_steps[step]["numbers"], local_steps[step]["numbers"], tol=1e-4)
    for step in ("writes", "concepts", "flip"):
        assert remote_steps[step]["status"] == "cannot" and ON_NDIF[step] in remote_steps[step]["sentence"]
