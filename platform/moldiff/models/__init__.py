"""What a backbone becomes: the networks objectives train and samplers call."""
from .registry import build_model, state_scale, time_interval

__all__ = ["build_model", "state_scale", "time_interval"]
