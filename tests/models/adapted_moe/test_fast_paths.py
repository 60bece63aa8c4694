"""The inference shortcuts compute what the plain versions do: fused map upsampling and blur, pruned backbone."""

import pytest
import timm
import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d, TimmFeatureExtractor

from anomalib_adapted_moe.models.adapted_moe.blur import UpsampledGaussianBlur
from anomalib_adapted_moe.models.adapted_moe.features import prune_after_last_layer


@pytest.mark.parametrize(("sigma", "grid", "size"), [(4.0, (32, 32), (256, 256)), (1.5, (12, 10), (48, 40))])
def test_fused_map_equals_bilinear_upsampling_then_anomalibs_2d_blur(
    sigma: float, grid: tuple[int, int], size: tuple[int, int]
) -> None:
    kernel = 2 * int(4.0 * sigma + 0.5) + 1
    args = {"kernel_size": (kernel, kernel), "sigma": (sigma, sigma), "channels": 1}
    reference, fused = GaussianBlur2d(**args), UpsampledGaussianBlur(**args)
    scores = torch.rand(3, *grid) * 5
    expected = reference(F.interpolate(scores[:, None], size=size, mode="bilinear", align_corners=False))
    got = fused(scores, size=size)
    assert got.shape == (3, 1, *size)
    assert torch.allclose(got, expected, atol=5e-5)
    assert fused.state_dict().keys() == reference.state_dict().keys()  # checkpoints load either way


def test_pruned_backbone_gives_the_same_features_without_the_later_layers() -> None:
    torch.manual_seed(0)
    backbone = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    layers = ["blocks.2", "blocks.4"]
    whole = TimmFeatureExtractor(backbone=backbone, layers=layers, pre_trained=False).eval()
    cut = TimmFeatureExtractor(backbone=backbone, layers=layers, pre_trained=False).eval()
    prune_after_last_layer(cut.feature_extractor)

    def modules(extractor: TimmFeatureExtractor) -> list[str]:
        return [node.target for node in extractor.feature_extractor.graph.nodes if node.op == "call_module"]

    assert "conv_head" in modules(whole) and "conv_head" not in modules(cut)
    assert not any(name.startswith(("blocks.5", "blocks.6")) for name in modules(cut))
    images = torch.rand(2, 3, 64, 64)
    expected, got = whole(images), cut(images)
    assert all(torch.equal(got[layer], expected[layer]) for layer in layers)
    cut.train()  # torchvision's DualGraphModule switches graphs: both were cut
    assert "conv_head" not in modules(cut)
    assert cut.state_dict().keys() == whole.state_dict().keys()  # weights kept: checkpoints keep their keys
