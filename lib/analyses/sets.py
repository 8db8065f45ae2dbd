"""Two sets of prompts: where a whole contrast set parts ways inside the model, with statistics.

Set A = {a_1 … a_n}, set B = {b_1 … b_m}: *paired* (n = m, a_i and b_i differ in one respect,
e.g. happy vs angry) or *unpaired* (two groups). Every prompt runs once, in batches; from each
pass only the residual at one position per layer is kept (the last token by default; `position`
counts from the start, or from the end when negative): h[ℓ] ∈ R^d for ℓ = 0…L, so at most
(n + m) × (L+1) × d numbers are held — never × positions. Per layer ℓ:

- **Distance** between the sets' states, cosine distance 1 − cos and relative L2
  ‖a − b‖ / ((‖a‖ + ‖b‖)/2) (lib.analyses.distances): paired, the mean over pairs of d(a_i, b_i);
  unpaired, the mean over all n·m cross pairs d(a_i, b_j). 95 % interval: percentile bootstrap
  over pairs (unpaired: A's and B's prompts resampled independently), `bootstrap` resamples.
- **Linear probe**: logistic regression on standardized h[ℓ] (scikit-learn), label 1 = A, accuracy
  by k-fold cross-validation (k = min(folds, smallest group)); paired prompts stay in one fold
  (GroupKFold on the pair index), unpaired folds are stratified. Reported as the mean ± standard
  deviation over folds. **Chance**: the same probe on shuffled labels, the mean over
  `permutations` shuffles — unpaired, a permutation of all labels; paired, each pair's two labels
  swapped with probability ½ (so every fold still holds one A and one B per pair).
- **Mean difference** v[ℓ] = mean_i h_A,i[ℓ] − mean_j h_B,j[ℓ] (for paired sets = mean_i (h_A,i −
  h_B,i), the CAA vector of Rimsky et al. 2024), its norm and that norm relative to the mean
  residual norm mean_k ‖h_k[ℓ]‖ over both sets.
- **The lens over the sets** (logit lens at the same position): the tokens whose mean probability
  differs most, p̄_A(t) − p̄_B(t) by |·|, top-k only (the sums p̄ are accumulated batch by batch, at
  most 2 × (L+1) × vocab numbers held), and the share of each set whose final answer — the model's
  own top-1 at that position, the lens at layer L — is already top-1 at layer ℓ. It reads every
  layer of every prompt through the unembedding ((n + m)(L+1) rows of d_model × vocab work in
  float32: on the embedded model 0.77× the passes' matrix products, and about as much time), so
  it can be left out (`lens=False`): then only layer L is read, for each prompt's answer, and
  `lens` is empty.

The batches are padded on the right: a causal model's position p never attends to p' > p, so the
padding after a prompt changes none of its states and every position keeps its own index (no
attention mask or position shift needed; tested equal to one pass per prompt on every family).
The passes stop after the last block (the model's own logits at the chosen position are the lens
at layer L, which `architecture.check_lens` proves equal at load time).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.backend import Job
from ..core.chat import Chat, encode_prompt
from ..core.errors import PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.sites import Site, residual_sites
from ..core.tokens import check_prompts, readable_token
from .common.distances import cosine_distance, relative_l2
from .common.vector import SteeringVector

MAX_PROMPTS = 1000  # a side; a 1,000-line set of the embedded model holds 2 × 1000 × 31 × 576 floats
BATCH = 16  # prompts per forward pass
LENS_ROWS = 256  # residual rows per lens chunk ([256, vocab] floats at a time)
SEPARABLE = 0.9  # probe accuracy from which the summary calls the sets separable
Progress = Callable[[int, int, str], None]  # (done, in all, "prompts" run | "layers" probed)


@dataclass(frozen=True)
class PromptSets(Record):
    """Two lists of prompts; `paired`: a[i] and b[i] belong together (the lists are equally long)."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    paired: bool
    name: str = ""  # a shipped set's name, or "" for the user's own


SHIPPED_FOLDER = Path(__file__).resolve().parents[1] / "data" / "sets"  # CC0, see its README.md
SHIPPED: dict[str, str] = {  # name → file, in the order the page lists them
    "Happy vs angry sentences": "happy_angry.csv",
    "Capital vs official language": "capital_language.csv",
    "True vs false statements": "true_false.csv",
}


