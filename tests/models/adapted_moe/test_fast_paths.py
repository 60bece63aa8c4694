"""The shortcuts compute what the plain versions do: fused map upsampling and blur, pruned backbone, channels-last
images for the backbone, the experts' loss on a sample of patches, the training's L2 norm."""

import pytest
import timm
import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d, TimmFeatureExtractor
from conftest import tiny_model

from anomalib_adapted_moe.models.adapted_moe.blur import UpsampledGaussianBlur
from anomalib_adapted_moe.models.adapted_moe.features import prune_after_last_layer
from anomalib_adapted_moe.models.adapted_moe.loss import truncated_l1_loss
from anomalib_adapted_moe.models.adapted_moe.training import TrainingSchedule, training_step
from anomalib_adapted_moe.models.adapted_moe.unit_norm import unit_norm


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


@pytest.mark.parametrize(("grid", "size"), [((32, 32), (256, 256)), ((12, 10), (48, 40))])
def test_a_patch_placed_at_its_cell_centre_gives_the_bilinear_map_and_elsewhere_moves_it(
    grid: tuple[int, int], size: tuple[int, int]
) -> None:
    """``patch_centre`` (the map at the features' centre) with the cell centre, ``stride * (i + 0.5) - 0.5``, is the
    align_corners=False upsampling; another centre moves a lone hot patch's peak by exactly the difference."""
    blur = UpsampledGaussianBlur(kernel_size=(9, 9), sigma=(1.0, 1.0), channels=1)
    scores = torch.rand(2, *grid)
    plain = blur(scores, size=size)
    stride_rows, stride_columns = size[0] / grid[0], size[1] / grid[1]
    blur.patch_centre = ((stride_rows - 1) / 2, (stride_columns - 1) / 2)
    assert torch.allclose(blur(scores, size=size), plain, atol=1e-5)
    hot = torch.zeros(1, *grid)
    hot[0, grid[0] // 2, grid[1] // 3] = 1.0
    blur.patch_centre = (-3.0, 5.0)
    peak = blur(hot, size=size)[0, 0]
    row, column = divmod(int(peak.argmax()), size[1])
    assert (row, column) == (round(stride_rows * (grid[0] // 2) - 3), round(stride_columns * (grid[1] // 3) + 5))


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


def test_patch_features_feed_the_backbone_channels_last_and_its_features_equal_the_contiguous_ones() -> None:
    extractor = tiny_model().patch_features.eval()
    layouts = []
    hook = extractor.feature_extractor.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    images = torch.rand(2, 3, 64, 64)  # contiguous, as anomalib's pre-processor hands them over
    extractor(images)
    hook.remove()
    assert layouts == [True]
    normalised = extractor.renormalize(images)
    plain = extractor.feature_extractor(normalised)
    last = extractor.feature_extractor(normalised.contiguous(memory_format=torch.channels_last))
    assert all(torch.allclose(last[layer], plain[layer], atol=1e-5, rtol=1e-5) for layer in extractor.layers)


def exact_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances without cdist's matmul shortcut, which loses 1e-4 on unit vectors."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def test_patch_fraction_scores_a_fresh_sample_of_the_same_patches_in_every_image() -> None:
    model = tiny_model().train()
    features = torch.randn(3, model.patch_features.out_dim, 6, 8)
    labels = torch.tensor([0, 2, 2])
    inputs = []
    model.experts.register_forward_hook(lambda _module, args, output: inputs.append((args[0], output)))
    schedule = TrainingSchedule(patch_fraction=0.25)
    losses = [training_step(model, features, labels, schedule) for _ in range(2)]
    everything = model.adapt(features).flatten(2).transpose(1, 2)  # (B, P, C), unit norm
    drawn = []
    for (scored, scores), loss in zip(inputs, losses, strict=True):
        assert scored.shape == (3, 1, 2 * 12, everything.shape[2])  # 12 real of 48 patches, and 12 fakes
        real, fake = scored[:, 0, :12], scored[:, 0, 12:]
        distance, position = exact_distances(real, everything).min(dim=2)
        assert distance.max() < 1e-5  # real patches are adapted patches, unchanged
        assert (position == position[0]).all() and len(set(position[0].tolist())) == 12  # same draw for all
        assert torch.allclose(fake.norm(dim=2), torch.ones(3, 12), atol=1e-5)
        assert exact_distances(fake, everything).min() > 1e-3  # and fakes are not
        expected = truncated_l1_loss(scores[:, 0, :12], scores[:, 0, 12:], schedule.margin)
        assert torch.allclose(loss["expert_loss"], expected)
        drawn.append(set(position[0].tolist()))
    assert drawn[0] != drawn[1]  # drawn afresh every step
    inputs.clear()
    training_step(model, features, labels, TrainingSchedule())
    assert inputs[0][0].shape[2] == 2 * 48  # the default scores every patch
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="patch_fraction"):
            TrainingSchedule(patch_fraction=bad)


@pytest.mark.parametrize(
    ("shape", "dim", "channels_last"), [((3, 5, 4, 6), 1, True), ((3, 5, 4, 6), 1, False), ((2, 7, 5), 2, False)]
)
def test_unit_norm_has_f_normalizes_values_and_gradient(shape: tuple[int, ...], dim: int, channels_last: bool) -> None:
    features = torch.randn(*shape, dtype=torch.float64)
    zero = [0] * len(shape)
    zero[dim] = slice(None)
    features[tuple(zero)] = 0  # a zero vector: F.normalize leaves it zero and its gradient is grad / eps
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(shape[::-1], dtype=torch.float64).permute(*reversed(range(len(shape))))  # other layout
    results = []
    for normalise in (lambda x: F.normalize(x, dim=dim), lambda x: unit_norm(x, dim)):
        leaf = features.clone().requires_grad_()
        values = normalise(leaf)
        values.backward(upstream)
        results.append((values.detach(), leaf.grad))
    (expected, expected_grad), (values, grad) = results
    assert torch.equal(values, expected)
    assert torch.allclose(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_routing_trains_adaptor_off_leaves_the_experts_gradient_and_drops_only_the_routing_loss_from_the_adaptor() -> (
    None
):
    features, labels = torch.randn(4, tiny_model().patch_features.out_dim, 6, 8), torch.tensor([0, 1, 2, 1])
    grads = {}
    for switch in (True, False):
        model = tiny_model().train()
        torch.manual_seed(1)  # the same patch draw and noise for both
        losses = training_step(model, features, labels, TrainingSchedule(routing_trains_adaptor=switch))
        expert = torch.autograd.grad(losses["expert_loss"], model.adaptor.linear.weight, retain_graph=True)[0]
        routing = torch.autograd.grad(
            losses["routing_loss"], [model.adaptor.linear.weight, model.router.projection.weight], allow_unused=True
        )
        grads[switch] = (losses["routing_loss"].detach(), expert, *routing)
    (loss_on, expert_on, adaptor_on, router_on), (loss_off, expert_off, adaptor_off, router_off) = (
        grads[True],
        grads[False],
    )
    assert torch.equal(loss_on, loss_off)  # the same forward pass
    assert torch.allclose(expert_on, expert_off) and expert_off.abs().sum() > 0
    assert torch.allclose(router_on, router_off) and router_off.abs().sum() > 0  # the router learns as before
    assert adaptor_on.abs().sum() > 0 and adaptor_off is None  # only the paper's graph trains the adaptor by routing
