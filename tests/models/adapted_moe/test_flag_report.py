"""The threshold's decisions by subclass or routed expert, logged after a test and a predict (flag_report.py)."""

import copy
import logging
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from anomalib.engine import Engine

from anomalib_adapted_moe.models.adapted_moe.flag_report import FlagReport

LOGGER = "anomalib_adapted_moe.models.adapted_moe.flag_report"


def logged(caplog: pytest.LogCaptureFixture, start: str) -> str:
    messages = [record.getMessage() for record in caplog.records if record.getMessage().startswith(start)]
    assert len(messages) == 1, messages
    return messages[0]


def test_the_test_report_counts_each_subclass_as_the_predictions_label_it(
    fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """The counts are those of the post-processed labels (anomalib's pred_label), checked against engine.predict's
    batches of the same test images; the unseen subclass is marked."""
    engine, model, datamodule, _ = fitted_tiny
    with caplog.at_level(logging.INFO, logger=LOGGER):
        engine.test(model=model, datamodule=datamodule)
        after_test = model.flag_report.groups  # what the README offers from Python
        predictions = engine.predict(model=model, datamodule=datamodule)
    expected: Counter = Counter()
    unseen = set()
    for batch in predictions:
        for name, subclass_id, flagged, defective in zip(
            batch.subclass_name,
            batch.subclass_id.tolist(),
            batch.pred_label.tolist(),
            batch.gt_label.tolist(),
            strict=True,
        ):
            expected[name, "good"] += not defective
            expected[name, "good flagged"] += bool(flagged) and not defective
            expected[name, "defective"] += bool(defective)
            expected[name, "missed"] += bool(defective) and not flagged
            if subclass_id < 0:
                unseen.add(name)
    report = logged(caplog, "The image threshold's decisions on the test images, by subclass:")
    rows = dict(line.strip().split(": ", 1) for line in report.splitlines()[1:])
    assert len(unseen) == 1 and f"{next(iter(unseen))} (unseen)" in rows
    for name in {name for name, _ in expected}:
        row = rows[f"{name} (unseen)" if name in unseen else name]
        (good_flagged, good), (missed, defective) = [
            tuple(map(int, pair)) for pair in re.findall(r"(\d+) of (\d+)", row)
        ]
        assert (good_flagged, good) == (expected[name, "good flagged"], expected[name, "good"])
        assert (missed, defective) == (expected[name, "missed"], expected[name, "defective"])
        counts = after_test[f"{name} (unseen)" if name in unseen else name]
        assert (counts.good_flagged, counts.good, counts.missed, counts.defective) == (
            good_flagged,
            good,
            missed,
            defective,
        )

    flagged = [
        (score, path)
        for batch in predictions
        for score, label, path in zip(
            batch.pred_score.tolist(), batch.pred_label.tolist(), batch.image_path, strict=True
        )
        if label
    ]
    summary = logged(caplog, f"{len(flagged)} of {sum(len(batch.image_path) for batch in predictions)} images flagged")
    assert flagged, "no image flagged: the summary's list of the highest-scoring files went unchecked"
    score, path = max(flagged)
    folder = summary.split("(pred_score, threshold 0.5), in ", 1)[1].split(": ", 1)[0]
    assert f"{folder}: {Path(path).relative_to(folder)} ({score:.3f})" in summary


def fake_batch(flagged: list[bool], defective: list[bool] | None) -> SimpleNamespace:
    """A post-processed batch without subclasses (a Folder's, or anomalib predict's)."""
    return SimpleNamespace(
        pred_label=torch.tensor(flagged),
        pred_score=torch.linspace(0.4, 0.9, len(flagged)),
        gt_label=None if defective is None else torch.tensor(defective),
        image_path=[f"/line/{i:03d}.png" for i in range(len(flagged))],
    )


def test_without_subclasses_images_are_grouped_by_the_expert_they_were_routed_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mostly flagged group of good images is warned about by name: the unseen variant pooled metrics hide."""
    report = FlagReport(["cluster_0", "cluster_1"])
    report.add(
        fake_batch([False, False, True, True, True, False], [False, False, False, False, True, True]),
        torch.tensor([0, 0, 1, 1, 1, 1]),
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report.log_test()
    table = logged(caplog, "The image threshold's decisions on the test images, by routed expert:")
    assert "  expert cluster_0: 0 of 2 (0%) good flagged, 0 of 0 defective missed" in table
    assert "  expert cluster_1: 2 of 2 (100%) good flagged, 1 of 2 (50%) defective missed" in table
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("expert cluster_1: 2 of 2 (100%) of its good test images score above")


def test_a_predict_without_labels_names_its_highest_scoring_flagged_files(caplog: pytest.LogCaptureFixture) -> None:
    report = FlagReport(["fabric_a", "fabric_b"])
    report.add(fake_batch([False, True, True, False, False, False, True], None), torch.tensor([0, 0, 1, 1, 1, 1, 1]))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report.log_predict()
    summary = logged(caplog, "3 of 7 images flagged")
    assert "by routed expert: expert fabric_a 1 of 2, expert fabric_b 2 of 5" in summary
    assert summary.endswith(
        "; the 3 highest of the 3 (pred_score, threshold 0.5), in /line: "
        "006.png (0.900), 002.png (0.567), 001.png (0.483)"
    )


def test_a_model_without_post_processor_decides_nothing_and_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """``post_processor=False`` leaves ``pred_label`` unset: no counts, no log, rather than a crash after the test."""
    batch = fake_batch([True, False], [False, True])
    batch.pred_label = None
    report = FlagReport(["all"])
    report.add(batch, torch.tensor([0, 0]))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report.log_test()
        report.log_predict()
    assert not report.groups and not caplog.records


def test_when_every_group_is_mostly_flagged_the_threshold_is_named_once_not_each_variant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A threshold that does not fit the line (another level) flags every group: one warning saying so, not one per
    group each blaming a variant; percentages round half up (1 of 8 is 13%)."""
    report = FlagReport(["fabric_a", "fabric_b"])
    report.add(fake_batch([True] * 6 + [False, True], [False] * 8), torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report.log_test()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("More than half of the good test images of every routed")
    assert "(expert fabric_a 3 of 3 (100%), expert fabric_b 4 of 5 (80%))" in warnings[0]
    report = FlagReport(["all"])
    report.add(fake_batch([True] + [False] * 7, [False] * 8), torch.zeros(8, dtype=torch.long))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report.log_test()
    assert "expert all: 1 of 8 (13%) good flagged" in caplog.text


def test_an_image_counts_once_however_often_it_was_tested_and_every_rank_adds_its_own() -> None:
    """A DistributedSampler pads a rank's share with repeats and two dataloaders may hold the same images: the
    report counted each time (two copies of one loader read 16 of 16 for 8 images)."""
    report = FlagReport(["all"])
    batch = fake_batch([True, False, False], [True, False, False])
    report.add(batch, torch.zeros(3, dtype=torch.long))
    report.add(batch, torch.zeros(3, dtype=torch.long))
    other_rank = FlagReport(["all"])
    other = fake_batch([False] * 5, [False] * 5)
    other.image_path = [f"/line/{i:03d}.png" for i in range(2, 7)]  # 002 is this rank's too (the sampler's padding)
    other_rank.add(other, torch.zeros(5, dtype=torch.long))
    report.merge(other_rank.records)
    counts = report.groups["expert all"]
    assert (counts.images, counts.flagged, counts.good, counts.defective, counts.missed) == (7, 1, 6, 1, 0)


def test_images_without_a_file_count_once_each_on_every_rank() -> None:
    """Batches without image paths (tensors given to predict) were keyed by position alone: merged under DDP, the
    second rank's images replaced the first's (2 ranks of 3 images counted 3)."""
    ranks = [FlagReport(["all"], rank=rank) for rank in (0, 1)]
    for report in ranks:
        batch = fake_batch([True, False, False], None)
        batch.image_path = None
        report.add(batch, torch.zeros(3, dtype=torch.long))
    ranks[0].merge(ranks[1].records)
    counts = ranks[0].groups["expert all"]
    assert (counts.images, counts.flagged) == (6, 2)


def test_testing_on_another_categorys_subclasses_is_named(
    fitted_tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint tested on data whose training subclasses are not its experts' (another category, a split.json
    that moved a subclass): the report's seen / unseen labels follow the data, and nothing said so."""
    from conftest import tiny_synthetic_datamodule

    engine, model, datamodule, _ = fitted_tiny
    warning = "the data's training subclasses are"
    with caplog.at_level(logging.WARNING):
        engine.test(model=model, datamodule=datamodule, verbose=False)
    assert warning not in caplog.text  # its own data: silent
    other = tiny_synthetic_datamodule(tmp_path / "data", category="wafer", num_test_good=1, num_test_defect=1)
    elsewhere = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path / "t")
    with caplog.at_level(logging.WARNING):  # its maps drawn here: the shared fit's folder is counted by another test
        elsewhere.test(model=model, datamodule=other, verbose=False)
    said = [record.getMessage() for record in caplog.records if warning in record.getMessage()]
    assert len(said) == 1 and said[0].startswith("test: ")
    assert ", ".join(other.train_subclasses) in said[0] and ", ".join(model.expert_names) in said[0]
    assert "Fix: give the category and split the checkpoint was trained on" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # validate refits the thresholds: said before, on a copy of the model
        Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path / "v").validate(
            model=copy.deepcopy(model), datamodule=other, verbose=False
        )
    said = [record.getMessage() for record in caplog.records if warning in record.getMessage()]
    assert len(said) == 1 and said[0].startswith("validate: ") and "its thresholds are refitted on this data" in said[0]
