"""The force-field baseline: GFN2-xTB labels (forces are minus the energy gradient), the element
reference fit, conservative and equivariant model forces, and the energy/force matching loss."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moldiff.data.batch import collate_arrow, from_arrays
from moldiff.data.qm9 import QM9Selection, build_datasets
from moldiff.data.store import positions
from moldiff.data.xtb_labels import LabelSettings, build_labelled, gfn2_energy_forces
from moldiff.models.force_field import ForceField, element_reference_energies
from moldiff.objectives.force_matching import ForceMatching

FIXTURE = Path(__file__).parent / "fixtures" / "qm9_fixture.csv"


@pytest.fixture(scope="module")
def labelled():
    stable = build_datasets([FIXTURE], QM9Selection(max_heavy_atoms=8), "f", lambda m: None)["train"][0].slice(0, 2)
    return build_labelled(stable, LabelSettings(n_perturbed=2, seed=3), log=lambda m: None)


def test_labels_are_gfn2_energies_and_their_negative_gradients(labelled):
    assert labelled.num_rows == 6
    energy = labelled.column("energy").to_numpy()
    assert np.isfinite(energy).all() and (energy < 0).all()
    stable, perturbed = energy[0], energy[1:3]
    assert (perturbed > stable).all()                 # displaced structures lie above the DFT minimum
    z, pos = np.asarray(labelled.column("z")[1].as_py()), positions(labelled)[1]
    _, forces = gfn2_energy_forces(z, pos)
    h, atom = 1e-4, 2
    plus, minus = pos.copy(), pos.copy()
    plus[atom, 0] += h
    minus[atom, 0] -= h
    numeric = -(gfn2_energy_forces(z, plus)[0] - gfn2_energy_forces(z, minus)[0]) / (2 * h)
    assert forces[atom, 0] == pytest.approx(numeric, rel=1e-3, abs=1e-4)


def test_thermal_frames_are_hot_geometries_labelled_by_their_own_run():
    stable = build_datasets([FIXTURE], QM9Selection(max_heavy_atoms=8), "f", lambda m: None)["train"][0].slice(0, 1)
    table = build_labelled(stable, LabelSettings(n_perturbed=0, n_thermal=2, thermal_steps=20, seed=3),
                           log=lambda m: None)
    ids = table.column("id").to_pylist()
    assert len(ids) == 3 and ids[1].endswith("-thermal0") and ids[2].endswith("-thermal1")
    energy, pos = table.column("energy").to_numpy(), positions(table)
    assert (energy[1:] > energy[0]).all()                        # heated above the DFT minimum
    assert all(np.sqrt(((p - pos[0]) ** 2).sum(1).mean()) > 0.01 for p in pos[1:])
    z = np.asarray(table.column("z")[2].as_py())
    e, f = gfn2_energy_forces(z, pos[2])                         # the run's labels are GFN2's at that frame
    assert e == pytest.approx(energy[2], abs=1e-5)          # (positions are stored in float32)
    assert np.allclose(f, np.asarray(table.column("forces")[2].as_py()).reshape(-1, 3), atol=1e-4)


def test_element_references_recover_additive_energies():
    rng = np.random.default_rng(0)
    true = {1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0}
    zs = [rng.choice(list(true), size=rng.integers(3, 12)) for _ in range(40)]
    energies = np.array([sum(true[int(v)] for v in z) for z in zs])
    table = element_reference_energies(zs, energies)
    for element, value in true.items():
        assert table[element] == pytest.approx(value, abs=1e-6)


def test_model_forces_are_minus_the_energy_gradient_and_rotate():
    torch.manual_seed(0)
    model = ForceField(hidden=16, layers=2, n_rbf=8, cutoff=5.0).double()
    rng = np.random.default_rng(1)
    g = from_arrays(np.array([6, 1, 1, 8, 1]), rng.normal(size=(5, 3)) * 1.2, np.array([5]), dtype=torch.float64)
    energy, forces = model.energy_and_forces(g)
    h = 1e-5
    plus, minus = g.pos.clone(), g.pos.clone()
    plus[3, 1] += h
    minus[3, 1] -= h
    numeric = -(model.energy(g.with_pos(plus)) - model.energy(g.with_pos(minus))) / (2 * h)
    assert float(forces[3, 1].detach()) == pytest.approx(float(numeric.detach()), rel=1e-5, abs=1e-8)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    e2, f2 = model.energy_and_forces(g.with_pos(g.pos @ q.T + 1.0))
    assert torch.allclose(e2, energy, atol=1e-9) and torch.allclose(f2, forces @ q.T, atol=1e-8)


def test_force_matching_trains_the_model_on_labels(labelled):
    graphs = collate_arrow(labelled, dtype=torch.float64)
    reference = element_reference_energies(labelled.column("z").to_pylist(), labelled.column("energy").to_numpy())
    torch.manual_seed(0)
    model = ForceField(hidden=16, layers=2, n_rbf=8, cutoff=5.0, reference=reference).double()
    objective = ForceMatching()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss, logs = objective(model, graphs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first or logs["force_mse"]
    assert logs["force_mse"] < 0.5 * first
    with pytest.raises(ValueError, match="energy and forces"):
        objective(model, from_arrays(np.array([1, 1]), np.zeros((2, 3)), np.array([2])))
