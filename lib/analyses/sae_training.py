"""Training TopK sparse autoencoders on a model's residual stream (Gao et al. 2024), on a CPU.

The job has four resumable stages, each writing into one work folder (`work`):

    corpus   English text → token windows of `context` tokens (train windows shuffled, held-out
             windows taken from the last articles)
    collect  one forward pass per batch that records every chosen residual and stops at the
             highest one (`backend.run(..., stop_early=True)`); fp16 shards of [n, d_model] per layer
             (position 0 of every window is dropped: the attention sink's residual is an outlier)
    train    one TopK SAE per layer, interleaved step by step so a time box cuts all layers alike:

                 x' = s·x            s = √(d / E‖x − μ‖²), so each direction has unit variance
                 pre = (x' − b_dec) W_enc + b_enc          W_enc [d, F], b_enc [F]
                 f = relu(topk_k(pre))                     k active features per token
                 x̂' = f W_dec + b_dec                      W_dec [F, d], rows kept unit-norm
                 L = ‖x' − x̂'‖² / ‖x' − mean x'‖²  +  α · ‖e − ê‖² / ‖e − mean e‖²
             where e = x' − x̂' and ê is the reconstruction of e by the k_aux largest pre-activations
             of *dead* features (not active in the last `dead_after` tokens): the AuxK loss, α = 1/32.
             b_dec starts at the data mean, W_enc at W_decᵀ; decoder-gradient components parallel
             to each row are removed before every Adam step and rows renormalized after it.
    export   the SAEs in the SAELens folder format in the model's units (W_enc, b_enc/s, W_dec,
             b_dec/s: the same features, activations divided by s), fp16, with a card (corpus,
             tokens seen, L0, held-out FVU, dead share) and per-feature data (top contexts,
             density, promoted/suppressed tokens) for `lib.analyses.common.sae`.

`make sae` loads the model in bfloat16 for the collection (about 1.5× faster than float32 on an
unloaded run of this CPU; residuals within about 1.5% of float32's — under a load of ~10 the two
were within noise, 75 vs 68 tokens/s) and trains with bfloat16 matmuls on float32 weights.

Every stage can be interrupted: collection skips finished shards, training resumes from its last
checkpoint (written every `checkpoint_minutes`) with the time it had already spent. A resumed job
may collect more text (a larger `train_tokens`: the windows are a prefix of the same shuffled
order), train longer (a larger `train_minutes`: the learning rate decays over the new box's last
20%) and go on with some of its layers only (those left out keep their exported SAEs).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.errors import SettingsError
from ..core.models import LoadedModel
from ..core.sites import Site
from .common.corpus import (
    CORPUS_LICENCE,
    CORPUS_SOURCE,
    Log,
    fetch_corpus,
    print_log,
    read_corpus,
    token_windows,
)
from .common.mix import licences_text, load_mix, sources_of
from .common.sae import SAE, load_sae

# The corpus: a sample of English Wikipedia that gensim ships as test data inside its wheel on PyPI.


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what the job computes (stored in the work folder; a resumed job
    must be given the same values)."""

    residuals: tuple[int, ...] = (6, 15, 24)
    d_sae: int = 4608
    k: int = 32
    k_aux: int = 256
    aux_coefficient: float = 1 / 32
    dead_after: int = 50_000
    context: int = 128
    train_tokens: int = 320_000
    heldout_windows: int = 64
    windows_per_shard: int = 32
    batch_windows: int = 8
    batch_size: int = 512
    lr: float = 1e-3
    train_minutes: float = 45.0
    max_epochs: float = 20.0
    checkpoint_minutes: float = 3.0
    collect_minutes: float = 60.0
    seed: int = 0
    n_contexts: int = 6
    n_logit_tokens: int = 8
    massive_factor: float = 50.0  # positions with ‖x‖ above this × the median norm are left out
    mix: tuple[tuple[str, float], ...] = ()  # empty: the Wikipedia sample alone; else (kind, share) pairs
    init_from: str = ""  # a folder of SAEs (SAELens, one sub-folder per hook) to start from


@dataclass
class _LayerState:
    """One SAE being trained (in the scaled units x' = s·x)."""

    residual: int
    scale: float
    params: dict[str, torch.Tensor]
    optimizer: torch.optim.Adam
    last_fired: torch.Tensor  # [F] tokens seen when each feature last fired
    losses: list[float] = field(default_factory=list)

    def weights(self) -> dict[str, torch.Tensor]:
        """The parameters without their autograd history (for evaluation and export)."""
        return {name: value.detach() for name, value in self.params.items()}


