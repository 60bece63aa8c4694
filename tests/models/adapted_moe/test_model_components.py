"""Unit tests of the Adapted-MoE parts: router, TTA, experts, top-k mixing, features."""

import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalib_adapted_moe.models.adapted_moe.experts import ExpertBank
from anomalib_adapted_moe.models.adapted_moe.features import channel_pooling_matrix
from anomalib_adapted_moe.models.adapted_moe.loss import noise_scale, truncated_l1_loss
from anomalib_adapted_moe.models.adapted_moe.router import RoutingNetwork
from anomalib_adapted_moe.models.adapted_moe.subclass_discovery import discover_subclasses
from anomalib_adapted_moe.models.adapted_moe.tta import TestTimeAdaptation


def test_center_loss_gradient_pulls_embeddings_towards_their_centre() -> None:
    router = RoutingNetwork(in_dim=4, embed_dim=3, num_experts=2, normalize=False, alpha=1.0)
    router.centers.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    embedding = torch.tensor([[0.0, 0.0, 2.0], [0.5, 0.5, 0.5]], requires_grad=True)
    labels = torch.tensor([0, 1])
    router.loss(embedding, labels).backward()
    moved = embedding.detach() - 0.1 * embedding.grad
    before = (embedding.detach() - router.centers[labels]).norm(dim=1)
    after = (moved - router.centers[labels]).norm(dim=1)
    assert torch.all(after < before)
    # alpha=1: pure centre loss, d/dx mean ||x - c||^2 = 2 (x - c) / B
    assert torch.allclose(embedding.grad, (embedding.detach() - router.centers[labels]))


