"""Per-subclass evaluation: grouping, seen/unseen means, raw scores."""

import math

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.post_processing import PostProcessor
from sklearn.metrics import f1_score

from anomalib_adapted_moe.data import SubclassImageBatch
from anomalib_adapted_moe.evaluation import (
    RawPredictionRecorder,
    SubclassScores,
    bootstrap_intervals,
    format_table,
    group_by_subclass,
    normalization_disabled,
    one_threshold_figures,
    paired_changes,
    per_subclass_table,
    predict_raw,
)


def batch(names: list[str], scores: list[float], labels: list[int]) -> SubclassImageBatch:
    n = len(names)
    maps = torch.zeros(n, 1, 4, 4)
    masks = torch.zeros(n, 4, 4, dtype=torch.bool)
    for i, label in enumerate(labels):
        if label:
            masks[i, 0, 0] = True
            maps[i, 0, 0, 0] = 1.0  # perfect localisation
    return SubclassImageBatch(
        image=torch.zeros(n, 3, 4, 4),
        gt_label=torch.tensor(labels),
        gt_mask=masks,
        pred_score=torch.tensor(scores),
        anomaly_map=maps,
        subclass_name=names,
        subclass_id=torch.zeros(n, dtype=torch.long),
    )


def test_rows_per_subclass_with_seen_and_unseen_means() -> None:
    batches = [
        batch(["a", "a", "b", "b"], [0.1, 0.9, 0.8, 0.2], [0, 1, 0, 1]),  # a perfect, b inverted
        batch(["u", "u", "u"], [0.2, 0.4, 0.3], [0, 1, 0]),  # unseen, perfect
    ]
    rows = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"])}
    assert rows["a"]["image_auroc"] == 1.0 and rows["b"]["image_auroc"] == 0.0
    assert rows["u"]["split"] == "unseen" and rows["u"]["images"] == 3
    assert rows["mean seen"]["image_auroc"] == pytest.approx(0.5)
    assert rows["mean unseen"]["image_auroc"] == 1.0
    assert rows["a"]["pixel_auroc"] == 1.0
    assert rows["a"]["pixel_aupro"] == pytest.approx(1.0)
    assert "| **mean unseen** | unseen | 3 | 100.00 | 100.00 | 100.00 |" in format_table(list(rows.values()))
    image_only = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"], pixels=False)}
    for name, row in rows.items():  # the same image figures, no pixel ones
        assert image_only[name]["image_auroc"] == row["image_auroc"]
        assert math.isnan(image_only[name]["pixel_auroc"]) and math.isnan(image_only[name]["pixel_aupro"])


def test_pooled_rows_rank_all_images_of_a_split_together_and_f1_uses_the_one_threshold() -> None:
    batches = [
        batch(["a", "a", "b", "b"], [0.1, 0.5, 1.0, 2.0], [0, 1, 0, 1]),  # each perfect alone, b on a higher scale
        batch(["u", "u"], [0.2, 0.4], [0, 1]),
    ]
    rows = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"], threshold=0.7)}
    assert rows["mean seen"]["image_auroc"] == 1.0
    assert rows["pooled seen"]["image_auroc"] == pytest.approx(0.75)  # b's normal image outranks a's defect
    assert rows["pooled seen"]["images"] == 4 and math.isnan(rows["pooled seen"]["pixel_aupro"])
    assert rows["pooled unseen"]["image_auroc"] == 1.0
    assert rows["a"]["f1"] == 0.0 and rows["a"]["best_f1"] == 1.0  # 0.5 is below the category threshold
    assert rows["b"]["f1"] == pytest.approx(2 / 3) and rows["b"]["best_f1"] == 1.0  # b's normal image flagged
    assert rows["mean seen"]["f1"] == pytest.approx(1 / 3) and rows["mean seen"]["best_f1"] == 1.0
    table = format_table(list(rows.values()))
    assert "| **pooled seen** | seen | 4 | 75.00 | 100.00 |  | " in table and "best F1 %" in table


