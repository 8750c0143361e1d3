"""PaiNN backbone: symmetries, locality (cutoff, separate molecules), time conditioning, gradients."""
import numpy as np
import pytest
import torch

from moldiff.nn.painn import PaiNN, cosine_cutoff

SIZES = (4, 7, 5)
ELEMENTS = np.array([1, 6, 7, 8])


def random_positions(n, rng, box=4.0, min_dist=0.8):
    """n points in a box of side ``box``, no pair closer than ``min_dist`` (rejection sampling)."""
    pts = []
    while len(pts) < n:
        p = rng.uniform(0.0, box, 3)
        if all(np.linalg.norm(p - q) > min_dist for q in pts):
            pts.append(p)
    return np.array(pts)


def make_batch(sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    z = torch.as_tensor(rng.choice(ELEMENTS, sum(sizes)), dtype=torch.long)
    pos = torch.as_tensor(np.concatenate([random_positions(n, rng) for n in sizes]), dtype=torch.float64)
    n_atoms = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), n_atoms)
    return z, pos, batch, n_atoms


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"hidden": 16, **kwargs}
    return PaiNN(**kwargs).double()


def random_orthogonal(seed, reflect):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def run(model, z, pos, batch, n_atoms, t_atom=None):
    s, v = model(z, pos, batch, n_atoms, t_atom)
    return s, v, model.vector_output(v)


