"""Two sets of prompts (issue 26), as ratios measured in one run on the embedded model:

- sets_batched_vs_single_comparisons_ratio: the model's work for 200 pairs of ~12 tokens without
  the lens over the sets (`run_sets(lens=False)`: batched, right-padded passes keeping one position
  per layer, and each prompt's answer through the unembedding at layer L) ÷ 200 single comparisons
  run one by one (`compare_prompts`, which runs the two prompts and reads the lens and distances at
  the last position). Target ≤ 0.3.
- sets_lens_vs_single_comparisons_ratio: what the lens over the sets (an option, on by default
  on the page and in the CLI) adds, ÷ the same 200 single comparisons. It reads every layer of
  every prompt through the unembedding ([400·31, 576] × [576, 49,152] in float32: 702 GFLOP, 0.77×
  the passes' 913, and as many as the 200 comparisons' own lens columns), so batching cannot make
  it much cheaper; reported apart.
- sets_with_lens_vs_single_comparisons_ratio: the two together (`run_sets`, the default). 0.40 on
  the one-thread AMD EPYC measured (was 0.43 before the in-place softmax), and 0.3 is not reachable
  there without approximating the lens: the unembedding alone is 0.15–0.16× (next figure), the
  passes alone 0.22×, both float32 matrix products at ~75 GFLOP/s (913 + 702 GFLOP ≈ 22 s against
  ~60 s for the singles, whose 0.3× is ~18 s; they do the same lens product); what the lens does
  after the product (softmax, sums, top-1) is ~1–2 s of ~11.
- sets_lens_unembedding_vs_single_comparisons_ratio: `lens_logits` alone over the same 12,400
  residual rows (the lens's floor in float32), ÷ the 200 single comparisons.
- …_cpu_ratio: the same ratios in CPU time of this process (`time.process_time`), steadier than
  the wall clock on a shared machine; run single-threaded (OMP_NUM_THREADS=1) they are the same
  figure on an idle one.
- sets_batched_vs_one_by_one_ratio: `run_sets(lens=False)` in batches of 16 ÷ one prompt a pass.
- sets_statistics_s: the statistics of those 200 pairs after the passes (bootstrap intervals,
  cross-validated probes and their chance over every layer), in seconds — CPU work the passes
  do not include, reported so the whole cost is visible.
- sets_1000_peak_rss_gb: peak memory of a fresh process comparing two sets of 1,000 prompts
  (`measure_sets`, folds=2, 1 shuffle, 100 resamples). Target ≤ 3.0.

Ratios are medians over runs of per-run ratios; in each run the workloads go back to back, in an
order that rotates from run to run, all after one warm-up each (`turns`).

    python -m bench.bench_sets [--runs N] [--pairs N] [--no-memory]   # prints JSON (this part alone)
    python -m bench.bench_sets memory 1000                 # one fresh-process memory figure
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.harness import in_fresh_process, peak_rss_gb  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.analyses.sets import LENS_ROWS, encode_sets, measure_sets, prompt_sets, run_sets  # noqa: E402
from lib.core.models import load_model  # noqa: E402

TARGETS = {"sets_batched_vs_single_comparisons_ratio": ("<=", 0.3), "sets_1000_peak_rss_gb": ("<=", 3.0)}
PAIRS = 200
NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo",
         "Maria", "Noah", "Olivia", "Paul", "Rosa", "Sam", "Tara", "Victor", "Wendy", "Yusuf", "Zoe", "Omar")
THINGS = ("letter", "parcel", "train", "report", "invitation", "bill", "news", "package", "email", "result",
          "delivery", "verdict")
WORDS = (("happy", "angry"), ("delighted", "furious"), ("glad", "annoyed"))


def contrast_pairs(n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """n distinct pairs of ~12 tokens that differ in one emotion word."""
    rows = [(name, thing, WORDS[i % len(WORDS)]) for i, (name, thing) in
            enumerate((name, thing) for thing in THINGS for name in NAMES)][:n]
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} pairs can be made")
    a = tuple(f"{name} felt {w[0]} when the {thing} arrived this morning." for name, thing, w in rows)
    b = tuple(f"{name} felt {w[1]} when the {thing} arrived this morning." for name, thing, w in rows)
    return a, b


def memory(n: int) -> dict:
    """In a fresh process: peak RSS of `measure_sets` on two sets of n prompts each."""
    model = load_model("default")
    loaded = peak_rss_gb()
    a, b = many_pairs(n)
    start = time.perf_counter()
    measure_sets(model, prompt_sets(a, b, paired=True), folds=2, permutations=1, bootstrap=100)
    return {"prompts_a_side": n, "peak_rss_gb_after_load": round(loaded, 3),
            "peak_rss_gb": round(peak_rss_gb(), 3), "seconds": round(time.perf_counter() - start, 1)}


def many_pairs(n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Any number of distinct pairs (numbered notes), for the memory figure."""
    def note(i: int, word: str) -> str:
        return f"Note {i}: {NAMES[i % len(NAMES)]} felt {word} about the {THINGS[i % len(THINGS)]}."

    return tuple(note(i, "happy") for i in range(n)), tuple(note(i, "angry") for i in range(n))


Seconds = dict[str, list[float]]


