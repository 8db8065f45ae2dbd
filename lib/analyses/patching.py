"""Activation patching: which layer and position carry the difference between A and B into the answer.

Run prompt B, but at layer ℓ and position p write in A's residual h^A_ℓ[p] instead of B's own
(ℓ = residual entering block ℓ+1, 0 = embeddings, L = after the last block, as in lib.core.capture),
and read the metric at B's last position:

    m = logit[answer] − logit[wrong]                      (the model's own logits, last position)
    effect(ℓ, p) = (m_patched(ℓ, p) − m_B) / (m_A − m_B)   0 = no effect, 1 = B behaves like A

With `score="word"` each side is a whole word scored by teacher forcing (lib.analyses.watch):

    m = log p(answer word) − log p(wrong word),  log p(w) = Σ_j log p(w_j | prompt, w_1 … w_{j−1})

every piece read at the final layer of the (patched) run of B followed by the word's pieces. For
one-token words it equals the logit difference (the softmax's normaliser cancels); for a word of
several pieces the later pieces also read B's patched context, so at ℓ = L patching the last
position alone need not give 1.

Defaults: answer = A's top-1 next token, wrong = B's top-1 (Wang et al. 2022, "Interpretability
in the wild", use the same logit difference; TransformerLens's `get_act_patch_resid_pre` gives the
same grid for ℓ < L). Two facts follow from the definition and are tested: at ℓ = 0 only
positions whose tokens differ can have an effect; at ℓ = L only the last position can (it *is*
A's last residual, so the effect is 1).

The patched runs are batched: B is repeated along the batch dimension and row i is patched at its
own cell, so one forward pass covers many cells; rows per pass are bounded so memory stays small.
A cell patched at layer ℓ needs blocks ℓ…L−1 only: its row joins the batch at block ℓ, from B's
residual ℓ (`patched_rows`), and a cell whose patch writes B's own values (positions before the
first differing token) is B's own run.

On a model whose residual stream stays where it runs (NDIF: captures keep no residual), A is run
again in the same job as B's patched runs (`Backend.transplant`): A's residual never comes back,
one number per cell does (logit score; whole-word scores are not run there yet).

    >>> from lib.core.models import load_model
    >>> r = patch_residual(load_model(), "The capital of France is", "The capital of Italy is")
    >>> [round(e, 3) for e in r.effect[0]], r.answer.token, r.wrong.token
    ([0.0, 0.0, 0.0, 1.0, 0.0], '␣Paris', '␣Rome')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.backend import Intervention, Job, Run, Transplant
from ..core.capture import Capture, capture, extend
from ..core.checks import check_same_residuals
from ..core.errors import PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.sites import Site, residual_sites
from ..core.tokens import SPACE_MARK, typed_word
from .common.lens import TokenProb, lens_column, vocabulary_rank
from .common.lenses import Lens, lens_for
from .common.metric import MetricPair, Score, answer_and_wrong, checked_pair, logit_difference, metric_words
from .common.pieces import forced_piece_logprobs, piece_logprobs
from .common.rows import Progress, rows_or_own, rows_per_pass, same_values


@dataclass(frozen=True)
class Patch:
    """One patched run of B: at `layer`, B's positions `b_positions` get A's `a_positions`."""

    layer: int
    b_positions: tuple[int, ...]
    a_positions: tuple[int, ...]


@dataclass(frozen=True)
class SpaceHint:
    """A typed word without a leading space whose spaced variant the model ranks far higher
    ('Mary' #2,301 vs '␣Mary' #1 after 'then Mary gave a bottle of milk to'): likely what was meant."""

    typed: str
    spaced: str  # readable, e.g. '␣Mary'
    rank_typed: int
    rank_spaced: int

    def message(self, whose: str) -> str:
        return (
            f"'{self.typed}' ranks #{self.rank_typed:,} in {whose} next-token list, but '{self.spaced}' "
            f"(with a leading space) ranks #{self.rank_spaced:,}: in the middle of a sentence a word "
            "usually starts with a space."
        )


SPACE_HINT_FACTOR = 10  # the spaced variant must rank at least this many times higher


def space_hint(loaded: LoadedModel, logits: torch.Tensor, typed: str) -> SpaceHint | None:
    """A `SpaceHint` when `typed` has no leading space and ' ' + typed (its first piece) ranks at
    least `SPACE_HINT_FACTOR` times higher in `logits` [vocab] than typed's first piece."""
    if not typed or typed[0] in (" ", SPACE_MARK):
        return None
    try:
        plain, spaced = typed_word(loaded.tokenizer, typed), typed_word(loaded.tokenizer, " " + typed)
    except PromptError:
        return None
    ranks = vocabulary_rank(logits.float(), [plain.first_id, spaced.first_id]).tolist()
    if ranks[1] * SPACE_HINT_FACTOR > ranks[0]:
        return None
    return SpaceHint(typed, spaced.readable, int(ranks[0]), int(ranks[1]))


@dataclass(frozen=True)
class PatchResult(MetricPair):
    """The patching grid for A → B (the metric's fields: `MetricPair`).

    effect[ℓ][j] and raw[ℓ][j] are for layer ℓ = 0…L and B's position `positions[j]`: every
    position when A and B have the same number of tokens, else only the last (then `note` says why).
    raw is the metric m of the patched run; effect is (raw − m_B) / (m_A − m_B).
    """

    positions: tuple[int, ...]
    effect: tuple[tuple[float, ...], ...]
    raw: tuple[tuple[float, ...], ...]
    note: str | None
    score: str = "logit"  # a Score: "logit" (first pieces' logit difference) or "word" (whole words)

    @property
    def metric_label(self) -> str:
        return metric_words(self.answer, self.wrong, self.score)

    @property
    def full_grid(self) -> bool:
        return len(self.positions) == len(self.tokens_b)

    def to_dict(self) -> dict:
        return {
            "model": dict(self.model),
            "settings": {"bos": self.bos},
            "metric": {"a": self.metric_a, "b": self.metric_b, "score": self.score},
            "answer": self.answer.to_dict(),
            "wrong": self.wrong.to_dict(),
            "tokens_a": list(self.tokens_a),
            "tokens_b": list(self.tokens_b),
            "positions": list(self.positions),
            "effect": [list(row) for row in self.effect],
            "raw": [list(row) for row in self.raw],
            "note": self.note,
        }


@dataclass(frozen=True)
class PatchedLens(Record):
    """B's lens at its last position, layers 0…L, after patching A's residual at (layer, position),
    read with `lens_kind` ("logit", "tuned" or "jacobian"; `lens_caption` says which file)."""

    layer: int
    position: int
    lens: tuple[tuple[TokenProb, ...], ...]
    entropy_bits: tuple[float, ...]
    lens_kind: str = "logit"
    lens_caption: str = "logit lens"


def patch_interventions(cap_a: Capture, patches: Sequence[Patch], n_layers: int) -> list[Intervention]:
    """Interventions for a batch where row i is B patched as `patches[i]` says: one per layer,
    replacing B's residual at (row, B position) with A's at the matching A position."""
    by_layer: dict[int, tuple[list[int], list[int], list[int]]] = {}
    for row, patch in enumerate(patches):
        rows, b_pos, a_pos = by_layer.setdefault(patch.layer, ([], [], []))
        rows.extend([row] * len(patch.b_positions))
        b_pos.extend(patch.b_positions)
        a_pos.extend(patch.a_positions)
    return [
        Intervention(
            Site.residual_at(layer, n_layers), "replace", cap_a.residual[layer, a_pos],
            rows=tuple(rows), positions=tuple(b_pos),
        )
        for layer, (rows, b_pos, a_pos) in by_layer.items()
    ]


def patched_logits(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, patches: Sequence[Patch], *, rows: int | None = None,
    resume: bool = True,
) -> torch.Tensor:
    """B's last-position logits [len(patches), vocab] after each patch (for a few patches: tests, checks)."""
    return _patched(loaded, cap_a, cap_b, patches, lambda run: run.logits, rows=rows, resume=resume)


def _patched(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, patches: Sequence[Patch],
    reduce: Callable[[Run], torch.Tensor], *, rows: int | None = None, resume: bool = True,
    progress: Progress | None = None, reuse_same: bool = False, all_positions: bool = False,
) -> torch.Tensor:
    """`reduce` of B's run after each patch (`patched_rows`: each row starts at its patch's layer);
    with `reuse_same`, a patch that writes exactly B's own values is B's own run (`rows_or_own`)."""
    n = loaded.n_layers
    own = [reuse_same and _writes_own_values(cap_a, cap_b, patch) for patch in patches]
    return rows_or_own(
        loaded, cap_b, own, [patch.layer for patch in patches],
        lambda indices: patch_interventions(cap_a, [patches[i] for i in indices], n),
        reduce, step=rows, resume=resume, progress=progress, all_positions=all_positions,
    )


def _writes_own_values(cap_a: Capture, cap_b: Capture, patch: Patch) -> bool:
    """Whether `patch` writes into B exactly the values B already has there."""
    return same_values(cap_a.residual[patch.layer, list(patch.a_positions)],
                       cap_b.residual[patch.layer, list(patch.b_positions)])


def grid_patches(
    cap_a: Capture, cap_b: Capture, n_layers: int
) -> tuple[list[Patch], tuple[int, ...], str | None]:
    """The single-cell patches of the grid, B's positions they cover, and why the grid was reduced."""
    if cap_a.n_tokens == cap_b.n_tokens:
        positions = tuple(range(cap_b.n_tokens))
        pairs = [(p, p) for p in positions]
        note = None
    else:
        positions = (cap_b.n_tokens - 1,)
        pairs = [(cap_b.n_tokens - 1, cap_a.n_tokens - 1)]
        note = (
            f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}, so positions do not line up: "
            "only the last position was patched at each layer. Make the prompts the same length "
            "in tokens for the full layer × position grid."
        )
    patches = [Patch(layer, (b,), (a,)) for layer in range(n_layers + 1) for b, a in pairs]
    return patches, positions, note