def test_batch_has_pairs_beyond_cutoff():
    """The symmetry tests below exercise the radius graph, not only a fully connected one."""
    _, pos, batch, _ = make_batch()
    same = batch[:, None] == batch[None, :]
    d = torch.cdist(pos, pos)[same]
    assert (d > 5.0).any() and (d[d > 0] > 0.8).all()


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_reflection_translation(reflect):
    model = make_model(time_features=8)
    z, pos, batch, n_atoms = make_batch()
    t_atom = torch.rand(len(z), dtype=torch.float64)
    s, v, out = run(model, z, pos, batch, n_atoms, t_atom)
    assert s.shape == (len(z), 16) and v.shape == (len(z), 3, 16) and out.shape == (len(z), 3)
    assert out.abs().max() > 1e-3                                    # not trivially zero

    R = random_orthogonal(1, reflect)
    shift = torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64)
    s2, v2, out2 = run(model, z, pos @ R.T + shift, batch, n_atoms, t_atom)
    torch.testing.assert_close(s2, s, atol=1e-5, rtol=0)
    # polar vectors: they follow R, reflections included (no det(R) sign flip)
    torch.testing.assert_close(out2, out @ R.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(v2, torch.einsum("ab,nbf->naf", R, v), atol=1e-5, rtol=0)

    # translation alone
    s3, _, out3 = run(model, z, pos + shift, batch, n_atoms, t_atom)
    torch.testing.assert_close(s3, s, atol=1e-5, rtol=0)
    torch.testing.assert_close(out3, out, atol=1e-5, rtol=0)


def test_permutation_within_molecule():
    model = make_model()
    z, pos, batch, n_atoms = make_batch()
    s, _, out = run(model, z, pos, batch, n_atoms)
    # shuffle the atoms of molecule 2 (indices 4..10) among themselves
    perm = torch.arange(len(z))
    perm[4:11] = 4 + torch.randperm(7, generator=torch.Generator().manual_seed(3))
    s2, _, out2 = run(model, z[perm], pos[perm], batch, n_atoms)
    torch.testing.assert_close(s2, s[perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(out2, out[perm], atol=1e-6, rtol=0)


def test_molecules_are_independent():
    model = make_model()
    z, pos, batch, n_atoms = make_batch()
    s, _, out = run(model, z, pos, batch, n_atoms)
    pos2 = pos.clone()
    pos2[4:11] = torch.as_tensor(random_positions(7, np.random.default_rng(9)))  # new geometry for molecule 2
    s2, _, out2 = run(model, z, pos2, batch, n_atoms)
    other = batch != 1
    torch.testing.assert_close(s2[other], s[other], atol=0, rtol=0)
    torch.testing.assert_close(out2[other], out[other], atol=0, rtol=0)
    assert not torch.allclose(s2[~other], s[~other])


def test_atom_beyond_cutoff_has_no_influence():
    model = make_model(cutoff=5.0)
    rng = np.random.default_rng(4)
    z = torch.as_tensor(rng.choice(ELEMENTS, 6), dtype=torch.long)
    pos = torch.as_tensor(random_positions(6, rng, box=3.0))
    pos[5] = pos[:5].mean(0) + torch.tensor([20.0, 0.0, 0.0], dtype=torch.float64)   # 20 A from the rest
    one = torch.zeros(6, dtype=torch.long)
    s, _, out = run(model, z, pos, one, torch.tensor([6]))
    s5, _, out5 = run(model, z[:5], pos[:5], one[:5], torch.tensor([5]))
    torch.testing.assert_close(s[:5], s5, atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:5], out5, atol=1e-12, rtol=0)
    # and the far atom behaves as an isolated atom (no vector features at all)
    s1, _, out1 = run(model, z[5:], pos[5:], one[5:], torch.tensor([1]))
    torch.testing.assert_close(s[5:], s1, atol=1e-12, rtol=0)
    assert out[5].abs().max() == 0 and out1.abs().max() == 0


def test_cosine_cutoff_values():
    d = torch.tensor([0.0, 2.5, 5.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(cosine_cutoff(d, 5.0), torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=torch.float64))


def test_time_conditioning():
    z, pos, batch, n_atoms = make_batch()
    model = make_model(time_features=8)
    s_a, _ = model(z, pos, batch, n_atoms, torch.full((len(z),), 0.1, dtype=torch.float64))
    s_b, _ = model(z, pos, batch, n_atoms, torch.full((len(z),), 0.7, dtype=torch.float64))
    assert (s_a - s_b).abs().max() > 1e-3
    with pytest.raises(ValueError):
        model(z, pos, batch, n_atoms)

    plain = make_model(time_features=0)
    s0, v0 = plain(z, pos, batch, n_atoms)                            # t_atom may be None
    s1, _ = plain(z, pos, batch, n_atoms, torch.rand(len(z)))         # and is ignored otherwise
    torch.testing.assert_close(s0, s1, atol=0, rtol=0)
    assert plain.time_proj is None and not any("time" in n for n, _ in plain.named_parameters())


def test_vector_out_flag():
    model = make_model(vector_out=False)
    assert model.vector_head is None
    z, pos, batch, n_atoms = make_batch()
    _, v = model(z, pos, batch, n_atoms)
    with pytest.raises(RuntimeError):
        model.vector_output(v)


def test_gradients_reach_every_parameter_and_forces_are_finite():
    model = make_model(time_features=8, layers=2)
    z, pos, batch, n_atoms = make_batch()
    pos = pos.clone().requires_grad_(True)
    t_atom = torch.rand(len(z), dtype=torch.float64)
    s, v = model(z, pos, batch, n_atoms, t_atom)
    loss = s.pow(2).mean() + model.vector_output(v).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name

    pos.grad = None
    s, _ = model(z, pos, batch, n_atoms, t_atom)
    forces = -torch.autograd.grad(s.sum(-1).sum(), pos)[0]
    assert forces.shape == pos.shape and torch.isfinite(forces).all() and forces.abs().max() > 0
    # the energy-like sum is invariant, so its forces sum to zero per molecule (translation invariance)
    per_mol = torch.zeros(3, 3, dtype=forces.dtype).index_add_(0, batch, forces)
    torch.testing.assert_close(per_mol, torch.zeros_like(per_mol), atol=1e-8, rtol=0)


def test_float32_default_and_coincident_atoms_stay_finite():
    torch.manual_seed(0)
    model = PaiNN(hidden=16, time_features=4)
    z = torch.tensor([6, 1, 1])
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    s, v = model(z, pos, torch.zeros(3, dtype=torch.long), torch.tensor([3]), torch.full((3,), 0.5))
    (s.sum() + model.vector_output(v).sum()).backward()
    assert s.dtype == torch.float32 and torch.isfinite(s).all() and torch.isfinite(pos.grad).all()
