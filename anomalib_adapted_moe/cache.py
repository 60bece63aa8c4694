"""The package's one cache folder (generated data sets, OpenVINO's compiled models): never the working directory,
which on an edge box may be read-only or shared."""

from __future__ import annotations

import os
from pathlib import Path

#: set it to move every cache of this package at once (the tests point it at a temporary folder: tests/conftest.py)
CACHE_ENV = "ANOMALIB_ADAPTED_MOE_CACHE"


def package_cache_dir() -> Path:
    """``$ANOMALIB_ADAPTED_MOE_CACHE``, or ``~/.cache/anomalib_adapted_moe`` without it."""
    base = os.environ.get(CACHE_ENV)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "anomalib_adapted_moe"
