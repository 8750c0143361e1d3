"""Config -> model. An objective with a model of its own (UniGEM's generator, MoreRed's networks, the
force field) builds it through its ``ObjectiveSpec.build_model``; every other model is the data
kind's: an epsilon (or, with ``model.energy_head``, energy) model on a molecular backbone, or an
energy / score model on a state-vector network. Backbones are registered once in ``BACKBONES``
(a new one: one module in ``nn/`` plus an entry there and its name in ``config.ModelConfig``)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from .score import EpsilonModel


def _egnn(cfg: ExperimentConfig, features_out: bool = False) -> nn.Module:
    from ..nn.egnn import EGNN
    m = cfg.model
    return EGNN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                atom_identity=m.atom_identity, cutoff=m.cutoff, coord_range=m.coord_range,
                time_max_freq=m.time_max_freq, features_out=features_out)


def _e3nn(cfg: ExperimentConfig, features_out: bool = False) -> nn.Module:
    from ..nn.e3nn_net import E3NN      # e3nn costs ~2 s to import: only when asked for
    m = cfg.model
    # features_out: its final invariant features are returned always (an energy head reads them)
    return E3NN(hidden=m.hidden, layers=m.layers, time_dim=m.time_embedding, max_z=m.max_atomic_number,
                atom_identity=m.atom_identity, cutoff=m.cutoff, lmax=m.lmax, radial_max=m.radial_max,
                time_max_freq=m.time_max_freq)


def _mlp(cfg: ExperimentConfig, state_dim: int, out: int, t_mid: float) -> nn.Module:
    from ..nn.mlp import TimeMLP
    return TimeMLP(state_dim, cfg.model.hidden_layers, out, t_mid=t_mid)


def _graph_transformer(cfg: ExperimentConfig, state_dim: int, out: int, t_mid: float) -> nn.Module:
    from ..nn.graph_transformer import GraphTransformer
    m = cfg.model
    if state_dim % 3:
        raise ValueError(f"graph_transformer needs states of 3-D particles; these have {state_dim} coordinates")
    return GraphTransformer(state_dim // 3, m.hidden, m.layers, m.heads, m.head_dim, out, t_mid=t_mid)


# molecular backbones: (cfg, features_out) -> net(z, pos, batch, n_atoms, t, fixed_size) -> (displacement, features)
MOLECULAR_BACKBONES: dict[str, Callable[..., nn.Module]] = {"egnn": _egnn, "e3nn": _e3nn}
# state-vector networks: (cfg, state_dim, out, t_mid) -> net(x [B, D], t [B]) -> [B, out]
STATE_NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": _mlp, "graph_transformer": _graph_transformer}
# backbones an objective builds into a model of its own (objectives.registry: build_model)
OBJECTIVE_BACKBONES = ("branched_egnn", "painn")
BACKBONES = (*MOLECULAR_BACKBONES, *STATE_NETWORKS, *OBJECTIVE_BACKBONES)


def build_backbone(cfg: ExperimentConfig, features_out: bool = False) -> nn.Module:
    if cfg.model.backbone not in MOLECULAR_BACKBONES:
        raise ValueError(f"model.backbone {cfg.model.backbone!r} is not a molecular backbone "
                         f"({', '.join(MOLECULAR_BACKBONES)})")
    return MOLECULAR_BACKBONES[cfg.model.backbone](cfg, features_out)


def build_model(cfg: ExperimentConfig, sigma_data: float = 1.0, state_dim: int = 2):
    """The model a config trains. State-vector systems get an energy (conservative) or score
    network; ``state_dim`` is their dimension (from the dataset)."""
    from ..objectives.registry import objective_spec

    own = objective_spec(cfg.objective.name).build_model
    if own is not None:
        return own(cfg, sigma_data)
    m = cfg.model
    if m.backbone in STATE_NETWORKS:
        from .energy import EnergyModel, ScoreModel
        t_lo, t_hi = time_interval(cfg)
        net = STATE_NETWORKS[m.backbone](cfg, state_dim, 1 if m.conservative else state_dim, 0.5 * (t_lo + t_hi))
        return EnergyModel(net) if m.conservative else ScoreModel(net)
    if m.energy_head:
        from .molecular_energy import MolecularEnergyModel
        return MolecularEnergyModel(build_backbone(cfg, features_out=True), m.hidden, build_schedule(cfg.diffusion),
                                    sigma_data, m.input_scaling)
    return EpsilonModel(build_backbone(cfg), build_schedule(cfg.diffusion), sigma_data, m.input_scaling)


def build_generator(cfg: ExperimentConfig, sigma_data: float = 1.0):
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


def build_morered(cfg: ExperimentConfig, sigma_data: float = 1.0):
    """MoreRed's PaiNN noise / time / joint network (with UniGEM's property head when
    ``objective.terms`` has property)."""
    from ..objectives.terms import wants_head
    from .morered import MoreRedModel
    m = cfg.model
    return MoreRedModel(cfg.objective.morered.kind, build_schedule(cfg.diffusion), m.hidden, m.layers, m.n_rbf,
                        m.cutoff, m.max_atomic_number, predict_property=wants_head(cfg, "property"))


def build_force_field(cfg: ExperimentConfig, sigma_data: float = 1.0):
    """The PaiNN energy model of the relaxation baseline."""
    from .force_field import ForceField
    m = cfg.model
    return ForceField(m.hidden, m.layers, m.n_rbf, m.cutoff, m.max_atomic_number)


def time_interval(cfg: ExperimentConfig) -> tuple[float, float]:
    """The diffusion-time interval a config trains on: (t_min, 1), or an expert's own interval."""
    interval = cfg.training.time_interval
    return (cfg.diffusion.t_min, 1.0) if interval is None else (max(interval[0], cfg.diffusion.t_min), interval[1])


def state_scale(cfg: ExperimentConfig, sigma_data: float) -> float:
    """State vectors are diffused divided by this: their std (unit variance, as the VP process
    assumes) with ``model.input_scaling``, else 1."""
    return float(sigma_data) if cfg.model.input_scaling else 1.0