def shipped_sets(name: str) -> PromptSets:
    """One of the example sets shipped with twinlens (`SHIPPED`; 50 pairs each, paired)."""
    if name not in SHIPPED:
        raise SettingsError(f"There is no shipped set '{name}'; choose one of {', '.join(SHIPPED)}.")
    a, b = read_table((SHIPPED_FOLDER / SHIPPED[name]).read_text(encoding="utf-8"), "csv")
    return prompt_sets(a, b, paired=True, name=name)


def read_lines(text: str, side: str = "A", name: str | None = None) -> tuple[str, ...]:
    """One prompt a line (a final newline and blank lines at the very end are fine; blank lines
    between prompts are refused, naming their rows, 1-based, and `name`, default 'Set A')."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise PromptError(f"{name or f'Set {side}'} has empty lines at {_rows(blank)}; remove them "
                          "(one prompt a line).")
    return tuple(lines)


def read_table(data: str, kind: str = "csv") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Paired prompts from a CSV with a header row naming columns `a` and `b` (others ignored), or
    from JSON Lines of objects {"a": …, "b": …}; rows are numbered from 1 after the header."""
    if kind == "jsonl":
        rows: list[tuple[object, object]] = []
        for number, line in enumerate(read_lines(data, name="The JSONL file"), 1):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptError(f"Row {number} of the JSONL file is not JSON ({exc.msg}).") from exc
            if not isinstance(item, dict) or "a" not in item or "b" not in item:
                raise PromptError(f"Row {number} of the JSONL file is not an object with keys 'a' and 'b'.")
            rows.append((item["a"], item["b"]))
    elif kind == "csv":
        reader = csv.DictReader(io.StringIO(data))
        header = [name.strip() for name in reader.fieldnames or []]
        if "a" not in header or "b" not in header:
            shown = ", ".join(header) if header else "nothing"
            raise PromptError(
                f"The CSV needs a header row with columns 'a' and 'b'; its first row has {shown}."
            )
        reader.fieldnames = header
        rows = [(row.get("a"), row.get("b")) for row in reader]
    else:
        raise SettingsError(f"A table of prompts is 'csv' or 'jsonl', not '{kind}'.")
    not_text = [i + 1 for i, (a, b) in enumerate(rows) if not isinstance(a, str) or not isinstance(b, str)]
    if not_text:
        raise PromptError(f"The file has cells that are not text (or are missing) at {_rows(not_text)}.")
    return tuple(a for a, _ in rows), tuple(b for _, b in rows)  # type: ignore[misc]


def prompt_sets(a: Sequence[str], b: Sequence[str], paired: bool = False, name: str = "") -> PromptSets:
    """Check two lists and make them sets; every refusal is one sentence naming the rows (1-based):
    empty prompts, a set of fewer than 2 or more than MAX_PROMPTS, unequal lengths declared paired,
    a prompt repeated within a set, NUL characters or text that is not UTF-8."""
    for side, prompts in (("A", a), ("B", b)):
        if len(prompts) < 2:
            raise PromptError(
                f"Set {side} has {len(prompts)} prompt{'s' * (len(prompts) != 1)}; a comparison of sets "
                "needs at least 2 in each."
            )
        if len(prompts) > MAX_PROMPTS:
            raise PromptError(f"Set {side} has {len(prompts):,} prompts; the limit is {MAX_PROMPTS:,} a set.")
    if paired and len(a) != len(b):
        raise PromptError(
            f"Paired sets need as many prompts in A as in B (A has {len(a)}, B has {len(b)}); "
            "make them equal or compare them unpaired."
        )
    for side, prompts in (("A", a), ("B", b)):
        empty = [i + 1 for i, text in enumerate(prompts) if not text.strip()]
        if empty:
            raise PromptError(f"Set {side} has empty prompts at {_rows(empty)}; fill or remove them.")
        first: dict[str, int] = {}
        repeats = []
        for i, text in enumerate(prompts, 1):
            if text in first:
                repeats.append(f"{i} (= row {first[text]})")
            first.setdefault(text, i)
        if repeats:
            raise PromptError(f"Set {side} repeats prompts at row {', '.join(repeats)}; keep each once.")
        for i, text in enumerate(prompts, 1):
            check_prompts(text, names=(f"Set {side}, row {i},",))
    return PromptSets(tuple(a), tuple(b), paired, name)


