"""A trained moldiff force field as an ASE calculator, so that ASE's optimisers, dynamics and
analysis run on it:

    from moldiff.ase import MoldiffCalculator
    atoms.calc = MoldiffCalculator("runs/morered_qm9_ff")        # a run or checkpoint directory
    ase.optimize.LBFGS(atoms).run(fmax=0.005)

Energies and forces are in the training labels' units (``force_field`` on GFN2-xTB labels: eV and
eV/A, ASE's own). The model runs in float64 on the CPU unless told otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class MoldiffCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, checkpoint: Optional[str | Path] = None, model=None, device: str = "cpu",
                 use_ema: bool = True, **kwargs):
        """``checkpoint``: a run directory (its ``checkpoints/final``) or a checkpoint directory of a
        model with ``energy_and_forces`` (objective force_field); or pass the ``model`` itself."""
        super().__init__(**kwargs)
        import torch

        if model is None:
            if checkpoint is None:
                raise ValueError("MoldiffCalculator needs a checkpoint or a model")
            from .train.checkpoint import load_model
            path = Path(checkpoint).expanduser()
            path = path / "checkpoints" / "final" if (path / "checkpoints" / "final").is_dir() else path
            model = load_model(path, use_ema=use_ema)[0]
        if not hasattr(model, "energy_and_forces"):
            raise ValueError(f"{type(model).__name__} has no energies and forces (train objective.name: force_field)")
        self.model = model.to(device=device, dtype=torch.float64).eval()
        self.device = device

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import torch

        from .data.batch import from_arrays

        super().calculate(atoms, properties, system_changes)
        graphs = from_arrays(self.atoms.get_atomic_numbers(), self.atoms.get_positions(),
                             np.array([len(self.atoms)]), dtype=torch.float64).to(self.device)
        energy, forces = self.model.energy_and_forces(graphs)
        self.results = {"energy": float(energy.detach()[0]), "forces": forces.detach().cpu().numpy()}
