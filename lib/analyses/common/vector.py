"""A steering vector and its file: `value` [d_model] (or [positions, d_model] aligned) to add at a
residual, saved as safetensors with its site, layer, mode, model and source in the metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ...core.errors import SettingsError
from ...core.models import LoadedModel
from ...core.sites import Site

FILE_FORMAT = "twinlens-steering-vector/1"
KINDS = {  # a vector's mode → what it holds, in plain words (the Steering page's labels)
    "last": "h_A − h_B at the last token",
    "mean": "mean over A's positions − mean over B's",
    "aligned": "h_A − h_B position by position (A and B equally long)",
    "caa": "a contrast set's mean of h_A − h_B (CAA)",
    "feature": "an SAE feature's decoder direction",
    "imported": "a vector from a file",
}


def kind_label(mode: str) -> str:
    """What a vector of `mode` holds, in plain words (the mode itself when unknown)."""
    return KINDS.get(mode, mode)


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A steering vector: `value` [d_model] (last, mean, imported) or [pos, d_model] (aligned), to
    add at twinlens residual `layer` (hook name `site`) of the model named `model`."""

    layer: int
    mode: str
    value: torch.Tensor
    site: str
    model: str
    source: str = "A − B"

    @property
    def aligned(self) -> bool:
        return self.value.dim() == 2

    @property
    def norm(self) -> float:
        """‖v‖ (for an aligned vector, the mean of the per-position norms)."""
        return float(self.value.float().norm(dim=-1).mean())

    def to_bytes(self, **provenance: str) -> bytes:
        """The vector as a safetensors file, with its site, layer, mode and model in the metadata
        (and any further `provenance` strings, e.g. the sets a mean difference came from)."""
        from safetensors.torch import save

        meta = {"format": FILE_FORMAT, "site": self.site, "layer": str(self.layer), "mode": self.mode,
                "model": self.model, "d_model": str(self.value.shape[-1]), "source": self.source,
                **provenance}
        return save({"vector": self.value.detach().float().cpu().contiguous()}, metadata=meta)


def load_vector(data: bytes, loaded: LoadedModel, layer: int | None = None) -> SteeringVector:
    """A vector saved by `SteeringVector.to_bytes` (or any safetensors file with one tensor
    'vector' and a 'site' in its metadata). Refuses a damaged file, a file for another model, and
    one for another layer than `layer` (when given), naming both."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(bytes(data))
        meta = _metadata(bytes(data))
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError("The vector file is damaged or not a safetensors file.") from exc
    if set(tensors) != {"vector"} or "site" not in meta:
        raise SettingsError(
            "The file holds no steering vector (one tensor 'vector' and a 'site' in its metadata)."
        )
    value = tensors["vector"].float()
    site = Site.parse(meta["site"])
    if not site.is_residual:
        raise SettingsError(
            f"The file's vector is for {site.name}; twinlens steers the residual stream only."
        )
    site.check(loaded.n_layers)
    residual = site.residual
    if meta.get("model") and meta["model"] != loaded.name:
        raise SettingsError(
            f"The vector file was made with the model '{meta['model']}', not '{loaded.name}'. "
            "Use a vector made with this model."
        )
    if value.dim() not in (1, 2) or value.shape[-1] != loaded.d_model or not torch.isfinite(value).all():
        raise SettingsError(
            f"The file's vector has shape {tuple(value.shape)}; this model needs [{loaded.d_model}] "
            f"(or [positions, {loaded.d_model}]) of finite numbers."
        )
    if layer is not None and residual != layer:
        raise SettingsError(
            f"The vector file is for layer {residual} ({site.name}), not layer {layer}. "
            f"Pick layer {residual} to use it."
        )
    return SteeringVector(residual, meta.get("mode", "imported"), value, Site.residual_at(
        residual, loaded.n_layers).name, loaded.name, source=meta.get("source", "file"))


def _metadata(data: bytes) -> dict:
    """The safetensors header's __metadata__ (the library's loader does not return it)."""
    if len(data) < 8:
        raise ValueError("too short")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header past the end")
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    return dict(header.get("__metadata__") or {})



def describe_vector_file(data: bytes) -> str:
    """One plain sentence on what a vector file holds, from its metadata alone (no model needed):
    for a set's vector (mode 'caa', from the Sets page) the sets, how many pairs or prompts, the
    layer, the token position and the model; for others its kind, source, layer and model."""
    try:
        meta = _metadata(bytes(data))
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError):
        return "The file's description cannot be read."
    mode = meta.get("mode", "imported")
    layer, model = meta.get("layer", "?"), meta.get("model") or "an unnamed model"
    if mode == "caa":
        try:
            sets = json.loads(meta.get("sets", "{}"))
        except json.JSONDecodeError:
            sets = {}
        sets = sets if isinstance(sets, dict) else {}
        a, b = sets.get("a") or [], sets.get("b") or []
        name = (f"“{sets['name']}”" if sets.get("name")
                else f"“{a[0]}” … vs “{b[0]}” …" if a and b else "of two sets")
        size = (f"{len(a):,} pairs" if sets.get("paired") else f"{len(a):,} prompts in A, {len(b):,} in B")
        position = meta.get("position", "-1").replace("-", "−")
        return (f"A set's steering vector (contrastive activation addition): the mean of h_A − h_B over "
                f"the contrast set {name} — {size} — at layer {layer}, token position {position}, "
                f"made with {model}.")
    source = meta.get("source", "file")
    return f"A saved vector: {kind_label(mode)} ({source}), layer {layer}, made with {model}."
