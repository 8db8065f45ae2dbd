"""Where a causal LM keeps the parts the lens needs: its blocks, final norm and unembedding.

Every family hides them under other names (GPT-2's `transformer.h` / `ln_f`, Llama's
`model.layers` / `norm`, OPT's `model.decoder.layers` / `final_layer_norm` / `project_out`,
GPT-NeoX's `gpt_neox.layers` / `final_layer_norm` / `embed_out`). `find_architecture` looks them up
generically and raises `ArchitectureError`, naming the family, when a model does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib.errors import ArchitectureError

_BLOCK_PATHS = ("layers", "h", "decoder.layers", "blocks", "language_model.layers")
_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")
_NORM_PARENTS = ("", "decoder.", "language_model.")


def _get_path(root: nn.Module, path: str) -> object | None:
    obj: object | None = root
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


@dataclass(frozen=True)
class Architecture:
    """The modules the residual stream passes through, found on one loaded model.

    `blocks[i]` maps residual ℓ=i to ℓ=i+1; the lens reads residual h as
    `softcap(unembed(project_out(final_norm(h))))`, the same path the model's own logits take.
    """

    family: str
    blocks: tuple[nn.Module, ...]
    final_norm: nn.Module | None
    project_out: nn.Module | None  # OPT's projection to a narrower word-embedding width
    unembed: nn.Module
    logit_softcap: float | None  # Gemma-2/3: logits = cap · tanh(logits / cap)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Lens logits, float32, shape [..., vocab], for residuals `hidden` of shape [..., d_model]."""
        h = hidden
        if self.final_norm is not None:
            h = self.final_norm(h)
        if self.project_out is not None:
            h = self.project_out(h)
        logits = self.unembed(h).float()
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits


def find_architecture(model: nn.Module) -> Architecture:
    """Locate blocks, final norm, unembedding and output transform of a HF causal LM."""
    config = model.config
    family = getattr(config, "model_type", type(model).__name__)
    base = getattr(model, "base_model", None) or model
    if base is model:
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': no base model inside "
            f"{type(model).__name__}."
        )
    blocks = next(
        (b for p in _BLOCK_PATHS if isinstance(b := _get_path(base, p), nn.ModuleList) and len(b)),
        None,
    )
    if blocks is None:
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': no list of transformer blocks "
            f"found in {type(base).__name__}."
        )
    final_norm = next(
        (
            n
            for parent in _NORM_PARENTS
            for name in _NORM_NAMES
            if isinstance(n := _get_path(base, parent + name), nn.Module)
        ),
        None,
    )
    if final_norm is None:
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': no final norm found in "
            f"{type(base).__name__} (looked for {', '.join(_NORM_NAMES)})."
        )
    unembed = model.get_output_embeddings()
    if unembed is None:
        raise ArchitectureError(f"twinlens cannot read models of type '{family}': no unembedding.")
    project_out = _get_path(base, "decoder.project_out")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text_config, "final_logit_softcapping", None)
    return Architecture(
        family=family,
        blocks=tuple(blocks),
        final_norm=final_norm,
        project_out=project_out if isinstance(project_out, nn.Module) else None,
        unembed=unembed,
        logit_softcap=float(softcap) if softcap else None,
    )