def test_centre_update_follows_wen_et_al() -> None:
    router = RoutingNetwork(in_dim=4, embed_dim=2, num_experts=3, normalize=False, center_lr=0.5)
    embedding = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    router.update_centers(embedding, labels)
    # c0: delta = (2 * 0 - (2 + 4)) / (1 + 2) = -2, so c0 = 0 - 0.5 * -2 = 1; c1: delta = -3 / 2, c1 = 0.75
    assert torch.allclose(router.centers[0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(router.centers[1], torch.tensor([0.0, 0.75]))
    assert torch.equal(router.centers[2], torch.zeros(2))  # no member, no move


def test_routing_probabilities_follow_cosine_similarity_to_centres() -> None:
    router = RoutingNetwork(in_dim=4, embed_dim=2, num_experts=2, temperature=0.1)
    router.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    probabilities = router.probabilities(torch.tensor([[0.9, 0.1], [0.2, 5.0]]))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    assert probabilities.argmax(dim=1).tolist() == [0, 1]


def test_router_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="routing_loss"):
        RoutingNetwork(4, 2, 2, routing_loss="triplet")
    with pytest.raises(ValueError, match="alpha"):
        RoutingNetwork(4, 2, 2, alpha=1.5)
    with pytest.raises(ValueError, match="pool"):
        RoutingNetwork(4, 2, 2, pool=0)


def test_routing_pool_embeds_the_pooled_features_and_takes_maps_smaller_than_the_pool() -> None:
    torch.manual_seed(0)
    full, pooled = RoutingNetwork(6, 4, 3), RoutingNetwork(6, 4, 3, pool=2)
    pooled.load_state_dict(full.state_dict())
    features = torch.randn(2, 6, 8, 10)
    assert torch.allclose(pooled.embed(features), full.embed(F.avg_pool2d(features, 2)), atol=1e-6)
    assert not torch.allclose(pooled.embed(features), full.embed(features), atol=1e-3)  # the pool acts
    tiny = RoutingNetwork(6, 4, 3, pool=4).embed(torch.randn(2, 6, 3, 3))
    assert tiny.shape == (2, 4) and torch.isfinite(tiny).all()


def test_tta_output_has_the_experts_mean_and_std() -> None:
    torch.manual_seed(0)
    tta = TestTimeAdaptation(num_experts=3, dim=5)
    tta.expert_mean.copy_(torch.randn(3, 5))
    tta.expert_std.copy_(torch.rand(3, 5) + 0.5)
    features = torch.randn(2, 5, 6, 7) * 3 + 1
    index = torch.tensor([[2, 0], [1, 2]])
    adapted = tta(features, index)  # (B, K, C, H, W)
    assert adapted.shape == (2, 2, 5, 6, 7)
    mean = adapted.mean(dim=(3, 4))
    std = adapted.std(dim=(3, 4), unbiased=False)
    assert torch.allclose(mean, tta.expert_mean[index], atol=1e-5)
    assert torch.allclose(std, tta.expert_std[index], atol=1e-4)


def test_tta_of_a_constant_image_is_finite() -> None:
    tta = TestTimeAdaptation(num_experts=1, dim=3)
    tta.expert_mean.fill_(0.7)
    adapted = tta(torch.full((1, 3, 4, 4), 5.0), torch.zeros(1, 1, dtype=torch.long))
    assert torch.isfinite(adapted).all()
    assert torch.allclose(adapted, torch.full_like(adapted, 0.7))


def test_tta_statistics_are_within_image_statistics() -> None:
    tta = TestTimeAdaptation(num_experts=2, dim=1)
    # expert 0: two images with different offsets but the same spatial spread
    first = torch.tensor([[[[0.0, 2.0]]]])  # mean 1, std 1
    second = torch.tensor([[[[10.0, 12.0]]]])  # mean 11, std 1
    features = torch.cat([first, second])
    means, variances = tta.image_statistics(features)
    tta.fit(means, variances, torch.tensor([0, 0]))
    assert tta.expert_mean[0].item() == pytest.approx(6.0)
    assert tta.expert_std[0].item() == pytest.approx(1.0)  # not the pooled std (5.1)
    assert tta.expert_std[1].item() == 1.0 and tta.expert_mean[1].item() == 0.0  # untouched


def test_batched_experts_equal_a_per_expert_loop() -> None:
    torch.manual_seed(0)
    bank = ExpertBank(num_experts=4, in_dim=6, hidden_dim=5).eval()
    bank.running_mean.copy_(torch.randn(4, 5))
    bank.running_var.copy_(torch.rand(4, 5) + 0.5)
    with torch.no_grad():  # non-trivial bias and affine terms: the forward folds them into one scale and shift
        for parameter in (bank.bias1, bank.bn_weight, bank.bn_bias):
            parameter.copy_(torch.randn_like(parameter))
    features = torch.randn(3, 2, 10, 6)
    index = torch.tensor([[3, 1], [0, 0], [2, 3]])
    batched = bank(features, index)
    for b in range(3):
        for k in range(2):
            e = int(index[b, k])
            hidden = features[b, k] @ bank.weight1[e] + bank.bias1[e]
            hidden = (hidden - bank.running_mean[e]) / torch.sqrt(bank.running_var[e] + bank.eps)
            hidden = F.leaky_relu(hidden * bank.bn_weight[e] + bank.bn_bias[e], 0.2)
            assert torch.allclose(batched[b, k], hidden @ bank.weight2[e], atol=1e-5)


@pytest.mark.parametrize("gated", [False, True])
def test_experts_score_adapted_features_without_forming_them(gated: bool) -> None:
    """score_adapted (TTA folded into the experts' weights) equals TTA, the L2 norm and the experts' forward."""
    torch.manual_seed(0)
    bank = ExpertBank(num_experts=3, in_dim=6, hidden_dim=5).eval()
    bank.running_mean.copy_(torch.randn(3, 5))
    bank.running_var.copy_(torch.rand(3, 5) + 0.5)
    tta = TestTimeAdaptation(num_experts=3, dim=6)
    tta.expert_mean.copy_(torch.randn(3, 6) * 0.3)
    tta.expert_std.copy_(torch.rand(3, 6) + 0.1)
    tta.expert_shift.fill_(0.5)  # the gate half open for some images
    with torch.no_grad():
        for parameter in (bank.bias1, bank.bn_weight, bank.bn_bias):
            parameter.copy_(torch.randn_like(parameter))
    features = F.normalize(torch.randn(2, 6, 4, 5), dim=1)
    features[1, 2] = 0.3  # a constant channel: no spread, a huge scale, still no difference of large numbers
    index = torch.tensor([[2, 0], [1, 2]])
    scale, offset = tta.affine(*tta.image_statistics(features), index, gated=gated)
    centred = (features - features.mean(dim=(2, 3), keepdim=True)).flatten(2).transpose(1, 2)  # (B, P, C)
    unadapted = features.flatten(2).transpose(1, 2)[:, None].expand(-1, 2, -1, -1)
    adapted = F.normalize(tta(features, index, gated=gated), dim=2).flatten(3).transpose(2, 3)  # (B, K, P, C)
    expected = bank(torch.cat([adapted, unadapted], dim=1), index.repeat(1, 2))
    both_scale = torch.cat([scale, torch.ones_like(scale)], dim=1)
    both_offset = torch.cat([offset, features.mean(dim=(2, 3))[:, None].expand_as(offset)], dim=1)
    folded = bank.score_adapted(centred, both_scale, both_offset, index.repeat(1, 2), normalized_views=2)
    assert torch.allclose(folded, expected, atol=1e-5)
    bank.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        bank.score_adapted(centred, scale, offset, index)


def test_batched_experts_equal_a_per_expert_loop_in_training() -> None:
    """Training mode: each expert's BatchNorm normalises over all patches routed to it, across the batch."""
    torch.manual_seed(0)
    bank = ExpertBank(num_experts=4, in_dim=6, hidden_dim=5).train()
    with torch.no_grad():
        for parameter in (bank.bias1, bank.bn_weight, bank.bn_bias):
            parameter.copy_(torch.randn_like(parameter))
    features = torch.randn(3, 2, 10, 6, requires_grad=True)
    index = torch.tensor([[3, 1], [0, 3], [2, 3]])  # expert 3 takes three copies, expert 1 one
    batched = bank(features, index)
    batched.square().sum().backward()
    batched_grad, features.grad = features.grad.clone(), None
    looped = torch.zeros_like(batched)
    for e in index.unique().tolist():
        rows = (index == e).nonzero().tolist()
        hidden = torch.stack([features[b, k] @ bank.weight1[e] + bank.bias1[e] for b, k in rows])  # (n, P, H)
        flat = hidden.reshape(-1, hidden.shape[-1])
        hidden = (hidden - flat.mean(dim=0)) / torch.sqrt(flat.var(dim=0, unbiased=False) + bank.eps)
        hidden = F.leaky_relu(hidden * bank.bn_weight[e] + bank.bn_bias[e], 0.2)
        for (b, k), out in zip(rows, hidden @ bank.weight2[e], strict=True):
            looped[b, k] = out
    assert torch.allclose(batched, looped, atol=1e-5)
    looped.square().sum().backward()
    assert torch.allclose(batched_grad, features.grad, atol=1e-5)


def test_expert_gradients_are_identical_from_one_backward_to_the_next() -> None:
    """Several images routed to one expert must not make training depend on thread timing.

    Advanced indexing (``weight[index]``) accumulates the gradient of repeated indices with a parallel
    ``index_put_``, whose sums come out in a different order from run to run on several CPU threads: two trainings
    with one seed differed. At this size (the demo's 152 channels) that path was taken: the test failed before.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        bank = ExpertBank(num_experts=5, in_dim=152, hidden_dim=152)
        features = torch.randn(8, 1, 2048, 152)
        expert_index = torch.tensor([[3], [0], [4], [0], [1], [3], [2], [0]])  # experts 0 and 3 repeat
        gradients = []
        for _ in range(4):
            bank.zero_grad(set_to_none=True)
            bank(features, expert_index).square().mean().backward()
            # bias1 gets none in training: the batch mean cancels it
            gradients.append([parameter.grad.clone() for parameter in bank.parameters() if parameter.grad is not None])
    finally:
        torch.set_num_threads(threads)
    assert len(gradients[0]) == 4
    for later in gradients[1:]:
        assert all(torch.equal(first, again) for first, again in zip(gradients[0], later, strict=True))


def test_expert_batchnorm_uses_each_experts_own_patches_in_training() -> None:
    torch.manual_seed(0)
    bank = ExpertBank(num_experts=3, in_dim=4, hidden_dim=2).train()
    with torch.no_grad():  # the running mean is that of Linear's output, bias included
        bank.bias1.copy_(torch.randn_like(bank.bias1))
    features = torch.randn(4, 1, 8, 4)
    features[2:] += 10.0  # expert 1's images are shifted
    index = torch.tensor([[0], [0], [1], [1]])
    bank(features, index)
    hidden = torch.einsum("bkpc,bkch->bkph", features, bank.weight1[index]) + bank.bias1[index][:, :, None]
    expected_mean_1 = hidden[2:].reshape(-1, 2).mean(dim=0)
    assert torch.allclose(bank.running_mean[1], 0.1 * expected_mean_1, atol=1e-5)
    assert torch.equal(bank.running_mean[2], torch.zeros(2))  # expert 2 got no patch


def test_truncated_l1_loss_is_zero_beyond_the_margin() -> None:
    assert truncated_l1_loss(torch.tensor([0.6, 1.0]), torch.tensor([-0.7, -2.0])).item() == 0.0
    assert truncated_l1_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(1.0)


def test_noise_scale_is_the_papers_sigma_on_unit_norm_1536_dim_features() -> None:
    features = F.normalize(torch.randn(2, 1536, 4, 4), dim=1)
    assert noise_scale(features, 0.015).item() == pytest.approx(0.015, rel=1e-4)
    assert noise_scale(features * 10, 0.015).item() == pytest.approx(0.15, rel=1e-4)


def test_channel_pooling_matrix_equals_adaptive_average_pooling() -> None:
    x = torch.randn(3, 10)
    pooled = x @ channel_pooling_matrix(10, 4)
    assert torch.allclose(pooled, F.adaptive_avg_pool1d(x[:, None], 4)[:, 0], atol=1e-6)


def test_subclass_discovery_finds_the_requested_number_of_clusters() -> None:
    rng = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    points = torch.cat([centres[i] + 0.1 * torch.randn(6, 8, generator=rng) for i in range(3)]).numpy()
    labels = discover_subclasses(points, num_experts=3)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert all(len(set(labels[i * 6 : (i + 1) * 6].tolist())) == 1 for i in range(3))
    assert len(set(discover_subclasses(points, num_experts=None).tolist())) == 3  # silhouette picks 3
    with pytest.raises(ValueError, match="distinct images"):
        discover_subclasses(points[:2], num_experts=3)


def test_an_odd_image_that_gets_its_own_discovered_expert_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """A new user's grey frame among colour training images became an expert of its own without a word."""
    rng = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    points = torch.cat([centres[i] + 0.1 * torch.randn(10, 8, generator=rng) for i in range(2)] + [centres[2:]])
    paths = [f"good/{i:03d}.png" for i in range(21)]
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        labels = discover_subclasses(points.numpy(), num_experts=None, image_paths=paths)
    assert len(set(labels.tolist())) == 3 and (labels == labels[-1]).sum() == 1  # the odd one is alone
    lone = f"cluster_{labels[-1]}"
    assert f"{lone}: 1" in caplog.text  # every expert's image count is logged
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"Discovered expert {lone} has 1 training image(s) of 21: good/020.png" in warnings[0]
    assert "Fix: look at them and move them out of the training folder if they are not the product" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        discover_subclasses(points.numpy(), num_experts=None)  # files unknown (a dataset without image paths)
    assert f"{lone} has 1 training image(s) of 21. Most likely" in caplog.text
    assert "Fix: look for such images and move them out" in caplog.text


def test_a_training_set_too_small_to_split_keeps_one_expert_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """A walkthrough's 4 training images of two variants were split into experts of 2, and the warning blamed odd
    images (another camera, a blank frame) alone where the whole set was too small."""
    centres = torch.eye(2, 8) * 5
    points = torch.cat([centres[0].expand(2, 8), centres[1].expand(2, 8)]) + 0.01 * torch.randn(4, 8)
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        labels = discover_subclasses(points.numpy(), num_experts=None)
    assert set(labels.tolist()) == {0}
    assert "kept one expert: 4 training images are too few to split into variants (two experts need 12)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):  # enough images, two distinct ones
        labels = discover_subclasses(np.repeat(points.numpy()[[0, 2]], 25, axis=0), num_experts=None)
    assert set(labels.tolist()) == {0}
    assert "kept one expert: the 50 training images hold only 2 distinct ones" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        discover_subclasses(points.numpy(), num_experts=2)  # asked for: trained, with the cause named
    assert caplog.messages[0].endswith(
        "number of variants. With 4 training images, 2 experts may also be too many: give 12 or more, or set "
        "num_experts to 1."
    )


def test_feature_cache_spills_to_a_memory_mapped_file_past_its_budget(tmp_path) -> None:
    from anomalib_adapted_moe.models.adapted_moe.feature_cache import FeatureCache

    features = torch.randn(5, 3, 4, 4)
    in_ram, on_disk = FeatureCache(budget_bytes=10**9), FeatureCache(budget_bytes=200, directory=tmp_path)
    for cache in (in_ram, on_disk):
        cache.append(features[:2], torch.tensor([0, 1]))
        cache.append(features[2:], torch.tensor([1, 0, 1]))
    assert not in_ram.on_disk and on_disk.on_disk
    assert "memory-mapped" in on_disk.describe()
    for cache in (in_ram, on_disk):
        cached, labels = cache.tensors()
        assert torch.equal(cached, features.half()) and labels.tolist() == [0, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="one size"):
        in_ram.append(torch.randn(1, 3, 5, 5), torch.tensor([0]))
    on_disk.clear()
    assert not list(tmp_path.iterdir())  # spill file deleted


def test_feature_cache_never_holds_more_than_its_budget_in_ram_and_logs_the_spill_file(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    from anomalib_adapted_moe.models.adapted_moe.feature_cache import FeatureCache

    chunk = torch.randn(2, 4, 8, 8)  # 2 x 512 bytes in float16
    cache = FeatureCache(budget_bytes=2500, directory=tmp_path)
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        for step in range(6):
            cache.append(chunk + step, torch.tensor([0, 1]))
            assert cache.ram_bytes <= cache.budget_bytes
            assert cache.on_disk == (step >= 2)  # the third chunk would pass 2500 bytes
    assert cache.ram_bytes == 0
    features, _ = cache.tensors()
    assert torch.equal(features[-2:], (chunk + 5).half())
    assert not list(tmp_path.iterdir())  # the spill file has no name to leave behind
    assert os.fstat(cache._spill.fileno()).st_size == 6 * chunk.numel() * 2  # every feature went to the file
    said = f"passed its RAM budget of {2500 / 2**30:.2f} GiB: spilling to memory-mapped file in {tmp_path} (unlinked"
    assert said in caplog.text
    assert caplog.text.count("spilling") == 1


def test_routing_rule_is_a_switch_of_its_own() -> None:
    """Table 3 changes loss and routing together; ``routing_rule`` separates them (default: the loss's rule)."""
    torch.manual_seed(0)
    embedding = F.normalize(torch.randn(4, 8), dim=1)
    for loss, rule in (("center", "cosine"), ("softmax", "classifier")):
        assert RoutingNetwork(16, 8, 3, routing_loss=loss).routing_rule == rule
    cosine = RoutingNetwork(16, 8, 3, routing_loss="softmax", routing_rule="cosine")
    cosine.centers.copy_(F.normalize(torch.randn(3, 8), dim=1))
    expected = (F.normalize(embedding, dim=1) @ cosine.centers.T / cosine.temperature).softmax(dim=1)
    assert torch.allclose(cosine.probabilities(embedding), expected)
    classifier = RoutingNetwork(16, 8, 3, routing_loss="center", routing_rule="classifier")
    assert torch.allclose(classifier.probabilities(embedding), classifier.classifier(embedding).softmax(dim=1))
    with pytest.raises(ValueError, match="routing_rule must be one of"):
        RoutingNetwork(16, 8, 3, routing_rule="nearest")


def test_tta_gate_leaves_images_within_the_training_range_and_fully_adapts_far_shifted_ones() -> None:
    torch.manual_seed(0)
    tta = TestTimeAdaptation(num_experts=1, dim=4)
    training = torch.randn(6, 4, 5, 5) * 0.5 + 1.0
    means, variances = TestTimeAdaptation.image_statistics(training)
    tta.fit(means, variances, torch.zeros(6, dtype=torch.long))
    shifts = TestTimeAdaptation.shift(means, tta.expert_mean[0], tta.expert_std[0])
    assert torch.isclose(tta.expert_shift[0], shifts.max())
    index = torch.zeros(1, 1, dtype=torch.long)
    seen = training[:1]  # a training image: inside the range, so left as it is (centred and un-centred, rounded)
    assert torch.allclose(tta(seen, index, gated=True)[:, 0], seen, atol=1e-6)
    far = training[:1] + 10.0  # far beyond twice the range: adapted exactly as without the gate
    assert torch.allclose(tta(far, index, gated=True), tta(far, index), atol=1e-5)  # x + 1 * (a - x), rounded
    assert TestTimeAdaptation.gate(torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0]), torch.tensor(1.0)).tolist() == [
        0.0,
        0.0,
        0.5,
        1.0,
        1.0,
    ]


