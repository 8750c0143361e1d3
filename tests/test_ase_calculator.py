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


def central_differences(atoms, h=1e-5, coordinates=((0, 0), (2, 1), (4, 2))):
    """-dE/dx by central differences at a few (atom, axis) coordinates, through atoms' calculator."""
    out = {}
    for atom, axis in coordinates:
        moved = []
        for sign in (1, -1):
            a = atoms.copy()
            a.calc = atoms.calc
            a.positions[atom, axis] += sign * h
            moved.append(a.get_potential_energy())
        out[atom, axis] = -(moved[0] - moved[1]) / (2 * h)
    return out


def test_forces_are_minus_the_energy_gradient_through_ase():
    atoms = methane()
    atoms.calc = calculator()
    forces = atoms.get_forces()
    for (atom, axis), numerical in central_differences(atoms).items():
        assert forces[atom, axis] == pytest.approx(numerical, abs=1e-6)


def test_lbfgs_relaxes_on_the_learned_surface():
    atoms = methane()
    atoms.calc = calculator()
    start = atoms.get_potential_energy()
    assert LBFGS(atoms, logfile=None).run(fmax=0.005, steps=500)
    assert atoms.get_potential_energy() < start and np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.005


def test_a_model_without_forces_is_refused():
    with pytest.raises(ValueError, match="neither energies and forces nor a score"):
        MoldiffCalculator(model=torch.nn.Linear(2, 2))


# --- diffusion models through ASE: conservative ones as energies, score models as forces only ---

def tiny_molecular_model(tiny_config, **overrides):
    from moldiff.models import build_model
    torch.manual_seed(0)
    return build_model(tiny_config(**overrides), sigma_data=0.6).double()


