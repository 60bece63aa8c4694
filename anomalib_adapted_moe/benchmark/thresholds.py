"""One threshold across variants: what anomalib's own metrics and single category threshold see, per category.

For each category: train AdaptedMoE (the CPU recipe of :mod:`.zoo`), then on its
test set
- anomalib's image AUROC (``engine.test`` over all test images, and anomalib's
  ``AUROC`` metric over the seen and the unseen subclasses) on the post-processed
  scores, beside the project's raw-score AUROC of the same images;
- per split, the mean of per-subclass image AUROCs beside the pooled AUROC (one
  ranking over the split's images: what one threshold sees), with the experts'
  calibration and without it (raw expert scores, the model before calibration);
- per subclass, image F1 at the category's one threshold (the model's post-processor:
  by default three standard deviations above the validation normal images' mean) and
  at anomalib's F1-adaptive threshold, beside F1 at the subclass's own best threshold
  (chosen with its test labels: a reference, never a setting);
- per split, pixel F1 of ``pred_mask`` at the model's pixel threshold (by default three standard deviations above
  the validation normal images' map peaks) and at anomalib's F1-adaptive one, and the share of the normal images'
  pixels each flags;
- beside the pooled - mean AUROC and the mean F1 gap, their 90 % bootstrap intervals over redraws of the test
  images (:mod:`anomalib_adapted_moe.evaluation.resampling`): whether the test set can decide a target;
- with ``--compare-to`` (the ``--output`` of an earlier run on the same data), how each of the two figures changed
  against that run, with a paired interval (the same redrawn images scored by both): whether a setting helps;
- with ``--variant-level-images N``, each split's two figures again with each subclass's level read
  from N of its test images (``--variant-level-defect-share``, default 10 %, of them defective), left out of them
  (:mod:`.variant_levels`): the line's level of a new product.

    python -m anomalib_adapted_moe.benchmark thresholds [--data CONFIG] [--categories ...] [--seed 0]
        [--compare-to EARLIER_OUTPUT] [--variant-level-images N [--variant-level-defect-share 0.1]]

Writes ``--output/thresholds.json`` and ``--markdown`` (default ``--output/thresholds.md``) with the
command, seed, commit and machine; prints the issue's targets with PASS/MISS. Each category's result is
stored under ``--output/categories/`` as soon as it is measured (a category trains for about 20 minutes on
two cores), so calling the command again resumes: a category stored with the same data, settings, seed,
model arguments and commit is kept, one stored at another commit is trained again, and one stored with other data,
settings, seed or model arguments stops the call (give each seed its own ``--output``).
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from anomalib_adapted_moe.recipes import CPU_RECIPE

from .jsonfiles import write_json

#: the issue's targets, in AUROC / F1 points
ANOMALIB_VS_RAW, POOLED_VS_MEAN, F1_GAP = 0.1, 0.5, 3.0
SPLITS = ("seen", "unseen")
#: the figures --compare-to pairs (evaluation.resampling.paired_changes' keys)
COMPARED = ("abs_pooled_minus_mean", "f1_gap")


def _anomalib_auroc(batches, names: set[str]) -> float:
    """anomalib's image AUROC metric on post-processed scores, over the images whose subclass is in ``names``."""
    import torch
    from anomalib.metrics import AUROC

    scores, labels = [], []
    for batch in batches:
        keep = [name in names for name in batch.subclass_name]
        scores.append(batch.pred_score[torch.tensor(keep)])
        labels.append(batch.gt_label[torch.tensor(keep)])
    metric = AUROC(fields=["pred_score", "gt_label"])
    metric.update(SimpleNamespace(pred_score=torch.cat(scores), gt_label=torch.cat(labels)))
    return 100 * float(metric.compute())


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["subclass"]: row for row in rows}