def _word_sweep(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, patches: Sequence[Patch], rows: int | None,
    ids: tuple[int, ...], resume: bool, progress: Progress | None,
) -> torch.Tensor:
    """Teacher-forced log p(word `ids`) at B's end after each patch → [len(patches)]: B runs
    followed by the word's pieces but the last (`extend`), patched at B's own positions, and the
    pieces' log-probabilities are summed inside the run (`piece_logprobs`)."""
    start = cap_b.n_tokens - 1  # the row that predicts the first piece

    def reduce(run: Run) -> torch.Tensor:
        return piece_logprobs(run.logits[:, start:], ids).sum(-1)

    context = extend(loaded, cap_b, ids[:-1]) if len(ids) > 1 else cap_b
    return _patched(loaded, cap_a, context, patches, reduce, rows=rows, resume=resume, progress=progress,
                    all_positions=True)


def patch_captures(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    *,
    answer: str | int | None = None,
    wrong: str | int | None = None,
    progress: Progress | None = None,
    rows: int | None = None,
    score: Score = "logit",
    model_a: LoadedModel | None = None,
    resume: bool = True,
) -> PatchResult:
    """The patching grid from two runs already made; `rows` overrides the patches per pass. B's run
    is repeated through `loaded`: A may come from another model of the same depth and width (two
    models on one prompt: model 1's residual written into model 2, `model_a` = model 1, which
    `score="word"` runs once more to score the words after A; captures without a residual stream
    are patched by running A again, so there `model_a` must be `loaded`).

    Each cell's run starts at its own layer from B's residual, and cells that write B's own values
    are B's run (`_patched`); `resume=False` runs every cell from the embeddings instead: the same
    numbers to float rounding, the reference `make bench` times this against."""
    remote = cap_a.residual is None or cap_b.residual is None
    if remote:
        _check_remote_patching(loaded, score, model_a)
    else:
        check_same_residuals(cap_a, cap_b)
    answer_ref, wrong_ref, words = answer_and_wrong(loaded, cap_a, cap_b, answer, wrong, score)
    patches, positions, note = grid_patches(cap_a, cap_b, loaded.n_layers)
    if score == "word":
        metric_a, metric_b = (
            float(forced_piece_logprobs(model, cap, words[0]).sum())
            - float(forced_piece_logprobs(model, cap, words[1]).sum())
            for model, cap in ((model_a or loaded, cap_a), (loaded, cap_b))
        )
        pair = checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, metric_a, metric_b, score)
        answer_scores, wrong_scores = (
            _word_sweep(loaded, cap_a, cap_b, patches, rows, ids, resume,
                        None if progress is None else lambda f, k=k: progress((k + f) / 2))
            for k, ids in enumerate(words)
        )
        raw = (answer_scores - wrong_scores).tolist()
    else:
        metric = logit_difference(answer_ref.id, wrong_ref.id)
        pair = checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, float(metric(cap_a.final_logits)),
                             float(metric(cap_b.final_logits)), score)
        # the metric is taken inside the run (`reduce`): a remote backend sends back one number per
        # patched row, not its [vocab] logits
        if remote:
            raw = _transplanted(loaded, cap_a, cap_b, patches, metric, rows=rows, progress=progress).tolist()
        else:
            raw = _patched(
                loaded, cap_a, cap_b, patches, lambda run: metric(run.logits), rows=rows, progress=progress,
                resume=resume, reuse_same=resume,
            ).tolist()
    width = len(positions)
    raw_grid = tuple(tuple(raw[i : i + width]) for i in range(0, len(raw), width))
    return PatchResult(
        **pair.shared(),
        positions=positions,
        effect=tuple(tuple(pair.normalized(m) for m in row) for row in raw_grid),
        raw=raw_grid,
        note=note,
        score=score,
    )


