"""MoreRed's corrected reverse step and the samplers' stopping rules, on stub models whose time
predictions are known, and the continuous-batching relaxer's bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moldiff.data.batch import from_arrays
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.sampling.relax import ContinuousRelaxer, RelaxSettings, reverse_step, step_coefficients

SCHEDULE = PolynomialSchedule(1000)


class Stub:
    """eps_hat = 0.1 x; the predicted index is a function of the molecule's size and of how often
    it was asked (``decay``), so each sampler's stopping rule has a known answer."""

    def __init__(self, start_per_atom=3, decay=0, constant=None, nan_size=None):
        self.schedule, self.calls = SCHEDULE, {}
        self.start_per_atom, self.decay, self.constant, self.nan_size = start_per_atom, decay, constant, nan_size

    def predict_index(self, graphs):
        out = []
        for n in graphs.n_atoms.tolist():
            self.calls[n] = self.calls.get(n, 0) + 1
            start = max(self.start_per_atom * n - self.decay * (self.calls[n] - 1), 0)
            out.append(self.constant if self.constant is not None else start)
        return torch.tensor(out)

    def noise(self, graphs, k):
        eps = 0.1 * graphs.pos
        if self.nan_size is not None:
            eps[(graphs.n_atoms == self.nan_size)[graphs.batch]] = float("nan")
        return eps

    def index_and_noise(self, graphs):
        k = self.predict_index(graphs)
        return k, self.noise(graphs, k)


def molecules(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.choice([1, 6, 8], n), rng.normal(size=(n, 3)) + 5.0) for n in sizes]


def test_schedule_and_step_coefficients_match_the_brief():
    abar = SCHEDULE.alpha2
    assert float(abar[250]) == pytest.approx(0.8789, abs=1e-4)
    inv_sqrt_alpha, _, sigma = step_coefficients(SCHEDULE, torch.tensor([0, 5]))
    assert float(1 - 1 / inv_sqrt_alpha[0] ** 2) == pytest.approx(1.2e-5, rel=0.01)     # beta_1
    assert sigma[0] == 0 and sigma[1] > 0


def test_reverse_step_with_the_true_noise_gives_the_posterior_mean():
    g = torch.Generator().manual_seed(0)
    graphs = from_arrays(np.array([6, 1, 1, 8]), np.zeros((4, 3)), np.array([4]), dtype=torch.float64)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x0 -= x0.mean(0)
    eps = torch.randn(4, 3, generator=g, dtype=torch.float64)
    eps -= eps.mean(0)
    for k in (0, 9, 249, 998):
        s = k + 1
        abar_s = SCHEDULE.alpha2[s]
        abar_p = SCHEDULE.alpha2[s - 1] if s > 1 else torch.tensor(1.0, dtype=torch.float64)
        xs = abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * eps
        out = reverse_step(xs, eps, torch.tensor([k]), SCHEDULE, graphs, torch.zeros(4, 3, dtype=torch.float64))
        alpha, beta = abar_s / abar_p, 1 - abar_s / abar_p
        mean = abar_p.sqrt() * beta / (1 - abar_s) * x0 + alpha.sqrt() * (1 - abar_p) / (1 - abar_s) * xs
        assert torch.allclose(out, mean, atol=1e-10), k
        if k == 0:                                   # the last step lands on x_0 itself
            assert torch.allclose(out, x0, atol=1e-10)


@pytest.mark.parametrize("sampler", ["itp", "as", "jt"])
def test_stopping_rules(sampler):
    sizes = [3, 5, 4]
    decay = 2 if sampler != "itp" else 0
    results = {r.index: r for r in ContinuousRelaxer(Stub(decay=decay), RelaxSettings(sampler, max_steps=100)).relax(molecules(sizes))}
    for i, n in enumerate(sizes):
        r = results[i]
        assert r.converged and r.failed == "" and r.first_index == 3 * n
        # itp: k0, k0-1, ..., 0 -> k0 + 1 steps; as/jt: k = 3n, 3n-2, ... until <= 0
        expected = 3 * n + 1 if sampler == "itp" else int(np.ceil(3 * n / 2)) + 1
        assert r.n_steps == expected, (sampler, n, r.n_steps)
        assert np.abs(r.pos.mean(0)).max() < 1e-9                     # centred throughout


