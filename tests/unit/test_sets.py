"""Two sets of prompts (lib.analyses.sets): the statistics against a direct computation on every
tiny family, batching against one pass per prompt, the probe on synthetic data, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bad_input_cases import SETS_CASES, SetsCase

import lib.analyses.sets as sets_module
from lib.analyses.sets import (
    SHIPPED,
    Interval,
    LayerStats,
    LensSums,
    Probe,
    SetComparison,
    bootstrap_cross_mean,
    bootstrap_mean,
    compare_sets,
    cv_splits,
    encode_sets,
    last_states,
    measure_sets,
    probe_accuracy,
    prompt_sets,
    read_curve,
    read_lines,
    read_table,
    shipped_sets,
)
from lib.analyses.steering import load_vector
from lib.core.errors import PromptError, SettingsError
from lib.core.sites import residual_sites
from lib.core.tokens import readable_token

# Different lengths on purpose: the batches need padding.
A = ("You have happy emotion in yourself!", "The capital of France is", "Claire and Mary went to the shops",
     "the quick brown fox")
B = ("You have angry emotion in yourself!", "The capital of Italy is", "then Mary gave a bottle of milk to",
     "the lazy dog jumps over the quick brown fox")
FAST = dict(folds=2, permutations=1, bootstrap=50)


def one_by_one(loaded, ids, position=-1) -> torch.Tensor:
    """The residual at `position` of each prompt at every layer, one plain pass per prompt [n, L+1, d]."""
    sites = residual_sites(loaded.n_layers)
    found = []
    for one in ids:
        run = loaded.backend.run(torch.tensor([list(one)]), sites=sites)
        found.append(torch.stack([run.activations[s][0, position] for s in sites]).float())
    return torch.stack(found)


def close(x, y, scale):
    torch.testing.assert_close(torch.as_tensor(x).double(), torch.as_tensor(y).double(),
                               atol=1e-4 * float(scale), rtol=1e-4)


@pytest.mark.parametrize("position", [-1, -2, 1])
def test_batched_states_equal_one_pass_per_prompt(family_model, position):
    """Right padding changes no state of a causal model: batched (mixed lengths) equals
    one pass per prompt, at the last token, counted from the end, and from the start."""
    ids_a, ids_b = encode_sets(family_model, prompt_sets(A, B, paired=True))
    ids = [*ids_a, *ids_b]
    assert len({len(i) for i in ids}) > 2
    direct = one_by_one(family_model, ids, position)
    for batch_size in (3, len(ids)):  # one batch: the shortest prompt padded to the longest
        batched = last_states(family_model, ids, position, batch_size=batch_size)
        close(batched, direct, direct.abs().max())


def test_progress_counts_and_cancel(family_model):
    from lib.core.backend import Job
    from lib.core.errors import Cancelled

    seen = []
    sets = prompt_sets(A, B, paired=True)
    compare_sets(family_model, sets, batch_size=2, progress=lambda *counts: seen.append(counts), **FAST)
    prompts = [(d, n) for d, n, stage in seen if stage == "prompts"]
    layers = [(d, n) for d, n, stage in seen if stage == "layers"]
    assert prompts == [(2, 8), (4, 8), (6, 8), (8, 8)]
    assert layers == [(i + 1, family_model.n_layers + 1) for i in range(family_model.n_layers + 1)]
    job = Job()
    job.cancel.set()
    with pytest.raises(Cancelled):
        compare_sets(family_model, sets, job=job, **FAST)


@pytest.fixture
def paired_result(family_model):
    sets = prompt_sets(A, B, paired=True)
    ids_a, ids_b = encode_sets(family_model, sets)
    result = compare_sets(family_model, sets, layer=1, **FAST)
    return family_model, result, one_by_one(family_model, ids_a), one_by_one(family_model, ids_b)


def test_paired_statistics_match_a_direct_computation(paired_result):
    """Per layer: mean cosine distance and relative L2 over pairs, ‖mean_A − mean_B‖ and its share
    of the mean residual norm, computed here with numpy from one pass per prompt."""
    loaded, result, h_a, h_b = paired_result
    assert [s.layer for s in result.layers] == list(range(loaded.n_layers + 1))
    for stats in result.layers:
        a, b = h_a[:, stats.layer].double().numpy(), h_b[:, stats.layer].double().numpy()
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = 1 - (a * b).sum(1) / (na * nb)
        rel = np.linalg.norm(a - b, axis=1) / ((na + nb) / 2)
        scale = np.concatenate([na, nb]).mean()
        diff = np.linalg.norm(a.mean(0) - b.mean(0))
        assert stats.cosine.mean == pytest.approx(cos.mean(), abs=1e-4)
        assert stats.relative_l2.mean == pytest.approx(rel.mean(), abs=1e-4)
        assert stats.cosine.low <= stats.cosine.mean + 1e-12 <= stats.cosine.high + 2e-12
        assert stats.difference_norm == pytest.approx(diff, rel=1e-3, abs=1e-4 * scale)
        assert stats.relative_norm == pytest.approx(diff / scale, rel=1e-3, abs=1e-4)
        assert 0 <= stats.probe.accuracy <= 1 and stats.probe.folds == 2


def test_caa_vector_is_the_mean_of_pair_differences(paired_result):
    loaded, result, h_a, h_b = paired_result
    expected = (h_a[:, 1] - h_b[:, 1]).double().mean(0)
    close(torch.tensor(result.vector), expected, h_a.abs().max())
    rows = result.pairs
    a, b = h_a[:, 1].double(), h_b[:, 1].double()
    cos = 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert [r.row for r in rows] == [1, 2, 3, 4] and [r.a for r in rows] == list(A)
    assert [r.cosine for r in rows] == pytest.approx(cos.tolist(), abs=1e-4)


def test_every_layer_from_one_measurement(paired_result):
    """`measure_sets(…).at(ℓ)` holds the mean difference and each pair's distance at any layer ℓ,
    without running the model again; the default layer is the best probe's."""
    loaded, result, h_a, h_b = paired_result
    measures = measure_sets(loaded, result.sets, **FAST)
    passes = loaded.forward_passes
    for layer in range(loaded.n_layers + 1):
        at = measures.at(layer)
        close(torch.tensor(at.vector), (h_a[:, layer] - h_b[:, layer]).double().mean(0), h_a.abs().max())
        a, b = h_a[:, layer].double(), h_b[:, layer].double()
        rel = (a - b).norm(dim=1) / ((a.norm(dim=1) + b.norm(dim=1)) / 2)
        assert [r.relative_l2 for r in at.pairs] == pytest.approx(rel.tolist(), abs=1e-4)
        assert at.layers == result.layers
    assert loaded.forward_passes == passes
    best = max(s.probe.accuracy for s in measures.layers)
    assert measures.at().layer == measures.best_layer == next(s.layer for s in measures.layers
                                                               if s.probe.accuracy == best)


