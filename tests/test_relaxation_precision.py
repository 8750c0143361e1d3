"""float32 relaxation (the default) against float64 on fixture molecules: a PaiNN noise model
trained briefly on QM9 fixture molecules relaxes diffusion-perturbed copies of other fixture
molecules with the fixed ITP schedule; with the same weights and the same noise, the two precisions
end on the same structures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from moldiff.data.batch import from_arrays
from moldiff.data.qm9 import csvs_in, parse_molecule, read_index
from moldiff.data.relaxation_inputs import diffusion_input
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.metrics.relaxation import kabsch_rmsd
from moldiff.models.morered import MoreRedModel
from moldiff.objectives.morered import MoreRedObjective
from moldiff.sampling.relax import ContinuousRelaxer, RelaxSettings

FIXTURES = Path(__file__).parent / "fixtures"
SCHEDULE = PolynomialSchedule(1000)
START = 50                 # the diffusion step of the inputs (and ITP's start: its time model is exact here)
# float32 carries ~7 digits and 51 reverse steps keep the difference near that: 2.6e-6 A at most
# when this test was written; the tolerance leaves a factor of ~40
TOLERANCE_A = 1e-4


class KnownStart:
    """ITP with an exact time predictor: every input starts at k = START."""

    def __init__(self, noise_model: MoreRedModel):
        self.noise_model, self.schedule = noise_model, noise_model.schedule

    def parameters(self):
        return self.noise_model.parameters()

    def predict_index(self, graphs):
        return torch.full((graphs.num_graphs,), START, dtype=torch.long, device=graphs.pos.device)

    def noise(self, graphs, k):
        return self.noise_model(graphs, k)["eps"]


def _molecules():
    df = read_index(csvs_in(FIXTURES))
    return [parse_molecule(row) for _, row in df.head(48).iterrows()]


def _trained_noise_model(train) -> MoreRedModel:
    torch.manual_seed(0)
    model = MoreRedModel("noise", SCHEDULE, hidden=32, layers=2, n_rbf=12, cutoff=5.0)
    objective = MoreRedObjective(SCHEDULE, "noise", t_max=200)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    z = np.concatenate([m[0] for m in train])
    pos = np.concatenate([m[1] for m in train])
    graphs = from_arrays(z, pos, np.array([len(m[0]) for m in train]))
    for step in range(150):
        idx = torch.randperm(graphs.num_graphs, generator=gen)[:16]
        loss, _ = objective(model, graphs.select(idx), gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_float32_relaxation_ends_on_the_float64_structures():
    molecules = _molecules()
    model = _trained_noise_model(molecules[:40])
    held_out = molecules[40:]
    rng = np.random.default_rng(0)
    inputs = [(z, diffusion_input(pos, START, SCHEDULE.n_steps, rng)) for z, pos in held_out]
    out = {}
    for dtype in (torch.float64, torch.float32):
        relaxer = ContinuousRelaxer(KnownStart(model.to(dtype)), RelaxSettings("itp", max_steps=200), slots=3, seed=1)
        assert relaxer.dtype == dtype
        out[dtype] = {r.index: r for r in relaxer.relax(inputs)}
    for i, (z, target) in enumerate(held_out):
        a, b = out[torch.float64][i], out[torch.float32][i]
        assert a.converged and b.converged and a.n_steps == b.n_steps == START + 1
        assert b.pos.dtype == np.float32
        assert np.abs(a.pos - b.pos).max() < TOLERANCE_A, (i, np.abs(a.pos - b.pos).max())
        # judged the way the benchmark judges: RMSD to the DFT target after alignment
        assert abs(kabsch_rmsd(a.pos, target) - kabsch_rmsd(b.pos.astype(np.float64), target)) < TOLERANCE_A / 3
    # the comparison can fail: the noise is drawn in float64 for both, so a different seed moves the
    # structures by far more than the tolerance
    other = ContinuousRelaxer(KnownStart(model.to(torch.float64)), RelaxSettings("itp", max_steps=200), slots=3, seed=2)
    moved = {r.index: r for r in other.relax(inputs)}
    assert max(np.abs(moved[i].pos - out[torch.float64][i].pos).max() for i in moved) > 10 * TOLERANCE_A
