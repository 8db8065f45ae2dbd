"""Measuring tools for the benchmarks: paired medians, peak memory in a fresh process, the machine.

Every figure of `bench/run.py` is a ratio of two timings taken in the same process run. The two
sides are run back to back (A B, B A, A B, …) after one warm-up each, and the figure is the median
of the per-pair ratios, so a slow spell of the shared machine hits both sides of a pair alike.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5  # timed runs per side, after one warm-up


@dataclass(frozen=True)
class Paired:
    """Two workloads timed in turns: the median seconds of each, and their ratio.

    ratio = median over runs i of numerator_i / denominator_i, each pair timed back to back, so a
    slow spell of the shared machine that hits one pair does not move the figure.
    """

    numerator_s: float
    denominator_s: float
    ratio: float
    runs: int

    def to_dict(self) -> dict:
        return {
            "numerator_s": self.numerator_s,
            "denominator_s": self.denominator_s,
            "ratio": self.ratio,
            "runs": self.runs,
        }


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(numerator: Callable[[], object], denominator: Callable[[], object], runs: int = RUNS) -> Paired:
    """Warm both up once, then time them back to back `runs` times (which goes first alternates)."""
    numerator()
    denominator()
    top: list[float] = []
    bottom: list[float] = []
    for i in range(runs):
        if i % 2:
            bottom.append(_seconds(denominator))
            top.append(_seconds(numerator))
        else:
            top.append(_seconds(numerator))
            bottom.append(_seconds(denominator))
    ratios = [t / b for t, b in zip(top, bottom, strict=True)]
    return Paired(statistics.median(top), statistics.median(bottom), statistics.median(ratios), runs)


def peak_rss_gb() -> float:
    """This process's peak resident set size so far, in GB.

    Read from /proc/self/status (VmHWM, kB), which starts afresh at exec. `ru_maxrss` does not: a
    child started by a large parent reports at least the parent's size at the fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def in_fresh_process(module: str, *args: str, timeout: float = 900) -> dict:
    """Run `python -m module args…` in a new interpreter and return the JSON it prints last.

    Peak memory has to be read in a process of its own: ru_maxrss never goes down, so two
    workloads measured in one process would report the larger of the two for both.
    """
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env = {**os.environ, **offline}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": _ram_gb(),
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            **{p: _version(p) for p in ("torch", "transformers", "transformer-lens", "streamlit")},
        },
    }