def test_a_comparison_survives_json(paired_result):
    """What History and the JSON export keep reads back as the same comparison."""
    _, result, _, _ = paired_result
    assert SetComparison.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_vector_file_loads_on_the_steering_page(paired_result):
    """The CAA vector file is the Steering page's vector file: the same numbers, its layer, mode
    'caa' and the sets in its provenance."""
    loaded, result, _, _ = paired_result
    vector = load_vector(result.vector_file(), loaded, layer=1)
    assert vector.mode == "caa" and vector.layer == 1 and "mean(h_A − h_B)" in vector.source
    torch.testing.assert_close(vector.value, torch.tensor(result.vector, dtype=torch.float32))
    data = result.vector_file()
    meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]  # safetensors header
    assert json.loads(meta["sets"])["a"] == list(A)
    assert meta["model"] == loaded.name and meta["position"] == "-1"


def test_vector_file_describes_its_provenance(family_model, paired_result):
    """The file says in words what it holds: paired, the number of pairs; unpaired, of prompts per
    set (no name: the first prompts); layer, position and model; a vector of A − B says its kind."""
    from lib.analyses.common.vector import describe_vector_file
    from lib.analyses.steering import steering_vector
    from lib.core.capture import capture

    loaded, result, _, _ = paired_result
    text = describe_vector_file(result.vector_file())
    assert "mean of h_A − h_B" in text and "4 pairs" in text and "layer 1" in text and loaded.name in text
    unpaired = compare_sets(family_model, prompt_sets(A[:3], B, paired=False), layer=0, position=1, **FAST)
    text = describe_vector_file(unpaired.vector_file())
    assert f"“{A[0]}” … vs “{B[0]}” …" in text and "3 prompts in A, 4 in B" in text
    assert "layer 0" in text and "position 1" in text
    plain = steering_vector(loaded, capture(loaded, A[0]), capture(loaded, B[0]), 1, "mean").to_bytes()
    assert describe_vector_file(plain).startswith("A saved vector: mean over A's positions − mean over B's")
    assert describe_vector_file(b"not a file") == "The file's description cannot be read."


