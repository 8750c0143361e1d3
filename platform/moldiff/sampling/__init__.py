"""Samplers: reverse-SDE integrators over graph batches."""
from .sde import sample_positions, template_batch

__all__ = ["sample_positions", "template_batch"]
