"""One threshold across experts: per-expert score calibration and the squashing post-processor."""

import numpy as np
import pytest
import torch
from anomalib.post_processing import PostProcessor
from sklearn.metrics import f1_score, roc_auc_score

from anomalib_adapted_moe.evaluation import per_subclass_table, predict_raw
from anomalib_adapted_moe.models.adapted_moe.calibration import ExpertCalibration
from anomalib_adapted_moe.models.adapted_moe.post_processor import AdaptedMoEPostProcessor


def test_calibration_standardises_each_expert_by_its_routing_weighted_statistics() -> None:
    calibration = ExpertCalibration(num_experts=3)
    torch.manual_seed(0)
    expert0 = 2.0 + 0.5 * torch.randn(4, 1, 500)  # four images routed to expert 0 alone
    expert1 = -1.0 + 3.0 * torch.randn(2, 1, 500)
    calibration.update(expert0, torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1))
    calibration.update(expert1, torch.ones(2, 1, dtype=torch.long), torch.ones(2, 1))
    # a mixed image: its expert-1 scores count with weight 1e-3 only (the same scores as expert 0's first image)
    calibration.update(
        torch.stack([expert0[0, 0], expert0[0, 0]])[None], torch.tensor([[0, 1]]), torch.tensor([[0.999, 0.001]])
    )
    assert calibration.compute() == [2]  # nothing was routed to expert 2: it takes everyone's statistics
    assert calibration.location[0] == pytest.approx(2.0, abs=0.05) and calibration.scale[0] == pytest.approx(
        0.5, abs=0.03
    )
    assert calibration.location[1] == pytest.approx(float(expert1.mean()), abs=0.01)
    assert calibration.scale[1] == pytest.approx(float(expert1.std()), rel=0.01)
    pooled = torch.cat([expert0.flatten(), expert1.flatten(), expert0[0, 0]])
    assert calibration.location[2] == pytest.approx(float(pooled.mean()), abs=0.1)
    scores = torch.tensor([[[2.5, 1.5]], [[-1.0, 5.0]]])  # (B=2, K=1, P=2)
    z = calibration(scores, torch.tensor([[0], [1]]))
    location, scale = calibration.location.tolist(), calibration.scale.tolist()
    assert z[0, 0].tolist() == pytest.approx([(2.5 - location[0]) / scale[0], (1.5 - location[0]) / scale[0]], rel=1e-5)
    assert z[1, 0, 1] == pytest.approx((5.0 - location[1]) / scale[1], rel=1e-5)


def test_calibration_without_a_normal_image_says_so() -> None:
    with pytest.raises(ValueError, match="No normal image to calibrate"):
        ExpertCalibration(num_experts=2).compute()


def test_fitting_the_calibration_sets_the_normal_images_median_spread() -> None:
    """``fit_expert_calibration`` also sets ``normal_image_spread``, the unit of ``spread_scaled_score``: the
    median spread of the same normal images' calibrated, routed and mixed patch scores, as the forward forms
    them."""
    from conftest import tiny_model

    from anomalib_adapted_moe.models.adapted_moe.training import fit_expert_calibration

    model = tiny_model().eval()
    torch.manual_seed(1)
    batches = [torch.randn(4, model.patch_features.out_dim, 8, 8) for _ in range(3)]
    assert float(model.normal_image_spread) == 1.0  # the calibrated unit until fitted
    fit_expert_calibration(model, batches)
    with torch.no_grad():
        spreads = torch.cat([model.image_spread(model.score_patches(model.adapt(b))[0]) for b in batches])
    assert float(model.normal_image_spread) == pytest.approx(float(spreads.median()), rel=1e-5)
    assert float(model.normal_image_spread) != 1.0


