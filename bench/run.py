"""`make bench`: how close twinlens is to the floor, and how far ahead of TransformerLens.

Writes bench/results.json and BENCHMARKS.md. Every figure is a ratio (or a count, or a peak
memory) measured in this one run, on the embedded model, so the machine's speed cancels out:

- p1_overhead_ratio: `compare_prompts` on two ~12-token prompts ÷ the bare transformers work it
  needs (two forward passes with hidden states + the same lens cells by hand).
- p2_vs_transformerlens_ratio_{12,256}: the same comparison ÷ TransformerLens 4 (run_with_cache +
  accumulated_resid(apply_ln=True) + unembed + top-k, both prompts); peak memory of each at 1,024
  tokens, each in a fresh process.
- p3_warm_start_ratio: a second `load_model("default")` ÷ `safetensors.torch.load_file` of the
  same weights.
- p4_long_first_view_ratio: two 2,048-token prompts, until the Compare page's data is ready ÷ one
  forward pass of one prompt; p4_peak_rss_gb: peak RSS of a fresh process doing that comparison.
- p5_forward_passes_on_view_change: forward passes while only display controls change after a
  comparison (the app driven with streamlit's AppTest).
- p15_nnsight_compare_ratio, p15_nnsight_patch_ratio: the nnsight backend run locally ÷ the hooks
  backend, for the comparison and the France/Italy patching grid (bench/bench_nnsight.py).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens draws progress bars

from bench import reference  # noqa: E402
from bench.harness import RUNS, in_fresh_process, machine, paired  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.core.models import LoadedModel, ensure_default_model, load_model  # noqa: E402

TOP_K = 10
RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "BENCHMARKS.md"
TARGETS = {  # figure → (comparison, bound)
    "p1_overhead_ratio": ("<=", 1.15),
    "p2_vs_transformerlens_ratio_12": ("<=", 0.5),
    "p2_vs_transformerlens_ratio_256": ("<=", 0.5),
    "p3_warm_start_ratio": ("<=", 2.0),
    "p4_long_first_view_ratio": ("<=", 3.0),
    "p4_peak_rss_gb": ("<=", 3.0),
    "p5_forward_passes_on_view_change": ("==", 0),
    "p15_nnsight_compare_ratio": ("<=", 1.25),
    "p15_nnsight_patch_ratio": ("<=", 1.25),
    "features_overhead_ratio": ("<=", 1.10),
}


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _compare(model: LoadedModel, a: str, b: str) -> Callable[[], object]:
    return lambda: compare_prompts(model, a, b, top_k=TOP_K)


def _tokens(model: LoadedModel, *texts: str) -> list[int]:
    return [reference.n_tokens(model, t) for t in texts]


def _peak_memory(tool: str, a: str, b: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"a": a, "b": b, "top_k": TOP_K}, f)
    try:
        return in_fresh_process("bench.fresh", tool, f.name)
    finally:
        os.unlink(f.name)


def p1_overhead(model: LoadedModel) -> dict:
    a, b = reference.prompt_pair(model, 12)
    timing = paired(_compare(model, a, b), reference.bare_transformers(model, a, b, TOP_K), runs=9)
    return {
        "figures": {"p1_overhead_ratio": timing.ratio},
        "details": {"tokens": _tokens(model, a, b), **timing.to_dict()},
    }


def p2_vs_transformerlens(model: LoadedModel) -> dict:
    bridge = reference.boot_transformerlens(ensure_default_model())
    figures: dict = {}
    details: dict = {}
    for n in (12, 256):
        a, b = reference.prompt_pair(model, n)
        ids = [model.tokenizer(t)["input_ids"] for t in (a, b)]
        ours = _compare(model, a, b)
        full = paired(ours, reference.transformerlens(bridge, *ids, TOP_K))
        last = paired(ours, reference.transformerlens(bridge, *ids, TOP_K, last_position_only=True), runs=3)
        figures[f"p2_vs_transformerlens_ratio_{n}"] = full.ratio
        details[f"tokens_{n}"] = [len(i) for i in ids]
        details[f"all_positions_{n}"] = full.to_dict()
        details[f"last_position_only_{n}"] = last.to_dict()
        _log(f"p2 at {n} tokens: {full.ratio:.3f} (TransformerLens, last position only: {last.ratio:.3f})")
    del bridge
    gc.collect()
    a, b = reference.prompt_pair(model, 1024)
    twinlens = _peak_memory("twinlens", a, b)
    tl = _peak_memory("transformerlens", a, b)
    figures["p2_peak_rss_gb_1024_twinlens"] = twinlens["peak_rss_gb"]
    figures["p2_peak_rss_gb_1024_transformerlens"] = tl["peak_rss_gb"]
    details["memory_1024"] = {"tokens": _tokens(model, a, b), "twinlens": twinlens, "transformerlens": tl}
    return {"figures": figures, "details": details}


def p3_warm_start(model: LoadedModel) -> dict:
    load_model("default")  # the first load in this process (the model is already held)
    timing = paired(lambda: load_model("default"), reference.raw_safetensors(ensure_default_model()))
    rebuild = in_fresh_process("bench.fresh", "rebuild")
    return {
        "figures": {"p3_warm_start_ratio": timing.ratio, "p3_rebuild_ratio": rebuild["ratio"]},
        "details": {**timing.to_dict(), "rebuild": rebuild},
    }


def p4_long_first_view(model: LoadedModel) -> dict:
    a, b = reference.prompt_pair(model, 2048)
    timing = paired(_compare(model, a, b), reference.forward_pass(model, a))
    memory = _peak_memory("twinlens", a, b)
    return {
        "figures": {"p4_long_first_view_ratio": timing.ratio, "p4_peak_rss_gb": memory["peak_rss_gb"]},
        "details": {"tokens": _tokens(model, a, b), **timing.to_dict(), "memory": memory},
    }


def p5_view_change(model: LoadedModel) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from app_helpers import submit
    from view_driver import dashboard_app, first_views, look_around

    from lib.app import ui
    from lib.app.cache import ModelKey

    at = dashboard_app()
    start = model.forward_passes
    submit(at, a="The capital of France is", b="The capital of Italy is")
    first_views(at)  # Findings and Features run their analyses on their first view, by design
    served = ui.get_model(ModelKey())  # `model` itself, while the bench holds it
    before = served.forward_passes
    done = look_around(at)
    submit(at, k=TOP_K + 5)  # top-k is a display setting: the prompts are unchanged
    done["controls_moved"].append("sidebar: top-k")
    return {
        "figures": {"p5_forward_passes_on_view_change": served.forward_passes - before},
        "details": {"forward_passes_for_the_comparison": before - start if served is model else None, **done},
    }


def patching() -> dict | None:
    """The patching helper's own figures (bench/bench_patching.py), when that file exists."""
    if not (ROOT / "bench" / "bench_patching.py").exists():
        return None
    from bench import bench_patching

    TARGETS.update(bench_patching.TARGETS)
    found = bench_patching.run()
    return {"figures": {k: v for k, v in found.items() if isinstance(v, int | float)}, "details": found}