def measure_category(
    data: dict, category: str, settings, seed: int, work: Path, model_args: dict | None = None
) -> dict:
    """Train one category's model (the CPU recipe, ``model_args`` on top) and measure everything the report shows."""
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_adapted_moe.data.seen_subclasses import seen_subclasses
    from anomalib_adapted_moe.evaluation import (
        RawPredictionRecorder,
        SubclassScores,
        bootstrap_intervals,
        group_by_subclass,
        nanmean,
        per_subclass_table,
        predict_raw,
        subclass_table,
    )

    from .run import build_datamodule, effective_switches
    from .zoo import MODELS

    seed_everything(seed, workers=True)
    datamodule = build_datamodule(data, category, seed, batch_size_one=False)
    model, _ = MODELS["AdaptedMoE"](settings, **(model_args or {}))
    model.visualizer = None
    recorder = RawPredictionRecorder()  # raw and post-processed predictions of engine.test's own pass
    engine = Engine(
        default_root_dir=work / category,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=[recorder],
    )
    engine.fit(model=model, datamodule=datamodule)
    tested = engine.test(model=model, datamodule=datamodule, verbose=False)[0]
    seen = seen_subclasses(datamodule) or [category]
    loader = datamodule.test_dataloader()
    processed, raw = recorder.processed, recorder.batches
    threshold = float(model.post_processor.image_threshold)
    pixel_threshold, f1_pixel_threshold = (
        float(model.post_processor.pixel_threshold),
        float(model.post_processor.f1_pixel_threshold),
    )
    pixel_groups = group_by_subclass(raw)  # one copy of the maps, for the table and anomalib's pixel threshold
    calibrated = subclass_table(pixel_groups, seen, threshold=threshold, pixel_threshold=pixel_threshold)
    at_anomalibs = {  # pred_mask at anomalib's F1-adaptive pixel threshold: pixel F1, good pixels flagged
        name: (group.pixel_f1_at(f1_pixel_threshold), group.good_pixels_flagged(f1_pixel_threshold))
        for name, group in pixel_groups.items()
    }
    del pixel_groups  # what follows reads image figures only
    groups = group_by_subclass(raw, pixels=False)  # image figures: the table above has the pixel ones
    # the same model scoring with each expert's raw scores: calibration, and what is fitted on calibrated scores
    # (the spread unit, the level correction, the image offsets), as before fitting
    inner = model.model
    unfitted = [
        (inner.calibration.location, 0.0),
        (inner.calibration.scale, 1.0),
        (inner.normal_image_spread, 1.0),
        (inner.normal_image_level, 0.0),
        (inner.level_slope, 0.0),
        (inner.calibration.image_offset, 0.0),
    ]
    saved = [buffer.clone() for buffer, _ in unfitted]
    for buffer, value in unfitted:
        buffer.fill_(value)
    try:
        uncalibrated = per_subclass_table(predict_raw(engine, model, loader), seen=seen, pixels=False)
    finally:
        for (buffer, _), value in zip(unfitted, saved, strict=True):
            buffer.copy_(value)

    rows, before = _by_name(calibrated), _by_name(uncalibrated)
    result = {
        "category": category,
        "experts": list(model.expert_names),
        "image_threshold": threshold,
        "image_threshold_rule": model.post_processor.image_threshold_rule,
        "switches": dict(effective_switches(model)),
        "f1_image_threshold": float(model.post_processor.f1_image_threshold),
        "pixel_threshold": pixel_threshold,
        "pixel_threshold_rule": model.post_processor.pixel_threshold_rule,
        "f1_pixel_threshold": f1_pixel_threshold,
        "normal_image_quartile": float(model.post_processor.normal_image_quartile),
        "expert_thresholds": model.expert_thresholds(),
        "engine_test_image_auroc": 100 * float(tested["image_AUROC"]),
        "raw_image_auroc": 100 * SubclassScores.merged(groups.values()).image_auroc(),
        "subclasses": calibrated,
        "splits": {},
        # every test image's calibrated score, per subclass in the test loader's order: what --compare-to pairs
        "image_scores": {
            name: {"scores": torch.cat(group.image_scores).tolist(), "labels": torch.cat(group.image_labels).tolist()}
            for name, group in groups.items()
        },
    }
    for split in SPLITS:
        if f"mean {split}" not in rows:
            continue
        names = sorted(name for name in groups if rows[name]["split"] == split)
        members = [rows[name] for name in names]
        result["splits"][split] = {
            "anomalib_image_auroc": _anomalib_auroc(processed, set(names)),
            "raw_pooled_image_auroc": 100 * rows[f"pooled {split}"]["image_auroc"],
            "mean_image_auroc": 100 * rows[f"mean {split}"]["image_auroc"],
            "pooled_pixel_auroc": 100 * rows[f"pooled {split}"]["pixel_auroc"],
            "mean_pixel_auroc": 100 * rows[f"mean {split}"]["pixel_auroc"],
            "uncalibrated_mean_image_auroc": 100 * before[f"mean {split}"]["image_auroc"],
            "uncalibrated_pooled_image_auroc": 100 * before[f"pooled {split}"]["image_auroc"],
            "mean_f1": 100 * rows[f"mean {split}"]["f1"],
            "mean_best_f1": 100 * rows[f"mean {split}"]["best_f1"],
            "f1_gaps": {row["subclass"]: 100 * (row["best_f1"] - row["f1"]) for row in members},
            "mean_f1_at_anomalib_threshold": 100
            * sum(groups[name].f1_at(result["f1_image_threshold"]) for name in names)
            / len(names),
            "intervals": bootstrap_intervals({name: groups[name] for name in names}, threshold),
            "mean_pixel_f1": 100 * rows[f"mean {split}"]["pixel_f1"],
            "good_pixels_flagged": 100 * rows[f"mean {split}"]["good_pixels_flagged"],
            "mean_pixel_f1_at_anomalib_threshold": 100 * nanmean(at_anomalibs[name][0] for name in names),
            "good_pixels_flagged_at_anomalib_threshold": 100 * nanmean(at_anomalibs[name][1] for name in names),
        }
    return result