def test_pixel_f1_and_good_pixels_flagged_at_the_pixel_threshold() -> None:
    """What pred_mask gives: each defect image's one defect pixel scores 1.0; a good image of b has four pixels at
    0.5 (noise above a low threshold)."""
    batches = [batch(["a", "a", "b", "b"], [0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1])]
    batches[0].anomaly_map[2, ..., 3, :] = 0.5
    low = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"], pixel_threshold=0.3)}
    high = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"], pixel_threshold=0.7)}
    assert low["a"]["pixel_f1"] == 1.0 and low["a"]["good_pixels_flagged"] == 0.0
    assert low["b"]["pixel_f1"] == pytest.approx(2 / 6) and low["b"]["good_pixels_flagged"] == pytest.approx(4 / 16)
    assert high["b"]["pixel_f1"] == 1.0 and high["b"]["good_pixels_flagged"] == 0.0
    assert low["mean seen"]["pixel_f1"] == pytest.approx(2 / 3)
    assert low["mean seen"]["good_pixels_flagged"] == pytest.approx(1 / 8)
    table = format_table(list(low.values()))
    assert "pixel F1 % at the threshold | good pixels flagged % |" in table
    assert "| b | seen | 2 | 100.00 | 100.00 | 100.00 | 33.33 | 25.00 |" in table
    no_defect = SubclassScores(
        image_labels=[torch.tensor([0])],
        pixel_scores=[torch.ones(4, 4)],
        pixel_labels=[torch.zeros(4, 4, dtype=torch.bool)],
    )
    assert math.isnan(no_defect.pixel_f1_at(0.5)) and no_defect.good_pixels_flagged(0.5) == 1.0
    unfitted = float("nan")  # no pixel threshold fitted (a validation split without masks): no figure, not 0
    assert math.isnan(no_defect.good_pixels_flagged(unfitted))
    rows = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a"], pixel_threshold=unfitted)}
    assert math.isnan(rows["a"]["pixel_f1"]) and math.isnan(rows["b"]["good_pixels_flagged"])


def test_best_f1_is_the_best_of_every_threshold_counted_as_f1_at_counts_it_ties_included() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        labels = torch.randint(0, 2, (30,), generator=generator)
        labels[0] = 1
        scores = (torch.randn(30, generator=generator) + 1.5 * labels).round(decimals=1)  # ties on purpose
        group = SubclassScores(image_scores=[scores], image_labels=[labels])
        best = group.best_f1()
        cuts = torch.cat([scores.unique(), scores.min()[None] - 1])
        at_every_cut = [group.f1_at(float(t)) for t in cuts]
        assert best == max(at_every_cut)  # exactly: one arithmetic, so no last-bit gap prints as -0.00
        sklearn = [f1_score(labels.numpy(), (scores > t).numpy(), zero_division=0) for t in cuts[:3]]
        assert at_every_cut[:3] == sklearn  # f1_at is sklearn's F1 to the last bit, without its input checks


def _drawn(shift: float) -> SubclassScores:
    """40 normal images scoring N(shift, 1) and 40 defective ones N(shift + 2.5, 1)."""
    scores = torch.cat([torch.randn(40) + shift, torch.randn(40) + shift + 2.5])
    return SubclassScores(image_scores=[scores], image_labels=[torch.tensor([0] * 40 + [1] * 40)])


