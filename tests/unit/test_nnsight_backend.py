"""The nnsight backend equals the hooks backend on every tiny family (lib.core.nnsight_backend).

Each test builds the nnsight variant of the family model from the same folder
(`load_model(folder, backend="nnsight")`, which shares the weights and the lock of the local
load) and compares what the views compute. Tolerance: |Δ| ≤ 1e-6 absolute, rtol 0 (float32 on
the CPU). With torch 2.13 / transformers 5.24 / nnsight 0.8.1 the two are in fact bit-identical
on every family: both run the same modules on the same tensors, only the mechanism that reads
and writes them differs.
"""

from __future__ import annotations

import threading
import time

import nnsight
import pytest
import torch

from lib.analyses.compare import compare_prompts
from lib.analyses.patching import patch_captures
from lib.core.backend import Intervention, Run
from lib.core.capture import capture
from lib.core.hooks import HooksBackend
from lib.core.models import load_model
from lib.core.nnsight_backend import NnsightBackend
from lib.core.sites import Site, residual_sites

ATOL = 1e-6
TEXT_A = "Claire and Mary went to the shops"
TEXT_B = "Claire and Kobe went to the shops"


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


@pytest.fixture
def twin(family_model, tiny_folders):
    """The same family model with the nnsight backend (loaded from the same folder)."""
    nn = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight")
    assert isinstance(nn.backend, NnsightBackend) and isinstance(family_model.backend, HooksBackend)
    assert nn.model is family_model.model and nn.lock is family_model.lock  # one copy, one lock
    return nn


def _all_sites(model) -> list[Site]:
    kinds = ("attn_out", "mlp_out", "z", "resid_post")
    return [*residual_sites(model.n_layers), *(Site(l, k) for l in range(model.n_layers) for k in kinds)]


def _interventions(model) -> list[Intervention]:
    d_head = model.d_model // model.architecture.n_heads
    return [
        Intervention(Site(1, "resid_pre"), "add", torch.ones(model.d_model), rows=(1,), positions=(2,)),
        Intervention(Site(1, "z"), "replace", torch.zeros(d_head), head=1),
        Intervention(Site(0, "mlp_out"), "add", torch.full((model.d_model,), 0.5)),
        Intervention(Site(model.n_layers - 1, "attn_out"), "replace", torch.zeros(2, model.d_model),
                     rows=(0, 2), positions=(0, 3)),
    ]


def test_every_site_under_interventions_equals_the_hooks_backend(family_model, twin):
    ids = torch.tensor([capture(family_model, TEXT_A).token_ids]).expand(3, -1)
    sites, changes = _all_sites(family_model), _interventions(family_model)
    hooks = family_model.backend.run(ids, sites=sites, interventions=changes)
    nnsight = twin.backend.run(ids, sites=sites, interventions=changes)
    plain = twin.backend.run(ids, sites=sites)
    close(nnsight.logits, hooks.logits)
    for site in sites:
        close(nnsight.activations[site], hooks.activations[site])
    # the interventions really ran inside the trace: the logits moved
    assert (nnsight.logits - plain.logits).abs().max() > 1e-3


def test_capture_is_the_same_residual_stream(family_model, twin):
    a, b = capture(family_model, TEXT_A), capture(twin, TEXT_A)
    assert a.token_ids == b.token_ids
    close(b.residual, a.residual)
    close(b.final_logits, a.final_logits)


def test_comparison_is_the_same(family_model, twin):
    a = compare_prompts(family_model, TEXT_A, TEXT_B, top_k=5).to_dict()
    b = compare_prompts(twin, TEXT_A, TEXT_B, top_k=5).to_dict()
    assert [c["token"] for c in _tops(b)] == [c["token"] for c in _tops(a)]
    for x, y in zip(_numbers(a), _numbers(b), strict=True):
        assert abs(x - y) <= 1e-5


