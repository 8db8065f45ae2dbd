"""Big models on one host: a model split across devices (device_map, max_memory) gives the numbers
of the unsplit model, with either backend.

The test machines have no GPU, so the split is between the CPU and accelerate's disk offload
(weights of every other block live on disk and are loaded into the block only while it runs):
the same path a 70B model split over GPUs, CPU and disk takes, with tensors moved between
devices by accelerate's hooks and by `Intervention.apply` (values cast to the activation's device).
"""

from __future__ import annotations

import pytest
import torch
from json_close import json_close

from lib.analyses.compare import compare_prompts
from lib.analyses.patching import patch_captures
from lib.core.capture import capture
from lib.core.models import load_model, pick_dtype

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def split_map(loaded) -> dict[str, str]:
    """Every other block on disk, everything else on the CPU (covering each parameter once)."""
    paths = {id(m): n for n, m in loaded.model.named_modules()}
    blocks = {paths[id(b)]: ("disk" if i % 2 else "cpu") for i, b in enumerate(loaded.architecture.blocks)}
    found: dict[str, str] = {}

    def visit(prefix: str, module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            path = prefix + name
            if path in blocks:
                found[path] = blocks[path]
            elif any(b.startswith(path + ".") for b in blocks):
                visit(path + ".", child)
            else:
                found[path] = "cpu"

    visit("", loaded.model)
    return found


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
@pytest.mark.parametrize("backend", ["local", "nnsight"])
def test_split_model_gives_the_numbers_of_the_whole_one(tiny_models, tiny_folders, family, backend):
    whole = tiny_models[family]
    device_map = split_map(whole)
    split = load_model(str(tiny_folders[family]), device_map=device_map, backend=backend)
    assert split.model is not whole.model
    assert set(split.model.hf_device_map.values()) == {"cpu", "disk"}
    assert any(p.device.type == "meta" for p in split.architecture.blocks[1].parameters())  # on disk

    a, b = capture(whole, FRANCE), capture(split, FRANCE)
    torch.testing.assert_close(b.residual, a.residual, rtol=0, atol=1e-6)
    assert json_close(
        compare_prompts(split, FRANCE, ITALY, top_k=5).to_dict(),
        compare_prompts(whole, FRANCE, ITALY, top_k=5).to_dict(),
    )
    caps = [capture(m, t) for m in (whole, split) for t in (FRANCE, ITALY)]
    answer = int(caps[0].final_logits.argmax())
    wrong = next(int(i) for i in caps[1].final_logits.argsort(descending=True) if i != answer)
    grid_whole = patch_captures(whole, caps[0], caps[1], answer=answer, wrong=wrong, rows=6)
    grid_split = patch_captures(split, caps[2], caps[3], answer=answer, wrong=wrong, rows=6)
    torch.testing.assert_close(torch.tensor(grid_split.raw), torch.tensor(grid_whole.raw), rtol=0, atol=1e-5)


def test_auto_map_with_a_memory_cap_spills_to_disk_and_keeps_the_numbers(tiny_models, tiny_folders):
    whole = tiny_models["llama"]
    split = load_model(str(tiny_folders["llama"]), device_map="auto", max_memory={"cpu": "60KB"})
    assert "disk" in set(split.model.hf_device_map.values())
    torch.testing.assert_close(
        capture(split, FRANCE).residual, capture(whole, FRANCE).residual, rtol=0, atol=1e-6
    )


def test_auto_dtype_is_float32_on_the_cpu_and_bfloat16_on_a_gpu_that_has_it(monkeypatch):
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("auto", torch.device("mps")) == torch.float16


def test_unknown_device_map_is_refused_plainly(tiny_folders):
    from lib.core.errors import SettingsError

    with pytest.raises(SettingsError, match="Unknown device map 'everywhere'"):
        load_model(str(tiny_folders["llama"]), device_map="everywhere")

