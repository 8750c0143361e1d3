"""QM9 (Ramakrishnan et al. 2014) from the CSVs inside the ``qm9pack`` wheel, offline.

The wheel holds the 130,831 molecules that remain after removing QM9's 3,054 "uncharacterized"
ones (the population EDM and UniGEM use): B3LYP/6-31G(2df,p) geometries in Angstrom and every
property. We keep the six UniGEM targets, in the paper's units:

    alpha  isotropic polarizability     bohr^3      (as stored)
    gap    HOMO-LUMO gap                meV         (Hartree x 27211.386)
    homo   HOMO energy                  meV
    lumo   LUMO energy                  meV
    mu     dipole moment                D           (as stored)
    Cv     heat capacity at 298 K       cal/mol K   (as stored)

Split: one seeded permutation of every row, cut into train / validation / test in EDM's
proportions (100,000 / 17,748 / 13,083 of 130,831: test = 10%, train = 100000/130831). Filters
(heavy-atom or atom count) and size caps are applied *after* the split, so a molecule's split never
depends on them: the test molecules of a small run are never training molecules of a larger one.
The permutation is numpy's ``default_rng(split_seed)``, not EDM's legacy ``np.random.seed(0)``, so
the split has EDM's sizes but not its exact membership.

    python -m moldiff.data.qm9 fixture --out tests/fixtures/qm9_fixture.csv --n 300
writes a small CSV in the wheel's layout (the columns this reader uses) for tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa

from .records import DatasetError, build_table
from .store import Manifest

HARTREE_TO_MEV = 27211.386
ELEMENT_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# property name -> (CSV column, factor to the unit below, unit)
PROPERTIES = {
    "alpha": ("Polarizability_bohr3", 1.0, "bohr^3"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_MEV, "meV"),
    "homo": ("HOMO_au", HARTREE_TO_MEV, "meV"),
    "lumo": ("LUMO_au", HARTREE_TO_MEV, "meV"),
    "mu": ("Dipole_debye", 1.0, "D"),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/mol K"),
}
STRUCTURE_COLUMNS = ["Index", "SMILES", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang"]
SPLITS = ("train", "val", "test")
EDM_TRAIN_FRACTION = 100_000 / 130_831
EDM_TEST_FRACTION = 0.1
LEVEL_OF_THEORY = "B3LYP/6-31G(2df,p) (QM9)"


def qm9pack_csvs() -> list[Path]:
    """The wheel's three CSV parts, found without importing qm9pack (its loader needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("QM9 needs the qm9pack wheel (104 MB, the real QM9): pip install 'moldiff[qm9]' "
                           "or set data.qm9.csv_dir to a folder of CSVs in its layout")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return csvs_in(folder)


def csvs_in(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*.csv") if "polarizability" not in p.name)
    if not files:
        raise DatasetError(f"{folder}: no QM9 CSV files found")
    return files


def read_index(files: list[Path]) -> "pd.DataFrame":
    """Every row of the CSVs with the columns we use, plus its file and line (for error messages)."""
    import pandas as pd

    frames = []
    for file in files:
        try:
            df = pd.read_csv(file, usecols=lambda c: c in STRUCTURE_COLUMNS or c in {v[0] for v in PROPERTIES.values()})
        except (ValueError, OSError, pd.errors.ParserError) as err:
            raise DatasetError(f"{file}: cannot read as a QM9 CSV: {err}") from None
        missing = [c for c in STRUCTURE_COLUMNS + [v[0] for v in PROPERTIES.values()] if c not in df.columns]
        if missing:
            raise DatasetError(f"{file}: missing column(s) {missing}")
        df["_file"], df["_line"] = str(file), np.arange(len(df)) + 2      # line 1 is the header
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    if df["Index"].duplicated().any():
        dup = df[df["Index"].duplicated()].iloc[0]
        raise DatasetError(f"{dup['_file']}, line {dup['_line']}: QM9 index {dup['Index']} appears twice")
    return df.sort_values("Index", ignore_index=True)


def heavy_atoms(stoichiometry: "pd.Series") -> np.ndarray:
    """Heavy-atom counts from the 'Stoichiometry' column ('[H,C,N,O,F]' counts)."""
    counts = np.array([json.loads(s) for s in stoichiometry], dtype=np.int64)
    return counts[:, 1:].sum(1)


def split_labels(n: int, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per row, from one seeded permutation in EDM's proportions."""
    n_test = int(EDM_TEST_FRACTION * n)
    n_train = int(round(EDM_TRAIN_FRACTION * n))
    order = np.random.default_rng(seed).permutation(n)
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train:n - n_test]] = "val"
    labels[order[n - n_test:]] = "test"
    return labels


@dataclass(frozen=True)
class QM9Selection:
    split_seed: int = 0
    max_heavy_atoms: Optional[int] = None
    max_atoms: Optional[int] = None
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None


