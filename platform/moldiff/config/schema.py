"""The experiment config's schema: one pydantic section per part of a run. Unknown keys are errors
(``extra="forbid"``); which combinations of sections can run is checked by the workflows and
objectives they belong to (``moldiff.workflows.config_problems``, called from the root model's
validator)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..relaxation.methods import METHODS as RELAXATION_METHODS


STAGES = ("data", "train", "sample", "evaluate")


class ConfigError(ValueError):
    """A configuration problem, reported with the file and the dotted key path."""


class _Section(BaseModel):
    # extra="forbid": a typo in a key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------- data


class MCMCConfig(_Section):
    """Many independent MALA chains; each saved frame is an equilibrium sample after burn-in."""

    n_chains: int = Field(256, ge=2)
    burn_in: int = Field(4000, ge=0, description="MALA steps discarded per chain")
    n_steps: int = Field(4000, ge=1, description="MALA steps after burn-in per chain")
    save_every: int = Field(100, ge=1, description="stride between saved frames")
    step_size: float = Field(5e-4, gt=0, description="MALA step h: x' = x + h F/kT + sqrt(2h) xi")
    init_spacing: float = Field(1.1, gt=0, description="lattice spacing of the initial cluster")
    n_tasks: int = Field(2, ge=1, description="Ray tasks the chains are split over")


class LJSource(_Section):
    """Lennard-Jones cluster of the PSM paper (r_m = 1, tau = 1) plus the harmonic term."""

    n_particles: int = Field(13, ge=2, le=2000)
    pair_convention: Literal["double", "single"] = Field(
        "double",
        description="double: ordered double sum without 1/2 (c=2, public LJ benchmark data); "
        "single: each pair once (c=1, the paper's formula read literally)",
    )
    harmonic_k: float = Field(1.0, ge=0, description="strength of 0.5 k sum |x_i - x_mean|^2")
    kT: float = Field(1.0, gt=0)
    reference: MCMCConfig = MCMCConfig()


class NpzSource(_Section):
    """An MD17/MD22 ``.npz`` trajectory (keys R, z, E, F; Angstrom, kcal/mol, kcal/mol/A)."""

    path: str
    kT: float = Field(1.0, gt=0, description="thermal energy in the file's energy unit")


class AseSource(_Section):
    """Any file ASE reads (extxyz, ASE .db, .traj, xyz): one file or a glob, with energies and forces
    where present, converted once to Angstrom and kcal/mol (moldiff.data.ase_files)."""

    path: str = Field(description="a file or a glob (files are read in sorted order)")
    index: str = Field(":", description="ASE's frame selection per file (':' every frame, '::10' every tenth)")
    energy_unit: Literal["eV", "kcal/mol", "kJ/mol", "Hartree"] = Field("eV", description="of the files' "
                                                                        "energies, forces and kT")
    length_unit: Literal["Angstrom", "nm", "Bohr"] = "Angstrom"
    kT: Optional[float] = Field(None, gt=0, description="thermal energy of the frames, in energy_unit (PSM's "
                                "force target needs it)")
    energy_key: str = Field("energy", description="atoms.info key of the energy; else the calculator's stored one")
    forces_key: str = Field("forces", description="atoms.arrays key of the forces; else the calculator's")
    properties: list[str] = Field(default_factory=list, description="atoms.info keys kept as per-frame properties")


class XtbMDSource(_Section):
    """An MD17-style trajectory generated here: Langevin MD with GFN2-xTB forces (needs tblite)."""

    molecule: Literal["ethanol", "malonaldehyde", "uracil", "toluene", "naphthalene", "salicylic_acid", "aspirin"]
    temperature_K: float = Field(500.0, gt=0)
    timestep_fs: float = Field(0.5, gt=0, le=5)
    friction_per_fs: float = Field(0.01, gt=0)
    equilibration_steps: int = Field(2000, ge=0)
    save_every: int = Field(10, ge=1, description="MD steps between saved frames")
    n_frames: int = Field(10000, ge=2)
    chunk_frames: int = Field(500, ge=1, description="frames per resumable chunk")


class MullerBrownSource(_Section):
    """The 2-D Müller-Brown system (Fokker-Planck paper): OpenMM-style Langevin chains in the
    potential's own units. The training set and the reference are independent runs (their own seed
    streams) of ``n_chains`` chains each, started at the global minimum."""

    kT: float = Field(23.0, gt=0)
    mass: float = Field(0.5, gt=0)
    friction: float = Field(1.0, gt=0)
    dt: float = Field(0.005, gt=0)
    n_chains: int = Field(100, ge=1)
    burn_in: int = Field(2000, ge=0, description="steps discarded per chain")
    n_frames: int = Field(1000, ge=1, description="frames saved per chain")
    save_every: int = Field(50, ge=1, description="steps between saved frames")
    reference_chains: int = Field(100, ge=2, description="chains of the independent reference run")
    n_tasks: int = Field(2, ge=1, description="Ray tasks the chains are split over")


class AlanineSource(_Section):
    """Alanine dipeptide (amber99sb-ildn, OBC implicit solvent) by replica-exchange Langevin MD in
    OpenMM, coarse-grained to the backbone beads C, N, CA, C, N (needs openmm). The training set and
    the reference are independent runs; states are the 15 centred bead coordinates in nm."""

    t_min: float = Field(300.0, gt=0, description="K; frames come from this replica")
    t_max: float = Field(600.0, gt=0)
    n_replicas: int = Field(4, ge=1, le=32)
    friction_per_ps: float = Field(1.0, gt=0)
    timestep_fs: float = Field(2.0, gt=0, le=4)
    constraints: Literal["none", "hbonds"] = Field("hbonds", description="none is the bgmol setting (use 1 fs)")
    swap_every: int = Field(500, ge=1, description="MD steps between exchange attempts")
    save_every: int = Field(500, ge=1, description="MD steps between saved frames (1 ps at 2 fs)")
    equilibration_steps: int = Field(5000, ge=0)
    n_frames: int = Field(10000, ge=1, description="frames per run")
    chunk_frames: int = Field(1000, ge=1, description="frames per resumable chunk")
    n_runs: int = Field(2, ge=1, description="independent runs of the training set (Ray tasks)")
    reference_runs: int = Field(2, ge=1, description="independent runs of the reference")

    @model_validator(mode="after")
    def _ladder(self):
        if self.n_replicas > 1 and self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must be above t_min ({self.t_min}) with several replicas")
        return self


class ParquetSource(_Section):
    """A moldiff Parquet dataset directory (``data.parquet`` + ``manifest.json``)."""

    path: str


class GFN2LabelsConfig(_Section):
    """GFN2-xTB (tblite) labels for a force field: each of the first ``n_molecules`` training molecules
    plus ``n_perturbed`` copies displaced by forward diffusion to a random step in [k_lo, k_hi], and
    ``n_thermal`` frames of one short GFN2-xTB Langevin run per molecule (hot geometries, labelled
    by the run itself)."""

    n_molecules: Optional[int] = Field(2000, ge=1, description="null = every training molecule (MoreRed's data)")
    n_perturbed: int = Field(4, ge=0)
    k_lo: int = Field(5, ge=1)
    k_hi: int = Field(100, ge=1, description="beyond ~100 of 1000 steps atoms collide and GFN2 forces explode")
    n_thermal: int = Field(0, ge=0, description="frames kept, evenly spaced, from one GFN2-xTB Langevin run per "
                           "molecule (thermal_steps GFN2 calls each: ~8 ms per call for a QM9 molecule)")
    thermal_K: float = Field(1000.0, gt=0, description="the run's temperature (the thermal relaxation inputs')")
    thermal_steps: int = Field(60, ge=1, description="steps of 0.5 fs")
    seed: int = 0


class QM9Source(_Section):
    """Real QM9 from the qm9pack wheel (or CSVs in its layout), split train / val / test in EDM's
    proportions by a seeded permutation; filters and caps apply after the split."""

    csv_dir: Optional[str] = Field(None, description="folder of QM9 CSVs in the qm9pack layout; null = the "
                                   "installed qm9pack wheel (pip install 'moldiff[qm9]')")
    split_seed: int = Field(0, description="seed of the train / val / test permutation")
    max_heavy_atoms: Optional[int] = Field(None, ge=1, le=9, description="keep molecules with at most this "
                                           "many heavy atoms (small runs)")
    max_atoms: Optional[int] = Field(None, ge=1, le=29, description="keep molecules with at most this many atoms")
    n_train: Optional[int] = Field(None, ge=1, description="cap on training molecules; null = all selected")
    n_val: Optional[int] = Field(None, ge=1, description="cap on validation molecules")
    n_test: Optional[int] = Field(None, ge=1, description="cap on test molecules (the reference of the metrics)")
    gfn2_labels: Optional[GFN2LabelsConfig] = Field(
        None, description="train on GFN2-xTB energies and forces of training molecules and displaced copies "
        "(the force-field baseline); null = the DFT geometries alone")


class TrainSetConfig(_Section):
    """Which frames the model is trained on."""

    selection: Literal["random_subset", "first_frames", "all"] = Field(
        "random_subset",
        description="random_subset: unbiased iid frames; first_frames: the first N frames of one "
        "chain/trajectory (biased); all: every frame of the source",
    )
    n_frames: int = Field(1000, ge=1)
    save_every: int = Field(1, ge=1, description="first_frames on LJ: stride of the single chain")
    chain_start: Literal["lattice", "equilibrated"] = Field(
        "lattice", description="first_frames on LJ: where the single chain starts"
    )
    data_kT: Optional[float] = Field(
        None, gt=0, description="LJ only: sample the training frames at this kT (a cold, biased set); "
        "energies and forces are still those of the system"
    )


# every data source and the kind of data it gives (molecules: one composition, e.g. LJ clusters or one
# molecule's trajectory; states: flat state vectors; compositions: molecules of many compositions)
SOURCE_KINDS = {"lj": "molecules", "npz": "molecules", "parquet": "molecules", "xtb_md": "molecules", "ase": "molecules",
                "muller_brown": "states", "alanine": "states", "qm9": "compositions"}


class DataConfig(_Section):
    source: Literal[tuple(SOURCE_KINDS)] = "lj"
    root: str = Field("data", description="cache directory for generated datasets")
    seed: int = Field(0, description="seed of data generation and subset selection (kept apart from "
                      "the training seed so that training seeds share one dataset)")
    lj: Optional[LJSource] = None
    npz: Optional[NpzSource] = None
    parquet: Optional[ParquetSource] = None
    xtb_md: Optional[XtbMDSource] = None
    ase: Optional[AseSource] = None
    muller_brown: Optional[MullerBrownSource] = None
    alanine: Optional[AlanineSource] = None
    qm9: Optional[QM9Source] = None
    train: TrainSetConfig = TrainSetConfig()
    materialize: bool = Field(
        True, description="load the training set into the object store before training starts "
        "(keeps Ray Data from starving when Train workers hold every CPU)"
    )

    @model_validator(mode="after")
    def _source_section_present(self):
        if getattr(self, self.source) is None:
            if self.source == "lj":
                self.lj = LJSource()
            elif self.source == "muller_brown":
                self.muller_brown = MullerBrownSource()
            elif self.source == "alanine":
                self.alanine = AlanineSource()
            elif self.source == "qm9":
                self.qm9 = QM9Source()
            else:
                raise ValueError(f"data.source is '{self.source}' but the section data.{self.source} is missing")
        return self

    @property
    def is_vector_system(self) -> bool:
        """States are flat vectors: Müller-Brown (x, y), coarse-grained alanine dipeptide (15 bead coordinates)."""
        return SOURCE_KINDS[self.source] == "states"


# ---------------------------------------------------------------------------------- model etc.


class ModelConfig(_Section):
    backbone: Literal["egnn", "e3nn", "mlp", "graph_transformer", "branched_egnn", "painn"] = Field(
        "egnn", description="egnn: E(n) graph network; e3nn: tensor products over spherical harmonics; "
        "branched_egnn: EGNN whose deep layers split into a nucleation and a growth branch (UniGEM, QM9); "
        "painn: PaiNN with scalar and vector features (MoreRed; needs a cutoff); "
        "mlp: time-conditioned MLP on flat state vectors; graph_transformer: attention over the particles "
        "of a state vector with difference-vector edges (coarse-grained molecules)"
    )
    hidden: int = Field(64, ge=4, le=4096)
    layers: int = Field(4, ge=1, le=32)
    time_embedding: int = Field(32, ge=2, le=1024, description="sinusoidal features of t")
    time_max_freq: float = Field(1000.0, gt=0, description="egnn/e3nn: highest frequency of the sinusoidal time "
                                 "features (1000 resolves t ~ 1e-3; the Fokker-Planck term's finite difference in t "
                                 "needs time_max_freq * h_back <= 0.05)")
    cutoff: Optional[float] = Field(None, gt=0, description="radius graph cutoff; null = fully connected")
    input_scaling: bool = Field(
        True, description="molecules: feed x_t * sigma_data / sqrt(alpha^2 sigma_data^2 + sigma^2) so the network "
        "sees coordinates at the data's scale at every noise level; state vectors: diffuse states divided by "
        "their std (unit variance, as the VP process assumes)"
    )
    max_atomic_number: int = Field(100, ge=1, le=118)
    atom_identity: int = Field(0, ge=0, description="egnn/e3nn: > 0 embeds each atom's index within its molecule "
                               "(at least the largest atom count), so the atoms of a single-molecule dataset "
                               "(MD17) are distinguishable; 0 = permutation equivariant (LJ, QM9)")
    coord_range: Optional[float] = Field(None, gt=0, description="egnn: soft bound on the summed coordinate "
                                         "updates (r tanh(w / r) per layer); null = unbounded (best samples on LJ-13)")
    lmax: int = Field(2, ge=1, le=4, description="e3nn: highest spherical-harmonic degree of edge vectors")
    hidden_layers: list[int] = Field(default_factory=lambda: [92, 92, 92], min_length=1,
                                     description="mlp: widths of the hidden layers")
    conservative: bool = Field(True, description="mlp / graph_transformer: the network outputs log p_t and the "
                               "score is its gradient (needed for the Fokker-Planck term and stable simulation)")
    energy_head: bool = Field(False, description="egnn/e3nn: the network outputs log p_t as a sum of per-atom terms on "
                              "its final invariant features and the score is its gradient (a conservative model, as "
                              "conservative: true for state vectors; needed for objective.terms fokker_planck)")
    heads: int = Field(8, ge=1, le=64, description="graph_transformer: attention heads")
    head_dim: int = Field(64, ge=1, le=1024, description="graph_transformer: width of each head")
    radial_max: float = Field(6.0, gt=0, description="e3nn: range of the radial basis when cutoff is null")
    shared_layers: int = Field(1, ge=0, description="branched_egnn: layers every molecule passes; the other "
                               "layers - shared_layers form each branch")
    n_rbf: int = Field(20, ge=2, le=128, description="painn: Gaussian radial basis functions")
    two_branches: bool = Field(True, description="branched_egnn in unigem mode: separate nucleation and growth "
                               "branches (false: one branch, the single-branch ablation)")

    @model_validator(mode="after")
    def _branch_layers(self):
        if self.backbone == "branched_egnn" and self.shared_layers >= self.layers:
            raise ValueError(f"model.shared_layers ({self.shared_layers}) must be below model.layers ({self.layers})")
        if self.backbone == "painn" and self.cutoff is None:
            raise ValueError("model.backbone painn needs model.cutoff (MoreRed: 5.0 Angstrom)")
        return self


class DiffusionConfig(_Section):
    process: Literal["ve", "vp", "polynomial"] = Field("ve", description="ve / vp: continuous SDEs; polynomial: "
                                                        "EDM's discrete DDPM schedule (UniGEM, MoreRed)")
    sigma_min: float = Field(0.01, gt=0, description="VE")
    sigma_max: float = Field(8.0, gt=0, description="VE")
    beta_min: float = Field(0.1, gt=0, description="VP")
    beta_max: float = Field(20.0, gt=0, description="VP")
    t_min: float = Field(1e-5, ge=0, lt=0.5, description="lower clamp of diffusion time")
    n_steps: int = Field(1000, ge=2, description="polynomial: T, the number of discrete steps")
    power: float = Field(2.0, gt=0, description="polynomial: exponent of (1 - (s/T)^power)^2")
    precision: float = Field(1e-5, gt=0, lt=0.5, description="polynomial: alpha^2 = (1 - 2p) alpha~^2 + p")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"diffusion.sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.beta_min >= self.beta_max:
            raise ValueError(f"diffusion.beta_min ({self.beta_min}) must be below beta_max ({self.beta_max})")
        return self


class PSMConfig(_Section):
    """Potential score matching: force labels replace the noise target at small diffusion time."""

    weighting: Literal["piecewise", "piecewise_weighted", "force_only"] = Field(
        "piecewise", description="piecewise: w = 1[t <= t_p]; piecewise_weighted: w = 1/(1+exp(s (t - t_c))) "
        "below t_cut; force_only: w = 1"
    )
    t_p: float = Field(0.05, gt=0, le=1, description="piecewise threshold (the paper: 0.05; keep <= 0.2)")
    sharpness: float = Field(50.0, gt=0, description="s of the piecewise-weighted sigmoid")
    t_c: float = Field(0.05, ge=0, le=1, description="centre of the piecewise-weighted sigmoid")
    t_cut: Optional[float] = Field(0.1, gt=0, le=1, description="w = 0 at and above this t; null = no cut")
    kT: Optional[float] = Field(None, gt=0, description="thermal energy in the dataset's energy unit; "
                                "null = the training set manifest's kT")


class FokkerPlanckConfig(_Section):
    """DSM + alpha * Fokker-Planck residual (weak form) for energy models on state vectors."""

    alpha: float = Field(5e-4, ge=0, description="weight of the FP term; 0 = plain DSM on the energy model")
    probe_sigma: float = Field(1e-4, gt=0, description="std of the weak residual's probes")
    h_back: float = Field(1e-3, gt=0, description="backward step of the d/dt finite difference")
    h_ahead: float = Field(5e-4, gt=0, description="forward step of the d/dt finite difference")
    midpoint: Optional[float] = Field(None, gt=0, lt=1, description="time-weight midpoint (half the weight "
                                      "on each side); null = w(t) = 1")


class UniGEMConfig(_Section):
    """UniGEM and its baselines on QM9 (objective.name: unigem)."""

    mode: Literal["unigem", "joint", "predictor"] = Field(
        "unigem", description="unigem: coordinates-only diffusion with type and property heads after the "
        "nucleation step; joint: EDM-style diffusion of coordinates and types (baseline); predictor: the "
        "property head alone at t = 0 with types as input (the from-scratch baseline)")
    property: Optional[str] = Field("lumo", description="the property the head predicts (alpha, gap, homo, lumo, "
                                    "mu, Cv); null = no property head")
    predict_types: bool = Field(True, description="unigem: the atom-type head (ATP); false = ablation")
    nucleation_step: int = Field(10, ge=0, description="t_n in steps of diffusion.n_steps (paper: 10 of 1000)")
    oversample: Optional[float] = Field(0.5, gt=0, lt=1, description="fraction of each batch drawn from the growth "
                                        "phase (paper: 0.5); null = uniform steps")
    predictive_at: Literal["growth", "all"] = Field("growth", description="where the type and property losses "
                                                    "act: growth phase only (UniGEM) or every step (multi-task)")
    type_weight: float = Field(1.0, ge=0)
    prop_weight: float = Field(1.0, ge=0)
    type_loss: Literal["l1", "ce"] = Field("l1", description="l1 on onehot / 4 (the authors' code) or cross-entropy")
    prop_loss: Literal["l1", "l2"] = Field("l1", description="l1 on MAD-normalised labels (code) or l2 (paper Eq. 4)")


class ForceFieldConfig(_Section):
    """Energy and force matching (objective.name: force_field), the relaxation benchmark's baseline."""

    energy_weight: float = Field(0.01, ge=0)
    force_weight: float = Field(0.99, ge=0)


