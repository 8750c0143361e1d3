"""Turn the ``data`` section of a config into two Parquet datasets: training set and reference.

Generated datasets are cached under ``data.root`` by a hash of everything that determines them
(system, sampler settings, selection, seed), so a second run of the same experiment, or another
experiment on the same data, reuses them.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config import DataConfig
from ..physics.lennard_jones import LennardJones
from . import lj
from .npz import read_md_npz, trajectory_manifest, trajectory_table
from .records import DatasetError
from .store import Manifest, dataset_exists, read_dataset, read_manifest, write_dataset


@dataclass
class PreparedData:
    train: Path
    reference: Path
    train_manifest: Manifest
    reference_manifest: Manifest
    potential: Optional[LennardJones]        # energy of generated samples, when the system has one
    validation: Optional[Path] = None        # a held-out split for model selection (QM9)

    def energy_fn(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        return None if self.potential is None else self.potential.energy_np


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


_build_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)


def _cached(path: Path, build: Callable[[], tuple], log: Callable[[str], None], writer=write_dataset) -> Manifest:
    # one build per dataset even when several threads prepare configs that share it (sweeps)
    with _build_locks[str(path)]:
        if dataset_exists(path):
            log(f"[data] using cached {path}")
            return read_manifest(path)
        table, manifest = build()
        writer(path, table, manifest)
        log(f"[data] wrote {path} ({manifest.n_molecules} molecules)")
        return manifest


def prepare_data(data: DataConfig, log: Callable[[str], None] = print) -> PreparedData:
    root = Path(data.root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return PREPARE[data.source](data, root, log)


def _prepare_states(data: DataConfig, root: Path, log) -> PreparedData:
    """State-vector systems: a training run and an independent reference run of the same protocol."""
    from .vectors import write_vector_dataset

    src = getattr(data, data.source)
    key = _key({"system": src.model_dump(mode="json"), "seed": data.seed})
    paths = {}
    for role, stream in (("train", 0), ("reference", 1)):
        name = f"{data.source}-{role}-{key}"
        # separate seed streams: the reference never replays a training run
        seed = int(np.random.SeedSequence([data.seed, stream]).generate_state(1)[0])
        if data.source == "muller_brown":
            from . import muller_brown
            build = lambda: muller_brown.build_dataset(src, role, seed, name, log)   # noqa: E731
        else:
            from . import alanine
            # the runs' chunks live beside the dataset, so an interrupted generation resumes
            build = lambda: alanine.build_dataset(src, role, seed, name, root / f"{name}.runs", log)  # noqa: E731
        _cached(root / name, build, log, writer=write_vector_dataset)
        paths[role] = root / name
    return PreparedData(paths["train"], paths["reference"], read_manifest(paths["train"]),
                        read_manifest(paths["reference"]), None)


def _prepare_qm9(data: DataConfig, root: Path, log) -> PreparedData:
    """QM9 train / val / test; the test split is the reference the metrics compare with."""
    from . import qm9

    src = data.qm9
    files = qm9.csvs_in(Path(src.csv_dir).expanduser()) if src.csv_dir else qm9.qm9pack_csvs()
    sel = qm9.QM9Selection(**src.model_dump(exclude={"csv_dir", "gfn2_labels"}))
    key = _key({"files": [_file_fingerprint(f) for f in files], "selection": sel.__dict__})
    name = f"qm9-{key}"
    paths = {split: root / f"{name}-{split}" for split in qm9.SPLITS}
    with _build_locks[name]:
        if not all(dataset_exists(p) for p in paths.values()):
            for split, (table, manifest) in qm9.build_datasets(files, sel, name, log).items():
                write_dataset(paths[split], table, manifest)
                log(f"[data] wrote {paths[split]} ({manifest.n_molecules} molecules)")
        else:
            log(f"[data] using cached {root / name}-{{train,val,test}}")
    train = paths["train"]
    if src.gfn2_labels is not None:
        train = _gfn2_labelled(paths["train"], src.gfn2_labels, root, log)
    return PreparedData(train, paths["test"], read_manifest(train), read_manifest(paths["test"]),
                        None, validation=paths["val"])


def _gfn2_labelled(stable: Path, labels, root: Path, log) -> Path:
    """GFN2-xTB energies and forces of the first training molecules and displaced copies (cached)."""
    from .xtb_labels import LabelSettings, build_labelled

    settings = LabelSettings(**labels.model_dump(exclude={"n_molecules"}))
    keyed = labels.model_dump(mode="json")
    if not labels.n_thermal:     # label sets made before thermal frames existed keep their cache names
        for field in ("n_thermal", "thermal_K", "thermal_steps"):
            keyed.pop(field)
    name = f"{stable.name}-gfn2-{_key({'labels': keyed})}"

    def build():
        table, manifest = read_dataset(stable, validate=False)
        labelled = build_labelled(table.slice(0, labels.n_molecules), settings, log=log)
        return labelled, Manifest(name=name, source="qm9-gfn2-labels", units={"length": "Angstrom", "energy": "eV",
                                  "forces": "eV/Angstrom"}, level_of_theory="GFN2-xTB (tblite) single points",
                                  generator={"from": str(stable), "labels": labels.model_dump(mode="json")})
    _cached(root / name, build, log)
    return root / name


def _prepare_lj(data: DataConfig, root: Path, log) -> PreparedData:
    src = data.lj
    system = src.model_dump(mode="json", exclude={"reference"})
    stem = f"lj{src.n_particles}-{src.pair_convention}"
    ref_key = _key({"system": system, "mcmc": src.reference.model_dump(mode="json"), "seed": data.seed})
    ref_name = f"{stem}-reference-{ref_key}"
    ref_manifest = _cached(root / ref_name, lambda: lj.build_reference(src, data.seed, ref_name, log), log)
    train_key = _key({"system": system, "mcmc": src.reference.model_dump(mode="json"),
                      "train": data.train.model_dump(mode="json"), "seed": data.seed})
    train_name = f"{stem}-{data.train.selection}-{train_key}"
    # the training chains get their own seed stream so they never replay reference chains
    train_seed = int(np.random.SeedSequence([data.seed, 1]).generate_state(1)[0])
    train_manifest = _cached(root / train_name,
                             lambda: lj.build_training_set(src, data.train, train_seed, train_name, log), log)
    return PreparedData(root / train_name, root / ref_name, train_manifest, ref_manifest, lj.lj_potential(src))


def _file_fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def _generate_xtb_md(data: DataConfig, root: Path, log) -> Path:
    from .xtb_md import MDSettings, generate

    settings = MDSettings(**data.xtb_md.model_dump(exclude={"molecule"}), seed=data.seed)
    out = root / f"xtb_md-{_key({'settings': data.xtb_md.model_dump(mode='json'), 'seed': data.seed})}"
    with _build_locks[str(out / data.xtb_md.molecule)]:
        return generate([data.xtb_md.molecule], settings, out, log)[data.xtb_md.molecule]


def _prepare_split(data: DataConfig, root: Path, log) -> PreparedData:
    """npz / parquet / xtb_md / ase sources: training frames selected from the trajectory, the rest is the reference."""
    if data.source in ("npz", "xtb_md"):
        if data.source == "npz":
            path, kT = Path(data.npz.path).expanduser(), data.npz.kT
        else:
            from .xtb_md import MDSettings
            path = _generate_xtb_md(data, root, log)
            kT = MDSettings(temperature_K=data.xtb_md.temperature_K).kT
        traj = read_md_npz(path)
        table, manifest = trajectory_table(traj), trajectory_manifest(traj, kT, path)
        fingerprint = _file_fingerprint(path)
    elif data.source == "ase":
        from .ase_files import AseFileSettings, ase_table
        a = data.ase
        path = Path(a.path).expanduser()
        table, manifest, digest = ase_table(AseFileSettings(a.path, a.index, a.energy_unit, a.length_unit,
                                                            a.energy_key, a.forces_key, tuple(a.properties)), a.kT)
        # the files' content and how they are read and converted
        fingerprint = {"content": digest, "read": a.model_dump(mode="json", exclude={"path"})}
    else:
        path = Path(data.parquet.path).expanduser()
        table, manifest = read_dataset(path)
        fingerprint = _file_fingerprint(path / "data.parquet")
    n = table.num_rows
    sel = data.train
    if sel.selection != "all" and sel.n_frames >= n:
        raise DatasetError(f"{path}: data.train.n_frames={sel.n_frames} leaves no reference frames ({n} in the file)")
    if sel.selection == "first_frames":
        train_idx = np.arange(sel.n_frames)
    elif sel.selection == "random_subset":
        train_idx = np.sort(np.random.default_rng(data.seed).permutation(n)[:sel.n_frames])
    else:
        train_idx = np.arange(n)
    ref_idx = np.setdiff1d(np.arange(n), train_idx) if sel.selection != "all" else np.arange(n)
    key = _key({"file": fingerprint, "train": sel.model_dump(mode="json"), "seed": data.seed})
    stem = f"{Path(manifest.name).stem}-{sel.selection}-{key}"

    def subset(idx, role):
        sub = manifest.__class__(**{**manifest.__dict__, "generator": {
            **manifest.generator, "role": role, "selection": sel.model_dump(mode="json"), "seed": data.seed}})
        return table.take(idx), sub

    train_m = _cached(root / f"{stem}-train", lambda: subset(train_idx, "train"), log)
    ref_m = _cached(root / f"{stem}-reference", lambda: subset(ref_idx, "reference"), log)
    return PreparedData(root / f"{stem}-train", root / f"{stem}-reference", train_m, ref_m, None)


# every data source's preparation (config.SOURCE_KINDS lists the same names with the kind of data
# each gives; a test checks the two agree)
PREPARE: dict[str, Callable[[DataConfig, Path, Callable], PreparedData]] = {
    "lj": _prepare_lj, "npz": _prepare_split, "parquet": _prepare_split, "xtb_md": _prepare_split, "ase": _prepare_split,
    "muller_brown": _prepare_states, "alanine": _prepare_states, "qm9": _prepare_qm9,
}
