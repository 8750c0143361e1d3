import numpy as np
import torch

from moldiff.data.batch import fixed_size_batch
from moldiff.diffusion.schedules import VESchedule
from moldiff.objectives.dsm import DenoisingScoreMatching

S = 0.7


class ScaledGaussianEpsilon:
    """factor x the optimal epsilon-prediction for data N(0, S^2) under a VE process."""

    def __init__(self, schedule, factor):
        self.schedule, self.factor = schedule, factor

    def __call__(self, graphs, t):
        sigma = self.schedule.sigma(t)[graphs.batch, None]
        return {"eps": self.factor * sigma * graphs.pos / (S ** 2 + sigma ** 2)}


def test_dsm_loss_is_minimised_by_the_posterior_mean_of_the_noise():
    schedule = VESchedule(0.01, 5.0)
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(20000, 4, 3)) * S
    graphs = fixed_size_batch(np.full(4, 6), x0 - x0.mean(1, keepdims=True), dtype=torch.float64)
    objective = DenoisingScoreMatching(schedule)
    losses = {}
    for factor in (0.8, 1.0, 1.2):
        loss, logs = objective(ScaledGaussianEpsilon(schedule, factor), graphs, torch.Generator().manual_seed(1))
        losses[factor] = float(loss)
        assert set(logs) >= {"loss", "loss_t0-0.1", "loss_t0.5-1"}
    assert losses[1.0] < losses[0.8] and losses[1.0] < losses[1.2]
    # the irreducible part: E[Var(eps | x_t)] = 1 - E_t[sigma^2 / (S^2 + sigma^2)] per coordinate of the subspace
    t = torch.linspace(0, 1, 100001, dtype=torch.float64)
    sig2 = schedule.sigma(t) ** 2
    expected = float((1 - sig2 / (S ** 2 + sig2)).mean()) * 3 / 4      # 3 of the 4 atoms' dof survive centring
    assert abs(losses[1.0] - expected) < 0.02