class MoreRedConfig(_Section):
    """MoreRed's networks (objective.name: morered): the DDPM noise model, the time predictor, or both
    heads on one network (JT)."""

    kind: Literal["noise", "time", "joint"] = Field("joint", description="noise: eps_hat(x, k) (ITP / AS with a "
                                                     "separate time model); time: the time predictor; joint: MoreRed-JT")
    eta: float = Field(0.9, gt=0, lt=1, description="joint: weight of the noise loss (time: 1 - eta)")
    t_max: Optional[int] = Field(None, ge=1, description="train on time indices k < t_max only (relaxation "
                                 "inputs sit at small k); null = every k")
    clean_fraction: float = Field(0.0, ge=0, lt=1, description="time / joint: the fraction of each batch shown "
                                  "clean (x = x_0) with time target 0, so the time head reads relaxed structures "
                                  "as step 0 (0: the paper's training, where the least noisy step is s = 1)")


class ObjectiveConfig(_Section):
    name: str = Field(
        "dsm", description="a registered objective (moldiff.objectives.registry): dsm: w = 0; psm: force weight "
        "from objective.psm; fokker_planck: DSM + alpha FP on state vectors (objective.fokker_planck); unigem: "
        "QM9 generation and property prediction (objective.unigem); morered: relaxation by reverse diffusion with "
        "time-step prediction (objective.morered); force_field: energy and force matching on GFN2-xTB labels "
        "(the relaxation baseline, objective.force_field); or one registered outside the package")
    psm: PSMConfig = PSMConfig()
    fokker_planck: FokkerPlanckConfig = FokkerPlanckConfig()
    unigem: UniGEMConfig = UniGEMConfig()
    morered: MoreRedConfig = MoreRedConfig()
    force_field: ForceFieldConfig = ForceFieldConfig()
    options: dict[str, Any] = Field(default_factory=dict, description="settings of an objective registered "
                                    "outside the package (validated by its spec's settings model)")
    terms: list[str] = Field(default_factory=list, description="terms added to the objective's loss "
                             "(moldiff.objectives.terms): fokker_planck (the weak FP residual of a conservative "
                             "molecular model, weight objective.fokker_planck.alpha); property (UniGEM's property "
                             "head on a MoreRed network, settings objective.unigem.property / prop_weight / "
                             "prop_loss)")

    @property
    def variant(self) -> str:
        """The name results use (dsm, piecewise, piecewise_weighted, fokker_planck, ...): the objective's own rule."""
        from ..objectives.registry import OBJECTIVES
        spec = OBJECTIVES.get(self.name)
        return spec.variant_of(self) if spec is not None else self.name


class TrainingConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0, le=1.0)
    weight_decay: float = Field(5e-7, ge=0)
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adamw: decoupled weight decay (the "
                                                "Fokker-Planck paper's choice)")
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    lr_final: float = Field(0.0, ge=0, description="cosine schedule: the learning rate it decays to")
    schedule_epochs: Optional[int] = Field(
        None, ge=1, description="epochs the lr schedule spans (default: epochs); sweeps that train in stages "
        "set it to the final budget so that every stage follows one schedule"
    )
    warmup_steps: int = Field(100, ge=0)
    grad_clip: Optional[float] = Field(10.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 disables the EMA copy")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    report_every: int = Field(1, ge=1, description="epochs between reports to Ray Train (each is a barrier "
                              "across workers); epochs with a checkpoint always report")
    report_interval_s: float = Field(
        2.0, ge=0, description="and at least this many seconds of training (mean over workers) between reports: "
        "a report waits for the Train controller's next poll (ray.train_poll_interval_s), which for epochs of "
        "a fraction of a second cost up to a fifth of the time (benchmarks/train_overhead.py); 0: every "
        "report_every epochs")
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1, description="times Ray Train restarts the workers after one dies (a node "
                              "lost, a process killed, also an error in the training code), each time from the last checkpoint; -1 = no limit; "
                              "0 (Ray's default) fails at once, which a deterministic bug should")
    augment_rotations: bool = Field(False, description="state vectors of particles: rotate every training "
                                    "state by a random rotation each step (approximate rotation invariance)")
    time_interval: Optional[list[float]] = Field(
        None, min_length=2, max_length=2, description="[t_lo, t_hi]: train on this diffusion-time interval "
        "only (set per expert by the mixture; null = the whole (t_min, 1))")
    cache_shard: bool = Field(
        True, description="pull the worker's shard through Ray Data once and reshuffle it locally "
        "every epoch (for datasets that fit in memory)"
    )
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        "fp32", description="training arithmetic: fp32; tf32 (float32 with TF32 matrix products on CUDA GPUs, "
        "the same as fp32 on CPUs); bf16 (autocast of the forward pass and loss to bfloat16). bf16 is refused "
        "for conservative models and force fields (their scores and forces are autograd gradients of an "
        "energy, trained through a second derivative) and for the Fokker-Planck term (finite differences "
        "in t of log p, which bfloat16's 8-bit mantissa turns into rounding noise)"
    )