def test_lens_over_the_sets_matches_a_direct_computation(paired_result):
    """Per layer: the mean lens probability of each listed token in each set, the tokens being
    those whose |p̄_A − p̄_B| is largest; the share of each set whose final answer (the model's own
    top-1) is top-1 at that layer; each row's answer is the model's own top-1."""
    loaded, result, h_a, h_b = paired_result
    lens = loaded.backend.lens_logits
    logits = [lens(h.reshape(-1, h.shape[-1])).reshape(*h.shape[:2], -1) for h in (h_a, h_b)]
    probs = [torch.softmax(x, -1) for x in logits]
    means = [p.mean(0).double() for p in probs]
    own = [loaded.backend.run(torch.tensor([list(i)])).logits[0].argmax().item()
           for ids in encode_sets(loaded, result.sets) for i in ids]
    answers = [readable_token(loaded.tokenizer, t) for t in own]
    assert [r.answer_a for r in result.pairs] + [r.answer_b for r in result.pairs] == answers
    for lens in result.lens:
        delta = (means[0][lens.layer] - means[1][lens.layer]).abs()
        assert len(lens.tokens) == 5
        assert lens.tokens[0].delta ** 2 == pytest.approx(float(delta.max()) ** 2, abs=1e-6)
        for token in lens.tokens:
            assert token.p_a == pytest.approx(float(means[0][lens.layer, token.token_id]), abs=1e-5)
            assert token.p_b == pytest.approx(float(means[1][lens.layer, token.token_id]), abs=1e-5)
        for share, p, side in ((lens.top1_a, probs[0], own[:4]), (lens.top1_b, probs[1], own[4:])):
            expected = (p[:, lens.layer].argmax(-1) == torch.tensor(side)).double().mean()
            assert share == pytest.approx(float(expected))
    assert result.lens[-1].top1_a == 1.0 and result.lens[-1].top1_b == 1.0


def test_lens_sums_are_the_float32_softmax_to_its_rounding(family_model, monkeypatch):
    """`LensSums.add`, in chunks that split prompts (LENS_ROWS = 5), batches mixing the sides:
    Σ softmax(lens(h[ℓ])) per set and layer equal to the same sums in float64 from the same float32
    logits to float32 rounding, each prompt's answer its layer-L argmax, and the top-1 counts equal
    to counting argmaxes; a second `add` accumulates."""
    monkeypatch.setattr(sets_module, "LENS_ROWS", 5)
    ids_a, ids_b = encode_sets(family_model, prompt_sets(A, B, paired=True))
    states = last_states(family_model, [*ids_a, *ids_b])  # [8, L+1, d]
    logits = family_model.backend.lens_logits(states.reshape(-1, states.shape[-1])).double()
    probs = logits.softmax(-1).reshape(*states.shape[:2], -1)
    top1 = logits.argmax(-1).reshape(states.shape[:2])
    sides = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1])
    sums = LensSums(family_model, 8)
    sums.add(states[:3], [0, 1, 2], sides[:3].tolist())
    sums.add(states[3:], [3, 4, 5, 6, 7], sides[3:].tolist())
    for side in (0, 1):
        rows = sides == side
        torch.testing.assert_close(sums.probs[side].double(), probs[rows].sum(0), rtol=1e-5, atol=1e-7)
        hits = (top1[rows] == top1[rows][:, -1:]).sum(0)
        assert sums.hits[side].tolist() == hits.tolist()
    assert sums.answers.tolist() == top1[:, -1].tolist()
    counts = torch.tensor([[float((sides == s).sum())] for s in (0, 1)], dtype=torch.float64)
    torch.testing.assert_close(sums.probs.sum(-1).double(), counts.expand(2, states.shape[1]),
                               rtol=1e-5, atol=0)  # each probability row sums to 1


