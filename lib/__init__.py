"""twinlens: where, inside a language model, two prompts part ways.

Three layers, each importing only from those below it (tests/unit/test_layers.py):

    core       models (load) · architecture (parts) · sites (named places) · backend (the seam)
               · hooks (the local backend) · capture · chat · tokens · errors · checks
    analyses   compare · lens · distances · diff · watch · bos · patching · model_compare
               · generation · steering
    app        request · cache · charts · history · export · examples · cli · ui (Streamlit)

Installed with `pip install -e .` the package is `twinlens` (and the `twinlens` command); in a
checkout the same files run as `lib` (`python -m lib`). Only `lib.app.ui` imports Streamlit.

    >>> import twinlens
    >>> result = twinlens.compare_prompts(twinlens.load_model(), "I love it", "I hate it")
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
