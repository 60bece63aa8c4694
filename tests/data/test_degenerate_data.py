"""Degenerate training and test sets through anomalib's Engine: each works, or fails with a message that says why.

One training subclass; a subclass with a single training image; more experts
than the images can form clusters; a test set of unseen subclasses only.
"""

import logging
import shutil
from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from conftest import make_subclass, tiny_adapted_moe

from anomalib_adapted_moe.data import TextureAD

pytestmark = pytest.mark.slow


def texture_ad(root: Path, **kwargs) -> TextureAD:
    return TextureAD(
        root=root, category="cloth", train_batch_size=4, eval_batch_size=8, num_workers=0, seed=0, **kwargs
    )


def engine_for(root: Path) -> Engine:
    return Engine(default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)


@pytest.fixture(scope="module")
def one_subclass(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine, object]:
    """Trained on ``fabric_a`` alone; ``fabric_c`` is a test-only (unseen) subclass."""
    root = tmp_path_factory.mktemp("one_subclass")
    make_subclass(root / "data" / "cloth", "fabric_a", train=3, test_good=2, defects={"hole": 2})
    make_subclass(root / "data" / "cloth", "fabric_c", train=None, test_good=2, defects={"hole": 2})
    torch.manual_seed(0)
    model = tiny_adapted_moe(epochs=2)
    engine = engine_for(root / "results")
    engine.fit(model=model, datamodule=texture_ad(root / "data"))
    return root, engine, model


def test_one_training_subclass_trains_one_expert(one_subclass) -> None:
    _, _, model = one_subclass
    assert model.expert_names == ["fabric_a"] and model.model.num_experts == 1
    assert not torch.equal(model.model.adaptation.expert_std, torch.ones_like(model.model.adaptation.expert_std))


def test_a_test_set_of_unseen_subclasses_only_is_routed_and_scored(one_subclass) -> None:
    root, engine, model = one_subclass
    datamodule = texture_ad(root / "data", test_subclasses=["fabric_c"])
    results = engine.test(model=model, datamodule=datamodule, verbose=False)
    assert set(datamodule.test_data.samples.subclass_id) == {-1}
    assert all(0.0 <= results[0][metric] <= 1.0 for metric in ("image_AUROC", "pixel_AUROC"))  # not NaN
    # every image goes to the one expert there is, with its whole weight, and gets a finite score and map
    batch = next(iter(datamodule.test_dataloader()))
    images = model.pre_processor.transform(batch.image)
    model.eval()
    with torch.no_grad():
        expert_index, weights = model.model.route(model.model.adapt(model.model.patch_features(images)))
        scored = model.model(images)
    assert expert_index.tolist() == [[0]] * len(images) and torch.equal(weights, torch.ones(len(images), 1))
    assert scored.pred_score.shape == (len(images),) and torch.isfinite(scored.pred_score).all()
    assert scored.anomaly_map.shape[-2:] == images.shape[-2:] and torch.isfinite(scored.anomaly_map).all()


def test_a_subclass_with_a_single_training_image_keeps_it_and_gets_its_expert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_subclass(tmp_path / "data" / "cloth", "fabric_a", train=3)
    make_subclass(tmp_path / "data" / "cloth", "fabric_b", train=1)
    datamodule = texture_ad(tmp_path / "data")
    model = tiny_adapted_moe(epochs=2)
    with caplog.at_level(logging.WARNING):
        engine_for(tmp_path / "results").fit(model=model, datamodule=datamodule)
    assert "'fabric_b' has 1 training image(s); none is held out for validation" in caplog.text
    assert list(datamodule.train_data.samples.subclass).count("fabric_b") == 1
    assert model.expert_names == ["fabric_a", "fabric_b"]
    assert torch.isfinite(model.model.adaptation.expert_std[1]).all()
    assert not torch.equal(model.model.adaptation.expert_std[1], torch.ones_like(model.model.adaptation.expert_std[1]))


def test_a_subclass_left_one_training_image_by_the_validation_split_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two training images: one held out, its expert trained on the other, without a word (one image was warned)."""
    make_subclass(tmp_path / "data" / "cloth", "fabric_a", train=5)
    make_subclass(tmp_path / "data" / "cloth", "fabric_b", train=2)
    datamodule = texture_ad(tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        datamodule.setup()
    said = "'fabric_b' has 2 training images; 1 held out for validation leave its expert one to train on. Fix: give"
    assert said in caplog.text and "'fabric_a'" not in caplog.text
    assert list(datamodule.train_data.samples.subclass).count("fabric_b") == 1


@pytest.mark.parametrize("identical", [False, True], ids=["too_few_images", "identical_images"])
def test_more_experts_than_distinct_training_images_fails_with_the_fix(tmp_path: Path, identical: bool) -> None:
    """num_experts=5 on 3 training images (2 after the validation hold-out), or on copies of one image."""
    make_subclass(tmp_path / "data" / "cloth", "fabric_a", train=3)
    train = sorted((tmp_path / "data" / "cloth" / "fabric_a" / "train" / "good").iterdir())
    if identical:
        for copy in train[1:]:
            shutil.copyfile(train[0], copy)
    model = tiny_adapted_moe(num_experts=5, epochs=1)
    distinct = 1 if identical else 2
    with pytest.raises(ValueError, match=rf"num_experts=5 .* only {distinct} distinct images .* at most {distinct}"):
        engine_for(tmp_path / "results").fit(model=model, datamodule=texture_ad(tmp_path / "data"))