def test_without_the_lens_everything_else_is_the_same(paired_result):
    """`lens=False` leaves out the lens over the sets and nothing else: the same statistics, vector,
    rows and answers (the model's own top-1, still read at layer L); `lens` empty; the setting kept."""
    loaded, result, _, _ = paired_result
    without = compare_sets(loaded, result.sets, layer=1, lens=False, **FAST)
    assert without.lens == () and without.settings["lens"] is False and result.settings["lens"] is True
    assert without.layers == result.layers and without.pairs == result.pairs
    assert without.prompts == result.prompts and without.vector == result.vector


def test_probe_equals_a_direct_scikit_learn_pipeline():
    """The probe's accuracy and out-of-fold margins are those of scikit-learn's own pipeline
    (StandardScaler, LogisticRegression) fitted fold by fold on the same splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    labels = np.array([1] * 20 + [0] * 20)
    x = rng.normal(size=(40, 30)) + 0.4 * labels[:, None]
    groups = np.concatenate([np.arange(20), np.arange(20)])
    probe = probe_accuracy(x, labels, groups, folds=4, permutations=0)
    accuracies, margins = [], np.zeros(40)
    for train, test in cv_splits(labels, groups, 4):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[train], labels[train])
        margins[test] = model.decision_function(x[test])
        accuracies.append((model.predict(x[test]) == labels[test]).mean())
    assert probe.accuracy == pytest.approx(np.mean(accuracies)) and 0.5 < probe.accuracy < 1
    assert probe.margins == pytest.approx(margins.tolist(), abs=1e-9)


def test_unpaired_distance_is_the_mean_over_all_cross_pairs(family_model):
    sets = prompt_sets(A[:3], B, paired=False)
    ids_a, ids_b = encode_sets(family_model, sets)
    h_a, h_b = one_by_one(family_model, ids_a), one_by_one(family_model, ids_b)
    result = compare_sets(family_model, sets, **FAST)
    assert result.pairs == () and [r.side for r in result.prompts] == ["A"] * 3 + ["B"] * 4
    for stats in result.layers:
        a, b = h_a[:, stats.layer].double(), h_b[:, stats.layer].double()
        cos = [1 - float(x @ y / (x.norm() * y.norm())) for x in a for y in b]
        rel = [float((x - y).norm() / ((x.norm() + y.norm()) / 2)) for x in a for y in b]
        assert stats.cosine.mean == pytest.approx(np.mean(cos), abs=1e-4)
        assert stats.relative_l2.mean == pytest.approx(np.mean(rel), abs=1e-4)
    mean_difference = h_a[:, result.layer].mean(0) - h_b[:, result.layer].mean(0)
    close(torch.tensor(result.vector), mean_difference, h_a.abs().max())


def synthetic(n: int, d: int = 20, gap: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n pairs: a_i = c_i + gap·e_0, b_i = c_i − gap·e_0 with c_i ~ N(0, I): separable along e_0."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n, d))
    shift = np.zeros(d)
    shift[0] = gap
    return np.concatenate([centre + shift, centre - shift]), np.array([1] * n + [0] * n)


@pytest.mark.parametrize("paired", [True, False])
def test_probe_is_perfect_on_separable_data_and_chance_on_shuffled_labels(paired):
    x, labels = synthetic(60)
    groups = np.concatenate([np.arange(60), np.arange(60)]) if paired else None
    probe = probe_accuracy(x, labels, groups, folds=5, permutations=20)
    assert probe.accuracy == 1.0 and probe.accuracy_std == 0.0 and probe.folds == 5
    assert abs(probe.chance - 0.5) < 0.1
    assert all((m > 0) == (y == 1) for m, y in zip(probe.margins, labels, strict=True))


def test_probe_on_noise_is_near_chance():
    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(200, 10)), np.array([1] * 100 + [0] * 100)
    probe = probe_accuracy(x, labels, folds=5, permutations=5)
    assert abs(probe.accuracy - 0.5) < 0.12 and abs(probe.chance - 0.5) < 0.12


@pytest.mark.parametrize("pairs, folds, k", [(40, 5, 5), (3, 5, 3), (2, 5, 2)])
def test_folds_keep_pairs_together(pairs, folds, k):
    """Paired: both prompts of a pair sit in the same fold, every row is tested once, k = min(folds,
    pairs); unpaired: every fold holds both sets."""
    labels = np.array([1] * pairs + [0] * pairs)
    groups = np.concatenate([np.arange(pairs), np.arange(pairs)])
    splits = cv_splits(labels, groups, folds)
    assert len(splits) == k
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == list(range(2 * pairs))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    for train, test in cv_splits(labels, None, folds):
        assert set(labels[test]) == {0, 1} and set(labels[train]) == {0, 1}


def test_shipped_sets_are_fifty_distinct_pairs():
    for name in SHIPPED:
        sets = shipped_sets(name)
        assert sets.paired and len(sets.a) == len(sets.b) == 50 and sets.name == name
    with pytest.raises(SettingsError, match="no shipped set 'nope'"):
        shipped_sets("nope")


def test_bootstrap_intervals():
    values = np.random.default_rng(0).normal(1.0, 0.5, 400)
    wide, narrow = bootstrap_mean(values[:20], 500), bootstrap_mean(values, 500)
    assert wide.low < wide.mean < wide.high and narrow.low < 1.0 < narrow.high
    assert narrow.high - narrow.low < wide.high - wide.low
    flat = bootstrap_mean(np.full(10, 0.3), 100)
    assert (flat.mean, flat.low, flat.high) == pytest.approx((0.3, 0.3, 0.3))
    matrix = np.add.outer(np.random.default_rng(1).normal(size=30), np.random.default_rng(2).normal(size=40))
    cross = bootstrap_cross_mean(matrix, 500)
    assert cross.mean == pytest.approx(matrix.mean()) and cross.low < cross.mean < cross.high
    # the interval reflects the spread of both sets' means: ≈ ±1.96 √(1/30 + 1/40)
    assert 0.6 < (cross.high - cross.low) / (2 * 1.96 * (1 / 30 + 1 / 40) ** 0.5) < 1.4


def stats(layer: int, accuracy: float, cosine: float = 0.1) -> LayerStats:
    return LayerStats(layer, Interval(cosine, cosine - 0.01, cosine + 0.01), Interval(0.2, 0.1, 0.3),
                      Probe(accuracy, 0.03, 0.5, 0.02, 5), 1.0, 0.25)


def test_the_sentence_states_the_curves_numbers():
    rising = [stats(0, 0.5), stats(1, 0.7), stats(2, 0.95, 0.4), stats(3, 0.97)]
    text = read_curve(rising)
    assert "separable at layer 2 — accuracy 0.95 ± 0.03, chance 0.50 — and stay so" in text
    assert "farthest apart at layer 2: cosine distance 0.400 (95 % CI 0.390–0.410)" in text
    assert "0.25 of the residual's norm" in text
    assert "fall below 0.90 again at layer 3" in read_curve([*rising[:3], stats(3, 0.6)])
    dip = read_curve([*rising[:3], stats(3, 0.6), stats(4, 0.8), stats(5, 0.93)])
    assert "again at layer 3 (accuracy 0.60 ± 0.03, chance 0.50), separable for good from layer 5" in dip
    assert "never become linearly separable" in read_curve([stats(0, 0.5), stats(1, 0.72)])
    assert "best at layer 1 (accuracy 0.72" in read_curve([stats(0, 0.5), stats(1, 0.72)])


def test_paired_example_is_separable_on_separated_families(family_model):
    """Sets that differ in their last word are told apart at the embeddings (layer 0) already."""
    a = [f"the {w} is happy" for w in ("dog", "fox", "team", "shops", "milk", "bottle")]
    b = [f"the {w} is angry" for w in ("dog", "fox", "team", "shops", "milk", "bottle")]
    result = compare_sets(family_model, prompt_sets(a, b, paired=True), folds=3, permutations=2, bootstrap=50)
    assert result.layers[0].probe.accuracy == 1.0
    assert result.layers[0].cosine.low > 0


# ── bad input: one sentence naming the rows ──

def sets_of(case: SetsCase):
    """A case's sets as the library reads them (two lists, or one CSV table of pairs)."""
    if case.b is None:
        return prompt_sets(*read_table(case.a), paired=True)
    return prompt_sets(read_lines(case.a, "A"), read_lines(case.b, "B"), case.paired)