class WindowConfig(_Section):
    """Sampling effort where a model learned its score from force labels (PSM's window t <= t_p):
    moldiff.sampling.sde.WindowRefinement. The defaults change nothing."""

    t_window: float = Field(0.05, gt=0, le=1, description="the window: t <= t_window (PSM's t_p)")
    correctors: int = Field(0, ge=0, description="extra corrector (Langevin) steps, with the snr step rule, after "
                            "every predictor step that lands inside the window")
    langevin_steps: int = Field(0, ge=0, description="Langevin steps x += dt s(x, t_min) + sqrt(2 dt) z at t_min "
                                "after the reverse diffusion, before the final denoising")
    langevin_dt: float = Field(1e-3, gt=0, description="their step (time units of the overdamped dynamics at the "
                               "score's kT; LJ-13 at kT 1 needs ~0.25 to relax cold frames)")
    oracle: bool = Field(False, description="use the data's potential's exact score F(x)/kT (the t -> 0 limit) "
                         "instead of the learned one inside the window: what a perfect window gives with this "
                         "sampler (sources with an analytic potential: lj)")


class SamplingConfig(_Section):
    sampler: Literal["em", "pc"] = "pc"
    n_steps: int = Field(1000, ge=1)
    n_corrector: int = Field(1, ge=0)
    snr: float = Field(0.16, gt=0)
    final_denoise: bool = True
    time_grid: Literal["linear", "power", "edm"] = Field(
        "linear", description="sampling times: linear in t; power: t_min + (1 - t_min)(1 - i/N)^grid_rho (more "
        "steps at small t: a fraction t_p^(1/rho) of them below t_p); edm: EDM's rho grid in sigma mapped back to t "
        "(on a geometric VE schedule fewer small-t steps than linear)")
    grid_rho: float = Field(7.0, gt=0, description="power / edm time grids: rho (power: 2 is a good start)")
    window: WindowConfig = WindowConfig()
    n_samples: int = Field(1000, ge=1, description="samples per seed")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    batch_size: int = Field(250, ge=1, description="molecules per actor call")
    use_ema: bool = True
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the model's message-passing blocks in every sampling, generation and "
        "simulation actor (moldiff.nn.compile: 2-4 x faster per call for 10-30 s of compilation per actor; eager "
        "again with a warning where compilation fails); auto: where an actor has at least 200k molecule network "
        "calls to make")
    checkpoint: Optional[str] = Field(
        None, description="sample from this run directory's final checkpoint (or this checkpoint directory) "
        "instead of training here: another sampler, other inputs or more samples from a trained model, "
        "in a run directory of its own")