def _check_remote_patching(loaded: LoadedModel, score: Score, model_a: LoadedModel | None) -> None:
    """What patching runs on captures without a residual stream (a model on NDIF), or why not."""
    if score == "word":
        raise SettingsError(
            "On a model that runs remotely, patching scores each word by its first piece (logit "
            "difference); scoring whole words is not run there yet. Choose the first-piece score."
        )
    if model_a is not None and model_a is not loaded:
        raise SettingsError("Patching one model's residual into another runs on local models only.")


def _transplanted(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, patches: Sequence[Patch],
    metric: Callable[[torch.Tensor], torch.Tensor], *, rows: int | None, progress: Progress | None,
) -> torch.Tensor:
    """metric(B's last-position logits) after each patch, for captures that keep no residual:
    A runs again in the job that runs B's patched rows (`Backend.transplant`), so what comes back
    is one number per patch, never A's residual."""
    n = loaded.n_layers
    cells = [[Transplant(Site.residual_at(p.layer, n), p.b_positions, p.a_positions)] for p in patches]
    job = None if progress is None else Job(progress=lambda fraction, status: progress(fraction))
    return loaded.backend.transplant(
        torch.tensor([cap_a.token_ids], dtype=torch.long), torch.tensor([cap_b.token_ids], dtype=torch.long),
        cells, lambda run: metric(run.logits), step=rows or rows_per_pass(loaded, cap_b.n_tokens), job=job,
    )