def test_one_threshold_figures_are_the_reports_pooled_minus_mean_and_mean_f1_gap() -> None:
    batches = [
        batch(["a", "a", "a", "b", "b", "b"], [0.1, 0.5, 0.3, 1.0, 2.0, 0.2], [0, 1, 0, 0, 1, 1]),
        batch(["a", "b"], [0.6, 1.5], [1, 0]),
    ]
    rows = {row["subclass"]: row for row in per_subclass_table(batches, seen=["a", "b"], threshold=0.7)}
    pooled_minus_mean, f1_gap = one_threshold_figures(group_by_subclass(batches), threshold=0.7)
    assert pooled_minus_mean == pytest.approx(
        100 * (rows["pooled seen"]["image_auroc"] - rows["mean seen"]["image_auroc"])
    )
    assert f1_gap == pytest.approx(100 * (rows["mean seen"]["best_f1"] - rows["mean seen"]["f1"]))
    assert pooled_minus_mean < 0 and f1_gap > 0  # b's normal images outrank a's defects; a's are below 0.7


def test_bootstrap_intervals_span_the_redraws_of_the_test_images_and_are_reproducible() -> None:
    torch.manual_seed(0)
    alike = {"a": _drawn(0.0), "b": _drawn(0.0)}
    apart = {"a": _drawn(0.0), "b": _drawn(1.5)}  # b scores on a higher scale: pooled ranks worse than the mean
    for groups in (alike, apart):
        point = one_threshold_figures(groups, threshold=1.25)
        intervals = bootstrap_intervals(groups, threshold=1.25, resamples=200)
        for (low, high), value in zip(intervals.values(), point, strict=True):
            assert low < value < high  # a real spread around the test set's own figure
        assert intervals == bootstrap_intervals(groups, threshold=1.25, resamples=200)  # seeded
    low, high = bootstrap_intervals(apart, threshold=1.25, resamples=200)["pooled_minus_mean"]
    assert high < -0.5  # the shift is more than the draw of 80 images per subclass can explain
    low, high = bootstrap_intervals(alike, threshold=1.25, resamples=200)["pooled_minus_mean"]
    assert low < 0 < high


def test_bootstrap_redraws_keep_each_subclass_s_normal_and_defective_images() -> None:
    """Perfectly separated subclasses stay so in every redraw: no redraw loses a subclass's defects."""
    groups = {
        name: SubclassScores(
            image_scores=[torch.tensor([0.0, 0.1, 0.9, 1.0]) + offset], image_labels=[torch.tensor([0, 0, 1, 1])]
        )
        for name, offset in (("a", 0.0), ("b", 0.05))
    }
    assert bootstrap_intervals(groups, threshold=0.5, resamples=50) == {
        "pooled_minus_mean": [0.0, 0.0],
        "f1_gap": [0.0, 0.0],
    }


def test_paired_changes_tell_a_real_shift_from_the_draw_of_the_test_images() -> None:
    """Moving one subclass onto the others' scale: a large move's paired interval excludes 0, a small one's does
    not; a change that moves every image alike (all scores and the threshold) changes nothing in any redraw,
    where each scoring's own interval is wide: the draw's spread common to both cancels."""
    torch.manual_seed(0)
    for shift, decided in ((1.0, True), (0.3, False)):
        before = {"a": _drawn(0.0), "b": _drawn(shift), "c": _drawn(0.0)}  # b off the others' scale
        moved = SubclassScores(
            image_scores=[before["b"].image_scores[0] - shift], image_labels=before["b"].image_labels
        )
        after = before | {"b": moved}
        change = paired_changes((before, 1.25), (after, 1.25), resamples=300)["abs_pooled_minus_mean"]
        assert change["before"] == pytest.approx(abs(one_threshold_figures(before, 1.25)[0]))
        assert change["after"] == pytest.approx(abs(one_threshold_figures(after, 1.25)[0]))
        assert change["change"] == pytest.approx(change["after"] - change["before"])
        low, high = change["interval"]
        assert low <= change["change"] <= high
        assert high < 0 if decided else low < 0 < high  # closer to the target / within what the draw explains
    lifted = {
        name: SubclassScores(image_scores=[g.image_scores[0] + 2], image_labels=g.image_labels)
        for name, g in before.items()
    }
    same = paired_changes((before, 1.25), (lifted, 3.25), resamples=100)
    assert all(figure["change"] == 0 and figure["interval"] == [0, 0] for figure in same.values())
    low, high = bootstrap_intervals(before, 1.25, resamples=100)["f1_gap"]
    assert high - low > 1  # unpaired, each scoring's F1 gap moves by points with the draw


