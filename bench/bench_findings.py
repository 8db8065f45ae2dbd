"""The Findings page (issue 23) as a ratio measured in one run on the embedded model:

- findings_vs_compare_ratio: all six findings for a 5-token pair (France/Italy), from the two
  prompts' captures to the last finding, nothing cached (as `twinlens report` runs them: both
  answers written as rows of the flip's steered continuation) ÷ one comparison (`compare_prompts`)
  of the same pair. Target ≤ 30. The details give each step's own seconds, in the order they ran:
  "says" then holds the flip's search and the one continuation, "flip" nothing more.

    python bench/bench_findings.py      # prints JSON (this part alone)
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

from bench.harness import paired  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.app.findings import run_findings  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.models import load_model  # noqa: E402

TARGETS = {"findings_vs_compare_ratio": ("<=", 30.0)}
A, B = "The capital of France is", "The capital of Italy is"
RUNS = 2


def run() -> dict:
    model = load_model("default")
    steps: dict[str, float] = {}

    def findings() -> None:
        cap_a, cap_b = capture(model, A), capture(model, B)
        start = time.perf_counter()
        for finding in run_findings(model, model, cap_a, cap_b, lambda fn, *a, **k: fn(*a, **k)):
            now = time.perf_counter()
            steps[finding.step] = now - start
            start = now

    timing = paired(findings, lambda: compare_prompts(model, A, B), runs=RUNS)
    return {"findings_vs_compare_ratio": timing.ratio, "findings_s": timing.numerator_s,
            "compare_s": timing.denominator_s, "runs": timing.runs, "step_seconds": steps}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
