"""k_min: auto picks MoreRed's convergence threshold from the time predictor's reading of clean
validation structures; labels keep thresholds apart."""
import json

import numpy as np
import pytest
import torch

from moldiff.config import RelaxationConfig
from moldiff.relaxation.methods import METHODS, display_label, incompatibility, method, parse_label
from moldiff.relaxation.pipeline import K_MIN_RECORD, configured_label, evaluated_labels, relaxed_path
from moldiff.relaxation.threshold import clean_indices
from moldiff.data.records import build_table


class ReadsAtoms:
    """A stand-in time predictor whose per-atom reading is (number of atoms) / (T - 1): a molecule
    of n atoms reads as step n."""
    n_steps = 1000

    def __call__(self, graphs):
        n = graphs.n_atoms[graphs.batch].to(torch.float64)
        return {"time": n / (self.n_steps - 1)}

    def index_from_time(self, time_atom, graphs):
        total = torch.zeros(graphs.num_graphs, dtype=time_atom.dtype).index_add_(0, graphs.batch, time_atom)
        return torch.round(total / graphs.n_atoms * (self.n_steps - 1)).long()


def test_clean_indices_reads_every_structure_once_across_batches():
    rng = np.random.default_rng(0)
    sizes = [3, 5, 4, 7, 2, 6, 5]
    table = build_table([np.full(n, 6) for n in sizes], [rng.normal(size=(n, 3)) for n in sizes])
    assert clean_indices(ReadsAtoms(), table, batch_size=3).tolist() == sizes


def test_labels_round_trip_and_bad_labels_are_errors():
    assert method("jt").label(0) == "jt" and method("as").label(19) == "as-kmin19"
    assert parse_label("as-kmin19") == ("as", 19) and parse_label("itp") == ("itp", 0)
    assert display_label("jt-kmin20") == "MoreRed-JT (k_min 20)" and display_label("mmff") == "MMFF94 (RDKit)"
    for bad in ("jt_seed0", "bfgs", "fire-kmin"):
        with pytest.raises(ValueError, match="not a relaxation label"):
            parse_label(bad)


def test_the_method_registry_is_what_the_config_accepts_and_checks():
    assert list(RelaxationConfig.model_fields["samplers"].annotation.__args__[0].__args__) == list(METHODS)
    with pytest.raises(Exception, match="samplers"):
        RelaxationConfig(samplers=["bfgs"])
    # which model each method runs: MoreRed networks of the right kind, the force field, or none
    assert incompatibility("jt", "morered", "noise") and incompatibility("jt", "morered", "joint") is None
    assert incompatibility("itp", "morered", "noise") is None and incompatibility("fire", "morered", "joint")
    assert incompatibility("fire", "force_field", None) is None and incompatibility("mmff", "unigem", None) is None
    assert [n for n, m in METHODS.items() if m.adaptive] == ["as", "jt"]
    # RDKit and ASE's optimisers run on the CPU, one molecule at a time
    assert [n for n, m in METHODS.items() if not m.on_gpu] == ["lbfgs", "mmff"]
    assert incompatibility("lbfgs", "force_field", None) is None and incompatibility("lbfgs", "morered", "joint")


def test_evaluated_labels_put_the_configured_threshold_first_and_keep_complete_others(tmp_path):
    for label, seeds in (("jt", (0, 1)), ("jt-kmin5", (0, 1)), ("jt-kmin2", (0,)), ("fire", (0, 1))):
        for s in seeds:
            relaxed_path(tmp_path, label, s).mkdir(parents=True)
    rx = RelaxationConfig(samplers=["jt"], seeds=[0, 1], k_min="auto")
    with pytest.raises(FileNotFoundError, match="no k_min chosen for jt"):
        configured_label(rx, "jt", tmp_path)
    (tmp_path / "relaxed" / K_MIN_RECORD).write_text(json.dumps({"jt": {"k_min": 5}}))
    assert evaluated_labels(rx, tmp_path) == ["jt-kmin5", "jt"]        # jt-kmin2 lacks seed 1
    assert configured_label(rx, "itp", tmp_path) == "itp"              # auto leaves the fixed schedule at 0
    assert evaluated_labels(RelaxationConfig(samplers=["jt", "fire"], seeds=[0, 1], k_min=0), tmp_path) == \
        ["jt", "jt-kmin5", "fire"]
    with pytest.raises(FileNotFoundError, match="jt-kmin7_seed0: no relaxed molecules"):
        evaluated_labels(RelaxationConfig(samplers=["jt"], seeds=[0, 1], k_min=7), tmp_path)
