"""The roofline every speed-up is judged against, measured in one run on one torch thread:

1. the machine's single-thread float32 matrix-product peak (GFLOP/s, best of a few square sizes);
2. for each backbone on its own kind of data, forward and forward + backward molecules/s at
   several batch sizes, the FLOPs per molecule (the profiler's count; a conservative
   model's forward includes the autograd pass that makes its score), and the fraction of the peak
   they reach;
3. where the time goes: the five operators with the most self CPU time in one forward at a
   middle batch size (``torch.profiler``, which also counts the FLOPs);
4. the same forward with the message-passing blocks compiled (``moldiff.nn.compile``, what the
   sampling and relaxation actors run by default);
5. PC sampling of LJ-13 on one thread (the work of one sampling actor): molecule-steps/s of
   ``sampling.sde.sample_positions`` with dsm_lj13.yaml's network and sampler at 250 molecules
   per call, eager and compiled.

Cases (the experiment configs' own model settings):

    egnn_lj13                  EpsilonModel + EGNN of dsm_lj13.yaml on LJ-13 frames
    branched_egnn_qm9          UniGEM's two-branch EGNN (unigem_qm9.yaml) on QM9 molecules
    painn_qm9                  MoreRed's joint PaiNN (morered_qm9.yaml) on QM9 molecules
    graph_transformer_alanine  the energy model of fp_alanine.yaml on 15-D bead states (score by autograd)
    mlp_muller_brown           the energy MLP of fp_muller_brown.yaml on 2-D states (score by autograd)

Molecules come from the data pipeline (LJ-13 frames, the QM9 fixture under tests/fixtures);
state vectors are standard-normal draws of the right shape (the cost of these networks does not
depend on the values). Writes docs/results/throughput.{md,json}.

    python benchmarks/throughput.py [--batches 1,4,16,64,256] [--cases egnn_lj13,...] [--seconds 1.0]
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from moldiff.reporting.files import write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
FIXTURES = ROOT / "tests" / "fixtures"


def timed(fn: Callable[[], None], seconds: float) -> float:
    """Seconds per call: a few warm-up calls, then as many as fit in ``seconds`` (at least 3)."""
    for _ in range(2):
        fn()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def matmul_peak(seconds: float) -> tuple[float, int]:
    """(GFLOP/s, size) of the fastest float32 square matrix product on this thread."""
    best = (0.0, 0)
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        per = timed(lambda: torch.mm(a, b), seconds)
        best = max(best, (2 * n ** 3 / per / 1e9, n))
    return best


@dataclass
class Case:
    name: str
    config: str
    describe: str
    make: Callable[[int], tuple]               # batch size -> (inputs...) for ``forward``
    forward: Callable[..., torch.Tensor]       # (model, *inputs) -> a tensor to reduce for backward
    model: torch.nn.Module


def _config(name: str, overrides: list[str]):
    from moldiff.config import load_config
    return load_config(CONFIGS / f"{name}.yaml", overrides)


def _molecule_batches(cfg, log) -> Callable[[int], object]:
    """batch size -> a GraphBatch of that many training molecules of the config's data (cycled)."""
    from moldiff.data.batch import collate_arrow
    from moldiff.data.sources import prepare_data
    from moldiff.data.store import read_dataset

    table = read_dataset(prepare_data(cfg.data, log).train, validate=False)[0]

    def make(batch: int):
        idx = np.arange(batch) % table.num_rows
        return collate_arrow(table.take(idx))
    return make


# molecular cases: (config, its data overrides, sigma_data, description of the model, time input?)
MOLECULE_CASES = {
    "egnn_lj13": ("dsm_lj13", ["data.lj.reference.n_chains=32", "data.train.n_frames=256"], 0.7,
                  lambda m: f"EGNN {m.hidden}x{m.layers}, 13 atoms, fully connected", True),
    "branched_egnn_qm9": ("unigem_qm9", [f"data.qm9.csv_dir={FIXTURES}"], 1.0,
                          lambda m: f"two-branch EGNN {m.hidden}x{m.layers}, QM9 molecules (<= 8 heavy atoms)", True),
    "painn_qm9": ("morered_qm9", [f"data.qm9.csv_dir={FIXTURES}"], 1.0,
                  lambda m: f"PaiNN {m.hidden}x{m.layers} (noise and time heads), cutoff {m.cutoff:g} A, QM9 molecules",
                  False),
}

# networks on state vectors: (config, state dimension)
STATE_CASES = {"graph_transformer_alanine": ("fp_alanine", 15), "mlp_muller_brown": ("fp_muller_brown", 2)}


