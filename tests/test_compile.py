"""moldiff.nn.compile: compiled message-passing blocks compute what the eager ones do, at any batch
shape, and a block that fails to compile runs eagerly with a warning."""
import numpy as np
import pytest
import torch

from moldiff.data.batch import from_arrays
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.models.morered import MoreRedModel
from moldiff.nn import compile as compile_module
from moldiff.nn.compile import compile_blocks, uncompiled
from moldiff.nn.egnn import EGNN


def _molecules(sizes, seed=0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.choice([1, 6, 7, 8], size=n) for n in sizes])
    pos = np.concatenate([rng.normal(scale=1.3, size=(n, 3)) for n in sizes])
    return from_arrays(z, pos, np.array(sizes), dtype=torch.float32)


def test_compiled_painn_equals_eager_at_changing_batch_shapes():
    torch.manual_seed(0)
    model = MoreRedModel("joint", PolynomialSchedule(100), hidden=16, layers=2, n_rbf=8).eval()
    batches = [_molecules([5, 9, 3]), _molecules([12], seed=1), _molecules([4, 4, 7, 11, 6], seed=2)]
    with torch.no_grad():
        eager = [model(g) for g in batches]
        assert compile_blocks(model) == 2 * 2 + 2          # messages, updates, the noise head's two blocks
        assert compile_blocks(model) == 0                  # already compiled
        compiled = [model(g) for g in batches]
    for e, c in zip(eager, compiled):
        for key in ("eps", "time"):
            assert torch.allclose(e[key], c[key], atol=1e-5, rtol=1e-4), key
    uncompiled(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_compiled_egnn_gradients_match_eager():
    torch.manual_seed(0)
    net = EGNN(hidden=16, layers=2, time_dim=8)
    g = _molecules([6, 6, 6])
    t = torch.full((3,), 0.4)

    def displacement_and_grad():
        pos = g.pos.clone().requires_grad_(True)
        dx, _ = net(g.z, pos, g.batch, g.n_atoms, t)
        (grad,) = torch.autograd.grad(dx.square().sum(), pos)
        return dx.detach(), grad
    eager = displacement_and_grad()
    assert compile_blocks(net) == 2
    compiled = displacement_and_grad()
    for e, c in zip(eager, compiled):
        assert torch.allclose(e, c, atol=1e-5, rtol=1e-4)


def test_a_block_that_fails_to_compile_runs_eagerly_with_a_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fails(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler found")
        return fails
    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    net = EGNN(hidden=8, layers=1, time_dim=8)
    g = _molecules([4, 5])
    t = torch.full((2,), 0.2)
    with torch.no_grad():
        eager = net(g.z, g.pos, g.batch, g.n_atoms, t)[0]
        compile_blocks(net)
        with pytest.warns(RuntimeWarning, match="torch.compile of EGNNLayer failed.*no C\\+\\+ compiler"):
            fallback = net(g.z, g.pos, g.batch, g.n_atoms, t)[0]
    assert torch.equal(eager, fallback)
    layer = net.layers[0]
    assert isinstance(layer.forward, compile_module._Guarded) and layer.forward.compiled is None
