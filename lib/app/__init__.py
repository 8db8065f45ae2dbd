"""twinlens app layer."""
