"""Layer 1, core: repository paths, atomic file storage, derived seeds, config helpers, device choice, version."""
