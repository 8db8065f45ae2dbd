"""Fitting a Jacobian lens and training a tuned lens on a CPU, resumably, and measuring both.

Corpus: the text the SAEs use (`sae_training`: gensim's Wikipedia sample, or a file), cut into
windows of `context` tokens; the last `heldout_windows` windows (the last articles) are kept apart
for the faithfulness figures and never fitted on.

Jacobian lens (Gurnee et al. 2026; the estimator of anthropics/jacobian-lens and TransformerLens 4):

    J_ℓ = mean over prompts of  (1/|V|) Σ_{t ∈ V} Σ_{t' ∈ V, t' ≥ t} ∂h_L,t' / ∂h_ℓ,t   [d, d]

with V = positions skip…pos−2 (the first `skip` = 16 and the last left out) and h_L the last
block's output before the final norm. Row j of the inner sum is one vector-Jacobian product: the
cotangent e_j at every t' ∈ V pulls back to Σ_{t'} ∂h_L,t'[j] / ∂h_ℓ,t at every t (causal attention
makes the t' < t terms zero), for every ℓ at once. So a prompt costs d_model backward passes,
`batch` of them per pass through `Backend.vjp` (one forward of the prompt repeated `batch` times).
The running sum is checkpointed every `checkpoint_minutes`; a killed fit resumes at its next prompt.

Tuned lens (Belrose et al. 2023): per residual i < L, translators A_i [d, d], b_i [d] (zero at the
start: the logit lens) minimizing KL(p_final ‖ softmax(W_U·norm(h_i + A_i h_i + b_i))) averaged
over tokens, with Adam; residuals captured once (fp16) from the training windows.

Faithfulness (per residual ℓ, on the held-out windows, position 0 left out): KL(p_final ‖ p_lens)
in bits and the share of positions where the lens's top-1 is the model's own top-1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..core.errors import SettingsError
from ..core.models import LoadedModel
from ..core.sites import Site, residual_sites
from .common.corpus import CORPUS_SOURCE, fetch_corpus, read_corpus, token_windows
from .common.lenses import (
    CARD_FILE,
    JACOBIAN_FILE,
    TUNED_FOLDER,
    Lens,
    logit_lens,
    read_jacobian,
    read_tuned,
    save_jacobian,
    save_tuned,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class LensConfig:
    """Everything that decides what a fit computes (stored in the work folder's job.json)."""

    context: int = 128  # tokens per window (TransformerLens's max_seq_len)
    heldout_windows: int = 16  # windows kept apart for the faithfulness figures
    seed: int = 0
    # Jacobian lens
    prompts: int = 200  # training windows fitted on
    skip: int = 16  # leading positions left out of the source average
    batch: int = 16  # cotangents per backward pass
    # tuned lens
    tuned_tokens: int = 32_768  # training tokens captured (position 0 of each window left out)
    tuned_steps: int = 300
    tuned_batch: int = 128  # tokens per Adam step
    lr: float = 1e-3
    checkpoint_minutes: float = 2.0
    minutes: float = 600.0  # time box for this run of the fit (a later run resumes)


def _print(message: str) -> None:
    print(message, flush=True)


def _save_atomic(blob: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def corpus_windows(
    loaded: LoadedModel, work: Path, cfg: LensConfig, corpus: Path | None = None, log: Log = _print
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train [n, context], held-out [heldout_windows, context]) token windows of the SAE corpus."""
    path = corpus or fetch_corpus(work, log)
    return token_windows(loaded.tokenizer, read_corpus(path), cfg.context, cfg.heldout_windows, cfg.seed)


# ---------------------------------------------------------------------------------------------
# the Jacobian lens


def prompt_jacobians(
    loaded: LoadedModel, ids: torch.Tensor, *, skip: int = 16, batch: int = 16,
    residuals: Sequence[int] | None = None,
) -> dict[int, torch.Tensor]:
    """residual ℓ (1…L−1, or those in `residuals`) → (1/|V|) Σ_{t∈V} Σ_{t'∈V} ∂h_L,t' / ∂h_ℓ,t
    [d, d] for one prompt `ids` [1, pos] (V = skip…pos−2), row j from the one-hot cotangent e_j at
    every t' ∈ V. The backward passes run only through the blocks above the lowest residual asked."""
    pos, d, n = ids.shape[-1], loaded.d_model, loaded.n_layers
    valid = torch.arange(skip, max(skip, pos - 1))
    if len(valid) == 0:
        raise SettingsError(
            f"A prompt of {pos} tokens has no position after the first {skip} and before the last."
        )
    residuals = list(range(1, n)) if residuals is None else sorted(residuals)
    if not all(0 < r < n for r in residuals):
        raise SettingsError(f"A Jacobian lens is fitted at residuals 1…{n - 1}.")
    sources = [Site.residual_at(r, n) for r in residuals]

    def chunks():
        for start in range(0, d, batch):
            rows = min(batch, d - start)
            c = torch.zeros(rows, pos, d)
            c[torch.arange(rows)[:, None], valid[None, :], start + torch.arange(rows)[:, None]] = 1.0
            yield c

    parts = loaded.backend.vjp(
        ids.view(1, -1), sources=sources, target=Site.residual_at(n, n), cotangents=chunks(), batch=batch,
        reduce=lambda grads: {s: grads[s][:, valid].mean(1) for s in sources},
    )
    return {r: torch.cat([p[s] for p in parts]) for r, s in zip(residuals, sources, strict=True)}


def fit_jacobian(
    loaded: LoadedModel, windows: torch.Tensor, work: Path, cfg: LensConfig, log: Log = _print
) -> dict:
    """Fit on the first `cfg.prompts` windows, resuming from work/jacobian-checkpoint.pt; returns the
    checkpoint {sum: {residual: [d, d]}, half_sum, n_done, seconds, tokens}. The time box
    `cfg.minutes` stops this run early (a later run goes on)."""
    path = work / "jacobian-checkpoint.pt"
    settings = {"context": cfg.context, "skip": cfg.skip, "seed": cfg.seed}
    if path.exists():
        state = torch.load(path, weights_only=True)
        if state.setdefault("settings", settings) != settings:
            raise SettingsError(
                f"The fit in {work} was started with {state['settings']}, not {settings}; "
                "go on with those settings or give another --work folder."
            )
        log(f"jacobian: resumed after {state['n_done']} prompts ({state['seconds'] / 60:.1f} min done)")
    else:
        state = {"sum": {}, "half_sum": {}, "n_done": 0, "seconds": 0.0, "tokens": 0, "settings": settings}
    total = min(cfg.prompts, len(windows))
    started, last_save, base = time.time(), time.time(), state["seconds"]
    while state["n_done"] < total and time.time() - started < cfg.minutes * 60:
        ids = windows[state["n_done"]][None]
        found = prompt_jacobians(loaded, ids, skip=cfg.skip, batch=cfg.batch)
        for r, matrix in found.items():
            state["sum"][r] = state["sum"].get(r, 0) + matrix
        state["n_done"] += 1
        state["tokens"] += ids.shape[-1]
        if state["n_done"] == total // 2:  # the half the convergence figure compares with all
            state["half_sum"] = {r: m.clone() for r, m in state["sum"].items()}
            state["half_n"] = state["n_done"]
        state["seconds"] = base + time.time() - started
        per = state["seconds"] / state["n_done"]
        log(f"jacobian: prompt {state['n_done']}/{total}  {per:.1f} s per prompt  "
            f"~{per * (total - state['n_done']) / 60:.1f} min left")
        if time.time() - last_save > cfg.checkpoint_minutes * 60:
            _save_atomic(state, path)
            last_save = time.time()
    _save_atomic(state, path)
    return state


def jacobian_matrices(state: Mapping, key: str = "sum", n: int | None = None) -> dict[int, torch.Tensor]:
    """The mean J per residual from a checkpoint's running sum (`half_sum` over n_done // 2 prompts)."""
    count = n if n is not None else state["n_done"]
    return {int(r): m / count for r, m in state[key].items()}


def convergence(state: Mapping) -> dict[int, float] | None:
    """cos(J fitted on the first half of the prompts, J on all), flattened, per residual (None
    before the fit has passed half of its prompts)."""
    half_n = state.get("half_n", state["n_done"] // 2)
    if not state.get("half_sum") or state["n_done"] < 2 or half_n >= state["n_done"]:
        return None  # no half yet, or the half is every prompt so far: nothing to compare
    half = jacobian_matrices(state, "half_sum", half_n)
    full = jacobian_matrices(state)
    return {r: float(torch.nn.functional.cosine_similarity(half[r].flatten(), full[r].flatten(), dim=0))
            for r in full}


# ---------------------------------------------------------------------------------------------
# the tuned lens


def capture_residuals(loaded: LoadedModel, windows: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Every residual of every window, position 0 left out: [n·(context−1), L+1, d] in fp16."""
    sites = residual_sites(loaded.n_layers)
    out = []
    for start in range(0, len(windows), batch):
        run = loaded.backend.run(windows[start : start + batch], sites=sites)
        stacked = torch.stack([run.activations[s][:, 1:] for s in sites], dim=2)  # [b, pos−1, L+1, d]
        out.append(stacked.reshape(-1, len(sites), loaded.d_model).half().cpu())
    return torch.cat(out)


def _log_probs(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(loaded.architecture.logits(hidden.to(loaded.dtype)).float(), dim=-1)


def train_tuned(
    loaded: LoadedModel, residuals: torch.Tensor, work: Path, cfg: LensConfig, log: Log = _print
) -> dict:
    """Adam on every translator at once (their losses are independent: one sum), `cfg.tuned_batch`
    tokens per step, resuming from work/tuned-checkpoint.pt. Returns {A, b, step, seconds, losses}."""
    n_layers, d = loaded.n_layers, loaded.d_model
    path = work / "tuned-checkpoint.pt"
    A = torch.zeros(n_layers, d, d, requires_grad=True)
    b = torch.zeros(n_layers, d, requires_grad=True)
    optimizer = torch.optim.Adam([A, b], lr=cfg.lr)
    state = {"step": 0, "seconds": 0.0, "losses": []}
    if path.exists():
        saved = torch.load(path, weights_only=True)
        with torch.no_grad():
            A.copy_(saved["A"])
            b.copy_(saved["b"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {k: saved[k] for k in ("step", "seconds", "losses")}
        log(f"tuned: resumed at step {state['step']}")
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(residuals), generator=generator)
    started, last_save, base = time.time(), time.time(), state["seconds"]
    while state["step"] < cfg.tuned_steps and time.time() - started < cfg.minutes * 60:
        first = (state["step"] * cfg.tuned_batch) % max(1, len(residuals) - cfg.tuned_batch + 1)
        x = residuals[order[first : first + cfg.tuned_batch]].float()  # [n, L+1, d]
        with torch.no_grad():
            target = _log_probs(loaded, x[:, -1])
        loss_value = 0.0
        grad_a, grad_b = torch.zeros_like(A), torch.zeros_like(b)
        for i in range(n_layers):  # one layer's graph at a time: [n, vocab] logits, not L of them
            h = x[:, i]
            logp = _log_probs(loaded, h + h @ A[i].T + b[i])
            loss = (target.exp() * (target - logp)).sum(-1).mean()
            g_a, g_b = torch.autograd.grad(loss, [A, b])  # only the translators: no weight gradients
            grad_a += g_a
            grad_b += g_b
            loss_value += float(loss.detach())
        A.grad, b.grad = grad_a, grad_b
        optimizer.step()
        state["step"] += 1
        state["losses"].append(loss_value / n_layers / math.log(2))
        state["seconds"] = base + time.time() - started
        if state["step"] % 10 == 0:
            log(f"tuned: step {state['step']}/{cfg.tuned_steps}  mean KL {state['losses'][-1]:.3f} bits  "
                f"{state['seconds'] / state['step']:.1f} s per step")
        if time.time() - last_save > cfg.checkpoint_minutes * 60:
            _save_tuned_checkpoint(path, A, b, optimizer, state)
            last_save = time.time()
    _save_tuned_checkpoint(path, A, b, optimizer, state)
    return {"A": A.detach(), "b": b.detach(), **state}


def _save_tuned_checkpoint(path: Path, A: torch.Tensor, b: torch.Tensor, optimizer, state: dict) -> None:
    _save_atomic({"A": A.detach(), "b": b.detach(), "optimizer": optimizer.state_dict(), **state}, path)


# ---------------------------------------------------------------------------------------------
# faithfulness


@dataclass(frozen=True)
class Faithfulness:
    """Per residual ℓ = 0…L (or the residuals `faithfulness` was asked for, in that order) on
    held-out text: KL(p_final ‖ p_lens) in bits (mean over positions) and the share of positions
    where the lens's top-1 is the model's own top-1."""

    kind: str
    kl_bits: tuple[float, ...]
    top1_agreement: tuple[float, ...]
    positions: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def faithfulness(
    loaded: LoadedModel, windows: torch.Tensor, lenses: Sequence[Lens], batch: int = 2,
    residuals: Sequence[int] | None = None,
) -> list[Faithfulness]:
    """Each lens's faithfulness on `windows` [n, context] (position 0 left out), against the model's
    own logits at every position; one pass per `batch` windows serves every lens. `residuals`: only
    these residual indices (the figures then follow their order; default: 0…L)."""
    every = residual_sites(loaded.n_layers)
    chosen = range(len(every)) if residuals is None else residuals
    sites = [every[r] for r in chosen]
    kl = torch.zeros(len(lenses), len(sites), dtype=torch.float64)
    agree = torch.zeros(len(lenses), len(sites), dtype=torch.float64)
    count = 0
    for start in range(0, len(windows), batch):
        run = loaded.backend.run(windows[start : start + batch], sites=sites, all_positions=True)
        final = torch.log_softmax(run.logits[:, 1:].reshape(-1, run.logits.shape[-1]).float(), dim=-1)
        top = final.argmax(-1)
        count += len(final)
        for j, (layer, site) in enumerate(zip(chosen, sites, strict=True)):
            hidden = run.activations[site][:, 1:].reshape(-1, loaded.d_model)
            for i, lens in enumerate(lenses):
                logits = loaded.backend.lens_logits(lens.transform_layer(hidden, layer))
                logp = torch.log_softmax(logits, dim=-1)
                kl[i, j] += (final.exp() * (final - logp)).sum().double() / math.log(2)
                agree[i, j] += (logp.argmax(-1) == top).sum().double()
    return [
        Faithfulness(lens.kind, tuple(round(v, 4) for v in (kl[i] / count).tolist()),
                     tuple(round(v, 4) for v in (agree[i] / count).tolist()), count)
        for i, lens in enumerate(lenses)
    ]


# ---------------------------------------------------------------------------------------------
# the job: fit → export → card


def run_fit(
    loaded: LoadedModel, kind: str, work: Path, out: Path, cfg: LensConfig, *, corpus: Path | None = None,
    log: Log = _print,
) -> dict:
    """Fit (or train) one lens kind, write it fp16 into `out`, and rewrite `out`/card.json with the
    settings, cost and the faithfulness of the logit lens and of every lens now in `out`."""
    if kind not in ("jacobian", "tuned"):
        raise SettingsError(f"Only a jacobian or a tuned lens can be fitted, not '{kind}'.")
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    train, held = corpus_windows(loaded, work, cfg, corpus, log)
    card_path = out / CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card.update(model=loaded.name, corpus=CORPUS_SOURCE if corpus is None else str(corpus),
                heldout={"windows": len(held), "tokens_per_window": cfg.context,
                         "note": "the last windows of the corpus (its last articles), never fitted on; "
                                 "figures over positions 1… of each window",
                         "token_ids": held.tolist()})
    if kind == "jacobian":
        state = fit_jacobian(loaded, train, work, cfg, log)
        n_done = state["n_done"]
        save_jacobian(out / JACOBIAN_FILE, jacobian_matrices(state), n_prompts=n_done, loaded=loaded,
                      metadata={"corpus": card["corpus"], "skip_first_positions": cfg.skip,
                                "max_seq_len": cfg.context, "dim_batch": cfg.batch,
                                "fitted_by": "twinlens"})
        card["jacobian"] = {
            "prompts": n_done, "tokens": state["tokens"], "skip_first_positions": cfg.skip,
            "cotangents_per_pass": cfg.batch, "seconds": round(state["seconds"], 1),
            "seconds_per_prompt": round(state["seconds"] / max(n_done, 1), 2),
            "seconds_per_token": round(state["seconds"] / max(state["tokens"], 1), 4),
            "convergence_half_vs_all_cosine": convergence(state),
            "complete": n_done >= min(cfg.prompts, len(train)), "asked_prompts": cfg.prompts,
        }
    else:
        n_windows = min(len(train), math.ceil(cfg.tuned_tokens / (cfg.context - 1)))
        residuals = capture_residuals(loaded, train[:n_windows])
        state = train_tuned(loaded, residuals, work, cfg, log)
        save_tuned(out / TUNED_FOLDER, dict(enumerate(state["A"])), dict(enumerate(state["b"])),
                   loaded=loaded, extra={"twinlens_tokens": int(state["step"] * cfg.tuned_batch)})
        card["tuned"] = {
            "captured_tokens": len(residuals), "steps": state["step"], "tokens_per_step": cfg.tuned_batch,
            "tokens_seen": state["step"] * cfg.tuned_batch, "optimizer": f"Adam lr={cfg.lr}",
            "loss": "KL(final ‖ lens), summed over residuals 0…L−1",
            "seconds": round(state["seconds"], 1),
            "final_mean_kl_bits": round(state["losses"][-1], 4) if state["losses"] else None,
            "complete": state["step"] >= cfg.tuned_steps, "asked_steps": cfg.tuned_steps,
        }
    lenses = [logit_lens(loaded)]
    if "tuned" in card:
        lenses.append(read_tuned(out / TUNED_FOLDER, loaded))
    if "jacobian" in card:
        lenses.append(read_jacobian(out / JACOBIAN_FILE, loaded))
    log(f"faithfulness on {len(held)} held-out windows ...")
    card["faithfulness"] = {f.kind: f.to_dict() for f in faithfulness(loaded, held, lenses)}
    card["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    card["dtype"] = "float16"
    out.mkdir(parents=True, exist_ok=True)
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False), encoding="utf-8")
    return card