def build_cases(names: list[str], work: Path, log) -> list[Case]:
    from moldiff.models import build_model

    cases = []
    data_root = f"data.root={work / 'data'}"
    for name in names:
        if name in MOLECULE_CASES:
            config, overrides, sigma, describe, timed_input = MOLECULE_CASES[name]
            cfg = _config(config, [data_root, *overrides])
            graphs = _molecule_batches(cfg, log)
            if timed_input:
                make, forward = (lambda b, g=graphs: (g(b), torch.full((b,), 0.3))), (lambda m, g, t: m(g, t)["eps"])
            else:
                make, forward = (lambda b, g=graphs: (g(b),)), (lambda m, g: m(g)["eps"])
            cases.append(Case(name, f"{config}.yaml", describe(cfg.model), make, forward, build_model(cfg, sigma)))
        elif name in STATE_CASES:
            config, dim = STATE_CASES[name]
            cfg = _config(config, [data_root])
            model = build_model(cfg, 1.0, dim)
            what = "score by autograd" if cfg.model.conservative else "score network"
            cases.append(Case(name, f"{config}.yaml", f"{cfg.model.backbone} on {dim}-D states ({what})",
                              lambda b, d=dim: (torch.randn(b, d), torch.full((b,), 0.3)),
                              lambda m, x, t: m.score(x, t, create_graph=torch.is_grad_enabled()), model))
        else:
            raise SystemExit(f"unknown case {name!r}")
    return cases


def flops_per_molecule(case: Case, batch: int) -> float:
    """FLOPs of one forward per molecule, as the profiler counts them (matrix products and
    convolutions; the same operators FlopCounterMode counts, and it also works through the
    autograd pass of a conservative model's score)."""
    from torch.profiler import ProfilerActivity, profile

    inputs = case.make(batch)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        case.forward(case.model, *inputs)
    return sum(e.flops for e in prof.key_averages() if e.flops) / batch


def profile_top(case: Case, batch: int, n: int = 5) -> list[tuple[str, float]]:
    """(operator, share of self CPU time) of the ``n`` costliest operators in forward calls."""
    from torch.profiler import ProfilerActivity, profile

    inputs = case.make(batch)
    with torch.no_grad():
        case.forward(case.model, *inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                case.forward(case.model, *inputs)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:n]]


def measure(case: Case, batches: list[int], seconds: float, peak: float, log) -> list[dict]:
    import copy

    from moldiff.nn.compile import compile_blocks

    compiled = copy.deepcopy(case.model)
    n_compiled = compile_blocks(compiled)
    rows = []
    for batch in batches:
        inputs = case.make(batch)

        def forward(model=case.model):
            with torch.no_grad():
                case.forward(model, *inputs)

        def forward_backward():
            case.model.zero_grad(set_to_none=True)
            case.forward(case.model, *inputs).square().mean().backward()

        fwd, both = timed(forward, seconds), timed(forward_backward, seconds)
        # the compiled forward: the first calls at a new shape compile (timed() warms up)
        fwd_compiled = timed(lambda: forward(compiled), seconds) if n_compiled else float("nan")
        flops = flops_per_molecule(case, batch)
        rate = batch / fwd
        rows.append({"batch": batch, "forward_molecules_per_s": rate, "train_molecules_per_s": batch / both,
                     "compiled_forward_molecules_per_s": batch / fwd_compiled,
                     "flops_per_molecule": flops, "forward_gflops": flops * rate / 1e9,
                     "fraction_of_peak": flops * rate / 1e9 / peak,
                     "compiled_fraction_of_peak": flops * batch / fwd_compiled / 1e9 / peak})
        log(f"[throughput] {case.name} batch {batch}: forward {rate:.0f} mol/s (compiled {batch / fwd_compiled:.0f}), "
            f"forward+backward {batch / both:.0f} mol/s, {flops / 1e6:.2f} MFLOP/molecule, "
            f"{rows[-1]['fraction_of_peak']:.1%} of peak")
    return rows


def pc_sampling_rate(steps: int, n_molecules: int, work: Path, log) -> dict:
    """Molecule-steps/s of LJ-13 PC sampling (dsm_lj13.yaml's network and sampler settings) on
    this thread, eager and with compiled blocks; each timed over ``steps`` PC steps after a
    warm-up of 3 steps (which compiles)."""
    from moldiff.models import build_model
    from moldiff.nn.compile import compile_blocks
    from moldiff.sampling.sde import sample_positions, template_batch

    cfg = _config("dsm_lj13", [f"data.root={work / 'data'}"])
    model = build_model(cfg, 0.7).eval()
    z = np.zeros(13, dtype=np.int64)
    template = template_batch(z, n_molecules)
    s = cfg.sampling
    out = {}
    for label in ("eager", "compiled"):
        if label == "compiled":
            compile_blocks(model)

        def run(n):
            with torch.no_grad():
                sample_positions(model, model.schedule, template, sampler=s.sampler, n_steps=n,
                                 n_corrector=s.n_corrector, snr=s.snr, final_denoise=False,
                                 generator=torch.Generator().manual_seed(0))
        run(3)
        start = time.perf_counter()
        run(steps)
        out[label] = n_molecules * steps / (time.perf_counter() - start)
        log(f"[throughput] PC sampling LJ-13, {label}: {out[label]:.0f} molecule-steps/s "
            f"({n_molecules} molecules, {s.n_corrector} corrector step(s) per step)")
    out["n_corrector"] = s.n_corrector
    return out


