"""Prediction heads as named loss terms (objectives.heads): UniGEM's loss is denoising plus its
heads masked to the growth phase, MoreRed's time loss is a head, and UniGEM's property head added
to a MoreRed network (objective.terms: [property]) trains, is refused where it cannot work, and is
evaluated end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moldiff.config import ConfigError, apply_overrides, validate_config
from moldiff.data.batch import from_arrays
from moldiff.data.normalization import PropertyNormalizer
from moldiff.diffusion.process import centred_noise
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.models.morered import MoreRedModel
from moldiff.models.unigem import QM9_ELEMENTS, MoleculeGenerator
from moldiff.nn.branched_egnn import BranchedEGNN
from moldiff.objectives.heads import Head, PropertyLoss
from moldiff.objectives.morered import MoreRedObjective
from moldiff.objectives.unigem import UniGEMObjective, UniGEMSettings

SCHEDULE = PolynomialSchedule(1000)
FIXTURES = Path(__file__).parent / "fixtures"
NORMALIZER = PropertyNormalizer("lumo", "meV", 100.0, 50.0)


def molecules(sizes=(4, 6, 5), dtype=torch.float32):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.choice([1, 6, 7, 8, 9], n) for n in sizes])
    pos = rng.normal(size=(sum(sizes), 3)) * 1.2
    return from_arrays(z, pos, np.array(sizes), props=rng.normal(size=(len(sizes), 1)) * 50 + 100, dtype=dtype)


class ConstantGenerator(torch.nn.Module):
    """Writes fixed outputs, so that every loss has a closed form."""
    elements, n_types, type_scale = QM9_ELEMENTS, 5, 0.25

    def forward(self, graphs, t):
        n = graphs.num_atoms
        return {"eps": torch.zeros(n, 3), "type_out": torch.full((n, 5), 0.1),
                "prop": torch.full((graphs.num_graphs,), 0.5)}


def test_unigem_loss_is_denoising_plus_its_heads_in_the_growth_phase():
    g = molecules()
    settings = UniGEMSettings(nucleation_step=10, type_weight=2.0, prop_weight=3.0)
    steps = torch.tensor([3, 10, 500])                      # two growth-phase molecules, one nucleation
    loss, logs = UniGEMObjective(SCHEDULE, settings, "unigem", NORMALIZER)(
        ConstantGenerator(), g, torch.Generator().manual_seed(7), steps=steps)
    eps = centred_noise(g, torch.Generator().manual_seed(7))
    sizes = [4, 6, 5]
    starts = np.cumsum([0] + sizes)
    coord = torch.stack([0.5 * (eps[a:b] ** 2).mean() for a, b in zip(starts[:-1], starts[1:])])
    idx = [QM9_ELEMENTS.index(int(z)) for z in g.z]
    onehot = torch.nn.functional.one_hot(torch.tensor(idx), 5).float() * 0.25
    types = torch.stack([(0.1 - onehot[a:b]).abs().mean() for a, b in zip(starts[:-1], starts[1:])])
    prop = (0.5 - (g.props[:, 0] - 100.0) / 50.0).abs()
    growth = torch.tensor([1.0, 1.0, 0.0])
    expected = (coord + 2.0 * growth * types + 3.0 * growth * prop).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # the heads' logs average over the growth-phase molecules only
    assert float(logs["type"].total / logs["type"].count) == pytest.approx(float(types[:2].mean()), rel=1e-6)
    assert float(logs["coord"]) == pytest.approx(float(coord.mean()), rel=1e-6)


def test_a_morered_network_learns_a_property_head_on_its_own_noisy_pass():
    g = molecules(dtype=torch.float64)
    torch.manual_seed(0)
    m = MoreRedModel("joint", SCHEDULE, hidden=16, layers=2, n_rbf=8, cutoff=5.0, predict_property=True).double()
    plain = MoreRedObjective(SCHEDULE, "joint", eta=0.9)
    with_prop = MoreRedObjective(SCHEDULE, "joint", eta=0.9, heads=[Head("property", 2.0, PropertyLoss(NORMALIZER))])
    k = torch.tensor([5, 40, 90])
    base, base_logs = plain(m, g, torch.Generator().manual_seed(1), k=k)
    loss, logs = with_prop(m, g, torch.Generator().manual_seed(1), k=k)
    assert set(logs) == {"ddpm", "time", "prop", "loss"} and "prop" not in base_logs
    # one forward pass: the property term adds its weighted error of the same prediction
    assert float(loss.detach()) == pytest.approx(float(base.detach()) + 2.0 * float(logs["prop"]), rel=1e-9)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.property_head.parameters())
    # without the head the output is absent and the term adds nothing
    torch.manual_seed(0)
    bare = MoreRedModel("joint", SCHEDULE, hidden=16, layers=2, n_rbf=8, cutoff=5.0).double()
    assert "prop" not in bare(g) and with_prop(bare, g, torch.Generator().manual_seed(1), k=k)[1].keys() == base_logs.keys()


def test_a_unigem_checkpoint_from_before_the_property_head_module_still_loads():
    torch.manual_seed(0)
    model = MoleculeGenerator(BranchedEGNN(16, 1, 2, 0, 16, True), SCHEDULE, "unigem")
    old = {k.replace("property_head.node.", "prop_node.").replace("property_head.graph.", "prop_graph."): v
           for k, v in model.state_dict().items()}
    assert any(k.startswith("prop_node.") for k in old)
    torch.manual_seed(1)
    fresh = MoleculeGenerator(BranchedEGNN(16, 1, 2, 0, 16, True), SCHEDULE, "unigem")
    fresh.load_state_dict(old)
    g, t = molecules(), torch.tensor([0.001, 0.002, 0.5])
    assert torch.equal(fresh(g, t)["prop"], model(g, t)["prop"])


def qm9_morered(tmp_path, **overrides):
    raw = {
        "name": "jt_lumo", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "qm9", "root": str(tmp_path / "data"), "qm9": {"csv_dir": str(FIXTURES), "max_heavy_atoms": 8}},
        "model": {"backbone": "painn", "hidden": 16, "layers": 2, "cutoff": 5.0, "n_rbf": 8},
        "diffusion": {"process": "polynomial", "n_steps": 1000},
        "objective": {"name": "morered", "morered": {"kind": "joint"}, "terms": ["property"],
                      "unigem": {"property": "lumo"}},
        "training": {"epochs": 1, "batch_size": 16, "warmup_steps": 0, "ema_decay": 0.0, "grad_clip": 0.5},
        "relaxation": {"max_steps": 4, "slots": 4, "num_actors": 1, "energy_subset": 0, "samplers": ["jt"],
                       "inputs": {"n_molecules": 2, "kinds": ["diffusion"], "diffusion_steps": [30]}},
    }
    return validate_config(apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()]))


@pytest.mark.parametrize("overrides, why", [
    ({"objective.unigem.property": "null"}, "name the property in objective.unigem.property"),
    ({"objective.name": "unigem", "model.backbone": "branched_egnn"}, "has the property head built in"),
    ({"objective.name": "force_field", "data.qm9.gfn2_labels": "{n_molecules: 4}"}, "objective force_field takes none"),
])
def test_the_property_term_is_refused_where_it_cannot_work(tmp_path, overrides, why):
    with pytest.raises((ConfigError, ValueError), match=why):
        qm9_morered(tmp_path, **overrides)


def test_the_property_term_needs_property_labels(tmp_path):
    raw = {"name": "lj", "output_dir": str(tmp_path), "objective": {"name": "dsm", "terms": ["property"]}}
    with pytest.raises((ConfigError, ValueError), match="needs per-molecule property labels"):
        validate_config(raw)


def test_morered_with_a_property_head_trains_relaxes_and_reports_the_property_mae(ray_session, tmp_path):
    from moldiff.experiment import run_experiment
    from moldiff.train.checkpoint import load_meta

    cfg = qm9_morered(tmp_path)
    assert cfg.variant == "morered_joint_property"
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
    meta = load_meta(cfg.run_dir / "checkpoints" / "final")
    assert meta["property_normalizer"]["name"] == "lumo"
    for key in ("lumo_mae", "val_lumo_mae"):
        entry = report[key]
        assert np.isfinite(entry.mean) and entry.mean > 0 and entry.unit == meta["property_normalizer"]["unit"]
        assert entry.floor_mean > 0                   # the error of predicting the training mean
    assert "jt_all_median_ratio" in report           # it still relaxes
    assert "lumo MAE on" in (cfg.run_dir / "results.md").read_text()
