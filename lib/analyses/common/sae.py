"""Sparse autoencoders (SAEs) on the residual stream: reading the field's files, encoding, decoding.

Formats (read without the `sae-lens` package):
  SAELens folder   cfg.json + sae_weights.safetensors (W_enc [d_in, d_sae], b_enc [d_sae],
                   W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae] for JumpReLU)
  Gemma Scope      params.npz (the same names, JumpReLU; hook and model taken from the caller)

Published formulas (SAELens conventions), x [n, d_in]:
    pre = (x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc                  [n, d_sae]
    ReLU (standard):  f = relu(pre)
    JumpReLU:         f = relu(pre) · [pre > θ]
    TopK:             f = relu(pre) on the k largest pre-activations of each row, 0 elsewhere
    x̂ = f W_dec + b_dec                                                    [n, d_in]
    FVU = Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − x̄‖²   (over a prompt's positions 1…; position 0, the
          attention sink, is left out as in training)
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ...core.errors import SettingsError
from ...core.sites import Site

ARCHITECTURES = ("standard", "jumprelu", "topk")
_ALIASES = {"standard": "standard", "relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "sae"


def save_saelens(
    folder: Path, *, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor,
    architecture: str, hook_name: str, model_name: str, k: int | None = None,
    threshold: torch.Tensor | None = None, apply_b_dec_to_input: bool = True, dtype: str = "float16",
    extra: dict | None = None,
) -> Path:
    """Write an SAE in the SAELens folder format (cfg.json + sae_weights.safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if threshold is not None:
        tensors["threshold"] = threshold
    save_file({n: t.detach().to(torch_dtype).contiguous() for n, t in tensors.items()},
              str(folder / "sae_weights.safetensors"))
    layer = int(hook_name.split(".")[1]) if hook_name.startswith("blocks.") else None
    cfg = {
        "architecture": architecture, "d_in": int(W_enc.shape[0]), "d_sae": int(W_enc.shape[1]),
        "dtype": dtype, "device": "cpu", "apply_b_dec_to_input": apply_b_dec_to_input,
        "normalize_activations": "none", "hook_name": hook_name, "hook_layer": layer,
        "model_name": model_name,
        "metadata": {"hook_name": hook_name, "model_name": model_name, "hook_layer": layer},
    }
    if k is not None:
        cfg["k"] = int(k)
    cfg.update(extra or {})
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=1))
    return folder