def _rows(numbers: Sequence[int], most: int = 10) -> str:
    """'row 3' or 'rows 3, 7 and 9' (the first `most`, then how many more)."""
    shown = [str(n) for n in numbers[:most]]
    more = len(numbers) - len(shown)
    if more:
        return f"rows {', '.join(shown)} and {more} more"
    if len(shown) == 1:
        return f"row {shown[0]}"
    return f"rows {', '.join(shown[:-1])} and {shown[-1]}"


@dataclass(frozen=True)
class Interval(Record):
    """A mean with its percentile-bootstrap 95 % interval [low, high]."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Probe(Record):
    """Cross-validated accuracy of a linear probe (mean ± std over folds) beside the same probe
    on shuffled labels (chance: mean ± std over the permutations' mean accuracies). `margins`:
    each row's out-of-fold decision value (> 0: the probe says A), in the rows' order."""

    accuracy: float
    accuracy_std: float
    chance: float
    chance_std: float
    folds: int
    margins: tuple[float, ...] = ()


@dataclass(frozen=True)
class LayerStats(Record):
    """The sets at one residual layer (see the module docstring): distances with intervals, the
    probe (margins left out), ‖v‖ of the mean difference and ‖v‖ / mean ‖h‖."""

    layer: int
    cosine: Interval
    relative_l2: Interval
    probe: Probe
    difference_norm: float
    relative_norm: float


@dataclass(frozen=True)
class TokenShift(Record):
    """A token's mean lens probability in each set."""

    token: str
    token_id: int
    p_a: float
    p_b: float

    @property
    def delta(self) -> float:
        return self.p_a - self.p_b


@dataclass(frozen=True)
class LensLayer(Record):
    """The lens over the sets at one layer: the top-k tokens by |p̄_A − p̄_B|, and the share of
    each set whose final answer is already the lens's top-1 here."""

    layer: int
    tokens: tuple[TokenShift, ...]
    top1_a: float
    top1_b: float


@dataclass(frozen=True)
class PromptRow(Record):
    """One prompt at the chosen layer: its final answer (the model's top-1) and the probe's
    out-of-fold margin (> 0: read as A)."""

    side: str
    row: int
    text: str
    answer: str
    margin: float


@dataclass(frozen=True)
class PairRow(Record):
    """One pair of paired sets at the chosen layer."""

    row: int
    a: str
    b: str
    cosine: float
    relative_l2: float
    answer_a: str
    answer_b: str
    margin_a: float
    margin_b: float


@dataclass(frozen=True)
class SetComparison(Record):
    """Two sets compared layer by layer (`layers`, `lens` over 0…L), the CAA vector `vector`
    [d_model] at the chosen residual `layer`, per-prompt rows (and per-pair rows when paired) at
    that layer, and `summary`, a sentence that reads the curve from the same numbers."""

    model: str
    sets: PromptSets
    bos: str
    chat: Chat | None
    position: int
    layer: int
    layers: tuple[LayerStats, ...]
    lens: tuple[LensLayer, ...]
    vector: tuple[float, ...]
    prompts: tuple[PromptRow, ...]
    pairs: tuple[PairRow, ...]
    summary: str
    settings: dict

    @property
    def site(self) -> str:
        return Site.residual_at(self.layer, len(self.layers) - 1).name

    def vector_file(self) -> bytes:
        """The CAA vector as the Steering page's safetensors vector file (mode 'caa'), its metadata
        naming the model, layer, site, position and the sets it came from."""
        value = torch.tensor(self.vector, dtype=torch.float32)
        sets = self.sets.name or f"{len(self.sets.a)} A / {len(self.sets.b)} B prompts"
        vector = SteeringVector(
            self.layer, "caa", value, self.site, self.model,
            source=f"mean(h_A − h_B) over sets: {sets}{' (paired)' if self.sets.paired else ''}",
        )
        return vector.to_bytes(position=str(self.position), sets=json.dumps(
            {"a": list(self.sets.a), "b": list(self.sets.b), "paired": self.sets.paired,
             "name": self.sets.name}))


def encode_sets(
    loaded: LoadedModel, sets: PromptSets, bos: str = "auto", chat: Chat | None = None
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """Token ids of every prompt, refusing (in one sentence, naming the rows) prompts over the
    model's context."""
    encoded: list[tuple[tuple[int, ...], ...]] = []
    over: list[str] = []
    limit = loaded.max_tokens
    for side, prompts in (("A", sets.a), ("B", sets.b)):
        ids = []
        for row, text in enumerate(prompts, 1):
            try:
                found = encode_prompt(loaded.tokenizer, text, bos, chat).ids
            except PromptError as exc:
                raise PromptError(f"Set {side}, row {row}: {exc}") from exc
            if not found:
                raise PromptError(f"Set {side}, row {row}, gives no tokens.")
            if limit is not None and len(found) > limit:
                over.append(f"{side} row {row} ({len(found):,} tokens)")
            ids.append(tuple(found))
        encoded.append(tuple(ids))
    if over:
        shown = ", ".join(over[:10]) + (f" and {len(over) - 10} more" if len(over) > 10 else "")
        raise PromptError(f"{loaded.name} reads at most {limit:,} tokens; longer are {shown}. Shorten them.")
    return encoded[0], encoded[1]


def last_states(
    loaded: LoadedModel,
    ids: Sequence[Sequence[int]],
    position: int = -1,
    batch_size: int = BATCH,
    *,
    job: Job | None = None,
) -> torch.Tensor:
    """The residual at `position` of each prompt, at every layer: [n, L+1, d_model] float32 (CPU).

    Prompts run `batch_size` at a time, sorted by length (less padding), padded on the right (see
    the module docstring); position p ≥ 0 counts from the start, p < 0 from each prompt's end."""
    n_layers = loaded.n_layers
    sites = residual_sites(n_layers)
    lengths = [len(i) for i in ids]
    at = [position if position >= 0 else length + position for length in lengths]
    outside = [i + 1 for i, (p, length) in enumerate(zip(at, lengths, strict=True)) if not 0 <= p < length]
    if outside:
        raise SettingsError(f"Position {position} is outside the prompts at {_rows(outside)}.")
    order = sorted(range(len(ids)), key=lambda i: lengths[i])
    out = torch.empty(len(ids), n_layers + 1, loaded.d_model)
    for begin in range(0, len(order), batch_size):
        if job is not None:
            job.check()
        chunk = order[begin : begin + batch_size]
        width = max(lengths[i] for i in chunk)
        batch = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, i in enumerate(chunk):
            batch[row, : lengths[i]] = torch.tensor(ids[i], dtype=torch.long)
        rows = torch.arange(len(chunk))
        cols = torch.tensor([at[i] for i in chunk])

        def pick(run, rows=rows, cols=cols):  # blocks may sit on several devices (device_map)
            found = [run.activations[s] for s in sites]
            return torch.stack([f[rows.to(f.device), cols.to(f.device)].float().cpu() for f in found], 1)

        out[chunk] = loaded.backend.run(batch, sites=sites, reduce=pick, stop_early=True)
    return out


def _check_position(ids_a: Sequence[Sequence[int]], ids_b: Sequence[Sequence[int]], position: int) -> None:
    """Refuse a position some prompts do not reach, naming them."""
    short = [f"{side} row {row}" for side, ids in (("A", ids_a), ("B", ids_b))
             for row, found in enumerate(ids, 1) if not -len(found) <= position < len(found)]
    if short:
        shown = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
        raise SettingsError(
            f"Position {position} is outside some prompts ({shown}); pick one every prompt has."
        )


def bootstrap_mean(values: np.ndarray, resamples: int, seed: int = 0) -> Interval:
    """Mean of `values` [n] with the percentile bootstrap's 95 % interval (resampling the n values)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    return Interval(float(values.mean()), *(float(q) for q in np.percentile(means, [2.5, 97.5])))


def bootstrap_cross_mean(matrix: np.ndarray, resamples: int, seed: int = 0) -> Interval:
    """Mean of `matrix` [n, m] (all cross pairs) with the 95 % interval of the bootstrap that resamples
    rows and columns independently: mean(M[I][:, J]) = wᵢᵀ M w_J / (n m), w = counts of each index."""
    rng = np.random.default_rng(seed)
    n, m = matrix.shape
    w_a = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]).astype(float)
    w_b = np.stack([np.bincount(rng.integers(0, m, m), minlength=m) for _ in range(resamples)]).astype(float)
    means = ((w_a @ matrix) * w_b).sum(1) / (n * m)
    return Interval(float(matrix.mean()), *(float(q) for q in np.percentile(means, [2.5, 97.5])))


def cross_distances(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance and relative L2 between every a_i [n, d] and b_j [m, d] → two [n, m] arrays,
    from Gram products (n·m·d work, no [n, m, d] tensor)."""
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    dot = a @ b.T
    cos = 1 - dot / (na[:, None] * nb[None, :]).clamp_min(1e-300)
    cos = torch.where((na[:, None] > 0) & (nb[None, :] > 0), cos, torch.zeros_like(cos)).clamp_min(0)
    sq = (na[:, None] ** 2 + nb[None, :] ** 2 - 2 * dot).clamp_min(0)
    scale = (na[:, None] + nb[None, :]) / 2
    rel = torch.where(scale > 0, sq.sqrt() / scale.clamp_min(1e-300), torch.zeros_like(sq))
    return cos.numpy(), rel.numpy()


def cv_splits(
    labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices of k-fold cross-validation, k = min(folds, pairs or smallest set)
    ≥ 2: with `groups`, each group's rows in one fold (GroupKFold); else stratified by label."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    labels = np.asarray(labels).astype(int)
    smallest = len(np.unique(groups)) if groups is not None else int(np.bincount(labels).min())
    k = max(2, min(folds, smallest))
    if groups is not None:
        return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(labels, labels, groups))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(labels, labels))


def probe_accuracy(
    x: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    folds: int = 5,
    permutations: int = 5,
    seed: int = 0,
) -> Probe:
    """Cross-validated accuracy of logistic regression on standardized `x` [n, d] for `labels` [n]
    (0/1), with `groups` [n] kept within one fold (pairs), beside chance on shuffled labels (see the
    module docstring: within-group swaps when grouped, a permutation otherwise)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels).astype(int)
    splits = cv_splits(labels, groups, folds, seed)
    k = len(splits)

    def score(y: np.ndarray) -> tuple[list[float], np.ndarray]:
        accuracies, margins = [], np.zeros(len(y))
        for train, test in splits:
            if len(np.unique(y[train])) < 2:  # a shuffle left one class in training: it predicts it
                guess = y[train][0]
                accuracies.append(float((y[test] == guess).mean()))
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            model.fit(x[train], y[train])
            margins[test] = model.decision_function(x[test])
            accuracies.append(float((model.predict(x[test]) == y[test]).mean()))
        return accuracies, margins

    # the same fits, without re-validating the estimators' constant parameters on each of the
    # folds × (1 + permutations) fits (scikit-learn's per-call overhead on these small problems)
    with sklearn.config_context(skip_parameter_validation=True):
        accuracies, margins = score(labels)
        rng = np.random.default_rng(seed + 1)
        chances = []
        for _ in range(permutations):
            if groups is not None:
                shuffled = labels.copy()
                for g in np.unique(groups):
                    members = np.flatnonzero(groups == g)
                    if rng.random() < 0.5:
                        shuffled[members] = shuffled[members[::-1]]
            else:
                shuffled = rng.permutation(labels)
            chances.append(float(np.mean(score(shuffled)[0])))
    return Probe(
        float(np.mean(accuracies)), float(np.std(accuracies)),
        float(np.mean(chances)) if chances else math.nan, float(np.std(chances)) if chances else math.nan,
        k, tuple(float(m) for m in margins),
    )


class LensSums:
    """Running sums over the prompts of each set: Σ softmax(lens(h[ℓ])) [2, L+1, vocab] and the
    count of prompts whose lens top-1 at ℓ is their final answer [2, L+1]; and each answer id."""

    def __init__(self, loaded: LoadedModel, n: int, every_layer: bool = True):
        self.loaded = loaded
        self.every_layer = every_layer  # False: only layer L, for the answers (no sums kept)
        size = (2, loaded.n_layers + 1) if every_layer else (2, 0)
        self.probs = torch.zeros(*size, loaded.vocab_size)  # float32: ≤ 1,000 terms ≤ 1 each
        self.hits = torch.zeros(size, dtype=torch.long)
        self.answers = torch.zeros(n, dtype=torch.long)

    def add(self, states: torch.Tensor, index: Sequence[int], side: Sequence[int]) -> None:
        """Add prompts `index` (their states [b, L+1, d]; side 0 = A, 1 = B), LENS_ROWS residual
        rows at a time (never [b, L+1, vocab] at once). Without `every_layer`, only layer L's rows
        go through the lens, for the answers."""
        if not self.every_layer:
            last = states[:, -1]
            answers = torch.cat([self.loaded.backend.lens_logits(last[i : i + LENS_ROWS]).cpu().argmax(-1)
                                 for i in range(0, len(last), LENS_ROWS)])
            self.answers[list(index)] = answers
            return
        b, layers, d = states.shape
        flat = states.reshape(-1, d)
        # row r·(L+1) + ℓ of `flat` is prompt r at layer ℓ; its sums live at side·(L+1) + ℓ
        target = (torch.tensor(side)[:, None] * layers + torch.arange(layers)[None, :]).reshape(-1)
        sums = self.probs.view(-1, self.probs.shape[-1])
        top1 = torch.empty(b * layers, dtype=torch.long)
        for i in range(0, len(flat), LENS_ROWS):
            probs, top1[i : i + LENS_ROWS] = self._softmax(flat[i : i + LENS_ROWS])
            sums.index_add_(0, target[i : i + LENS_ROWS], probs)
        top1 = top1.view(b, layers)
        answers = top1[:, -1]
        for row, (i, s) in enumerate(zip(index, side, strict=True)):
            self.hits[s] += top1[row] == answers[row]
            self.answers[i] = answers[row]

    def _softmax(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(lens(rows)) [r, vocab] float32 on the CPU, and each row's top-1 [r] (the first
        of ties, as argmax).

        The same float32 softmax as torch's, exp(z − max z) / Σ exp(z − max z), computed in place
        in the logits' own buffer (a fresh tensor from `lens_logits`) with numpy's vectorized exp and
        pairwise row sums: no [r, vocab] temporaries, and on this project's CPUs about a third of
        the time of `argmax` + `softmax` (whose exp is a faster, coarser one: ~1e-5 relative error
        against float64, this ~1e-6); the max comes from the top-1's own logit."""
        logits = self.loaded.backend.lens_logits(rows).cpu()
        z = logits.numpy()
        top = z.argmax(-1)
        with np.errstate(invalid="ignore"):  # a row with +inf or NaN gives NaN, as softmax does
            np.subtract(z, z[np.arange(len(z)), top][:, None], out=z)
            np.exp(z, out=z)
            np.divide(z, z.sum(-1, keepdims=True), out=z)
        return logits, torch.from_numpy(top)

    def layers(self, counts: tuple[int, int], top_k: int) -> tuple[LensLayer, ...]:
        if not self.every_layer:
            return ()
        mean = self.probs.double() / torch.tensor(counts, dtype=torch.float64)[:, None, None]
        delta = mean[0] - mean[1]
        tokenizer = self.loaded.tokenizer
        found = []
        for layer in range(delta.shape[0]):
            ids = delta[layer].abs().topk(min(top_k, delta.shape[1])).indices.tolist()
            tokens = tuple(
                TokenShift(readable_token(tokenizer, t), t, float(mean[0, layer, t]),
                           float(mean[1, layer, t]))
                for t in ids
            )
            found.append(LensLayer(layer, tokens, float(self.hits[0, layer] / counts[0]),
                                   float(self.hits[1, layer] / counts[1])))
        return tuple(found)


def run_sets(
    loaded: LoadedModel,
    ids_a: Sequence[Sequence[int]],
    ids_b: Sequence[Sequence[int]],
    position: int = -1,
    batch_size: int = BATCH,
    *,
    lens: bool = True,
    progress: Progress | None = None,
    job: Job | None = None,
) -> tuple[torch.Tensor, LensSums]:
    """The model's work: every prompt's residual at `position`, A's then B's ([n_a + n_b, L+1,
    d_model] float32), and the lens sums over each set (`lens=False`: each prompt's answer only),
    in batches of similar lengths."""
    ids = (*ids_a, *ids_b)
    sides = [0] * len(ids_a) + [1] * len(ids_b)
    _check_position(ids_a, ids_b, position)
    sums = LensSums(loaded, len(ids), every_layer=lens)
    states = torch.empty(len(ids), loaded.n_layers + 1, loaded.d_model)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # batches of similar lengths
    for begin in range(0, len(order), batch_size):
        index = order[begin : begin + batch_size]
        chunk = last_states(loaded, [ids[i] for i in index], position, batch_size, job=job)
        states[index] = chunk
        sums.add(chunk, index, [sides[i] for i in index])
        if progress is not None:
            progress(begin + len(index), len(ids), "prompts")
    return states, sums


@dataclass(frozen=True, eq=False)
class SetMeasures:
    """Everything `measure_sets` found, at every layer, small enough to keep (no states): the
    per-layer statistics and lens, each prompt's answer, and per layer ℓ the mean difference
    `vectors[ℓ]` [d_model], the probe's margins [n_a + n_b] and, paired, each pair's distances.
    `at(layer)` is the SetComparison at one layer (no model work)."""

    model: str
    sets: PromptSets
    bos: str
    chat: Chat | None
    position: int
    layers: tuple[LayerStats, ...]
    lens: tuple[LensLayer, ...]
    answers: tuple[str, ...]
    vectors: torch.Tensor  # [L+1, d_model] float64
    margins: torch.Tensor  # [L+1, n_a + n_b]
    pair_cosine: torch.Tensor  # [L+1, n] (paired; else [L+1, 0])
    pair_relative_l2: torch.Tensor
    settings: dict

    @property
    def best_layer(self) -> int:
        """The layer where the probe is most accurate (the earliest of ties)."""
        best = max(s.probe.accuracy for s in self.layers)
        return next(s.layer for s in self.layers if s.probe.accuracy == best)

    def at(self, layer: int | None = None) -> SetComparison:
        """The comparison with the vector and the rows at residual `layer` (None: `best_layer`)."""
        layer = self.best_layer if layer is None else layer
        Site.residual_at(layer, len(self.layers) - 1)
        sets, n_a, margins = self.sets, len(self.sets.a), self.margins[layer].tolist()
        prompt_rows = tuple(
            PromptRow(side, row + 1, text, self.answers[offset + row], margins[offset + row])
            for side, texts, offset in (("A", sets.a, 0), ("B", sets.b, n_a))
            for row, text in enumerate(texts)
        )
        pairs: tuple[PairRow, ...] = ()
        if sets.paired:
            cos, rel = self.pair_cosine[layer].tolist(), self.pair_relative_l2[layer].tolist()
            pairs = tuple(
                PairRow(i + 1, sets.a[i], sets.b[i], cos[i], rel[i], self.answers[i], self.answers[n_a + i],
                        margins[i], margins[n_a + i])
                for i in range(n_a)
            )
        return SetComparison(
            model=self.model, sets=sets, bos=self.bos, chat=self.chat, position=self.position, layer=layer,
            layers=self.layers, lens=self.lens, vector=tuple(self.vectors[layer].tolist()),
            prompts=prompt_rows, pairs=pairs, summary=read_curve(self.layers), settings=dict(self.settings),
        )


def measure_sets(
    loaded: LoadedModel,
    sets: PromptSets,
    *,
    bos: str = "auto",
    chat: Chat | None = None,
    position: int = -1,
    top_k: int = 5,
    folds: int = 5,
    permutations: int = 5,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = BATCH,
    lens: bool = True,
    progress: Progress | None = None,
    job: Job | None = None,
) -> SetMeasures:
    """Run both sets and measure them at every layer (module docstring); `lens=False` leaves out
    the lens over the sets (`lens` empty; the answers are still read).
    `progress(done, total, stage)` hears of the prompts run, then of the layers probed;
    `job.cancel` stops between batches and between layers."""
    if top_k < 1:
        raise SettingsError(f"top-k must be at least 1 (got {top_k}).")
    ids_a, ids_b = encode_sets(loaded, sets, bos, chat)
    n_a, n_b = len(ids_a), len(ids_b)
    states, sums = run_sets(loaded, ids_a, ids_b, position, batch_size, lens=lens, progress=progress, job=job)
    a, b = states[:n_a], states[n_a:]
    labels = np.array([1] * n_a + [0] * n_b)
    groups = np.concatenate([np.arange(n_a), np.arange(n_b)]) if sets.paired else None
    stats, margins = [], []
    for ell in range(loaded.n_layers + 1):
        if job is not None:
            job.check()
        layer_stats, probe_margins = _layer_stats(ell, a[:, ell], b[:, ell], sets.paired, labels, groups,
                                                  folds=folds, permutations=permutations,
                                                  bootstrap=bootstrap, seed=seed)
        stats.append(layer_stats)
        margins.append(probe_margins)
        if progress is not None:
            progress(ell + 1, loaded.n_layers + 1, "layers")
    pairs = slice(None) if sets.paired else slice(0, 0)
    return SetMeasures(
        model=loaded.name, sets=sets, bos=bos, chat=chat, position=position, layers=tuple(stats),
        lens=sums.layers((n_a, n_b), top_k),
        answers=tuple(readable_token(loaded.tokenizer, int(t)) for t in sums.answers),
        vectors=a.double().mean(0) - b.double().mean(0), margins=torch.tensor(margins, dtype=torch.float64),
        pair_cosine=cosine_distance(a[pairs], b[pairs]).T, pair_relative_l2=relative_l2(a[pairs], b[pairs]).T,
        settings={"folds": folds, "permutations": permutations, "bootstrap": bootstrap, "seed": seed,
                  "top_k": top_k, "batch_size": batch_size, "lens": lens},
    )


def compare_sets(
    loaded: LoadedModel, sets: PromptSets, *, layer: int | None = None, **options
) -> SetComparison:
    """`measure_sets(loaded, sets, **options).at(layer)`: the vector and rows at residual `layer`
    (default: where the probe is most accurate). A layer the model lacks is refused before any work."""
    if layer is not None:
        Site.residual_at(layer, loaded.n_layers)
    return measure_sets(loaded, sets, **options).at(layer)


def _layer_stats(
    layer: int, a: torch.Tensor, b: torch.Tensor, paired: bool, labels: np.ndarray, groups: np.ndarray | None,
    *, folds: int, permutations: int, bootstrap: int, seed: int,
) -> tuple[LayerStats, tuple[float, ...]]:
    """One layer's statistics from A's states [n, d] and B's [m, d]; and the probe's margins."""
    if paired:
        cos = bootstrap_mean(cosine_distance(a, b).numpy(), bootstrap, seed)
        rel = bootstrap_mean(relative_l2(a, b).numpy(), bootstrap, seed)
    else:
        cos_m, rel_m = cross_distances(a, b)
        cos, rel = bootstrap_cross_mean(cos_m, bootstrap, seed), bootstrap_cross_mean(rel_m, bootstrap, seed)
    x = torch.cat([a, b]).double()
    probe = probe_accuracy(x.numpy(), labels, groups, folds=folds, permutations=permutations, seed=seed)
    difference = float((a.double().mean(0) - b.double().mean(0)).norm())
    scale = float(x.norm(dim=1).mean())
    stats = LayerStats(layer, cos, rel, Probe(probe.accuracy, probe.accuracy_std, probe.chance,
                                              probe.chance_std, probe.folds),
                       difference, difference / scale if scale > 0 else 0.0)
    return stats, probe.margins


def read_curve(layers: Sequence[LayerStats], threshold: float = SEPARABLE) -> str:
    """One sentence (two at most) on the probe's curve and the distance, with the numbers shown."""
    def acc(s: LayerStats) -> str:
        return f"accuracy {s.probe.accuracy:.2f} ± {s.probe.accuracy_std:.2f}, chance {s.probe.chance:.2f}"

    first = next((s for s in layers if s.probe.accuracy >= threshold), None)
    if first is None:
        best = max(layers, key=lambda s: s.probe.accuracy)
        probe = (f"The sets never become linearly separable (accuracy ≥ {threshold:.2f}): the probe does "
                 f"best at layer {best.layer} ({acc(best)}).")
    else:
        below = [s for s in layers if s.layer > first.layer and s.probe.accuracy < threshold]
        if not below:
            rest = "and stay so"
        else:
            rest = f"but fall below {threshold:.2f} again at layer {below[0].layer} ({acc(below[0])})"
            if below[-1].layer < layers[-1].layer:
                rest += f", separable for good from layer {below[-1].layer + 1}"
        probe = f"The sets become separable at layer {first.layer} — {acc(first)} — {rest}."
    far = max(layers, key=lambda s: s.cosine.mean)
    return (f"{probe} Their states are farthest apart at layer {far.layer}: cosine distance "
            f"{far.cosine.mean:.3f} (95 % CI {far.cosine.low:.3f}–{far.cosine.high:.3f}); the mean "
            f"difference is {far.relative_norm:.2f} of the residual's norm there.")
