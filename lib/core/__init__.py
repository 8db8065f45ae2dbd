"""twinlens core layer."""