def test_expert_image_offsets_are_each_experts_routing_weighted_mean_image_score_less_the_experts_mean() -> None:
    """``fit_expert_image_offsets`` (``expert_offset_score``): per expert, the mean image score of the images
    routed to it, each counted with its routing weight, less the mean over the experts; an expert no image went
    to gets 0 and is named. ``image_offsets`` mixes them by the same weights, each faded by TTA's gate."""
    from conftest import tiny_model

    from anomalib_adapted_moe.models.adapted_moe.training import fit_expert_calibration, fit_expert_image_offsets

    model = tiny_model(image_top_k=3, center_image_score=True).eval()
    torch.manual_seed(2)
    features = torch.randn(12, model.patch_features.out_dim, 8, 8)
    with torch.no_grad():  # an untrained router's centres are 0: give each expert one of the images
        model.router.centers.copy_(model.router.embed(model.adapt(features[:3])))
    fit_expert_calibration(model, [features[:6], features[6:]])
    assert fit_expert_image_offsets(model, features, chunk=5) == []  # chunks of 5, 5 and 2 images
    with torch.no_grad():
        patch_scores, index, weights = model.score_patches(model.adapt(features))
        scores = model.image_score(patch_scores)
    means = torch.stack(
        [(weights * scores[:, None])[index == e].sum() / weights[index == e].sum() for e in range(model.num_experts)]
    )
    offsets = model.calibration.image_offset
    assert offsets.tolist() == pytest.approx((means - means.mean()).tolist(), abs=1e-5)
    assert float(offsets.abs().max()) > 1e-3 and float(offsets.sum()) == pytest.approx(0.0, abs=1e-5)
    closed, open_ = torch.zeros_like(weights), torch.ones_like(weights)  # TTA's gate: seen images, unseen ones
    assert model.calibration.image_offsets(index, weights, closed).tolist() == pytest.approx(
        (weights * offsets[index]).sum(dim=1).tolist(), abs=1e-6
    )
    assert model.calibration.image_offsets(index, weights, open_).abs().max() == 0.0
    # an expert the router never picks: no images, offset 0, the others centred among themselves
    with torch.no_grad():
        model.router.centers[2] = -model.router.embed(model.adapt(features)).mean(dim=0)
    model.top_k = 1
    assert fit_expert_image_offsets(model, features) == [2]
    assert float(model.calibration.image_offset[2]) == 0.0
    assert float(model.calibration.image_offset[:2].sum()) == pytest.approx(0.0, abs=1e-5)


def test_the_level_correction_is_fitted_on_normal_images_scored_by_their_own_and_by_the_other_experts() -> None:
    """``fit_expert_calibration`` fits the level correction in the same pass: ``normal_image_level`` is the median
    level of the images as routed, and ``level_slope`` the least-squares slope of their uncorrected image scores,
    and of the same images routed without their top-1 expert, on the level's excess over it; refitting gives the
    same (the slope is fitted on uncorrected scores); one expert has nothing to leave out: no correction."""
    from conftest import tiny_model

    from anomalib_adapted_moe.models.adapted_moe.training import fit_expert_calibration

    model = tiny_model(image_top_k=3, center_image_score=True, level_corrected_score=True).eval()
    torch.manual_seed(2)
    batches = [torch.randn(4, model.patch_features.out_dim, 8, 8) for _ in range(3)]
    fit_expert_calibration(model, batches)
    fitted = float(model.level_slope), float(model.normal_image_level)
    model.level_corrected_score = False  # the uncorrected scores the slope is fitted on
    levels, scores, own = [], [], []
    with torch.no_grad():
        for features in batches:
            adapted = model.adapt(features)
            probabilities = model.router.probabilities(model.router.embed(adapted))
            others = [[e for e in range(3) if e != top] for top in probabilities.argmax(dim=1).tolist()]
            index = torch.tensor(others)
            weights = probabilities.gather(1, index)
            for routing, is_own in ((None, True), ((index, weights / weights.sum(1, keepdim=True)), False)):
                patch_scores = model.score_patches(adapted, routing)[0]
                levels.append(model.image_level(patch_scores))
                scores.append(model.image_score(patch_scores))
                own += [is_own] * len(adapted)
    levels, scores, own = torch.cat(levels).double(), torch.cat(scores).double(), torch.tensor(own)
    reference = levels[own].median()
    excess = (levels - reference).clamp_min(0)
    slope = max(float(np.polyfit(excess.numpy(), scores.numpy(), 1)[0]), 0.0)
    assert fitted[1] == pytest.approx(float(reference), abs=1e-5)
    assert fitted[0] == pytest.approx(slope, rel=1e-4, abs=1e-6)
    assert fitted[0] > 0 and bool((excess > 0).any())  # a slope fitted, not a fallback of 0
    model.level_corrected_score = True
    fit_expert_calibration(model, batches)
    assert (float(model.level_slope), float(model.normal_image_level)) == pytest.approx(fitted, rel=1e-5, abs=1e-6)
    single = tiny_model(num_experts=1, top_k=1).eval()
    fit_expert_calibration(single, batches)
    assert float(single.level_slope) == 0.0


