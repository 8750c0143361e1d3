"""A moldiff force field inside ASE: energies and forces through the Calculator interface agree with
each other (forces = -dE/dx), and ASE's optimiser relaxes with them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.optimize import LBFGS

from moldiff.ase import MoldiffCalculator
from moldiff.models.force_field import ForceField


def methane():
    return Atoms("CH4", positions=[[0, 0, 0], [0.7, 0.6, 0.6], [-0.6, -0.63, 0.6], [-0.6, 0.6, -0.7], [0.6, -0.6, -0.6]])


def calculator():
    torch.manual_seed(0)
    return MoldiffCalculator(model=ForceField(16, 2, 8, 5.0))


def test_forces_are_minus_the_energy_gradient_through_ase():
    atoms = methane()
    atoms.calc = calculator()
    forces = atoms.get_forces()
    h = 1e-5
    for atom, axis in ((0, 0), (2, 1), (4, 2)):
        moved = []
        for sign in (1, -1):
            a = atoms.copy()
            a.calc = atoms.calc
            a.positions[atom, axis] += sign * h
            moved.append(a.get_potential_energy())
        assert forces[atom, axis] == pytest.approx(-(moved[0] - moved[1]) / (2 * h), abs=1e-6)


def test_lbfgs_relaxes_on_the_learned_surface():
    atoms = methane()
    atoms.calc = calculator()
    start = atoms.get_potential_energy()
    assert LBFGS(atoms, logfile=None).run(fmax=0.005, steps=500)
    assert atoms.get_potential_energy() < start and np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.005


def test_a_model_without_forces_is_refused():
    with pytest.raises(ValueError, match="no energies and forces"):
        MoldiffCalculator(model=torch.nn.Linear(2, 2))
