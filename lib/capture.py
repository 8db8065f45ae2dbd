"""One forward pass per prompt that records the residual stream at every layer boundary.

Residual ℓ is the input of block ℓ+1 (ℓ = 0 is the embedding output, after any embedding scale
such as Gemma's √d) and residual L is the output of the last block, *before* the final norm.
They are read with hooks on the blocks themselves, not from `output_hidden_states`, because HF's
last hidden state is often already normalized.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from lib.errors import PromptError
from lib.models import LoadedModel
from lib.tokens import encode, readable_tokens

# Given (layer ℓ, residual [batch, pos, d]) a hook may return a replacement residual, or None.
ResidualHook = Callable[[int, torch.Tensor], torch.Tensor | None]


def _hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def residual_hooks(loaded: LoadedModel, hook: ResidualHook) -> Iterator[None]:
    """Call `hook(ℓ, residual)` at every layer boundary ℓ = 0…L during runs inside the block.

    The hooks are removed when the block exits, also when the run raises. Callers hold the
    model's lock for as long as the hooks exist.
    """
    blocks = loaded.architecture.blocks
    handles = []

    def pre_hook(layer: int):
        def fn(module, args, kwargs):
            new = hook(layer, _hidden_of(args, kwargs))
            if new is None:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return fn

    def post_hook(module, args, kwargs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = hook(len(blocks), hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    try:
        for layer, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(pre_hook(layer), with_kwargs=True))
        handles.append(blocks[-1].register_forward_hook(post_hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def run_model(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Forward `input_ids` [batch, pos]; returns the model's own logits at the last position
    [batch, vocab] (float32). Counts the pass in `loaded.forward_passes`."""
    kwargs = {"use_cache": False}
    if _accepts_logits_to_keep(loaded.model):
        kwargs["logits_to_keep"] = 1
    with loaded.lock, torch.inference_mode():
        loaded.forward_passes += 1
        out = loaded.model(input_ids=input_ids.to(loaded.device), **kwargs)
    return out.logits[:, -1, :].float()


def check_length(loaded: LoadedModel, n_tokens: int) -> None:
    """Refuse inputs longer than the model's context, saying the limit."""
    limit = loaded.max_tokens
    if limit is not None and n_tokens > limit:
        raise PromptError(
            f"The prompt is {n_tokens:,} tokens; {loaded.name} reads at most {limit:,}. Shorten it."
        )


@dataclass(frozen=True)
class Capture:
    """What one forward pass of one prompt leaves behind.

    residual: [L+1, pos, d_model] tensor, residual ℓ at every position (model dtype, model device)
    final_logits: [vocab] float32, the model's own next-token logits at the last position
    """

    text: str
    bos: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    residual: torch.Tensor
    final_logits: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def capture(loaded: LoadedModel, text: str, bos: str = "auto") -> Capture:
    """Run `text` once and keep the residual stream at every layer boundary and position."""
    ids = encode(loaded.tokenizer, text, bos)
    if not ids:
        raise PromptError("The prompt gives no tokens.")
    check_length(loaded, len(ids))
    input_ids = torch.tensor([ids], dtype=torch.long)
    layers: list[torch.Tensor | None] = [None] * (loaded.n_layers + 1)

    def keep(layer: int, hidden: torch.Tensor) -> None:
        layers[layer] = hidden[0].detach().clone()  # a later block may write in place

    with loaded.lock, residual_hooks(loaded, keep):
        logits = run_model(loaded, input_ids)
    return Capture(
        text=text,
        bos=bos,
        token_ids=tuple(ids),
        tokens=tuple(readable_tokens(loaded.tokenizer, ids)),
        residual=torch.stack(layers),  # type: ignore[arg-type]
        final_logits=logits[0],
    )
