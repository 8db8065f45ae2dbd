"""Where a causal LM keeps the parts the lens needs: its blocks, final norm and unembedding.

Every family hides them under other names (GPT-2's `transformer.h` / `ln_f`, Llama's
`model.layers` / `norm`, OPT's `model.decoder.layers` / `final_layer_norm` / `project_out`,
GPT-NeoX's `gpt_neox.layers` / `final_layer_norm` / `embed_out`). `find_architecture` looks them up
generically and raises `ArchitectureError`, naming the family, when a model does not fit;
`check_lens` then runs a few tokens once to prove that the parts found reproduce the model's own
logits, so a family with an output step twinlens does not know is refused at load time instead
of showing a lens that is quietly wrong. The output steps transformers' causal LMs take after the
unembedding are read from the config (`output_scale`): Cohere's and Cohere-2's `logit_scale`
(logits · s), Granite's `logits_scaling` (logits / s), Gemma-2/3's final soft-cap.

Verified on tiny random models of GPT-2, GPT-Neo, GPT-NeoX, OPT, Llama, Mistral, Qwen2, Gemma,
Gemma-2 and Phi-3 (`make matrix` writes docs/support_matrix.md from those tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ArchitectureError
from .sites import Site

_BLOCK_PATHS = ("layers", "h", "decoder.layers", "blocks", "language_model.layers")
_NORM_NAMES = (
    "norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm", "norm_f", "layer_norm", "layernorm",
    "ln_out",
)
_NORM_PARENTS = ("", "decoder.", "language_model.")


def _get_path(root: nn.Module, path: str) -> object | None:
    obj: object | None = root
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


_ATTENTION_NAMES = ("self_attn", "attn", "attention")
_OUT_PROJ_NAMES = ("o_proj", "c_proj", "out_proj", "dense", "attention.out_proj")
_MLP_NAMES = ("mlp", "feed_forward", "fc2", "block_sparse_moe")


@dataclass(frozen=True)
class BlockParts:
    """The modules of one block that the named sites sit on (lib.core.sites).

    attention: the attention module; its output (first element of a tuple) is the attention output
        and, with eager attention, its second element is the pattern [batch, heads, query, key].
    out_proj: the attention's output projection; its *input* [batch, pos, heads·d_head] is
        `hook_z`, split by head (GQA, Conv1D and fused-QKV families alike: keys and values are
        shared before this point, the projection always reads one slice per query head).
    attn_out / mlp_out: the modules whose outputs the block adds to the residual stream. Gemma-2,
        Gemma-3, OLMo-2 and EXAONE-4 normalize each branch before adding it (a
        `post_feedforward_layernorm`), so there they are the post-norms; OPT has no MLP module,
        so its MLP output is `fc2`'s.
    """

    attention: nn.Module
    out_proj: nn.Module
    attn_out: nn.Module
    mlp_out: nn.Module


@dataclass(frozen=True)
class Architecture:
    """The modules the residual stream passes through, found on one loaded model.

    `blocks[i]` maps residual ℓ=i to ℓ=i+1; the lens reads residual h as
    `softcap(scale · unembed(project_out(final_norm(h))))`, the same path the model's own logits take.
    """

    family: str
    d_model: int  # width of the residual stream (OPT's word embeddings may be narrower)
    blocks: tuple[nn.Module, ...]
    final_norm: nn.Module | None  # None: the family normalizes inside its blocks (OPT-350m)
    project_out: nn.Module | None  # OPT's projection to a narrower word-embedding width
    unembed: nn.Module
    logit_softcap: float | None  # Gemma-2/3: logits = cap · tanh(logits / cap)
    parts: tuple[BlockParts, ...] | None = None  # None: the blocks' insides are not recognised
    n_heads: int | None = None  # query heads per block
    logit_scale: float | None = None  # Cohere: logits · logit_scale; Granite: logits / logits_scaling
    parts_note: str = ""  # why `parts` is None, when twinlens knows

    def block_parts(self, layer: int) -> BlockParts:
        """The parts of block `layer`, or `ArchitectureError` when this family's are unknown."""
        if self.parts is None:
            why = self.parts_note or "twinlens cannot find the attention and MLP inside its blocks"
            raise ArchitectureError(
                f"'{self.family}': {why}, so only the residual stream can be read."
            )
        return self.parts[layer]

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def site_module(self, site: Site) -> tuple[nn.Module, bool]:
        """The module a canonical site sits on, and whether the site is that module's input (the
        backends hook or trace exactly there): residual ℓ < L → block ℓ's input, residual L → the
        last block's output, hook_z → the output projection's input, hook_attn_out / hook_mlp_out /
        hook_pattern → those modules' outputs."""
        if site.kind == "resid_pre":
            return self.blocks[site.layer], True
        if site.kind == "resid_post":
            return self.blocks[site.layer], False
        parts = self.block_parts(site.layer)
        if site.kind == "z":
            if self.n_heads is None:
                raise ArchitectureError(f"'{self.family}' does not say how many attention heads it has.")
            return parts.out_proj, True
        return {"attn_out": parts.attn_out, "mlp_out": parts.mlp_out, "pattern": parts.attention}[
            site.kind
        ], False

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Lens logits, float32, shape [..., vocab], for residuals `hidden` of shape [..., d_model]."""
        h = hidden
        if self.final_norm is not None:
            h = self.final_norm(h)
        if self.project_out is not None:
            h = self.project_out(h)
        return self.transform_logits(self.unembed(h))

    def transform_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The family's output step after the unembedding (scale, then soft-cap), in float32."""
        logits = logits.float()
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
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
    if final_norm is None and not _declares_no_final_norm(base):
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': no final norm found in "
            f"{type(base).__name__} (looked for {', '.join(_NORM_NAMES)})."
        )
    unembed = model.get_output_embeddings()
    if unembed is None:
        raise ArchitectureError(f"twinlens cannot read models of type '{family}': no unembedding.")
    project_out = _get_path(base, "decoder.project_out")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text_config, "final_logit_softcapping", None) or getattr(
        text_config, "logits_soft_cap", None  # RecurrentGemma's name for it
    )
    width = getattr(text_config, "hidden_size", None)
    parts, parts_note = _block_parts(tuple(blocks)), ""
    multiplier = getattr(text_config, "residual_multiplier", None)
    if isinstance(multiplier, (int, float)) and multiplier != 1:
        parts = None
        parts_note = (
            f"each block scales its attention and MLP outputs by residual_multiplier={multiplier:g} "
            "before adding them, so those modules' outputs are not what the block adds"
        )
    elif parts is None:
        parts_note = _PARTS_NOTES.get(family, "")
    return Architecture(
        parts=parts,
        parts_note=parts_note,
        n_heads=_n_heads(text_config),
        family=family,
        d_model=int(width) if width else int(model.get_input_embeddings().weight.shape[1]),
        blocks=tuple(blocks),
        final_norm=final_norm,
        project_out=project_out if isinstance(project_out, nn.Module) else None,
        unembed=unembed,
        logit_softcap=float(softcap) if softcap else None,
        logit_scale=output_scale(text_config),
    )


