"""Workflows: what a run does after training, one module per family, registered once.

    molecules    fixed-composition molecule sets (LJ clusters, MD17-style trajectories, Parquet):
                 PC sampling in actors; distance TVD, h(r), energy TVD, W2 against a reference
    states       state vectors (Müller-Brown, coarse-grained alanine dipeptide): iid samples and
                 Langevin simulation with the learned forces; JS divergence and PMF error
    generation   de novo molecules (QM9): ancestral generation in actors; stability, validity,
                 uniqueness, novelty, and a property head's MAE
    relaxation   unstable molecules relaxed by the methods of ``moldiff.relaxation.methods``
                 (MoreRed's samplers, FIRE on a learned force field, MMFF94)

Each implements :class:`Workflow`: ``check`` (the config combinations it can run), ``sample`` and
``evaluate`` (which returns a :class:`moldiff.metrics.report.Report`, written as ``metrics.json``).
The stage runner (``moldiff.experiment``) looks the workflow up with :func:`workflow_for` and names
none of them. Which workflow a config runs: ``workflow`` when the config sets it, else the one its
objective declares (``moldiff.objectives.registry``), else the one of its data source's kind
(``DEFAULT_WORKFLOW``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar

from ..metrics.report import Report


class Workflow:
    """One family's sample and evaluate stages. Subclasses set ``name`` and register an instance."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    simulates: ClassVar[bool] = False          # runs Langevin with the learned forces (simulation.enabled)

    def check_models(self, cfg) -> None:
        """Before any stage: the other runs' models this configuration uses are of the right kind
        (raise ``CheckpointError``). ``sampling.checkpoint`` is checked for every workflow."""

    def check(self, cfg) -> list[str]:
        """Problems with running ``cfg`` in this workflow (messages naming the config keys); [] if none."""
        return []

    def sample(self, cfg, data, checkpoint: Path, run_dir: Path, log: Callable[[str], None]) -> None:
        raise NotImplementedError

    def evaluate(self, cfg, data, run_dir: Path, log: Callable[[str], None]) -> Report:
        raise NotImplementedError

    def headline(self, report: Report) -> list[str]:
        """The entries a study table shows for this workflow's runs, in order (default: every one)."""
        return report.keys()


def headline(report: Report) -> list[str]:
    """The headline entries of a run's report, by the workflow that wrote it; for a report from
    before workflows recorded themselves, the first built-in workflow that finds its entries there."""
    _load_builtin()
    if report.workflow in WORKFLOWS:
        return WORKFLOWS[report.workflow].headline(report)
    for name in BUILTIN_WORKFLOWS:
        if type(WORKFLOWS[name]).headline is not Workflow.headline and (keys := WORKFLOWS[name].headline(report)):
            return keys
    return report.keys()


WORKFLOWS: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    """Add a workflow (a module's own ``register(MyWorkflow())``; tests may register their own)."""
    if not workflow.name:
        raise ValueError(f"{type(workflow).__name__} has no name")
    WORKFLOWS[workflow.name] = workflow
    return workflow


BUILTIN_WORKFLOWS = ("molecules", "states", "generation", "relaxation")


def _load_builtin() -> None:
    from . import generation, molecules, relaxation, states  # noqa: F401  (each registers itself)


# the workflow of each kind of data (config.SOURCE_KINDS) when neither the config nor the objective names one
DEFAULT_WORKFLOW = {"molecules": "molecules", "states": "states", "compositions": "generation"}


def workflow_name(cfg) -> str:
    """The workflow ``cfg`` runs (see the module docstring for the rule)."""
    from ..config import SOURCE_KINDS
    from ..objectives.registry import objective_spec

    if cfg.workflow:
        return cfg.workflow
    declared = objective_spec(cfg.objective.name).workflow
    return declared or DEFAULT_WORKFLOW[SOURCE_KINDS[cfg.data.source]]


def workflow_for(cfg) -> Workflow:
    _load_builtin()
    name = workflow_name(cfg)
    if name not in WORKFLOWS:
        raise KeyError(f"workflow {name!r} is not registered; workflows: {', '.join(WORKFLOWS)}")
    return WORKFLOWS[name]


def names() -> list[str]:
    _load_builtin()
    return list(WORKFLOWS)


def config_problems(cfg) -> list[str]:
    """Every reason ``cfg`` cannot run: an unknown workflow, its objective's own rules, the
    workflow's rules, and training precision. Config validation calls this, so a bad combination
    fails before any work."""
    from ..config import bf16_conflict
    from ..objectives.registry import OBJECTIVES

    _load_builtin()
    if cfg.workflow is not None and cfg.workflow not in WORKFLOWS:
        return [f"workflow: unknown workflow {cfg.workflow!r}; workflows: {', '.join(WORKFLOWS)}"]
    if cfg.objective.name not in OBJECTIVES:
        return [f"objective.name: unknown objective {cfg.objective.name!r}; objectives: {', '.join(OBJECTIVES)}"]
    from ..objectives.terms import term_problems
    problems = OBJECTIVES[cfg.objective.name].problems(cfg) + term_problems(cfg) + workflow_for(cfg).check(cfg)
    if cfg.simulation.enabled and not workflow_for(cfg).simulates:
        problems.append(f"simulation.enabled: the {workflow_for(cfg).name} workflow does not simulate (the "
                        f"{', '.join(n for n, w in WORKFLOWS.items() if w.simulates)} workflows do)")
    if cfg.data.source == "qm9" and cfg.data.qm9.gfn2_labels is not None and cfg.objective.name != "force_field":
        problems.append("data.qm9.gfn2_labels are force-field training labels: only objective.name force_field uses them")
    if cfg.model.energy_head and workflow_for(cfg).name != "molecules":
        problems.append("model.energy_head is implemented for molecules of one composition (the molecules workflow)")
    if cfg.training.precision == "bf16" and (why := bf16_conflict(cfg)):
        problems.append(f"training.precision: bf16 does not fit this run: {why}; use fp32 or tf32")
    return problems


def trained_checkpoint(cfg, run_dir: Path) -> Path:
    """The checkpoint a run samples and evaluates with: ``sampling.checkpoint`` (a run directory or
    a checkpoint directory) when it is set, else the run's own ``checkpoints/final``."""
    if not cfg.sampling.checkpoint:
        return Path(run_dir) / "checkpoints" / "final"
    given = Path(cfg.sampling.checkpoint).expanduser()
    final = given / "checkpoints" / "final" if (given / "checkpoints" / "final").is_dir() else given
    if not (final / "meta.json").is_file():
        raise FileNotFoundError(f"sampling.checkpoint: {final} holds no trained model (no meta.json)")
    from ..train.run_checks import check_trained_by
    check_trained_by(cfg, final, "sampling.checkpoint")
    return final
