"""Determinism on CPU: the same seed gives identical image scores across two runs; another seed does not."""

from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
from lightning.pytorch import seed_everything

pytestmark = pytest.mark.slow


def scores_after_fitting(seed: int, data: Path, results: Path) -> torch.Tensor:
    """Seed, fit through anomalib's Engine, and score every test image (post-processed pred_score)."""
    seed_everything(seed)
    datamodule = tiny_synthetic_datamodule(data)
    model = tiny_adapted_moe(epochs=2)
    engine = Engine(default_root_dir=results, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(batch.image).pred_score for batch in datamodule.test_dataloader()])


def test_the_same_seed_gives_identical_scores_and_another_seed_does_not(tmp_path: Path) -> None:
    first = scores_after_fitting(0, tmp_path / "data", tmp_path / "run1")
    second = scores_after_fitting(0, tmp_path / "data", tmp_path / "run2")
    other = scores_after_fitting(1, tmp_path / "data", tmp_path / "run3")
    assert len(first) == 21 and torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert not torch.allclose(first, other, atol=1e-4)