def bar(fraction: float, width: int = 20) -> str:
    """A text progress bar for the job's log lines: `[██████░░░░░░░░░░░░░░]  30%`."""
    done = round(min(max(fraction, 0.0), 1.0) * width)
    return f"[{'█' * done}{'░' * (width - done)}] {fraction:4.0%}"


# ---------------------------------------------------------------------------------------------
# corpus


# ---------------------------------------------------------------------------------------------
# collection


def collect(
    loaded: LoadedModel, windows: torch.Tensor, residuals: Sequence[int], folder: Path, cfg: TrainConfig,
    log: Log = print_log, what: str = "train",
) -> tuple[int, int, float]:
    """Residuals of `windows` [n, context] at each of `residuals`, in shards of
    `cfg.windows_per_shard` windows: folder/{what}-{i:04d}.pt = {"ids": [w, context] int32,
    "acts": {residual: [w·(context−1), d] fp16}}. One forward pass per batch, stopped after the
    highest residual. Returns (tokens in all shards of `what`, position 0 excluded; tokens run
    through the model by this call; the seconds they took)."""
    folder.mkdir(parents=True, exist_ok=True)
    sites = [Site.residual_at(r, loaded.n_layers) for r in residuals]
    per = cfg.windows_per_shard
    n_shards = math.ceil(len(windows) / per)
    started, done_tokens = time.time(), 0
    for i in range(n_shards):
        path = folder / f"{what}-{i:04d}.pt"
        if path.exists():
            continue
        if time.time() - started > cfg.collect_minutes * 60:
            log(f"collect {what}: time box of {cfg.collect_minutes:g} min reached; using {i} shards")
            break
        chunk = windows[i * per:(i + 1) * per]
        parts: dict[int, list[torch.Tensor]] = {r: [] for r in residuals}
        for j in range(0, len(chunk), cfg.batch_windows):
            batch = chunk[j:j + cfg.batch_windows]
            run = loaded.backend.run(batch, sites=sites, stop_early=True)
            for r, site in zip(residuals, sites, strict=True):
                parts[r].append(run.activations[site][:, 1:].reshape(-1, loaded.d_model).half().cpu())
        acts = {r: torch.cat(parts[r]) for r in residuals}
        _save_atomic({"ids": chunk.to(torch.int32), "acts": acts}, path)
        done_tokens += chunk.numel()
        rate = done_tokens / max(time.time() - started, 1e-9)
        left = (n_shards - i - 1) * per * windows.shape[1] / max(rate, 1e-9)
        log(f"collect {what}: {bar((i + 1) / n_shards)}  shard {i + 1}/{n_shards}  {rate:,.0f} tokens/s  "
            f"~{left / 60:.1f} min left")
    total = sum(len(torch.load(p, weights_only=True)["ids"]) for p in sorted(folder.glob(f"{what}-*.pt")))
    return total * (windows.shape[1] - 1), done_tokens, time.time() - started


