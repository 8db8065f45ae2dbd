"""A loaded model: its module, tokenizer, anatomy, lock, and the backend analyses run it through."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from .architecture import Architecture
from .backend import Backend


@dataclass
class LoadedModel:
    """A model ready for twinlens: eval mode, its tokenizer, its anatomy and the lock runs must hold.

    Anything that runs the model, or puts hooks on it, holds `lock` for the whole run: one model is
    shared by every browser session, and hooks set by one run must never be seen by another.
    """

    model: nn.Module
    tokenizer: object
    spec: str
    name: str
    architecture: Architecture
    device: torch.device
    dtype: torch.dtype
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    forward_passes: int = 0  # counted by the backend; a view change must not add any
    backend: Backend = field(init=False, repr=False)  # how analyses run it: set by lib.core.models

    @property
    def n_layers(self) -> int:
        return self.architecture.n_layers

    @property
    def d_model(self) -> int:
        return self.architecture.d_model

    @property
    def vocab_size(self) -> int:
        return int(self.architecture.unembed.weight.shape[0])

    @property
    def max_tokens(self) -> int | None:
        """The longest input the model accepts, when its config says so."""
        config = self.model.config.get_text_config()
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the weights (tied weights counted once)."""
        seen: set[int] = set()
        total = 0
        for p in self.model.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel() * p.element_size()
        return total

    def info(self) -> dict:
        """What the JSON output says about the model."""
        return {
            "name": self.name,
            "spec": self.spec,
            "family": self.architecture.family,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "vocab_size": self.vocab_size,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

