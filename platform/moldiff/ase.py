"""A trained moldiff model as an ASE calculator, so that ASE's optimisers, dynamics and analysis
run on it:

    from moldiff.ase import MoldiffCalculator
    atoms.calc = MoldiffCalculator("runs/morered_qm9_ff")        # a run or checkpoint directory
    ase.optimize.LBFGS(atoms).run(fmax=0.005)

What each model family gives:

* force fields (``objective.name: force_field``): their energy and its forces;
* conservative diffusion models (``model.energy_head`` on molecules, the energy models of state
  vectors): E(x) = -kT log p_t(x) and F = kT s(x, t) = -dE/dx at t = ``simulation.t_sim``, the
  forces moldiff's own Langevin simulation uses (E up to a constant);
* score models (epsilon-form, not conservative): forces kT s(x, t) only, with a warning: they
  derive from no energy, so energy-based optimisers and NVE energy checks are meaningless.

Units: the model's, read from the dataset its checkpoint was trained on (``meta.json``'s
``dataset``), converted to ASE's eV and Angstrom (kcal/mol, kJ/mol, Hartree; nm, Bohr).
Dimensionless units (LJ's reduced units, Müller-Brown's) pass through unchanged: one unit is one
eV / one Angstrom to ASE, so give ASE's dynamics temperatures as ``temperature_K = kT / units.kB``.

State-vector systems become atoms: a D = 3n state is n atoms (alanine's coarse-grained heavy
atoms); a D < 3 state (Müller-Brown's x, y) is one atom whose first D coordinates are the state,
the others feel no force (fix them with ``ase.constraints.FixedPlane`` for dynamics).
The model runs in float64 on the CPU unless told otherwise.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
from ase import units as ase_units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

# a unit name (as manifests write them, any case) -> its size in ASE's units
LENGTH_TO_ANGSTROM = {"angstrom": 1.0, "nm": 10.0, "bohr": ase_units.Bohr}
ENERGY_TO_EV = {"ev": 1.0, "kcal/mol": ase_units.kcal / ase_units.mol, "kj/mol": ase_units.kJ / ase_units.mol,
                "hartree": ase_units.Hartree}


def unit_factors(units: Optional[dict]) -> tuple[float, float, str]:
    """(length -> Angstrom, energy -> eV, how it was read) for a manifest's ``units``. A unit not
    in the tables (reduced, Müller-Brown) passes through as 1."""
    units = units or {}
    length, energy = str(units.get("length", "")).lower(), str(units.get("energy", "")).lower()
    to_a, to_ev = LENGTH_TO_ANGSTROM.get(length), ENERGY_TO_EV.get(energy)
    note = (f"length {units.get('length', 'unknown')} -> Angstrom x {to_a or 1.0:g}, "
            f"energy {units.get('energy', 'unknown')} -> eV x {to_ev or 1.0:g}"
            + ("" if to_a and to_ev else " (units not in the conversion tables pass through unchanged)"))
    return to_a or 1.0, to_ev or 1.0, note


class MoldiffCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, checkpoint: Optional[str | Path] = None, model=None, device: str = "cpu",
                 use_ema: bool = True, kT: Optional[float] = None, t: Optional[float] = None,
                 units: Optional[dict] = None, state_dim: Optional[int] = None, **kwargs):
        """``checkpoint``: a run directory (its ``checkpoints/final``) or a checkpoint directory; or
        pass the ``model`` itself (then ``kT`` and ``units`` for a diffusion model, and ``state_dim``
        for a model of state vectors rather than molecules). ``kT`` (the
        model's energy unit) and ``t`` (the diffusion time whose score is the force) default to the
        run's ``simulation.kT`` or its dataset's kT, and ``simulation.t_sim``."""
        super().__init__(**kwargs)
        import torch

        cfg, meta = None, {}
        if model is None:
            if checkpoint is None:
                raise ValueError("MoldiffCalculator needs a checkpoint or a model")
            from .train.checkpoint import load_model
            path = Path(checkpoint).expanduser()
            path = path / "checkpoints" / "final" if (path / "checkpoints" / "final").is_dir() else path
            model, cfg, meta = load_model(path, use_ema=use_ema)
        dataset = meta.get("dataset") or {}
        self.length, self.energy_unit, self.units_note = unit_factors(units or dataset.get("units"))
        # state vectors: their dimension and the scale the model saw them divided by (set at load)
        self.scale = float(getattr(model, "state_scale", 1.0))
        self.state_dim = state_dim or getattr(model, "state_dim", None)      # None: a model of molecules
        if hasattr(model, "energy_and_forces"):
            self.kind = "force field"
        else:
            if not hasattr(model, "score"):
                raise ValueError(f"{type(model).__name__} has neither energies and forces nor a score "
                                 "(train objective.name: force_field, or a diffusion model)")
            self.t = float(t if t is not None else (cfg.simulation.t_sim if cfg is not None else 1e-5))
            if hasattr(model, "expert_at"):                # a mixture: the expert holding t
                model = model.expert_at(self.t)
            self.kT = kT if kT is not None else (cfg.simulation.kT if cfg is not None else None) or dataset.get("kT")
            if self.kT is None:
                raise ValueError("a diffusion model's forces are kT * score: pass kT (its dataset's manifest has none)")
            self.kind = "energy" if getattr(model, "conservative", False) else "score"
            if self.kind == "score":
                self.implemented_properties = ["forces"]
                warnings.warn(f"{type(model).__name__} is a score model: its forces kT s(x, t={self.t:g}) derive from "
                              "no energy (not conservative); there is no energy to optimise or conserve", stacklevel=2)
        self.model = model.to(device=device, dtype=torch.float64).eval()
        self.device = device

    def _state(self, atoms) -> "np.ndarray":
        """The atoms as the model's state [1, D] (its units, divided by the model's state scale)."""
        pos = atoms.get_positions() / self.length
        if self.state_dim is None or self.state_dim == pos.size:
            return pos.reshape(1, -1) / self.scale
        if len(atoms) == 1 and self.state_dim < 3:
            return pos[:, :self.state_dim] / self.scale
        raise ValueError(f"the model's states have {self.state_dim} coordinates; {len(atoms)} atom(s) "
                         f"have {pos.size} (give {self.state_dim // 3 or 1} atom(s))")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import torch

        from .data.batch import from_arrays

        super().calculate(atoms, properties, system_changes)
        if self.kind == "force field":
            graphs = from_arrays(self.atoms.get_atomic_numbers(), self.atoms.get_positions() / self.length,
                                 np.array([len(self.atoms)]), dtype=torch.float64).to(self.device)
            energy, forces = self.model.energy_and_forces(graphs)
            self.results = {"energy": float(energy.detach()[0]) * self.energy_unit,
                            "forces": forces.detach().cpu().numpy() * (self.energy_unit / self.length)}
            return
        if self.kind == "score" and "energy" in properties:
            raise PropertyNotImplementedError("a score model has forces but no energy")
        flat = self.model
        if self.state_dim is None:                           # molecules: flat 3n-vectors of these atoms
            from .models.flat import FlatMolecules
            flat = FlatMolecules(self.model, self.atoms.get_atomic_numbers())
        x = torch.as_tensor(self._state(self.atoms), dtype=torch.float64, device=self.device)
        t = torch.full((1,), self.t, dtype=torch.float64, device=self.device)
        if self.kind == "energy":
            logp, score = flat.log_density_and_score(x, t)
            self.results["energy"] = -self.kT * float(logp.detach()[0]) * self.energy_unit
        else:
            score = flat.score(x, t)
        # F = kT d log p / dx in the data's units, where the model saw x / scale (chain rule)
        f = (self.kT / self.scale) * score.detach().cpu().numpy().reshape(-1) * (self.energy_unit / self.length)
        forces = np.zeros((len(self.atoms), 3))
        if f.size == forces.size:
            forces[:] = f.reshape(-1, 3)
        else:                                                # a D < 3 state on one atom
            forces[0, :f.size] = f
        self.results["forces"] = forces