def _save_atomic(blob, path: Path) -> None:
    """torch.save through a temporary file: an interrupted job never leaves half a shard or checkpoint."""
    torch.save(blob, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def load_shards(folder: Path, what: str, residual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations [n, d] fp16, window ids [w, context] int32) of every shard of `what`."""
    paths = sorted(folder.glob(f"{what}-*.pt"))
    shards = [torch.load(p, weights_only=True) for p in paths]
    return torch.cat([s["acts"][residual] for s in shards]), torch.cat([s["ids"] for s in shards])


# ---------------------------------------------------------------------------------------------
# the TopK SAE


def topk_encode(
    params: dict[str, torch.Tensor], x: torch.Tensor, k: int, bf16: bool = False
) -> tuple[torch.Tensor, ...]:
    """(pre [n, F], values [n, k], indices [n, k]) for x [n, d]: the k largest relu(pre).
    `bf16`: the encoder matmul in bfloat16 (about 5× faster on CPUs with AMX; training only)."""
    if bf16:
        pre = ((x - params["b_dec"]).bfloat16() @ params["W_enc"].bfloat16()).float() + params["b_enc"]
    else:
        pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
    values, indices = pre.topk(k, dim=-1)
    return pre, values.relu(), indices


def sparse_decode(W_dec: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Σ_j values[:, j] · W_dec[indices[:, j]]  →  [n, d] (no bias), without a dense [n, F] matrix."""
    return torch.einsum("nk,nkd->nd", values, W_dec[indices])


def dense_decode(W_dec: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The same sum as `sparse_decode` as one bfloat16 matmul of the scattered [n, F] activations
    (training only: on a CPU with AMX this beats gathering [n, k, d] rows, above all for k_aux)."""
    dense = torch.zeros(len(values), len(W_dec), dtype=torch.bfloat16).scatter(-1, indices, values.bfloat16())
    return (dense @ W_dec.bfloat16()).float()


def _normalized_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (estimate - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)


def _new_layer(
    residual: int, data: torch.Tensor, cfg: TrainConfig, generator: torch.Generator, n_layers: int = 0
) -> _LayerState:
    """A fresh SAE for `residual`; with `cfg.init_from`, the SAE of that folder for the same hook,
    brought into the new scale (W_enc and W_dec as they are, b_enc·s and b_dec·s)."""
    d = data.shape[1]
    sample = data[torch.randperm(len(data), generator=generator)[:50_000]].float()
    mean = sample.mean(0)
    scale = math.sqrt(d / (sample - mean).pow(2).sum(-1).mean().item())
    W_dec = torch.randn(cfg.d_sae, d, generator=generator)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    params = {
        "W_enc": W_dec.t().clone().contiguous(),
        "b_enc": torch.zeros(cfg.d_sae),
        "W_dec": W_dec,
        "b_dec": mean * scale,
    }
    if cfg.init_from:
        start = load_sae(Path(cfg.init_from) / Site.residual_at(residual, n_layers).name)
        if start.d_sae != cfg.d_sae or start.d_in != d:
            raise SettingsError(
                f"The SAE in {cfg.init_from} for residual {residual} has {start.d_sae} features "
                f"of width {start.d_in}, not {cfg.d_sae} of width {d}."
            )
        params = {
            "W_enc": start.W_enc.float().clone().contiguous(),
            "b_enc": start.b_enc.float() * scale,
            "W_dec": start.W_dec.float() / start.W_dec.float().norm(dim=-1, keepdim=True).clamp_min(1e-8),
            "b_dec": start.b_dec.float() * scale,
        }
    for p in params.values():
        p.requires_grad_(True)
    return _LayerState(residual, scale, params, _adam(params, cfg), torch.zeros(cfg.d_sae, dtype=torch.long))


def _adam(params: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel (the same update; about 5× faster than the default on this
    CPU, where the step over 2×2.7M weights was a third of a training step)."""
    return torch.optim.Adam(list(params.values()), lr=cfg.lr, betas=(0.9, 0.999), fused=True)


def _train_step(state: _LayerState, x: torch.Tensor, cfg: TrainConfig, seen: int, lr: float) -> float:
    """One Adam step on a batch x [n, d] (already scaled); returns the normalized MSE."""
    p = state.params
    pre, values, indices = topk_encode(p, x, cfg.k, bf16=True)
    recon = dense_decode(p["W_dec"], values, indices) + p["b_dec"]
    loss = mse = _normalized_mse(recon, x)
    fired = indices[values > 0]
    state.last_fired[fired] = seen
    dead = (seen - state.last_fired) > cfg.dead_after
    n_dead = int(dead.sum())
    if n_dead:
        k_aux = min(cfg.k_aux, n_dead)
        masked = pre.masked_fill(~dead, float("-inf"))
        aux_values, aux_indices = masked.topk(k_aux, dim=-1)
        error = (x - recon).detach()
        aux = dense_decode(p["W_dec"], aux_values.relu(), aux_indices)
        aux_loss = _normalized_mse(aux, error)
        if torch.isfinite(aux_loss):
            loss = loss + cfg.aux_coefficient * aux_loss
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        W, g = p["W_dec"], p["W_dec"].grad
        g -= (g * W).sum(-1, keepdim=True) * W  # keep the step tangent to the unit sphere
        for group in state.optimizer.param_groups:
            group["lr"] = lr
    state.optimizer.step()
    with torch.no_grad():
        p["W_dec"] /= p["W_dec"].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return float(mse.detach())


def _save_checkpoint(path: Path, layers: list[_LayerState], progress: dict) -> None:
    blob = {
        "progress": progress,
        "layers": [
            {
                "residual": s.residual, "scale": s.scale,
                "params": {k: v.detach() for k, v in s.params.items()},
                "optimizer": s.optimizer.state_dict(), "last_fired": s.last_fired, "losses": s.losses,
            }
            for s in layers
        ],
    }
    _save_atomic(blob, path)


def _load_checkpoint(path: Path, cfg: TrainConfig) -> tuple[list[_LayerState], dict]:
    """The SAEs of `cfg.residuals` in the checkpoint (a job may go on with some of its layers only,
    e.g. those that still miss their targets) and the progress shared by all."""
    blob = torch.load(path, weights_only=False)
    saved_residuals = [saved["residual"] for saved in blob["layers"]]
    if not set(cfg.residuals) <= set(saved_residuals):
        raise SettingsError(
            f"The checkpoint {path} holds residuals {saved_residuals}, not all of {list(cfg.residuals)}; "
            "train those in another work folder."
        )
    layers = []
    for saved in blob["layers"]:
        if saved["residual"] not in cfg.residuals:
            continue
        params = {k: v.clone().requires_grad_(True) for k, v in saved["params"].items()}
        optimizer = _adam(params, cfg)
        optimizer.load_state_dict(saved["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint of the unfused Adam brings its flags along
            group.update(fused=True, foreach=None)
        layers.append(_LayerState(saved["residual"], saved["scale"], params, optimizer,
                                  saved["last_fired"], saved["losses"]))
    return layers, blob["progress"]


def train(work: Path, cfg: TrainConfig, log: Log = print_log, n_layers: int = 0) -> list[_LayerState]:
    """Train one SAE per residual on the collected shards, interleaved, for `cfg.train_minutes`
    of training time in total (across resumes) or `cfg.max_epochs`; learning rate constant, then
    linearly to 0 over the last 20% of the time box."""
    torch.manual_seed(cfg.seed)
    data = {r: load_shards(work / "acts", "train", r)[0] for r in cfg.residuals}
    keep = torch.stack([not_massive(data[r], cfg.massive_factor) for r in cfg.residuals]).all(0)
    if not keep.all():
        log(f"train: {int((~keep).sum())} massive positions (norm > {cfg.massive_factor:g}× the median) "
            "left out")
        data = {r: acts[keep] for r, acts in data.items()}
    n = len(data[cfg.residuals[0]])
    checkpoint = work / "train-checkpoint.pt"
    generator = torch.Generator().manual_seed(cfg.seed)
    if checkpoint.exists():
        layers, progress = _load_checkpoint(checkpoint, cfg)
        log(f"train: resumed at step {progress['step']} ({progress['elapsed'] / 60:.1f} min done)")
    else:
        layers = [_new_layer(r, data[r], cfg, generator, n_layers) for r in cfg.residuals]
        progress = {"step": 0, "elapsed": 0.0, "tokens": 0}
    progress["corpus_tokens"] = n
    budget = cfg.train_minutes * 60
    steps_per_epoch = n // cfg.batch_size
    last_save = last_log = time.time()
    start_elapsed, start = progress["elapsed"], time.time()
    start_step, start_tokens = progress["step"], progress["tokens"]
    while progress["elapsed"] < budget and progress["tokens"] < cfg.max_epochs * n:
        step = progress["step"]
        epoch, index = divmod(step, steps_per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 1 + epoch))
        rows = order[index * cfg.batch_size:(index + 1) * cfg.batch_size]
        fraction = progress["elapsed"] / budget
        lr = cfg.lr * min(1.0, (1 - fraction) / 0.2)
        seen = progress["tokens"] + len(rows)
        for state in layers:
            x = data[state.residual][rows].float() * state.scale
            state.losses.append(_train_step(state, x, cfg, seen, lr))
        progress.update(step=step + 1, tokens=seen, elapsed=start_elapsed + time.time() - start)
        now = time.time()
        if now - last_log > 30:
            last_log = now
            rate = (progress["tokens"] - start_tokens) / max(progress["elapsed"] - start_elapsed, 1e-9)
            recent = "  ".join(
                f"r{s.residual}: fvu {np.mean(s.losses[-20:]):.3f} dead "
                f"{float(((seen - s.last_fired) > cfg.dead_after).float().mean()):.1%}"
                for s in layers
            )
            log(f"train: {bar(fraction)} of the time box  step {step + 1} epoch {seen / n:.2f}  "
                f"{rate:,.0f} tokens/s per layer ({rate * len(layers):,.0f} all)  {recent}")
        if now - last_save > cfg.checkpoint_minutes * 60:
            _save_checkpoint(checkpoint, layers, progress)
            last_save = now
    _save_checkpoint(checkpoint, layers, progress)
    _record_run(work / "job.json", {
        "residuals": list(cfg.residuals), "corpus_tokens": n, "lr": cfg.lr,
        "steps": progress["step"] - start_step, "tokens_per_layer": progress["tokens"] - start_tokens,
        "seconds": round(progress["elapsed"] - start_elapsed, 1),
        "tokens_per_s_per_layer": round(
            (progress["tokens"] - start_tokens) / max(progress["elapsed"] - start_elapsed, 1e-9), 1
        ),
    })
    log(f"train: done, {progress['step']} steps, {progress['tokens']:,} tokens per layer "
        f"in {progress['elapsed'] / 60:.1f} min")
    return layers


def _record_run(job: Path, run: dict) -> None:
    """Append one training run (this process's steps, tokens and seconds) to job.json's `train_runs`,
    so the card can report each run's own speed rather than an average over differently loaded runs."""
    if not run["steps"]:
        return
    meta = json.loads(job.read_text()) if job.exists() else {}
    meta.setdefault("train_runs", []).append(run)
    job.write_text(json.dumps(meta, indent=1))


# ---------------------------------------------------------------------------------------------
# export


def _feature_stats(state: _LayerState, acts: torch.Tensor, ids: torch.Tensor, cfg: TrainConfig) -> dict:
    """Density and top contexts of every feature over the training tokens."""
    p = state.weights()
    F, ctx = cfg.d_sae, cfg.context
    counts = torch.zeros(F, dtype=torch.long)
    feats, vals, where = [], [], []
    with torch.no_grad():
        for start in range(0, len(acts), 8192):
            x = acts[start:start + 8192].float() * state.scale
            _, values, indices = topk_encode(p, x, cfg.k)
            on = values > 0
            counts += torch.bincount(indices[on], minlength=F)
            rows = torch.arange(start, start + len(x)).unsqueeze(1).expand_as(indices)
            feats.append(indices[on])
            vals.append(values[on] / state.scale)
            where.append(rows[on])
    feat, val, row = (torch.cat(t).numpy() for t in (feats, vals, where))
    order = np.lexsort((-val, feat))
    feat, val, row = feat[order], val[order], row[order]
    starts = np.searchsorted(feat, np.arange(F))
    ends = np.searchsorted(feat, np.arange(F), side="right")
    half = 8
    contexts = np.full((F, cfg.n_contexts, 2 * half + 1), -1, dtype=np.int32)
    context_acts = np.zeros((F, cfg.n_contexts), dtype=np.float16)
    flat = ids.numpy()
    for f in range(F):
        taken, used_windows = 0, set()
        for j in range(starts[f], ends[f]):
            window, pos = divmod(int(row[j]), ctx - 1)
            pos += 1  # position 0 was dropped from the activations
            if window in used_windows:
                continue
            used_windows.add(window)
            lo, hi = max(0, pos - half), min(ctx, pos + half + 1)
            contexts[f, taken, half - (pos - lo):half + (hi - pos)] = flat[window, lo:hi]
            context_acts[f, taken] = val[j]
            taken += 1
            if taken == cfg.n_contexts:
                break
    return {"density": (counts.float() / len(acts)).numpy(), "contexts": contexts,
            "context_acts": context_acts}


def heldout_fvu(state: _LayerState, acts: torch.Tensor, context: int, k: int) -> tuple[float, float]:
    """(mean FVU per held-out window, mean L0) with FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² over one window's
    positions 1… (the same definition as per prompt in `lib.analyses.common.sae`)."""
    p = state.weights()
    with torch.no_grad():
        x = acts.float() * state.scale
        _, values, indices = topk_encode(p, x, k)
        recon = sparse_decode(p["W_dec"], values, indices) + p["b_dec"]
        windows = x.view(-1, context - 1, x.shape[-1])
        errors = (recon.view_as(windows) - windows).pow(2).sum((1, 2))
        totals = (windows - windows.mean(1, keepdim=True)).pow(2).sum((1, 2))
        return float((errors / totals).mean()), float((values > 0).sum(-1).float().mean())


def heldout_by_kind(folder: Path, residual: int) -> dict[str, torch.Tensor]:
    """Held-out activations [n, d] fp16 per kind of text from the shards folder/heldout-{kind}-*.pt
    of a mix job ({} when the job had no mix)."""
    kinds = sorted({p.name.removeprefix("heldout-").rsplit("-", 1)[0] for p in folder.glob("heldout-*-*.pt")})
    return {kind: load_shards(folder, f"heldout-{kind}", residual)[0] for kind in kinds}


def not_massive(x: torch.Tensor, factor: float, median: float | None = None) -> torch.Tensor:
    """Mask [n] of the rows of x [n, d] whose norm is at most `factor` × the median norm (of x, or
    `median`): the rows above are massive activations (attention sinks; e.g. a window opening with
    two newlines has its sink at position 1, with ~150× the median norm at residuals 15 and 24),
    left out of training and of the held-out FVU as position 0 is. The default factor, 50, keeps
    ordinary tokens with large norms (whitespace tokens reach ~11× the median at residual 6).
    factor ≤ 0 keeps every row."""
    norms = x.float().norm(dim=-1)
    if factor <= 0 or not len(x):
        return torch.ones(len(x), dtype=torch.bool)
    return norms <= factor * (float(norms.median()) if median is None else median)


def fvu_by_kind(
    sae: SAE, acts: dict[str, torch.Tensor], chunk: int = 4096, massive_factor: float = 50.0
) -> dict:
    """The standard FVU of `sae` per kind of text and pooled, on held-out activations [n, d] per kind
    (model units, position 0 of every window already left out):

        FVU(S) = Σ_{x∈S} ‖x − x̂‖² / Σ_{x∈S} ‖x − x̄_S‖²,   x̄_S the mean of the positions of S,

    S = one kind's positions, or all positions of all kinds (pooled). Positions with a massive norm
    (`not_massive`, against the median over all kinds) are left out and counted (`massive_left_out`);
    `fvu_pooled_all_positions` keeps them. Also the mean L0 and the dead share on the held-out
    text (features active on none of its positions)."""
    median = float(torch.cat([a.float().norm(dim=-1) for a in acts.values()]).median()) if acts else 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    per_kind, errors, sums, squares, counts, l0s = {}, 0.0, 0.0, 0.0, 0, 0.0
    all_errors, all_sums, all_squares, all_counts, left_out = 0.0, 0.0, 0.0, 0, 0
    with torch.no_grad():
        for kind, x_kept in acts.items():
            keep = not_massive(x_kept, massive_factor, median)
            x_all = x_kept[keep]
            dropped = x_kept[~keep].float()
            if len(dropped):
                all_errors += float((sae.decode(sae.encode(dropped)) - dropped).pow(2).sum())
                all_sums = all_sums + dropped.double().sum(0)
                all_squares += float(dropped.double().pow(2).sum())
            all_counts += len(x_kept)
            left_out += len(dropped)
            error, active = 0.0, 0.0
            for start in range(0, len(x_all), chunk):
                x = x_all[start:start + chunk].float()
                f = sae.encode(x)
                error += float((sae.decode(f) - x).pow(2).sum())
                on = f > 0
                active += float(on.sum())
                fired |= on.any(0)
            x64 = x_all.double()
            total = float((x64 - x64.mean(0)).pow(2).sum())
            per_kind[kind] = {"fvu": round(error / total, 4) if total > 0 else None, "tokens": len(x_all),
                              "l0": round(active / max(len(x_all), 1), 2), "massive_left_out": len(dropped)}
            errors += error
            sums = sums + x64.sum(0)
            squares += float(x64.pow(2).sum())
            counts += len(x_all)
            l0s += active
    pooled_total = squares - float((sums * sums).sum()) / max(counts, 1)  # Σ‖x − x̄‖² = Σ‖x‖² − n‖x̄‖²
    all_sums = all_sums + sums
    all_total = all_squares + squares - float((all_sums * all_sums).sum()) / max(all_counts, 1)
    return {
        "fvu_pooled": round(errors / pooled_total, 4) if counts and pooled_total > 0 else None,
        "fvu_pooled_all_positions": round((errors + all_errors) / all_total, 4) if all_total > 0 else None,
        "massive_left_out": left_out, "massive_factor": massive_factor,
        "fvu_by_kind": per_kind, "tokens": counts, "l0": round(l0s / max(counts, 1), 2),
        "dead_share_heldout": round(float((~fired).float().mean()), 4),
    }


def measure_saes(folder: Path, work: Path) -> list[dict]:
    """FVU per kind and pooled (`fvu_by_kind`) of every SAE in `folder` (sub-folders with cfg.json,
    e.g. a shipped lib/data/sae/<model>) on the held-out shards of a mix job's work folder; with the
    dead share its card states (never active on its training tokens) beside the held-out one."""
    results = []
    for sub in sorted(p for p in folder.iterdir() if (p / "cfg.json").is_file()):
        sae = load_sae(sub)
        acts = heldout_by_kind(work / "acts", sae.residual)
        if not acts:
            raise SettingsError(f"The work folder {work} has no held-out activations of a mix for residual "
                                f"{sae.residual}; run the mix job's collect stage first.")
        card = json.loads((sub / "card.json").read_text()) if (sub / "card.json").is_file() else {}
        results.append({"sae": sub.name, "residual": sae.residual, **fvu_by_kind(sae, acts),
                        "dead_share_card": card.get("dead_share")})
    return results


def export(loaded: LoadedModel, work: Path, out: Path, cfg: TrainConfig, layers: list[_LayerState],
           log: Log = print_log) -> list[dict]:
    """Write each SAE (SAELens folder format, fp16, model units) with card.json and features.npz."""
    from .common.sae import save_saelens

    progress = torch.load(work / "train-checkpoint.pt", weights_only=False)["progress"]
    meta = json.loads((work / "job.json").read_text()) if (work / "job.json").exists() else {}
    cards = []
    for state in layers:
        site = Site.residual_at(state.residual, loaded.n_layers)
        folder = out / site.name
        p = state.weights()
        s = state.scale
        save_saelens(
            folder, W_enc=p["W_enc"], b_enc=p["b_enc"] / s, W_dec=p["W_dec"], b_dec=p["b_dec"] / s,
            architecture="topk", k=cfg.k, hook_name=site.name, model_name=loaded.name,
            extra={"context_size": cfg.context, "prepend_bos": False,
                   "dataset_path": "twinlens mix: " + ", ".join(f"{k} {p:.2f}" for k, p in cfg.mix)
                   if cfg.mix else CORPUS_SOURCE},
        )
        held_acts, _ = load_shards(work / "acts", "heldout", state.residual)
        fvu, l0 = heldout_fvu(state, held_acts, cfg.context, cfg.k)
        acts, ids = load_shards(work / "acts", "train", state.residual)
        stats = _feature_stats(state, acts, ids, cfg)
        promoted, suppressed = _logit_effects(loaded, p["W_dec"], cfg.n_logit_tokens)
        used = np.unique(np.concatenate([stats["contexts"].ravel(), promoted[0].ravel(),
                                         suppressed[0].ravel()]))
        used = used[used >= 0]
        from ..core.tokens import readable_tokens

        vocab = dict(zip(used.tolist(), readable_tokens(loaded.tokenizer, used.tolist()), strict=True))
        np.savez_compressed(
            folder / "features.npz",
            density=stats["density"].astype(np.float32), contexts=stats["contexts"],
            context_acts=stats["context_acts"],
            promoted_ids=promoted[0], promoted_logits=promoted[1].astype(np.float16),
            suppressed_ids=suppressed[0], suppressed_logits=suppressed[1].astype(np.float16),
        )
        (folder / "tokens.json").write_text(json.dumps({str(k): v for k, v in vocab.items()},
                                                       ensure_ascii=False))
        dead = float((stats["density"] == 0).mean())
        card = {
            "model": loaded.name, "hook_name": site.name, "residual": state.residual,
            "architecture": "topk", "d_in": loaded.d_model, "d_sae": cfg.d_sae, "k": cfg.k,
            "corpus": CORPUS_SOURCE if not cfg.mix else "a mix: " + ", ".join(
                f"{k} {p:.0%}" for k, p in cfg.mix),
            "licence": CORPUS_LICENCE if not cfg.mix else "; ".join(
                f"{s['kind']}: {s['licence']}" for s in sources_of([k for k, _ in cfg.mix])),
            "corpus_tokens": progress.get("corpus_tokens", len(acts)), "context_size": cfg.context,
            "collection": {k: v for k, v in meta.items() if k != "train_runs"},
            "training_runs": meta.get("train_runs", []),
            "tokens_seen": progress["tokens"], "steps": progress["step"],
            "epochs": round(progress["tokens"] / progress.get("corpus_tokens", len(acts)), 2),
            "training_minutes": round(progress["elapsed"] / 60, 1),
            "l0": round(l0, 2), "fvu_heldout": round(fvu, 4),
            "heldout_tokens": len(held_acts),
            "dead_share": round(dead, 4),
            "dead_definition": "never active on the training tokens",
            "collect_tokens_per_s": meta.get("collect_tokens_per_s"),
            "train_tokens_per_s_per_layer": (
                meta["train_runs"][-1]["tokens_per_s_per_layer"] if meta.get("train_runs")
                else round(progress["tokens"] / max(progress["elapsed"], 1e-9), 1)
            ),
            "config": asdict(cfg),
            "fvu_definition": "sum ||x - x_hat||^2 / sum ||x - mean x||^2 over positions 1.. of each "
                              "held-out 128-token window, averaged over windows",
            "targets": {"fvu": 0.25, "dead_share": 0.20},
            "meets_targets": bool(fvu <= 0.25 and dead <= 0.20),
        }
        by_kind = heldout_by_kind(work / "acts", state.residual)
        if by_kind:
            measured = fvu_by_kind(load_sae(folder), by_kind, massive_factor=cfg.massive_factor)
            card.update(sources=sources_of(list(by_kind)), **measured,
                        fvu_standard_definition=(
                            "sum ||x - x_hat||^2 / sum ||x - mean||^2 over the held-out positions "
                            "(position 0 of every window left out) of one kind (its own mean) or of all "
                            "kinds (pooled)"),
                        meets_targets=bool(measured["fvu_pooled"] <= 0.25 and dead <= 0.20))
        (folder / "card.json").write_text(json.dumps(card, indent=1))
        if by_kind:
            (out / "LICENCES.md").write_text(licences_text(list(by_kind)))
            log(f"export {site.name}: pooled FVU {card['fvu_pooled']:.3f} ("
                + ", ".join(f"{k} {v['fvu']:.3f}" for k, v in card["fvu_by_kind"].items()) + ")")
        log(f"export {site.name}: FVU {fvu:.3f}, L0 {l0:.1f}, dead {dead:.1%}")
        cards.append(card)
    return cards


def _logit_effects(loaded: LoadedModel, W_dec: torch.Tensor, n: int) -> tuple[tuple, tuple]:
    """Top-n promoted and suppressed tokens of each decoder row through the unembedding (with the
    final norm, `lens_logits`): ((ids [F, n], logits [F, n]), (ids, logits))."""
    up_ids, up_vals, down_ids, down_vals = [], [], [], []
    for start in range(0, len(W_dec), 256):
        logits = loaded.backend.lens_logits(W_dec[start:start + 256].to(loaded.dtype)).float()
        logits = logits - logits.mean(-1, keepdim=True)
        top = logits.topk(n, dim=-1)
        bottom = (-logits).topk(n, dim=-1)
        up_ids.append(top.indices), up_vals.append(top.values)
        down_ids.append(bottom.indices), down_vals.append(-bottom.values)
    cat = lambda t: torch.cat(t).numpy()  # noqa: E731
    return ((cat(up_ids).astype(np.int32), cat(up_vals)), (cat(down_ids).astype(np.int32), cat(down_vals)))


# ---------------------------------------------------------------------------------------------
# the job


def run_job(loaded: LoadedModel, work: Path, out: Path, cfg: TrainConfig, corpus: Path | None = None,
            log: Log = print_log, stages: Sequence[str] = ("collect", "train", "export")) -> list[dict]:
    """corpus → collect → train → export, each stage skipping what an earlier run finished."""
    work.mkdir(parents=True, exist_ok=True)
    if max(cfg.residuals) >= loaded.n_layers or min(cfg.residuals) < 1:
        raise SettingsError(f"Residuals must lie in 1…{loaded.n_layers - 1} for {loaded.name}.")
    job = work / "job.json"
    meta = json.loads(job.read_text()) if job.exists() else {}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if "collect" in stages and cfg.mix:
        mixed = load_mix(loaded.tokenizer, work, cfg.mix, cfg.context, cfg.heldout_windows, cfg.seed,
                         corpus, log)
        n_train = min(len(mixed.train), math.ceil(cfg.train_tokens / (cfg.context - 1)))
        log(f"corpus: mix of {', '.join(f'{k} {p:.0%}' for k, p in cfg.mix)}, "
            f"{len(mixed.train) * cfg.context:,} train tokens available; using {n_train} windows")
        runs = [collect(loaded, held, cfg.residuals, work / "acts", cfg, log, f"heldout-{kind}")
                for kind, held in mixed.heldout.items()]
        runs.append(collect(loaded, mixed.train[:n_train], cfg.residuals, work / "acts", cfg, log, "train"))
        n_collected = runs[-1][0] // (cfg.context - 1)
        counts = torch.bincount(mixed.train_kinds[:n_collected], minlength=len(mixed.kinds)).tolist()
        meta["train_tokens"] = runs[-1][0]
        meta["mix"] = {**mixed.to_dict(),
                       "collected_train_windows": dict(zip(mixed.kinds, counts, strict=True))}
    elif "collect" in stages:
        path = corpus or fetch_corpus(work, log)
        articles = read_corpus(path)
        train_w, held_w = token_windows(
            loaded.tokenizer, articles, cfg.context, cfg.heldout_windows, cfg.seed
        )
        n_train = min(len(train_w), math.ceil(cfg.train_tokens / (cfg.context - 1)))
        log(f"corpus: {len(articles)} articles, {len(train_w) * cfg.context:,} train tokens available; "
            f"using {n_train} windows")
        runs = [collect(loaded, held_w, cfg.residuals, work / "acts", cfg, log, "heldout"),
                collect(loaded, train_w[:n_train], cfg.residuals, work / "acts", cfg, log, "train")]
        meta["train_tokens"] = runs[1][0]
        meta["articles"] = len(articles)
    if "collect" in stages:
        fresh, seconds = sum(r[1] for r in runs), sum(r[2] for r in runs)
        if fresh:  # this run collected shards (a resume that found every shard adds nothing)
            meta.setdefault("collect_runs", []).append({
                "tokens": fresh, "seconds": round(seconds, 1), "tokens_per_s": round(fresh / seconds, 1),
                "dtype": str(loaded.dtype).removeprefix("torch."), "batch": [cfg.batch_windows, cfg.context],
            })
            meta["collect_tokens_per_s"] = meta["collect_runs"][-1]["tokens_per_s"]
        job.write_text(json.dumps(meta, indent=1))
    layers = train(work, cfg, log, loaded.n_layers) if "train" in stages else None
    if "export" in stages:
        if layers is None:
            layers, _ = _load_checkpoint(work / "train-checkpoint.pt", cfg)
        return export(loaded, work, out, cfg, layers, log)
    return []
