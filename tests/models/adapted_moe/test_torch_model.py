"""AdaptedMoEModel end to end on a tiny random backbone: routing, top-k mixing, TTA, training from a cache."""

import pytest
import torch
from conftest import tiny_model

from anomalib_adapted_moe.models.adapted_moe.training import TrainingSchedule, fit_expert_statistics, train_from_cache


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(6, 3, 64, 64)


def test_patch_features_have_the_embedding_size_on_the_finest_grid(images: torch.Tensor) -> None:
    features = tiny_model().patch_features(images)
    assert features.shape == (6, 32, 16, 16)  # layer1 of resnet18 has stride 4


def test_top_k_weights_sum_to_one_and_favour_the_most_probable_expert(images: torch.Tensor) -> None:
    model = tiny_model(top_k=2).eval()
    model.router.centers.copy_(torch.randn(3, 16))
    adapted = model.adapt(model.patch_features(images))
    probabilities = model.router.probabilities(model.router.embed(adapted))
    index, weights = model.route(adapted)
    assert index.shape == weights.shape == (6, 2)
    assert torch.allclose(weights.sum(dim=1), torch.ones(6))
    assert torch.equal(index[:, 0], probabilities.argmax(dim=1))
    assert torch.all(weights[:, 0] >= weights[:, 1])
    expected = probabilities.gather(1, index)
    assert torch.allclose(weights, expected / expected.sum(dim=1, keepdim=True))


def test_top_1_equals_hard_routing_to_the_most_probable_expert(images: torch.Tensor) -> None:
    model = tiny_model(top_k=1).eval()
    model.router.centers.copy_(torch.randn(3, 16))
    with torch.no_grad():
        adapted = model.adapt(model.patch_features(images))
        mixed, index, weights = model.score_patches(adapted)
        hard = model.router.probabilities(model.router.embed(adapted)).argmax(dim=1)
        assert torch.equal(index[:, 0], hard) and torch.all(weights == 1)
        for b in range(len(images)):
            alone = -model.experts(
                model.expert_inputs(adapted[b : b + 1], hard[b : b + 1, None]), hard[b : b + 1, None]
            )
            assert torch.allclose(mixed[b].reshape(-1), alone.reshape(-1), atol=1e-5)


def test_top_k_mixes_each_experts_own_adaptation(images: torch.Tensor) -> None:
    model = tiny_model(top_k=3).eval()
    model.router.centers.copy_(torch.randn(3, 16))
    model.adaptation.expert_mean.copy_(torch.randn(3, 32) * 0.1)
    with torch.no_grad():
        adapted = model.adapt(model.patch_features(images[:1]))
        mixed, index, weights = model.score_patches(adapted)
        expected = torch.zeros_like(mixed.reshape(-1))
        for k in range(3):
            e = index[:, k : k + 1]
            expected += weights[0, k] * -model.experts(model.expert_inputs(adapted, e), e).reshape(-1)
    assert torch.allclose(mixed.reshape(-1), expected, atol=1e-5)


def test_top_k_is_clamped_to_the_number_of_experts(images: torch.Tensor) -> None:
    model = tiny_model(num_experts=2, top_k=4).eval()
    index, _ = model.route(model.adapt(model.patch_features(images)))
    assert index.shape == (6, 2)


def test_image_score_is_the_max_patch_or_the_mean_of_the_top_k_patches(images: torch.Tensor) -> None:
    model = tiny_model(top_k=1).eval()
    model.router.centers.copy_(torch.randn(3, 16))
    with torch.no_grad():
        patches, _, _ = model.score_patches(model.adapt(model.patch_features(images)))
        assert torch.equal(model(images).pred_score, patches.amax(dim=(1, 2)))
        model.image_top_k = 5
        top5 = patches.flatten(1).sort(dim=1, descending=True).values[:, :5].mean(dim=1)
        assert torch.allclose(model(images).pred_score, top5)
        model.image_top_k = 10_000  # more than the 16 x 16 patches: the mean of them all
        assert torch.allclose(model(images).pred_score, patches.mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="image_top_k must be at least 1"):
        tiny_model(image_top_k=0)


def test_centred_image_score_is_the_top_k_mean_less_the_mean_patch_and_ignores_a_level_shift() -> None:
    """The image score with ``center_image_score`` reads the patches relative to their own image, so an image
    whose every patch scores a constant higher (an unseen variant's level) scores the same, while a local
    defect on the same image still raises it."""
    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    patches = torch.rand(2, 16, 16)
    top3 = patches.flatten(1).sort(dim=1, descending=True).values[:, :3].mean(dim=1)
    assert torch.allclose(model.image_score(patches), top3 - patches.mean(dim=(1, 2)))
    assert torch.allclose(model.image_score(patches + 7.0), model.image_score(patches), atol=1e-5)
    defect = patches.clone()
    defect[:, 4:6, 4:6] += 5.0
    assert torch.all(model.image_score(defect) > model.image_score(patches) + 3.0)
    model.center_image_score = False
    assert torch.allclose(model.image_score(patches + 7.0), top3 + 7.0)


