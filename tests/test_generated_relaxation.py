"""Combination 2 of issue 19, end to end: a generator's molecules handed to the relaxation workflow
(relaxation.inputs.from_run), relaxed by MoreRed ITP and by MMFF94, judged as molecules before and
after."""
from __future__ import annotations

import numpy as np

from moldiff.experiment import run_experiment


def test_generated_molecules_are_relaxed_by_morered_and_mmff_and_judged_before_and_after(ray_session, tmp_path):
    import pyarrow.parquet as pq

    from test_morered_pipeline import tiny_morered
    from test_unigem_pipeline import tiny_qm9

    generator = tiny_qm9(tmp_path, "generator", **{"sampling.seeds": "[0, 1]", "sampling.n_samples": 4,
                                                   "sampling.batch_size": 4})
    run_experiment(generator, stages=["data", "train", "sample"], command="pytest", log=lambda m: None)
    relax = tiny_morered(tmp_path, "relax_generated", "joint", **{
        "relaxation.inputs.from_run": str(generator.run_dir), "relaxation.inputs.n_molecules": 6,
        "relaxation.samplers": "[itp, mmff]", "relaxation.energy_subset": 0})
    report = run_experiment(relax, command="pytest", log=lambda m: None)
    for method in ("itp", "mmff"):
        rows = pq.read_table(relax.run_dir / "relaxed" / f"{method}_seed0")
        assert rows.num_rows == 6 and set(rows.column("kind").to_pylist()) == {"generated"}
        for stat in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
            entry = report[f"{method}_generated_{stat}"]
            assert entry.labels == {"method": method, "group": "generated"} and np.isfinite(entry.mean)
    # the comparison column is the same inputs before relaxation, for every method
    assert report["itp_generated_atom_stability"].floor == report["mmff_generated_atom_stability"].floor
    assert "itp_all_median_ratio" not in report              # no reference geometry to be near
    assert "generated" in report.reference or str(generator.run_dir) in report.reference
