"""What an evaluation puts on a run's TensorBoard, beside the training scalars: the sample-quality
metrics (with their noise floors) and the run's plots (h(r), energy histograms, free-energy maps)
as images, at the final training step, so `tensorboard --logdir runs` compares runs on what they
generate, not only on their losses."""
from __future__ import annotations

import json
import math
from pathlib import Path


def log_evaluation(run_dir: Path, report) -> int:
    """Write the report's metrics (``moldiff.metrics.report.Report``) with their comparison values
    and every ``plots/*.png`` to ``<run_dir>/tensorboard``; returns the number of images written."""
    import matplotlib.image as mpimg
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    meta = run_dir / "checkpoints" / "final" / "meta.json"
    step = int(json.loads(meta.read_text()).get("step", 0)) if meta.exists() else 0
    images = sorted((run_dir / "plots").glob("*.png"))
    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        for entry in report.entries:
            if math.isfinite(entry.mean):
                writer.add_scalar(f"eval/{entry.key}", entry.mean, step)
            floor = entry.floor_mean
            if floor is not None and math.isfinite(floor):
                writer.add_scalar(f"eval_noise_floor/{entry.key}", floor, step)
        for path in images:
            image = mpimg.imread(path)
            if image.dtype != np.uint8:
                image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            writer.add_image(f"plots/{path.stem}", image[..., :3], step, dataformats="HWC")
    return len(images)
