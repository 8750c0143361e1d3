"""Ray actor pools for sampling (and later simulation and relaxation)."""
