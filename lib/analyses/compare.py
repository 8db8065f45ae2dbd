"""A comparison of two prompts on one model: tokens, the lens at the last position, distances.

    >>> from lib.core.models import load_model
    >>> from lib.analyses.compare import compare_prompts
    >>> c = compare_prompts(load_model(), "The capital of France is", "The capital of Italy is")
    >>> c.a.final[0].token, c.b.final[0].token
    ('␣Paris', '␣Rome')
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial

import torch

from ..core.architecture import Architecture
from ..core.backend import Job, Run
from ..core.capture import Capture, prompt_ids
from ..core.chat import Chat
from ..core.checks import check_top_k, has_bos
from ..core.models import LoadedModel
from ..core.sites import Site, residual_sites
from ..core.tokens import readable_tokens
from .common.comparison import Comparison, PromptResult, prompt_result
from .common.distances import LayerDistances, cosine_distance, layer_distances, relative_l2
from .common.lens import (
    cells_from_top,
    lens_columns,
    lens_top_k,
    reduce_logits,
    resolve_lens,
)
from .common.lenses import Lens, lens_for


def chosen_lens(loaded: LoadedModel, lens: str = "logit", lens_file: str | None = None) -> Lens | None:
    """The lens a comparison reads with (None: the logit lens); a model without one of that kind
    is refused in one sentence (`LensError`)."""
    return resolve_lens(loaded, lens_for(loaded, lens, lens_file))


def lens_settings(lens: Lens | None) -> dict:
    """What a comparison's settings say about its lens: nothing for the logit lens (so comparisons
    saved before lenses could be chosen read the same), else its kind and caption."""
    return {} if lens is None else {"lens": lens.kind, "lens_caption": lens.provenance}


def compare_captures(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, top_k: int = 10, lens: str = "logit",
    lens_file: str | None = None,
) -> Comparison:
    """A comparison from two prompts already run (no forward pass), read with `lens`."""
    check_top_k(loaded, top_k)
    reader = chosen_lens(loaded, lens, lens_file)
    column_a, column_b = lens_columns(loaded, [cap_a.residual, cap_b.residual], -1, top_k, reader)
    return Comparison(
        model=loaded.info(),
        settings={"top_k": top_k, "bos": cap_a.bos, **lens_settings(reader)},
        a=prompt_result(loaded, cap_a, top_k, column=column_a),
        b=prompt_result(loaded, cap_b, top_k, column=column_b),
        distance=layer_distances(cap_a.residual, cap_b.residual, "last"),
    )


def compare_prompts(
    model: LoadedModel,
    prompt_a: str,
    prompt_b: str,
    *,
    top_k: int = 10,
    bos: str = "auto",
    chat: Chat | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
    lens: str = "logit",
    lens_file: str | None = None,
) -> Comparison:
    """Run both prompts once each and compare them layer by layer at the last position.

    The comparison is reduced where the activations are (`Backend.run_each` with
    `last_position_summary`): for NDIF both passes and the reduction are one remote job, and what
    comes back is per prompt the lens top-k and entropy at every layer and the model's own top-k,
    and per layer the two distances — 24·(L+1)·(k+1) + 24k + 8 bytes in all (docs/scale.md), never
    a residual stream. The numbers equal `compare_captures` on the same prompts. `progress(fraction, status)`
    hears a remote job's status; setting `cancel` stops waiting for it (`Cancelled`)."""
    check_top_k(model, top_k)
    reader = chosen_lens(model, lens, lens_file)
    encoded = [prompt_ids(model, text, bos, chat) for text in (prompt_a, prompt_b)]
    sites = residual_sites(model.n_layers)
    summary = model.backend.run_each(
        [torch.tensor([e.ids], dtype=torch.long) for e in encoded],
        sites=sites,
        reduce=partial(
            last_position_summary, architecture=model.architecture, sites=tuple(sites), k=top_k,
            vocab_size=model.vocab_size, lens=reader,
        ),
        job=Job(progress, cancel or threading.Event()),
    )
    n = len(sites)
    texts = (prompt_a, prompt_b)
    sides = [
        _reduced_side(model, texts[i], e.ids, tuple(t[i * n : (i + 1) * n] for t in summary["lens"]), final)
        for i, (e, final) in enumerate(zip(encoded, summary["final"], strict=True))
    ]
    distance = LayerDistances("last", *(tuple(summary[m].tolist()) for m in ("cosine", "relative_l2")))
    return Comparison(
        model=model.info(), settings={"top_k": top_k, "bos": bos, **lens_settings(reader)},
        a=sides[0], b=sides[1], distance=distance,
    )


def _reduced_side(
    model: LoadedModel, text: str, ids: tuple[int, ...], lens: tuple[torch.Tensor, ...],
    final: tuple[torch.Tensor, ...],
) -> PromptResult:
    """One side of a comparison from `last_position_summary`'s tensors for that prompt."""
    last = len(ids) - 1
    column = cells_from_top(model, [(layer, last) for layer in range(lens[0].shape[0])], *lens)
    return PromptResult(
        text=text,
        tokens=tuple(readable_tokens(model.tokenizer, ids)),
        token_ids=ids,
        has_bos=has_bos(model, ids),
        lens=tuple(cell.top for cell in column),
        entropy_bits=tuple(cell.entropy_bits for cell in column),
        final=cells_from_top(model, [(len(column) - 1, last)], *final)[0].top,
    )


def last_position_summary(
    runs: Sequence[Run], *, architecture: Architecture, sites: tuple[Site, ...], k: int, vocab_size: int,
    lens: Lens | None = None,
) -> dict[str, object]:
    """What the Compare view needs from the runs of prompts A and B, reduced where they ran:

        lens         (probs [2(L+1), k], ids [2(L+1), k], entropy bits [2(L+1)]): the lens top-k at
                     the last position, A's layers 0…L then B's (`lens_top_k`, chunked)
        final        per prompt (probs [1, k], ids [1, k], entropy [1]) of the model's own logits
        cosine, relative_l2   [L+1] float64, A vs B at the last position (lib.analyses.common.distances)

    The same operations on the same tensors as `compare_captures`, so the same numbers."""
    columns = [torch.stack([run.activations[site][0, -1] for site in sites]) for run in runs]  # [L+1, d]
    return {
        "lens": lens_top_k(architecture, torch.cat(columns), k, vocab_size,
                           [layer for _ in columns for layer in range(len(sites))], lens),
        "final": [reduce_logits(run.logits[:1], k) for run in runs],
        "cosine": cosine_distance(columns[0], columns[1]),
        "relative_l2": relative_l2(columns[0], columns[1]),
    }
