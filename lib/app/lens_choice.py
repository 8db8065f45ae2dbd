"""The lens a page reads with (the sidebar's "Lens": logit, tuned or Jacobian), in words for captions.

Pages reach these through `lib.app.ui`; the lenses themselves live in lib.analyses.common.lenses.
"""

from __future__ import annotations

from ..analyses.common.lens import LensGrid, top1_disagreement
from ..analyses.common.lenses import KINDS as LENS_KINDS
from ..analyses.common.lenses import NAMES, available, lens_for
from ..core.models import LoadedModel

__all__ = [
    "LENS_HELP", "LENS_KINDS", "LensGrid", "lens_caption", "lens_label", "lens_of", "lenses_here",
    "disagreement_rows", "lens_kwargs", "top1_disagreement",
]

LENS_HELP = (
    "How each layer's residual is read: logit = the final norm and unembedding as they are (exact at "
    "the last layer, misleading early on); tuned = a trained affine translator per layer first "
    "(Belrose et al. 2023); Jacobian = the layer's average linear effect on the last layer first "
    "(Gurnee et al. 2026). Every lens is the model's own prediction at the last layer."
)


def lens_label(kind: str) -> str:
    """'logit lens', 'tuned lens', 'Jacobian lens'."""
    return NAMES.get(kind, kind)


def lens_of(request) -> str:
    """The lens kind a request's views read with: the chosen one, or the logit lens when two models
    are compared (a lens belongs to one model)."""
    return "logit" if request.two_models else request.lens


def lens_caption(loaded: LoadedModel, kind: str) -> str:
    """E.g. 'Read with: Jacobian lens, fitted on 200 prompts (residuals 1…29; 0, 30 as by the logit
    lens).' (a model without that lens raises LensError, one sentence)."""
    lens = lens_for(loaded, kind)
    if lens.is_identity:
        return "Read with the logit lens (the final norm and unembedding applied to each residual as it is)."
    changed = lens.transformed
    plain = [r for r in range(loaded.n_layers + 1) if r not in changed]
    rest = f"; {', '.join(map(str, plain))} as by the logit lens" if plain else ""
    return f"Read with: {lens.provenance} (residuals {changed[0]}…{changed[-1]}{rest})."


def lenses_here(loaded: LoadedModel) -> tuple[str, ...]:
    """The lens kinds this model has here (the logit lens always)."""
    return available(loaded)


def lens_kwargs(kind: str) -> dict:
    """The `lens=` argument for a cached lens call: none for the logit lens, so its results share
    their cache entries with the pages that never choose a lens."""
    return {} if kind == "logit" else {"lens": kind}


def disagreement_rows(logit: LensGrid, other: LensGrid) -> list[dict]:
    """Per layer, top (L) to bottom (0): how many of the window's positions the two lenses' top-1
    differ at, and which (position: logit top-1 → other top-1)."""
    rows = []
    for layer, positions in reversed(list(enumerate(top1_disagreement(logit, other)))):
        at = [logit.positions.index(p) for p in positions]
        rows.append({
            "layer": layer,
            "differ": len(positions),
            "of": len(logit.positions),
            "where": ", ".join(
                f"{p}: {logit.cells[layer][i].top[0].token} → {other.cells[layer][i].top[0].token}"
                for p, i in zip(positions, at, strict=True)
            ),
        })
    return rows
