"""The execution-backend seam: what every analysis needs from a model, and nothing more.

An analysis never registers a torch hook. It asks a backend to run token ids while recording
named sites (lib.core.sites) and applying interventions, and to turn residuals into lens logits:

    run(input_ids [batch, pos], sites, interventions)  → Run(logits [batch, vocab], activations)
    run(..., reduce=f)                                 → f(Run), computed where the activations are
    run(..., eager_attention=True)                     → attention patterns readable (hook_pattern)
    run(..., start_at=ℓ)                               → blocks below ℓ skipped (their residual given)
    run_each([ids_1, ids_2, …], sites, reduce=f)       → f([Run_1, Run_2, …]): one pass per input, one
                                                         job for a remote backend, only f's result back
    gradients(input_ids, sites, metric)                → Gradients(run, grads: ∂metric/∂site)
    gradients(..., interventions)                      → the same of a changed run (EAP-IG's
                                                         interpolated inputs)
    vjp(input_ids [1, pos], sources, target, cotangents, batch, reduce)
                                                       → [reduce({source: cᵀ ∂target/∂source})] per
                                                         cotangent chunk c [m ≤ batch, pos, d]: one
                                                         forward, one backward per chunk (lenses)
    transplant(source, target, rows, reduce)           → [f(target run with row i's transplants from
                                                         the source run)]: both runs in one job, the
                                                         source's activations never sent back
    lens_logits(hidden [n, d_model])                   → [n, vocab] float32
    generate(input_ids [batch, pos], max_new_tokens, interventions, step_interventions)
                                                       → Generated(token_ids per row, first logits)

`reduce` is the contract that lets a remote backend (nnsight / NDIF) return only what a view
needs — top-k cells, distances, a metric per row — and never a full [L+1, pos, d] residual of a
70B model: the local backend simply calls it on the Run it holds, a remote one calls it inside
its trace. One intervention mechanism serves patching (replace with another run's values),
steering (add a vector) and ablation (replace with zeros or a mean):

    Intervention(site, "replace" | "add", value, rows=…, positions=…, head=…)

The local implementation, on Hugging Face modules and PyTorch hooks, is `lib.core.hooks`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import torch

from .errors import Cancelled, SettingsError
from .sites import Site

Op = Literal["replace", "add"]
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Intervention:
    """Change the activation at `site` during a run: `act[region] = value` or `act[region] += value`.

    The region is chosen by batch `rows` and `positions` (None = all of them):
      rows and positions: pairs (rows[i], positions[i]); value [n, *unit]
      positions only:     those positions of every row; value [n, *unit] or [*unit]
      rows only:          every position of those rows; value [n, pos, *unit] or [n, 1, *unit]
      neither:            everything; value [*unit] (a steering vector) or the whole [batch, pos, *unit]
    where unit is d_model for residual, attention and MLP sites, and d_head for one `head` of
    `hook_z` (that head's slice of the output projection's input). Positions index the tokens of
    the forward call itself (during cached generation, the new token is position 0).
    Values are cast to the activation's device and dtype.
    """

    site: Site
    op: Op
    value: torch.Tensor
    rows: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    head: int | None = None

    def __post_init__(self) -> None:
        if self.op not in ("replace", "add"):
            raise SettingsError(f"Unknown intervention '{self.op}': use 'replace' or 'add'.")
        if self.site.kind == "pattern":
            raise SettingsError("Attention patterns can be read, not changed.")
        if self.head is not None and self.site.kind != "z":
            raise SettingsError(f"Only blocks.ℓ.attn.hook_z has heads; {self.site.name} does not.")
        if self.rows is not None and self.positions is not None and len(self.rows) != len(self.positions):
            raise SettingsError("An intervention needs as many rows as positions.")

    def apply(self, act: torch.Tensor, n_heads: int | None = None) -> None:
        """Write this intervention into `act` [batch, pos, width] in place."""
        view = act
        if self.head is not None:
            view = act.unflatten(-1, (n_heads, -1))[:, :, self.head]
        if self.rows is not None and self.positions is not None:
            index: tuple = (list(self.rows), list(self.positions))
        elif self.positions is not None:
            index = (slice(None), list(self.positions))
        elif self.rows is not None:
            index = (list(self.rows),)
        else:
            index = (Ellipsis,)
        value = self.value.to(act.device, act.dtype)
        if self.op == "add":
            view[index] += value
        else:
            view[index] = value


@dataclass(frozen=True)
class Transplant:
    """Write the source run's activation at `site` (one `head` of hook_z, or the whole site),
    positions `source_positions`, into the target run at `target_positions` (activation patching
    of one cell: A's value into B's run)."""

    site: Site
    target_positions: tuple[int, ...]
    source_positions: tuple[int, ...]
    head: int | None = None


def transplant_interventions(
    source: Mapping[Site, torch.Tensor], rows: Sequence[Sequence[Transplant]]
) -> list[Intervention]:
    """The interventions for a batch whose row i applies every Transplant of `rows[i]`, with values
    from `source` (site → [pos, ...], the source run's activations without their batch dimension;
    hook_z [pos, heads, d_head]): one "replace" per (site, head) listing every cell."""
    grouped: dict[tuple[Site, int | None], tuple[list[int], list[int], list[torch.Tensor]]] = {}
    for row, cells in enumerate(rows):
        for cell in cells:
            rows_, positions, values = grouped.setdefault((cell.site, cell.head), ([], [], []))
            value = source[cell.site][list(cell.source_positions)]
            values.append(value[:, cell.head] if cell.head is not None else value)
            rows_.extend([row] * len(cell.target_positions))
            positions.extend(cell.target_positions)
    return [
        Intervention(site, "replace", torch.cat(values), rows=tuple(r), positions=tuple(p), head=head)
        for (site, head), (r, p, values) in grouped.items()
    ]


@dataclass(frozen=True)
class Run:
    """What one forward pass leaves behind.

    logits: [batch, vocab] float32, the model's own next-token logits at the last position
        ([batch, pos, vocab] when the run asked for all positions)
    activations: site → tensor, batch first, on the model's device in its dtype, *after* any
        intervention at that site (what the model went on with): residual, attention and MLP
        sites [batch, pos, d_model]; hook_z [batch, pos, heads, d_head]; hook_pattern
        [batch, heads, query, key]
    """

    logits: torch.Tensor
    activations: Mapping[Site, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Gradients:
    """One forward and one backward pass: the run, and the gradient of a scalar metric of its
    last-position logits with respect to each recorded site (same shapes as the activations,
    float32): grads[site] = ∂metric(logits) / ∂activation[site], the total derivative through
    every later layer (attribution patching, Nanda 2023; Kramár et al. 2024)."""

    run: Run
    grads: Mapping[Site, torch.Tensor]


@dataclass(frozen=True)
class Generated:
    """What a continuation run leaves behind.

    token_ids: per batch row, the new tokens in order; a row ends with its EOS token when it
        emitted one (as transformers' `generate` returns it), else after max_new_tokens
    first_logits: [batch, vocab] float32, the next-token logits after the prompt (the prefix
        pass, with its interventions), from which the first new token was chosen
    """

    token_ids: tuple[tuple[int, ...], ...]
    first_logits: torch.Tensor


# How far along a remote job is at each status NDIF reports (nnsight's `Status`), as a fraction
JOB_STAGES = {
    "RECEIVED": 0.05, "QUEUED": 0.1, "PROVISIONING": 0.2, "DEPLOYING": 0.3, "DISPATCHED": 0.4,
    "RUNNING": 0.6, "COMPLETED": 1.0,
}


@dataclass(eq=False)
class Job:
    """A caller's handle on a long run: where it is, and a way to stop waiting for it.

    progress(fraction, status) is called as the backend hears of the run's status (for NDIF:
    RECEIVED, QUEUED, …, RUNNING, COMPLETED; fraction from `JOB_STAGES`). `cancel` is an event
    the caller sets from anywhere (another thread, a Cancel button); the backend checks it before
    each pass and while it waits for a remote job, and raises `Cancelled`. A remote job that was
    already sent may still finish on the server; its result is dropped.
    """

    progress: Callable[[float, str], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    status: str = ""
    every: float = 1.0  # seconds between repeated reports while a job waits (`tick`)
    _told: float = 0.0

    def report(self, status: str) -> None:
        """Record `status`, tell the caller how far along that is, then stop if cancelled."""
        self.status = status
        self._tell()
        self.check()

    def tick(self) -> None:
        """While waiting for a job: stop if cancelled, and every `every` seconds tell the caller
        again where it is (an app redraws its progress bar, which is also when it can interrupt)."""
        self.check()
        if time.monotonic() - self._told >= self.every:
            self._tell()

    def _tell(self) -> None:
        self._told = time.monotonic()
        if self.progress is not None and self.status in JOB_STAGES:
            self.progress(JOB_STAGES[self.status], self.status)

    def check(self) -> None:
        """Raise `Cancelled` once the caller has asked to stop."""
        if self.cancel.is_set():
            raise Cancelled("Cancelled before the result came back; nothing was saved.")


class Backend(Protocol):
    """What analyses may ask of a model. `lib.core.hooks.HooksBackend` is the local implementation."""

    n_layers: int
    d_model: int
    vocab_size: int
    skips_blocks: bool  # do start_at / stop_early save the skipped blocks' work (else: same numbers only)

    def run(
        self,
        input_ids: torch.Tensor,
        *,
        sites: Sequence[Site] = (),
        interventions: Sequence[Intervention] = (),
        all_positions: bool = False,
        reduce: Callable[[Run], T] | None = None,
        eager_attention: bool = False,
        start_at: int = 0,
        stop_early: bool = False,
    ) -> Run | T:
        """Forward `input_ids` [batch, pos] once, recording `sites` and applying `interventions`.
        `eager_attention` runs this pass with attention that returns its weights (hook_pattern).
        `start_at` = ℓ > 0 skips blocks 0…ℓ−1: an intervention must replace all of residual ℓ.
        `stop_early`: end the pass once every site is recorded (logits then [batch, 0])."""
        ...

    def run_each(
        self,
        inputs: Sequence[torch.Tensor],
        *,
        sites: Sequence[Site] = (),
        reduce: Callable[[list[Run]], T],
        job: Job | None = None,
    ) -> T:
        """Forward each of `inputs` ([1, pos_i] each; lengths may differ) in its own pass recording
        `sites`, then return `reduce([Run_1, Run_2, …])`, computed where the activations are (a
        remote backend runs all the passes and `reduce` as one job and sends back only its result).
        `reduce` runs under `torch.inference_mode()` and may call the model's modules (the lens).
        `job` hears of the run's progress and can cancel it."""
        ...

    def gradients(
        self, input_ids: torch.Tensor, sites: Sequence[Site], metric: Callable[[torch.Tensor], torch.Tensor],
        interventions: Sequence[Intervention] = (),
    ) -> Gradients:
        """Forward `input_ids` [batch, pos] recording `sites` (after `interventions`, applied as in
        `run`), then backward from `metric(logits [batch, vocab]) → scalar` to each site's activation."""
        ...

    def vjp(
        self,
        input_ids: torch.Tensor,
        *,
        sources: Sequence[Site],
        target: Site,
        cotangents: Iterable[torch.Tensor],
        batch: int,
        reduce: Callable[[dict[Site, torch.Tensor]], T],
    ) -> list[T]:
        """Vector-Jacobian products of one prompt `input_ids` [1, pos]: for each cotangent chunk
        c [m ≤ batch, pos, d] of the activation at `target` (of this unchanged run), the gradients
        g[site][i] = Σ_{t', j} c[i, t', j] · ∂target[t', j] / ∂site [pos, d] at every source site,
        float32, handed to `reduce` ({site: [m, pos, d]}) chunk by chunk; returns the reductions
        in order. One forward pass of the prompt repeated `batch` times, then one backward pass per
        chunk (the Jacobian lens's fit: d_model one-hot cotangents per prompt, batched)."""
        ...

    def transplant(
        self,
        source_ids: torch.Tensor,
        target_ids: torch.Tensor,
        rows: Sequence[Sequence[Transplant]],
        reduce: Callable[[Run], torch.Tensor],
        *,
        step: int,
        job: Job | None = None,
    ) -> torch.Tensor:
        """Run `source_ids` [1, pos_s] once, then `target_ids` [1, pos_t] once per row with each
        Transplant of `rows[i]` written in from the source run, `step` rows per pass; returns
        `reduce(Run)` of each pass concatenated → [len(rows), ...] (float, on the CPU). A remote
        backend runs it all as one job and sends back only the reductions: the source's activations
        stay where the model is. `job` hears of the run's progress and can cancel it."""
        ...

    def lens_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding and output transform on residuals [n, d_model] → [n, vocab] float32."""
        ...

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        interventions: Sequence[Intervention] = (),
        step_interventions: Sequence[Intervention] = (),
        eos_ids: Sequence[int] = (),
        on_token: Callable[[Sequence[Sequence[int]]], None] | None = None,
    ) -> Generated:
        """Continue every row of `input_ids` [batch, pos] (rows of equal length, no padding) with the
        model's key-value cache: one pass over the prompt, then one pass per new token.

        temperature 0: greedy (argmax); > 0: sample from softmax(logits / temperature) with a
        generator seeded with `seed` (no top-k or top-p). `interventions` apply to the prompt's pass
        (positions index the prompt), `step_interventions` to each new token's pass (its only
        position is 0). A row stops at any of `eos_ids`; rows that stopped are fed the pad token
        until all have, as transformers' `generate` does. `on_token(rows)` hears each row's new ids
        so far after every new token (a backend that generates in one job tells it once, at the end);
        an exception it raises stops the continuation (a Cancel button).
        """
        ...