def category_path(output: Path, category: str) -> Path:
    """Where one category's measured result is stored."""
    return output / "categories" / f"{category}.json"


def stored_result(output: Path, category: str, spec: dict) -> dict | None:
    """The stored result of ``category`` if it was measured under ``spec``; ``None`` to measure it again."""
    path = category_path(output, category)
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:  # a half-written or hand-edited file: measure again
        print(f"{category}: cannot read {path} ({error}); measuring it again", flush=True)
        return None
    wanted = _what_results_depend_on(json.loads(json.dumps(spec)))
    # another commit: other differences stop the call first (stored_otherwise)
    if not isinstance(stored.get("spec"), dict) or _what_results_depend_on(stored["spec"]) != wanted:
        made = stored.get("spec", {}).get("commit") if isinstance(stored.get("spec"), dict) else None
        why = f"was measured at commit {made}" if made else "does not say how it was measured"
        print(f"{category}: {path} {why}; measuring it again", flush=True)
        return None
    return stored["result"]


def stored_otherwise(output: Path, categories: list[str], spec: dict) -> str | None:
    """Why a call must not measure ``categories`` into ``output``: one is stored there measured with another seed,
    data, settings or model arguments, and measuring it again would replace that (about 20 minutes of training per
    category; ``--seed 1`` into the seed-0 folder did, without a word). One stored at another commit is measured again,
    as a new commit asks. ``None`` if nothing would be replaced."""
    wanted = _what_results_depend_on(json.loads(json.dumps(spec)))
    lines, keys = [], []
    for category in categories:
        path = category_path(output, category)
        try:
            stored = _what_results_depend_on(json.loads(path.read_text())["spec"])
            differ = [key for key in wanted if key != "commit" and stored.get(key) != wanted[key]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # none, or unreadable: measured (again) as before
        if differ:
            keys.append(key := differ[0])
            lines.append(f"  - {path}: measured with {key}={stored.get(key)!r:.80}, not {wanted[key]!r:.80}")
    if not lines:
        return None
    suffix = f"seed{spec['seed']}" if keys[0] == "seed" else f"other_{keys[0]}"
    return (
        f"{output} holds {len(lines)} categor{'y' if len(lines) == 1 else 'ies'} measured otherwise, which this call "
        "would replace:\n"
        + "\n".join(lines)
        + f"\nFix: give another --output (e.g. {output}_{suffix}), or delete those files to measure them again "
        "with these settings."
    )


#: data arguments no figure depends on: a call that changes only these resumes the stored categories
NO_RESULT_DATA_ARGS = ("num_workers",)


def _what_results_depend_on(spec: dict) -> dict:
    """``spec`` without :data:`NO_RESULT_DATA_ARGS` (``--data-init-args '{"num_workers": 0}'`` stopped the call)."""
    data = spec.get("data")
    if isinstance(data, dict) and isinstance(data.get("init_args"), dict):
        init_args = {key: value for key, value in data["init_args"].items() if key not in NO_RESULT_DATA_ARGS}
        spec = {**spec, "data": {**data, "init_args": init_args}}
    return spec


def store_result(output: Path, category: str, spec: dict, result: dict) -> None:
    """Store one category's result, written whole (a temporary file renamed) so a crash leaves no half file."""
    path = category_path(output, category)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"spec": spec, "result": result})


