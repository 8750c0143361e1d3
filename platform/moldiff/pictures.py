"""Pictures of molecules for results pages, drawn by RDKit: a grid of generated molecules with the
stable ones marked, and relaxations (each input beside what every method made of it).

Each molecule is drawn at its own 3-D positions seen along their smallest principal axis (so a
relaxation's panels show the geometry that changed), with the bonds EDM's stability rule infers
from the distances (``metrics.chemistry.bond_order_matrix``); atoms whose valence that rule finds
wrong are circled in red.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .metrics.chemistry import _VALENCE_TABLE, bond_order_matrix, smiles_from_structure, to_rdkit

UNSTABLE = (0.9, 0.2, 0.2)


def _projected(pos: np.ndarray) -> np.ndarray:
    """Positions rotated so their two largest principal axes lie in the drawing plane."""
    centred = pos - pos.mean(0)
    if len(pos) < 2:
        return centred
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ axes.T
    return np.pad(rotated, ((0, 0), (0, 3 - rotated.shape[1])))


def drawable(z: np.ndarray, pos: np.ndarray):
    """(RDKit molecule to draw, indices of its unstable atoms, stable?, valid?) for one structure;
    non-finite positions give None for the molecule."""
    from rdkit import Chem

    z, pos = np.asarray(z, dtype=np.int64), np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        return None, [], False, False
    orders = bond_order_matrix(z, pos)
    unstable = [int(i) for i in np.nonzero(orders.sum(1) != _VALENCE_TABLE[z])[0]]
    mol = to_rdkit(z, _projected(pos), orders)
    for atom in mol.GetAtoms():
        atom.SetNoImplicit(True)                   # draw the atoms there are: no hydrogens implied
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)          # a wrong valence is drawn, not refused
    Chem.FastFindRings(mol)
    return mol, unstable, not unstable, smiles_from_structure(z, pos) is not None


def _placeholder():
    mol = to_rdkit(np.zeros(1, dtype=np.int64), np.zeros((1, 3)), np.zeros((1, 1), dtype=np.int64)).GetMol()
    mol.UpdatePropertyCache(strict=False)
    return mol


def draw_grid(path: Path, panels: Sequence[tuple], per_row: int, size: int = 220) -> Path:
    """Write a PNG of ``panels`` = [(z, pos, legend)] in rows of ``per_row``."""
    from rdkit.Chem.Draw import rdMolDraw2D

    mols, legends, highlights, colours = [], [], [], []
    for z, pos, legend in panels:
        mol, unstable, _, _ = drawable(z, pos)
        if mol is None:                            # diverged: a "*" where the molecule would be
            mol, legend = _placeholder(), f"{legend} (non-finite)"
        mols.append(mol)
        legends.append(legend)
        highlights.append(unstable)
        colours.append({i: UNSTABLE for i in unstable})
    rows = max(1, -(-len(mols) // per_row))
    drawer = rdMolDraw2D.MolDraw2DCairo(per_row * size, rows * size, size, size)
    options = drawer.drawOptions()
    options.prepareMolsBeforeDrawing = False       # keep the projected 3-D coordinates and raw valences
    options.legendFontSize = 14
    drawer.DrawMolecules(mols, legends=legends, highlightAtoms=highlights, highlightAtomColors=colours,
                         highlightBonds=[[] for _ in mols])
    drawer.FinishDrawing()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(drawer.GetDrawingText())
    return path


def generated_grid(path: Path, molecules: Sequence[tuple[np.ndarray, np.ndarray]], n: int = 16,
                   per_row: int = 4) -> Path:
    """The first ``n`` generated molecules, each labelled stable / valid / invalid."""
    panels = []
    for k, (z, pos) in enumerate(molecules[:n]):
        _, _, stable, valid = drawable(z, pos)
        panels.append((z, pos, f"{k}: {'stable' if stable else 'valid' if valid else 'invalid'}"))
    return draw_grid(path, panels, per_row)


def relaxation_panel(path: Path, rows: Sequence[tuple[np.ndarray, np.ndarray, str]],
                     relaxed: dict[str, Sequence[np.ndarray]]) -> Path:
    """One row per input [(z, input positions, label)], its input then what each method made of
    it (``relaxed``: method -> positions in the rows' order); stable structures say so."""
    panels = []
    for k, (z, before, label) in enumerate(rows):
        for name, pos in (("input", before), *((m, out[k]) for m, out in relaxed.items())):
            _, _, stable, _ = drawable(z, pos)
            panels.append((z, pos, f"{label}: {name}{' (stable)' if stable else ''}"))
    return draw_grid(path, panels, per_row=1 + len(relaxed))
