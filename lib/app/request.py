"""What a user asks twinlens to compare: the sidebar's values and the shareable URL's parameters.

A `Request` is plain data (no Streamlit): pages, caches and links all key on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..analyses.common.lenses import KINDS as LENS_KINDS
from ..core.chat import Chat
from ..core.errors import SettingsError
from ..core.tokens import BOS_MODES
from .cache import ModelKey, RunKey

QUERY_FIELDS = ("model", "a", "b", "bos", "k")  # the shareable URL's parameters
PAIR_QUERY_FIELDS = ("mode", "model2")  # added to the URL in two-models mode only
# added when chat (or the continuation) is on: a link without them is raw text, no continuation
CHAT_QUERY_FIELDS = ("chat", "system", "prefill", "continue")
LENS_QUERY_FIELDS = ("lens",)  # added when the lens is not the logit lens
# sidebar widget key → Request field
WIDGET_FIELDS = {
    "model": "model", "prompt_a": "a", "prompt_b": "b", "bos": "bos", "top_k": "k",
    "trust_remote_code": "trust_remote_code", "allow_pickle": "allow_pickle",
    "mode": "mode", "model2": "model2", "backend": "backend",
    "chat": "chat", "system": "system", "prefill": "prefill", "continue_for": "continue_for",
    "lens": "lens",
}
MODES = {"prompts": "two prompts", "models": "two models"}  # Request.mode → what the sidebar says
MAX_TOP_K = 100
MAX_CONTINUE = 512  # new tokens appended by "Analyse the continuation"


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
    # Chat mode: each prompt read as a user message through the model's chat template (raw when off).
    chat: bool = False
    system: str = ""
    prefill: str = ""
    # "Analyse the continuation": 0, or N to append each prompt's greedy continuation of N tokens.
    continue_for: int = 0
    # Which lens reads the residual stream: "logit", "tuned" or "jacobian" (lib.analyses.common.lenses).
    lens: str = "logit"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def pair(self) -> tuple:
        """What the two sides are (mode, models, prompts, chat framing): words a page was given for
        one pair (Patching's answer and wrong words) mean nothing for another."""
        return self.mode, self.model, self.model2, self.a, self.b, self.chat, self.system, self.prefill

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
    def chat_settings(self) -> Chat | None:
        """The chat settings the prompts are read with; None in raw mode."""
        if not self.chat:
            return None
        return Chat(system=self.system or None, prefill=self.prefill)

    @property
    def two_models(self) -> bool:
        return self.mode == "models"

    @property
    def runs(self) -> tuple[RunKey, RunKey]:
        """The pair of runs compared: prompts A and B through one model, or prompt A through
        model 1 and model 2. Every page reads sides a and b from here, whichever the mode."""
        chat = self.chat_settings
        n = self.continue_for
        a = RunKey(self.model_key, self.a, self.bos, chat, n)
        if self.two_models:
            return a, RunKey(self.model2_key, self.a, self.bos, chat, n)
        return a, RunKey(self.model_key, self.b, self.bos, chat, n)

    def to_query(self) -> dict[str, str]:
        """The shareable URL's parameters for this request."""
        fields = QUERY_FIELDS + (PAIR_QUERY_FIELDS if self.mode == "models" else ())
        query = {name: str(getattr(self, name)) for name in fields}
        if self.chat:
            query.update(chat="1", system=self.system, prefill=self.prefill)
        if self.continue_for:
            query["continue"] = str(self.continue_for)
        if self.lens != "logit":
            query["lens"] = self.lens
        return query

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Request:
        """The request a shareable URL names (missing parameters take the defaults).

        Raises SettingsError, naming the parameter, for a value the sidebar could not hold.
        """
        values: dict = {name: params[name] for name in QUERY_FIELDS + PAIR_QUERY_FIELDS + CHAT_QUERY_FIELDS
                        + LENS_QUERY_FIELDS if name in params}
        if values.get("lens", cls.lens) not in LENS_KINDS:
            raise SettingsError(f"The link's lens={values['lens']!r} is not one of {', '.join(LENS_KINDS)}.")
        if "chat" in values:
            chat = values["chat"].strip().lower()
            if chat not in ("1", "0", "true", "false", "on", "off"):
                raise SettingsError(f"The link's chat={values['chat']!r} is not 1 (chat) or 0 (raw text).")
            values["chat"] = chat in ("1", "true", "on")
        if "continue" in values:
            n = values.pop("continue")
            if not n.isdigit() or not 0 <= int(n) <= MAX_CONTINUE:
                raise SettingsError(
                    f"The link's continue={n!r} is not a whole number from 0 to {MAX_CONTINUE}."
                )
            values["continue_for"] = int(n)
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