def patch_residual(
    model: LoadedModel,
    prompt_a: str,
    prompt_b: str,
    *,
    answer: str | int | None = None,
    wrong: str | int | None = None,
    bos: str = "auto",
    progress: Progress | None = None,
    score: Score = "logit",
    keep_residual: bool = True,
) -> PatchResult:
    """Patch A's residual into B's run at every (layer, position) and measure the logit difference.

    answer / wrong: words the user names (e.g. ' Paris'; a word of several tokens by its first
    piece, or whole with `score="word"`) or token ids; by default A's and B's own top-1 next
    tokens. `progress(f)` is called after each batch of patched runs. `keep_residual=False` (a
    model on NDIF): the prompts' residual streams stay where the model runs (`_transplanted`).
    """
    cap_a, cap_b = (capture(model, text, bos, keep_residual=keep_residual) for text in (prompt_a, prompt_b))
    return patch_captures(model, cap_a, cap_b, answer=answer, wrong=wrong, progress=progress, score=score)


def patched_lens(
    model: LoadedModel,
    prompt_a: str,
    prompt_b: str,
    layer: int,
    position: int,
    *,
    top_k: int = 10,
    bos: str = "auto",
    lens: str | Lens = "logit",
    lens_file: str | None = None,
) -> PatchedLens:
    """B's lens column (last position, every layer) after writing A's residual at (layer, position).

    With prompts of different lengths only B's last position can be patched (from A's last).
    Layers before `layer` read B's own residual; from `layer` on the patch shows. `lens`: the kind
    to read with (the model's own lens of that kind, or the file `lens_file`), or a Lens; at the
    last layer every lens reads the model's own distribution of the patched run.
    """
    reader = lens if isinstance(lens, Lens) else lens_for(model, lens, lens_file)  # refused before any pass
    cap_a, cap_b = capture(model, prompt_a, bos), capture(model, prompt_b, bos)
    return patched_lens_captures(model, cap_a, cap_b, layer, position, top_k=top_k, lens=reader)