@pytest.mark.parametrize("case", SETS_CASES, ids=lambda c: c.name)
def test_the_bad_input_table(tiny_models, case):
    with pytest.raises(PromptError) as refused:
        compare_sets(tiny_models["llama"], sets_of(case), **FAST)
    message = str(refused.value)
    assert case.refused in message and "\n" not in message



def test_blank_lines_at_the_end_are_the_files_end():
    assert read_lines("one\ntwo\n\n \n") == ("one", "two")
    assert read_lines("one\r\ntwo\r\n") == ("one", "two")


@pytest.mark.parametrize("a, b, paired, phrase", [  # beyond the shared table (tests/bad_input_cases.py)
    (["x", "y"], [], False, "Set B has 0 prompts"),
    (["x", " "], ["p", "q"], True, "Set A has empty prompts at row 2"),
    (["x", "y"], ["p", "q\x00"], True, "Set B, row 2, contains a NUL"),
])
def test_bad_sets(a, b, paired, phrase):
    with pytest.raises(PromptError, match=phrase):
        prompt_sets(a, b, paired)


@pytest.mark.parametrize("data, kind, phrase", [
    ("x,y\n1,2\n", "csv", "columns 'a' and 'b'; its first row has x, y"),
    ("", "csv", "its first row has nothing"),
    ("a,b\nhello,there\nonly\n", "csv", "not text .* at row 2"),
    ('{"a": "x", "b": "y"}\n{"a": "x"}\n', "jsonl", "Row 2 of the JSONL file is not an object"),
    ('{"a": "x", "b": "y"}\nnot json\n', "jsonl", "Row 2 of the JSONL file is not JSON"),
    ('{"a": "x", "b": "y"}\n\n{"a": "z", "b": "w"}\n', "jsonl", "The JSONL file has empty lines at row 2"),
])
def test_bad_tables(data, kind, phrase):
    with pytest.raises(PromptError, match=phrase):
        read_table(data, kind)