def test_spread_scaled_score_divides_by_the_images_bulk_spread_only_beyond_one() -> None:
    """With ``spread_scaled_score`` an image whose patch scores spread no more than an expert's normal patches
    (1 in calibrated units) scores as before; one that spreads twice as much scores half; a defect in the top
    tenth of the patches does not widen the spread it is divided by."""
    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    torch.manual_seed(0)
    regular = torch.randn(1, 16, 16) * 0.5  # spread 0.5: as regular as the training images
    busy = regular * 4.0  # spread 2
    defect = busy.clone()
    defect[0, 0, :] += 20.0  # 16 of 256 patches: outside the lowest 90 %
    plain = {
        name: model.image_score(patches) for name, patches in (("regular", regular), ("busy", busy), ("defect", defect))
    }
    model.spread_scaled_score = True
    assert torch.equal(model.image_score(regular), plain["regular"])
    bulk = {
        name: patches.flatten().sort().values[: int(0.9 * 256)].std()
        for name, patches in (("busy", busy), ("defect", defect))
    }
    assert 1.5 < bulk["busy"] < 2.5
    assert torch.allclose(model.image_score(busy), plain["busy"] / bulk["busy"])
    assert torch.allclose(model.image_score(defect), plain["defect"] / bulk["defect"])
    assert bulk["defect"] < 1.2 * bulk["busy"] < defect.std() / 2  # the defect barely widens the spread used
    assert model.image_score(defect) > 3 * model.image_score(busy)  # the defect still stands out


def test_spread_scaled_score_counts_spread_in_units_of_the_normal_images_and_over_patches_not_windows() -> None:
    """The spread is divided by ``normal_image_spread`` (fitted on the validation normal images): an image that
    spreads as much as those scores as without the switch, one twice as spread scores half; with a 3x3 window
    the spread is still the patches' own (a window's mean would shrink it and let a defect reach into it)."""
    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    torch.manual_seed(0)
    busy = torch.randn(1, 16, 16) * 2.0
    plain = model.image_score(busy)
    spread = model.image_spread(busy)
    model.spread_scaled_score = True
    model.normal_image_spread.fill_(float(spread))
    assert torch.allclose(model.image_score(busy), plain)
    model.normal_image_spread.fill_(float(spread) / 2)
    assert torch.allclose(model.image_score(busy), plain / 2)
    model.image_score_window = 3
    model.spread_scaled_score = False
    windowed = model.image_score(busy)
    model.spread_scaled_score = True
    assert torch.allclose(model.image_score(busy), windowed / 2)


def test_level_corrected_score_subtracts_the_slope_times_the_level_above_the_normal_images_only() -> None:
    """With ``level_corrected_score`` an image whose median patch score lies ``d`` above ``normal_image_level``
    scores ``level_slope * d`` less; one at or below it scores as before; a defect on a few patches moves the
    level (the median) by less than a tenth of its height."""
    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    torch.manual_seed(0)
    normal = torch.randn(1, 16, 16)
    raised = normal + 4.0  # a variant whose every patch sits higher
    plain = {"normal": model.image_score(normal), "raised": model.image_score(raised)}
    assert torch.allclose(model.image_level(normal), normal.flatten().median(), atol=1e-6)
    model.level_corrected_score = True
    model.level_slope.fill_(0.5)
    model.normal_image_level.fill_(float(model.image_level(normal)) + 1.0)
    assert torch.equal(model.image_score(normal), plain["normal"])  # below the reference: no correction
    assert torch.allclose(model.image_score(raised), plain["raised"] - 0.5 * 3.0, atol=1e-5)
    defect = normal.clone()
    defect[0, :3, :3] += 20.0
    assert abs(float(model.image_level(defect) - model.image_level(normal))) < 2.0
    assert model.image_score(defect) > model.image_score(normal) + 5.0


