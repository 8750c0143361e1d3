"""Noise schedules and the forward (noising) process."""
from .schedules import NoiseSchedule, VESchedule, VPSchedule, build_schedule

__all__ = ["NoiseSchedule", "VESchedule", "VPSchedule", "build_schedule"]