def _or_dash(value: float, fmt: str = ".0f") -> str:
    return "—" if not np.isfinite(value) else format(value, fmt)


def main(argv=None) -> int:
    import tempfile

    from moldiff.runtime import log

    all_cases = [*MOLECULE_CASES, *STATE_CASES]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,4,16,64,256")
    p.add_argument("--cases", default=",".join(all_cases))
    p.add_argument("--seconds", type=float, default=1.0, help="timing window per measurement")
    p.add_argument("--pc-steps", type=int, default=40, help="PC steps timed for the sampling rate (0: skip)")
    p.add_argument("--work", default=str(ROOT / "data" / "throughput"), help="where the small datasets are made")
    p.add_argument("--output", default=str(ROOT / "docs" / "results" / "throughput"))
    args = p.parse_args(argv)
    command = "python benchmarks/throughput.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batches = [int(b) for b in args.batches.split(",")]
    peak, size = matmul_peak(args.seconds)
    log(f"[throughput] float32 matmul peak {peak:.1f} GFLOP/s (n = {size}, one thread)")
    cases = build_cases([c.strip() for c in args.cases.split(",") if c.strip()], Path(args.work), log)
    md = ["# Throughput against the machine's roofline", "", f"Command: `{command}`", "",
          f"One torch thread; timing windows of {args.seconds:g} s per measurement after warm-up. "
          f"**Peak: {peak:.1f} GFLOP/s** (float32 square matrix product, n = {size}, best of 256 / 512 / 1024). "
          "FLOPs are the forward pass's as `torch.profiler` counts them (matrix products and "
          "convolutions; gathers, scatters and element-wise work cost time but count no FLOPs, so a network "
          "that is mostly message passing reads far below the peak).", ""]
    records = [{"experiment": "throughput", "variant": "matmul", "metric": "peak_gflops", "mean": peak, "std": 0.0,
                "n_seeds": 1, "seed_kind": "sampling", "n_samples": size, "noise_floor": None, "command": command}]
    for case in cases:
        case.model.eval()
        rows = measure(case, batches, args.seconds, peak, log)
        top = profile_top(case, batches[len(batches) // 2])
        md += [f"## {case.name}", "", f"{case.describe} (`{case.config}`).", "",
               "| batch | forward mol/s | compiled forward mol/s | forward + backward mol/s | MFLOP / molecule "
               "| forward GFLOP/s | of peak | compiled, of peak |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['batch']} | {r['forward_molecules_per_s']:.0f} | {_or_dash(r['compiled_forward_molecules_per_s'])} | "
               f"{r['train_molecules_per_s']:.0f} | {r['flops_per_molecule'] / 1e6:.3f} | {r['forward_gflops']:.2f} | "
               f"{r['fraction_of_peak']:.1%} | {_or_dash(r['compiled_fraction_of_peak'], '.1%')} |" for r in rows]
        md += ["", f"Where a forward pass at batch {batches[len(batches) // 2]} spends its time (self CPU time): "
               + ", ".join(f"`{k}` {share:.0%}" for k, share in top) + ".", ""]
        for r in rows:
            for metric in ("forward_molecules_per_s", "compiled_forward_molecules_per_s", "train_molecules_per_s",
                           "flops_per_molecule", "fraction_of_peak", "compiled_fraction_of_peak"):
                if not np.isfinite(r[metric]):
                    continue
                records.append({"experiment": "throughput", "variant": f"{case.name}_b{r['batch']}", "metric": metric,
                                "mean": r[metric], "std": 0.0, "n_seeds": 1, "seed_kind": "sampling",
                                "n_samples": r["batch"], "noise_floor": None, "command": command})
    if args.pc_steps:
        n_pc = 250
        pc = pc_sampling_rate(args.pc_steps, n_pc, Path(args.work), log)
        md += ["## PC sampling, LJ-13 (one sampling actor's work)", "",
               f"`sampling.sde.sample_positions` with dsm_lj13.yaml's network and sampler ({pc['n_corrector']} corrector "
               f"step per predictor step: two network calls per step), {n_pc} molecules per call, "
               f"{args.pc_steps} steps timed after 3 warm-up steps.", "",
               "| blocks | molecule-steps / s |", "|---|---|",
               f"| eager | {pc['eager']:.0f} |", f"| compiled (the actors' default) | {pc['compiled']:.0f} |", "",
               f"Compiled vs eager: **{pc['compiled'] / pc['eager']:.2f} x**.", ""]
        for label in ("eager", "compiled"):
            records.append({"experiment": "throughput", "variant": f"pc_sampling_lj13_{label}",
                            "metric": "molecule_steps_per_s", "mean": pc[label], "std": 0.0, "n_seeds": 1,
                            "seed_kind": "sampling", "n_samples": n_pc * args.pc_steps, "noise_floor": None,
                            "command": command})
    print(write_result(args.output, md, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
