"""Unstable inputs for the relaxation benchmark, from QM9 fixture molecules: every kind keeps the
atom order of its target, diffusion perturbations grow with the step, thermal GFN2-xTB frames are
real distortions, and the whole set is reproducible from its seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moldiff.data.qm9 import QM9Selection, build_datasets
from moldiff.data.relaxation_inputs import PerturbationSettings, build_inputs, etkdg_input
from moldiff.data.store import positions
from moldiff.metrics.chemistry import bond_order_matrix

FIXTURE = Path(__file__).parent / "fixtures" / "qm9_fixture.csv"


@pytest.fixture(scope="module")
def stable():
    return build_datasets([FIXTURE], QM9Selection(max_heavy_atoms=8), "f", lambda m: None)["train"][0].slice(0, 3)


@pytest.fixture(scope="module")
def inputs(stable):
    return build_inputs(stable, PerturbationSettings(thermal_steps=30, diffusion_steps=(20, 250), seed=1),
                        log=lambda m: None)


def test_every_kind_is_made_for_every_molecule_with_its_target(stable, inputs):
    table, info = inputs
    assert info["made"] == {"etkdg": 3, "diffusion20": 3, "diffusion250": 3, "thermal": 3} and not info["failed"]
    targets = dict(zip(stable.column("id").to_pylist(), positions(stable)))
    zs = dict(zip(stable.column("id").to_pylist(), stable.column("z").to_pylist()))
    for row, (pos, target) in enumerate(zip(positions(table), positions(table, "target"))):
        ident = table.column("target_id")[row].as_py()
        assert table.column("z")[row].as_py() == zs[ident]
        assert np.allclose(target, targets[ident] - targets[ident].mean(0), atol=1e-5)
        assert np.abs(pos.mean(0)).max() < 1e-5
    rmsd = dict(zip(table.column("id").to_pylist(), table.column("input_rmsd").to_numpy()))
    for ident in targets:
        assert rmsd[f"{ident}-diffusion20"] < rmsd[f"{ident}-diffusion250"]
        assert 0.05 < rmsd[f"{ident}-thermal"] < 1.0          # a real but bounded distortion


def test_etkdg_keeps_the_bond_graph_and_the_atom_order(stable):
    z, pos = np.asarray(stable.column("z")[0].as_py()), positions(stable)[0]
    x = etkdg_input(z, pos, seed=3)
    assert x is not None and x.shape == pos.shape
    assert (bond_order_matrix(z, x) > 0).sum() == (bond_order_matrix(z, pos) > 0).sum()
    assert ((bond_order_matrix(z, x) > 0) == (bond_order_matrix(z, pos) > 0)).all()


def test_inputs_are_reproducible_from_the_seed(stable, inputs):
    again, _ = build_inputs(stable, PerturbationSettings(kinds=("diffusion", "etkdg"), diffusion_steps=(20, 250), seed=1),
                            log=lambda m: None)
    first = {i: p for i, p in zip(inputs[0].column("id").to_pylist(), positions(inputs[0]))}
    for ident, pos in zip(again.column("id").to_pylist(), positions(again)):
        assert np.allclose(first[ident], pos)
    with pytest.raises(ValueError, match="unknown perturbation"):
        PerturbationSettings(kinds=("torsion",))


def test_generated_molecules_become_inputs_that_are_their_own_targets():
    from moldiff.data.records import build_table
    from moldiff.data.relaxation_inputs import JUDGED_AS_MOLECULES, generated_inputs
    from moldiff.data.store import positions

    rng = np.random.default_rng(0)
    zs = [np.array([6, 1, 1, 1, 1]), np.array([8, 1, 1])]
    table = build_table(zs, [rng.normal(size=(len(z), 3)) for z in zs], ids=["sample-0-0", "sample-0-1"])
    inputs = generated_inputs(table)
    assert inputs.column("id").to_pylist() == ["gen-sample-0-0", "gen-sample-0-1"] == inputs.column("target_id").to_pylist()
    assert inputs.column("kind").to_pylist() == ["generated"] * 2 and "generated" in JUDGED_AS_MOLECULES
    for start, target, original in zip(positions(inputs), positions(inputs, "target"), positions(table)):
        assert np.allclose(start, original, atol=1e-6) and np.array_equal(start, target)
    assert inputs.column("input_rmsd").to_pylist() == [0.0, 0.0]