def targets(results: list[dict]) -> list[dict]:
    """The issue's targets, one line per category and split."""
    lines = []
    for result in results:
        gap = abs(result["engine_test_image_auroc"] - result["raw_image_auroc"])
        lines.append(
            _target(
                f"{result['category']} all: engine.test AUROC vs raw AUROC, absolute difference",
                gap,
                ANOMALIB_VS_RAW,
                gap <= ANOMALIB_VS_RAW,
            )
        )
        for split, figures in result["splits"].items():
            where = f"{result['category']} {split}"
            anomalib_gap = abs(figures["anomalib_image_auroc"] - figures["raw_pooled_image_auroc"])
            pooled_gap = figures["raw_pooled_image_auroc"] - figures["mean_image_auroc"]
            f1_gap = sum(figures["f1_gaps"].values()) / max(1, len(figures["f1_gaps"]))
            lines.append(
                _target(
                    f"{where}: anomalib AUROC vs raw AUROC, absolute difference",
                    anomalib_gap,
                    ANOMALIB_VS_RAW,
                    anomalib_gap <= ANOMALIB_VS_RAW,
                )
            )
            lines += _one_threshold_targets(where, pooled_gap, f1_gap, figures["intervals"])
    return lines


def _one_threshold_targets(where: str, pooled_gap: float, f1_gap: float, intervals: dict) -> list[dict]:
    """The two figures one category threshold is judged by: pooled - mean image AUROC and the mean F1 gap."""
    return [
        _target(
            f"{where}: pooled - mean image AUROC (ABOVE: pooled ranks better than the mean)",
            pooled_gap,
            POOLED_VS_MEAN,
            abs(pooled_gap) <= POOLED_VS_MEAN,
            above=pooled_gap > POOLED_VS_MEAN,
            interval=intervals["pooled_minus_mean"],
        ),
        _target(
            f"{where}: mean F1 gap to each subclass's best",
            f1_gap,
            F1_GAP,
            f1_gap <= F1_GAP,
            interval=intervals["f1_gap"],
        ),
    ]


def variant_level_targets(rows: list[dict]) -> list[dict]:
    """The issue's two one-threshold targets on each split with each variant's level (:mod:`.variant_levels`)."""
    lines = []
    for row in rows:
        share = f"{row['defect_share']:.0%} defective"
        where = f"{row['category']} {row['split']}, each variant's level from {row['images']} of its images ({share})"
        lines += _one_threshold_targets(where, row["pooled_minus_mean"], row["f1_gap"], row["intervals"])
    return lines


def _target(
    name: str, value: float, limit: float, passed: bool, above: bool = False, interval: list[float] | None = None
) -> dict:
    result = "PASS" if passed else "ABOVE" if above else "MISS"
    line = {"target": name, "value": round(value, 2), "limit": limit, "result": result}
    return line | ({"interval": [round(end, 2) for end in interval]} if interval else {})


