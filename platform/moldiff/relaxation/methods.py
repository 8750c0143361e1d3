"""Every relaxation method moldiff has, registered once: the config's choices, the pipeline's
dispatch, the threshold rule, output labels and the results pages all derive from this table.

A method is one of three engines:
  reverse_diffusion  MoreRed's samplers on a trained MoreRed network (sampling.relax, continuous batching)
  force_field        batched FIRE on a learned force field's forces (sampling.fire)
  ase_optimizer      an ASE optimiser (L-BFGS) on a learned force field, one molecule at a time on
                     the CPU in float64 (moldiff.ase.MoldiffCalculator)
  classical          a force field that needs no trained model (RDKit MMFF94, on the CPU)

Output label: the method's name, plus ``-kmin<k>`` when a MoreRed method ran with a convergence
threshold k > 0, ``-det`` for noise-free steps (``-noise<x>`` for another noise scale) and
``-denoised`` with a final denoising step (``relaxed/jt-kmin19-denoised_seed0``), so runs with the
paper's rule and with other settings sit side by side in one run directory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class RelaxationMethod:
    name: str                      # the config value (relaxation.samplers) and the label's stem
    title: str                     # how results pages name it
    engine: str                    # reverse_diffusion | force_field | ase_optimizer | classical
    objective: Optional[str]       # the objective whose trained model it runs (None: needs no model)
    model_kinds: tuple[str, ...] = ()   # reverse_diffusion: the MoreRed network kinds that can run it
    adaptive: bool = False         # stops when the predicted step reaches k_min (the threshold applies)
    time_model: bool = False       # with a noise-only network it needs a separate time predictor (relaxation.time_run)
    on_gpu: bool = True            # runs a model on the actor's device; False: CPU-only (RDKit)
    baseline: bool = False         # a classical or learned force-field reference, not MoreRed

    def label(self, k_min: int, noise_scale: float = 1.0, final_denoise: bool = False) -> str:
        return self.name + LabelSettings(k_min, noise_scale, final_denoise).suffix()

    def display(self, k_min: int = 0, noise_scale: float = 1.0, final_denoise: bool = False) -> str:
        notes = LabelSettings(k_min, noise_scale, final_denoise).notes()
        return self.title + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class LabelSettings:
    """The reverse-diffusion settings a label records (defaults: the paper's rule)."""
    k_min: int = 0
    noise_scale: float = 1.0
    final_denoise: bool = False

    def suffix(self) -> str:
        noise = "" if self.noise_scale == 1 else "-det" if self.noise_scale == 0 else f"-noise{self.noise_scale:g}"
        return (f"-kmin{self.k_min}" if self.k_min else "") + noise + ("-denoised" if self.final_denoise else "")

    def notes(self) -> list[str]:
        return ([f"k_min {self.k_min}"] if self.k_min else []) + \
            (["noise-free steps"] if self.noise_scale == 0 else [f"noise x {self.noise_scale:g}"]
             if self.noise_scale != 1 else []) + (["final denoising"] if self.final_denoise else [])


METHODS: dict[str, RelaxationMethod] = {m.name: m for m in (
    RelaxationMethod("itp", "MoreRed-ITP", "reverse_diffusion", "morered", ("noise", "joint"), time_model=True),
    RelaxationMethod("as", "MoreRed-AS", "reverse_diffusion", "morered", ("noise", "joint"), adaptive=True,
                     time_model=True),
    RelaxationMethod("jt", "MoreRed-JT", "reverse_diffusion", "morered", ("joint",), adaptive=True),
    RelaxationMethod("ddpm", "DDPM (fixed schedule)", "reverse_diffusion", "morered", ("noise", "joint")),
    RelaxationMethod("fire", "PaiNN force field + FIRE", "force_field", "force_field", baseline=True),
    RelaxationMethod("lbfgs", "PaiNN force field + L-BFGS (ASE)", "ase_optimizer", "force_field", on_gpu=False,
                     baseline=True),
    RelaxationMethod("mmff", "MMFF94 (RDKit)", "classical", None, on_gpu=False, baseline=True),
)}

REVERSE_DIFFUSION = tuple(n for n, m in METHODS.items() if m.engine == "reverse_diffusion")
ADAPTIVE = tuple(n for n, m in METHODS.items() if m.adaptive)
_LABEL = re.compile(rf"^(?P<name>{'|'.join(METHODS)})(?:-kmin(?P<k_min>\d+))?(?:-(?P<det>det)|-noise(?P<noise>[0-9.e+-]+))?"
                    r"(?P<denoised>-denoised)?$")


def method(name: str) -> RelaxationMethod:
    if name not in METHODS:
        raise ValueError(f"unknown relaxation method {name!r}; methods: {', '.join(METHODS)}")
    return METHODS[name]


def label_settings(label: str) -> tuple[str, LabelSettings]:
    """``jt-kmin19-det-denoised`` -> ("jt", LabelSettings(19, 0.0, True))."""
    match = _LABEL.match(label)
    if not match:
        raise ValueError(f"not a relaxation label: {label!r} (methods: {', '.join(METHODS)})")
    noise = 0.0 if match["det"] else float(match["noise"]) if match["noise"] else 1.0
    return match["name"], LabelSettings(int(match["k_min"] or 0), noise, bool(match["denoised"]))


def parse_label(label: str) -> tuple[str, int]:
    """``jt-kmin19`` -> ("jt", 19); ``itp`` -> ("itp", 0)."""
    name, settings = label_settings(label)
    return name, settings.k_min


def display_label(label: str) -> str:
    name, settings = label_settings(label)
    return METHODS[name].display(settings.k_min, settings.noise_scale, settings.final_denoise)


def label_order(label: str) -> tuple:
    """Sort key: registry order, then threshold, then the other settings (the paper's rule first)."""
    name, s = label_settings(label)
    return list(METHODS).index(name), s.k_min, -s.noise_scale, s.final_denoise


def incompatibility(name: str, objective: str, model_kind: Optional[str]) -> Optional[str]:
    """Why ``name`` cannot relax with a model trained for ``objective`` (``model_kind``: the MoreRed
    network kind), or None."""
    m = method(name)
    if m.objective is None:
        return None
    if m.objective != objective:
        return f"{name} runs a {m.objective} model, this run trains {objective}"
    if m.model_kinds and model_kind not in m.model_kinds:
        return f"{name} needs a MoreRed network of kind {' or '.join(m.model_kinds)} (this run's is {model_kind})"
    return None
