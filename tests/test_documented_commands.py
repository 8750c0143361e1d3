"""Every ``python experiments/run.py ...`` command the docs show (README.md, tuning/README.md,
cluster/README.md and the cluster configs' comments) validates as experiments/run.py would parse
it: its config (or the run directory's config) or study, with its overrides. Nothing runs."""
import re
import shlex
from pathlib import Path

import pytest

from test_cluster_configs import check_run_command

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "tuning" / "README.md", ROOT / "cluster" / "README.md",
        *sorted((ROOT / "cluster").rglob("*.yaml"))]
RUN = "python experiments/run.py"
PLACEHOLDER = re.compile(r"<|\bCONFIG\b|\bSPEC\b|\.\.\.")


def documented_commands(path: Path) -> list[str]:
    """The commands in code blocks (backslash continuations joined, ``#`` comments dropped), in
    inline code spans (which may wrap over lines) and, for YAML, in comments."""
    text = path.read_text()
    if path.suffix == ".yaml":
        text = "\n".join(line.strip().lstrip("#") for line in text.splitlines())
    found = []
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M) if path.suffix == ".md" else [text]
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if RUN in line:
                found.append(shlex.join(shlex.split(line[line.index(RUN):], comments=True)))
    if path.suffix == ".md":
        outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
        found += [" ".join(span[span.index(RUN):].split()) for span in re.findall(r"`([^`]*)`", outside) if RUN in span]
    return [c for c in found if not PLACEHOLDER.search(c)]


def test_the_docs_show_commands_of_every_kind():
    commands = [c for path in DOCS for c in documented_commands(path)]
    assert len(commands) >= 30
    assert any("--sweep" in c for c in commands) and any("--only" in c for c in commands)
    assert any(c.split()[2].startswith("runs/") for c in commands)        # a run directory as the config


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_validates(path):
    for command in documented_commands(path):
        try:
            check_run_command(command)
        except BaseException as err:            # argparse exits; name the file and the command
            raise AssertionError(f"{path.relative_to(ROOT)}: {command}: {err!r}") from err
