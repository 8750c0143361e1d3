"""The ``moldiff`` command (a console script; ``experiments/run.py`` stays the entry point for
``ray job submit`` from a bare checkout and runs the same code):

    moldiff run CONFIG [key=value ...] [--stages ...] [--print-config]
    moldiff sweep SPEC [key=value ...] [--only GROUP=NAME[,NAME]] [--print-config]
    moldiff publish {results,study,sweep,morered} ...     (the publishers' own arguments)
    moldiff calc RUN_DIR FILE [--out OUT.extxyz]          (energies and forces of FILE's structures)
    moldiff archive STUDY_DIR [...] [--into DIR]           (a finished study's reports, kept in git)
"""
from __future__ import annotations

import sys

PUBLISHERS = {"results": "run_page", "study": "study", "sweep": "sweep_page", "morered": "morered"}
USAGE = __doc__.split("\n\n", 1)[1]


def calc(argv: list[str]) -> int:
    """Every structure of FILE (anything ASE reads) through a trained model's energy and forces
    (``moldiff.ase.MoldiffCalculator``): one line per structure, and with ``--out`` an extxyz file
    with the results attached."""
    import argparse

    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import iread, write

    from .ase import MoldiffCalculator

    p = argparse.ArgumentParser(prog="moldiff calc", description=calc.__doc__)
    p.add_argument("run_dir", help="a run directory or checkpoint directory of a model with forces (and an energy)")
    p.add_argument("file", help="structures in any format ASE reads")
    p.add_argument("--index", default=":", help="ASE's frame selection (default: every frame)")
    p.add_argument("--out", default=None, help="write the structures with their energies and forces here (extxyz)")
    args = p.parse_args(argv)
    try:
        calculator = MoldiffCalculator(args.run_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {args.run_dir}: {err}", file=sys.stderr)
        return 2
    print(f"# {calculator.kind} model; {calculator.units_note}", file=sys.stderr)
    done = []
    for i, atoms in enumerate(iread(args.file, index=args.index)):
        atoms.calc = calculator
        # a score model has forces only (MoldiffCalculator warns that they derive from no energy)
        energy = atoms.get_potential_energy() if "energy" in calculator.implemented_properties else None
        forces = atoms.get_forces()
        shown = "n/a" if energy is None else f"{energy:.6f}"
        print(f"{i}\t{atoms.get_chemical_formula()}\tenergy {shown}\tmax |F| {np.linalg.norm(forces, axis=1).max():.6f}")
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        done.append(atoms)
    if args.out:
        write(args.out, done, format="extxyz")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from .cli import main as run
        return run(rest)
    if command == "sweep":
        from .cli import main as run
        if not rest:
            print("usage: moldiff sweep SPEC [key=value ...] [--only GROUP=NAME[,NAME]]", file=sys.stderr)
            return 2
        return run(["--sweep", *rest])
    if command == "publish":
        if not rest or rest[0] not in PUBLISHERS:
            print(f"usage: moldiff publish {{{','.join(PUBLISHERS)}}} ...", file=sys.stderr)
            return 2
        from importlib import import_module
        return import_module(f".reporting.{PUBLISHERS[rest[0]]}", __package__).main(rest[1:])
    if command == "calc":
        return calc(rest)
    if command == "archive":
        from .reporting.archive import main as archive
        return archive(rest)
    print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