def output_scale(config: object) -> float | None:
    """The factor a family multiplies its logits by after the unembedding, from its config:
    Cohere / Cohere-2 `logit_scale` (×), Granite and Granite-MoE `logits_scaling` (÷); None = 1."""
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale != 1:
        return float(scale)
    divisor = getattr(config, "logits_scaling", None)
    if isinstance(divisor, (int, float)) and not isinstance(divisor, bool) and divisor not in (0, 1):
        return 1.0 / float(divisor)
    return None


# Why the attention and MLP of a family's blocks are not read (the residual stream still is).
_PARTS_NOTES = {
    "bloom": "its attention and MLP modules add the residual inside themselves",
    "falcon": "its attention and MLP modules are named self_attention / mlp and, in parallel "
    "blocks, the attention output is added into the MLP output in place",
    "mamba": "its blocks are state-space (Mamba) mixers, with no attention",
    "falcon_mamba": "its blocks are state-space (Mamba) mixers, with no attention",
    "recurrent_gemma": "most of its blocks are recurrent (RG-LRU) mixers, not attention",
    "jamba": "it mixes attention and Mamba blocks",
    "bamba": "it mixes attention and Mamba blocks",
}


def _first_module(owner: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    return next((m for n in names if isinstance(m := _get_path(owner, n), nn.Module)), None)


def _block_parts(blocks: tuple[nn.Module, ...]) -> tuple[BlockParts, ...] | None:
    """Each block's attention, output projection and the two branches it adds, or None if any
    block does not have them under the names families use."""
    found = []
    for block in blocks:
        attention = _first_module(block, _ATTENTION_NAMES)
        out_proj = attention is not None and _first_module(attention, _OUT_PROJ_NAMES)
        mlp = _first_module(block, _MLP_NAMES)
        if attention is None or not out_proj or mlp is None:
            return None
        post_norms = _get_path(block, "post_feedforward_layernorm") is not None  # Gemma-2/3, OLMo-2
        found.append(
            BlockParts(
                attention=attention,
                out_proj=out_proj,
                attn_out=block.post_attention_layernorm if post_norms else attention,
                mlp_out=block.post_feedforward_layernorm if post_norms else mlp,
            )
        )
    return tuple(found)


def _n_heads(config: object) -> int | None:
    for name in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _declares_no_final_norm(base: nn.Module) -> bool:
    """True when a final-norm attribute exists but is set to None (OPT with post-block norms)."""
    return any(
        (owner := _get_path(base, parent.rstrip(".")) if parent else base) is not None
        and hasattr(owner, name)
        and getattr(owner, name) is None
        for parent in _NORM_PARENTS
        for name in _NORM_NAMES
    )


@torch.inference_mode()
def check_parts(model: nn.Module, architecture: Architecture, input_ids: torch.Tensor) -> Architecture:
    """Run `input_ids` once and check that every block adds exactly its attention and MLP
    outputs: resid_post ℓ − resid_pre ℓ = attn_out ℓ + mlp_out ℓ, to float error (relative to the
    residual's size: 1e-4 in float32, 2e-2 in half precision). A family whose blocks mix their
    branches otherwise (a learned residual scale, an in-place sum) keeps its residual stream
    and loses `parts`, with the reason. No hook outlives the call."""
    if architecture.parts is None:
        return architecture
    seen: dict[tuple[int, str], torch.Tensor] = {}

    def keep(layer: int, what: str, pre: bool):
        def pre_hook(module, args, kwargs):
            seen[layer, what] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        def post_hook(module, args, output):
            seen[layer, what] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return pre_hook if pre else post_hook

    handles = []
    for layer, (block, parts) in enumerate(zip(architecture.blocks, architecture.parts, strict=True)):
        handles.append(block.register_forward_pre_hook(keep(layer, "pre", True), with_kwargs=True))
        handles.append(block.register_forward_hook(keep(layer, "post", False)))
        handles.append(parts.attn_out.register_forward_hook(keep(layer, "attn", False)))
        handles.append(parts.mlp_out.register_forward_hook(keep(layer, "mlp", False)))
    try:
        model(input_ids=input_ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    tolerance = 1e-4 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 2e-2
    for layer in range(architecture.n_layers):
        try:
            added = seen[layer, "post"].float() - seen[layer, "pre"].float()
            branches = seen[layer, "attn"].float() + seen[layer, "mlp"].float()
            gap = ((added - branches).abs().max() / seen[layer, "post"].float().abs().max().clamp_min(1e-6))
            ok = bool(gap <= tolerance)
        except (KeyError, RuntimeError):  # a module that did not run, or shapes that do not add
            ok = False
        if not ok:
            return dataclasses.replace(
                architecture, parts=None,
                parts_note=f"its block {layer} does not add its attention and MLP outputs plainly to the "
                "residual (resid_post − resid_pre ≠ attn_out + mlp_out)",
            )
    return architecture


def lens_tolerance(dtype: torch.dtype) -> float:
    """The largest |Δp| allowed between the lens at the last layer and the model's own output."""
    if dtype in (torch.float32, torch.float64):
        return 1e-4
    return 4e-2 if dtype == torch.bfloat16 else 2e-2  # bfloat16 keeps 8 mantissa bits, float16 11


def probability_gap(architecture: Architecture, hidden: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """max |softmax(lens(h_L)) − softmax(model logits)| over positions and vocabulary, for the last
    block's output `hidden` [pos, d_model] and the model's own logits `own` [pos, vocab] (a 0-dim tensor)."""
    lens = architecture.logits(hidden)
    return (torch.softmax(lens.float(), -1) - torch.softmax(own.float(), -1)).abs().max()


def refuse_lens_gap(family: str, gap: float, dtype: torch.dtype) -> None:
    """Refuse a model whose lens at the last layer misses its own output by more than the tolerance."""
    if not gap <= lens_tolerance(dtype):  # also refuses NaN
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': the lens at the last layer does not "
            f"reproduce the model's own next-token probabilities (max |Δp| = {gap:.3g}); the model "
            "transforms its output in a way twinlens does not know."
        )


@torch.inference_mode()
def check_lens(model: nn.Module, architecture: Architecture, input_ids: torch.Tensor) -> float:
    """Run `input_ids` [1, pos] once and check that the parts found are the model's real path:
    every block runs exactly once, in order, on a residual of width d_model, and at every position
    max |softmax(lens(h_L)) − softmax(model logits)| ≤ `lens_tolerance`. Returns that max |Δp|;
    raises `ArchitectureError` naming the family otherwise. No hook outlives the call.
    """
    family, blocks = architecture.family, architecture.blocks
    order: list[int] = []
    last: list[torch.Tensor] = []

    def ran(index: int):
        return lambda module, args: order.append(index)

    def keep(module, args, output):
        last.append(output[0] if isinstance(output, tuple) else output)

    handles = [block.register_forward_pre_hook(ran(i)) for i, block in enumerate(blocks)]
    handles.append(blocks[-1].register_forward_hook(keep))
    try:
        own = model(input_ids=input_ids, use_cache=False).logits[0].float()
    finally:
        for handle in handles:
            handle.remove()
    if order != list(range(len(blocks))):
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': its {len(blocks)} blocks do not run "
            "once each, in order, so the residual stream between them is not what twinlens reads."
        )
    hidden = last[-1][0]
    if hidden.shape[-1] != architecture.d_model:
        raise ArchitectureError(
            f"twinlens cannot read models of type '{family}': the last block gives width "
            f"{hidden.shape[-1]}, the config says {architecture.d_model}."
        )
    gap = probability_gap(architecture, hidden, own).item()
    refuse_lens_gap(family, gap, hidden.dtype)
    return gap


def affine_rows(module: nn.Module, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(A [out, in], bias [out]) of a Linear or GPT-2 Conv1D layer, y = A x + bias."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if hasattr(module, "nf") and getattr(module, "weight", None) is not None:  # transformers' Conv1D
        return module.weight.T, module.bias
    raise ArchitectureError(f"twinlens cannot read the {what} ({type(module).__name__}) as a linear map.")

