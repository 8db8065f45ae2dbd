"""The Compare page's tables and chart, built from a `Comparison` alone (pandas and Altair, no
Streamlit): the Compare page draws a fresh comparison with them, the History page a saved one."""

from __future__ import annotations

import pandas as pd

from ..analyses.common.comparison import Comparison, PromptResult
from ..analyses.common.lens import LensGrid


def lens_frame(side: PromptResult) -> pd.DataFrame:
    """Rows: the model's own top-k, then layers L…0; columns #1…#k; cells 'token  p'."""
    rows = [("model", side.final)] + [(f"layer {l}", side.lens[l]) for l in range(len(side.lens) - 1, -1, -1)]
    return pd.DataFrame(
        [[f"{t.token}  {t.prob:.3f}" for t in top] for _, top in rows],
        index=[name for name, _ in rows],
        columns=[f"#{i + 1}" for i in range(len(side.final))],
    )


def lens_long_frame(side: PromptResult) -> pd.DataFrame:
    """The lens for export, one row per (layer, rank): layer, rank, token, token_id, prob; source
    'lens' for layers 0…L and 'model' for the model's own top-k (at layer L)."""
    last = len(side.lens) - 1
    rows = [("lens", layer, top) for layer, top in enumerate(side.lens)] + [("model", last, side.final)]
    return pd.DataFrame(
        {"source": source, "layer": layer, "rank": rank, "token": t.token, "token_id": t.id, "prob": t.prob}
        for source, layer, top in rows
        for rank, t in enumerate(top, 1)
    )


def lens_grid_long_frame(name: str, grid: LensGrid) -> pd.DataFrame:
    """A logit-lens grid for export, one row per (layer, position, rank), nothing packed into one
    string: prompt, layer, position, input token, rank, token, token_id, prob, entropy_bits."""
    return pd.DataFrame(
        {"prompt": name, "layer": layer, "position": cell.position, "input": grid.tokens[i], "rank": rank,
         "token": t.token, "token_id": t.id, "prob": t.prob, "entropy_bits": cell.entropy_bits}
        for layer, row in enumerate(grid.cells)
        for i, cell in enumerate(row)
        for rank, t in enumerate(cell.top, 1)
    )


def model_caption(comparison: Comparison) -> str:
    """'name · L layers · width d · vocab V · BOS mode', from what the comparison recorded
    (two models: 'model 1: … | model 2: … · BOS mode')."""

    def describe(m: dict) -> str:
        return f"{m['name']} · {m['n_layers']} layers · width {m['d_model']} · vocab {m['vocab_size']:,}"

    bos = f" · BOS {comparison.settings.get('bos', 'auto')}"
    if comparison.model2 is None:
        return describe(comparison.model) + bos
    return f"model 1: {describe(comparison.model)} | model 2: {describe(comparison.model2)}{bos}"


def side_names(comparison: Comparison) -> tuple[str, str]:
    """What the page calls sides a and b: 'A' and 'B' (two prompts) or 'model 1' and 'model 2'."""
    return ("model 1", "model 2") if comparison.mode == "models" else ("A", "B")


def side_titles(comparison: Comparison) -> tuple[str, str]:
    """Headings of sides a and b: 'Prompt A', 'Prompt B' or 'Model 1 · name', 'Model 2 · name'."""
    if comparison.mode == "models":
        return f"Model 1 · {comparison.model['name']}", f"Model 2 · {comparison.model2['name']}"
    return "Prompt A", "Prompt B"


def lens_provenances(comparison: Comparison) -> tuple[str, str]:
    """The lens each side was read with, as its caption names it ('logit lens', 'Jacobian lens,
    fitted on 9 prompts'), from the comparison's settings (a comparison without one: the logit lens)."""
    first = comparison.settings.get("lens_caption", "logit lens")
    return first, comparison.settings.get("lens2_caption", first)


def comparison_tables(comparison: Comparison) -> dict[str, pd.DataFrame]:
    """The Compare page's tables for CSV export: each side's lens (its `lens` column naming the lens
    it was read with), and the distances per layer."""
    names = [n.replace(" ", "_") for n in side_names(comparison)]
    sides = zip(names, (comparison.a, comparison.b), lens_provenances(comparison), strict=True)
    tables = {f"lens_{name}": lens_long_frame(side).assign(lens=lens) for name, side, lens in sides}
    if comparison.distance is not None:
        tables["distance"] = pd.DataFrame(
            {"cosine": comparison.distance.cosine, "relative_l2": comparison.distance.relative_l2}
        ).rename_axis("layer")
    return tables
