"""Which lens reads the residual stream: the logit lens, a tuned lens or a Jacobian lens.

Every lens reads residual h_ℓ [d_model] as `softcap(W_U · final_norm(T_ℓ(h_ℓ)))`, the model's own
output path after one per-layer transform T_ℓ:

    logit     T_ℓ(h) = h                                   (nostalgebraist 2020)
    tuned     T_ℓ(h) = h + A_ℓ h + b_ℓ                     (Belrose et al. 2023; A = 0, b = 0: logit)
    jacobian  T_ℓ(h) = J_ℓ h                               (Gurnee et al. 2026; J = I: logit)

with J_ℓ = mean over prompts and source positions t (after the first 16) of
Σ_{t' ≥ t} ∂h_L,t' / ∂h_ℓ,t — the average first-order effect of residual ℓ on the last block's
output (before the final norm). At the last residual (ℓ = L) every lens is the identity, so
every lens there is the model's own next-token distribution.

Files read here, as the field writes them:

    Jacobian lens  a `.pt` dict {"J": {layer: [d, d]}, "n_prompts", "source_layers", "d_model",
                   "metadata"?} (anthropics/jacobian-lens, TransformerLens 4 `JacobianLens.save`),
                   read with `torch.load(weights_only=True)`: no code runs. File layer ℓ is the
                   output of block ℓ = twinlens residual ℓ + 1; residuals without a matrix
                   (0, and L) are read with the identity.
    Tuned lens     a folder with `config.json` (tuned-lens 0.2 `TunedLensConfig`: d_model,
                   num_hidden_layers, bias, unembed_hash, …) and `params.pt`, the state dict of
                   its translators {"i.weight": A_i [d, d], "i.bias": b_i [d]} for i = 0…L−1;
                   translator i reads hidden_states[i] = twinlens residual i.

A lens made for another model is refused with one sentence: another width, another layer count,
or (when the file records one) another unembedding (tuned-lens's `unembed_hash`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...core.errors import LensError
from ...core.models import LoadedModel
from .sae import same_model

KINDS = ("logit", "tuned", "jacobian")
NAMES = {"logit": "logit lens", "tuned": "tuned lens", "jacobian": "Jacobian lens"}
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "lenses"
JACOBIAN_FILE = "jacobian.pt"
TUNED_FOLDER = "tuned"
CARD_FILE = "card.json"


@dataclass(frozen=True, eq=False)
class Lens:
    """One lens for one model: a transform per residual applied before the final norm and unembedding.

    weights[ℓ] [d, d] and biases[ℓ] [d] (float32) for the residuals that have them; `additive`:
    T_ℓ(h) = h + W h + b (tuned) else W h + b (Jacobian). A residual without a weight is read with
    the identity (the logit lens). `provenance` is the caption a page or export shows.
    """

    kind: str
    d_model: int
    n_layers: int
    weights: Mapping[int, torch.Tensor] = field(default_factory=dict)
    biases: Mapping[int, torch.Tensor] = field(default_factory=dict)
    additive: bool = False
    provenance: str = "logit lens"
    source: str = ""  # the file or folder it was read from ("" = built in)
    n_prompts: int | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)

    @property
    def is_identity(self) -> bool:
        return not self.weights and not self.biases

    @property
    def transformed(self) -> tuple[int, ...]:
        """The residuals this lens changes (the others are read as by the logit lens)."""
        return tuple(sorted(set(self.weights) | set(self.biases)))

    def transform(self, hidden: torch.Tensor, layers: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """T_ℓ(h) for rows `hidden` [n, d] of residuals `layers` [n]; same shape and dtype. The
        product runs in float32; the identity (a residual without a weight) returns rows untouched."""
        if self.is_identity:
            return hidden
        layers = torch.as_tensor(layers).tolist()
        out = hidden.clone()
        for layer in sorted(set(layers) & set(self.transformed)):
            rows = torch.tensor([i for i, lay in enumerate(layers) if lay == layer], device=hidden.device)
            out[rows] = self.transform_layer(hidden[rows], layer)
        return out

    def transform_layer(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """T_layer(h) for residuals `hidden` [..., d] all at residual `layer`."""
        weight, bias = self.weights.get(layer), self.biases.get(layer)
        if weight is None and bias is None:
            return hidden
        h = hidden.float()
        if weight is not None:
            moved = h @ weight.to(h.device).T
        else:
            moved = torch.zeros_like(h) if self.additive else h
        if bias is not None:
            moved = moved + bias.to(h.device)
        return (h + moved if self.additive else moved).to(hidden.dtype)

    def to_dict(self) -> dict:
        """What an export says about the lens (no tensors)."""
        return {"kind": self.kind, "provenance": self.provenance, "source": self.source,
                "transformed_residuals": list(self.transformed), "n_prompts": self.n_prompts}


def logit_lens(loaded: LoadedModel) -> Lens:
    """The identity lens: every residual through the final norm and unembedding as it is."""
    return Lens("logit", loaded.d_model, loaded.n_layers)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise LensError(f"Unknown lens '{kind}': use {', '.join(KINDS)}.")
    return kind


# ---------------------------------------------------------------------------------------------
# identity of a model's unembedding (tuned-lens's `unembed_hash`)

_HASHES: dict[tuple[int, tuple[int, ...]], str] = {}
_HASH_LOCK = threading.Lock()


def unembed_hash(loaded: LoadedModel) -> str:
    """tuned-lens's fingerprint of the unembedding: sha256 of `np.array_str(W_U, precision=1)`
    (numpy prints only the corners of a large matrix, so this is quick), cached per weight tensor."""
    weight = loaded.architecture.unembed.weight
    key = (weight.data_ptr(), tuple(weight.shape))
    with _HASH_LOCK:
        if key not in _HASHES:
            array = weight.detach().float().cpu().numpy()
            _HASHES[key] = hashlib.sha256(str.encode(np.array_str(array, precision=1))).hexdigest()
        return _HASHES[key]


def _check_fits(loaded: LoadedModel, what: str, d_model: int, n_layers: int | None, hash_: object) -> None:
    """One sentence when a lens file was made for a model of another width, depth or unembedding."""
    if d_model != loaded.d_model:
        raise LensError(
            f"This {what} was made for a model {d_model} wide; {loaded.name} is {loaded.d_model} wide."
        )
    if n_layers is not None and n_layers != loaded.n_layers:
        raise LensError(
            f"This {what} was made for a model with {n_layers} layers; {loaded.name} has {loaded.n_layers}."
        )
    if isinstance(hash_, str) and hash_ and hash_ != unembed_hash(loaded):
        raise LensError(
            f"This {what} was made for another model: its unembedding differs from {loaded.name}'s."
        )


def _load_pt(path: Path, what: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LensError(f"There is no {what} file at '{path}'.") from None
    except Exception as exc:  # a damaged file, or one that needs code to load: refused alike
        raise LensError(f"'{path}' is not a {what} file twinlens can read ({type(exc).__name__}).") from None


# ---------------------------------------------------------------------------------------------
# the Jacobian lens file


def read_jacobian(path: str | Path, loaded: LoadedModel) -> Lens:
    """A Jacobian-lens artifact (`J`, `n_prompts`, `source_layers`, `d_model`, `metadata`?) for
    `loaded`; file layer ℓ (block ℓ's output) becomes residual ℓ + 1. Refuses another model's."""
    path = Path(path)
    payload = _load_pt(path, "Jacobian lens")
    if not isinstance(payload, dict) or not isinstance(payload.get("J"), dict) or "d_model" not in payload:
        raise LensError(f"'{path}' is not a Jacobian lens file: it has no 'J' and 'd_model'.")
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    d_model = int(payload["d_model"])
    _check_fits(loaded, "Jacobian lens", d_model, metadata.get("n_layers"), metadata.get("unembed_hash"))
    layers = sorted(int(layer) for layer in payload["J"])
    top = loaded.n_layers - 2
    if layers and (layers[0] < 0 or layers[-1] > top):
        raise LensError(
            f"This Jacobian lens has matrices for block outputs {layers[0]}…{layers[-1]}; "
            f"{loaded.name} has block outputs 0…{top} below its last block."
        )
    if int(metadata.get("target_layer", loaded.n_layers - 1)) != loaded.n_layers - 1:
        raise LensError("This Jacobian lens maps to another layer than the last block's output.")
    weights = {}
    for layer, matrix in payload["J"].items():
        if tuple(matrix.shape) != (d_model, d_model):
            raise LensError(
                f"Matrix {layer} of this Jacobian lens is {tuple(matrix.shape)}, not {d_model}×{d_model}."
            )
        weights[int(layer) + 1] = matrix.float()
    n_prompts = int(payload.get("n_prompts", 0))
    return Lens(
        "jacobian", d_model, loaded.n_layers, weights=weights, provenance=jacobian_caption(n_prompts),
        source=str(path), n_prompts=n_prompts, metadata=metadata,
    )


def jacobian_caption(n_prompts: int) -> str:
    return f"Jacobian lens, fitted on {n_prompts:,} prompt{'s' if n_prompts != 1 else ''}"


def save_jacobian(
    path: str | Path, matrices: Mapping[int, torch.Tensor], *, n_prompts: int, loaded: LoadedModel,
    metadata: Mapping[str, object] | None = None, dtype: torch.dtype = torch.float16,
) -> Path:
    """Write residual → J [d, d] in the artifact format (file layer = residual − 1), fp16 by default,
    with the model's name, depth and unembedding fingerprint in `metadata` (TransformerLens 4's
    `JacobianLens.load` reads it: plain keys and values only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = sorted(matrices)
    payload = {
        "J": {residual - 1: matrices[residual].to(dtype).cpu() for residual in layers},
        "n_prompts": int(n_prompts),
        "source_layers": [residual - 1 for residual in layers],
        "d_model": loaded.d_model,
        "metadata": {
            # not "model_name": TransformerLens compares that with its own name for the model
            **dict(metadata or {}), "twinlens_model": loaded.name, "n_layers": loaded.n_layers,
            "target_layer": loaded.n_layers - 1, "unembed_hash": unembed_hash(loaded),
        },
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# the tuned lens folder


def read_tuned(folder: str | Path, loaded: LoadedModel) -> Lens:
    """A tuned-lens folder (config.json + params.pt) for `loaded`; refuses another model's."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LensError(f"There is no tuned lens at '{folder}' (no config.json).") from None
    except (OSError, ValueError):
        raise LensError(f"The config.json in '{folder}' cannot be read as JSON.") from None
    if not isinstance(config, dict) or "d_model" not in config or "num_hidden_layers" not in config:
        raise LensError(
            f"The config.json in '{folder}' is not a tuned lens's (no d_model, num_hidden_layers)."
        )
    d_model, n_layers = int(config["d_model"]), int(config["num_hidden_layers"])
    _check_fits(loaded, "tuned lens", d_model, n_layers, config.get("unembed_hash"))
    state = _load_pt(folder / "params.pt", "tuned lens")
    if not isinstance(state, dict):
        raise LensError(f"The params.pt in '{folder}' is not a tuned lens's state dict.")
    weights, biases = {}, {}
    for i in range(n_layers):
        weight, bias = state.get(f"{i}.weight"), state.get(f"{i}.bias")
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (d_model, d_model):
            raise LensError(f"The tuned lens in '{folder}' has no {d_model}×{d_model} translator {i}.")
        weights[i] = weight.float()
        if isinstance(bias, torch.Tensor):
            biases[i] = bias.float()
    tokens = config.get("twinlens_tokens")
    trained = f", trained on {int(tokens):,} tokens" if isinstance(tokens, int) else ""
    return Lens(
        "tuned", d_model, loaded.n_layers, weights=weights, biases=biases, additive=True,
        provenance=f"Tuned lens{trained}", source=str(folder), metadata=config,
    )


def save_tuned(
    folder: str | Path, weights: Mapping[int, torch.Tensor], biases: Mapping[int, torch.Tensor], *,
    loaded: LoadedModel, extra: Mapping[str, object] | None = None, dtype: torch.dtype = torch.float16,
) -> Path:
    """Write translators (residual i → A_i [d, d], b_i [d], i = 0…L−1) as a tuned-lens folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for i in range(loaded.n_layers):
        state[f"{i}.weight"] = weights[i].to(dtype).cpu().contiguous()
        state[f"{i}.bias"] = biases[i].to(dtype).cpu().contiguous()
    config = {
        "base_model_name_or_path": loaded.name, "d_model": loaded.d_model,
        "num_hidden_layers": loaded.n_layers, "bias": True, "base_model_revision": None,
        "unembed_hash": unembed_hash(loaded), "lens_type": "linear_tuned_lens", **dict(extra or {}),
    }
    torch.save(state, folder / "params.pt.tmp")
    (folder / "params.pt.tmp").replace(folder / "params.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------
# choosing a lens


def shipped_folder(loaded: LoadedModel) -> Path | None:
    """The folder of lenses twinlens ships for `loaded` (its card names the model), if any."""
    if not SHIPPED.is_dir():
        return None
    for card in sorted(SHIPPED.glob(f"*/{CARD_FILE}")):
        try:
            name = json.loads(card.read_text(encoding="utf-8")).get("model", "")
        except (OSError, ValueError):
            continue
        if name and same_model(str(name), loaded.name):
            return card.parent
    return None


_READ: dict[tuple[int, str, str], Lens] = {}


def lens_for(loaded: LoadedModel, kind: str = "logit", path: str | Path | None = None) -> Lens:
    """The lens of `kind` for `loaded`: the identity for "logit"; otherwise the file at `path`, or
    the one twinlens ships for this model. A model without one is told so in one sentence."""
    check_kind(kind)
    if kind == "logit":
        return logit_lens(loaded)
    if path is None:
        folder = shipped_folder(loaded)
        name = JACOBIAN_FILE if kind == "jacobian" else TUNED_FOLDER
        candidate = None if folder is None else folder / name
        if candidate is None or not candidate.exists():
            raise LensError(
                f"twinlens has no {NAMES[kind]} for {loaded.name}; "
                f"fit one with `twinlens lens fit --kind {kind}`."
            )
        path = candidate
    key = (id(loaded), kind, str(Path(path).resolve()))
    if key not in _READ:
        _READ[key] = read_jacobian(path, loaded) if kind == "jacobian" else read_tuned(path, loaded)
    return _READ[key]


def available(loaded: LoadedModel) -> tuple[str, ...]:
    """The lens kinds this model can be read with here (the logit lens always)."""
    folder = shipped_folder(loaded)
    if folder is None:
        return ("logit",)
    has = {"tuned": (folder / TUNED_FOLDER / "params.pt").exists(),
           "jacobian": (folder / JACOBIAN_FILE).exists()}
    return tuple(k for k in KINDS if k == "logit" or has[k])