def fitted_post_processor(post_processor: PostProcessor) -> PostProcessor:
    post_processor.image_min.fill_(0.0)
    post_processor.image_max.fill_(2.0)
    post_processor._image_threshold.fill_(1.0)
    post_processor.pixel_min.fill_(0.0)
    post_processor.pixel_max.fill_(2.0)
    post_processor._pixel_threshold.fill_(1.0)
    return post_processor


def test_the_squash_keeps_the_ranking_that_anomalibs_clamp_ties() -> None:
    raw = torch.tensor([-50.0, -1.0, 0.0, 0.99, 1.0, 1.01, 2.0, 3.0, 30.0, 3000.0])
    ours = fitted_post_processor(AdaptedMoEPostProcessor(min_range=0.0))._normalize(
        raw, torch.tensor(0.0), torch.tensor(2.0), torch.tensor(1.0)
    )
    clamped = fitted_post_processor(PostProcessor())._normalize(
        raw, torch.tensor(0.0), torch.tensor(2.0), torch.tensor(1.0)
    )
    assert bool((ours.diff() > 0).all()) and bool((ours > 0).all() and (ours < 1).all())
    assert int((clamped == 1).sum()) == 4 and int((clamped == 0).sum()) == 3  # anomalib: seven scores tied
    assert ours[4] == 0.5 and bool(((ours > 0.5) == (clamped > 0.5)).all())  # same labels at the threshold
    assert torch.allclose(ours[3:6], clamped[3:6], atol=1e-4)  # and nearly the same values near it
    # anomalib's own F1-threshold labels come out the same through forward()
    from anomalib.data import InferenceBatch

    out = fitted_post_processor(AdaptedMoEPostProcessor())(
        InferenceBatch(pred_score=raw, anomaly_map=raw[:, None, None])
    )
    assert out.pred_label.tolist() == (raw > 1.0).tolist()


def test_a_narrow_validation_range_is_widened_to_min_range() -> None:
    post_processor = AdaptedMoEPostProcessor(min_range=1.0)
    narrow = post_processor._normalize(torch.tensor([1.2]), torch.tensor(1.0), torch.tensor(1.1), torch.tensor(1.05))
    assert narrow.item() == pytest.approx(0.5 + 0.15 / 1.3)  # u = 0.15 / max(0.1, 1.0)
    assert post_processor.checkpoint_config()["min_range"] == 1.0


def test_image_threshold_from_the_validation_normal_images_by_default() -> None:
    from anomalib.data import ImageBatch

    def validate(post_processor: AdaptedMoEPostProcessor) -> AdaptedMoEPostProcessor:
        normal, weak_anomalies = [1.0, 1.2, 0.8, 1.1, 0.9], [1.3, 1.4]
        batch = ImageBatch(
            image=torch.zeros(7, 3, 4, 4),
            gt_label=torch.tensor([0] * 5 + [1] * 2),
            pred_score=torch.tensor(normal + weak_anomalies),
            anomaly_map=torch.rand(7, 1, 4, 4),
            gt_mask=torch.zeros(7, 4, 4, dtype=torch.bool),
        )
        post_processor.on_validation_batch_end(None, None, batch)
        post_processor.on_validation_epoch_end(None, None)
        return post_processor

    expected = float(torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9]).mean() + 3 * torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9]).std())
    ours = validate(AdaptedMoEPostProcessor())
    assert float(ours.image_threshold) == pytest.approx(expected)  # three sigmas above the normal images
    assert float(ours.normal_image_threshold) == pytest.approx(expected)
    assert float(ours.f1_image_threshold) == pytest.approx(1.3)  # anomalib's: just below the weak anomalies
    anomalibs = validate(AdaptedMoEPostProcessor(image_threshold_rule="f1"))
    assert float(anomalibs.image_threshold) == pytest.approx(1.3)
    assert float(anomalibs.normal_image_threshold) == pytest.approx(expected)  # kept for the report
    assert ours.checkpoint_config()["image_threshold_rule"] == "normal"
    with pytest.raises(ValueError, match="image_threshold_rule must be 'normal' or 'f1'"):
        AdaptedMoEPostProcessor(image_threshold_rule="youden")