def test_an_unfitted_tta_gate_is_open() -> None:
    """Before fitting (or from a checkpoint older than the gate) gated TTA adapts like eq. 5."""
    tta = TestTimeAdaptation(num_experts=2, dim=3)
    features, index = torch.randn(2, 3, 4, 4), torch.tensor([[0], [1]])
    assert torch.allclose(tta(features, index, gated=True), tta(features, index))


def test_tta_blend_averages_each_experts_scores_of_the_adapted_and_the_unadapted_image() -> None:
    from conftest import tiny_model

    model = tiny_model(tta=True, tta_blend=True).eval()
    model.adaptation.expert_mean.normal_()  # statistics far from the features': adaptation changes the scores
    adapted = model.adapt(torch.randn(2, model.patch_features.out_dim, 4, 4))
    index = torch.tensor([[0, 2], [1, 0]])
    with torch.no_grad():
        blended = model.expert_scores(adapted, index)
        model.tta_blend = False
        with_tta = model.expert_scores(adapted, index)
        model.tta = False
        as_is = model.expert_scores(adapted, index)
        model.tta_blend = True  # without TTA there is nothing to blend
        assert torch.equal(model.expert_scores(adapted, index), as_is)
    assert not torch.allclose(with_tta, as_is, atol=1e-3)
    assert torch.allclose(blended, (with_tta + as_is) / 2, atol=1e-6)