def select_rows(df: "pd.DataFrame", sel: QM9Selection) -> dict[str, np.ndarray]:
    """Row positions of each split, in the permutation's order, after the filters and caps."""
    labels = split_labels(len(df), sel.split_seed)
    keep = np.ones(len(df), bool)
    if sel.max_heavy_atoms is not None:
        keep &= heavy_atoms(df["Stoichiometry"]) <= sel.max_heavy_atoms
    if sel.max_atoms is not None:
        keep &= df["N_atoms"].to_numpy() <= sel.max_atoms
    order = np.random.default_rng(sel.split_seed).permutation(len(df))
    caps = {"train": sel.n_train, "val": sel.n_val, "test": sel.n_test}
    out = {}
    for split in SPLITS:
        rows = order[(labels[order] == split) & keep[order]]
        out[split] = rows[:caps[split]] if caps[split] is not None else rows
        if len(out[split]) == 0:
            raise DatasetError(f"QM9 selection {sel} leaves no {split} molecules")
    return out


def parse_molecule(row) -> tuple[np.ndarray, np.ndarray]:
    """(z [n], pos [n, 3]) of one CSV row; errors name the file, line and column."""
    where = f"{row['_file']}, line {row['_line']} (QM9 index {row['Index']})"
    try:
        symbols = json.loads(row["Elements"].replace("'", '"'))
        z = np.array([ELEMENT_Z[s] for s in symbols], dtype=np.int16)
    except (json.JSONDecodeError, KeyError, AttributeError) as err:
        raise DatasetError(f"{where}: column 'Elements' is not a list of H/C/N/O/F symbols ({err})") from None
    try:   # not JSON: the wheel writes numbers like "0." and "1."
        text = row["XYZ_Ang"]
        if text.count("[") != len(z) + 1:
            raise ValueError(f"{text.count('[') - 1} atoms in brackets")
        pos = np.array(text.replace("[", " ").replace("]", " ").split(","), dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError, AttributeError) as err:
        raise DatasetError(f"{where}: column 'XYZ_Ang' is not a list of [x, y, z] ({err})") from None
    if pos.shape != (len(z), 3) or len(z) != row["N_atoms"]:
        raise DatasetError(f"{where}: {len(z)} elements, N_atoms {row['N_atoms']} and positions of shape "
                           f"{pos.shape} disagree")
    if not np.isfinite(pos).all():
        raise DatasetError(f"{where}: column 'XYZ_Ang' contains NaN or inf")
    return z, pos


def build_split(df: "pd.DataFrame", rows: np.ndarray) -> pa.Table:
    sub = df.iloc[rows]
    parsed = [parse_molecule(r) for _, r in sub.iterrows()]
    props = {}
    for name, (column, factor, _) in PROPERTIES.items():
        values = sub[column].to_numpy(dtype=np.float64) * factor
        if not np.isfinite(values).all():
            bad = sub.iloc[int(np.argmin(np.isfinite(values)))]
            raise DatasetError(f"{bad['_file']}, line {bad['_line']}: column '{column}' is missing or not a number")
        props[name] = values
    return build_table([z for z, _ in parsed], [p for _, p in parsed],
                       ids=[f"qm9-{i}" for i in sub["Index"]], smiles=list(sub["SMILES"]), properties=props)


def build_datasets(files: list[Path], sel: QM9Selection, name: str,
                   log: Callable[[str], None] = print) -> dict[str, tuple[pa.Table, Manifest]]:
    """The three splits as (table, manifest) pairs, ready for ``write_dataset``."""
    df = read_index(files)
    rows = select_rows(df, sel)
    log(f"[data] QM9: {len(df)} molecules in {len(files)} file(s); "
        + ", ".join(f"{s} {len(r)}" for s, r in rows.items()) + f" after the selection {sel}")
    out = {}
    for split, idx in rows.items():
        table = build_split(df, idx)
        manifest = Manifest(name=f"{name}-{split}", source="qm9",
                            units={"length": "Angstrom"}, level_of_theory=LEVEL_OF_THEORY,
                            properties={k: unit for k, (_, _, unit) in PROPERTIES.items()},
                            generator={"files": [str(f) for f in files], "split": split,
                                       "selection": sel.__dict__, "n_rows_total": len(df),
                                       "split_rule": "default_rng(split_seed) permutation; EDM proportions"})
        out[split] = (table, manifest)
    return out


def write_fixture(out: Path, n: int, seed: int = 0, files: Optional[list[Path]] = None) -> Path:
    """A seeded random sample of ``n`` rows of the wheel's CSVs, with only the columns we read."""
    df = read_index(files or qm9pack_csvs())
    rows = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    cols = STRUCTURE_COLUMNS + [v[0] for v in PROPERTIES.values()]
    out.parent.mkdir(parents=True, exist_ok=True)
    df.iloc[rows][cols].to_csv(out, index=False)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    fx = sub.add_parser("fixture", help="write a small test CSV sampled from the qm9pack wheel")
    fx.add_argument("--out", type=Path, required=True)
    fx.add_argument("--n", type=int, default=300)
    fx.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"wrote {write_fixture(args.out, args.n, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
