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

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import torch

from ..core.backend import Intervention, Job, Run, Transplant
from ..core.capture import Capture, capture, extend
from ..core.checks import check_same_residuals
from ..core.errors import PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.sites import Site, residual_sites
from ..core.tokens import SPACE_MARK, readable_token, typed_word
from .lens import TokenProb, lens_column, vocabulary_rank
from .watch import forced_piece_logprobs, piece_logprobs

Progress = Callable[[float], None]  # called with the fraction of patched runs done, 0 < f ≤ 1
ROW_FLOATS = 1 << 24  # activations of all rows of one pass stay near 16M floats (64 MB in float32)
MIN_METRIC_GAP = 1e-6  # |m_A − m_B| below this cannot normalize the effect
Score = Literal["logit", "word"]  # first pieces' logit difference, or whole words by teacher forcing


@dataclass(frozen=True)
class Patch:
    """One patched run of B: at `layer`, B's positions `b_positions` get A's `a_positions`."""

    layer: int
    b_positions: tuple[int, ...]
    a_positions: tuple[int, ...]


@dataclass(frozen=True)
class TokenRef(Record):
    """A token of the metric: its readable text and id. For a word of several tokens the metric
    uses its first piece (`token`, `id`) and `word` holds the whole word ('' for one token)."""

    token: str
    id: int
    word: str = ""

    @property
    def label(self) -> str:
        """'␣Paris', or '␣L (first piece of ␣Lakers)'."""
        return f"{self.token} (first piece of {self.word})" if self.word else self.token

    def scored(self, score: str) -> str:
        """What the metric scores: the whole word with score "word", else the token."""
        return (self.word or self.token) if score == "word" else self.token


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