def test_moe_off_with_several_experts_is_refused() -> None:
    from conftest import tiny_adapted_moe

    assert tiny_adapted_moe(moe=False).requested_experts == 1
    assert tiny_adapted_moe(moe=False, num_experts=1).requested_experts == 1
    with pytest.raises(ValueError, match=r"moe=False trains a single expert, but num_experts=3"):
        tiny_adapted_moe(moe=False, num_experts=3)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_patch_features_average_each_layer_over_the_aggregation_neighbourhood(size: int) -> None:
    from conftest import tiny_model

    extractor = tiny_model(aggregation_size=size).patch_features.eval()
    images = torch.rand(2, 3, 64, 64)
    maps = extractor.feature_extractor(extractor.renormalize(images))
    grid = maps[extractor.layers[0]].shape[-2:]
    expected = []
    for layer in extractor.layers:  # by hand: a size x size mean of the patches inside the map, then to the grid
        padded = F.pad(maps[layer], [size // 2] * 4)
        inside = F.pad(torch.ones_like(maps[layer][:, :1]), [size // 2] * 4)
        mean = padded.unfold(2, size, 1).unfold(3, size, 1).sum((-2, -1))
        mean = mean / inside.unfold(2, size, 1).unfold(3, size, 1).sum((-2, -1))
        expected.append(
            F.interpolate(mean, size=grid, mode="bilinear", align_corners=False) if mean.shape[-2:] != grid else mean
        )
    expected = torch.einsum("bchw,cd->bdhw", torch.cat(expected, dim=1), extractor.pooling)
    assert torch.allclose(extractor(images), expected, atol=1e-5)


@pytest.mark.parametrize("size", [0, 2, -1])
def test_an_aggregation_neighbourhood_without_a_centre_patch_is_refused_with_the_fix(size: int) -> None:
    from conftest import tiny_model

    with pytest.raises(ValueError, match=rf"aggregation_size must be an odd number.*got {size}.*Fix: use 3"):
        tiny_model(aggregation_size=size)


def test_each_discovered_expert_is_logged_with_one_of_its_training_files(caplog: pytest.LogCaptureFixture) -> None:
    """A Folder's experts were logged as counts only: nothing told which variant cluster_3 stood for."""
    from anomalib_adapted_moe.models.adapted_moe.subclass_discovery import report_cluster_sizes

    paths = [f"/line/{name}.png" for name in ("red_000", "blue_000", "red_001", "blue_001", "blue_002")]
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        report_cluster_sizes(torch.tensor([0, 1, 0, 1, 1]).numpy(), paths)
        report_cluster_sizes(torch.tensor([0, 1, 0, 1, 1]).numpy())
    messages = [record.getMessage() for record in caplog.records if "per discovered expert" in record.getMessage()]
    assert messages == [
        "Training images per discovered expert: cluster_0: 2 (e.g. red_000.png), cluster_1: 3 (e.g. blue_000.png).",
        "Training images per discovered expert: cluster_0: 2, cluster_1: 3.",
    ]
