#!/usr/bin/env python
"""The one entry point of moldiff experiments.

    python experiments/run.py experiments/configs/dsm_lj13.yaml [key.sub=value ...]
    ray job submit --working-dir . -- python experiments/run.py experiments/configs/dsm_lj13.yaml

Works from a bare checkout: the package under platform/ is put on the path here and shipped to the
Ray workers by the runtime environment, so nothing has to be installed in the job's environment.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from moldiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