def metric_words(answer: TokenRef, wrong: TokenRef, score: Score) -> str:
    """The metric in words: 'logit[␣Paris] − logit[␣Rome]' (a word by its first piece, labelled)
    or, scoring whole words, 'log p(␣Lakers) − log p(␣Celtics)'."""
    if score == "word":
        return f"log p({answer.scored(score)}) − log p({wrong.scored(score)})"
    return f"logit[{answer.label}] − logit[{wrong.label}]"


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
class MetricPair(Record):
    """What every patching result is measured by: m = logit[answer] − logit[wrong] at the last
    position, m_A and m_B of the two prompts' own runs, and the prompts' tokens. Patching results
    (`PatchResult`, components' `ComponentPatching`) extend it, so these fields are written once and
    serialize flat, first, in this order.

    normalized(m) = (m − m_B) / (m_A − m_B), the effect: 0 = B's own metric, 1 = A's.
    """

    model: dict
    bos: str
    answer: TokenRef
    wrong: TokenRef
    metric_a: float
    metric_b: float
    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]

    def normalized(self, raw: float) -> float:
        return (raw - self.metric_b) / (self.metric_a - self.metric_b)

    def metric(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return logit_difference(self.answer.id, self.wrong.id)

    def shared(self) -> dict:
        """These fields by name, to build a result extending MetricPair: `PatchResult(**pair.shared(), …)`."""
        return {f.name: getattr(self, f.name) for f in fields(MetricPair)}


def logit_difference(answer_id: int, wrong_id: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """m(logits [..., vocab]) = logit[answer] − logit[wrong] → [...] float64; a closure over plain
    ints, so a remote backend can run it where the logits are."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[..., answer_id].double() - logits[..., wrong_id].double()

    return metric


def metric_pair(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: str | int | None, wrong: str | int | None
) -> MetricPair:
    """The logit-difference metric of A → B (answer and wrong as `_metric_tokens` resolves them);
    refuses a pair whose m_A and m_B are too close to normalize the effect."""
    answer_ref, wrong_ref, _ = _metric_tokens(loaded, cap_a, cap_b, answer, wrong)
    metric = logit_difference(answer_ref.id, wrong_ref.id)
    metric_a, metric_b = float(metric(cap_a.final_logits)), float(metric(cap_b.final_logits))
    return _checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, metric_a, metric_b, "logit")


def _checked_pair(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: TokenRef, wrong: TokenRef,
    metric_a: float, metric_b: float, score: Score,
) -> MetricPair:
    """The MetricPair of these values, refused when m_A and m_B are too close to normalize."""
    if abs(metric_a - metric_b) < MIN_METRIC_GAP:
        raise PromptError(
            f"{metric_words(answer, wrong, score)} is the same for A and B "
            f"({metric_a:.4g}), so the effect cannot be normalized. Name other tokens."
        )
    return MetricPair(
        model=loaded.info(), bos=cap_b.bos, answer=answer, wrong=wrong, metric_a=metric_a,
        metric_b=metric_b, tokens_a=cap_a.tokens, tokens_b=cap_b.tokens,
    )


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
    """B's logit lens at its last position, layers 0…L, after patching A's residual at (layer, position)."""

    layer: int
    position: int
    lens: tuple[tuple[TokenProb, ...], ...]
    entropy_bits: tuple[float, ...]


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


def _metric_tokens(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, answer: str | int | None, wrong: str | int | None,
    score: Score = "logit",
) -> tuple[TokenRef, TokenRef, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Resolve the answer and wrong tokens: a text is a word (a typed '␣' counts as a leading space)
    whose first piece the logit metric uses, an id must exist; the defaults are A's and B's own
    top-1. Also returns each word's token ids (one id for a token)."""
    tok = loaded.tokenizer
    ids: list[tuple[int, ...]] = []

    def resolve(named: str | int | None, logits: torch.Tensor) -> TokenRef:
        if isinstance(named, str):
            word = typed_word(tok, named)
            ids.append(word.ids)
            first = readable_token(tok, word.first_id)
            return TokenRef(first, word.first_id, word.readable if len(word.ids) > 1 else "")
        token_id = int(logits.argmax()) if named is None else named
        if not 0 <= token_id < loaded.vocab_size:
            raise PromptError(
                f"Token id {token_id} does not exist; the vocabulary has {loaded.vocab_size:,}."
            )
        ids.append((token_id,))
        return TokenRef(readable_token(tok, token_id), token_id)

    answer_ref = resolve(answer, cap_a.final_logits)
    wrong_ref = resolve(wrong, cap_b.final_logits)
    if score == "word" and ids[0] != ids[1]:
        return answer_ref, wrong_ref, (ids[0], ids[1])
    if answer_ref.id == wrong_ref.id and answer_ref.word != wrong_ref.word:
        raise PromptError(
            f"'{answer_ref.word or answer_ref.token}' and '{wrong_ref.word or wrong_ref.token}' start "
            f"with the same token ('{answer_ref.token}'), so their first pieces cannot tell them apart. "
            "Score whole words instead."
        )
    if answer_ref.id == wrong_ref.id:
        if answer is None and wrong is None:
            raise PromptError(
                f"A and B both predict '{answer_ref.token}' next, so the logit difference has nothing "
                "to compare. Name the answer and wrong tokens (e.g. ' Paris' and ' Rome')."
            )
        raise PromptError(
            f"The answer and wrong tokens are the same ('{answer_ref.token}'). Name two different tokens."
        )
    return answer_ref, wrong_ref, (ids[0], ids[1])


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
    answer_ref, wrong_ref, words = _metric_tokens(loaded, cap_a, cap_b, answer, wrong, score)
    patches, positions, note = grid_patches(cap_a, cap_b, loaded.n_layers)
    if score == "word":
        metric_a, metric_b = (
            float(forced_piece_logprobs(model, cap, words[0]).sum())
            - float(forced_piece_logprobs(model, cap, words[1]).sum())
            for model, cap in ((model_a or loaded, cap_a), (loaded, cap_b))
        )
        pair = _checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, metric_a, metric_b, score)
        answer_scores, wrong_scores = (
            _word_sweep(loaded, cap_a, cap_b, patches, rows, ids, resume,
                        None if progress is None else lambda f, k=k: progress((k + f) / 2))
            for k, ids in enumerate(words)
        )
        raw = (answer_scores - wrong_scores).tolist()
    else:
        metric = logit_difference(answer_ref.id, wrong_ref.id)
        pair = _checked_pair(loaded, cap_a, cap_b, answer_ref, wrong_ref, float(metric(cap_a.final_logits)),
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
) -> PatchedLens:
    """B's lens column (last position, every layer) after writing A's residual at (layer, position).

    With prompts of different lengths only B's last position can be patched (from A's last).
    Layers before `layer` read B's own residual; from `layer` on the patch shows.
    """
    cap_a, cap_b = capture(model, prompt_a, bos), capture(model, prompt_b, bos)
    return patched_lens_captures(model, cap_a, cap_b, layer, position, top_k=top_k)


def patched_lens_captures(
    model: LoadedModel, cap_a: Capture, cap_b: Capture, layer: int, position: int, *, top_k: int = 10
) -> PatchedLens:
    """`patched_lens` from two prompts already run (one forward pass: B's, patched)."""
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
    column = lens_column(model, torch.stack(kept), -1, top_k)
    return PatchedLens(
        layer=layer,
        position=position,
        lens=tuple(cell.top for cell in column),
        entropy_bits=tuple(cell.entropy_bits for cell in column),
    )


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
