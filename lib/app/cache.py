"""One results cache for the whole app, keyed by frozen values, and one registry of loaded models.

`Results` holds the three: loaded models (`ModelKey` → LoadedModel), captures (`RunKey` → Capture)
and every other result (`Results.get(fn, *args)` → `fn(*args)`, resolved and computed once).

Every result a page shows is `fn(*args)` for an analysis `fn` and arguments that are frozen,
hashable values: a `ModelKey` stands for the loaded model, a `RunKey` for one prompt's capture
through it, anything else (top-k, a layer, a token) for itself. `ResultCache.get` computes each
value once — concurrent sessions asking for the same key wait for the first one instead of
running the model again — and keeps the most recently used entries. Nothing here reads session
state: everything a result depends on is in its key.

    >>> cache = ResultCache(max_entries=2)
    >>> cache.get(("square", 3), lambda: 3 * 3)
    9
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from ..core.capture import Capture, capture
from ..core.chat import Chat
from ..core.models import LoadedModel, load_model

T = TypeVar("T")
NEEDS_RESIDUALS = (
    "This view needs each prompt's whole residual stream, which NDIF would have to send back (for a 70B "
    "model 1.3 MB per token per prompt). On NDIF twinlens runs the Compare, Logit lens, Residual "
    "distances, Continuations and Patching pages and Findings' first three steps, reduced on the server; "
    "for this view pick the local or nnsight backend with a "
    "model this machine holds (docs/scale.md)."
)


@dataclass(frozen=True)
class ModelKey:
    """Everything that decides which weights a model is loaded with (expert options included, so a
    model loaded with remote code or pickle weights is never handed to a session without them)."""

    spec: str = "default"
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    backend: str = "local"  # how it runs: "local" (hooks), "nnsight" or "ndif" (nnsight on NDIF)

    def load(self) -> LoadedModel:
        """The model these settings name (a model still in use with them is returned again)."""
        return load_model(
            self.spec, device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code,
            allow_pickle=self.allow_pickle, backend="nnsight" if self.remote else self.backend,
            remote=self.remote,
        )

    @property
    def remote(self) -> bool:
        """Whether the model runs on NDIF (no weights here; only reduced results come back)."""
        return self.backend == "ndif"


@dataclass(frozen=True)
class RunKey:
    """One prompt through one model: what a capture depends on.

    chat: None reads the text raw (the default, so older keys keep their meaning), else as a chat
    message (lib.core.chat). continue_for: 0, or N to append the model's greedy continuation of
    N tokens (its token ids, never re-tokenized text) so every view covers the generated tokens
    ("Analyse the continuation").
    """

    model: ModelKey
    text: str
    bos: str = "auto"
    chat: Chat | None = None
    continue_for: int = 0

    @property
    def prompt_only(self) -> RunKey:
        """The same prompt without the continuation appended."""
        return RunKey(self.model, self.text, self.bos, self.chat)


class ResultCache:
    """A thread-safe least-recently-used cache where each key is computed once.

    Exceptions are not cached: a failed computation is tried again on the next request.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, object] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]  # type: ignore[return-value]
                busy = self._computing.get(key)
                if busy is None:
                    busy = self._computing[key] = threading.Lock()
                    busy.acquire()
                    break
            with busy:  # another thread computes this key: wait for it, then look again
                pass
        try:
            value = compute()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._computing[key]
            busy.release()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def values(self) -> list[object]:
        with self._lock:
            return list(self._values.values())

    def items(self) -> list[tuple[Hashable, object]]:
        """(key, value) pairs, least recently used first."""
        with self._lock:
            return list(self._values.items())

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Results:
    """The models, captures and results of one process, shared by every session.

    `get(fn, *args, **kwargs)` computes `fn` once per value of its arguments, which are frozen
    values: a `ModelKey` is passed on as the loaded model and a `RunKey` as that prompt's capture,
    so `get(compare_captures, model, run_a, run_b, top_k=10)` runs
    `compare_captures(loaded, cap_a, cap_b, top_k=10)`. `_progress` (not part of the key) is passed
    on as `progress=` when the value has to be computed.
    """

    def __init__(self, *, models: int = 2, captures: int = 16, values: int = 256) -> None:
        self.models = ResultCache(models)  # two, for two-models mode
        self.captures = ResultCache(captures)  # one residual stream each (≈70 kB per token for SmolLM2)
        self.values = ResultCache(values)  # every other result: small frozen dataclasses

    def model(self, key: ModelKey) -> LoadedModel:
        return self.models.get(key, key.load)

    def capture(self, run: RunKey) -> Capture:
        """One prompt's capture; for a model on NDIF without its residual stream (the views that
        support it reduce it where it runs)."""
        model = self.model(run.model)
        if run.model.remote and not run.continue_for:  # a continuation: generate refuses it plainly
            return self.captures.get(
                run, lambda: capture(model, run.text, run.bos, run.chat, keep_residual=False)
            )
        if run.continue_for:  # the prompt's greedy continuation, appended as the ids the model emitted
            from ..analyses.common.decode import GenerationSettings
            from ..analyses.generation import continue_capture

            settings = GenerationSettings(run.continue_for)
            generated = self.get(continue_capture, run.model, run.prompt_only, settings)
            return self.captures.get(
                run, lambda: capture(model, run.text, run.bos, run.chat, generated.token_ids)
            )
        return self.captures.get(run, lambda: capture(model, run.text, run.bos, run.chat))

    def resolve(self, value: object) -> object:
        """A key as the value it stands for (the model, the capture); anything else as it is."""
        if isinstance(value, ModelKey):
            return self.model(value)
        if isinstance(value, RunKey):
            return self.capture(value)
        return value

    def get(
        self, fn: Callable[..., T], *args: Hashable, _progress: Callable[[float], None] | None = None,
        **kwargs: Hashable,
    ) -> T:
        key = result_key(fn, args, kwargs)

        def compute() -> T:
            extra = {} if _progress is None else {"progress": _progress}
            named = {name: self.resolve(value) for name, value in kwargs.items()}
            return fn(*(self.resolve(a) for a in args), **named, **extra)

        return self.values.get(key, compute)

    def keep(self, value: object, fn: Callable, *args: Hashable, **kwargs: Hashable) -> None:
        """Store `value` as `get(fn, *args, **kwargs)` (written by a run that computed it along with
        something else); a value already there stays."""
        self.values.get(result_key(fn, args, kwargs), lambda: value)

    def has(self, fn: Callable, *args: Hashable, **kwargs: Hashable) -> bool:
        """Whether `get(fn, *args, **kwargs)` is computed already (it would return at once)."""
        return result_key(fn, args, kwargs) in self.values

    def clear(self) -> None:
        """Forget every capture and result (the loaded models stay)."""
        self.captures.clear()
        self.values.clear()


def result_key(fn: Callable, args: tuple, kwargs: dict) -> Hashable:
    """The results cache's key for `fn(*args, **kwargs)`: the function's name and the frozen arguments."""
    return (fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())))
