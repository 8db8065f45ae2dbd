"""Errors a user can cause, each with a plain one-line message meant to be shown as it is."""

from __future__ import annotations


class TwinlensError(Exception):
    """Base class: anything the UI shows with `st.error` and the CLI prints before exiting 1."""


class ModelLoadError(TwinlensError):
    """The model named by the user could not be loaded (unknown id, no network, bad folder...)."""


class ArchitectureError(ModelLoadError):
    """The model loaded, but twinlens cannot find its blocks, final norm or unembedding."""


class PromptError(TwinlensError):
    """A prompt (or a token the user named) cannot be used as given."""


class SettingsError(TwinlensError):
    """A setting is out of range (top-k below 1, an unknown BOS mode...)."""


class ModelPairError(TwinlensError):
    """Two models cannot be compared on one prompt (their tokenizers differ)."""


class HistoryError(TwinlensError):
    """Saved comparisons cannot be read or written (a damaged database, a full disk, a bad name...)."""


def unexpected(exc: BaseException) -> str:
    """A plain sentence for a failure that is not the user's (shared with the app)."""
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    memory = isinstance(exc, MemoryError) or "out of memory" in detail.lower()
    kind = "ran out of memory" if memory else "failed unexpectedly"
    return (
        f"twinlens {kind} ({type(exc).__name__}: {detail}). Try a shorter prompt or a smaller model; "
        "if it persists, run again with TWINLENS_DEBUG=1 and report the traceback."
    )


class RemoteError(TwinlensError):
    """A run on NDIF (the nnsight backend with remote=True) failed: no or a refused API key, no
    network, a model NDIF does not host, a timeout, or an error in the remote job."""


class Cancelled(TwinlensError):
    """The user cancelled a long run (a remote job) before its result came back; nothing was saved."""


class LensError(SettingsError):
    """A lens (tuned or Jacobian) is missing for this model, or a lens file does not fit it."""


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first (libraries wrap
    each other's errors: transformers wraps huggingface_hub's, nnsight the server's)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
