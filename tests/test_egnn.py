import numpy as np
import pytest
import torch

from moldiff.config import validate_config
from moldiff.data.batch import from_arrays
from moldiff.diffusion.process import molecule_mean
from moldiff.models import build_model
from moldiff.models.registry import build_backbone as backbone_from_config
from moldiff.nn.egnn import EGNN
from moldiff.nn.graph import fully_connected_edges, molecule_edges, radius_graph


def random_batch(sizes=(4, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    return from_arrays(rng.integers(1, 10, n), rng.normal(size=(n, 3)) * 1.5, np.array(sizes), dtype=torch.float64)


def random_orthogonal(seed, reflect=False):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def test_fully_connected_edges():
    edges = fully_connected_edges(torch.tensor([3, 1, 2]))
    pairs = set(map(tuple, edges.T.tolist()))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (4, 5), (5, 4)}


def test_radius_graph_matches_brute_force():
    g = random_batch(seed=1)
    edges = radius_graph(g.pos, 2.0, g.batch)
    expected = {(j, i) for i in range(g.num_atoms) for j in range(g.num_atoms)
                if i != j and g.batch[i] == g.batch[j] and (g.pos[i] - g.pos[j]).norm() <= 2.0}
    assert set(map(tuple, edges.T.tolist())) == expected
    fixed = molecule_edges(torch.zeros(12, 3), torch.tensor([4, 4, 4]), fixed_size=4)
    assert set(map(tuple, fixed.T.tolist())) == set(map(tuple, fully_connected_edges(torch.tensor([4, 4, 4])).T.tolist()))


def build_backbone(name, cutoff):
    torch.manual_seed(0)
    if name.startswith("egnn"):
        net = EGNN(hidden=16, layers=3, time_dim=8, cutoff=cutoff,
                   coord_range=1.5 if name == "egnn_clipped" else None).double()
        for layer in net.layers:        # make the coordinate head non-trivial (it starts near zero)
            torch.nn.init.normal_(layer.coord_mlp[-1].weight, std=0.5)
        return net
    from moldiff.nn.e3nn_net import E3NN
    return E3NN(hidden=8, layers=2, time_dim=8, cutoff=cutoff).double()


@pytest.mark.parametrize("backbone", ["egnn", "egnn_clipped", "e3nn"])
@pytest.mark.parametrize("cutoff", [None, 2.5])
def test_backbones_are_e3_equivariant_and_permutation_equivariant(backbone, cutoff):
    net = build_backbone(backbone, cutoff)
    g = random_batch()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    out, h = net(g.z, g.pos, g.batch, g.n_atoms, t)
    assert out.abs().max() > 1e-3
    for reflect in (False, True):
        q = random_orthogonal(3, reflect)
        shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        out_r, h_r = net(g.z, g.pos @ q.T + shift, g.batch, g.n_atoms, t)
        torch.testing.assert_close(out_r, out @ q.T, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(h_r, h, atol=1e-10, rtol=1e-8)
    perm = torch.cat([torch.randperm(4), 4 + torch.randperm(5), 9 + torch.randperm(6)])
    out_p, _ = net(g.z[perm], g.pos[perm], g.batch, g.n_atoms, t)
    torch.testing.assert_close(out_p, out[perm], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
def test_epsilon_model_output_has_zero_centre_and_is_translation_invariant(backbone):
    cfg = validate_config({"name": "x", "model": {"backbone": backbone, "hidden": 16, "layers": 2}})
    model = build_model(cfg, sigma_data=0.7).double()
    g = random_batch()
    t = torch.tensor([0.01, 0.3, 1.0], dtype=torch.float64)
    eps = model(g, t)["eps"]
    assert molecule_mean(eps, g.batch, g.n_atoms).abs().max() < 1e-12
    eps_shifted = model(g.with_pos(g.pos + 3.0), t)["eps"]
    torch.testing.assert_close(eps_shifted, eps)


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
def test_atom_identity_keeps_e3_equivariance_and_breaks_permutation_symmetry(backbone):
    cfg = validate_config({"name": "x", "model": {"backbone": backbone, "hidden": 16, "layers": 2, "atom_identity": 6}})
    torch.manual_seed(0)
    net = backbone_from_config(cfg).double()
    g = random_batch()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    out, h = net(g.z, g.pos, g.batch, g.n_atoms, t)
    q = random_orthogonal(5)
    out_r, h_r = net(g.z, g.pos @ q.T + 1.0, g.batch, g.n_atoms, t)
    torch.testing.assert_close(out_r, out @ q.T, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(h_r, h, atol=1e-10, rtol=1e-8)
    # swapping two atoms of the first molecule (the same element, so only their index differs) changes
    # what the network says about them: they are distinguishable
    z = g.z.clone()
    z[1] = z[0]
    perm = torch.arange(g.num_atoms)
    perm[[0, 1]] = perm[[1, 0]]
    _, h_same = net(z, g.pos, g.batch, g.n_atoms, t)
    _, h_swapped = net(z[perm], g.pos[perm], g.batch, g.n_atoms, t)
    assert (h_swapped - h_same[perm]).abs().max() > 1e-3
    # the index restarts in every molecule: the table of 6 covers molecules of 4, 5 and 6 atoms
    emb = net.atom_embedding
    first = emb(g.z, g.n_atoms) - emb.element(g.z)
    torch.testing.assert_close(first[4], emb.identity.weight[0])      # atom 0 of the second molecule
    big = random_batch(sizes=(7,))
    with pytest.raises(ValueError, match="7 atoms but model.atom_identity is 6"):
        net(big.z, big.pos, big.batch, big.n_atoms, torch.tensor([0.5], dtype=torch.float64))


def test_element_embedding_loads_checkpoints_from_before_atom_identity():
    net = EGNN(hidden=8, layers=2, time_dim=8)
    state = net.state_dict()
    state["atom_embedding.weight"] = state.pop("atom_embedding.element.weight")
    fresh = EGNN(hidden=8, layers=2, time_dim=8)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.atom_embedding.element.weight, net.atom_embedding.element.weight)
