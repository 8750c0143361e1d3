"""Keep a finished study's reports where git keeps them, so that publishing does not need its runs.

    moldiff archive runs/combo_psm_fp_lj13-fp-s0 [more study dirs] [--into docs/results/trials]

A study that takes longer than one working session runs in parts (``--only``), and a machine's
``runs/`` does not outlive it. What a results page is made from is small: the study's
``summary.json``, ``sweep.yaml`` and ``command.txt``, and for each finished trial its report
(``metrics.json``), ``config.yaml``, ``command.txt``, ``timings.json`` and stored curves
(``plots/*.json``). Those are copied, in the study's own layout, under ``--into``; checkpoints,
samples and event files stay behind. ``moldiff publish study`` reads an archived study like a run
directory (run directories are found beside its ``summary.json``), so parts finished in different
sessions are published together. The archive cannot be sampled or evaluated again: that needs the
run directory.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..atomic import write_text
from .files import CHECKOUT, RESULTS

ARCHIVE = RESULTS / "trials"
STUDY_FILES = ("summary.json", "sweep.yaml", "command.txt")
TRIAL_FILES = ("metrics.json", "config.yaml", "command.txt", "timings.json")
TRIAL_GLOBS = ("plots/*.json",)


def trial_dir(study_dir: Path, recorded: str) -> Path:
    """A trial's run directory as ``summary.json`` records it: where it was written when that still
    exists, else the directory of the same name beside the summary (an archived or moved study)."""
    path = Path(recorded)
    if path.is_absolute() and path.is_dir():
        return path
    return study_dir / path.name


def copy_portable(source: Path, target: Path, roots: dict[str, str]) -> None:
    """Copy a text file with this machine's checkout paths (``roots``, longest first) made relative."""
    text = source.read_text()
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root, roots[root])
    target.write_text(text)


def archive_study(study_dir: str | Path, into: str | Path = ARCHIVE) -> Path:
    """Copy one finished study (or part) under ``into``/<its name>; returns that directory.
    Refuses a study without a finished trial, and one whose trial lacks its report."""
    study_dir = Path(study_dir)
    summary_path = study_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: no summary; has the study finished? "
                                f"(rerun its --sweep command, which resumes it)")
    summary = json.loads(summary_path.read_text())
    finished = [t for t in summary["trials"] if "metrics" in t]
    if not finished:
        raise ValueError(f"{summary_path}: no finished trial to archive")
    target = Path(into) / study_dir.name
    # the checkouts the study ran in and publishes from: their paths become repository-relative
    runs = study_dir.resolve().parent
    roots = {f"{runs}/": "runs/", f"{runs.parent}/": "", f"{CHECKOUT}/": ""}
    trials = []
    for t in finished:
        source = trial_dir(study_dir, t["run_dir"])
        if not (source / "metrics.json").is_file():
            raise FileNotFoundError(f"{source / 'metrics.json'}: trial {t['trial']} has no report; "
                                    f"evaluate it again (python experiments/run.py {source} --stages evaluate)")
        names = [n for n in TRIAL_FILES if (source / n).is_file()]
        names += [str(p.relative_to(source)) for g in TRIAL_GLOBS for p in sorted(source.glob(g))]
        for name in names:
            (target / source.name / name).parent.mkdir(parents=True, exist_ok=True)
            copy_portable(source / name, target / source.name / name, roots)
        trials.append({**t, "run_dir": source.name})    # relative: found beside the summary
    for name in STUDY_FILES[1:]:
        if (study_dir / name).is_file():
            copy_portable(study_dir / name, target / name, roots)
    # the summary last: a study directory with a summary is complete
    write_text(target / "summary.json", json.dumps({**summary, "trials": trials}, indent=2, default=str) + "\n")
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="moldiff archive", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_dirs", nargs="+", help="finished studies or parts (runs/<name>)")
    p.add_argument("--into", default=str(ARCHIVE), help="where the archived studies go (default: docs/results/trials)")
    args = p.parse_args(argv)
    for study in args.study_dirs:
        try:
            target = archive_study(study, args.into)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        print(f"archived {study} -> {target} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