def earlier_report(output: Path, data: dict) -> dict:
    """The report of the thresholds run whose ``--output`` was ``output``, checked to be on ``data``.

    Raises:
        ValueError: ``output`` holds no report, or one measured on other data.
    """
    path = output / "thresholds.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        msg = f"--compare-to: cannot read {path} ({error}). Fix: give the --output folder of a finished thresholds run."
        raise ValueError(msg) from error
    if not isinstance(report, dict):
        msg = f"--compare-to: {path} is not a thresholds report ({report!r:.60}). Fix: give the --output folder of a "
        msg += "finished thresholds run."
        raise ValueError(msg)
    depends = _what_results_depend_on  # the data's num_workers changes no figure
    if depends({"data": report.get("data")}) != depends({"data": json.loads(json.dumps(data))}):
        msg = (
            f"--compare-to: {path} was measured on other data ({json.dumps(report.get('data'))}); a paired comparison "
            "needs the same test images. Fix: compare runs made with the same --data and --data-init-args."
        )
        raise ValueError(msg)
    return report


def _groups(result: dict, names: list[str]) -> dict:
    """The stored per-image scores of ``names`` as :class:`SubclassScores` (image scores and labels)."""
    import torch

    from anomalib_adapted_moe.evaluation import SubclassScores

    stored = result["image_scores"]
    return {
        name: SubclassScores(
            image_scores=[torch.tensor(stored[name]["scores"])], image_labels=[torch.tensor(stored[name]["labels"])]
        )
        for name in names
    }


def compare(results: list[dict], others: list[dict], other_name: str) -> list[dict]:
    """Per category and split measured in both, this run's |pooled - mean| and mean F1 gap against ``others``' (an
    earlier run on the same data, ``other_name`` in messages): the change and its paired interval
    (:func:`anomalib_adapted_moe.evaluation.resampling.paired_changes`), so two settings are told apart on one
    test set.

    Raises:
        ValueError: either run lacks the per-image scores (measured before they were stored), or a subclass does not
            hold the same test images in both.
    """
    from anomalib_adapted_moe.evaluation import paired_changes

    by_category = {other["category"]: other for other in others}
    rows = []
    for result in results:
        other = by_category.get(result["category"])
        if other is None:
            continue
        for name, run in (("this run", result), (other_name, other)):
            if "image_scores" not in run:
                msg = (
                    f"{result['category']} of {name} carries no per-image scores (measured before thresholds stored "
                    "them). Fix: run that thresholds command again at this commit, then compare."
                )
                raise ValueError(msg)
        for split, figures in result["splits"].items():
            if split not in other["splits"]:
                continue
            names = sorted(figures["f1_gaps"])
            try:
                change = paired_changes(
                    (_groups(other, names), other["image_threshold"]),
                    (_groups(result, names), result["image_threshold"]),
                )
            except (KeyError, ValueError) as error:
                msg = f"{result['category']} {split}: this run and {other_name} did not score the same test images."
                raise ValueError(msg) from error
            rows.append({"category": result["category"], "split": split} | change)
    return rows


def _change_cells(figure: dict) -> tuple[str, str]:
    """A compared figure as ``"before -> after"`` and ``"change [low, high]"``: the report's and the printout's."""
    low, high = figure["interval"]
    return f"{figure['before']:.2f} -> {figure['after']:.2f}", f"{figure['change']:+.2f} [{low:+.2f}, {high:+.2f}]"


def _interval(line: dict) -> str:
    return "[{:.2f}, {:.2f}]".format(*line["interval"]) if "interval" in line else ""


