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
