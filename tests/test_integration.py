"""anomalib's model contract on generated data: Engine fit, test, train, validate, predict, export.

Mirrors anomalib's own integration test of its models, on a tiny synthetic
Texture AD and a small random backbone, then checks what the plugin adds:
the checkpoint round trip keeps every expert statistic, and the exported
OpenVINO graph (routing and TTA inside it) scores like the torch model.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.deploy import OpenVINOInferencer
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule

from anomalib_adapted_moe import AdaptedMoE, SyntheticTextureAD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, AdaptedMoE, SyntheticTextureAD, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("integration")
    datamodule = tiny_synthetic_datamodule(root / "data")
    model = tiny_adapted_moe()
    engine = Engine(default_root_dir=root / "results", accelerator="cpu", devices=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    checkpoint = Path(
        engine.trainer.checkpoint_callback.best_model_path or engine.trainer.checkpoint_callback.last_model_path
    )
    return engine, model, datamodule, checkpoint


def test_fit_trains_one_expert_per_seen_subclass(fitted) -> None:
    _, model, datamodule, checkpoint = fitted
    assert checkpoint.is_file()
    assert model.expert_names == datamodule.train_subclasses
    assert model.model.num_experts == len(datamodule.train_subclasses) == 2
    assert not torch.equal(model.model.adaptation.expert_std, torch.ones_like(model.model.adaptation.expert_std))


def test_test_validate_predict_from_checkpoint(fitted) -> None:
    engine, _, datamodule, checkpoint = fitted
    results = engine.test(model=tiny_adapted_moe(), datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0 and 0.0 <= results[0]["pixel_AUROC"] <= 1.0
    # one visualisation per test image: subclasses share file names and must not overwrite each other
    saved = [p for p in checkpoint.parents[2].rglob("images/**/*.png")]
    assert len(saved) == len(datamodule.test_data)
    validation = engine.validate(model=tiny_adapted_moe(), datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    assert validation and all(np.isfinite(v) for v in validation[0].values())
    predictions = engine.predict(
        model=tiny_adapted_moe(), dataloaders=datamodule.test_dataloader(), ckpt_path=checkpoint
    )
    scores = torch.cat([batch.pred_score for batch in predictions])
    assert len(scores) == len(datamodule.test_data) and torch.isfinite(scores).all()
    assert {name for batch in predictions for name in batch.subclass_name} == set(datamodule.test_data.samples.subclass)


def test_train_runs_fit_and_test(tmp_path: Path, fitted) -> None:
    _, _, datamodule, _ = fitted
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    engine.train(model=tiny_adapted_moe(epochs=1), datamodule=datamodule)
    assert engine.trainer.state.finished


def test_checkpoint_loads_weights_only_and_scores_exactly_like_the_fitted_model(fitted) -> None:
    _, model, datamodule, checkpoint = fitted
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    assert reloaded.expert_names == model.expert_names
    images = next(iter(datamodule.test_dataloader())).image
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        original, restored = model(images), reloaded(images)
    assert torch.equal(original.pred_score, restored.pred_score)
    assert torch.equal(original.anomaly_map, restored.anomaly_map)


@pytest.mark.parametrize("export_type", ["torch", "onnx", "openvino"])
def test_export(tmp_path: Path, fitted, export_type: str) -> None:
    engine, model, _, checkpoint = fitted
    path = engine.export(
        model=model,
        export_type=export_type,
        export_root=tmp_path,
        ckpt_path=checkpoint,
        onnx_kwargs={"opset_version": 18},
    )
    assert path is not None and Path(path).exists()


def test_openvino_matches_torch_on_eight_images(tmp_path: Path, fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes ./openvino_cache
    engine, model, datamodule, checkpoint = fitted
    path = engine.export(
        model=model,
        export_type="openvino",
        export_root=tmp_path,
        ckpt_path=checkpoint,
        onnx_kwargs={"opset_version": 18},
    )
    inferencer = OpenVINOInferencer(path=path, device="CPU")
    model.eval()
    paths = list(datamodule.test_data.samples.image_path)[:8]
    assert len(paths) == 8
    for index, image_path in enumerate(paths):
        result = inferencer.predict(image_path)
        with torch.no_grad():
            reference = model(datamodule.test_data[index].image[None])
        assert float(result.pred_score.reshape(-1)[0]) == pytest.approx(float(reference.pred_score[0]), abs=1e-3)
        ov_map = torch.as_tensor(np.asarray(result.anomaly_map)).reshape(-1)
        assert torch.allclose(ov_map, reference.anomaly_map.reshape(-1), atol=1e-3)


def test_no_subclass_labels_discovers_the_requested_number_of_experts(tmp_path: Path, fitted) -> None:
    """On data without labels (any anomalib image datamodule) the experts come from clustering."""
    _, _, datamodule, _ = fitted
    from anomalib.data import Folder

    category_root = Path(datamodule.train_data.samples.image_path[0]).parents[3]
    normal_dirs = sorted({str(p.parent.relative_to(category_root)) for p in category_root.glob("*/train/good/*.png")})
    folder = Folder(
        name="unlabelled",
        root=category_root,
        normal_dir=normal_dirs,
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
        test_split_mode="synthetic",
        test_split_ratio=0.25,
        val_split_mode="same_as_test",
    )
    model = tiny_adapted_moe(num_experts=2, epochs=1)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    engine.fit(model=model, datamodule=folder)
    assert model.model.num_experts == 2
    assert model.expert_names == ["cluster_0", "cluster_1"]
