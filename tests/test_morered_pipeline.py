"""MoreRed end to end on the session's Ray, from the QM9 fixture: a time predictor and a noise
model trained as separate runs relax the unstable inputs with ITP and AS, a joint model with JT,
through the Ray Data actor pipeline; every input comes back once and the metrics are written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from moldiff.config import ConfigError, apply_overrides, validate_config
from moldiff.experiment import run_experiment
from moldiff.metrics.report import load_report

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_morered(tmp_path, name, kind, **overrides):
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "data": {"source": "qm9", "root": str(tmp_path / "data"), "qm9": {"csv_dir": str(FIXTURES), "max_heavy_atoms": 8}},
        "model": {"backbone": "painn", "hidden": 16, "layers": 2, "cutoff": 5.0, "n_rbf": 8},
        "diffusion": {"process": "polynomial", "n_steps": 1000},
        "objective": {"name": "morered", "morered": {"kind": kind}},
        "training": {"epochs": 1, "batch_size": 16, "warmup_steps": 0, "ema_decay": 0.0, "grad_clip": 0.5},
        "relaxation": {"max_steps": 12, "slots": 4, "num_actors": 2, "energy_subset": 0,
                       "inputs": {"n_molecules": 3, "kinds": ["diffusion", "etkdg"], "diffusion_steps": [30, 200]}},
    }
    return validate_config(apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()]))


def test_itp_as_and_jt_relax_every_input_once(ray_session, tmp_path):
    time_cfg = tiny_morered(tmp_path, "time", "time")
    log = []
    timed = run_experiment(time_cfg, command="pytest", log=log.append)
    assert any("relaxes nothing" in m for m in log)
    assert set(timed.keys()) == {f"time_abs_error_k{k}" for k in (0, 10, 50, 100, 250, 500, 900)} | {
        "time_abs_error_clean", "time_abs_error_clean_clamp_first"}
    assert timed["time_abs_error_clean"].labels == {"k": "clean"}
    assert all(np.isfinite(e.mean) and e.unit == "steps" for e in timed.entries)
    assert timed["time_abs_error_k0"].floor_mean == 500.0           # predicting k = T/2
    noise = tiny_morered(tmp_path, "noise", "noise", **{"relaxation.samplers": "[itp, as]",
                                                        "relaxation.time_run": str(time_cfg.run_dir)})
    metrics = run_experiment(noise, command="pytest", log=lambda m: None)
    joint = tiny_morered(tmp_path, "joint", "joint", **{"relaxation.seeds": "[0, 1]",
                                                        "relaxation.inputs.kinds": "[diffusion, etkdg, prior]"})
    joint_metrics = run_experiment(joint, command="pytest", log=lambda m: None)
    # four inputs, one of each kind first, beside what each method made of them
    from PIL import Image
    assert Image.open(noise.run_dir / "plots/relaxations.png").size == (3 * 220, 4 * 220)    # input, itp, as
    assert "![relaxations](plots/relaxations.png)" in (joint.run_dir / "results.md").read_text()
    inputs = None
    for cfg, sampler, seeds in ((noise, "itp", [0]), (noise, "as", [0]), (joint, "jt", [0, 1])):
        for seed in seeds:
            rows = pq.read_table(cfg.run_dir / f"relaxed/{sampler}_seed{seed}")
            ids = sorted(rows.column("id").to_pylist())
            inputs = inputs or ids
            ids = [i for i in ids if not i.endswith("-prior")]
            assert ids == inputs and len(ids) == 9           # 3 molecules x (etkdg, diffusion30, diffusion200)
            steps = rows.column("n_steps").to_numpy()
            assert (steps >= 1).all() and (steps <= 12).all()
            failed = rows.column("failed").to_pylist()
            converged = rows.column("converged").to_pylist()
            assert all((f == "") == c for f, c in zip(failed, converged))
            assert np.isfinite(rows.column("input_rmsd").to_numpy()).all()
    for m, sampler in ((metrics, "itp"), (metrics, "as"), (joint_metrics, "jt")):
        for stat in ("median_ratio", "failure_fraction", "median_rmsd_after", "median_steps", "converged_fraction",
                     "median_ratio_se", "failure_fraction_se"):
            assert f"{sampler}_all_{stat}" in m and f"{sampler}_etkdg_{stat}" in m
        # the report says what each entry measured, so pages need not parse its name
        assert m[f"{sampler}_etkdg_median_ratio"].labels == {"method": sampler, "group": "etkdg"}
        # the physical inputs pooled (here ETKDG alone: these inputs have no thermal kind)
        assert m[f"{sampler}_physical_median_ratio"].per_seed == m[f"{sampler}_etkdg_median_ratio"].per_seed
    assert len(joint_metrics["jt_all_median_ratio"].per_seed) == 2
    assert [e.labels["group"] for e in joint_metrics.select(method="jt", metric="median_ratio")][0] == "all"
    # noise "relaxed" with the molecule's composition is generation, judged by validity
    for stat in ("validity", "uniqueness", "novelty", "median_steps"):
        assert np.isfinite(joint_metrics[f"jt_prior_{stat}"].mean)
    assert joint_metrics["jt_prior_validity"].floor_mean >= 0.5     # the test molecules themselves
    saved = load_report(noise.run_dir)
    assert saved["itp_all_median_ratio"].floor_mean == 1.0 and saved["itp_all_median_rmsd_after"].unit == "Angstrom"
    # a convergence threshold other than 0 relaxes into its own label, reported beside k_min = 0
    rerun = validate_config(apply_overrides(joint.model_dump(mode="json"), ["relaxation.k_min=3"]))
    thresholds = run_experiment(rerun, stages=["sample", "evaluate"], command="pytest", log=lambda m: None)
    assert pq.read_table(joint.run_dir / "relaxed/jt-kmin3_seed1").num_rows == 12
    assert thresholds["jt_all_median_ratio"].per_seed == joint_metrics["jt_all_median_ratio"].per_seed
    assert (np.array(pq.read_table(joint.run_dir / "relaxed/jt-kmin3_seed0").column("n_steps")) <= 12).all()
    assert "jt-kmin3_all_failure_fraction" in thresholds
    # the same threshold with a final denoising step: its own label, reported beside the others
    denoised = validate_config(apply_overrides(joint.model_dump(mode="json"),
                                               ["relaxation.k_min=3", "relaxation.final_denoise=true"]))
    denoised_metrics = run_experiment(denoised, stages=["sample", "evaluate"], command="pytest", log=lambda m: None)
    rows = pq.read_table(joint.run_dir / "relaxed/jt-kmin3-denoised_seed0")
    plain_rows = pq.read_table(joint.run_dir / "relaxed/jt-kmin3_seed0")
    assert rows.num_rows == 12 and "jt-kmin3-denoised_all_median_ratio" in denoised_metrics
    assert "jt-kmin3_all_median_ratio" in denoised_metrics
    # the same trajectories (same noise); a molecule that stopped at 0 < k <= 3 took one more
    # (denoising) network call and moved, the others ended where they did
    by_id = {i: (n, p) for i, n, p in zip(rows.column("id").to_pylist(), rows.column("n_steps").to_pylist(),
                                          rows.column("pos").to_pylist())}
    for i, n, p, ok in zip(plain_rows.column("id").to_pylist(), plain_rows.column("n_steps").to_pylist(),
                           plain_rows.column("pos").to_pylist(), plain_rows.column("converged").to_pylist()):
        extra = by_id[i][0] - n
        assert extra in ((0, 1) if ok else (0,))
        assert np.allclose(by_id[i][1], p) == (extra == 0)
    # auto: the median index the joint model's time head reads on clean validation structures
    auto = validate_config(apply_overrides(joint.model_dump(mode="json"), ["relaxation.k_min=auto", "relaxation.seeds=[0]"]))
    auto_metrics = run_experiment(auto, stages=["sample", "evaluate"], command="pytest", log=lambda m: None)
    chosen = json.loads((joint.run_dir / "relaxed/k_min.json").read_text())["jt"]
    from moldiff.data.sources import prepare_data
    from moldiff.data.store import read_dataset
    from moldiff.relaxation.threshold import clean_indices
    from moldiff.train.checkpoint import load_model
    validation = read_dataset(prepare_data(joint.data, lambda m: None).validation, validate=False)[0]
    model = load_model(joint.run_dir / "checkpoints" / "final")[0].double()
    assert chosen["k_min"] == int(np.round(np.median(clean_indices(model, validation.slice(0, 500)))))
    label = "jt" if chosen["k_min"] == 0 else f"jt-kmin{chosen['k_min']}"
    assert f"{label}_all_median_ratio" in auto_metrics
    # generation from the noise run's model in a run directory of its own (sampling.checkpoint):
    # nothing trained there, DDPM and AS judged as molecules
    gen = tiny_morered(tmp_path, "gen", "noise", **{
        "sampling.checkpoint": str(noise.run_dir), "relaxation.samplers": "[ddpm, as]",
        "relaxation.time_run": str(time_cfg.run_dir), "relaxation.inputs.kinds": "[prior]"})
    log.clear()
    generated = run_experiment(gen, command="pytest", log=log.append)
    assert any("[train] skipped" in m for m in log) and not (gen.run_dir / "checkpoints").exists()
    for sampler in ("ddpm", "as"):
        assert np.isfinite(generated[f"{sampler}_prior_validity"].mean)
    assert pq.read_table(gen.run_dir / "relaxed/ddpm_seed0").num_rows == 3


def test_force_field_baseline_and_mmff_relax_the_same_inputs(ray_session, tmp_path):
    cfg = tiny_morered(tmp_path, "ff", "joint", **{
        "objective.name": "force_field", "data.qm9.gfn2_labels": "{n_molecules: 6, n_perturbed: 1}",
        "relaxation.samplers": "[fire, lbfgs, mmff]", "relaxation.max_steps": 30, "training.epochs": 2,
        "relaxation.energy_subset": 4})
    log = []
    metrics = run_experiment(cfg, command="pytest", log=log.append)
    meta = json.loads((cfg.run_dir / "checkpoints/final/meta.json").read_text())
    assert meta["config"]["objective"]["name"] == "force_field"
    for sampler in ("fire", "lbfgs", "mmff"):
        rows = pq.read_table(cfg.run_dir / f"relaxed/{sampler}_seed0")
        assert rows.num_rows == 9 and (rows.column("n_steps").to_numpy() <= 30).all()
        assert f"{sampler}_all_median_ratio" in metrics
    # MMFF relaxes diffusion-perturbed DFT geometries back toward them (the graph comes from the target)
    mmff = pq.read_table(cfg.run_dir / "relaxed/mmff_seed0").to_pandas()
    assert (mmff[mmff.kind == "diffusion"].ratio < 1).mean() >= 0.5
    # GFN2-xTB energies on the fixed subset: MMFF's structures sit far lower above the GFN2 minimum
    # than the perturbed inputs; the targets' minima were relaxed once and shared by both samplers
    relaxed, inputs = metrics["mmff_subset_median_energy_above_min"].mean, metrics["mmff_subset_median_energy_above_min"].floor_mean
    assert np.isfinite(relaxed) and relaxed < 0.5 * inputs, (relaxed, inputs)
    assert metrics["fire_subset_median_energy_above_min"].floor_mean == inputs     # the same 4 inputs
    # ASE's L-BFGS on the learned force field (MoldiffCalculator): a molecule it calls converged has
    # its largest force below fmax on that surface; the others ran to the step cap
    from ase import Atoms
    from moldiff.ase import MoldiffCalculator
    lbfgs = pq.read_table(cfg.run_dir / "relaxed/lbfgs_seed0").to_pandas()
    calc = MoldiffCalculator(cfg.run_dir)
    for _, row in lbfgs.iterrows():
        atoms = Atoms(numbers=row.z, positions=np.asarray(row.pos, dtype=np.float64).reshape(-1, 3), calculator=calc)
        largest = np.linalg.norm(atoms.get_forces(), axis=1).max()
        assert (largest < 2 * cfg.relaxation.fmax) if row.converged else (row.n_steps == 30 and row.failed == "step_cap")
    # moldiff calc: the same model's energies and forces for the structures of a file
    from ase.io import read, write
    from moldiff.command import main as moldiff
    frames = [Atoms(numbers=row.z, positions=np.asarray(row.pos, dtype=np.float64).reshape(-1, 3))
              for _, row in lbfgs.head(3).iterrows()]
    write(tmp_path / "in.extxyz", frames)
    assert moldiff(["calc", str(cfg.run_dir), str(tmp_path / "in.extxyz"), "--out", str(tmp_path / "out.extxyz")]) == 0
    for atoms, done in zip(frames, read(tmp_path / "out.extxyz", index=":")):
        atoms.calc = calc
        assert done.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
        assert np.allclose(done.get_forces(), atoms.get_forces(), atol=1e-5)
    assert sum("GFN2-xTB relaxation of" in m for m in log) == 1


def test_energy_subset_is_drawn_from_the_ids_alone():
    from moldiff.metrics.relaxation_energy import energy_stats, energy_subset_ids
    ids = [f"m{i}-{k}" for i in range(20) for k in ("etkdg", "prior")]
    kinds = [i.split("-")[1] for i in ids]
    subset = energy_subset_ids(ids, kinds, 5, seed=3)
    assert len(subset) == 5 and all(i.endswith("etkdg") for i in subset)
    assert energy_subset_ids(ids[::-1], kinds[::-1], 5, seed=3) == subset          # any row order
    assert energy_subset_ids(ids, kinds, 5, seed=4) != subset
    assert len(energy_subset_ids(ids, kinds, 100)) == 20 and energy_subset_ids(ids, kinds, 0) == []
    stats = energy_stats(np.array([1.0, np.nan, 3.0, 10.0]))
    assert stats == {"median_energy_above_min": 3.0, "mean_energy_above_min": 14 / 3, "no_energy_fraction": 0.25}


def test_morered_configs_fail_early(tmp_path):
    with pytest.raises(ConfigError, match="painn needs model.cutoff"):
        tiny_morered(tmp_path, "x", "joint", **{"model.cutoff": "null"})
    with pytest.raises(ConfigError, match="force_field trains on data.qm9.gfn2_labels"):
        tiny_morered(tmp_path, "x", "joint", **{"objective.name": "force_field"})
    with pytest.raises(ConfigError, match=r"samplers \['fire'\] do not fit objective morered"):
        tiny_morered(tmp_path, "x", "joint", **{"relaxation.samplers": "[fire]"})
    with pytest.raises(ConfigError, match="objective.name morered trains model.backbone painn"):
        tiny_morered(tmp_path, "x", "joint", **{"model.backbone": "egnn"})


def test_inputs_are_made_from_the_split_asked_for(tmp_path):
    """Sweeps select on inputs made from validation molecules, results on test molecules: the two
    sets of inputs share no molecule."""
    from moldiff.data.sources import prepare_data
    from moldiff.data.store import read_dataset, read_manifest
    from moldiff.relaxation.pipeline import prepare_inputs

    made = {}
    for split in ("test", "validation"):
        cfg = tiny_morered(tmp_path, "x", "joint", **{"relaxation.inputs.split": split,
                                                      "relaxation.inputs.kinds": "[diffusion]"})
        data = prepare_data(cfg.data, log=lambda m: None)
        path = prepare_inputs(cfg, data, log=lambda m: None)
        source = data.reference if split == "test" else data.validation
        stable = set(read_dataset(source, validate=False)[0].column("id").to_pylist())
        made[split] = {i.rsplit("-", 1)[0] for i in read_dataset(path, validate=False)[0].column("id").to_pylist()}
        assert len(made[split]) == 3 and made[split] <= stable, (split, made[split])
        assert read_manifest(path).generator["from"] == str(source)
    assert not made["test"] & made["validation"]


def test_validation_inputs_need_a_validation_split(tmp_path):
    import dataclasses

    from moldiff.data.sources import prepare_data
    from moldiff.relaxation.pipeline import prepare_inputs

    cfg = tiny_morered(tmp_path, "x", "joint", **{"relaxation.inputs.split": "validation"})
    data = prepare_data(cfg.data, log=lambda m: None)
    with pytest.raises(ConfigError, match="relaxation.inputs.split: validation, but data.source 'qm9'"):
        prepare_inputs(cfg, dataclasses.replace(data, validation=None), log=lambda m: None)
