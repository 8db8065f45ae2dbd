"""Circuits (issue 27): what edge attribution patching costs on the embedded model, how it compares
with InterpKit's `eap`, and how well its top edges agree with exact path patching.

- circuit_eap_ratio: every edge's EAP score per head (`edge_scores`: one forward pass of A, one
  forward and backward pass of B recording residuals, attn_out, mlp_out and z, and the scores) ÷
  one bare forward + backward pass of B (transformers alone: the embedding as the only leaf that
  needs a gradient). Target ≤ 3. circuit_eap_layers_ratio: the same per layer's attention.
- circuit_vs_interpkit_ratio (needs interpkit, requirements-bench.txt): `edge_scores` per head ÷
  InterpKit 0.7.0's `Model.eap(clean=A, corrupted=B, top_k_edges=None)` on the same folder and
  pair, without printing its table. Target ≤ 0.5. InterpKit's edges are coarser (embedding /
  layer attention / MLP → the residual after each later block, LN-free); ours go component →
  component, heads as sources.
- circuit_pearson_r_{france,ioi}: Pearson r of the top 20 edges' EAP scores against exact path
  patching of each edge alone; circuit_faithfulness_{france,ioi}: of the 50-edge circuit, measured
  by running it (the number is what it is; no target); the same with EAP-IG, 8 steps (`_ig8`).

    python bench/bench_circuit.py        # prints JSON
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from bench.harness import paired  # noqa: E402
from lib.analyses.circuit import edge_scores, find_circuit  # noqa: E402
from lib.analyses.common.metric import metric_pair  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.models import LoadedModel, ensure_default_model, load_model  # noqa: E402

FRANCE = ("The capital of France is", "The capital of Italy is", " Paris", " Rome")  # 5 tokens each
IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", " Mary", " John")
IG_STEPS = 8  # EAP-IG's figures are measured with this many steps too
TARGETS = {"circuit_eap_ratio": ("<=", 3.0), "circuit_vs_interpkit_ratio": ("<=", 0.5)}


def _forward_backward(model: LoadedModel, ids: torch.Tensor, answer: int, wrong: int):
    """One bare forward + backward pass of transformers: d metric / d embedding."""
    embed = model.model.get_input_embeddings()

    def run() -> torch.Tensor:
        with model.lock, torch.enable_grad():
            x = embed(ids).detach().requires_grad_(True)
            logits = model.model(inputs_embeds=x, use_cache=False).logits[0, -1]
            return torch.autograd.grad(logits[answer] - logits[wrong], x)[0]

    return run


def _interpkit_eap(a: str, b: str):
    """InterpKit's `Model.eap` without its table printed (`run_eap(render=False)`, which it calls)."""
    import interpkit
    from interpkit.ops.eap import run_eap

    kit = interpkit.load(str(ensure_default_model()), device="cpu", dtype="float32")
    return lambda: run_eap(kit, a, b, top_k_edges=None, render=False)


def run() -> dict:
    """Figures at the top level (numbers) and `details_circuit`."""
    model = load_model("default")
    a, b, answer, wrong = FRANCE
    cap_a, cap_b = capture(model, a), capture(model, b)
    pair = metric_pair(model, cap_a, cap_b, answer, wrong)
    ids_b = torch.tensor([cap_b.token_ids])
    bare = _forward_backward(model, ids_b, pair.answer.id, pair.wrong.id)
    heads = paired(lambda: edge_scores(model, cap_a, cap_b, pair), bare)
    layers = paired(lambda: edge_scores(model, cap_a, cap_b, pair, granularity="layers"), bare)
    found: dict = {"circuit_eap_ratio": heads.ratio, "circuit_eap_layers_ratio": layers.ratio}
    details: dict = {"eap": heads.to_dict(), "eap_layers": layers.to_dict(),
                     "tokens": [cap_a.n_tokens, cap_b.n_tokens]}
    try:
        kit = _interpkit_eap(a, b)
    except ImportError as exc:
        details["interpkit"] = f"not measured: {exc}"
    else:
        versus = paired(lambda: edge_scores(model, cap_a, cap_b, pair), kit, runs=3)
        found["circuit_vs_interpkit_ratio"] = versus.ratio
        details["interpkit"] = versus.to_dict()
    pairs = (("france", FRANCE), ("ioi", IOI))
    for (name, (pa, pb, ans, wr)), steps in itertools.product(pairs, (1, IG_STEPS)):
        start = time.perf_counter()
        result = find_circuit(model, capture(model, pa), capture(model, pb), answer=ans, wrong=wr, edges=50,
                              ig_steps=steps)
        name = name if steps == 1 else f"{name}_ig{steps}"
        found[f"circuit_pearson_r_{name}"] = result.pearson_r
        found[f"circuit_faithfulness_{name}"] = result.faithfulness
        details[name] = {"seconds": time.perf_counter() - start, "edges": len(result.edges),
                         "knockout": result.knockout, "metrics": [result.metric_a, result.metric_b],
                         "curve": [p.to_dict() for p in result.curve],
                         "top": [e.to_dict() for e in result.edges[:10]]}
    found["details_circuit"] = details
    return found


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
