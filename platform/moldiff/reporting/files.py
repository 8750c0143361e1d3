"""Write a benchmark's docs/results/<name>.md and its .json twin, with hand-written notes from
benchmarks/notes/<name>.md (when present) after the measured part, so a rerun keeps them."""
from __future__ import annotations

import json
from pathlib import Path

# the source checkout: platform/moldiff/reporting/files.py -> the repository's root
CHECKOUT = Path(__file__).resolve().parents[3]
BENCHMARKS = CHECKOUT / "benchmarks"
NOTES = BENCHMARKS / "notes"
RESULTS = CHECKOUT / "docs" / "results"
PAPER_NUMBERS = BENCHMARKS / "paper_numbers.yaml"


def write_result(output: str | Path, md: list[str], records: list[dict]) -> str:
    out = Path(output)
    notes = NOTES / f"{out.name}.md"
    if notes.exists():
        md = [*md, "", notes.read_text().strip()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps(records, indent=2) + "\n")
    return "\n".join(md)


def recorded_command(run_dir: str | Path) -> str | None:
    """Every command recorded in ``run_dir/command.txt``, in order and once each, joined with
    `` && `` (a run trained and evaluated in separate invocations); None when nothing is recorded.
    Absolute paths into this checkout (a job's ``output_dir=/.../runs``) read as ``$PWD/...``."""
    path = Path(run_dir) / "command.txt"
    commands = [c.replace(f"{CHECKOUT}/", "$PWD/") for c in path.read_text().splitlines() if c.strip()] \
        if path.is_file() else []
    return " && ".join(dict.fromkeys(commands)) if commands else None
