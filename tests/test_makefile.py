"""`make install` (which `make test` and `make demo` run first) refuses, before creating anything, a disk too full."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_install_names_the_free_space_it_needs_before_creating_the_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", "MIN_FREE_GIB=1000000", "install"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "GiB free here; the environment needs about 1000000 GiB" in done.stderr
    assert "TORCH_INDEX" in done.stderr
    assert not venv.exists()
