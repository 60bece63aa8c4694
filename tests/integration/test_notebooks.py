"""The notebooks are committed clean and run top to bottom (tiny settings, in a temporary folder).

Each notebook reads ``ADAPTED_MOE_NOTEBOOK_TINY`` in its first code cell; with it set to 1 it
trains a random-init ResNet-18 on 64-px synthetic data for 2 epochs. Execution happens in
memory in a fresh kernel whose working directory is a temporary folder (results); nothing is written
back into the repository.
"""

from pathlib import Path

import nbformat
import pytest
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_routing_and_tta.ipynb"]
# figures each notebook must display: contact sheet + overlay; embeddings, matrix, TTA, per-expert maps
EXPECTED_IMAGES = {"01_quickstart.ipynb": 2, "02_routing_and_tta.ipynb": 4}


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(value) for key, value in output.get("data", {}).items() if key.startswith("text/"))
    return "\n".join(parts)


def count_images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_and_says_how_to_run(name: str) -> None:
    notebook = read(name)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown" and "Run it" in notebook.cells[0].source
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert 'os.environ.get("ADAPTED_MOE_NOTEBOOK_TINY") == "1"' in code[0].source
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-data cache for both notebooks (the tiny set is generated once)."""
    return tmp_path_factory.mktemp("notebook_data")


def execute(name: str, tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """The notebook run on tiny settings in a fresh kernel whose working directory is ``tmp_path``, in memory."""
    from nbclient import NotebookClient

    monkeypatch.setenv("ADAPTED_MOE_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("ANOMALIB_ADAPTED_MOE_CACHE", str(data_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    for setting, folder in (("JUPYTER_RUNTIME_DIR", "jupyter_runtime"), ("IPYTHONDIR", "ipython")):
        monkeypatch.setenv(setting, str(tmp_path / folder))  # the kernel's files, not in the home folder
    notebook = read(name)
    # kernel "python3" resolves to this interpreter (the venv's): jupyter_client starts sys.executable
    NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_on_tiny_settings(
    name: str, tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = (NOTEBOOKS / name).read_bytes()
    for setting in ("ADAPTED_MOE_NOTEBOOK_DATA", "ADAPTED_MOE_NOTEBOOK_CATEGORY"):  # the synthetic cloth set
        monkeypatch.delenv(setting, raising=False)
    notebook = execute(name, tmp_path, data_cache, monkeypatch)

    assert (NOTEBOOKS / name).read_bytes() == committed  # executed in memory only
    text = outputs_text(notebook)
    assert "tiny settings" in text
    assert count_images(notebook) >= EXPECTED_IMAGES[name]
    assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert (tmp_path / "results" / "notebooks").is_dir()  # results went to the kernel's working directory
    assert any(data_cache.iterdir())  # and the data to the cache we gave it
    if name == "01_quickstart.ipynb":
        assert "mean seen" in text and "mean unseen" in text
        assert "exported:" in text and "score" in text
    else:
        assert "before TTA" in text and "after TTA" in text


@pytest.mark.slow
def test_the_quickstart_runs_on_own_images_in_texture_ads_layout(
    tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walkthrough swapped in TextureAD by hand, and the contact-sheet cell failed ("'TextureAD' object has no
    attribute 'category_dir'"); the notebook takes DATA_ROOT and CATEGORY from the environment too."""
    from anomalib_adapted_moe import SyntheticTextureAD

    own = SyntheticTextureAD(
        root=tmp_path / "own", category="wafer", image_size=64, num_train=4, num_test_good=2, num_test_defect=5,
        num_subclasses=3, num_unseen=1,
    )  # fmt: skip
    own.prepare_data()  # written in TextureAD's layout: <root>/wafer/<subclass>/...
    monkeypatch.setenv("ADAPTED_MOE_NOTEBOOK_DATA", str(own.category_dir.parent))
    monkeypatch.setenv("ADAPTED_MOE_NOTEBOOK_CATEGORY", "wafer")
    notebook = execute("01_quickstart.ipynb", tmp_path, data_cache, monkeypatch)
    text = outputs_text(notebook)
    assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert f"{own.category_dir}: your own images" in text and "mean unseen" in text and "exported:" in text
    assert (tmp_path / "results" / "notebooks" / "01_quickstart" / "wafer" / "weights" / "openvino").is_dir()
