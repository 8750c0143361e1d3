"""The property head's error, for any workflow whose model carries one (UniGEM's generator and
predictor; a MoreRed network trained with ``objective.terms: [property]``).

The head reads clean test and validation molecules (diffusion time 0); the MAE is in the property's
unit, beside the error of predicting the training mean for every molecule (what a model that learned
nothing scores). The value is deterministic, so every sampling seed gets the same one.
"""
from __future__ import annotations

from pathlib import Path
import numpy as np

from ..config import ExperimentConfig
from ..data.records import PROPERTY_PREFIX
from ..data.sources import PreparedData
from ..data.store import read_dataset
from ..metrics.report import Report


def property_errors(model, table, normalizer, batch_size: int = 256) -> np.ndarray:
    """|prediction - label| per molecule, in the property's unit: the head on clean coordinates."""
    import torch

    from ..data.batch import collate_arrow

    dtype = next(model.parameters()).dtype
    errors = []
    with torch.no_grad():
        for start in range(0, table.num_rows, batch_size):
            graphs = collate_arrow(table.slice(start, batch_size), properties=[normalizer.name], dtype=dtype)
            t = torch.zeros(graphs.num_graphs, dtype=dtype)
            pred = normalizer.denormalize(model(graphs, t)["prop"])
            errors.append((pred - graphs.props[:, 0]).abs().double().numpy())
    return np.concatenate(errors)


def add_property_mae(report: Report, cfg: ExperimentConfig, data: PreparedData, run_dir: Path, log) -> str:
    """Add ``<prop>_mae`` (the test split, ``data.reference``) and ``val_<prop>_mae`` to ``report``
    when the run's model has a property head; returns the summary line ('' when it has none)."""
    from ..data.normalization import PropertyNormalizer
    from ..objectives.registry import trained_property
    from ..train.checkpoint import load_model
    from . import trained_checkpoint

    prop = trained_property(cfg)
    if prop is None:
        return ""
    checkpoint = trained_checkpoint(cfg, run_dir)
    test, test_manifest = read_dataset(data.reference, validate=False)
    unit = test_manifest.properties.get(prop)
    model, _, meta = load_model(checkpoint, use_ema=cfg.sampling.use_ema)
    normalizer = PropertyNormalizer.from_dict(meta.get("property_normalizer") or {}, str(checkpoint))
    scores = {}
    for split, table in (("test", test), ("val", read_dataset(data.validation, validate=False)[0])):
        errors = property_errors(model, table, normalizer)
        trivial = float(np.abs(table.column(PROPERTY_PREFIX + prop).to_numpy() - normalizer.mean).mean())
        scores[split] = (float(errors.mean()), trivial, len(errors))
    seeds = report.seeds
    for split, key in (("test", f"{prop}_mae"), ("val", f"val_{prop}_mae")):
        value, trivial, _ = scores[split]
        report.add(key, [value] * len(seeds), [trivial] * len(seeds), unit=unit, metric=f"{prop}_mae", split=split)
    mae, trivial, n = scores["test"]
    line = (f"{prop} MAE on {n} test molecules: {mae:.4g} {normalizer.unit} (predicting the training "
            f"mean: {trivial:.4g}); validation {scores['val'][0]:.4g}")
    log(f"[evaluate] {line}")
    return line
