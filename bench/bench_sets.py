"""Two sets of prompts (issue 26), as ratios measured in one run on the embedded model:

- sets_batched_vs_single_comparisons_ratio: the model's work for 200 pairs of ~12 tokens
  (`run_sets`: batched, right-padded passes keeping one position per layer, plus the lens sums
  over each set) ÷ 200 single comparisons run one by one (`compare_prompts`, which runs the two
  prompts and reads the lens and distances at the last position). Target ≤ 0.3.
- sets_batched_vs_one_by_one_ratio: the same `run_sets` in batches of 16 ÷ one prompt a pass.
- sets_passes_vs_single_comparisons_ratio: the batched passes alone (`last_states`, without the
  lens over the sets) ÷ the 200 single comparisons: the lens reads every layer of every prompt
  through the unembedding, the same lens work a single comparison does, so it bounds the first
  ratio from below.
- sets_statistics_s: the statistics of those 200 pairs after the passes (bootstrap intervals,
  cross-validated probes and their chance over every layer), in seconds — CPU work the passes
  do not include, reported so the whole cost is visible.
- sets_1000_peak_rss_gb: peak memory of a fresh process comparing two sets of 1,000 prompts
  (`measure_sets`, folds=2, 1 shuffle, 100 resamples). Target ≤ 3.0.

Ratios are medians of back-to-back pairs (bench.harness.paired), both sides after a warm-up.

    python -m bench.bench_sets [--runs N] [--no-memory]   # prints JSON (this part alone)
    python -m bench.bench_sets memory 1000                 # one fresh-process memory figure
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.harness import in_fresh_process, paired, peak_rss_gb  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.analyses.sets import encode_sets, last_states, measure_sets, prompt_sets, run_sets  # noqa: E402
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


def run(runs: int = 3, with_memory: bool = True) -> dict:
    model = load_model("default")
    a, b = contrast_pairs(PAIRS)
    sets = prompt_sets(a, b, paired=True)
    ids_a, ids_b = encode_sets(model, sets)
    lengths = [len(i) for i in (*ids_a, *ids_b)]

    def batched():
        return run_sets(model, ids_a, ids_b)

    def one_by_one():
        return run_sets(model, ids_a, ids_b, batch_size=1)

    def singles():
        return [compare_prompts(model, x, y) for x, y in zip(a, b, strict=True)]

    versus_singles = paired(batched, singles, runs)
    passes_only = paired(lambda: last_states(model, [*ids_a, *ids_b]), singles, runs)
    versus_one = paired(batched, one_by_one, runs)
    start = time.perf_counter()
    measures = measure_sets(model, sets)
    whole = time.perf_counter() - start
    found = {
        "sets_batched_vs_single_comparisons_ratio": round(versus_singles.ratio, 3),
        "sets_batched_vs_one_by_one_ratio": round(versus_one.ratio, 3),
        "sets_passes_vs_single_comparisons_ratio": round(passes_only.ratio, 3),
        "sets_statistics_s": round(whole - versus_singles.numerator_s, 1),
        "versus_single_comparisons": versus_singles.to_dict(),
        "versus_one_by_one": versus_one.to_dict(),
        "passes_versus_single_comparisons": passes_only.to_dict(),
        "measure_sets_s": round(whole, 1),
        "pairs": PAIRS,
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
        print(json.dumps(run(runs, with_memory="--no-memory" not in sys.argv), indent=1))