def cluster(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return Atoms(f"Ar{n}", positions=rng.normal(scale=0.8, size=(n, 3)))


def test_a_conservative_diffusion_model_is_an_energy_whose_gradient_is_its_force(tiny_config):
    """E = -kT log p_t(x), F = kT s(x, t): forces are minus the gradient of the energy (finite
    differences), in ASE's units (kcal/mol and Angstrom converted to eV)."""
    model = tiny_molecular_model(tiny_config, **{"model.energy_head": "true"})
    atoms = cluster()
    atoms.calc = MoldiffCalculator(model=model, kT=0.6, t=1e-3, units={"length": "angstrom", "energy": "kcal/mol"})
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-4                  # a real force field, not zeros
    for (atom, axis), numerical in central_differences(atoms).items():
        assert forces[atom, axis] == pytest.approx(numerical, rel=1e-5, abs=1e-8)
    # the same model in its own units: ASE's numbers are those times 1 kcal/mol in eV
    plain = atoms.copy()
    plain.calc = MoldiffCalculator(model=model, kT=0.6, t=1e-3, units={"length": "angstrom", "energy": "eV"})
    assert atoms.get_potential_energy() == pytest.approx(plain.get_potential_energy() * 0.0433641, rel=1e-5)
    nm = atoms.copy()                                   # lengths in nm: the model sees positions / 10
    nm.calc = MoldiffCalculator(model=model, kT=0.6, t=1e-3, units={"length": "nm", "energy": "eV"})
    scaled = atoms.copy()
    scaled.positions /= 10.0
    scaled.calc = plain.calc
    assert nm.get_potential_energy() == pytest.approx(scaled.get_potential_energy(), rel=1e-9)
    assert nm.get_forces() == pytest.approx(scaled.get_forces() / 10.0, rel=1e-7)


def test_a_score_model_gives_forces_only_with_a_warning(tiny_config):
    from ase.calculators.calculator import PropertyNotImplementedError

    from moldiff.models.flat import FlatMolecules

    model = tiny_molecular_model(tiny_config)
    atoms = cluster()
    with pytest.warns(UserWarning, match="not conservative"):
        atoms.calc = MoldiffCalculator(model=model, kT=2.0, t=1e-3)
    x = torch.as_tensor(atoms.positions.reshape(1, -1))
    expected = 2.0 * FlatMolecules(model, atoms.numbers).score(x, torch.full((1,), 1e-3, dtype=torch.float64))
    assert atoms.get_forces() == pytest.approx(expected.detach().numpy().reshape(-1, 3), rel=1e-9)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_potential_energy()


class MullerBrownLogDensity(torch.nn.Module):
    """log p(x) = -U_MB(x) / kT at every t: the exact Müller-Brown energy model."""

    def forward(self, x, t):
        from moldiff.physics import muller_brown as mb
        return (-mb.energy(x) / mb.KT).unsqueeze(-1)


def test_ase_langevin_on_a_muller_brown_energy_model_matches_moldiffs_simulation():
    """ASE's Langevin integrator on the calculator and moldiff's own Langevin on the same energy
    model (the exact Müller-Brown log-density at its kT 23, so the forces are -grad U; mass 0.5,
    dt 0.005), both thermostatted at kT 10 (where neither leaves basin A in the window) and
    started at minimum A: the mean potential energy agrees within the runs' noise (block standard
    errors of ASE's one chain, the spread over moldiff's 16 chains) and both sit at the exact
    Boltzmann value of basin A (quadrature). Friction 20 instead of MB's usual 1 decorrelates the
    energy within a few steps, so one ASE chain of 5000 steps pins its mean to ~0.7 (kT 10): a
    force off by a factor 2 would move it by ~5."""
    from ase import units
    from ase.constraints import FixedPlane
    from ase.md.langevin import Langevin

    from moldiff.models.energy import EnergyModel
    from moldiff.physics import muller_brown as mb
    from moldiff.sampling.langevin import LangevinSettings, langevin
    from moldiff.sampling.vector import learned_forces

    kT_bath = 10.0
    model = EnergyModel(MullerBrownLogDensity()).double()
    start = np.array(mb.MINIMA["A"])
    settings = LangevinSettings(kT=kT_bath, mass=0.5, friction=20.0, dt=0.005, burn_in=600, n_frames=250, save_every=10)
    ours = langevin(learned_forces(model, mb.KT, 1e-5), np.tile(start, (16, 1)), settings, seed=0)
    assert np.all(mb.nearest_minimum(ours.reshape(-1, 2)) == 0)
    ours_e = mb.energy_np(ours.reshape(-1, 2)).reshape(ours.shape[:2]).mean(0)       # one mean per chain

    atoms = Atoms("H", positions=[[*start, 0.0]], masses=[0.5])
    atoms.set_constraint(FixedPlane(0, (0, 0, 1)))             # the state is (x, y): z stays put
    atoms.calc = MoldiffCalculator(model=model, kT=mb.KT, state_dim=2)
    dyn = Langevin(atoms, timestep=0.005, temperature_K=kT_bath / units.kB, friction=20.0, fixcm=False,
                   rng=np.random.default_rng(0))
    dyn.run(600)
    frames = []
    dyn.attach(lambda: frames.append(atoms.positions[0, :2].copy()), interval=10)
    dyn.run(5000)
    frames = np.array(frames)
    assert np.all(mb.nearest_minimum(frames) == 0) and atoms.positions[0, 2] == 0.0
    blocks = np.array([b.mean() for b in np.array_split(mb.energy_np(frames), 10)])   # 500-step blocks

    g = np.linspace(-1.3, 0.2, 600), np.linspace(0.7, 2.1, 600)            # exact <U> in basin A at kT 10
    xy = np.stack(np.meshgrid(*g), -1).reshape(-1, 2)
    u = mb.energy_np(xy)[mb.nearest_minimum(xy) == 0]
    w = np.exp(-(u - u.min()) / kT_bath)
    exact = float((w * u).sum() / w.sum())

    se_ase = blocks.std(ddof=1) / np.sqrt(len(blocks))
    se_ours = ours_e.std(ddof=1) / np.sqrt(len(ours_e))
    assert abs(blocks.mean() - ours_e.mean()) < 4 * np.hypot(se_ase, se_ours), (blocks.mean(), ours_e.mean(), se_ase, se_ours)
    assert abs(blocks.mean() - exact) < 4 * se_ase + 0.5 and abs(ours_e.mean() - exact) < 4 * se_ours + 0.5, \
        (blocks.mean(), ours_e.mean(), exact)
    assert exact - mb.MINIMUM_ENERGY["A"] > 5.0            # a real thermal spread, not a frozen chain
