"""How far apart two residual streams are, layer by layer.

Raw norms grow with depth and a few "rogue" dimensions dominate them, so only relative
measures are reported:

- cosine distance   d_cos = 1 − a·b / (‖a‖ ‖b‖)
- relative L2       d_rel = ‖a − b‖ / ((‖a‖ + ‖b‖) / 2)

Both are 0 for identical vectors; d_cos ∈ [0, 2], d_rel ∈ [0, 2].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from ...core.backend import Run
from ...core.capture import Capture
from ...core.checks import check_same_residuals
from ...core.models import LoadedModel
from ...core.records import Record
from ...core.sites import Site, residual_sites

ALIGNMENTS = ("last", "mean", "position")


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 − cos(a, b) over the last dimension, computed as ½‖a/‖a‖ − b/‖b‖‖² (the same number):
    unlike 1 − a·b/(‖a‖‖b‖) it is exactly 0 for identical inputs (float64). 0 if either is zero."""
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    half_sq = ((a / na.clamp_min(1e-300) - b / nb.clamp_min(1e-300)) ** 2).sum(-1) / 2
    both = (na > 0).squeeze(-1) & (nb > 0).squeeze(-1)
    return torch.where(both, half_sq, torch.zeros_like(half_sq))


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖ / ((‖a‖ + ‖b‖)/2) over the last dimension."""
    a, b = a.double(), b.double()
    scale = (a.norm(dim=-1) + b.norm(dim=-1)) / 2
    diff = (a - b).norm(dim=-1)
    return torch.where(scale > 0, diff / scale.clamp_min(1e-300), torch.zeros_like(diff))


@dataclass(frozen=True)
class LayerDistances(Record):
    """Distances between A and B for each layer 0…L, under one alignment of positions.

    alignment `last`: between the two last tokens; `mean`: the mean over positions p of the
    distance between A's and B's states at p (prompts of the same length) — *not* the distance
    between position-averaged states, which one outlier position (the first token, an attention
    sink with a huge norm) swamps.
    """

    alignment: str
    cosine: tuple[float, ...]
    relative_l2: tuple[float, ...]


    def peak_layer(self, measure: str = "cosine") -> int:
        values = getattr(self, measure)
        return max(range(len(values)), key=values.__getitem__)


def layer_distances(
    residual_a: torch.Tensor, residual_b: torch.Tensor, alignment: str = "last"
) -> LayerDistances:
    """Per-layer distances between the last positions of residuals [L+1, pos, d] of A and B (for
    the mean over positions see `PositionDistances.mean`)."""
    if alignment != "last":
        raise ValueError(f"alignment must be 'last', not {alignment!r}")
    a, b = residual_a[:, -1], residual_b[:, -1]
    return LayerDistances(
        alignment=alignment,
        cosine=tuple(cosine_distance(a, b).tolist()),
        relative_l2=tuple(relative_l2(a, b).tolist()),
    )


@dataclass(frozen=True)
class PositionDistances(Record):
    """Distances layer × position, for two prompts with the same number of tokens."""

    cosine: tuple[tuple[float, ...], ...]  # [L+1][pos − first_position]
    relative_l2: tuple[tuple[float, ...], ...]
    first_position: int  # 1 when the first position was left out

    def mean(self) -> LayerDistances:
        """Per layer, the mean over the positions kept of the per-position distance:
        d̄_ℓ = 1/|P| Σ_{p∈P} d(a_ℓ[p], b_ℓ[p])."""
        return LayerDistances(
            alignment="mean",
            cosine=tuple(sum(row) / len(row) for row in self.cosine),
            relative_l2=tuple(sum(row) / len(row) for row in self.relative_l2),
        )


@dataclass(frozen=True)
class DistanceReport(Record):
    """What the Residual distances page shows: per layer at the last token and, when both prompts
    have the same number of tokens, layer × position and its mean over positions."""

    last: LayerDistances
    mean: LayerDistances | None  # mean of the per-position distances; None when the lengths differ
    positions: PositionDistances | None  # None when the prompts differ in length
    drop_first: bool


    def summary(self) -> str:
        """One sentence reading the cosine-distance chart (numbers only, no prompt text)."""
        last = self.last.cosine
        mean = self.mean.cosine if self.mean is not None else (0.0,)
        if max(last) == 0 and max(mean) == 0:
            return "A and B are identical at every layer."
        peak = self.last.peak_layer()
        same_token = "is 0 at layer 0 (both end in the same token), " if last[0] == 0 else ""
        sentence = (
            f"At the last token the cosine distance {same_token}peaks at layer {peak} ({last[peak]:.3f}) "
            f"and is {last[-1]:.3f} after the last layer"
        )
        if self.mean is None:
            return sentence + "."
        mean_peak = self.mean.peak_layer()
        left_out = " (first position left out)" if self.drop_first else ""
        return (
            f"{sentence}; the mean of the per-position distances{left_out} peaks at layer {mean_peak} "
            f"({mean[mean_peak]:.3f}) and is {mean[-1]:.3f} after the last layer."
        )


def distance_report(
    residual_a: torch.Tensor, residual_b: torch.Tensor, *, drop_first: bool = True
) -> DistanceReport:
    """Last-token distances and, for equal lengths, position-by-position distances and their mean,
    of residuals [L+1, pos, d]."""
    return _report(distance_tensors(residual_a, residual_b, drop_first=drop_first), drop_first)


def distance_tensors(
    residual_a: torch.Tensor, residual_b: torch.Tensor, *, drop_first: bool = True
) -> dict[str, torch.Tensor | None]:
    """What `distance_report` needs, as tensors (computed where the residuals are): cosine and
    relative L2 at the last position [L+1], and layer × position [L+1, pos − first] for equal
    lengths (else None), with the first position kept (`first` 0) or left out (1)."""
    a, b = residual_a[:, -1], residual_b[:, -1]
    same = residual_a.shape == residual_b.shape
    start = 1 if drop_first and residual_a.shape[1] > 1 else 0
    pa, pb = residual_a[:, start:], residual_b[:, start:]
    return {
        "cosine": cosine_distance(a, b), "relative_l2": relative_l2(a, b),
        "position_cosine": cosine_distance(pa, pb) if same else None,
        "position_relative_l2": relative_l2(pa, pb) if same else None,
        "first": torch.tensor(start),
    }


def _report(tensors: dict[str, torch.Tensor | None], drop_first: bool) -> DistanceReport:
    positions = None
    if tensors["position_cosine"] is not None:
        positions = PositionDistances(
            cosine=tuple(tuple(r) for r in tensors["position_cosine"].tolist()),
            relative_l2=tuple(tuple(r) for r in tensors["position_relative_l2"].tolist()),
            first_position=int(tensors["first"]),
        )
    return DistanceReport(
        last=LayerDistances("last", *(tuple(tensors[m].tolist()) for m in ("cosine", "relative_l2"))),
        mean=None if positions is None else positions.mean(),
        positions=positions,
        drop_first=drop_first,
    )


def capture_distances(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, drop_first: bool = True
) -> DistanceReport:
    """`distance_report` of two runs already made: two prompts through `loaded`, or one prompt
    through two models of the same depth and width (ModelPairError otherwise). Captures without
    their residual streams (a model on NDIF) are run again and reduced where they run."""
    if cap_a.residual is None or cap_b.residual is None:
        sites = tuple(residual_sites(loaded.n_layers))
        tensors = loaded.backend.run_each(
            [torch.tensor([cap.token_ids], dtype=torch.long) for cap in (cap_a, cap_b)],
            sites=sites,
            reduce=partial(_distances_of_runs, sites=sites, drop_first=drop_first),
        )
        return _report(tensors, drop_first)
    check_same_residuals(cap_a, cap_b)
    return distance_report(cap_a.residual, cap_b.residual, drop_first=drop_first)


def _distances_of_runs(runs: Sequence[Run], *, sites: tuple[Site, ...], drop_first: bool) -> dict:
    residual_a, residual_b = (torch.stack([run.activations[site][0] for site in sites]) for run in runs)
    return distance_tensors(residual_a, residual_b, drop_first=drop_first)
