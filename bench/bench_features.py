"""The Features page's cost (issue 13): what encoding both prompts with an SAE adds to a comparison,
and the training speed recorded on the shipped SAEs' cards.

    features_overhead_ratio = (captures + compare + features) / (captures + compare)
      on the France/Italy pair with the shipped SAE at residual 15, timed over fresh captures
    sae_collect_tokens_per_s, sae_train_tokens_per_s_per_layer: the latest collection and training
      run recorded on the shipped SAEs' cards (`make sae`; the card trained for the most steps)

    python bench/bench_features.py          # prints JSON
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from lib.analyses.common.sae import feature_book, load_sae, read_card, shipped_saes  # noqa: E402
from lib.analyses.compare import compare_captures  # noqa: E402
from lib.analyses.features import compare_features  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.models import load_model  # noqa: E402

A, B = "The capital of France is", "The capital of Italy is"


def run(repeats: int = 7) -> dict:
    model = load_model("default")
    shipped = shipped_saes(model)
    if not shipped:
        return {"note": "no shipped SAEs"}
    residual = 15 if 15 in shipped else next(iter(shipped))
    sae, book = load_sae(shipped[residual]), feature_book(str(shipped[residual]))
    base, extra = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a, b = capture(model, A), capture(model, B)
        compare_captures(model, a, b, top_k=5)
        middle = time.perf_counter()
        compare_features(sae, a, b, top=10, book=book)
        end = time.perf_counter()
        base.append(middle - start)
        extra.append(end - middle)
    cards = [read_card(folder) or {} for folder in shipped.values()]
    latest = max(cards, key=lambda c: c.get("steps", 0))
    return {
        "features_overhead_ratio": round(1 + statistics.median(extra) / statistics.median(base), 3),
        "features_seconds": round(statistics.median(extra), 4),
        "comparison_seconds": round(statistics.median(base), 4),
        "sae_collect_tokens_per_s": latest.get("collect_tokens_per_s"),
        "sae_train_tokens_per_s_per_layer": latest.get("train_tokens_per_s_per_layer"),
        "sae_fvu_heldout": {c["residual"]: c["fvu_heldout"] for c in cards if c},
        "sae_dead_share": {c["residual"]: c["dead_share"] for c in cards if c},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
