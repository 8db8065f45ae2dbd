"""twinlens analyses layer."""
