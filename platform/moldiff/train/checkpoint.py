"""Checkpoint directories: ``model.pt`` (weights + EMA), ``optimizer.pt``, ``meta.json``.

Tensors are loaded with ``weights_only=True``; a missing or damaged file raises
:class:`CheckpointError` naming it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from ..atomic import replace_directory, temp_sibling

MODEL_FILE, OPTIMIZER_FILE, META_FILE = "model.pt", "optimizer.pt", "meta.json"


class CheckpointError(ValueError):
    pass


# what to do about a damaged or missing checkpoint, said in every error
RETRAIN = "; rerun that run's train stage, or point at another checkpoint"


def save_checkpoint(directory: str | Path, *, model_state: dict, ema_state: Optional[dict],
                    optimizer_state: Optional[dict], scheduler_state: Optional[dict], meta: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model_state, "ema": ema_state}, directory / MODEL_FILE)
    if optimizer_state is not None:
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler_state}, directory / OPTIMIZER_FILE)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=float) + "\n")
    return directory


def _load(file: Path) -> Any:
    if not file.is_file():
        raise CheckpointError(f"{file}: checkpoint file missing{RETRAIN}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        # torch's own text (several lines, suggesting weights_only=False) would mislead here
        raise CheckpointError(f"{file}: cannot load checkpoint: not a readable torch file, damaged or truncated "
                              f"({type(err).__name__}){RETRAIN}") from None


def load_meta(directory: str | Path) -> dict:
    file = Path(directory) / META_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: checkpoint metadata missing (is {directory} a moldiff checkpoint?)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file}: not valid JSON: {err}{RETRAIN}") from None


def load_weights(directory: str | Path) -> dict:
    return _load(Path(directory) / MODEL_FILE)


def load_optimizer(directory: str | Path) -> Optional[dict]:
    file = Path(directory) / OPTIMIZER_FILE
    return _load(file) if file.exists() else None


def checkpoint_digest(directory: str | Path) -> str:
    """A hash of what a checkpoint computes with (metadata and weights; a mixture's experts'): the
    fingerprint by which partial results of a stage know the model they were made with."""
    import hashlib

    directory = Path(directory)
    meta = load_meta(directory)
    h = hashlib.sha256((directory / META_FILE).read_bytes())
    if "mixture" in meta:
        for rel in meta["mixture"]["experts"]:
            h.update(checkpoint_digest((directory / rel).resolve()).encode())
    elif (directory / MODEL_FILE).is_file():
        with open(directory / MODEL_FILE, "rb") as fh:
            for piece in iter(lambda: fh.read(1 << 20), b""):
                h.update(piece)
    return h.hexdigest()[:16]


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint directory into place atomically (temporary name, then rename)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dst)
    shutil.copytree(src, tmp)
    replace_directory(tmp, dst)
    return dst


def load_model(directory: str | Path, use_ema: bool = True):
    """Rebuild the model saved in a checkpoint directory (config and sigma_data from its meta)."""
    from ..config import validate_config
    from ..models import build_model

    meta = load_meta(directory)
    if "mixture" in meta:
        return _load_mixture(Path(directory), meta, use_ema)
    for key in ("config", "sigma_data"):
        if key not in meta:
            raise CheckpointError(f"{Path(directory) / META_FILE}: missing key '{key}'{RETRAIN}")
    cfg = validate_config(meta["config"], source=str(Path(directory) / META_FILE))
    model = build_model(cfg, meta["sigma_data"], meta.get("state_dim") or 2)
    weights = load_weights(directory)
    state = weights["ema"] if use_ema and weights.get("ema") is not None else weights["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{Path(directory) / MODEL_FILE}: weights do not fit the configured model: {err}"
                              f"{RETRAIN}") from None
    model.eval()
    if cfg.data.is_vector_system:
        from ..models import state_scale
        model.state_scale = state_scale(cfg, meta["sigma_data"])     # the model saw states divided by this
        model.state_dim = meta.get("state_dim") or 2
    return model, cfg, meta


def save_mixture(directory: str | Path, boundaries: list[float], experts: list[str | Path], config: dict) -> Path:
    """A mixture checkpoint: no weights of its own, the experts' checkpoint directories (relative
    to this one, so a run directory can be moved) and the interval boundaries."""
    directory = Path(directory)
    tmp = temp_sibling(directory)
    tmp.mkdir(parents=True)
    rel = [os.path.relpath(Path(e).resolve(), directory.resolve()) for e in experts]
    (tmp / META_FILE).write_text(json.dumps({"mixture": {"boundaries": boundaries, "experts": rel},
                                             "config": config}, indent=2) + "\n")
    directory.parent.mkdir(parents=True, exist_ok=True)
    replace_directory(tmp, directory)
    return directory


def _load_mixture(directory: Path, meta: dict, use_ema: bool):
    from ..config import validate_config
    from ..models.experts import TimeIntervalMixture

    spec = meta["mixture"]
    loaded = [load_model((directory / rel).resolve(), use_ema) for rel in spec["experts"]]
    experts = [model for model, _, _ in loaded]
    meta = {"dataset": loaded[0][2].get("dataset"), **meta}      # the experts share the training set
    cfg = validate_config(meta["config"], source=str(directory / META_FILE))
    mixture = TimeIntervalMixture(spec["boundaries"], experts)
    mixture.eval()
    if hasattr(experts[0], "state_scale"):                  # state vectors: experts share the training set
        mixture.state_scale, mixture.state_dim = experts[0].state_scale, experts[0].state_dim
    return mixture, cfg, meta