def components() -> dict:
    """The components figures (bench/bench_components.py): DLA, attribution patching, head grid."""
    from bench import bench_components

    TARGETS.update(bench_components.TARGETS)
    found = bench_components.run()
    return {"figures": {k: v for k, v in found.items() if isinstance(v, int | float)}, "details": found}
def steering() -> dict | None:
    """Continuations and steering (bench/bench_steering.py): generate vs transformers, sweep vs one by one."""
    if not (ROOT / "bench" / "bench_steering.py").exists():
        return None
    from bench import bench_steering

    TARGETS.update(bench_steering.TARGETS)
    found = bench_steering.run()
    return {"figures": {k: v for k, v in found.items() if k in bench_steering.TARGETS}, "details": found}


def _met(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    op, bound = TARGETS[name]
    ok = value <= bound if op == "<=" else value == bound
    return "yes" if ok else "**no**"


def _target(name: str) -> str:
    if name not in TARGETS:
        return "—"
    op, bound = TARGETS[name]
    return f"{'≤' if op == '<=' else '='} {bound:g}"


def report(results: dict) -> str:
    """BENCHMARKS.md: the machine, the figures against their targets, and how each was measured."""
    m = results["machine"]
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/run.py) — do not edit by hand. Raw numbers: bench/results.json.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
        f"{m['ram_gb']} GB RAM, {m['platform']}.  ",
        f"Versions: Python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, "
        f"transformer-lens {v['transformer-lens']}, streamlit {v['streamlit']}.  ",
        f"Model: {results['model']['name']} ({results['model']['device']}, "
        f"{results['model']['dtype']}). Run on {results['date']}, {results['seconds']:.0f} s in all.",
        "",
        f"Timings are medians of {RUNS} runs or more after one warm-up (fewer only for figures "
        "without a target; the runs column says). The two sides of a ratio run back to back in the "
        "same process, and the ratio is the median of the per-pair ratios. Peak memory is the peak "
        "RSS (VmHWM) of a fresh process.",
        "",
        "| figure | value | target | met |",
        "| --- | ---: | ---: | :---: |",
    ]
    for name, value in results["figures"].items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| `{name}` | {shown} | {_target(name)} | {_met(name, value)} |")
    lines += ["", "## The timings behind the ratios (median seconds)", "",
              "| measurement | twinlens | reference | ratio | runs |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [
        f"| {path} | {t['numerator_s']:.4f} | {t['denominator_s']:.4f} | {t['ratio']:.3f} | {t['runs']} |"
        for path, t in _timings(results["details"])
    ]
    lines += ["", "## How each figure is measured", "", __doc__.split("\n\n", 1)[1].strip(), ""]
    lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _timings(details: dict, path: str = "") -> list[tuple[str, dict]]:
    """Every paired timing inside `details`, with where it sits (e.g. 'p2 all_positions_256')."""
    own = [(path, details)] if "numerator_s" in details else []
    return own + [
        found
        for key, value in details.items()
        if isinstance(value, dict)
        for found in _timings(value, f"{path} {key}".strip())
    ]


