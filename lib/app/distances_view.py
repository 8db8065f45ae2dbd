"""The Residual distances page's result and table: A's and B's distances through the results cache
(`distances_of`), one row per layer (`layer_table`) and each alignment's distances by name
(`alignments`), for the measures and alignments the page offers."""

from __future__ import annotations

import pandas as pd

from ..analyses.common.distances import DistanceReport, LayerDistances, capture_distances
from . import ui
from .cache import RunKey

MEASURES = {"cosine": "cosine distance", "relative_l2": "relative L2"}
ALIGNMENTS = {"last": "last token", "mean": "mean of per-position distances"}


def layer_table(report: DistanceReport) -> pd.DataFrame:
    """One row per layer, one column per (measure, alignment)."""
    columns = {"layer": range(len(report.last.cosine))}
    for alignment, name in ALIGNMENTS.items():
        distances = getattr(report, alignment)
        if distances is None:  # the mean needs prompts of the same length
            continue
        for measure, measure_name in MEASURES.items():
            columns[f"{measure_name}, {name}"] = getattr(distances, measure)
    return pd.DataFrame(columns)


def alignments(report: DistanceReport) -> dict[str, LayerDistances]:
    """Each alignment's distances by its name in `ALIGNMENTS` (the mean only for prompts of the
    same length)."""
    return {name: getattr(report, alignment) for alignment, name in ALIGNMENTS.items()
            if getattr(report, alignment) is not None}


def distances_of(run_a: RunKey, run_b: RunKey, drop_first: bool) -> DistanceReport:
    """A's and B's residual distances per layer (`capture_distances`, once per value in the results
    cache), the first position left out when `drop_first`."""
    return ui.cached(capture_distances, run_a.model, run_a, run_b, drop_first=drop_first)