def test_expert_offset_score_moves_images_within_their_experts_range_by_the_offsets_and_leaves_the_map() -> None:
    """With ``expert_offset_score`` an image within its experts' training range (TTA's gate closed) scores their
    ``image_offset`` (mixed by the routing weights) less than without; a shifted variant (gate open) scores as
    without; the anomaly map is the same."""
    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    images = torch.rand(4, 3, 64, 64)
    model.calibration.image_offset.copy_(torch.tensor([0.5, -1.0, 2.0]))
    model.adaptation.expert_shift.fill_(1e6)  # every image well within every expert's training range
    with torch.no_grad():
        plain = model(images)
        _, index, weights = model.score_patches(model.adapt(model.patch_features(images)))
        model.expert_offset_score = True
        moved = model(images)
        model.adaptation.expert_shift.fill_(1e-6)  # every image far beyond: the gate is open
        shifted = model(images)
    expected = (weights * torch.tensor([0.5, -1.0, 2.0])[index]).sum(dim=1)
    assert torch.allclose(plain.pred_score - moved.pred_score, expected, atol=1e-5)
    assert float(expected.abs().min()) > 0.1  # every image moved
    assert torch.equal(plain.anomaly_map, moved.anomaly_map)
    assert torch.allclose(shifted.pred_score, plain.pred_score, atol=1e-6)


def test_unseen_min_over_experts_scores_gate_open_images_by_their_most_lenient_probable_expert() -> None:
    """With ``unseen_min_over_experts=n`` each patch of an image beyond its top expert's range (TTA's gate open)
    scores the lowest calibrated score of the image's n most probable experts (n = 1: its top expert's), in the
    image score and the map alike; an image within the range (gate closed) scores exactly as without."""
    model = tiny_model().eval()  # 3 experts, top_k 2; image score: the highest patch score
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        plain = model(images)
        adapted = model.adapt(model.patch_features(images))
        mixed, routed, _ = model.score_patches(adapted)
        model.adaptation.expert_shift.fill_(1e6)  # every image well within every expert's range: gate closed
        model.unseen_min_over_experts = 3
        closed = model(images)
        model.adaptation.expert_shift.fill_(1e-6)  # every image far beyond: gate open (1)
        lenient = {}
        for n in (1, 2, 3):
            model.unseen_min_over_experts = n
            lenient[n] = model(images)
        every = torch.arange(3).expand(4, 3)
        calibrated = {"routed": model.calibration(model.expert_scores(adapted, routed), routed)}
        calibrated["every"] = model.calibration(model.expert_scores(adapted, every), every)
    assert torch.equal(closed.pred_score, plain.pred_score)
    assert torch.equal(closed.anomaly_map, plain.anomaly_map)
    # the routed experts are the most probable, first the top-1: n = 1 takes its score alone
    for n, candidates in ((1, "routed"), (2, "routed"), (3, "every")):
        lowest = calibrated[candidates][:, :n].amin(dim=1).reshape_as(mixed)
        assert torch.allclose(lenient[n].pred_score, model.image_score(lowest), atol=1e-5)
        assert torch.allclose(lenient[n].anomaly_map, model.blur(lowest, size=(64, 64)), atol=1e-5)
    # the mix of the routed experts lies between their scores: the lowest of them, and of more experts, is lower
    assert bool((lenient[3].pred_score <= lenient[2].pred_score + 1e-6).all())
    assert bool((lenient[2].pred_score < plain.pred_score).all())
    with pytest.raises(ValueError, match="unseen_min_over_experts must be 0"):
        tiny_model(unseen_min_over_experts=-1)


def test_image_score_window_ranks_a_defect_as_large_as_the_window_above_a_lone_noisy_patch() -> None:
    """With ``image_score_window=3`` the image score reads 3x3 means of the patch scores: one stray high patch
    (noise on a busy variant) scores a ninth of a 3x3 defect as high; at the default 1 the two tie."""
    model = tiny_model().eval()  # image_top_k 1: the highest (averaged) patch score
    lone, defect = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    lone[0, 8, 8] = 9.0
    defect[0, 7:10, 7:10] = 9.0
    assert torch.equal(model.image_score(lone), model.image_score(defect))
    model.image_score_window = 3
    assert torch.allclose(model.image_score(lone), torch.tensor([1.0]))
    assert torch.allclose(model.image_score(defect), torch.tensor([9.0]))
    corner = torch.zeros(1, 16, 16)
    corner[0, :2, :2] = 9.0  # the window is cut at the border, not padded with zeros
    assert torch.allclose(model.image_score(corner), torch.tensor([9.0]))
    for window in (0, 2):
        with pytest.raises(ValueError, match="image_score_window must be an odd number"):
            tiny_model(image_score_window=window)
        with pytest.raises(ValueError, match="image_score_window must be an odd number"):
            model.image_score_window = window  # set after training, as the inference study and users do
    assert model.image_score_window == 3


