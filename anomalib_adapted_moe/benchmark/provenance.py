"""Which code produced a generated figure: the git commit stamped on every generated doc."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: pathspecs of generated outputs, left out of the dirty check
GENERATED = (":(exclude)docs", ":(exclude)results")


def commit(root: Path | None = None) -> str:
    """The git commit of this checkout or of ``root``, ``+dirty`` with uncommitted changes to tracked files.

    ``unknown`` outside a git checkout.

    Generated outputs (``docs/``, ``results/``) do not count as changes: a chain of generators (``make speed``,
    then ``make precision``) would otherwise stamp every report after the first as dirty.
    """
    root = root or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
