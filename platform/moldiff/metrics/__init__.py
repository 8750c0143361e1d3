"""Metrics: pure functions on numpy arrays that return floats."""