def test_tables_read_columns_a_and_b():
    assert read_table("id,a,b\n1,x,\"y, z\"\n2,p,q\n") == (("x", "p"), ("y, z", "q"))
    assert read_table('{"a": "x", "b": "y"}\n{"b": "q", "a": "p"}\n', "jsonl") == (("x", "p"), ("y", "q"))


def test_a_position_some_prompts_lack_is_refused(tiny_models):
    loaded = tiny_models["llama"]
    with pytest.raises(SettingsError, match="Position 6 is outside some prompts"):
        compare_sets(loaded, prompt_sets(A, B, paired=True), position=6, **FAST)
    with pytest.raises(SettingsError, match="Layer 9 does not exist"):
        compare_sets(loaded, prompt_sets(A, B, paired=True), layer=9, **FAST)


def test_the_nnsight_backend_measures_the_same(family_model, tiny_folders):
    """The same sets through nnsight traces (local): the same states, statistics and answers."""
    from lib.core.models import load_model

    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight")
    sets = prompt_sets(A, B, paired=True)
    ours, theirs = (compare_sets(m, sets, layer=1, **FAST) for m in (family_model, twin))
    assert [r.answer_a for r in theirs.pairs] == [r.answer_a for r in ours.pairs]
    assert theirs.vector == pytest.approx(ours.vector, abs=1e-4)
    for mine, other in zip(ours.layers, theirs.layers, strict=True):
        assert other.cosine.mean == pytest.approx(mine.cosine.mean, abs=1e-5)
        assert other.probe.accuracy == mine.probe.accuracy
