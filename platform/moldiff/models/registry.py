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
                    atom_identity=m.atom_identity, cutoff=m.cutoff, coord_range=m.coord_range,
                    time_max_freq=m.time_max_freq)
    if m.backbone == "e3nn":
        from ..nn.e3nn_net import E3NN      # e3nn costs ~2 s to import: only when asked for
        return E3NN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                    atom_identity=m.atom_identity, cutoff=m.cutoff, lmax=m.lmax, radial_max=m.radial_max)
    raise ValueError(f"unknown model.backbone {m.backbone!r}")


def build_model(cfg: ExperimentConfig, sigma_data: float = 1.0, state_dim: int = 2):
    """The model a config trains. State-vector systems get an energy (conservative) or score MLP;
    ``state_dim`` is their dimension (from the dataset)."""
    if cfg.model.backbone == "branched_egnn":
        return build_generator(cfg)
    if cfg.model.backbone == "painn" and cfg.objective.name == "force_field":
        from .force_field import ForceField
        m = cfg.model
        return ForceField(m.hidden, m.layers, m.n_rbf, m.cutoff, m.max_atomic_number)
    if cfg.model.backbone == "painn":
        from .morered import MoreRedModel
        m = cfg.model
        return MoreRedModel(cfg.objective.morered.kind, build_schedule(cfg.diffusion), m.hidden, m.layers, m.n_rbf,
                            m.cutoff, m.max_atomic_number)
    if cfg.model.backbone in ("mlp", "graph_transformer"):
        from .energy import EnergyModel, ScoreModel
        m, (t_lo, t_hi) = cfg.model, time_interval(cfg)
        out = 1 if m.conservative else state_dim
        if m.backbone == "mlp":
            from ..nn.mlp import TimeMLP
            net = TimeMLP(state_dim, m.hidden_layers, out, t_mid=0.5 * (t_lo + t_hi))
        else:
            from ..nn.graph_transformer import GraphTransformer
            if state_dim % 3:
                raise ValueError(f"graph_transformer needs states of 3-D particles; these have {state_dim} coordinates")
            net = GraphTransformer(state_dim // 3, m.hidden, m.layers, m.heads, m.head_dim, out, t_mid=0.5 * (t_lo + t_hi))
        return EnergyModel(net) if m.conservative else ScoreModel(net)
    if cfg.model.energy_head:
        from .molecular_energy import MolecularEnergyModel
        m = cfg.model
        backbone = EGNN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                        atom_identity=m.atom_identity, cutoff=m.cutoff, coord_range=m.coord_range, features_out=True,
                        time_max_freq=m.time_max_freq)
        return MolecularEnergyModel(backbone, m.hidden, build_schedule(cfg.diffusion), sigma_data, m.input_scaling)
    return EpsilonModel(build_backbone(cfg), build_schedule(cfg.diffusion), sigma_data, cfg.model.input_scaling)


def build_generator(cfg: ExperimentConfig):
    """UniGEM / EDM joint / property predictor on the branched EGNN (QM9)."""
    from ..nn.branched_egnn import BranchedEGNN
    from .unigem import MoleculeGenerator

    m, u = cfg.model, cfg.objective.unigem
    n_types = 5
    backbone = BranchedEGNN(hidden=m.hidden, shared_layers=m.shared_layers, branch_layers=m.layers - m.shared_layers,
                            node_features=0 if u.mode == "unigem" else n_types, time_dim=m.time_embedding,
                            two_branches=m.two_branches and u.mode == "unigem", cutoff=m.cutoff)
    return MoleculeGenerator(backbone, build_schedule(cfg.diffusion), u.mode, u.nucleation_step,
                             predict_types=u.predict_types, predict_property=u.property is not None)


def time_interval(cfg: ExperimentConfig) -> tuple[float, float]:
    """The diffusion-time interval a config trains on: (t_min, 1), or an expert's own interval."""
    interval = cfg.training.time_interval
    return (cfg.diffusion.t_min, 1.0) if interval is None else (max(interval[0], cfg.diffusion.t_min), interval[1])


def state_scale(cfg: ExperimentConfig, sigma_data: float) -> float:
    """State vectors are diffused divided by this: their std (unit variance, as the VP process
    assumes) with ``model.input_scaling``, else 1."""
    return float(sigma_data) if cfg.model.input_scaling else 1.0