NOTES = [
    "p1's reference passes `logits_to_keep=1` and decodes the top-k ids with "
    "`convert_ids_to_tokens`; twinlens also decodes them into readable text.",
    "p2: TransformerLens boots with eager attention (its default, so hooks see the patterns) and "
    "computes the lens at every position, as `accumulated_resid` does; details.p2 also gives the "
    "ratio when it is asked for the last position only (`pos_slice=-1`). Its softmax is done in "
    "place, which favours it in memory.",
    "p3: a second `load_model` while the first LoadedModel is alive returns it (same weights, same "
    "lock): a look at the files' sizes and dates against `safetensors.torch.load_file`, which maps "
    "the file lazily. `p3_rebuild_ratio` (no target) is a load after the first one was dropped, in a "
    "fresh process after one warm-up: from_pretrained, parsing the tokenizer and the load-time lens "
    "check (one short forward pass) against the same `load_file`.",
    "p4: the Compare page's data is what `lib.app.ui` computes for it: two captures and "
    "`compare_captures`; the reference forward pass keeps the logits of the last position only.",
    "patching_resume_ratio / components_resume_ratio: the grid with each patched row starting at its "
    "own block from B's residual (passes whose batch grows with depth; boundaries by a cost model, "
    "lib.analyses.common.rows.stage_starts) ÷ every row from block 0 (`resume=False`, the work of the "
    "code before: one pass from layer 0 per chunk). On a 2-core machine shared with other jobs, "
    "two torch threads wait on each other at every small op, which favours fewer, larger passes: "
    "the ratio is lower with one thread or an idle machine.",
]


def main(only: list[str]) -> int:
    """Run every figure and write the files; `python -m bench.run p1 p3` runs some and writes nothing."""
    start = time.perf_counter()
    model = load_model("default")
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "model": model.info(),
        "figures": {},
        "details": {},
        "notes": NOTES,
    }
    steps = [("p1", p1_overhead), ("p2", p2_vs_transformerlens), ("p3", p3_warm_start),
             ("p4", p4_long_first_view), ("p5", p5_view_change)]
    for name, step in steps:
        if only and name not in only:
            continue
        _log(f"{name}…")
        found = step(model)
        results["figures"].update(found["figures"])
        results["details"][name] = found["details"]
        _log(f"{name}: {found['figures']}")
    if only:
        return 0
    found = patching()
    if found is not None:
        results["figures"].update(found["figures"])
        results["details"]["patching"] = found["details"]
    from bench import bench_nnsight  # issue 15: the nnsight backend locally ÷ the hooks backend

    found = bench_nnsight.run()
    results["figures"].update({k: v for k, v in found.items() if k.startswith("p15_")})
    results["details"]["nnsight"] = found
    # issue 13: the Features page and SAE training
    from bench import bench_features

    found = bench_features.run()
    results["figures"].update({k: v for k, v in found.items() if isinstance(v, int | float)})
    results["details"]["features"] = found
    found = components()
    results["figures"].update(found["figures"])
    results["details"]["components"] = found["details"]
    # issue 27: edge attribution, circuits
    from bench import bench_circuit

    TARGETS.update(bench_circuit.TARGETS)
    found = bench_circuit.run()
    results["figures"].update({k: v for k, v in found.items() if isinstance(v, int | float)})
    results["details"]["circuit"] = found["details_circuit"]
    found = steering()
    if found is not None:
        results["figures"].update(found["figures"])
        results["details"]["steering"] = found["details"]
    # issue 26: two sets of prompts, batched
    from bench import bench_sets

    TARGETS.update(bench_sets.TARGETS)
    found = bench_sets.run()
    results["figures"].update({k: v for k, v in found.items() if k.startswith("sets_") and
                               isinstance(v, int | float)})
    results["details"]["sets"] = found

    # issue 23: the whole Findings page
    from bench import bench_findings

    TARGETS.update(bench_findings.TARGETS)
    found = bench_findings.run()
    results["figures"]["findings_vs_compare_ratio"] = found["findings_vs_compare_ratio"]
    results["details"]["findings"] = found

    from bench import bench_lenses  # issue 25: the Jacobian lens against TransformerLens 4, a lens's cost

    TARGETS.update(bench_lenses.TARGETS)
    found = bench_lenses.run()
    results["figures"].update({k: v for k, v in found.items() if isinstance(v, int | float)})
    results["details"]["lenses"] = found["details"]
    results["seconds"] = time.perf_counter() - start
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    REPORT.write_text(report(results))
    _log(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
