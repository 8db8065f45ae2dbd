"""How far apart two residual streams are, layer by layer.

Raw norms grow with depth and a few "rogue" dimensions dominate them, so only relative
measures are reported:

- cosine distance   d_cos = 1 − a·b / (‖a‖ ‖b‖)
- relative L2       d_rel = ‖a − b‖ / ((‖a‖ + ‖b‖) / 2)

Both are 0 for identical vectors; d_cos ∈ [0, 2], d_rel ∈ [0, 2].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.capture import Capture
from ..core.checks import has_bos
from ..core.models import LoadedModel
from ..core.records import Record

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

    alignment `last`: the last tokens; `mean`: the mean over positions of each prompt
    (position by position would need equal lengths).
    """

    alignment: str
    cosine: tuple[float, ...]
    relative_l2: tuple[float, ...]


    def peak_layer(self, measure: str = "cosine") -> int:
        values = getattr(self, measure)
        return max(range(len(values)), key=values.__getitem__)


def _first_kept(n_tokens: int, has_bos: bool, drop_bos: bool) -> int:
    return 1 if (drop_bos and has_bos and n_tokens > 1) else 0


def layer_distances(
    residual_a: torch.Tensor,
    residual_b: torch.Tensor,
    alignment: str = "last",
    *,
    bos_a: bool = False,
    bos_b: bool = False,
    drop_bos: bool = True,
) -> LayerDistances:
    """Per-layer distances for residuals [L+1, pos, d] of A and B.

    `mean` averages each prompt's vectors over positions first, leaving out a leading BOS
    when `drop_bos` (it is an outlier with a huge norm).
    """
    if alignment == "last":
        a, b = residual_a[:, -1], residual_b[:, -1]
    elif alignment == "mean":
        a = residual_a[:, _first_kept(residual_a.shape[1], bos_a, drop_bos) :].double().mean(1)
        b = residual_b[:, _first_kept(residual_b.shape[1], bos_b, drop_bos) :].double().mean(1)
    else:
        raise ValueError(f"alignment must be 'last' or 'mean', not {alignment!r}")
    return LayerDistances(
        alignment=alignment,
        cosine=tuple(cosine_distance(a, b).tolist()),
        relative_l2=tuple(relative_l2(a, b).tolist()),
    )


@dataclass(frozen=True)
class PositionDistances(Record):
    """Distances layer × position, for two prompts with the same number of tokens."""

    cosine: tuple[tuple[float, ...], ...]  # [L+1][pos]
    relative_l2: tuple[tuple[float, ...], ...]
    first_position: int  # 1 when the BOS column was dropped


def position_distances(
    residual_a: torch.Tensor, residual_b: torch.Tensor, *, has_bos: bool = False, drop_bos: bool = True
) -> PositionDistances:
    """Layer × position distances; raises ValueError when the prompts differ in length."""
    if residual_a.shape != residual_b.shape:
        raise ValueError("position-by-position distances need prompts with the same number of tokens")
    start = _first_kept(residual_a.shape[1], has_bos, drop_bos)
    a, b = residual_a[:, start:], residual_b[:, start:]
    return PositionDistances(
        cosine=tuple(tuple(r) for r in cosine_distance(a, b).tolist()),
        relative_l2=tuple(tuple(r) for r in relative_l2(a, b).tolist()),
        first_position=start,
    )


@dataclass(frozen=True)
class DistanceReport(Record):
    """What the Residual distances page shows: per layer at the last token and averaged over
    positions, and layer × position when both prompts have the same number of tokens."""

    last: LayerDistances
    mean: LayerDistances
    positions: PositionDistances | None  # None when the prompts differ in length
    drop_bos: bool


    def summary(self) -> str:
        """One sentence reading the cosine-distance chart (numbers only, no prompt text)."""
        last, mean = self.last.cosine, self.mean.cosine
        if max(last) == 0 and max(mean) == 0:
            return "A and B are identical at every layer."
        peak, mean_peak = self.last.peak_layer(), self.mean.peak_layer()
        same_token = "is 0 at layer 0 (both end in the same token), " if last[0] == 0 else ""
        return (
            f"At the last token the cosine distance {same_token}peaks at layer {peak} ({last[peak]:.3f}) "
            f"and is {last[-1]:.3f} after the last layer; averaged over positions it peaks at layer "
            f"{mean_peak} ({mean[mean_peak]:.3f})."
        )


def distance_report(
    residual_a: torch.Tensor, residual_b: torch.Tensor, *, bos_a: bool, bos_b: bool, drop_bos: bool = True
) -> DistanceReport:
    """Last-token, mean and (for equal lengths) position-by-position distances of residuals [L+1, pos, d]."""
    same_length = residual_a.shape == residual_b.shape
    return DistanceReport(
        last=layer_distances(residual_a, residual_b, "last"),
        mean=layer_distances(residual_a, residual_b, "mean", bos_a=bos_a, bos_b=bos_b, drop_bos=drop_bos),
        positions=position_distances(residual_a, residual_b, has_bos=bos_a and bos_b, drop_bos=drop_bos)
        if same_length
        else None,
        drop_bos=drop_bos,
    )


def capture_distances(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, drop_bos: bool = True
) -> DistanceReport:
    """`distance_report` of two prompts already run through `loaded` (BOS read from their tokens)."""
    return distance_report(
        cap_a.residual, cap_b.residual, bos_a=has_bos(loaded, cap_a), bos_b=has_bos(loaded, cap_b),
        drop_bos=drop_bos,
    )
