"""The staged patched-rows engine: B run once per row, each row changed by its own interventions,
batched, each row starting at the first block it changes (see `patched_rows` for the cost model).
Patching, components and steering sweeps all run through it."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

import torch

from ...core.backend import Intervention, Run
from ...core.capture import Capture
from ...core.models import LoadedModel
from ...core.sites import Site

Progress = Callable[[float], None]  # called with the fraction of patched runs done, 0 < f ≤ 1


ROW_FLOATS = 1 << 24  # activations of all rows of one pass stay near 16M floats (64 MB in float32)


def rows_per_pass(loaded: LoadedModel, n_tokens: int, all_positions: bool = False) -> int:
    """How many patched copies of B one forward pass holds.

    Per row: the widest activation (≈ 8·d_model per token, a gated MLP's up and gate halves),
    the attention scores (heads × n²) and one row of logits (`logits_to_keep=1`), or n rows when
    the run keeps `all_positions`.
    """
    config = loaded.model.config.get_text_config()
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 16
    logit_rows = n_tokens if all_positions else 1
    per_row = n_tokens * 8 * loaded.d_model + heads * n_tokens * n_tokens + logit_rows * loaded.vocab_size
    return max(1, ROW_FLOATS // per_row)


def block_of(site: Site) -> int:
    """The first block whose work a change at `site` alters: residual r enters block r (residual L,
    after the last block, alters only the final norm's input: L); attn_out, mlp_out, z of block ℓ: ℓ."""
    return site.residual if site.is_residual else site.layer


STAGE_COST = 256  # one pass's own cost (embedding, masks, hooks, copies) in token·blocks of work


def stage_starts(starts: Sequence[int], n_layers: int, n_tokens: int) -> list[int]:
    """The blocks where the passes of one chunk begin, chosen among the rows' starting blocks
    `starts` (sorted) to minimize the work: a pass from block s to the next pass's start e costs
    STAGE_COST + (e − s) · n_tokens · (rows starting before e) token·blocks (the last pass runs to
    the end with every row). A boundary pays when enough rows start late enough; rows starting
    between two boundaries run from the earlier one. Dynamic programming over the distinct starts."""
    distinct = sorted(set(starts))
    best: list[tuple[float, int]] = [(0.0, 0)] * (len(distinct) + 1)  # (cost from here, next index)
    for j in range(len(distinct) - 1, -1, -1):
        options = []
        for m in range(j + 1, len(distinct) + 1):
            end = distinct[m] if m < len(distinct) else n_layers
            rows = bisect_left(starts, end) if m < len(distinct) else len(starts)
            options.append((STAGE_COST + (end - distinct[j]) * n_tokens * rows + best[m][0], m))
        best[j] = min(options)
    chosen, j = [], 0
    while j < len(distinct):
        chosen.append(distinct[j])
        j = best[j][1]
    return chosen


def patched_rows(
    loaded: LoadedModel,
    cap_b: Capture,
    depths: Sequence[int],
    changes: Callable[[Sequence[int]], list[Intervention]],
    reduce: Callable[[Run], torch.Tensor],
    *,
    step: int | None = None,
    resume: bool = True,
    progress: Progress | None = None,
    all_positions: bool = False,
) -> torch.Tensor:
    """`reduce(run)` for B run once per row, row i changed by the interventions `changes` builds,
    stacked in the order of `depths` → [len(depths), ...]; with `all_positions` the run `reduce`
    sees holds the logits of every position [rows, pos, vocab], not only the last.

    depths[i] is the first block row i changes (`block_of` its shallowest site): blocks below it
    compute exactly B's own run, which the capture already holds. `changes(indices)` returns the
    interventions for a batch whose row j is row indices[j].

    Cost model. A row changed at block ℓ needs blocks ℓ…L−1 only; running every row through all
    L blocks costs rows × L block-rows, starting each row at its own block Σ (L − ℓ_i) — about
    half for a residual grid (ℓ spread evenly over 0…L). Rows are sorted by depth and, `step` per
    chunk, run in stages: stage k runs blocks s_k…s_{k+1}−1 (s: chosen among the chunk's depths by
    `stage_starts`, which weighs a pass's own cost) on the rows already started, carried as their
    residual s_k from the stage before, plus the rows starting in s_k…s_{k+1}−1, entering with B's
    residual s_k from the capture (backend `start_at`; a stage
    ends at `stop_early` recording residual s_{k+1}). Rows not yet started are B's own run and
    cost nothing. Each intervention is applied in the stage that runs its block. Every row sees the
    same arithmetic as a whole run of its own; only the batch it shares a matmul with differs, so
    the numbers agree to float rounding (tested against `resume=False`: every row from block 0).

    A backend whose `start_at`/`stop_early` save no work (nnsight: the trace runs every block) gets
    one pass per chunk, from the chunk's shallowest depth.

    Each pass holds the model's lock only while it runs; between passes other sessions may run.
    `progress(f)` gets the fraction of rows done after each chunk.
    """
    n = loaded.n_layers
    step = step or rows_per_pass(loaded, cap_b.n_tokens, all_positions)
    staged = resume and loaded.backend.skips_blocks
    order = sorted(range(len(depths)), key=lambda i: depths[i])
    entering = [min(depths[i], n - 1) if resume else 0 for i in order]  # residual L rows run the last block
    found: list[torch.Tensor | None] = [None] * len(depths)
    input_ids = torch.tensor([cap_b.token_ids], dtype=torch.long)
    for begin in range(0, len(order), step):
        chunk, starts = order[begin : begin + step], entering[begin : begin + step]
        stages = stage_starts(starts, n, cap_b.n_tokens) if staged else starts[:1]
        carried: torch.Tensor | None = None  # [rows started, pos, d]: their residual entering the stage
        # built once: a stage's batch is a prefix of the chunk, holding every row that touches its blocks
        chunk_changes = changes(chunk)
        for k, start in enumerate(stages):
            last = k == len(stages) - 1
            end = n if last else stages[k + 1]
            rows = chunk if last else chunk[: sum(s < end for s in starts)]
            interventions = [
                i for i in chunk_changes if start <= block_of(i.site) and (last or block_of(i.site) < end)
            ]
            if start > 0:
                started = 0 if carried is None else len(carried)
                fresh = cap_b.residual[start][None].expand(len(rows) - started, -1, -1)
                value = fresh if carried is None else torch.cat([carried.to(fresh.dtype), fresh])
                interventions.insert(0, Intervention(Site.residual_at(start, n), "replace", value))
            ids = input_ids.expand(len(rows), -1)
            if last:
                values = loaded.backend.run(ids, interventions=interventions, start_at=start, reduce=reduce,
                                            all_positions=all_positions)
                for i, value in zip(rows, values, strict=True):
                    found[i] = value
            else:
                site = Site.residual_at(end, n)
                carried = loaded.backend.run(
                    ids, sites=[site], interventions=interventions, start_at=start, stop_early=True,
                    reduce=lambda run, site=site: run.activations[site],
                )
        if progress is not None:
            progress(min(begin + step, len(order)) / len(order))
    return torch.stack(found)  # type: ignore[arg-type]


def rows_or_own(
    loaded: LoadedModel, cap_b: Capture, own: Sequence[bool], depths: Sequence[int],
    changes: Callable[[Sequence[int]], list[Intervention]], reduce: Callable[[Run], torch.Tensor], *,
    step: int | None = None, resume: bool = True, progress: Progress | None = None,
    all_positions: bool = False,
) -> torch.Tensor:
    """`patched_rows` for the rows whose `own` is False; a row whose `own` is True writes exactly B's
    own values (positions before the first token where A and B differ: a causal model computed the
    same there, bit for bit), so it is B's own run and its value is `reduce` of B's captured logits,
    with no pass. `changes(indices)` gets the indices of `own`."""
    changed = [i for i, same in enumerate(own) if not same]
    values = None
    if changed:
        values = patched_rows(
            loaded, cap_b, [depths[i] for i in changed],
            lambda indices: changes([changed[i] for i in indices]), reduce,
            step=step, resume=resume, progress=progress, all_positions=all_positions,
        )
    elif progress is not None:
        progress(1.0)
    if len(changed) == len(own):
        return values
    mine = reduce(Run(logits=cap_b.final_logits[None]))[0]
    found = mine.expand(len(own), *mine.shape).clone()
    if values is not None:
        found[changed] = values.to(found.device)
    return found


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two activations are the same, bit for bit (shape, dtype and every value)."""
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b.to(a.device))

