"""Training objectives: ``objective(model, batch) -> (loss, logs)``."""
from .registry import build_objective

__all__ = ["build_objective"]