def test_paired_changes_refuse_scorings_of_different_images() -> None:
    groups = {"a": _drawn(0.0), "b": _drawn(0.0)}
    relabelled = SubclassScores(image_scores=groups["b"].image_scores, image_labels=[torch.tensor([1] * 40 + [0] * 40)])
    for other in ({"a": groups["a"]}, groups | {"b": relabelled}):
        with pytest.raises(ValueError, match="subclass 'b' does not hold the same images in both"):
            paired_changes((groups, 1.0), (other, 1.0), resamples=10)


def test_aupro_falls_when_the_map_misses_the_defect_region() -> None:
    """The map is lowest on the defect: the defect region is found only once every normal pixel is flagged."""
    missed = batch(["a", "a"], [0.1, 0.9], [0, 1])
    missed.anomaly_map[:] = 1.0
    missed.anomaly_map[1, 0, 0] = 0.0
    rows = per_subclass_table([missed], seen=["a"])
    assert rows[0]["pixel_aupro"] < 0.05 and rows[0]["pixel_auroc"] < 0.5


def test_datasets_without_subclass_names_can_be_grouped_under_one_name() -> None:
    plain = ImageBatch(
        image=torch.zeros(2, 3, 4, 4), gt_label=torch.tensor([0, 1]), pred_score=torch.tensor([0.1, 0.7])
    )
    rows = per_subclass_table([plain], seen=["bottle"], default_subclass="bottle")
    assert rows[0]["subclass"] == "bottle" and rows[0]["image_auroc"] == 1.0
    assert math.isnan(rows[0]["pixel_aupro"])  # no maps, no masks: no made-up figure


def test_raw_scores_far_outside_0_1_keep_their_ranking() -> None:
    """Raw scores such as Padim's (hundreds) must not be squashed (a sigmoid would tie them all at 1)."""
    rows = per_subclass_table([batch(["a"] * 4, [400.0, 900.0, 420.0, 800.0], [0, 1, 0, 1])], seen=["a"])
    assert rows[0]["image_auroc"] == 1.0


def test_a_subclass_without_anomalies_gets_nan_not_a_made_up_number() -> None:
    rows = per_subclass_table([batch(["a", "a"], [0.1, 0.2], [0, 0])], seen=["a"])
    assert math.isnan(rows[0]["image_auroc"])


def test_one_seen_name_as_a_string_is_refused_and_a_nan_threshold_gives_no_f1() -> None:
    """seen="a" was iterated into letters (every row unseen, the seen means gone); a threshold never fitted (NaN)
    read as an F1 of 0, as if nothing had been flagged."""
    batches = [batch(["a", "a", "b", "b"], [0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1])]
    with pytest.raises(TypeError, match=r"seen='a': a list of subclass names is needed.*Fix: seen=\['a'\]"):
        per_subclass_table(batches, seen="a")
    rows = per_subclass_table(batches, seen=["a"], threshold=float("nan"), pixels=False)
    subclasses = [row for row in rows if row["subclass"] in ("a", "b")]
    assert len(subclasses) == 2 and all(math.isnan(row["f1"]) and row["best_f1"] == 1.0 for row in subclasses)


def test_unlabelled_predictions_and_a_bare_batch_are_refused_with_the_fix() -> None:
    """A folder's predictions (no gt_label) ended in "'NoneType' object is not subscriptable"; one batch not in a
    list in "invalid index of a 0-dim tensor"."""
    unlabelled = ImageBatch(image=torch.zeros(1, 3, 4, 4), pred_score=torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"without pred_score or gt_label: .*labelled test images\. Fix: predict"):
        per_subclass_table([unlabelled], seen=["bottle"], default_subclass="bottle")
    with pytest.raises(TypeError, match=r"one batch given where a list of batches is needed\. Fix: pass \[batch\]"):
        per_subclass_table(batch(["a", "a"], [0.1, 0.9], [0, 1]), seen=["a"])


