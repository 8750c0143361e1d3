"""Atomic writes: build under a temporary sibling name, then rename into place, so a crash never
leaves a half-written file or directory and an existing one is only replaced by a complete one."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A unique hidden name next to ``path`` (same filesystem, so the rename is atomic)."""
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}"


def replace_directory(tmp: Path, dst: Path) -> None:
    """Move the finished directory ``tmp`` to ``dst``, replacing any existing ``dst``."""
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)


def write_file(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes the file's content at a temporary sibling, which then replaces ``path``."""
    tmp = temp_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_file(path, lambda tmp: tmp.write_text(text))