# ---------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True, eq=False)
class SAE:
    """A residual-stream SAE, float32 on the CPU, in the model's units.

    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae]
    (JumpReLU only); `k` for TopK. `hook_name` is the TransformerLens hook it reads; `residual`
    is twinlens's index of that vector (`blocks.ℓ.hook_resid_post` → ℓ + 1).
    """

    path: str
    architecture: str
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    hook_name: str
    apply_b_dec_to_input: bool = True
    threshold: torch.Tensor | None = None
    k: int | None = None
    model_name: str | None = None

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def site(self) -> Site:
        return Site.parse(self.hook_name)

    @property
    def residual(self) -> int:
        return self.site.residual

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """pre = (x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc: x [n, d_in] → [n, d_sae]."""
        x = x.float()
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations f [n, d_sae] of x [n, d_in] (the formulas in the module docstring)."""
        pre = self.pre_activations(x)
        if self.architecture == "standard":
            return pre.relu()
        if self.architecture == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        values, indices = pre.topk(min(self.k, self.d_sae), dim=-1)
        return torch.zeros_like(pre).scatter_(-1, indices, values.relu())

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """x̂ = f W_dec + b_dec: f [n, d_sae] → [n, d_in]."""
        return f.float() @ self.W_dec + self.b_dec

    def fvu(self, x: torch.Tensor, f: torch.Tensor | None = None) -> float | None:
        """Fraction of variance unexplained on one prompt's residuals x [pos, d_in]:
        Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − x̄‖² over positions 1… (None with fewer than 2 of them)."""
        x = x.float()[1:]
        if len(x) < 2:
            return None
        f = self.encode(x) if f is None else f[1:]
        error = (self.decode(f) - x).pow(2).sum()
        total = (x - x.mean(0)).pow(2).sum()
        return float(error / total) if float(total) > 0 else None

    def check_fits(self, loaded, *, any_model: bool = False) -> None:
        """Refuse a model whose width or depth does not fit this SAE, or (unless `any_model`) a model
        other than the one it was trained on, naming both."""
        own = f" (trained on {self.model_name})" if self.model_name else ""
        if self.d_in != loaded.d_model:
            raise SettingsError(
                f"This SAE reads vectors of width {self.d_in}{own}; {loaded.name} has width "
                f"{loaded.d_model}. Pick an SAE made for {loaded.name}."
            )
        if self.residual > loaded.n_layers:
            raise SettingsError(
                f"This SAE reads {self.hook_name}{own}; {loaded.name} has only {loaded.n_layers} blocks."
            )
        if not any_model and self.model_name and not same_model(self.model_name, loaded.name):
            raise SettingsError(
                f"This SAE was trained on {self.model_name}, not on {loaded.name}. Use it anyway only on "
                "a fine-tune of that model (CLI --any-model; the page's 'any model' box)."
            )


def same_model(a: str, b: str) -> bool:
    """Loose model identity: the last path part, lower case, without a '(…)' note, e.g.
    'HuggingFaceTB/SmolLM2-135M-Instruct' = 'SmolLM2-135M-Instruct (Q4_1, embedded)'."""

    def norm(name: str) -> str:
        return re.sub(r"\s*\(.*\)\s*$", "", name).rstrip("/").split("/")[-1].strip().lower()

    return norm(a) == norm(b)


def load_sae(path: str | Path, *, hook_name: str | None = None, model_name: str | None = None) -> SAE:
    """Read an SAE from a SAELens folder (cfg.json + sae_weights.safetensors), a Gemma Scope
    `params.npz` (or the folder holding it), or `hf:owner/repo/sub/folder` from the Hugging Face
    hub. `hook_name` / `model_name` fill in (or override) what the files do not say.
    Raises SettingsError with one plain sentence for anything that is not a usable SAE."""
    text = str(path).strip()
    if not text:
        raise SettingsError("No SAE given: name a folder with cfg.json + sae_weights.safetensors.")
    if text.startswith("hf:"):
        folder = _from_hub(text[3:])
    else:
        folder = Path(text).expanduser()
    if folder.is_file() and folder.suffix == ".npz":
        return _read_npz(folder, hook_name, model_name)
    if not folder.exists():
        raise SettingsError(f"There is no SAE at '{text}': no such file or folder.")
    if not folder.is_dir():
        raise SettingsError(f"'{text}' is not an SAE: give its folder (cfg.json + sae_weights.safetensors).")
    if (folder / "cfg.json").is_file():
        return _read_saelens(folder, hook_name, model_name)
    if (folder / "params.npz").is_file():
        return _read_npz(folder / "params.npz", hook_name, model_name)
    raise SettingsError(
        f"'{text}' is not an SAE folder: it has neither cfg.json + sae_weights.safetensors (SAELens) "
        "nor params.npz (Gemma Scope)."
    )


def _from_hub(spec: str) -> Path:
    parts = spec.strip("/").split("/")
    if len(parts) < 2:
        raise SettingsError(f"'hf:{spec}' is not a hub SAE: write hf:owner/repo/folder/inside/it.")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import snapshot_download

        pattern = f"{sub}/*" if sub else "*"
        root = snapshot_download(repo, allow_patterns=[pattern])
    except Exception as exc:  # noqa: BLE001 (offline, unknown repo, no access: one sentence)
        raise SettingsError(
            f"Could not fetch the SAE hf:{spec} from the Hugging Face hub ({type(exc).__name__}); "
            "download it and give its folder."
        ) from None
    return Path(root) / sub


def _config_value(cfg: dict, name: str):
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    return cfg.get(name, meta.get(name))


def _read_saelens(folder: Path, hook_name: str | None, model_name: str | None) -> SAE:
    where = str(folder)
    try:
        cfg = json.loads((folder / "cfg.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"The SAE's cfg.json in '{where}' is not valid JSON ({exc}).") from None
    if not isinstance(cfg, dict):
        raise SettingsError(f"The SAE's cfg.json in '{where}' is not a JSON object.")
    arch = str(cfg.get("architecture") or "standard").lower()
    k = cfg.get("k")
    fn = str(cfg.get("activation_fn_str") or cfg.get("activation_fn") or "").lower()
    if arch == "standard" and fn == "topk":  # older SAELens: TopK as an activation function
        arch, k = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k", k)
    if arch not in _ALIASES:
        raise SettingsError(
            f"The SAE in '{where}' has architecture '{arch}'; twinlens reads standard (ReLU), jumprelu "
            "and topk SAEs."
        )
    arch = _ALIASES[arch]
    norm = cfg.get("normalize_activations")
    if norm not in (None, "none", "None", False):
        raise SettingsError(
            f"The SAE in '{where}' expects activations normalized with '{norm}', which twinlens does not "
            "apply; use an SAE saved with normalize_activations='none' (or fold the scaling into it)."
        )
    weights = folder / "sae_weights.safetensors"
    if not weights.is_file():
        raise SettingsError(
            f"'{where}' has a cfg.json but no sae_weights.safetensors; it is not a whole SAE."
        )
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 (any parse failure of a damaged file)
        raise SettingsError(
            f"The SAE weights '{weights}' are damaged or not a safetensors file ({type(exc).__name__})."
        ) from None
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors["log_threshold"].float().exp()
    return _build(
        where, arch, tensors, cfg_d_in=cfg.get("d_in"), cfg_d_sae=cfg.get("d_sae"),
        hook_name=hook_name or _config_value(cfg, "hook_name"),
        model_name=model_name or _config_value(cfg, "model_name"),
        apply_b_dec=bool(cfg.get("apply_b_dec_to_input", arch != "jumprelu")), k=k,
    )


def _read_npz(path: Path, hook_name: str | None, model_name: str | None) -> SAE:
    try:
        with np.load(path, allow_pickle=False) as data:
            tensors = {name: torch.from_numpy(np.array(data[name])) for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise SettingsError(
            f"The SAE file '{path}' is damaged or not an .npz archive ({type(exc).__name__})."
        ) from None
    if hook_name is None:  # Gemma Scope's residual SAEs: …/layer_12/width_16k/… reads resid_post 12
        found = re.search(r"layer_(\d+)", str(path))
        hook_name = f"blocks.{found.group(1)}.hook_resid_post" if found else None
    if model_name is None:
        found = re.search(r"gemma-scope-(2b|9b|27b)", str(path))
        model_name = f"gemma-2-{found.group(1)}" if found else None
    return _build(
        str(path), "jumprelu", tensors, None, None, hook_name, model_name, apply_b_dec=False, k=None
    )


def _build(where: str, arch: str, tensors: dict, cfg_d_in, cfg_d_sae, hook_name, model_name,
           apply_b_dec: bool, k) -> SAE:
    need = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else [])
    missing = [n for n in need if n not in tensors]
    if missing:
        raise SettingsError(f"The SAE in '{where}' has no {', '.join(missing)}; it is not a {arch} SAE.")
    t = {n: tensors[n].float() for n in need}
    d_in, d_sae = (tuple(t["W_enc"].shape) + (0, 0))[:2] if t["W_enc"].dim() == 2 else (-1, -1)
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
                "threshold": (d_sae,)}
    for name in need:
        if d_in < 1 or tuple(t[name].shape) != expected[name]:
            raise SettingsError(
                f"The SAE in '{where}' has weights of the wrong shape: {name} is {list(t[name].shape)}, "
                f"expected {list(expected[name])} (W_enc is [d_in, d_sae])."
            )
    for name, value in (("d_in", cfg_d_in), ("d_sae", cfg_d_sae)):
        actual = d_in if name == "d_in" else d_sae
        if value is not None and int(value) != actual:
            raise SettingsError(
                f"The SAE in '{where}' says {name} = {value} in cfg.json but its weights have {actual}."
            )
    if not all(torch.isfinite(v).all() for v in t.values()):
        raise SettingsError(f"The SAE in '{where}' holds NaN or infinite weights; it is damaged.")
    if arch == "topk":
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= d_sae:
            raise SettingsError(
                f"The TopK SAE in '{where}' needs an integer k in 1…{d_sae} in cfg.json, not {k!r}."
            )
    if not hook_name:
        raise SettingsError(
            f"The SAE in '{where}' does not say which hook it reads; give it "
            "(e.g. blocks.12.hook_resid_post)."
        )
    site = Site.parse(str(hook_name))
    if not site.is_residual:
        raise SettingsError(
            f"The SAE in '{where}' reads {hook_name}; twinlens reads SAEs on the residual stream "
            "(hook_resid_pre / hook_resid_post)."
        )
    return SAE(
        path=where, architecture=arch, W_enc=t["W_enc"], b_enc=t["b_enc"], W_dec=t["W_dec"],
        b_dec=t["b_dec"], threshold=t.get("threshold"), k=k if arch == "topk" else None,
        hook_name=str(hook_name), apply_b_dec_to_input=apply_b_dec,
        model_name=str(model_name) if model_name else None,
    )


# ---------------------------------------------------------------------------------------------
# what ships with twinlens, and the precomputed feature data beside an SAE


def shipped_saes(loaded) -> dict[int, Path]:
    """The SAEs twinlens ships for `loaded` (only the embedded SmolLM2 has some): residual → folder."""
    found: dict[int, Path] = {}
    if not SHIPPED.is_dir():
        return found
    for cfg_path in sorted(SHIPPED.glob("*/*/cfg.json")):
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            name, hook = _config_value(cfg, "model_name"), _config_value(cfg, "hook_name")
            site = Site.parse(hook)
        except (OSError, ValueError, SettingsError):
            continue
        if name and same_model(name, loaded.name) and int(cfg.get("d_in", -1)) == loaded.d_model:
            found[site.residual] = cfg_path.parent
    return dict(sorted(found.items()))


def sae_for_layer(loaded, residual: int | None, path: str | None = None, *, any_model: bool = False) -> SAE:
    """The SAE to read at twinlens residual `residual`: the one at `path`, else the shipped one.
    Refuses a layer without an SAE (naming those that have one) and an SAE that does not fit."""
    if path:
        sae = load_sae(path)
        if residual is not None and sae.residual != residual:
            raise SettingsError(
                f"The SAE at '{path}' reads {sae.hook_name} (residual {sae.residual}), "
                f"not residual {residual}."
            )
    else:
        shipped = shipped_saes(loaded)
        if not shipped:
            raise SettingsError(
                f"twinlens ships no SAEs for {loaded.name}; give one with --sae / the SAE box."
            )
        if residual is None:
            residual = next(iter(shipped))
        if residual not in shipped:
            have = ", ".join(str(r) for r in shipped)
            raise SettingsError(
                f"There is no SAE at residual {residual} of {loaded.name}; there are SAEs at {have}."
            )
        sae = _load_cached(str(shipped[residual]))
    sae.check_fits(loaded, any_model=any_model)
    return sae


@lru_cache(maxsize=8)
def _load_cached(path: str) -> SAE:
    return load_sae(path)


@dataclass(frozen=True)
class Context:
    """One top-activating context of a feature: tokens around the peak, the peak's index in them."""

    tokens: tuple[str, ...]
    peak: int
    activation: float