def test_step_cap_threshold_and_nonfinite_molecules_are_reported_not_dropped():
    stuck = list(ContinuousRelaxer(Stub(constant=7), RelaxSettings("as", max_steps=20)).relax(molecules([3, 4])))
    assert [(r.converged, r.failed, r.n_steps) for r in stuck] == [(False, "step_cap", 20)] * 2
    loose = list(ContinuousRelaxer(Stub(constant=7), RelaxSettings("as", max_steps=20, k_min=7)).relax(molecules([3])))
    assert loose[0].converged and loose[0].n_steps == 1
    out = {r.index: r for r in ContinuousRelaxer(Stub(nan_size=4), RelaxSettings("itp")).relax(molecules([3, 4, 5]))}
    assert out[1].failed == "nonfinite" and not out[1].converged and np.isfinite(out[1].pos).all()
    assert out[0].converged and out[2].converged
    ddpm = list(ContinuousRelaxer(Stub(), RelaxSettings("ddpm", max_steps=2000)).relax(molecules([3])))
    assert ddpm[0].n_steps == 1000 and ddpm[0].converged and ddpm[0].first_index == -1


def test_continuous_batching_returns_every_input_once_independent_of_slots():
    sizes = [3, 9, 4, 6, 5, 7, 13, 8, 11, 10, 12]    # distinct: the stub tells molecules apart by size
    inputs = molecules(sizes, seed=3)
    runs = {}
    for slots in (3, 50):
        relaxer = ContinuousRelaxer(Stub(decay=1), RelaxSettings("as", max_steps=40), slots=slots, seed=7)
        results = list(relaxer.relax(iter(inputs)))
        assert sorted(r.index for r in results) == list(range(len(sizes)))
        runs[slots] = {r.index: r for r in results}
    for i in range(len(sizes)):
        assert np.allclose(runs[3][i].pos, runs[50][i].pos) and runs[3][i].n_steps == runs[50][i].n_steps
    # small slots refill: the batch never waits for its slowest member
    order = [r.index for r in ContinuousRelaxer(Stub(decay=1), RelaxSettings("as", max_steps=40), slots=3).relax(iter(inputs))]
    assert order != list(range(len(sizes)))


class ExactPointMass:
    """The exact noise of data concentrated on one geometry per molecule (told apart by size):
    eps(x, k) = (x - sqrt(abar_s) x0) / sqrt(1 - abar_s), s = k + 1; it predicts the start index."""

    def __init__(self, targets: dict, start: int):
        self.schedule, self.targets, self.start = SCHEDULE, targets, start

    def _x0(self, graphs):
        return torch.cat([self.targets[int(n)] for n in graphs.n_atoms.tolist()])

    def predict_index(self, graphs):
        return torch.full((graphs.num_graphs,), self.start)

    def noise(self, graphs, k):
        abar = SCHEDULE.alpha2.double()[(k + 1)][graphs.batch].unsqueeze(-1)
        return (graphs.pos - abar.sqrt() * self._x0(graphs)) / (1 - abar).sqrt()


def test_final_denoising_ends_a_threshold_stop_on_the_clean_geometry_and_noise_free_steps_are_deterministic():
    rng = np.random.default_rng(4)
    sizes = (3, 5, 7)
    targets = {n: torch.tensor(rng.normal(size=(n, 3)) - 0.0) for n in sizes}
    for n in sizes:
        targets[n] -= targets[n].mean(0)
    start, abar = 200, float(SCHEDULE.alpha2[201])
    inputs = [(np.full(n, 6), (np.sqrt(abar) * targets[n] + np.sqrt(1 - abar) * torch.tensor(rng.normal(size=(n, 3)))
                               ).numpy()) for n in sizes]

    def relax(seed=0, **kw):
        model = ExactPointMass(targets, start)
        out = sorted(ContinuousRelaxer(model, RelaxSettings("itp", k_min=20, **kw), slots=2, seed=seed).relax(inputs),
                     key=lambda r: r.index)
        return [float(np.sqrt(((r.pos - targets[len(r.z)].numpy()) ** 2).sum(1).mean())) for r in out], out

    noisy, plain = relax()
    clean, denoised = relax(final_denoise=True)
    assert all(r.converged for r in plain + denoised)
    # the last stochastic step (k = 20) leaves noise of that level; Tweedie with the exact noise is x0
    assert min(noisy) > 0.005 and max(clean) < 1e-6
    assert [r.n_steps for r in denoised] == [r.n_steps + 1 for r in plain] == [182] * 3
    # noise-free steps do not depend on the noise seed; the paper's steps do
    assert relax(seed=1, noise_scale=0.0)[0] == relax(seed=2, noise_scale=0.0)[0]
    assert relax(seed=1)[0] != relax(seed=2)[0]


def test_relaxation_labels_record_the_settings():
    from moldiff.relaxation.methods import METHODS, display_label, label_settings
    label = METHODS["jt"].label(19, 0.0, True)
    assert label == "jt-kmin19-det-denoised"
    assert label_settings(label)[1].final_denoise and label_settings(label)[1].noise_scale == 0.0
    assert display_label(label) == "MoreRed-JT (k_min 19, noise-free steps, final denoising)"
    assert METHODS["itp"].label(0) == "itp" and label_settings("as-noise0.5")[1].noise_scale == 0.5