class ExpertsConfig(_Section):
    """A mixture of time-interval experts: expert i covers [boundaries[i-1], boundaries[i]) (low t
    first), is trained as its own Ray Train run (all launched concurrently) with the run's config plus
    its ``members[i]`` overrides (dotted keys), and the mixture is assembled from their checkpoints."""

    boundaries: list[float] = Field(min_length=1, description="interval boundaries inside (0, 1), increasing")
    members: list[dict[str, Any]] = Field(description="per expert, low t first: dotted-key overrides")
    max_concurrent: Optional[int] = Field(None, ge=1, description="experts trained at once; null = as many "
                                          "as the cluster's CPUs hold")

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.members) != len(self.boundaries) + 1:
            raise ValueError(f"{len(self.boundaries)} boundaries need {len(self.boundaries) + 1} members, "
                             f"got {len(self.members)}")
        if any(not 0 < b < 1 for b in self.boundaries) or self.boundaries != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries must be increasing and inside (0, 1), got {self.boundaries}")
        for i, member in enumerate(self.members):
            bad = [k for k in member if k.split(".")[0] in ("experts", "simulation", "name", "output_dir", "data")]
            if bad:
                raise ValueError(f"members[{i}]: {bad} cannot differ between experts")
        return self


class SimulationConfig(_Section):
    """Langevin dynamics with the learned forces kT * s(x, t_sim) (OpenMM's Langevin scheme)."""

    enabled: bool = False
    kT: Optional[float] = Field(None, gt=0, description="null = the dataset manifest's kT")
    mass: Optional[float] = Field(None, gt=0, description="null = the dataset's masses (manifest)")
    friction: float = Field(1.0, gt=0)
    dt: float = Field(0.005, gt=0)
    t_sim: float = Field(1e-5, ge=0, lt=1, description="diffusion time at which the score is the force")
    n_chains: int = Field(20, ge=1, description="independent chains per seed, started from random training frames")
    burn_in: int = Field(0, ge=0)
    n_frames: int = Field(5000, ge=1, description="frames saved per chain")
    save_every: int = Field(50, ge=1)
    num_actors: int = Field(2, ge=1, description="Ray actors the chains are split over")