def test_blur_sigma_and_temperature_can_be_changed_after_training_and_back(images: torch.Tensor) -> None:
    model = tiny_model(top_k=3).eval()
    model.router.centers.copy_(torch.randn(3, 16))
    with torch.no_grad():
        before = model(images)
        model.blur_sigma, model.temperature = 1.0, 10.0
        changed = model(images)
        adapted = model.adapt(model.patch_features(images))
        soft = model.router.probabilities(model.router.embed(adapted))
        model.blur_sigma, model.temperature = 4.0, 0.1
        after = model(images)
    assert model.min_image_size == 17 and model.router.temperature == 0.1
    assert not torch.allclose(changed.anomaly_map, before.anomaly_map)
    assert soft.max() < 0.5  # temperature 10 over cosines in [-1, 1]: near-uniform routing over 3 experts
    assert torch.equal(after.anomaly_map, before.anomaly_map) and torch.equal(after.pred_score, before.pred_score)
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.temperature = 0.0
    with pytest.raises(ValueError, match="blur_sigma must be positive"):
        model.blur_sigma = 0.0


def test_the_map_at_the_features_centre_moves_the_map_only_and_follows_the_backbone(images: torch.Tensor) -> None:
    """An inference-only switch: image scores stay, the map moves by the backbone's measured patch centre, and
    loading other backbone weights measures it again."""
    model = tiny_model().eval()
    with torch.no_grad():
        before = model(images)
        model.map_at_feature_centre = True
        moved = model(images)
    centre = model.blur.patch_centre
    assert centre == model.patch_features.feature_centre() and all(abs(c) < 32 for c in centre)
    assert torch.equal(moved.pred_score, before.pred_score)
    assert not torch.allclose(moved.anomaly_map, before.anomaly_map)
    model.blur_sigma = 2.0  # a new blur keeps the placement
    assert model.blur.patch_centre == centre
    model.blur_sigma = 4.0
    other = tiny_model()
    torch.manual_seed(1)
    for parameter in other.patch_features.parameters():
        parameter.data.normal_(0, 0.05)
    model.load_state_dict(other.state_dict())
    assert model.blur.patch_centre == other.patch_features.feature_centre() != centre
    with torch.inference_mode():  # Lightning may restore a checkpoint under inference mode
        model.measure_patch_centre_again()
    assert model.blur.patch_centre == other.patch_features.feature_centre()
    model.map_at_feature_centre = False
    assert model.blur.patch_centre is None


def test_eval_forward_gives_finite_scores_even_for_constant_images() -> None:
    model = tiny_model().eval()
    constant = torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64), torch.full((3, 64, 64), 0.5)])
    with torch.no_grad():
        output = model(constant)
    assert output.pred_score.shape == (3,)
    assert output.anomaly_map.shape == (3, 1, 64, 64)
    assert torch.isfinite(output.pred_score).all() and torch.isfinite(output.anomaly_map).all()


def test_training_from_cache_lowers_the_losses_and_fills_tta_statistics() -> None:
    model = tiny_model()
    torch.manual_seed(2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    tints = torch.eye(3)[labels][:, :, None, None]  # one colour per subclass
    images = 0.3 * torch.rand(6, 3, 64, 64) + 0.6 * tints
    features = model.patch_features(images).half()
    history = []
    schedule = TrainingSchedule(epochs=20, batch_size=3)
    train_from_cache(model, features, labels, schedule, lambda _, losses: history.append(losses))
    assert history[-1]["expert_loss"] < history[0]["expert_loss"]
    assert history[-1]["routing_loss"] < history[0]["routing_loss"]
    fit_expert_statistics(model, features, labels)
    adapted = model.adapt(features[:2].float())
    assert torch.allclose(model.adaptation.expert_mean[0], adapted.mean(dim=(0, 2, 3)), atol=1e-4)
    # the router learnt the subclasses: training images route to their own expert
    index, _ = model.route(model.adapt(features.float()))
    assert torch.equal(index[:, 0], labels)


def test_simplenet_baseline_switches_give_one_expert_without_tta(images: torch.Tensor) -> None:
    model = tiny_model(num_experts=1, tta=False, normalize=False).eval()
    assert model.num_experts == 1 and not model.tta and not model.normalize
    with torch.no_grad():
        adapted = model.adapt(model.patch_features(images))
        index, weights = model.route(adapted)
        assert torch.equal(index, torch.zeros(6, 1, dtype=torch.long)) and torch.all(weights == 1)
        # no TTA: the expert sees the adapted features unchanged
        inputs = model.expert_inputs(adapted, index)
        assert torch.equal(inputs[:, 0], adapted.flatten(2).transpose(1, 2))


def test_eval_forward_exports_with_torch_export(images: torch.Tensor) -> None:
    model = tiny_model().eval()
    exported = torch.export.export(model, (images[:2],))
    with torch.no_grad():
        assert torch.allclose(exported.module()(images[:2]).pred_score, model(images[:2]).pred_score, atol=1e-5)
