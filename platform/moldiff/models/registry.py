"""Config -> model. A new backbone is one module plus an entry here."""
from __future__ import annotations

from torch import nn

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from ..nn.egnn import EGNN
from .score import EpsilonModel


def build_backbone(cfg: ExperimentConfig) -> nn.Module:
    m = cfg.model
    if m.backbone == "egnn":
        return EGNN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                    cutoff=m.cutoff, coord_range=m.coord_range)
    if m.backbone == "e3nn":
        from ..nn.e3nn_net import E3NN      # e3nn costs ~2 s to import: only when asked for
        return E3NN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                    cutoff=m.cutoff, lmax=m.lmax, radial_max=m.radial_max)
    raise ValueError(f"unknown model.backbone {m.backbone!r}")


def build_model(cfg: ExperimentConfig, sigma_data: float = 1.0) -> EpsilonModel:
    return EpsilonModel(build_backbone(cfg), build_schedule(cfg.diffusion), sigma_data, cfg.model.input_scaling)
