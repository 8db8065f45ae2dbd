"""What a user asks twinlens to compare: the sidebar's values and the shareable URL's parameters.

A `Request` is plain data (no Streamlit): pages, caches and links all key on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..core.errors import SettingsError
from ..core.tokens import BOS_MODES
from .cache import ModelKey, RunKey

QUERY_FIELDS = ("model", "a", "b", "bos", "k")  # the shareable URL's parameters
PAIR_QUERY_FIELDS = ("mode", "model2")  # added to the URL in two-models mode only
# sidebar widget key → Request field
WIDGET_FIELDS = {
    "model": "model", "prompt_a": "a", "prompt_b": "b", "bos": "bos", "top_k": "k",
    "trust_remote_code": "trust_remote_code", "allow_pickle": "allow_pickle",
    "mode": "mode", "model2": "model2", "backend": "backend",
}
MODES = {"prompts": "two prompts", "models": "two models"}  # Request.mode → what the sidebar says
MAX_TOP_K = 100


@dataclass(frozen=True)
class Request:
    """What the user asked to compare (the sidebar's last submitted values)."""

    model: str = "default"
    a: str = "The capital of France is"
    b: str = "The capital of Italy is"
    bos: str = "auto"
    k: int = 10
    device: str = "auto"
    dtype: str = "auto"
    # Expert options that let a model run code; off unless ticked in the sidebar, never from a URL.
    trust_remote_code: bool = False
    allow_pickle: bool = False
    # "prompts": a and b through `model`; "models": a through `model` (model 1) and `model2`.
    mode: str = "prompts"
    model2: str = ""
    backend: str = "local"  # "local" (PyTorch hooks) or "nnsight" (nnsight traces), same results

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_key(self) -> ModelKey:
        """Model 1 (the only model with two prompts)."""
        return ModelKey(
            self.model, self.device, self.dtype, self.trust_remote_code, self.allow_pickle, self.backend
        )

    @property
    def model2_key(self) -> ModelKey:
        if not self.model2.strip():
            raise SettingsError("Type a second model to compare with (a hub id or a folder).")
        key = self.model_key
        return ModelKey(
            self.model2.strip(), key.device, key.dtype, key.trust_remote_code, key.allow_pickle, key.backend
        )

    @property
    def two_models(self) -> bool:
        return self.mode == "models"

    @property
    def runs(self) -> tuple[RunKey, RunKey]:
        """The pair of runs compared: prompts A and B through one model, or prompt A through
        model 1 and model 2. Every page reads sides a and b from here, whichever the mode."""
        a = RunKey(self.model_key, self.a, self.bos)
        if self.two_models:
            return a, RunKey(self.model2_key, self.a, self.bos)
        return a, RunKey(self.model_key, self.b, self.bos)

    def to_query(self) -> dict[str, str]:
        """The shareable URL's parameters for this request."""
        fields = QUERY_FIELDS + (PAIR_QUERY_FIELDS if self.mode == "models" else ())
        return {name: str(getattr(self, name)) for name in fields}

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Request:
        """The request a shareable URL names (missing parameters take the defaults).

        Raises SettingsError, naming the parameter, for a value the sidebar could not hold.
        """
        values: dict = {name: params[name] for name in QUERY_FIELDS + PAIR_QUERY_FIELDS if name in params}
        values["model"] = values.get("model", cls.model).strip() or cls.model
        if values.get("mode", cls.mode) not in MODES:
            raise SettingsError(f"The link's mode={values['mode']!r} is not one of {', '.join(MODES)}.")
        if values.get("bos", cls.bos) not in BOS_MODES:
            raise SettingsError(f"The link's bos={values['bos']!r} is not one of {', '.join(BOS_MODES)}.")
        if "k" in values:
            k = values["k"]
            if not k.isdigit() or not 1 <= int(k) <= MAX_TOP_K:
                raise SettingsError(f"The link's k={k!r} is not a whole number from 1 to {MAX_TOP_K}.")
            values["k"] = int(k)
        return cls(**values)