@dataclass(frozen=True)
class FeatureCard:
    """What a person needs to read feature `feature` of one SAE (precomputed, no model needed)."""

    feature: int
    density: float
    contexts: tuple[Context, ...]
    promoted: tuple[tuple[str, float], ...]
    suppressed: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        return feature_label(self)

    @property
    def generic(self) -> bool:
        """Fires on more than `HIGH_DENSITY` of the training tokens: says little about this pair."""
        return self.density > HIGH_DENSITY

    def to_dict(self) -> dict:
        return {
            "feature": self.feature, "density": self.density, "label": self.label, "generic": self.generic,
            "fires_on": list(fires_on(self)), "example": example(self),
            "promotes": list(promoted_words(self)),
            "contexts": [{"tokens": list(c.tokens), "peak": c.peak, "activation": c.activation}
                         for c in self.contexts],
            "promoted": [list(p) for p in self.promoted], "suppressed": [list(s) for s in self.suppressed],
        }


HIGH_DENSITY = 0.05  # a feature firing on more than 5 % of the training tokens is generic
LABEL_WORDS = 3  # peak words in a label
EXAMPLE_BEFORE, EXAMPLE_AFTER = 5, 2  # tokens of the short example around its peak


def _text(token: str) -> str:
    """A readable token as the text it stands for ('␣capital' → ' capital', '↵' → a newline)."""
    return token.replace("␣", " ").replace("↵", "\n")


