"""The QM9 reader on the committed fixture (300 rows sampled from the qm9pack wheel by
``python -m moldiff.data.qm9 fixture``), the split rule, and property normalisation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moldiff.config import DataConfig
from moldiff.data.normalization import PropertyNormalizer
from moldiff.data.qm9 import HARTREE_TO_MEV, QM9Selection, build_datasets, read_index, split_labels
from moldiff.data.records import DatasetError
from moldiff.data.sources import prepare_data
from moldiff.data.store import positions, read_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "qm9_fixture.csv"


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def splits():
    return build_datasets([FIXTURE], QM9Selection(split_seed=0), "fixture", quiet)


def test_splits_have_edm_proportions_and_cover_every_row_once(splits):
    sizes = {k: t.num_rows for k, (t, _) in splits.items()}
    assert sizes == {"train": round(300 * 100_000 / 130_831), "val": 300 - 229 - 30, "test": 30}
    ids = [i for t, _ in splits.values() for i in t.column("id").to_pylist()]
    assert len(set(ids)) == 300
    # the full-QM9 sizes are EDM's
    labels = split_labels(130_831, 0)
    assert [(labels == s).sum() for s in ("train", "val", "test")] == [100_000, 17_748, 13_083]


def test_rows_keep_geometry_elements_and_properties_in_paper_units(splits):
    raw = pd.read_csv(FIXTURE).set_index("Index")
    table, manifest = splits["test"]
    i = 0
    index = int(table.column("id")[i].as_py().split("-")[1])
    row = raw.loc[index]
    z = np.asarray(table.column("z")[i].as_py())
    symbols = json.loads(row["Elements"].replace("'", '"'))
    assert z.tolist() == [{"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}[s] for s in symbols]
    xyz = np.array(json.loads(row["XYZ_Ang"].replace(".,", ".0,").replace(".]", ".0]")))
    assert np.allclose(positions(table)[i], xyz, atol=1e-6)
    assert table.column("prop_lumo")[i].as_py() == pytest.approx(row["LUMO_au"] * HARTREE_TO_MEV)
    assert table.column("prop_alpha")[i].as_py() == pytest.approx(row["Polarizability_bohr3"])
    assert table.column("smiles")[i].as_py() == row["SMILES"]
    assert manifest.properties == {"alpha": "bohr^3", "gap": "meV", "homo": "meV", "lumo": "meV", "mu": "D",
                                   "Cv": "cal/mol K"}
    assert manifest.units["length"] == "Angstrom"


def test_filters_apply_after_the_split_so_membership_never_changes(splits):
    small = build_datasets([FIXTURE], QM9Selection(split_seed=0, max_heavy_atoms=8, n_train=20), "f8", quiet)
    for split in ("train", "val", "test"):
        table = small[split][0]
        assert set(table.column("id").to_pylist()) <= set(splits[split][0].column("id").to_pylist())
        heavy = [sum(v > 1 for v in z) for z in table.column("z").to_pylist()]
        assert max(heavy) <= 8
    assert small["train"][0].num_rows == 20
    assert build_datasets([FIXTURE], QM9Selection(split_seed=1), "s1", quiet)["test"][0].column("id").to_pylist() \
        != splits["test"][0].column("id").to_pylist()


def test_bad_rows_are_named_by_file_line_and_column(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    broken = lines[2].replace("[[", "[[oops,", 1)
    bad.write_text("\n".join([lines[0], lines[1], broken] + lines[3:]) + "\n")
    with pytest.raises(DatasetError, match=r"bad\.csv, line 3 .*'XYZ_Ang'"):
        build_datasets([bad], QM9Selection(), "bad", quiet)
    no_lumo = tmp_path / "no_lumo.csv"
    pd.read_csv(FIXTURE).drop(columns=["LUMO_au"]).to_csv(no_lumo, index=False)
    with pytest.raises(DatasetError, match=r"no_lumo\.csv: missing column\(s\) \['LUMO_au'\]"):
        read_index([no_lumo])
    with pytest.raises(DatasetError, match="leaves no"):
        build_datasets([FIXTURE], QM9Selection(max_atoms=3), "tiny", quiet)


def test_prepare_data_writes_three_cached_datasets(tmp_path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "qm9_part1.csv").write_text(FIXTURE.read_text())
    cfg = DataConfig(source="qm9", root=str(tmp_path / "data"), qm9={"csv_dir": str(csv_dir), "max_heavy_atoms": 8})
    messages = []
    data = prepare_data(cfg, messages.append)
    assert {p.name.rsplit("-", 1)[1] for p in (data.train, data.validation, data.reference)} == {"train", "val", "test"}
    assert data.train_manifest.source == "qm9" and data.reference_manifest.generator["split"] == "test"
    table, _ = read_dataset(data.validation)
    assert table.num_rows > 0
    again = prepare_data(cfg, messages.append)
    assert again.train == data.train and any("using cached" in m for m in messages)


def test_property_normalisation_round_trip_and_checks():
    values = np.array([1.0, 2.0, 4.0, 9.0])
    norm = PropertyNormalizer.from_values("lumo", "meV", values)
    assert norm.mean == 4.0 and norm.mad == pytest.approx(np.abs(values - 4.0).mean())
    assert np.allclose(norm.denormalize(norm.normalize(values)), values)
    assert abs(norm.normalize(values).mean()) < 1e-12
    assert PropertyNormalizer.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="constant"):
        PropertyNormalizer.from_values("mu", "D", [1.0, 1.0])
    with pytest.raises(ValueError, match=r"ckpt\.json: .*lacks \['mad'\]"):
        PropertyNormalizer.from_dict({"name": "lumo", "unit": "meV", "mean": 0.0}, "ckpt.json")
