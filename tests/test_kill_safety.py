"""Nothing lost to a kill: sampling, simulation and relaxation keep their results block by block as
they land, and a rerun continues from the last complete block, redoing none and losing no molecule.

The sample stage's driver is killed for real (SIGKILL) mid-simulation and again mid-sampling; the
exactness of a continued Langevin run and the relaxation's resume are checked by cutting them short
in-process at a block boundary, which is what a kill leaves on disk (every block is written
atomically)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from moldiff.parallel.partial import FINGERPRINT, PartialResults, Work, decode_chunk, encode_chunk
from moldiff.sampling.langevin import LangevinSettings, LangevinState, langevin

ROOT = Path(__file__).resolve().parents[1]


class _Killed(Exception):
    pass


def _harmonic(x):
    return -x


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_langevin_run_continued_from_its_saved_state_makes_the_same_frames(backend):
    s = LangevinSettings(kT=1.0, dt=0.01, burn_in=7, n_frames=20, save_every=3)
    x0 = np.random.default_rng(0).normal(size=(5, 2))
    start = x0 if backend == "numpy" else torch.as_tensor(x0)
    forces = _harmonic
    whole = langevin(forces, start, s, seed=3, on_frames=lambda i, f: None, frames_per_call=4)

    saved, states = {}, []

    def keep_block(first, frames):
        saved[first] = np.array(frames)

    def keep_state(state):
        states.append(state)
        if len(states) == 2:                      # cut short after the second block
            raise _Killed
    with pytest.raises(_Killed):
        langevin(forces, start, s, seed=3, on_frames=keep_block, frames_per_call=4, on_state=keep_state)
    last = states[-1]
    frames = np.concatenate([saved[k] for k in sorted(saved)])
    assert len(frames) == 8 and last.step == s.burn_in + 8 * s.save_every
    resumed = langevin(forces, start, s, seed=3, on_frames=lambda i, f: None, frames_per_call=4,
                       resume=LangevinState(last.step, last.x, last.v, last.rng, frames))
    np.testing.assert_array_equal(resumed, whole)          # bitwise: the noise continues where it stopped
    with pytest.raises(ValueError, match="cannot resume"):
        langevin(forces, start, s, seed=3, resume=LangevinState(last.step + 1, last.x, last.v, last.rng, frames))


def test_partial_results_are_kept_for_their_own_work_and_discarded_for_other_work(tmp_path):
    fp = {"checkpoint": "abc", "sampling": {"n_steps": 10}}
    store = PartialResults(tmp_path / "p", fp, log=None)
    store.save_arrays("chunk_000000.npz", **encode_chunk(np.arange(6.0).reshape(2, 3)))
    molecules = [(np.array([6, 1]), np.ones((2, 3))), (np.array([8]), np.zeros((1, 3)))]
    store.save_arrays("chunk_000001.npz", **encode_chunk(molecules))
    (tmp_path / "p" / ".chunk_000002.npz.tmp-1234").write_bytes(b"cut short")     # a write a kill interrupted
    again = PartialResults(tmp_path / "p", json.loads(json.dumps(fp)), log=None)
    assert again.names("chunk_*") == ["chunk_000000.npz", "chunk_000001.npz"]
    np.testing.assert_array_equal(decode_chunk(again.load_arrays("chunk_000000.npz")), np.arange(6.0).reshape(2, 3))
    back = decode_chunk(again.load_arrays("chunk_000001.npz"))
    assert [z.tolist() for z, _ in back] == [[6, 1], [8]] and back[0][1].shape == (2, 3)
    log = []
    other = PartialResults(tmp_path / "p", {**fp, "checkpoint": "retrained"}, log=log.append)
    assert other.names() == [] and "discarded" in log[0]
    assert json.loads((tmp_path / "p" / FINGERPRINT).read_text())["checkpoint"] == "retrained"


def test_work_knows_the_dataset_it_made(tmp_path):
    from moldiff.data.records import build_table
    from moldiff.data.store import Manifest, write_dataset

    work = Work(tmp_path, "sample", 0, {"checkpoint": "abc"})
    assert work.id == Work(tmp_path, "sample", 0, {"checkpoint": "abc"}).id != Work(tmp_path, "sample", 1, work.fingerprint).id
    path = tmp_path / "samples" / "seed_0"
    assert not work.done_in(path)
    z = np.ones(2, dtype=int)
    for made_with, expected in ((None, False), ("other", False), (work.id, True)):
        write_dataset(path, build_table(z, np.zeros((1, 2, 3))), Manifest(name="s", source="test", units={},
                                                                         generator={"made_with": made_with}))
        assert work.done_in(path, log=None) is expected


# ------------------------------------------------------------------------- the sample stage, killed


def _stage_config(tmp_path) -> dict:
    from conftest import tiny_raw_config

    raw = tiny_raw_config(tmp_path, "killed_sampler")
    # 4 chunks per seed; 10 simulation blocks per seed, each long enough to be caught on disk
    raw["sampling"] = {"n_steps": 60, "n_samples": 40, "seeds": [0, 1], "batch_size": 10}
    raw["simulation"] = {"enabled": True, "n_chains": 4, "burn_in": 0, "n_frames": 40, "save_every": 40, "dt": 0.002}
    return raw


def _start_driver(tmp_path, ray_session, run_dir: Path) -> subprocess.Popen:
    # a second driver on the session's cluster: killing it kills its actors (it owns them)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run.py"), str(run_dir), "--stages", "sample"],
                            cwd=tmp_path, env=env, start_new_session=True,
                            stdout=(tmp_path / "driver.log").open("a"), stderr=subprocess.STDOUT)


def _kill_when(driver: subprocess.Popen, ready, tmp_path, what: str) -> None:
    try:
        deadline = time.time() + 300
        while not ready():
            assert driver.poll() is None and time.time() < deadline, \
                f"the stage ended before {what}:\n" + (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


def test_a_sample_stage_killed_mid_simulation_and_mid_sampling_continues_where_it_stopped(ray_session, tmp_path):
    from moldiff.config import validate_config
    from moldiff.data.store import read_dataset, stacked_positions
    from moldiff.experiment import run_experiment

    cfg = validate_config(_stage_config(tmp_path))
    run_experiment(cfg, stages=["data", "train"], log=lambda m: None)
    run_dir = cfg.run_dir
    sim0 = run_dir / "simulation" / "seed_0" / "actor_0"

    # 1. killed while seed 0's chains run: its samples are written, its simulation has blocks
    driver = _start_driver(tmp_path, ray_session, run_dir)
    _kill_when(driver, lambda: (sim0 / "state.npz").exists() and len(list(sim0.glob("block_*.npy"))) >= 2,
               tmp_path, "seed 0's simulation had two blocks")
    iid0 = read_dataset(run_dir / "samples" / "seed_0")[0]
    blocks = {p.name: np.load(p) for p in sim0.glob("block_*.npy")}
    assert not (run_dir / "samples" / "sim_seed_0").exists()

    # 2. rerun, killed while seed 1's molecules are drawn: seed 0 finished from where it stopped
    driver = _start_driver(tmp_path, ray_session, run_dir)
    partial1 = run_dir / "partial" / "sample_seed_1"
    _kill_when(driver, lambda: len(list(partial1.glob("chunk_*.npz"))) >= 1, tmp_path, "seed 1 had a chunk")
    second = (tmp_path / "driver.log").read_text()
    assert "samples/seed_0: already made by this model" in second, second[-3000:]
    assert "continuing from frame" in second, second[-3000:]
    frames0 = read_dataset(run_dir / "samples" / "sim_seed_0")[0]
    # chain by chain: chain c's frames are rows c*40 ...; actor 0 runs the first chains, and the
    # blocks it kept before the kill are their first frames, as they were
    chains = stacked_positions(frames0).reshape(4, 40, -1)
    first = blocks[sorted(blocks)[0]]                        # [frames, actor 0's chains, 3n]
    np.testing.assert_array_equal(chains[:first.shape[1], :len(first)].transpose(1, 0, 2),
                                  first.astype(np.float32))          # datasets store positions in float32
    chunks = {p.name: decode_chunk(dict(np.load(p))) for p in sorted(partial1.glob("chunk_*.npz"))}

    # 3. a last rerun, in this process: only what is missing is made
    log = []
    run_experiment(cfg, stages=["sample"], log=log.append)
    text = "\n".join(log)
    assert "sim_seed_0: already made" in text and "samples/seed_0: already made" in text
    assert f"{10 * len(chunks)}/40 from {partial1}" in text and f"{4 - len(chunks)} of 4 chunk(s) to go" in text
    iid1 = stacked_positions(read_dataset(run_dir / "samples" / "seed_1")[0])
    assert iid1.shape == (40, 13, 3) and np.isfinite(iid1).all()
    for name, chunk in chunks.items():                       # the chunks made before the kill, as they were
        k = int(name[len("chunk_"):-len(".npz")])
        np.testing.assert_array_equal(iid1[10 * k:10 * (k + 1)], chunk)
    assert read_dataset(run_dir / "samples" / "seed_0")[0].equals(iid0)       # never redone
    assert read_dataset(run_dir / "samples" / "sim_seed_1")[1].n_molecules == 4 * 40
    assert not partial1.exists()                              # kept only until the seed's samples were written


# --------------------------------------------------------------------------- relaxation, cut short


def _relax_inputs(path: Path) -> int:
    """Six small molecules (MMFF minima), each moved 0.1 A off its minimum: the relaxation's inputs."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from moldiff.data.records import build_table
    from moldiff.data.relaxation_inputs import generated_inputs
    from moldiff.data.store import Manifest, write_dataset

    zs, starts = [], []
    for i, smiles in enumerate(["CCO", "CC=O", "CCN", "OCO", "CC(C)O", "C=CO"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = i
        assert AllChem.EmbedMolecule(mol, params) == 0
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        pos = mol.GetConformer().GetPositions()
        zs.append(np.array([a.GetAtomicNum() for a in mol.GetAtoms()]))
        starts.append(pos + np.random.default_rng(i).normal(scale=0.1, size=pos.shape))
    table = generated_inputs(build_table(zs, starts, ids=[f"m{i}" for i in range(len(zs))]))
    write_dataset(path, table, Manifest(name="inputs", source="relaxation-inputs", units={"length": "Angstrom"}))
    return table.num_rows


def test_a_relaxation_cut_short_relaxes_only_the_molecules_it_had_not_finished(ray_session, tmp_path):
    from moldiff.relaxation.pipeline import relax_file

    inputs, out = tmp_path / "inputs", tmp_path / "relaxed" / "mmff_seed0"
    n = _relax_inputs(inputs)
    work = Work(tmp_path, "relax-mmff", 0, {"inputs": str(inputs)})
    partial = work.partial(log=None)
    written = []
    real_write = partial.write

    def write_then_die(name, fn):                 # the driver dies after its second batch is on disk
        if len(written) == 2:
            raise _Killed
        written.append(name)
        return real_write(name, fn)
    partial.write = write_then_die
    args = (inputs, out, "mmff", None, None, 1, 1, 0, {"max_steps": 500})
    with pytest.raises(_Killed):
        relax_file(*args, batch_size=1, partial=partial, made_with=work.id)
    before = {r["id"]: r for name in written for r in pq.read_table(partial.path(name)).to_pylist()}
    assert len(before) == 2 and not out.exists()

    log = []
    got = relax_file(*args, batch_size=1, partial=work.partial(log=None), made_with=work.id, log=log.append)
    assert got == n and f"2/{n} inputs relaxed before the run was cut short" in log[0] and f"the other {n - 2}" in log[0]
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == [f"gen-m{i}" for i in range(n)]        # every input once, in order
    def same(a, b):                              # ratio is nan for a generated input (its own target)
        return {k: v for k, v in a.items() if k != "ratio"} == {k: v for k, v in b.items() if k != "ratio"}
    assert all(same(r, before[r["id"]]) for r in rows if r["id"] in before)     # kept, not relaxed again
    assert all(r["converged"] for r in rows)
    assert work.done_in(out, log=None) and not partial.dir.exists()


def test_a_relaxation_that_fails_without_a_resume_place_leaves_no_scratch_behind(ray_session, tmp_path):
    """Without ``partial`` the relaxed blocks go to a scratch directory beside the output; a failure
    in the actors (here a learned sampler whose checkpoint is not there) must not leave it behind."""
    from moldiff.relaxation.pipeline import relax_file

    inputs, out = tmp_path / "inputs", tmp_path / "relaxed" / "itp_seed0"
    _relax_inputs(inputs)
    out.parent.mkdir()
    with pytest.raises(Exception, match="no_model"):
        relax_file(inputs, out, "itp", tmp_path / "no_model", tmp_path / "no_model", 1, 1, 0, {"max_steps": 5})
    assert not any(out.parent.iterdir()), list(out.parent.iterdir())
