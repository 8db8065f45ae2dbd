"""Findings on the embedded SmolLM2: every number a finding quotes equals what the CLI command
behind it prints for the same settings (patch, components --patch heads, features, steer), and
`twinlens steer --layer ℓ --alpha α` run with the reported flip makes B say A's answer."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli

from lib.app.findings import run_findings
from lib.core.capture import capture

PAIRS = {
    "france-italy": ("The capital of France is", "The capital of Italy is"),
    "happy-angry": ("You have happy emotion in yourself!", "You have angry emotion in yourself!"),
    "ioi": ("When Mary and John went to the store, John gave a drink to",
            "When Mary and John went to the store, Mary gave a drink to"),
}


def metric_args(found) -> tuple[str, ...]:
    """--answer/--wrong as the findings chose them (A's and B's top-1, or, when both predict the
    same token, the two whose probability moves most: happy/angry)."""
    carries = found["carries"]
    return ("--answer", carries.number("answer"), "--wrong", carries.number("wrong"))


def cli(*args: str) -> dict:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module", params=list(PAIRS))
def pair_findings(request, real_model):
    a, b = PAIRS[request.param]
    cap_a, cap_b = capture(real_model, a), capture(real_model, b)
    findings = {f.step: f for f in run_findings(real_model, real_model, cap_a, cap_b,
                                                 lambda fn, *x, **k: fn(*x, **k))}
    return a, b, findings


def test_patching_numbers_are_the_patch_commands(pair_findings):
    a, b, found = pair_findings
    carries = found["carries"]
    assert carries.status != "cannot", carries.sentence
    patch = cli("patch", a, b, *metric_args(found))
    assert carries.number("metric_a") == pytest.approx(patch["metric"]["a"], rel=1e-6)
    assert carries.number("metric_b") == pytest.approx(patch["metric"]["b"], rel=1e-6)
    last = [row[-1] for row in patch["effect"]]
    assert carries.number("arrival_layer") == next(layer for layer, e in enumerate(last) if e >= 0.5)
    assert [v for _, _, v in carries.chart] == pytest.approx(last, abs=1e-6)


def test_component_numbers_are_the_components_commands(pair_findings):
    a, b, found = pair_findings
    writes = found["writes"]
    assert writes.status != "cannot", writes.sentence
    data = cli("components", a, b, "--patch", "heads", *metric_args(found))
    total = data["a"]["linearized_logit_diff"] - data["b"]["linearized_logit_diff"]
    assert writes.number("total") == pytest.approx(total, rel=1e-6)
    for name, value in writes.numbers:
        if name.startswith("dla L"):
            layer, head = (int(x) for x in name.removeprefix("dla L").split(" H"))
            assert value == pytest.approx(data["a"]["heads"][layer][head] - data["b"]["heads"][layer][head],
                                          rel=1e-6, abs=1e-6)
            exact = data["patch"]["heads"][layer][head][0]
            assert writes.number(f"patch L{layer} H{head}") == pytest.approx(exact, abs=1e-4)
        elif name.startswith("dla MLP"):
            layer = int(name.removeprefix("dla MLP "))
            assert writes.number(f"patch MLP {layer}") == pytest.approx(
                data["patch"]["components"][layer][1][0], abs=1e-4)


def test_feature_numbers_are_the_features_commands(pair_findings):
    a, b, found = pair_findings
    concepts = found["concepts"]
    assert concepts.status != "cannot", concepts.sentence
    layer = concepts.number("layer")
    assert layer in (6, 15, 24)
    attribution = cli("features", a, b, "--layer", str(layer), *metric_args(found))["attribution"]
    assert concepts.number("total") == pytest.approx(attribution["total"], rel=1e-6)
    assert concepts.number("error") == pytest.approx(attribution["error"], rel=1e-6, abs=1e-9)
    parts = concepts.number("features_sum") + concepts.number("error")
    assert parts == pytest.approx(concepts.number("total"))
    for feature in attribution["features"][:3]:
        assert concepts.number(f"feature {feature['feature']}") == pytest.approx(feature["score"], rel=1e-6)


def test_the_reported_flip_is_reproduced_by_the_steer_command(pair_findings, real_model):
    a, b, found = pair_findings
    flip = found["flip"]
    answer = metric_args(found)[:2]
    if flip.status == "weak":  # happy/angry: no layer makes B say ␣Embrace, said plainly; the CLI agrees
        assert "does not flip" in flip.sentence and flip.number("alpha") is None
        assert cli("steer", a, b, "--flip", *answer)["best"] is None
        return
    layer, alpha = flip.number("layer"), flip.number("alpha")
    assert f"--layer {layer} --alpha {alpha:g}" in flip.caveat
    steered = cli("steer", a, b, "--layer", str(layer), "--alpha", f"{alpha:g}", "--max-new-tokens", "2",
                  *answer)
    assert steered["steered"]["token_ids"][0] == steered["effects"]["answer"]["id"]
    assert steered["push"] == pytest.approx(flip.number("push"), rel=1e-6)
    side = steered["effects"]["side_effect_kl"]["steered"]
    assert side == pytest.approx(flip.number("side_kl_bits"), rel=1e-3)
    searched = cli("steer", a, b, "--flip", *answer)
    assert searched["best"]["layer"] == layer and searched["best"]["alpha"] == alpha