class EvaluationConfig(_Section):
    generate: bool = Field(True, description="QM9: generate molecules and judge them (false: property MAE only, "
                           "e.g. inside a sweep whose finalists then generate)")
    posebusters: bool = Field(False, description="QM9 generation, and relaxations judged as molecules: also "
                              "PoseBusters' plausibility checks (posebusters_<check> pass fractions and "
                              "posebusters_all; ~0.1 s per plausible molecule, but its energy ratio embeds 50 "
                              "ETKDG conformers of each distinct molecule, which took 2 min for one implausible "
                              "sample of an untrained model)")
    distance_bins: int = Field(200, ge=2)
    energy_bins: int = Field(50, ge=2)
    max_reference: int = Field(20000, ge=10, description="cap on reference frames used by the metrics")
    w2: bool = Field(True, description="W2 on flattened coordinates (no alignment: meaningful for LJ "
                     "clusters as in the benchmarks, not for molecules that rotate)")
    w2_samples: int = Field(1000, ge=2, description="samples per side of the exact W2 assignment")
    stability: bool = Field(False, description="MD17 stability: bonded distances within tolerance of equilibrium")
    stability_tolerance: float = Field(0.5, gt=0, description="Angstrom")
    js_bins: int = Field(100, ge=2, description="2-D systems: bins per axis of the JS divergence")
    pmf_bins: int = Field(64, ge=3, description="2-D systems: bins per axis of the PMF error")
    pmf_limits: Optional[list[list[float]]] = Field(
        None, description="2-D projections: [[lo, hi], [lo, hi]] of the PMF grid; null = the system's "
        "(Müller-Brown x in [-1.8, 1.1], y in [-0.5, 2.0]; dihedrals [-pi, pi])")


