"""MoreRed networks and losses: equivariant noise, invariant time, the time target's scaling, the
joint loss reaching both heads, and the relaxer interface."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moldiff.data.batch import from_arrays
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.models.morered import MoreRedModel, Relaxer
from moldiff.objectives.morered import MoreRedObjective

SCHEDULE = PolynomialSchedule(1000)


def graphs(seed=0, sizes=(4, 6)):
    rng = np.random.default_rng(seed)
    z = rng.choice([1, 6, 7, 8], sum(sizes))
    pos = np.concatenate([rng.normal(size=(n, 3)) * 1.3 for n in sizes])
    return from_arrays(z, pos, np.array(sizes), dtype=torch.float64)


def model(kind):
    torch.manual_seed(0)
    return MoreRedModel(kind, SCHEDULE, hidden=16, layers=2, n_rbf=8, cutoff=5.0).double()


@pytest.mark.parametrize("det", [1, -1])
def test_noise_is_equivariant_and_centred_time_is_invariant(det):
    g = graphs()
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    if torch.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    moved = g.with_pos(g.pos @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64))
    k = torch.tensor([10, 400])
    for kind in ("noise", "joint"):
        m = model(kind)
        a, b = m(g, k), m(moved, k)
        assert torch.allclose(b["eps"], a["eps"] @ q.T, atol=1e-8)
        centre = torch.zeros(2, 3, dtype=torch.float64).index_add_(0, g.batch, a["eps"])
        assert centre.abs().max() < 1e-10
        if kind == "joint":
            assert torch.allclose(a["time"], b["time"], atol=1e-8)
    m = model("noise")
    assert not torch.allclose(m(g, torch.tensor([10, 10]))["eps"], m(g, torch.tensor([900, 900]))["eps"])


def test_time_target_is_k_over_t_minus_one_per_atom_and_index_rounds_the_clamped_mean():
    objective = MoreRedObjective(SCHEDULE, "time")
    assert objective.time_target(torch.tensor([0, 999])).tolist() == [0.0, 1.0]
    g = graphs(sizes=(3, 2))
    m = model("time")
    per_atom = torch.tensor([-0.5, 0.2, 0.5, 1.7, 0.3], dtype=torch.float64)   # means 0.2/3, 1.0
    assert m.index_from_time(per_atom, g).tolist() == [round(0.2 / 3 * 999), 999]
    # the earlier rule clamped each atom first: [0, .2, .5] and [1, .3]
    assert m.index_from_time(per_atom, g, clamp_first=True).tolist() == [round(0.7 / 3 * 999), round(0.65 * 999)]
    # a clean structure whose atoms scatter around 0 reads as 0 only when averaged first
    scatter = torch.tensor([-0.02, 0.02, 0.0, -0.01, 0.01], dtype=torch.float64)
    assert m.index_from_time(scatter, g).tolist() == [0, 0]
    assert m.index_from_time(scatter, g, clamp_first=True).tolist() == [round(0.02 / 3 * 999), round(0.005 * 999)]
    # the loss is the per-atom squared error against the molecule's own target
    k = torch.tensor([0, 999])
    loss, _ = objective(m, g, torch.Generator().manual_seed(0), k=k)
    target = torch.tensor([0.0] * 3 + [1.0] * 2, dtype=torch.float64)

    class Constant(torch.nn.Module):           # predicts 0.25 for every atom
        def forward(self, graphs, k):
            return {"time": torch.full((graphs.num_atoms,), 0.25, dtype=torch.float64)}
    constant_loss, _ = objective(Constant(), g, torch.Generator().manual_seed(0), k=k)
    assert float(constant_loss) == pytest.approx(float(((0.25 - target) ** 2).mean()))
    assert torch.isfinite(loss)


def test_joint_loss_trains_both_heads_and_the_time_head_through_the_noise_loss():
    g = graphs()
    m = model("joint")
    loss, logs = MoreRedObjective(SCHEDULE, "joint", eta=0.9)(m, g, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(logs) == {"ddpm", "time", "loss"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.time_head.parameters())
    assert all(p.grad is not None for p in m.noise_head.parameters())
    # the noise term alone reaches the time head (the time feature is not detached)
    m.zero_grad()
    only_noise, _ = MoreRedObjective(SCHEDULE, "joint", eta=0.999999)(m, g, torch.Generator().manual_seed(0))
    (only_noise / 0.999999).backward()
    assert m.time_head[-1].weight.grad.abs().sum() > 0


def test_training_steps_respect_t_max_and_the_relaxer_checks_its_models():
    objective = MoreRedObjective(SCHEDULE, "noise", t_max=300)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, graphs, k):
            seen.append(k.clone())
            return {"eps": torch.zeros_like(graphs.pos, requires_grad=True)}
    for i in range(50):
        objective(Spy(), graphs(), torch.Generator().manual_seed(i))
    assert int(torch.cat(seen).max()) < 300
    noise, time, joint = model("noise"), model("time"), model("joint")
    g = graphs()
    relaxer = Relaxer(noise, time)
    assert relaxer.predict_index(g).shape == (2,) and relaxer.noise(g, torch.tensor([3, 4])).shape == (10, 3)
    k, eps = Relaxer(joint).index_and_noise(g)
    assert k.shape == (2,) and eps.shape == (10, 3) and int(k.min()) >= 0 and int(k.max()) <= 999
    with pytest.raises(ValueError, match="noise .*model"):
        Relaxer(time, noise)
    with pytest.raises(ValueError, match="joint"):
        relaxer.index_and_noise(g)


def test_clean_fraction_shows_molecules_unnoised_with_time_target_zero():
    g = graphs(sizes=(4, 6, 5, 3))

    class Probe(torch.nn.Module):          # records what it is shown; predicts time 0.5, eps 0
        def forward(self, graphs, k):
            self.seen = graphs.pos.clone()
            return {"time": torch.full((graphs.num_atoms,), 0.5, dtype=torch.float64),
                    "eps": torch.zeros_like(graphs.pos)}
    probe = Probe()
    k = torch.tensor([100, 200, 300, 400])
    gen = torch.Generator().manual_seed(0)
    objective = MoreRedObjective(SCHEDULE, "joint", eta=0.5, clean_fraction=0.5)
    loss, logs = objective(probe, g, gen, k=k)
    clean = torch.rand(4, generator=torch.Generator().manual_seed(0)) < 0.5      # the objective's own draw
    assert 0 < int(clean.sum()) < 4
    from moldiff.diffusion.process import remove_mean
    x0 = remove_mean(g.pos, g.batch, g.n_atoms)
    shown_clean = torch.tensor([torch.allclose(probe.seen[g.batch == i], x0[g.batch == i]) for i in range(4)])
    assert torch.equal(shown_clean, clean)
    # time loss: (0.5 - target)^2 per atom, target 0 for the clean molecules
    target = torch.where(clean, torch.zeros(4, dtype=torch.float64), k.double() / 999)[g.batch]
    assert float(logs["time"]) == pytest.approx(float(((0.5 - target) ** 2).mean()))
    # without the option the draws are the paper's: nobody is shown clean
    MoreRedObjective(SCHEDULE, "joint", eta=0.5)(probe, g, torch.Generator().manual_seed(0), k=k)
    assert not any(torch.allclose(probe.seen[g.batch == i], x0[g.batch == i]) for i in range(4))
