"""Config -> objective. A new objective is one module plus an entry here."""
from __future__ import annotations

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from .dsm import DenoisingScoreMatching


def build_objective(cfg: ExperimentConfig):
    name = cfg.objective.name
    if name == "dsm":
        return DenoisingScoreMatching(build_schedule(cfg.diffusion))
    raise ValueError(f"unknown objective.name {name!r}")
