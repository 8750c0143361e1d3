"""The convergence threshold k_min of MoreRed's adaptive samplers (as, jt), chosen from data.

The paper stops when the predicted step reaches 0. A time predictor trained briefly may never read
a clean structure as step 0 (ours reads QM9's DFT minima as step ~20), so that rule never fires and
every molecule runs the step cap, re-noised at the step it keeps predicting. ``k_min: auto`` asks
the time predictor what "clean" looks like to it: the median index it predicts on stable
*validation* structures (never the test targets the benchmark scores against). The brief lists
k_min in {0, 1, 2, 5, 10, 20} as a sampling-time knob; this picks one value from held-out data
instead of from the benchmark.

Only the adaptive methods (``relaxation.methods``: as, jt) stop by a predicted step; itp and ddpm
follow the fixed schedule to k = 0, so their threshold stays 0 under ``auto``. A threshold other
than 0 labels the output ``<method>-kmin<k>`` (``RelaxationMethod.label``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..atomic import write_text
from .methods import method

CALIBRATION_MOLECULES = 500


def clean_indices(time_model, table: pa.Table, batch_size: int = 250) -> np.ndarray:
    """The time predictor's index k_hat on each (unperturbed) structure of ``table``."""
    import torch

    from ..data.batch import collate_arrow
    from ..diffusion.process import remove_mean

    out = []
    with torch.no_grad():
        for lo in range(0, table.num_rows, batch_size):
            graphs = collate_arrow(table.slice(lo, batch_size), dtype=torch.float64)
            graphs = graphs.with_pos(remove_mean(graphs.pos, graphs.batch, graphs.n_atoms))
            out.append(time_model.index_from_time(time_model(graphs)["time"], graphs).numpy())
    return np.concatenate(out)


def resolve_k_min(setting, sampler: str, time_model_dir, validation: Path, use_ema: bool,
                  record_file: Path, log=print) -> int:
    """The threshold ``sampler`` runs with: ``setting`` itself when it is a number, else (``auto``)
    the median predicted index on the first CALIBRATION_MOLECULES validation structures, recorded
    with its spread in ``record_file`` (one entry per sampler)."""
    if setting != "auto":
        return int(setting)
    if not method(sampler).adaptive:
        return 0
    if validation is None:
        raise ValueError("relaxation.k_min: auto reads validation structures, but this data source has no "
                         "validation split; give k_min as a number")
    from ..data.store import read_dataset
    from ..train.checkpoint import load_model

    model = load_model(time_model_dir, use_ema=use_ema)[0].double()
    table = read_dataset(validation, validate=False)[0]
    table = table.slice(0, CALIBRATION_MOLECULES)
    k = clean_indices(model, table)
    k_min = int(np.round(np.median(k)))
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    record[sampler] = {"k_min": k_min, "rule": "median predicted index on clean validation structures",
                       "n_structures": int(k.size), "time_model": str(time_model_dir),
                       "percentiles": {str(q): float(np.percentile(k, q)) for q in (10, 25, 50, 75, 90)},
                       "fraction_predicted_zero": float((k == 0).mean())}
    record_file.parent.mkdir(parents=True, exist_ok=True)
    write_text(record_file, json.dumps(record, indent=2) + "\n")
    log(f"[relax] {sampler}: k_min auto = {k_min} (median predicted index on {k.size} clean validation structures; "
        f"10th-90th percentile {record[sampler]['percentiles']['10']:.0f}-{record[sampler]['percentiles']['90']:.0f})")
    return k_min