def test_patching_grid_is_the_same(family_model, twin):
    caps = [capture(m, t) for m in (family_model, twin) for t in (TEXT_A, TEXT_B)]
    answer = int(caps[0].final_logits.argmax())
    wrong = next(int(i) for i in caps[1].final_logits.argsort(descending=True) if i != answer)
    a = patch_captures(family_model, caps[0], caps[1], answer=answer, wrong=wrong, rows=5)
    b = patch_captures(twin, caps[2], caps[3], answer=answer, wrong=wrong, rows=5)
    assert (a.answer, a.wrong, a.positions) == (b.answer, b.wrong, b.positions)
    close(torch.tensor(b.raw, dtype=torch.float64), torch.tensor(a.raw, dtype=torch.float64))
    close(torch.tensor(b.effect, dtype=torch.float64), torch.tensor(a.effect, dtype=torch.float64))


def test_steering_add_and_reduce_inside_the_trace_are_the_same(family_model, twin):
    """A steering vector added at one residual, reduced to the last position's logit change."""
    ids = torch.tensor([capture(family_model, TEXT_A).token_ids])
    vector = torch.randn(family_model.d_model, generator=torch.Generator().manual_seed(0))
    steer = [Intervention(Site.residual_at(1, family_model.n_layers), "add", 3 * vector)]
    base = family_model.backend.run(ids).logits

    def effect(run: Run) -> torch.Tensor:
        return (run.logits - base).norm(dim=-1)

    a = family_model.backend.run(ids, interventions=steer, reduce=effect)
    b = twin.backend.run(ids, interventions=steer, reduce=effect)
    assert b.shape == (1,) and b.item() > 0
    close(b, a)


def test_lens_logits_are_the_same(family_model, twin):
    hidden = capture(family_model, TEXT_A).residual[:, -1]
    close(twin.backend.lens_logits(hidden), family_model.backend.lens_logits(hidden))


def test_a_trace_waits_for_the_model_lock(family_model, twin):
    """nnsight is not thread-safe: a trace starts only when no other run holds the model."""
    ids = torch.tensor([[1, 2, 3]])
    done = threading.Event()
    with twin.lock:
        worker = threading.Thread(target=lambda: (twin.backend.run(ids), done.set()))
        worker.start()
        time.sleep(0.2)
        assert not done.is_set()
    worker.join(timeout=30)
    assert done.is_set()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_remote_serialization_path_gives_the_same_results(tiny_models, tiny_folders, family):
    """remote="local": the trace, its interventions and its reduce are serialized and deserialized
    as for NDIF, then run here."""
    local = tiny_models[family]
    remote = load_model(str(tiny_folders[family]), backend="nnsight", remote="local")
    assert remote.backend.remote == "local"
    ids = torch.tensor([capture(local, TEXT_A).token_ids]).expand(2, -1)
    sites, changes = _all_sites(local), _interventions(local)[:2]

    def reduce(run: Run) -> dict:
        return {"logits": run.logits, "norms": [run.activations[s].norm().item() for s in sites]}

    nnsight.register(__name__)  # the server has no tests: this function is shipped as source

    a = local.backend.run(ids, sites=sites, interventions=changes, reduce=reduce)
    b = remote.backend.run(ids, sites=sites, interventions=changes, reduce=reduce)
    close(b["logits"], a["logits"])
    assert b["norms"] == pytest.approx(a["norms"], abs=1e-4)
    hidden = torch.randn(3, local.d_model)
    close(remote.backend.lens_logits(hidden), local.backend.lens_logits(hidden))
    caps = [capture(local, TEXT_A), capture(local, TEXT_B)]
    answer = int(caps[0].final_logits.argmax())
    wrong = next(int(i) for i in caps[1].final_logits.argsort(descending=True) if i != answer)
    grids = [patch_captures(m, *caps, answer=answer, wrong=wrong, rows=8) for m in (local, remote)]
    close(torch.tensor(grids[1].raw), torch.tensor(grids[0].raw))


def _tops(result: dict) -> list[dict]:
    return [cell for side in ("a", "b") for row in result[side]["lens"] for cell in row]


def _numbers(value) -> list[float]:
    """Every float in a JSON-like value, in order."""
    if isinstance(value, bool):
        return []
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _numbers(value[k])]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return []


def test_nnsight_leaves_no_save_method_on_every_object():
    """nnsight mounts `.save` on `object` when imported; the backend takes it off again."""
    import lib.core.nnsight_backend  # noqa: F401

    assert not hasattr(object(), "save") and not hasattr(3, "save")
