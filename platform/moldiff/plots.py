"""Plots of a run: h(r) and energy histograms of samples vs reference vs training set."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics.distributions import hr_curve, pair_distances  # noqa: E402


def hr_curves(reference: np.ndarray, sets: dict[str, np.ndarray], bins: int = 200) -> dict:
    """h(r) of the reference and of each named set on one grid (the reference's distance range):
    ``{"r": centres, "curves": {"reference": [...], name: [...]}, "sizes": {name: n}}``, JSON-able so
    that a run stores its curves and pages redraw them without reloading any data."""
    d = pair_distances(reference)
    edges = np.linspace(d.min(), d.max(), bins + 1)
    named = {"reference": reference, **sets}
    return {"r": (0.5 * (edges[1:] + edges[:-1])).tolist(),
            "curves": {name: hr_curve(pos, edges).tolist() for name, pos in named.items()},
            "sizes": {name: int(len(pos)) for name, pos in named.items()}}


STYLES = {"reference": dict(color="black", lw=2.2), "training set": dict(color="0.5", lw=1.2, ls="--")}


def plot_hr(path: Path, curves: dict, title: str):
    """Draw stored h(r) curves (:func:`hr_curves`): the reference and training set in fixed styles,
    the others (samples, simulation frames, or one curve per variant) in colour."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in curves["curves"]:
        n = curves.get("sizes", {}).get(name)
        ax.plot(curves["r"], curves["curves"][name], label=f"{name} ({n})" if n else name,
                **STYLES.get(name, dict(lw=1.2)))
    ax.set_xlabel("pair distance r")
    ax.set_ylabel("h(r)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_energy(path: Path, samples: np.ndarray, reference: np.ndarray, train: np.ndarray,
                energy_fn: Callable[[np.ndarray], np.ndarray], title: str, bins: int = 50):
    e_ref = energy_fn(reference)
    lo, hi = np.percentile(e_ref, [0.1, 99.9])
    span = hi - lo
    edges = np.linspace(lo - 0.2 * span, hi + 0.2 * span, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for data, label, style in ((e_ref, "reference", dict(color="black", lw=2)),
                               (energy_fn(train), "training set", dict(color="tab:orange", ls="--")),
                               (energy_fn(samples), "samples", dict(color="tab:blue"))):
        inside = data[(data >= edges[0]) & (data <= edges[-1])]
        counts, _ = np.histogram(inside, bins=edges)
        counts = counts / max(len(inside), 1) / np.diff(edges)
        ax.step(0.5 * (edges[1:] + edges[:-1]), counts, where="mid",
                label=f"{label} ({100 * len(inside) / len(data):.0f}% in range)", **style)
    ax.set_xlabel("energy")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_free_energy_maps(path: Path, sets: dict[str, np.ndarray], limits, kT_label: str = "kT", bins: int = 64,
                          title: str = "", axes: tuple[str, str] = ("x", "y")):
    """-ln p on a 2-D grid for each named point set [n, 2], side by side on one colour scale
    (iid vs simulation vs reference, the paper's free-energy panels)."""
    edges = [np.linspace(lo, hi, bins + 1) for lo, hi in limits]
    maps = {}
    for name, pts in sets.items():
        pts = pts[np.isfinite(pts).all(1)]
        h, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            maps[name] = -np.log(h.T / max(h.sum(), 1.0))
    finite = np.concatenate([m[np.isfinite(m)] for m in maps.values()])
    vmin, vmax = finite.min(), np.percentile(finite, 99)
    names = axes
    fig, panels = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.4), squeeze=False)
    for ax, (name, m) in zip(panels[0], maps.items()):
        im = ax.imshow(m - vmin, origin="lower", extent=[*limits[0], *limits[1]], aspect="auto",
                       vmin=0, vmax=vmax - vmin, cmap="viridis")
        ax.set_title(f"{name} ({len(sets[name])})", fontsize=9)
        ax.set_xlabel(names[0])
    panels[0][0].set_ylabel(names[1])
    fig.colorbar(im, ax=panels[0].tolist(), label=f"free energy / {kT_label}")
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_study_metric(path: Path, labels: list[str], per_seed: list[list[float]], floor: Optional[float],
                      metric: str, title: str):
    """One bar per study cell (mean over its seeds, error bar: std), every seed as a dot, and the
    noise floor as a line: an ablation's table at a glance."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 1.5), 3.6))
    x = np.arange(len(labels))
    means = [float(np.mean(v)) for v in per_seed]
    stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in per_seed]
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.6, label="mean ± std over seeds")
    for xi, values in zip(x, per_seed):
        ax.plot(np.full(len(values), xi), values, "o", color="black", ms=3)
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor, color="tab:red", ls="--", lw=1, label=f"noise floor {floor:.3g}")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