def test_batches_without_subclass_names_are_refused() -> None:
    plain = ImageBatch(image=torch.zeros(1, 3, 4, 4), gt_label=torch.tensor([0]), pred_score=torch.tensor([0.5]))
    with pytest.raises(ValueError, match="subclass_name"):
        per_subclass_table([plain], seen=[])


def test_normalization_disabled_keeps_raw_scores_and_restores_the_post_processor() -> None:
    class Holder:
        post_processor = PostProcessor()

    model = Holder()
    with normalization_disabled(model):
        assert not model.post_processor.enable_normalization and not model.post_processor.enable_thresholding
    assert model.post_processor.enable_normalization and model.post_processor.enable_thresholding


def test_auroc_equals_sklearns_with_ties_and_float16_scores() -> None:
    from sklearn.metrics import roc_auc_score

    from anomalib_adapted_moe.evaluation.per_subclass import _auroc

    generator = torch.Generator().manual_seed(0)
    labels = torch.rand(20_000, generator=generator) < 0.1
    scores = (torch.randn(20_000, generator=generator) + labels).half()  # float16: many tied values
    assert len(torch.unique(scores)) < 10_000
    assert _auroc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.double().numpy()), abs=1e-12)
    assert _auroc(torch.ones(4), torch.tensor([0, 1, 0, 1])) == 0.5  # all tied: chance


@pytest.mark.slow
def test_recorder_keeps_the_raw_outputs_of_the_test_pass_that_anomalib_normalises(fitted_tiny, tmp_path) -> None:
    from anomalib.engine import Engine

    _, model, datamodule, _ = fitted_tiny
    recorder = RawPredictionRecorder()
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, callbacks=[recorder])
    engine.test(model=model, datamodule=datamodule, verbose=False)
    raw = predict_raw(engine, model, datamodule.test_dataloader())
    recorded = torch.cat([b.pred_score for b in recorder.batches])
    assert torch.equal(recorded, torch.cat([b.pred_score for b in raw]))
    assert torch.equal(torch.cat([b.anomaly_map for b in recorder.batches]), torch.cat([b.anomaly_map for b in raw]))
    processed = torch.cat([b.pred_score for b in engine.predict(model=model, dataloaders=datamodule.test_dataloader())])
    assert not torch.allclose(recorded, processed)  # raw, not normalised
    assert torch.equal(torch.cat([b.pred_score for b in recorder.processed]), processed)  # as anomalib left them
    assert not any(hasattr(b, "image") for b in recorder.batches + recorder.processed)  # no test set's images held
    seen = model.expert_names
    assert format_table(per_subclass_table(recorder.batches, seen=seen)) == format_table(
        per_subclass_table(raw, seen=seen)
    )

    late = RawPredictionRecorder()  # after the post-processor it would see normalised scores: refused
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    original = model.configure_callbacks
    try:
        model.configure_callbacks = lambda: [*original(), late]
        with pytest.raises(RuntimeError, match="runs after the model's post-processor"):
            engine.test(model=model, datamodule=datamodule, verbose=False)
    finally:
        model.configure_callbacks = original


def test_export_parity_on_no_image_is_refused() -> None:
    """It ended in "max() arg is an empty sequence" (the demo's --openvino-images 0 met it after the training)."""
    from anomalib_adapted_moe.evaluation import openvino_parity

    with pytest.raises(ValueError, match=r"no image to compare the export on\. Fix: give one image file or more"):
        openvino_parity(model=None, export_path="never_read.xml", image_paths=[], images=[])
