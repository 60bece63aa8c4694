"""Which code produced a generated figure: the git commit stamped on every generated doc."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

#: pathspecs of generated outputs, left out of the dirty check
GENERATED = (":(exclude)docs", ":(exclude)results")


def commit(root: Path | None = None) -> str:
    """The git commit of this checkout or of ``root``; with uncommitted changes to tracked files, ``+dirty.`` and
    the first 8 hex digits of the SHA-1 of their diff, so that two different edits of one commit stamp differently
    (``thresholds`` keeps stored results only under the same stamp).

    ``unknown`` outside a git checkout.

    Generated outputs (``docs/``, ``results/``) do not count as changes: a chain of generators (``make speed``,
    then ``make precision``) would otherwise stamp every report after the first as dirty.
    """
    root = root or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--", ".", *GENERATED], cwd=root, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty.{hashlib.sha1(diff).hexdigest()[:8]}" if diff else sha
