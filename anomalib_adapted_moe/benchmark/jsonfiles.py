"""The JSON files the benchmarks resume from: written whole, and one that does not parse named with its fix."""

import json
from pathlib import Path


def write_json(path: Path, value) -> None:
    """Write ``value`` to ``<name>.partial``, then rename it: a process killed mid-write leaves no half file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1))
    partial.replace(path)


def read_json(path: Path, fix: str):
    """``path``'s JSON; a file cut short or edited into invalid JSON stops with one line naming it and ``fix``."""
    try:
        return json.loads(path.read_text())
    except ValueError as error:  # JSONDecodeError, or bytes that are not text
        raise SystemExit(f"{path} is not valid JSON ({error}). Fix: {fix}") from None
