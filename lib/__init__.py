"""twinlens: where, inside a language model, two prompts part ways.

Layers, each importing only from those below it (tests/unit/test_layers.py checks it):

    core       models (load) · loaded (a loaded model) · architecture (parts) · sites (named places)
               · backend (the seam) · hooks (the local backend) · nnsight_backend · decoding
               · capture · chat · tokens · errors · checks · records
    analyses/common   what several analyses share: lens · lenses (logit, tuned, Jacobian) · distances
               · sae · corpus · mix (kinds of text for training) · comparison · metric · rows (the
               staged patched-rows engine) · pieces · decode · vector
    analyses   compare · model_compare · diff · watch · bos · patching · components · circuit
               · features · generation · steering · sets · sae_training · lens_training (each
               imports core and common only)
    app        registry (the table of analyses) · cli · commands · request · cache · session · ui
               · views · charts · compare_frames · readable · history · export · examples · access
               · ndif · feature_steering · paths · circuit_view · sets_view · answers · glossary · findings
               · findings_app · report · features_app · steering_app · lens_choice · words
               · diff_view · distances_view · tokens_view · watch_view · lens_view · patching_view
               · components_view
               · serve

Installed with `pip install -e .` the package is `twinlens` (and the `twinlens` command); in a
checkout the same files run as `lib` (`python -m lib`). Only `lib.app` and the pages import Streamlit.

For example, `twinlens.compare_prompts(twinlens.load_model(), "I love it", "I hate it")` returns a
`Comparison` of the two prompts in the embedded model.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_API = {
    "load_model": "core.models",
    "capture": "core.capture",
    "Site": "core.sites",
    "Intervention": "core.backend",
    "compare_prompts": "analyses.compare",
    "patch_residual": "analyses.patching",
    "top_token_diff": "analyses.diff",
    "watch_tokens": "analyses.watch",
    "Chat": "core.chat",
    "continue_prompt": "analyses.generation",
    "steer_captures": "analyses.steering",
}


def __getattr__(name: str) -> object:
    """The main entry points, imported on first use (importing the package loads no torch)."""
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)


__all__ = sorted(_API)