class RelaxationInputsConfig(_Section):
    """Unstable inputs made from stable molecules of one split (data.relaxation_inputs)."""

    split: Literal["test", "validation"] = Field(
        "test", description="the molecules perturbed: test (results), or validation (sweeps select on these, so "
        "their choice never sees the test molecules)")
    n_molecules: Optional[int] = Field(200, ge=1, description="molecules perturbed (null = the whole split)")
    kinds: list[Literal["etkdg", "diffusion", "thermal", "prior"]] = Field(
        default_factory=lambda: ["etkdg", "diffusion", "thermal"], min_length=1,
        description="prior: pure noise with the molecule's composition, i.e. generation (judged by validity)")
    diffusion_steps: list[int] = Field(default_factory=lambda: [50, 150, 250], min_length=1)
    thermal_K: float = Field(1000.0, gt=0, description="temperature of the short GFN2-xTB runs")
    thermal_steps: int = Field(200, ge=1, description="0.5 fs steps of each GFN2-xTB run")
    seed: int = 0
    from_run: Optional[str] = Field(
        None, description="instead of perturbing stable molecules: the molecules another run generated "
        "(<run>/samples/seed_<s>/, e.g. a UniGEM run's; the first n_molecules over its seeds), inputs of kind "
        "generated with no reference geometry, judged as molecules (stability, validity) before and after")


class RelaxationConfig(_Section):
    """MoreRed relaxation of unstable molecules (objective.name: morered)."""

    samplers: list[Literal[tuple(RELAXATION_METHODS)]] = Field(
        default_factory=lambda: ["jt"], min_length=1, description="MoreRed: jt needs a joint model, itp / as a noise "
        "model plus time_run; force field: fire (batched FIRE on the learned forces); mmff: RDKit MMFF94, the "
        "classical reference (needs no model)")
    fmax: float = Field(0.005, gt=0, description="fire / lbfgs: convergence on the largest force (eV/A; the paper's 5 meV/A)")
    time_run: Optional[str] = Field(None, description="run directory (or checkpoint directory) of a trained time "
                                    "predictor (objective.morered.kind: time), for itp / as")
    max_steps: int = Field(1000, ge=1)
    k_min: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        0, description="a molecule has converged after a step at predicted index <= k_min (the paper: 0); auto: "
        "for as / jt, the median index the time predictor reads on clean validation structures "
        "(moldiff.relaxation.threshold); outputs with k_min > 0 are labelled <sampler>-kmin<k>")
    noise_scale: float = Field(1.0, ge=0, le=1, description="MoreRed samplers: scale of every reverse step's noise "
                               "(1: the paper's DDPM steps; 0: noise-free steps, a deterministic relaxation; label "
                               "suffix -det)")
    final_denoise: bool = Field(False, description="MoreRed samplers: a molecule that stops at a threshold k_min > 0 "
                                "is mapped to its Tweedie estimate of x0 (one more network call), instead of keeping "
                                "the noise of its last stochastic step (label suffix -denoised)")
    slots: int = Field(32, ge=1, description="molecules relaxed at once per actor (continuous batching; on one "
                       "CPU thread, compiled, 16 to 64 QM9 molecules relax within a few percent of the same rate and "
                       "4.6 x faster than one at a time, benchmarks/relax_throughput.py; a GPU wants hundreds)")
    num_actors: int = Field(2, ge=1, description="Ray actors, each with one model replica")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    inputs: RelaxationInputsConfig = RelaxationInputsConfig()
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the models' message-passing blocks in every relaxation actor "
        "(moldiff.nn.compile); auto: where an actor relaxes enough inputs for it to pay (at about 100 steps each, "
        "at least 200k molecule network calls)")
    precision: Literal["float32", "float64"] = Field(
        "float32", description="arithmetic of the relaxation models and samplers (float64: the earlier "
        "default, many times slower on GPUs)")
    energy_subset: int = Field(50, ge=0, description="inputs (the same ids in every run: drawn from the ids with "
                               "inputs.seed) whose relaxed structures get their GFN2-xTB energy above the GFN2 "
                               "minimum nearest the DFT target in evaluate; 0: none (needs tblite)")


