"""Named sites: the places in a model an analysis can read or change, in TransformerLens's names.

twinlens numbers the residual stream by the block it enters: residual ℓ is the input of block ℓ
(ℓ = 0 is the embedding output) and residual L is the output of the last block, before the final
norm. TransformerLens and SAELens name the same vectors by hook:

    blocks.ℓ.hook_resid_pre    = residual ℓ          (ℓ = 0 … L−1)
    blocks.ℓ.hook_resid_post   = residual ℓ + 1      (the off-by-one: the output of block ℓ)
    blocks.ℓ.hook_attn_out     the attention output block ℓ adds to the residual  [batch, pos, d]
    blocks.ℓ.hook_mlp_out      the MLP output block ℓ adds to the residual        [batch, pos, d]
    blocks.ℓ.attn.hook_z       each head's output before the output projection
                               (the projection's input, split by head)      [batch, pos, heads, d_head]
    blocks.ℓ.attn.hook_pattern attention weights                            [batch, heads, query, key]

so an SAE or steering vector saved by those tools for `blocks.5.hook_resid_post` is read at
twinlens residual 6. `Site.parse` reads any of these names, `Site.name` writes the canonical one:
a residual is always written as `hook_resid_pre` of the block it enters, except residual L,
which only exists as `blocks.{L−1}.hook_resid_post`.

    >>> Site.parse("blocks.5.hook_resid_post").residual
    6
    >>> Site.residual_at(6, n_layers=30).name
    'blocks.6.hook_resid_pre'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import SettingsError

Kind = Literal["resid_pre", "resid_post", "attn_out", "mlp_out", "z", "pattern"]
KINDS: tuple[Kind, ...] = ("resid_pre", "resid_post", "attn_out", "mlp_out", "z", "pattern")
_HOOKS: dict[Kind, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
}
_NAME = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(h) for h in _HOOKS.values()) + r")$")


@dataclass(frozen=True, order=True)
class Site:
    """One place in the model: a kind of activation at block `layer`.

    For residual sites use `residual` (twinlens's index) rather than `layer`: `resid_post` of block
    ℓ and `resid_pre` of block ℓ+1 are the same vector.
    """

    layer: int
    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SettingsError(f"Unknown site kind '{self.kind}'; twinlens knows {', '.join(KINDS)}.")
        if self.layer < 0:
            raise SettingsError(f"Block {self.layer} does not exist; blocks count from 0.")

    @property
    def name(self) -> str:
        """The TransformerLens hook name, e.g. 'blocks.3.attn.hook_z'."""
        return f"blocks.{self.layer}.{_HOOKS[self.kind]}"

    @property
    def is_residual(self) -> bool:
        return self.kind in ("resid_pre", "resid_post")

    @property
    def residual(self) -> int:
        """twinlens's residual index of a residual site: resid_pre ℓ → ℓ, resid_post ℓ → ℓ + 1."""
        if not self.is_residual:
            raise SettingsError(f"{self.name} is not on the residual stream.")
        return self.layer + (self.kind == "resid_post")

    @classmethod
    def residual_at(cls, residual: int, n_layers: int) -> Site:
        """The canonical site of twinlens residual ℓ (0 … L) in a model of `n_layers` blocks."""
        if not 0 <= residual <= n_layers:
            raise SettingsError(f"Layer {residual} does not exist; the model has layers 0 to {n_layers}.")
        return cls(n_layers - 1, "resid_post") if residual == n_layers else cls(residual, "resid_pre")

    def canonical(self, n_layers: int) -> Site:
        """The same vector under its canonical name (residual sites; others are returned as they are)."""
        self.check(n_layers)
        return Site.residual_at(self.residual, n_layers) if self.is_residual else self

    def check(self, n_layers: int) -> None:
        """Refuse a site of a block the model does not have, naming both."""
        if self.layer >= n_layers:
            raise SettingsError(
                f"{self.name} is not in this model: it has blocks 0 to {n_layers - 1}."
            )

    @classmethod
    def parse(cls, name: str) -> Site:
        """The site a TransformerLens/SAELens hook name names; a clear error for any other string."""
        match = _NAME.match(name.strip())
        if match is None:
            raise SettingsError(
                f"'{name}' is not a site name twinlens knows. Use blocks.ℓ.hook_resid_pre, "
                "blocks.ℓ.hook_resid_post, blocks.ℓ.hook_attn_out, blocks.ℓ.hook_mlp_out, "
                "blocks.ℓ.attn.hook_z or blocks.ℓ.attn.hook_pattern."
            )
        kind = next(k for k, hook in _HOOKS.items() if hook == match.group(2))
        return cls(int(match.group(1)), kind)


def residual_sites(n_layers: int) -> tuple[Site, ...]:
    """The canonical sites of residuals 0 … L, in order."""
    return tuple(Site.residual_at(r, n_layers) for r in range(n_layers + 1))