def is_word(token: str) -> bool:
    """Whether a readable token is a whole word a reader knows: it starts a word (a leading space)
    and is letters only, at least two of them ('␣Paris' yes; 'incoln', '␣##', '␣a' no)."""
    return token.startswith("␣") and len(token) > 2 and token[1:].isalpha()


def fires_on(card: FeatureCard) -> tuple[str, ...]:
    """The tokens at the peaks of the feature's top contexts, most frequent first (ties: by the
    strongest context), as readable tokens ('␣capital'); at most `LABEL_WORDS`."""
    counts: dict[str, int] = {}
    for context in card.contexts:  # strongest first, so dict order breaks ties by strength
        token = context.tokens[context.peak]
        counts[token] = counts.get(token, 0) + 1
    return tuple(sorted(counts, key=lambda t: -counts[t])[:LABEL_WORDS])


def example(card: FeatureCard) -> str:
    """One short context of its strongest activation: a few tokens before the peak, the peak and
    two after, as text ('…the capital of Peru…'); '' without contexts."""
    if not card.contexts:
        return ""
    c = card.contexts[0]
    start, end = max(0, c.peak - EXAMPLE_BEFORE), min(len(c.tokens), c.peak + EXAMPLE_AFTER + 1)
    text = " ".join("".join(_text(t) for t in c.tokens[start:end]).split())
    return f"…{text}…"


