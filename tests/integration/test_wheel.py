"""The wheel a user installs: every file of the package, the hook, and the bare names from the wheel alone."""

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow

PACKAGE = "anomalib_adapted_moe"
HOOK = "anomalib_adapted_moe_cli.pth"
HOOK_MODULE = "anomalib_adapted_moe_cli.py"  # what the hook imports: the plugin, naming a failed import

# Runs the stock `anomalib` command with the venv's dependencies but without their .pth files, so the checkout's
# editable install stays out; `site.addsitedir` then places the unpacked wheel as pip would, its hook included. The
# file is named `anomalib`, the program name the hook looks for.
LAUNCHER = """\
import site, sys
sys.path.extend({dependencies!r})
site.addsitedir({installed!r})
print("plugin from", sys.modules["{package}"].__file__, file=sys.stderr)
from anomalib.cli.cli import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel .` as a user builds it (hatchling from the dev environment: nothing is downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out)]
    result = subprocess.run([*build, str(REPO)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_package_and_the_hook(wheel: Path) -> None:
    on_disk = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read(HOOK) == (REPO / "src" / HOOK).read_bytes()
        assert archive.read(HOOK_MODULE) == (REPO / "src" / HOOK_MODULE).read_bytes()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        requirements = [line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires")]
    assert on_disk <= names, f"missing from the wheel: {sorted(on_disk - names)}"
    assert f"{PACKAGE}/models/adapted_moe/README.md" in names
    assert "Requires-Dist: anomalib==2.7.*" in requirements


def test_the_stock_command_resolves_the_bare_names_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    installed = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    launcher = tmp_path / "bin" / "anomalib"
    launcher.parent.mkdir()
    dependencies = [path for path in site.getsitepackages() if Path(path).is_dir()]
    launcher.write_text(LAUNCHER.format(dependencies=dependencies, installed=str(installed), package=PACKAGE))
    args = ["fit", "--model", "AdaptedMoE", "--data", "SyntheticTextureAD", "--print_config"]
    result = subprocess.run(
        [sys.executable, "-S", str(launcher), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"plugin from {installed / PACKAGE / '__init__.py'}" in result.stderr  # not the checkout's
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["class_path"] == f"{PACKAGE}.AdaptedMoE"
    assert printed["data"]["class_path"] == f"{PACKAGE}.SyntheticTextureAD"


def test_a_plugin_that_fails_to_import_is_named_with_the_fix_before_anomalibs_own_error(
    wheel: Path, tmp_path: Path
) -> None:
    """A half-edited file or an anomalib of another version: the command printed the .pth line's traceback and, last,
    anomalib's "Expected a dot import path string: AdaptedMoE", naming neither the plugin nor the fix."""
    installed = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    (installed / PACKAGE / "__init__.py").write_text("from anomalib.models import NoSuchModel\n")  # a broken plugin
    launcher = tmp_path / "bin" / "anomalib"
    launcher.parent.mkdir()
    dependencies = [path for path in site.getsitepackages() if Path(path).is_dir()]
    source = LAUNCHER.format(dependencies=dependencies, installed=str(installed), package=PACKAGE)
    launcher.write_text("\n".join(line for line in source.splitlines() if "plugin from" not in line))
    args = ["fit", "--model", "AdaptedMoE", "--data", "SyntheticTextureAD", "--print_config"]
    result = subprocess.run(
        [sys.executable, "-S", str(launcher), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    said = (
        "error: anomalib-adapted-moe could not be imported (ImportError: cannot import name 'NoSuchModel' from "
        "'anomalib.models'"
    )
    assert (
        said in result.stderr and "Fix: python -c 'import anomalib_adapted_moe' shows where it fails" in result.stderr
    )
    assert "Remainder of file ignored" not in result.stderr  # no traceback of the .pth line