def patched_lens_captures(
    model: LoadedModel, cap_a: Capture, cap_b: Capture, layer: int, position: int, *, top_k: int = 10,
    lens: str | Lens = "logit",
) -> PatchedLens:
    """`patched_lens` from two prompts already run (one forward pass: B's, patched), read with
    `lens` (a kind: B's model's own lens of that kind, `LensError` when it has none; or a Lens)."""
    reader = lens if isinstance(lens, Lens) else lens_for(model, lens)
    patches, positions, note = grid_patches(cap_a, cap_b, model.n_layers)
    if not 0 <= layer <= model.n_layers:
        raise PromptError(f"Layer {layer} does not exist; the model has layers 0 to {model.n_layers}.")
    if position not in positions:
        raise PromptError(note or f"Position {position} does not exist; B has {cap_b.n_tokens} tokens.")
    patch = next(p for p in patches if p.layer == layer and p.b_positions == (position,))
    sites = residual_sites(model.n_layers)
    run = model.backend.run(
        torch.tensor([cap_b.token_ids], dtype=torch.long),
        sites=sites,
        interventions=patch_interventions(cap_a, [patch], model.n_layers),
    )
    kept = [run.activations[site][0] for site in sites]
    column = lens_column(model, torch.stack(kept), -1, top_k, reader)
    return PatchedLens(
        layer=layer,
        position=position,
        lens=tuple(cell.top for cell in column),
        entropy_bits=tuple(cell.entropy_bits for cell in column),
        lens_kind=reader.kind,
        lens_caption=reader.provenance,
    )


def strongest_cell(result: PatchResult) -> tuple[int, int]:
    """The (layer, B position) a view of one patch opens on: layer 0, where its effect is largest
    (on a tie the later position: the last one, never a chat template's opening tokens)."""
    first = result.effect[0]
    return 0, result.positions[max(range(len(first)), key=lambda j: (abs(first[j]), j))]


def arrival_layer(result: PatchResult, threshold: float = 0.5) -> int:
    """Where the difference reaches the last position: the first layer at which patching B's last
    position alone moves B at least `threshold` of the way to A (the last layer, L, if none does
    before: there the last position is A's whole final residual)."""
    last_col = len(result.positions) - 1
    return next(
        (l for l, row in enumerate(result.effect) if row[last_col] >= threshold), len(result.effect) - 1
    )


def reading(result: PatchResult, threshold: float = 0.5) -> str:
    """One or two plain sentences saying where the effect sits, generated from the grid.

    "Reaches the last position at layer ℓ" = the first layer where patching the last position
    alone moves B at least `threshold` of the way to A.
    """
    last_col = len(result.positions) - 1
    last_token = result.tokens_b[result.positions[last_col]]
    arrival = arrival_layer(result, threshold)
    pair = f"'{result.answer.scored(result.score)}' over '{result.wrong.scored(result.score)}'"
    arrives = (
        f"Patching the last position ('{last_token}') alone moves B at least {threshold:.0%} of the "
        f"way to A's preference for {pair} from layer {arrival} on."
    )
    if not result.full_grid:
        return f"Only the last position was patched (the prompts differ in length). {arrives}"
    start_row = result.effect[0]
    source = max(range(len(start_row)), key=lambda j: abs(start_row[j]))
    if source == last_col:
        return f"The prompts differ at the last position itself. {arrives}"
    return (
        f"At layer 0 the difference sits at position {source} ('{result.tokens_b[source]}', "
        f"effect {start_row[source]:.2f}). It reaches the last position around layer {arrival}: "
        + arrives[0].lower()
        + arrives[1:]
    )
