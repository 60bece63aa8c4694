"""The near-twin test of ``unseen_min_near_twin``: distances, the fitted limit, and the scores it lets through."""

import pytest
import torch
from conftest import tiny_model

from anomalib_adapted_moe.models.adapted_moe.near_twin import NearTwin
from anomalib_adapted_moe.models.adapted_moe.training import fit_near_twin_limit


def _brute_force(features: torch.Tensor, radius: int, twins: int) -> torch.Tensor:
    """The distance of every patch to its ``twins``-th nearest patch outside its window, one pair at a time."""
    batch, _, height, width = features.shape
    out = torch.full((batch, height, width), float("inf"))
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                others = [
                    torch.dist(features[b, :, y, x], features[b, :, v, u])
                    for v in range(height)
                    for u in range(width)
                    if abs(v - y) > radius or abs(u - x) > radius
                ]
                if len(others) >= twins:
                    out[b, y, x] = sorted(others)[twins - 1]
    return out


def test_distances_are_each_patchs_kth_nearest_patch_outside_its_window() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 5, 6, 7)
    twin = NearTwin(radius=2, twins=3)
    assert torch.allclose(twin.distances(features), _brute_force(features, 2, 3), atol=1e-5)
    # a grid no wider than the window leaves no patch outside it: no twin at any distance
    assert torch.isinf(NearTwin(radius=6, twins=1).distances(features)).all()


def test_a_repeated_structure_has_a_twin_and_a_lone_defect_does_not() -> None:
    """A periodic texture (its stripes repeat beyond any window) has twins everywhere; a patch unlike any other
    of its image has none, whatever the limit fitted on defect-free images of the same texture."""
    stripes = torch.zeros(1, 4, 16, 16)
    stripes[:, 0, :, ::2] = 1.0  # every other column: each patch has dozens of exact twins outside its window
    twin = NearTwin(radius=2, twins=8)
    twin.fit([twin.distances(stripes + 0.01 * torch.randn(4, 4, 16, 16))])
    defective = stripes.clone()
    defective[:, 1:, 7, 7] = 3.0  # one patch like nothing else in the image
    found = twin.has_twin(defective)
    assert not bool(found[0, 7, 7])
    assert bool(found.flatten()[torch.arange(256) != 7 * 16 + 7].all())


def test_the_limit_is_the_quantile_of_the_training_patches_distances() -> None:
    twin = NearTwin(quantile=0.97)
    values = torch.arange(1, 1001, dtype=torch.float32)
    twin.fit([values[:600].reshape(1, 20, 30), torch.cat([values[600:], torch.tensor([float("inf")] * 5)])])
    assert float(twin.limit) == 970.0  # the infinite distances (patches without room for twins) do not count
    twin.fit([torch.full((2, 3, 3), float("inf"))])
    assert float(twin.limit) == float("-inf")  # nothing to fit on: no patch has a twin
    for bad in ({"radius": -1}, {"twins": 0}, {"quantile": 1.0}):
        with pytest.raises(ValueError, match="radius >= 0, twins >= 1 and 0 < quantile < 1"):
            NearTwin(**bad)


def test_unseen_min_near_twin_lowers_only_the_patches_with_a_twin() -> None:
    """With the switch a gate-open image's patch takes the lowest expert score only if it has a near twin: with
    every patch a twin (limit +inf) that is ``unseen_min_over_experts`` alone, with none (-inf) the routed score;
    with a limit in between, exactly the patches within it move. Without a fitted limit the switch is refused."""
    model = tiny_model(unseen_min_over_experts=3, unseen_min_near_twin=True).eval()
    images = torch.rand(4, 3, 64, 64)
    with pytest.raises(ValueError, match=r"near-twin limit was never fitted.*Fix: train again"):
        model(images)
    model.adaptation.expert_shift.fill_(1e-6)  # every image beyond every expert's range: gate open
    with torch.no_grad():
        features = model.patch_features(images)
        fit_near_twin_limit(model, features)
        assert torch.isfinite(model.near_twin.limit)
        adapted = model.adapt(features)
        routed, _, _, lowest = model.score_patches_and_lowest(adapted)
        has_twin = model.near_twin.has_twin(adapted)
        assert 0 < int(has_twin.sum()) < has_twin.numel()
        twin = model(images)
        model.near_twin.limit.fill_(float("inf"))
        every = model(images)
        model.near_twin.limit.fill_(float("-inf"))
        none = model(images)
        model.unseen_min_near_twin = False
        plain_min = model(images)
        model.unseen_min_over_experts = 0
        off = model(images)
    assert torch.equal(every.pred_score, plain_min.pred_score)
    assert torch.allclose(none.pred_score, off.pred_score, atol=1e-6)
    expected = torch.where(has_twin, lowest, routed)
    assert torch.allclose(twin.pred_score, model.image_score(expected), atol=1e-6)
    assert torch.allclose(twin.anomaly_map, model.blur(expected, size=(64, 64)), atol=1e-6)
    assert not torch.allclose(twin.pred_score, plain_min.pred_score)
    with pytest.raises(ValueError, match=r"unseen_min_near_twin narrows .* Fix: set unseen_min_over_experts"):
        tiny_model(unseen_min_near_twin=True)