def render_markdown(report: dict) -> str:
    """The report: provenance, one table per category, the targets."""
    from anomalib_adapted_moe.evaluation.resampling import INTERVAL_LEVEL, RESAMPLES

    level = f"{100 * INTERVAL_LEVEL:.0f} %"
    lines = [
        "# One threshold across variants",
        "",
        f"Generated by `{report['command']}` (seed {report['seed']}, commit {report['commit']}) on "
        f"{report['machine']}. Data: `{report['data']['class_path']}` "
        f"{json.dumps(report['data'].get('init_args', {}))}.",
        "",
        "AUROC in percent. *anomalib*: anomalib's `AUROC` metric on the post-processed `pred_score` "
        "(`engine.test`'s `image_AUROC` for all images); *raw*: the model's own scores (normalisation off). "
        "*Pooled*: one ranking over all images of the split, what one threshold sees; *mean*: mean of the "
        "per-subclass AUROCs. *Uncalibrated*: the same model scoring with each expert's raw scores (identity "
        "calibration, and the spread unit, level correction and image offsets, fitted on calibrated scores, as "
        "unfitted). F1 at the category's one threshold (by default mean + 3 std of the validation normal images' "
        "scores; beside it, anomalib's F1-adaptive threshold on the validation split) against F1 at each "
        f"subclass's best threshold (chosen with test labels, for this report only). Pixel F1: of `pred_mask` at "
        "the model's pixel threshold (by default mean + 3 std of the validation normal images' map peaks) and at "
        "anomalib's F1-adaptive one, with the share of the normal test images' pixels each flags (mean over "
        f"subclasses). *[low, high]*: the {level} "
        f"bootstrap interval of the figure over {RESAMPLES} redraws of the test images (each subclass's normal and "
        "defective images drawn with replacement): a result whose interval reaches across the limit is one this "
        "test set cannot decide; a new training's spread comes on top.",
        "",
    ]
    for result in report["results"]:
        lines += [
            f"## {result['category']}",
            "",
            f"engine.test image AUROC {result['engine_test_image_auroc']:.2f} (raw, same images: "
            f"{result['raw_image_auroc']:.2f}); one image threshold {result['image_threshold']:.3f} (calibrated "
            f"units, rule {result['image_threshold_rule']!r}; anomalib's F1-adaptive one: "
            f"{result['f1_image_threshold']:.3f}); per expert, in its raw units: "
            + ", ".join(f"{name} {value:.3f}" for name, value in result["expert_thresholds"].items())
            + f"; pixel threshold {result['pixel_threshold']:.3f} (rule {result['pixel_threshold_rule']!r}; "
            f"anomalib's F1-adaptive one: {result['f1_pixel_threshold']:.3f})",
            "",
            "| split | anomalib image AUROC | raw pooled | raw mean | pooled - mean | uncalibrated pooled - mean "
            "| pixel AUROC pooled / mean | F1 at the threshold / at anomalib's F1 threshold / best (mean) "
            "| pixel F1 at the pixel threshold / at anomalib's (mean) | good pixels flagged % at each |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for split, f in result["splits"].items():
            low, high = f["intervals"]["pooled_minus_mean"]
            lines.append(
                f"| {split} | {f['anomalib_image_auroc']:.2f} | {f['raw_pooled_image_auroc']:.2f} | "
                f"{f['mean_image_auroc']:.2f} | {f['raw_pooled_image_auroc'] - f['mean_image_auroc']:+.2f} "
                f"[{low:+.2f}, {high:+.2f}] | "
                f"{f['uncalibrated_pooled_image_auroc'] - f['uncalibrated_mean_image_auroc']:+.2f} | "
                f"{f['pooled_pixel_auroc']:.2f} / {f['mean_pixel_auroc']:.2f} | "
                f"{f['mean_f1']:.1f} / {f['mean_f1_at_anomalib_threshold']:.1f} / {f['mean_best_f1']:.1f} | "
                f"{f['mean_pixel_f1']:.1f} / {f['mean_pixel_f1_at_anomalib_threshold']:.1f} | "
                f"{f['good_pixels_flagged']:.2f} / {f['good_pixels_flagged_at_anomalib_threshold']:.2f} |"
            )
        lines.append("")
        gaps = {name: gap for f in result["splits"].values() for name, gap in f["f1_gaps"].items()}
        lines += [
            "F1 gap per subclass (best - at the threshold): " + ", ".join(f"{n} {g:.1f}" for n, g in gaps.items()),
            "",
        ]
    lines += ["## Targets", "", f"| target | value | {level} interval | limit | result |", "|---|---:|---:|---:|---|"]
    lines += [
        f"| {t['target']} | {t['value']} | {_interval(t)} | {t['limit']} | {t['result']} |" for t in report["targets"]
    ]
    if "variant_levels" in report:
        lines += _variant_level_markdown(report["variant_levels"], level)
    if "comparison" in report:
        lines += _comparison_markdown(report["comparison"], level)
    return "\n".join(lines) + "\n"


def _variant_level_markdown(rows: list[dict], level: str) -> list[str]:
    """The section of the report with each variant's level."""
    images, share = rows[0]["images"], rows[0]["defect_share"]  # one row per category and split: never empty
    lines = [
        "",
        f"## Each variant's level from {images} of its images, {share:.0%} of them defective",
        "",
        "Per subclass, seen or unseen (a line fits the level of every product it switches to), "
        f"{images} of its test images drawn at random as a line's first images would come, "
        f"{share:.0%} of them defective (`--variant-level-defect-share`; the labels set the mix only, the level "
        "reads none), give its level, their scores' lower quartile less the validation normal images' "
        "(`AdaptedMoEPostProcessor.fit_variant_level`), and are left out; the subclass's other images meet the "
        f"threshold raised by it. *refused*: a draw the model refuses as a defect burst (more than half of it above "
        "the threshold at its level; `DefectBurstError`), which leaves that subclass at the trained threshold "
        f"(level 0). *[low, high]*: {level} interval over redraws of the remaining images.",
        "",
        "| category | split | level per subclass | pooled - mean | mean F1 gap |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows:
        (low, high), (gap_low, gap_high) = row["intervals"]["pooled_minus_mean"], row["intervals"]["f1_gap"]
        refused = row["refused"]
        levels = ", ".join(
            f"{name} refused ({refused[name]} above)" if name in refused else f"{name} {value:+.2f}"
            for name, value in row["levels"].items()
        )
        lines.append(
            f"| {row['category']} | {row['split']} | {levels} | "
            f"{row['pooled_minus_mean']:+.2f} [{low:+.2f}, {high:+.2f}] | "
            f"{row['f1_gap']:.2f} [{gap_low:.2f}, {gap_high:.2f}] |"
        )
    return lines


def _comparison_markdown(comparison: dict, level: str) -> list[str]:
    """The paired comparison's section of the report."""
    from anomalib_adapted_moe.evaluation.resampling import RESAMPLES

    lines = [
        "",
        f"## Against `{comparison['to']}`",
        "",
        f"Paired with `{comparison['command']}` (seed {comparison['seed']}, commit {comparison['commit']}): the "
        "same test images scored by both runs. *Change*: this run less that one (negative: closer to the target); "
        f"*[low, high]*: its {level} interval over {RESAMPLES} redraws that take the same images for both, so what "
        "the draw does to both cancels; an interval that excludes 0 is a change the test set's draw does not explain.",
        "",
        "| category | split | abs(pooled - mean): that run -> this | change | mean F1 gap: that run -> this | change |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in comparison["rows"]:
        cells = [cell for name in COMPARED for cell in _change_cells(row[name])]
        lines.append(f"| {row['category']} | {row['split']} | " + " | ".join(cells) + " |")
    if comparison["not_in_that_run"]:
        lines += ["", "Not measured in that run, so not compared: " + ", ".join(comparison["not_in_that_run"]) + "."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    """Parse, measure every category, write and print the report."""
    from anomalib_adapted_moe.deploy import cpu_description
    from anomalib_adapted_moe.models.adapted_moe.post_processor import MIN_VARIANT_IMAGES

    from .__main__ import (
        _data_config,
        _union,
        adapted_moe_arguments,
        data_config_file,
        json_object,
        output_problem,
        settings_problem,
    )
    from .provenance import commit
    from .run import category_problem, run_categories
    from .variant_levels import with_variant_levels
    from .zoo import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.benchmark thresholds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", type=data_config_file, default=None, help="anomalib-style data config (default: synthetic)"
    )
    parser.add_argument(
        "--data-init-args", type=json_object, default=None, help="JSON merged into the data config's init_args"
    )
    parser.add_argument(
        "--categories", nargs="+", default=None, help="default: cloth wafer metal; Folder: its one dataset"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=CPU_RECIPE["epochs"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--weights", default=CPU_RECIPE["backbone_weights"], help="'none': random init (tests only)")
    parser.add_argument(
        "--model-args",
        type=adapted_moe_arguments,
        default=None,
        help="JSON of AdaptedMoE arguments over the CPU recipe",
    )
    parser.add_argument(
        "--compare-to",
        type=Path,
        default=None,
        help="--output of an earlier thresholds run on the same data: each figure's change against it, paired",
    )
    parser.add_argument(
        "--variant-level-images",
        type=int,
        default=0,
        help="N: also each split's figures with each subclass's level read from N of its test images (0: off)",
    )
    parser.add_argument(
        "--variant-level-defect-share",
        type=float,
        default=0.1,
        help="the share of those N images drawn from the defective ones: a line's first images (default 0.1)",
    )
    parser.add_argument("--output", type=Path, default=Path("results/thresholds"))
    parser.add_argument(
        "--markdown", type=Path, default=None, help="the report (default: --output/thresholds.md; make: docs/)"
    )
    args = parser.parse_args(argv)
    args.markdown = args.markdown or args.output / "thresholds.md"  # a run on one's own data leaves docs/ alone
    if problem := settings_problem(args.epochs, args.image_size, args.weights):
        parser.error(problem)
    weights = None if args.weights.lower() == "none" else args.weights
    settings = Settings(image_size=args.image_size, weights=weights, epochs=args.epochs)
    data = _data_config(args.data, args.data_init_args)
    args.categories = _union([], run_categories(data, args.categories))
    problem = category_problem(data, args.categories) or output_problem(args.output, args.markdown.parent)
    if problem:
        parser.error(problem)
    model_args = args.model_args or {}
    code = commit()
    # what a stored category must have been measured under to be kept
    spec = {"data": data, "seed": args.seed, "settings": asdict(settings), "model_args": model_args, "commit": code}
    if problem := stored_otherwise(args.output, args.categories, spec):
        parser.error(problem)
    try:
        earlier = earlier_report(args.compare_to, data) if args.compare_to else None  # before hours of training
    except ValueError as error:
        parser.error(str(error))
    if args.variant_level_images and args.variant_level_images < MIN_VARIANT_IMAGES:  # before training, too
        parser.error(f"--variant-level-images must be at least {MIN_VARIANT_IMAGES}, got {args.variant_level_images}")
    if not 0 <= args.variant_level_defect_share < 1:
        parser.error(f"--variant-level-defect-share must be in [0, 1), got {args.variant_level_defect_share}")
    results = []
    for category in args.categories:
        result = stored_result(args.output, category, spec)
        if result is None:
            result = measure_category(data, category, settings, args.seed, args.output / "work", model_args)
            store_result(args.output, category, spec, result)
            gc.collect()  # the trainer and the model refer to each other: free a category's tensors before the next
        else:
            print(f"{category}: measured earlier, kept ({category_path(args.output, category)})", flush=True)
        results.append(result)
    report = {
        "command": "python -m anomalib_adapted_moe.benchmark thresholds " + shlex.join(argv),
        "seed": args.seed,
        "commit": code,
        "machine": cpu_description(),
        "data": data,
        "results": results,
        "targets": targets(results),
    }
    if args.variant_level_images:
        report["variant_levels"] = [
            {"category": result["category"]}
            | with_variant_levels(result, args.variant_level_images, args.seed, args.variant_level_defect_share, split)
            for result in results
            for split in result["splits"]
        ]
        report["targets"] += variant_level_targets(report["variant_levels"])
    if earlier is not None:
        report["comparison"] = {
            "to": str(args.compare_to),
            "command": earlier["command"],
            "commit": earlier["commit"],
            "seed": earlier["seed"],
            "rows": compare(results, earlier["results"], str(args.compare_to)),
            "not_in_that_run": sorted({r["category"] for r in results} - {r["category"] for r in earlier["results"]}),
        }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "thresholds.json").write_text(json.dumps(report, indent=1))
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(render_markdown(report))
    for line in report["targets"]:
        print(f"{line['result']}  {line['target']}: {line['value']} (limit {line['limit']})")
    for row in report.get("comparison", {}).get("rows", []):
        print(
            f"against {args.compare_to}, {row['category']} {row['split']}: "
            + "; ".join("{} {}, change {}".format(name, *_change_cells(row[name])) for name in COMPARED)
        )
    print(f"wrote {args.markdown} and {args.output / 'thresholds.json'}")
    return report


if __name__ == "__main__":
    main()
