"""The lens a page reads with (the sidebar's "Lens": logit, tuned or Jacobian), in words for captions.

Pages reach these through `lib.app.ui`; the lenses themselves live in lib.analyses.common.lenses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from ..analyses.common.lens import LensGrid, top1_disagreement
from ..analyses.common.lenses import KINDS as LENS_KINDS
from ..analyses.common.lenses import NAMES, available, lens_for
from ..core.models import LoadedModel

__all__ = [
    "LENS_HELP", "LENS_KINDS", "LensGrid", "LensUse", "lens_caption", "lens_label", "lens_of", "lenses_here",
    "lens_use", "lens_uses", "alike", "lens_export", "tagged", "disagreement_rows", "lens_kwargs",
    "top1_disagreement",
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
    """The lens kind a request's views read with (two models: each model its own lens of that kind,
    see `lens_uses`)."""
    return request.lens


@dataclass(frozen=True)
class LensUse:
    """The lens one side of a page was read with.

    `chosen`: the kind the user asked for; `kind`: the kind read with — the logit lens when, in
    two-models mode, this side's model has no lens of the chosen kind (`missing` says so in one
    sentence); `provenance`: e.g. 'Jacobian lens, fitted on 9 prompts'; `caption`: 'Read with: …'.
    """

    chosen: str
    kind: str
    provenance: str
    caption: str
    source: str = ""  # the lens file's name ("" for the logit lens)
    n_prompts: int | None = None
    missing: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def lens_use(loaded: LoadedModel, kind: str, *, fallback: str | None = None) -> LensUse:
    """How `loaded` is read when `kind` is chosen. Without `fallback` a model with no lens of that
    kind raises LensError (one sentence); with `fallback` (the side's name, e.g. 'model 2') it is read
    with the logit lens and `missing` says so. A lens file that cannot be read always raises."""
    if fallback is not None and kind not in available(loaded):
        missing = (f"twinlens has no {lens_label(kind)} for {loaded.name}, so {fallback} is read with the "
                   "logit lens.")
        return LensUse(kind, "logit", NAMES["logit"], lens_caption(loaded, "logit"), missing=missing)
    lens = lens_for(loaded, kind)
    return LensUse(kind, kind, NAMES["logit"] if lens.is_identity else lens.provenance,
                   lens_caption(loaded, kind), Path(lens.source).name if lens.source else "", lens.n_prompts)


def lens_uses(request, model_a: LoadedModel, model_b: LoadedModel) -> tuple[LensUse, LensUse]:
    """The lens of each side of `request`: one model's chosen lens for both prompts (LensError when
    it has none), or in two-models mode each model's own lens of the chosen kind (the logit lens,
    said in one sentence, for a model that has none)."""
    if not request.two_models:
        use = lens_use(model_a, request.lens)
        return use, use
    return (lens_use(model_a, request.lens, fallback="model 1"),
            lens_use(model_b, request.lens, fallback="model 2"))


def alike(uses: tuple[LensUse, LensUse], models: Sequence[LoadedModel]) -> tuple[LensUse, LensUse]:
    """`uses` for a measure that compares the two sides' distributions (KL, JS): when the sides
    would be read with lenses of different kinds (one model has none of the chosen kind) both are
    read with the logit lens, so the measure compares like with like; `missing` is kept."""
    if uses[0].kind == uses[1].kind:
        return uses
    logit = [replace(lens_use(m, "logit"), chosen=u.chosen, missing=u.missing)
             for m, u in zip(models, uses, strict=True)]
    return logit[0], logit[1]


def lens_export(uses: Sequence[LensUse], names: Sequence[str]) -> dict:
    """What an export says about its lens: {side name: LensUse.to_dict()} (one entry per side)."""
    return {name: use.to_dict() for name, use in zip(names, uses, strict=True)}


def tagged(frame: pd.DataFrame, uses: Sequence[LensUse] | LensUse, names: Sequence[str] = (),
           side: str | None = None) -> pd.DataFrame:
    """`frame` with a `lens` column naming the lens it was read with (for CSV exports): per row
    from its `side` column when given (names[i] → uses[i]), else one value for the whole table."""
    if isinstance(uses, LensUse):
        return frame.assign(lens=uses.provenance)
    by_name: Mapping[str, str] = {n: u.provenance for n, u in zip(names, uses, strict=True)}
    if side is not None:
        return frame.assign(lens=frame[side].map(by_name))
    values = list(dict.fromkeys(by_name.values()))
    text = values[0] if len(values) == 1 else "; ".join(f"{n}: {p}" for n, p in by_name.items())
    return frame.assign(lens=text)


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
