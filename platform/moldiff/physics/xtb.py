"""GFN2-xTB energies and forces through tblite (an optional extra: ``pip install -e .[md]``).

tblite works in Hartree and Bohr; this module speaks eV and Angstrom through ASE, and the MD17
units (kcal/mol, kcal/mol/Angstrom) through :data:`EV_TO_KCAL_PER_MOL`. Run one thread per
process (OMP_NUM_THREADS=1): two OpenMP threads on two cores made MD an order of magnitude slower.
"""
from __future__ import annotations

from ase import units

EV_TO_KCAL_PER_MOL = 1.0 / (units.kcal / units.mol)         # 23.0605...
KB_KCAL_PER_MOL_K = units.kB * EV_TO_KCAL_PER_MOL            # 0.0019872...


def gfn2_calculator():
    try:
        from tblite.ase import TBLite
    except ImportError as err:
        raise ImportError("GFN2-xTB needs the optional 'tblite' package: pip install -e '.[md]' "
                          "(or pip install tblite==0.8.0)") from err
    return TBLite(method="GFN2-xTB", verbosity=0)
