"""Determinism on CPU: the same seed gives identical image scores across two runs; another seed does not."""

from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
from lightning.pytorch import seed_everything

pytestmark = pytest.mark.slow


def scores_after_fitting(seed: int, data: Path, results: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed, fit through anomalib's Engine, and score every test image.

    Returns the post-processed ``pred_score`` (what a user sees; clamped to [0, 1], so many are exactly 0) and
    the torch model's raw anomaly maps, which are not clamped and so tell apart any two models that differ.
    """
    seed_everything(seed)
    datamodule = tiny_synthetic_datamodule(data)
    model = tiny_adapted_moe(seed=None, epochs=2)  # built and trained from the generator seed_everything set
    engine = Engine(default_root_dir=results, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    model.eval()
    scores, maps = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            scores.append(model(batch.image).pred_score)
            maps.append(model.model(model.pre_processor(batch.image)).anomaly_map)
    return torch.cat(scores), torch.cat(maps)


def test_the_same_seed_gives_identical_scores_and_another_seed_does_not(tmp_path: Path) -> None:
    first = scores_after_fitting(0, tmp_path / "data", tmp_path / "run1")
    second = scores_after_fitting(0, tmp_path / "data", tmp_path / "run2")
    other = scores_after_fitting(1, tmp_path / "data", tmp_path / "run3")
    (first_scores, first_maps), (second_scores, second_maps) = first, second
    assert len(first_scores) == 21 and torch.isfinite(first_scores).all() and torch.isfinite(first_maps).all()
    assert torch.equal(first_scores, second_scores) and torch.equal(first_maps, second_maps)
    assert not torch.allclose(first_scores, other[0], atol=1e-4)
    assert not torch.allclose(first_maps, other[1], atol=1e-4)