def promoted_words(card: FeatureCard, count: int = 3) -> tuple[str, ...]:
    """The tokens its decoder direction promotes most, only those that are words (`is_word`)."""
    return tuple(t for t, _ in card.promoted if is_word(t))[:count]


def feature_label(card: FeatureCard) -> str:
    """A label a non-coder can read: the tokens the feature fires on most in its top contexts and
    one short context, e.g. "fires on ␣capital, ␣capitals — '…the capital of Peru…'"; a feature
    firing on more than `HIGH_DENSITY` of the training tokens is marked "(generic)". What it
    promotes is separate (`promoted_words`), as it is about the output, not the input."""
    peaks = fires_on(card)
    if not peaks:
        return "(never active)"
    label = f"fires on {', '.join(peaks)} — '{example(card)}'"
    if card.density > HIGH_DENSITY:
        return f"{label} (generic: fires on {card.density:.0%} of tokens)"
    return label


@dataclass(frozen=True, eq=False)
class FeatureBook:
    """The per-feature data stored beside an SAE (features.npz + tokens.json):
    density [F]; contexts [F, n, 17] token ids (−1 = none; the peak at index 8);
    context_acts [F, n]; promoted_ids/_logits and suppressed_ids/_logits [F, m]."""

    arrays: dict
    vocab: dict

    @property
    def n_features(self) -> int:
        return len(self.arrays["density"])

    def density(self, feature: int) -> float:
        return float(self.arrays["density"][feature])

    def card(self, feature: int) -> FeatureCard:
        if not 0 <= feature < self.n_features:
            raise SettingsError(
                f"There is no feature {feature}; this SAE has features 0…{self.n_features - 1}."
            )
        a, word = self.arrays, lambda i: self.vocab.get(str(int(i)), f"<{int(i)}>")
        contexts = []
        up_ids, up_logits = a["promoted_ids"][feature], a["promoted_logits"][feature]
        down_ids, down_logits = a["suppressed_ids"][feature], a["suppressed_logits"][feature]
        for ids, act in zip(a["contexts"][feature], a["context_acts"][feature], strict=True):
            if float(act) <= 0:
                continue
            keep = [j for j, i in enumerate(ids) if i >= 0]
            half = len(ids) // 2
            contexts.append(Context(tuple(word(ids[j]) for j in keep), keep.index(half), float(act)))
        return FeatureCard(
            feature=feature, density=self.density(feature), contexts=tuple(contexts),
            promoted=tuple((word(i), float(v)) for i, v in zip(up_ids, up_logits, strict=True)),
            suppressed=tuple((word(i), float(v)) for i, v in zip(down_ids, down_logits, strict=True)),
        )

    def label(self, feature: int) -> str:
        return self.card(feature).label


@lru_cache(maxsize=8)
def feature_book(folder: str) -> FeatureBook | None:
    """The feature data beside the SAE at `folder`, or None when it has none (any SAE from elsewhere)."""
    path = Path(folder)
    if path.is_file():
        path = path.parent
    if not (path / "features.npz").is_file() or not (path / "tokens.json").is_file():
        return None
    try:
        with np.load(path / "features.npz", allow_pickle=False) as data:
            arrays = {name: np.array(data[name]) for name in data.files}
        vocab = json.loads((path / "tokens.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    return FeatureBook(arrays, vocab)


def read_card(folder: str | Path) -> dict | None:
    """The SAE's card.json (corpus, tokens seen, L0, held-out FVU, dead share), if it has one."""
    path = Path(folder) / "card.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
