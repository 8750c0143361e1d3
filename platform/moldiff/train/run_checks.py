"""Checks of the trained models a run will use, made before any stage does work, each failing with
one error that names the file, what is wrong and what to do:

* ``sampling.checkpoint`` / ``relaxation.time_run``: a readable moldiff checkpoint (meta.json,
  weights, a config that validates) of the model family the workflow needs;
* a run name whose directory already holds a trained model (or Ray Train checkpoints to resume
  from) built with a different architecture: refused, naming the keys that differ, instead of a
  raw ``load_state_dict`` error inside a Train worker.
"""
from __future__ import annotations

from pathlib import Path

from ..config import flatten
from .checkpoint import MODEL_FILE, CheckpointError, load_meta

# what a checkpoint's weights are shaped by: a change here means a different network
ARCHITECTURE = ("model", "diffusion", "objective.name", "objective.unigem.mode", "objective.morered.kind",
                "objective.terms")



def architecture(config: dict) -> dict:
    flat = flatten(config)
    return {k: v for k, v in flat.items() if any(k == a or k.startswith(a + ".") for a in ARCHITECTURE)}


def architecture_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every architecture key that differs (a key missing on one side is
    a default the other version of moldiff did not have, and ignored)."""
    a, b = architecture(old), architecture(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def checkpoint_config(directory: Path, what: str):
    """The validated config of a checkpoint directory, with its weights file present and non-empty."""
    from ..config import ConfigError, validate_config

    meta = load_meta(directory)
    if "mixture" not in meta:
        weights = Path(directory) / MODEL_FILE
        if not weights.is_file() or weights.stat().st_size == 0:
            raise CheckpointError(f"{what}: {weights}: weights missing or empty (train that run again)")
    if "config" not in meta:
        raise CheckpointError(f"{what}: {Path(directory) / 'meta.json'}: missing key 'config' (not a moldiff checkpoint?)")
    try:
        return validate_config(meta["config"], source=str(Path(directory) / "meta.json"))
    except ConfigError as err:
        raise CheckpointError(f"{what}: its saved config does not validate with this moldiff: {err}") from None


def check_trained_by(cfg, directory: Path, what: str, needs: tuple[str, ...] = ()) -> None:
    """``directory`` (a checkpoint) holds a model this run's workflow can use: trained for the same
    workflow, and (``needs``: ``objective`` or ``objective.kind`` names) of one of those kinds."""
    from ..workflows import workflow_for

    theirs = checkpoint_config(directory, what)
    mine_wf, their_wf = workflow_for(cfg).name, workflow_for(theirs).name
    if their_wf != mine_wf:
        raise CheckpointError(f"{what}: {directory} holds a {theirs.variant} model of the {their_wf} workflow "
                              f"(data.source {theirs.data.source}); this run's {mine_wf} workflow cannot use it: "
                              "point it at a run of the same kind")
    kind = theirs.objective.name + (f".{theirs.objective.morered.kind}" if theirs.objective.name == "morered" else "")
    if needs and kind not in needs:
        raise CheckpointError(f"{what}: {directory} holds a {kind} model; this needs one of {', '.join(needs)}")


def check_run_name(cfg, stages: list[str]) -> None:
    """Refuse to train into (or sample from) a run directory whose trained model was built with
    another architecture than ``cfg``'s."""
    if cfg.sampling.checkpoint or not {"train", "sample", "evaluate"} & set(stages):
        return
    run = cfg.run_dir
    final = run / "checkpoints" / "final" / "meta.json"
    if final.is_file():
        saved, where = load_meta(final.parent).get("config"), final
    elif (run / "config.yaml").is_file() and any((run / "ray").glob("**/checkpoint_*")):
        import yaml
        saved, where = yaml.safe_load((run / "config.yaml").read_text()), run / "ray"
    else:
        return
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: no saved config to compare with; delete {run} or pick another name")
    changes = architecture_changes(saved, cfg.model_dump(mode="json"))
    if changes:
        raise CheckpointError(f"run {cfg.name!r}: {where} holds a model trained with another architecture ("
                              + "; ".join(changes) + f"). Pick another name (name=...), or delete {run} to "
                              "train this one from scratch")