def test_normal_images_without_files_each_count_once_over_several_batches() -> None:
    """The normal images are keyed by file, so that a DDP padding repeat counts once; one without a file gets a key
    of its own (keyed by position, the second batch's overwrote the first's)."""
    from anomalib.data import ImageBatch

    post_processor = AdaptedMoEPostProcessor()
    normal = [1.0, 1.2, 0.8, 1.1]
    for labels, scores in (([1, 1, 0, 0], [1.5, 1.6, *normal[:2]]), ([0, 0, 1, 1], [*normal[2:], 1.5, 1.6])):
        batch = ImageBatch(
            image=torch.zeros(4, 3, 4, 4),
            gt_label=torch.tensor(labels),
            pred_score=torch.tensor(scores),
            anomaly_map=torch.rand(4, 1, 4, 4),
            gt_mask=torch.zeros(4, 4, 4, dtype=torch.bool),
        )
        post_processor.on_validation_batch_end(None, None, batch)
    post_processor.on_validation_epoch_end(None, None)
    expected = float(torch.tensor(normal).mean() + 3 * torch.tensor(normal).std())
    assert float(post_processor.normal_image_threshold) == pytest.approx(expected)


def test_pixel_threshold_from_the_validation_normal_images_map_peaks_by_default() -> None:
    """anomalib's F1-adaptive pixel threshold, fitted on weak synthetic anomalies, lay among normal texture: the demo
    model's pred_mask flagged 3 % of every seen good image and several times each defect's area."""
    from anomalib.data import ImageBatch

    peaks = torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9])
    maps = torch.zeros(7, 1, 4, 4)
    maps[:5, 0, 1, 2] = peaks  # each normal image's highest map value, the rest of its map at 0
    maps[5:, 0, :2, :2] = 0.6  # two weak synthetic anomalies: their masks score 0.6, below the normal peaks
    masks = torch.zeros(7, 4, 4, dtype=torch.bool)
    masks[5:, :2, :2] = True

    def validate(post_processor: AdaptedMoEPostProcessor) -> AdaptedMoEPostProcessor:
        labels = torch.tensor([0] * 5 + [1] * 2)
        batch = ImageBatch(
            image=torch.zeros(7, 3, 4, 4), gt_label=labels, pred_score=torch.rand(7), anomaly_map=maps, gt_mask=masks
        )
        post_processor.on_validation_batch_end(None, None, batch)
        post_processor.on_validation_epoch_end(None, None)
        return post_processor

    expected = float(peaks.mean() + 3 * peaks.std())
    ours = validate(AdaptedMoEPostProcessor())
    assert float(ours.pixel_threshold) == pytest.approx(expected)  # three sigmas above the normal maps' peaks
    assert float(ours.normal_pixel_threshold) == pytest.approx(expected)
    assert float(ours.f1_pixel_threshold) < 0.8  # anomalib's: below every normal peak
    anomalibs = validate(AdaptedMoEPostProcessor(pixel_threshold_rule="f1"))
    assert float(anomalibs.pixel_threshold) == pytest.approx(float(ours.f1_pixel_threshold))
    assert float(anomalibs.normal_pixel_threshold) == pytest.approx(expected)  # kept for the report
    assert ours.checkpoint_config()["pixel_threshold_rule"] == "normal"
    with pytest.raises(ValueError, match="pixel_threshold_rule must be 'normal' or 'f1'"):
        AdaptedMoEPostProcessor(pixel_threshold_rule="youden")


@pytest.mark.slow
@pytest.mark.parametrize(("centred", "offset"), [(False, False), (True, False), (True, True)])
def test_expert_thresholds_take_the_same_decisions_on_each_experts_raw_scores(
    fitted_tiny, centred: bool, offset: bool
) -> None:
    """An image routed to one expert is above the category threshold on the calibrated scale exactly when its
    raw (uncalibrated) score is above that expert's threshold from ``expert_thresholds()``, centred or not, with
    the experts' image offsets or without. The threshold is set to the test images' median score, so images fall
    on both sides of it."""
    _, model, datamodule, _ = fitted_tiny
    inner, calibration, post = model.model, model.model.calibration, model.post_processor
    saved = (inner.top_k, inner.center_image_score, calibration.location.clone(), calibration.scale.clone())
    saved_offset_score = inner.expert_offset_score
    saved_offsets, saved_shift = calibration.image_offset.clone(), inner.adaptation.expert_shift.clone()
    saved_threshold = post._image_threshold.clone()
    images = model.pre_processor(torch.cat([batch.image for batch in datamodule.test_dataloader()]))
    training = inner.training
    try:
        inner.eval()  # a forward in training mode would move the experts' BatchNorm statistics
        inner.top_k, inner.center_image_score, inner.expert_offset_score = 1, centred, offset
        calibration.image_offset.copy_(torch.linspace(-0.2, 0.2, inner.num_experts))
        inner.adaptation.expert_shift.fill_(1e6)  # every image within its expert's range: the offsets apply
        with torch.no_grad():
            expert = inner.route(inner.adapt(inner.patch_features(images)))[0][:, 0]
            calibrated = inner(images).pred_score
            threshold = float(calibrated.median())
            post._image_threshold.fill_(threshold)
            thresholds = torch.tensor(list(model.expert_thresholds().values()))
            calibration.location.zero_()
            calibration.scale.fill_(1.0)
            calibration.image_offset.zero_()
            raw = inner(images).pred_score
    finally:
        inner.train(training)
        inner.top_k, inner.center_image_score, inner.expert_offset_score = saved[0], saved[1], saved_offset_score
        calibration.image_offset.copy_(saved_offsets)
        inner.adaptation.expert_shift.copy_(saved_shift)
        calibration.location.copy_(saved[2])
        calibration.scale.copy_(saved[3])
        post._image_threshold.copy_(saved_threshold)
    above = calibrated > threshold
    assert bool(above.any()) and not bool(above.all())
    assert len(set(expert.tolist())) > 1  # more than one expert's threshold is put to the test
    assert torch.equal(above, raw > thresholds[expert])


