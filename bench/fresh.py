"""Work measured in a process of its own: `python -m bench.fresh TOOL [PROMPTS.json]`.

- `twinlens`, `transformerlens`: peak memory of one comparison. `twinlens` is
  `load_model("default")` + `compare_prompts`; `transformerlens` the bridge on the same folder +
  the lens of `bench.reference.transformerlens`. PROMPTS.json holds {"a": text, "b": text,
  "top_k": k}. Reports the peak RSS after loading and at the end.
- `rebuild`: `load_model("default")` when no LoadedModel is alive to be reused (the previous one
  dropped), against `safetensors.torch.load_file` of the same weights.

Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

from bench.harness import peak_rss_gb


def _twinlens(prompts: dict) -> tuple[float, int]:
    from lib.analyses.compare import compare_prompts
    from lib.core.models import load_model

    model = load_model("default")
    loaded = peak_rss_gb()
    compare_prompts(model, prompts["a"], prompts["b"], top_k=prompts["top_k"])
    return loaded, model.forward_passes


def _transformerlens(prompts: dict) -> tuple[float, int]:
    from bench.reference import boot_transformerlens, transformerlens
    from lib.core.models import ensure_default_model

    bridge = boot_transformerlens(ensure_default_model())
    loaded = peak_rss_gb()
    ids = [bridge.tokenizer(prompts[s])["input_ids"] for s in ("a", "b")]
    transformerlens(bridge, *ids, prompts["top_k"])()
    return loaded, 2


def _rebuild() -> dict:
    from bench.harness import paired
    from bench.reference import raw_safetensors
    from lib.core.models import ensure_default_model, load_model

    def load_and_drop() -> None:
        load_model("default")
        gc.collect()

    return {"tool": "rebuild", **paired(load_and_drop, raw_safetensors(ensure_default_model())).to_dict()}


TOOLS = {"twinlens": _twinlens, "transformerlens": _transformerlens}


def main(tool: str, prompts_file: str = "") -> None:
    if tool == "rebuild":
        print(json.dumps(_rebuild()))
        return
    prompts = json.loads(Path(prompts_file).read_text())
    start = time.perf_counter()
    after_load, passes = TOOLS[tool](prompts)
    print(json.dumps({
        "tool": tool,
        "peak_rss_after_load_gb": after_load,
        "peak_rss_gb": peak_rss_gb(),
        "forward_passes": passes,
        "seconds": time.perf_counter() - start,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
