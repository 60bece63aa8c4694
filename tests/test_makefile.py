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


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_install_makes_again_an_environment_left_without_pip(tmp_path: Path) -> None:
    """An install stopped while ``python -m venv`` set up pip leaves ``bin/python`` and no pip: it was used as it
    was, and every later ``make`` failed with ``No module named pip``."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # the interrupted venv's python: no pip module
    (venv / "bin" / "python").chmod(0o755)
    python = tmp_path / "python3"  # records `-m venv`, makes a python that takes `-m pip install`; runs the rest
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "-m venv" ]; then echo "$@" >> {log}; printf "#!/bin/sh\\nexit 0\\n" > "$4/bin/python"; '
        f'exit 0; fi\nexec {shutil.which("python3")} "$@"\n'
    )
    python.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", f"PYTHON={python}", "MIN_FREE_GIB=0", "install"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["-m", "venv", "--clear", str(venv)]
    assert (venv / ".installed").exists()
