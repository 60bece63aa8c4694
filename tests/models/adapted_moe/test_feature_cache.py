"""Training features: the cache (RAM or memory-mapped, float16 or float32) and its bypass under random augmentation."""

import logging

import pytest
import torch
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import ColorJitter, Compose, Normalize, RandomApply, RandomHorizontalFlip, Resize

from anomalib_adapted_moe.models.adapted_moe.feature_cache import FeatureCache, pixel_augmentations

LOGGER = "anomalib_adapted_moe.models.adapted_moe.lightning_model"


def test_only_random_transforms_count_as_pixel_augmentations() -> None:
    assert pixel_augmentations(None) == []
    assert pixel_augmentations(Compose([Resize((8, 8)), Normalize([0.5] * 3, [0.2] * 3)])) == []
    nested = Compose([Resize((8, 8)), RandomApply([ColorJitter(brightness=0.5)], p=0.5), RandomHorizontalFlip()])
    assert pixel_augmentations(nested) == ["ColorJitter", "RandomHorizontalFlip"]
    assert pixel_augmentations(lambda image: image) == ["function"]  # unknown callables are not trusted


def test_float32_cache_spills_and_maps_back_exactly(tmp_path) -> None:
    features = torch.randn(4, 3, 2, 2)
    cache = FeatureCache(budget_bytes=100, directory=tmp_path, dtype=torch.float32)
    cache.append(features[:1], torch.tensor([0]))
    cache.append(features[1:], torch.tensor([1, 1, 0]))
    cached, labels = cache.tensors()
    assert cache.on_disk and cached.dtype == torch.float32 and torch.equal(cached, features)
    assert labels.tolist() == [0, 1, 1, 0]
    assert "192 B" not in cache.describe() and "float32 in memory-mapped file" in cache.describe()
    with pytest.raises(ValueError, match="float16 or float32"):
        FeatureCache(dtype=torch.bfloat16)


def untrained(root, epochs: int = 1, train_augmentations=None, **model_args):
    """The datamodule and the model :func:`fit` trains, as seeded before training."""
    torch.manual_seed(0)
    datamodule = tiny_synthetic_datamodule(root, train_augmentations=train_augmentations)
    return datamodule, tiny_adapted_moe(epochs=epochs, evaluator=False, visualizer=False, **model_args)


def fit(root, monkeypatch, epochs: int = 1, train_augmentations=None, **model_args):
    """Seeded fit through anomalib's Engine; counts the images that pass through the frozen backbone.

    The training loader is not shuffled, so the cache holds the images in dataset
    order, the order in which the live source indexes them: both paths then draw
    the same images in every batch.
    """
    datamodule, model = untrained(root, epochs, train_augmentations, **model_args)
    unshuffled = lambda: DataLoader(  # noqa: E731
        datamodule.train_data, batch_size=4, shuffle=False, collate_fn=datamodule.train_data.collate_fn
    )
    monkeypatch.setattr(datamodule, "train_dataloader", unshuffled)
    seen = []
    model.model.patch_features.register_forward_hook(lambda _module, inputs, _output: seen.append(len(inputs[0])))
    engine = Engine(default_root_dir=root / "results", accelerator="cpu", devices=1, logger=False, limit_val_batches=0)
    engine.fit(model=model, datamodule=datamodule)
    return model, sum(seen), len(datamodule.train_data)


def test_cached_and_uncached_training_give_the_same_parameters(tmp_path, monkeypatch, caplog) -> None:
    """One seeded epoch from a float32 cache equals one epoch that recomputes every feature.

    The cache is float32 here so the comparison is exact up to float32 arithmetic (the
    backbone sees the images in batches of 4 in one path and 4 in the other, but of
    possibly different composition, so conv kernels may round differently): atol 1e-5.
    The default float16 cache differs from these by fp16 rounding of the inputs only.
    """
    caplog.set_level(logging.INFO, logger=LOGGER)
    cached, _, count = fit(tmp_path / "a", monkeypatch, feature_cache=True, cache_dtype="float32")
    assert "Feature cache on: float32 in RAM" in caplog.text
    assert f"feature cache: {count} images" in caplog.text and "float32 in RAM." in caplog.text
    live, _, _ = fit(tmp_path / "b", monkeypatch, feature_cache=False)
    assert "Feature cache bypassed: feature_cache=False" in caplog.text
    cached_state, live_state = cached.model.state_dict(), live.model.state_dict()
    assert cached_state.keys() == live_state.keys()
    trained = ["adaptor.linear.weight", "experts.weight1", "router.projection.weight", "adaptation.expert_mean"]
    initial = untrained(tmp_path / "c", feature_cache=True, cache_dtype="float32")[1].model.state_dict()
    for name in trained:  # the comparison is not vacuous: training moved these from the same seeded start
        assert not torch.allclose(cached_state[name], initial[name], atol=1e-6)
    for name, value in cached_state.items():
        assert torch.allclose(value.float(), live_state[name].float(), atol=1e-5), name


def test_random_augmentation_bypasses_the_cache_every_epoch(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    jitter = RandomApply([ColorJitter(brightness=0.4)], p=0.5)
    model, backbone_images, count = fit(tmp_path / "aug", monkeypatch, epochs=2, train_augmentations=jitter)
    assert "Feature cache bypassed: the training augmentation changes pixels (ColorJitter)" in caplog.text
    assert f"no feature cache, {count} images' features recomputed every epoch" in caplog.text
    # two training epochs, then the TTA statistics, the experts' calibration (no validation loader here), their
    # image offsets and the near-twin limit
    assert backbone_images == count * 2 + count + count + count + count
    assert "calibration fitted on the training images (no validation loader)" in caplog.text
    assert len(model.epoch_seconds) == 2 and all(seconds > 0 for seconds in model.epoch_seconds)

    caplog.clear()
    _, backbone_images, count = fit(tmp_path / "plain", monkeypatch, epochs=2)
    assert "Feature cache on" in caplog.text and "bypassed" not in caplog.text
    assert backbone_images == count  # once, in the Lightning epoch


def test_a_killed_process_leaves_no_spill_file(tmp_path) -> None:
    """SIGKILL and the OOM killer run no cleanup: the named spill file (GiBs in real use) stayed in the temp dir."""
    import signal
    import subprocess
    import sys

    script = (
        "import os, signal, sys, torch; "
        "from anomalib_adapted_moe.models.adapted_moe.feature_cache import FeatureCache; "
        "cache = FeatureCache(budget_bytes=10, directory=sys.argv[1]); "
        "features = torch.randn(4, 3, 2, 2); cache.append(features, torch.tensor([0, 1, 1, 0])); "
        "assert cache.on_disk and torch.equal(cache.tensors()[0], features.half()); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed with the cache on disk, mapped
    assert not list(tmp_path.iterdir())