def turns(workloads: dict[str, Callable[[], object]], runs: int) -> tuple[Seconds, Seconds]:
    """Seconds of each workload in each of `runs` runs, after one warm-up each, by the wall clock and
    in CPU time of this process (`time.process_time`); within a run they go back to back, starting
    one later each run (A B C, B C A, C A B, …)."""
    for fn in workloads.values():
        fn()
    names = list(workloads)
    wall: Seconds = {name: [] for name in names}
    cpu: Seconds = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            workloads[name]()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


def unembedding(model, states: torch.Tensor) -> None:
    """The lens's matrix product alone: `lens_logits` (final norm and [rows, d] × [d, vocab] in
    float32) over every layer's residual of every prompt, LENS_ROWS rows at a time, nothing after."""
    flat = states.reshape(-1, states.shape[-1])
    for i in range(0, len(flat), LENS_ROWS):
        model.backend.lens_logits(flat[i : i + LENS_ROWS])


def flops(model, lengths: list[int]) -> dict[str, float]:
    """GFLOP of the work (2 per multiply-add): the passes' matrix products, 2 × the blocks'
    parameters per token (attention scores over ~12 tokens left out), and the lens's unembedding,
    2 × d × vocab per residual row, (L+1) rows per prompt."""
    block = sum(p.numel() for b in model.architecture.blocks for p in b.parameters())
    rows = len(lengths) * (model.n_layers + 1)
    return {"passes": round(2 * block * sum(lengths) / 1e9, 1),
            "lens": round(2 * model.d_model * model.vocab_size * rows / 1e9, 1)}


def run(runs: int = 3, with_memory: bool = True, pairs: int = PAIRS) -> dict:
    model = load_model("default")
    a, b = contrast_pairs(pairs)
    sets = prompt_sets(a, b, paired=True)
    ids_a, ids_b = encode_sets(model, sets)
    lengths = [len(i) for i in (*ids_a, *ids_b)]
    states = run_sets(model, ids_a, ids_b, lens=False)[0]
    seconds, cpu = turns({
        "batched": lambda: run_sets(model, ids_a, ids_b, lens=False),
        "with_lens": lambda: run_sets(model, ids_a, ids_b),
        "unembedding": lambda: unembedding(model, states),
        "one_by_one": lambda: run_sets(model, ids_a, ids_b, batch_size=1, lens=False),
        "singles": lambda: [compare_prompts(model, x, y) for x, y in zip(a, b, strict=True)],
    }, runs)

    def ratio(top: Callable[[int], float], bottom: str, times: Seconds = seconds) -> float:
        return round(statistics.median(top(i) / times[bottom][i] for i in range(runs)), 3)

    start = time.perf_counter()
    measures = measure_sets(model, sets)
    whole = time.perf_counter() - start
    found = {
        "sets_batched_vs_single_comparisons_ratio": ratio(lambda i: seconds["batched"][i], "singles"),
        "sets_lens_vs_single_comparisons_ratio":
            ratio(lambda i: seconds["with_lens"][i] - seconds["batched"][i], "singles"),
        "sets_with_lens_vs_single_comparisons_ratio": ratio(lambda i: seconds["with_lens"][i], "singles"),
        "sets_batched_vs_one_by_one_ratio": ratio(lambda i: seconds["batched"][i], "one_by_one"),
        "sets_lens_unembedding_vs_single_comparisons_ratio":
            ratio(lambda i: seconds["unembedding"][i], "singles"),
        "sets_batched_vs_single_comparisons_cpu_ratio": ratio(lambda i: cpu["batched"][i], "singles", cpu),
        "sets_lens_vs_single_comparisons_cpu_ratio":
            ratio(lambda i: cpu["with_lens"][i] - cpu["batched"][i], "singles", cpu),
        "sets_with_lens_vs_single_comparisons_cpu_ratio":
            ratio(lambda i: cpu["with_lens"][i], "singles", cpu),
        "sets_lens_unembedding_vs_single_comparisons_cpu_ratio":
            ratio(lambda i: cpu["unembedding"][i], "singles", cpu),
        "sets_statistics_s": round(whole - statistics.median(seconds["with_lens"]), 1),
        "seconds": {name: [round(t, 2) for t in times] for name, times in seconds.items()},
        "cpu_seconds": {name: [round(t, 2) for t in times] for name, times in cpu.items()},
        "threads": torch.get_num_threads(),
        "measure_sets_s": round(whole, 1),
        "pairs": pairs,
        "gflop": flops(model, lengths),
        "tokens_per_prompt": {"min": min(lengths), "max": max(lengths),
                              "mean": round(sum(lengths) / len(lengths), 1)},
        "summary": measures.at().summary,
    }
    if with_memory:
        found.update(sets_1000=in_fresh_process("bench.bench_sets", "memory", "1000", timeout=1800))
        found["sets_1000_peak_rss_gb"] = found["sets_1000"]["peak_rss_gb"]
    return found


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        print(json.dumps(memory(int(sys.argv[2]))))
    else:
        runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
        pairs = int(sys.argv[sys.argv.index("--pairs") + 1]) if "--pairs" in sys.argv else PAIRS
        print(json.dumps(run(runs, with_memory="--no-memory" not in sys.argv, pairs=pairs), indent=1))