class RayConfig(_Section):
    address: Optional[str] = Field(
        None, description="cluster address; null = RAY_ADDRESS if set, else an embedded local Ray"
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP)")
    use_gpu: bool = False
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how Train workers are placed on nodes (STRICT_SPREAD: one per node)"
    )
    cpus_per_worker: float = Field(1.0, gt=0)
    num_sampling_actors: int = Field(2, ge=1)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(1.0, gt=0, le=1, description="with use_gpu: the share of one GPU each "
                                  "sampling, simulation or relaxation actor holds (0.25: four actors per GPU)")
    gpu_wait_s: float = Field(0, ge=0, description="with use_gpu: on an autoscaling cluster whose GPU nodes "
                              "start at zero, ask the autoscaler for GPUs and wait this long for them before "
                              "failing; 0: fail at once when the cluster has too few")
    torch_threads: int = Field(1, ge=1, description="torch threads in every worker and actor")
    storage_path: Optional[str] = Field(
        None, description="Ray Train checkpoints: default <run_dir>/ray; else <storage_path>/<name> (experts: "
        "<storage_path>/<name>/experts/expert<i>), a path or a URI Ray Train accepts (s3://bucket/prefix). "
        "Must be storage every node reaches on multi-node"
    )
    num_cpus: Optional[int] = Field(None, ge=1, description="embedded local Ray only")
    object_store_memory: Optional[int] = Field(None, ge=78643200, description="embedded local Ray only (bytes)")
    worker_start_timeout_s: int = Field(300, ge=10)
    train_poll_interval_s: float = Field(
        0.2, gt=0, le=60, description="how often the Train controller polls workers (Ray's default 2 s "
        "caps reporting at one report per 2 s, which dominated short epochs)"
    )


class TrackingConfig(_Section):
    """Experiment trackers beside TensorBoard (moldiff.tracking)."""
    mlflow: bool = Field(False, description="log the config, each epoch's training metrics and the evaluation to "
                         "MLflow (Ray Train's setup_mlflow; needs mlflow-skinny)")
    mlflow_uri: Optional[str] = Field(None, description="MLflow tracking URI; null = sqlite:///<output_dir>/mlflow.db, "
                                      "a local file and no server")
    experiment: str = Field("moldiff", description="the MLflow experiment (and the W&B project) the runs go to")
    wandb: bool = Field(False, description="log the config, each epoch's training metrics and the evaluation to "
                        "Weights & Biases (Ray Train's setup_wandb; one W&B run per run directory)")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: no account or network, runs kept under <wandb_dir>/wandb for "
        "`wandb sync`; online: needs WANDB_API_KEY or `wandb login`")
    wandb_dir: Optional[str] = Field(None, description="where W&B keeps its runs; null = output_dir")


class ExperimentConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    workflow: Optional[str] = Field(None, description="what runs after training (moldiff.workflows: molecules, "
                                    "states, generation, relaxation); null = the objective's own, else the data "
                                    "source's")
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    training: TrainingConfig = TrainingConfig()
    sampling: SamplingConfig = SamplingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    experts: Optional[ExpertsConfig] = None
    simulation: SimulationConfig = SimulationConfig()
    relaxation: RelaxationConfig = RelaxationConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _combination_runs(self):
        # the rules live with the workflow and objective they belong to (moldiff.workflows.config_problems)
        from ..workflows import config_problems
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def variant(self) -> str:
        """The name results use: the objective's variant, or for a mixture of experts ``mixture``
        (no expert has the Fokker-Planck term) or ``both`` (some expert has it)."""
        if self.experts is None:
            return self.objective.variant
        o = self.objective

        def has_fp_term(m):           # the Fokker-Planck term: the objective's own or an added term
            alpha = _member_value(m, ("objective", "fokker_planck", "alpha"), o.fokker_planck.alpha)
            name = _member_value(m, ("objective", "name"), o.name)
            terms = _member_value(m, ("objective", "terms"), o.terms)
            return bool(alpha and alpha > 0 and (name == "fokker_planck" or "fokker_planck" in terms))
        return "both" if any(has_fp_term(m) for m in self.experts.members) else "mixture"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser().resolve() / self.name


def bf16_conflict(cfg: "ExperimentConfig") -> Optional[str]:
    """Why bfloat16 training would not be trustworthy for this config, or None."""
    if cfg.objective.name == "force_field":
        return "a force field's forces are autograd gradients of its energy"
    if cfg.model.energy_head:
        return "an energy-head model's score is the autograd gradient of log p"
    if cfg.data.is_vector_system and cfg.model.conservative:
        return "a conservative model's score is the autograd gradient of log p"
    if (cfg.objective.name == "fokker_planck" or "fokker_planck" in cfg.objective.terms) and \
            cfg.objective.fokker_planck.alpha > 0:
        return "the Fokker-Planck residual takes finite differences of log p in t"
    return None


def _member_value(member: dict, path: tuple[str, ...], default):
    """A value an expert member overrides, given as a dotted key or as nested sections."""
    dotted = ".".join(path)
    if dotted in member:
        return member[dotted]
    node = member
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
