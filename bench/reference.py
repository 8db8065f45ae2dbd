"""The work twinlens is measured against: bare transformers, TransformerLens 4, raw safetensors.

Each reference does what a careful user of that tool would write by hand for the same result:
the logit lens at the last position of every layer, top-k with readable tokens, for two prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lib.core.models import LoadedModel

Work = Callable[[], object]
FILLER = (
    "The old lighthouse keeper walked along the shore every morning, counting the boats that had "
    "come back in the night and writing their names in a worn leather book. "
)


def prompt_pair(loaded: LoadedModel, n_tokens: int) -> tuple[str, str]:
    """Two prompts of about `n_tokens` tokens that differ in one word near the end
    (France / Italy), so their residual streams part ways at the last positions."""
    tail_a, tail_b = " The capital of France is", " The capital of Italy is"
    tok = loaded.tokenizer
    n_tail = len(tok(tail_a, add_special_tokens=False)["input_ids"])
    if n_tokens <= n_tail:
        return tail_a.strip(), tail_b.strip()
    repeats = n_tokens // max(1, len(tok(FILLER, add_special_tokens=False)["input_ids"])) + 2
    filler_ids = tok(FILLER * repeats, add_special_tokens=False)["input_ids"][: n_tokens - n_tail]
    head = tok.decode(filler_ids).rstrip(" ,") + "."
    return head + tail_a, head + tail_b


def n_tokens(loaded: LoadedModel, text: str) -> int:
    return len(loaded.tokenizer(text)["input_ids"])


def forward_pass(loaded: LoadedModel, text: str) -> Work:
    """One plain forward pass of `text`: no cache, logits at the last position only."""
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]], device=loaded.device)

    def run() -> None:
        with torch.inference_mode():
            loaded.model(input_ids=ids, use_cache=False, logits_to_keep=1)

    return run


def bare_transformers(loaded: LoadedModel, prompt_a: str, prompt_b: str, top_k: int) -> Work:
    """What `compare_prompts` computes, written directly against transformers.

    Per prompt: tokenize; one forward pass with `output_hidden_states`; the lens
    `softmax(lm_head(norm(h_ℓ)))` at the last position for ℓ = 0…L−1 (HF's last hidden state is
    already normalized, so layer L is the model's own logits); top-k with token strings;
    entropy. Then the cosine distance of the last positions per layer.
    """
    model, tok = loaded.model, loaded.tokenizer
    norm, head = loaded.architecture.final_norm, model.get_output_embeddings()

    def one(text: str) -> torch.Tensor:
        ids = torch.tensor([tok(text)["input_ids"]], device=loaded.device)
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        last = torch.stack([h[0, -1] for h in out.hidden_states[:-1]])
        logits = torch.cat([head(norm(last)), out.logits[0, -1:]]).float()
        logp = torch.log_softmax(logits, -1)
        top = logp.topk(top_k, dim=-1)
        [tok.convert_ids_to_tokens(row) for row in top.indices.tolist()]
        top.values.exp().tolist()
        (-(logp.exp() * logp).sum(-1)).tolist()
        return last

    def run() -> None:
        with torch.inference_mode():
            a, b = one(prompt_a), one(prompt_b)
            torch.nn.functional.cosine_similarity(a, b, dim=-1).tolist()

    return run


def boot_transformerlens(folder: Path):
    """TransformerLens 4's bridge on the same local model folder, float32 on the CPU."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(str(folder), device="cpu", dtype=torch.float32)


def transformerlens(bridge, ids_a: list[int], ids_b: list[int], top_k: int,
                    *, last_position_only: bool = False) -> Work:
    """The logit lens the TransformerLens way, on the same token ids twinlens reads.

    Per prompt: `run_with_cache`; `cache.accumulated_resid(apply_ln=True)` (every layer and, unless
    `last_position_only`, every position); `unembed`; softmax and top-k with token strings. The
    softmax is done in place so the figure shows the lens TransformerLens materializes (layers ×
    positions × vocab floats), not a second copy of it.
    """
    batches = [torch.tensor([ids]) for ids in (ids_a, ids_b)]
    pos_slice = -1 if last_position_only else None

    def one(tokens: torch.Tensor) -> None:
        _, cache = bridge.run_with_cache(tokens)
        resid = cache.accumulated_resid(apply_ln=True, pos_slice=pos_slice)
        logits = bridge.unembed(resid)
        logits.sub_(logits.amax(-1, keepdim=True)).exp_()
        logits.div_(logits.sum(-1, keepdim=True))
        top = logits.topk(top_k, dim=-1)
        del logits, cache
        bridge.tokenizer.convert_ids_to_tokens(top.indices.flatten().tolist())

    def run() -> None:
        with torch.inference_mode():
            for tokens in batches:
                one(tokens)

    return run


def raw_safetensors(folder: Path) -> Work:
    """Reading the model's weights with safetensors alone: `load_file`, nothing built around them."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    return lambda: [load_file(str(f)) for f in files]