@pytest.mark.slow
def test_fitted_model_calibrates_on_validation_normals_and_its_post_processed_scores_rank_as_raw(fitted_tiny) -> None:
    engine, model, datamodule, _ = fitted_tiny
    calibration = model.model.calibration
    assert isinstance(model.post_processor, AdaptedMoEPostProcessor)
    assert not torch.equal(calibration.location, torch.zeros_like(calibration.location))
    assert bool((calibration.scale > 0).all()) and not torch.equal(
        calibration.scale, torch.ones_like(calibration.scale)
    )
    thresholds = model.expert_thresholds()
    assert list(thresholds) == model.expert_names
    assert not model.model.center_image_score  # the tiny model scores uncentred: the threshold keeps the location
    expected = calibration.location + float(model.post_processor.image_threshold) * calibration.scale
    assert list(thresholds.values()) == pytest.approx(expected.tolist())

    raw = predict_raw(engine, model, datamodule.test_dataloader())
    processed = engine.predict(model=model, dataloaders=datamodule.test_dataloader())
    raw_scores = torch.cat([b.pred_score for b in raw]).numpy()
    scores = torch.cat([b.pred_score for b in processed]).numpy()
    labels = torch.cat([b.gt_label for b in raw]).numpy()
    assert len(np.unique(scores)) == len(np.unique(raw_scores))  # no ties made by normalisation
    assert roc_auc_score(labels, scores) == pytest.approx(roc_auc_score(labels, raw_scores), abs=1e-12)
    labels_at_threshold = torch.cat([b.pred_label for b in processed]).numpy()
    assert (labels_at_threshold == (raw_scores > float(model.post_processor.image_threshold))).all()
    # the evaluation's F1 is anomalib's decision rule on the raw scores: each subclass's F1 at the one threshold is
    # sklearn's F1 of anomalib's own labels
    rows = per_subclass_table(raw, seen=model.expert_names, threshold=float(model.post_processor.image_threshold))
    names = np.array([name for batch in raw for name in batch.subclass_name])
    subclass_rows = [row for row in rows if not row["subclass"].startswith(("mean ", "pooled "))]
    assert sorted(row["subclass"] for row in subclass_rows) == sorted(set(names))
    for row in subclass_rows:
        own = names == row["subclass"]
        assert labels[own].any()  # every test subclass has defective images: its F1 is defined
        assert row["f1"] == pytest.approx(f1_score(labels[own], labels_at_threshold[own]), abs=1e-12)
        assert row["f1"] <= row["best_f1"]


@pytest.mark.slow
def test_a_validation_split_without_normal_images_calibrates_on_the_training_images(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from anomalib.engine import Engine
    from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
    from torch.utils.data import DataLoader

    datamodule = tiny_synthetic_datamodule(tmp_path / "data")
    original = datamodule.val_dataloader

    def anomalous_only() -> DataLoader:
        data = original().dataset
        data.samples = data.samples[data.samples.label_index == 1].reset_index(drop=True)
        return DataLoader(data, batch_size=4, collate_fn=data.collate_fn)

    monkeypatch.setattr(datamodule, "val_dataloader", anomalous_only)
    model = tiny_adapted_moe(epochs=1)
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        engine.fit(model=model, datamodule=datamodule)
    assert "calibration fitted on the training images (the validation split holds no normal image)" in caplog.text
    assert not torch.equal(model.model.calibration.location, torch.zeros_like(model.model.calibration.location))
