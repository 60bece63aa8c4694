"""Image AUROC, pixel AUROC and pixel AUPRO per subclass, with means over seen and over unseen subclasses.

The Texture AD protocol (paper Sec. 3.1): one model per category, trained on the
seen subclasses, tested on seen and unseen ones. Pixel AUROC is computed at the
resolution the predictions come in (anomalib's: the input image size), pooled
over all pixels of a subclass; AUPRO (FPR limit 0.3) is anomalib's, over the
subclass's defect regions.
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from anomalib.data import Batch
from anomalib.metrics import AUPRO


@dataclass
class SubclassScores:
    """Everything needed to compute one subclass's AUROCs."""

    image_scores: list[torch.Tensor] = field(default_factory=list)
    image_labels: list[torch.Tensor] = field(default_factory=list)
    pixel_scores: list[torch.Tensor] = field(default_factory=list)
    pixel_labels: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def merged(cls, groups: Iterable["SubclassScores"]) -> "SubclassScores":
        """All images of ``groups`` as one group: pooled AUROCs rank them together."""
        pooled = cls()
        for group in groups:
            for name in ("image_scores", "image_labels", "pixel_scores", "pixel_labels"):
                getattr(pooled, name).extend(getattr(group, name))
        return pooled

    def add(
        self, score: torch.Tensor, label: torch.Tensor, anomaly_map: torch.Tensor | None, mask: torch.Tensor | None
    ) -> None:
        """Add one image's prediction and ground truth."""
        self.image_scores.append(score.reshape(1).float().cpu())
        self.image_labels.append(label.reshape(1).long().cpu())
        if anomaly_map is not None and mask is not None:
            self.pixel_scores.append(anomaly_map.reshape(anomaly_map.shape[-2:]).float().cpu())
            self.pixel_labels.append((mask.reshape(mask.shape[-2:]) > 0).cpu())  # bool: an eighth of long

    def image_auroc(self) -> float:
        """Image AUROC; NaN when the subclass lacks normal or anomalous images."""
        return _auroc(torch.cat(self.image_scores), torch.cat(self.image_labels))

    def pixel_auroc(self) -> float:
        """Pixel AUROC pooled over the subclass's images; NaN without masks or defect pixels."""
        if not self.pixel_scores:
            return float("nan")
        return _auroc(torch.cat([s.reshape(-1) for s in self.pixel_scores]), torch.cat(self.pixel_labels).reshape(-1))

    def f1_at(self, threshold: float) -> float:
        """Image F1 with ``score > threshold`` called anomalous (anomalib's rule); NaN without defective images.

        2 TP / (defective + flagged), sklearn's ``f1_score`` arithmetic without its input checks, which took most
        of a bootstrap interval's time (:mod:`.resampling` calls this thousands of times).
        """
        labels = torch.cat(self.image_labels).bool()
        if not labels.any() or math.isnan(threshold):  # a threshold never fitted flags nothing: not an F1 of 0
            return float("nan")
        flagged = torch.cat(self.image_scores) > threshold
        return 2 * int((flagged & labels).sum()) / (int(labels.sum()) + int(flagged.sum()))

    def best_f1(self) -> float:
        """Image F1 at the subclass's own best threshold, chosen with its test labels: for reports only.

        Counted as ``f1_at`` counts (2 TP / (defective + flagged), sklearn's arithmetic) at every cut between
        distinct scores, so ``f1_at`` of any threshold is one of these values exactly and never exceeds the best
        (F1 from precision and recall differed from it in the last bit and printed gaps of -0.00).
        """
        labels = torch.cat(self.image_labels).numpy()
        if labels.max() == 0:
            return float("nan")
        scores = torch.cat(self.image_scores).double().numpy()
        order = np.argsort(-scores, kind="stable")
        true_positives = np.cumsum(labels[order])
        cuts = np.append(np.diff(scores[order]) != 0, True)  # the last image of each distinct score
        flagged = np.arange(1, len(scores) + 1)
        return float((2 * true_positives[cuts] / (labels.sum() + flagged[cuts])).max())

    def pixel_f1_at(self, threshold: float) -> float:
        """Pixel F1 with ``map > threshold`` flagged (anomalib's ``pred_mask``), over all the subclass's pixels;
        NaN without masks or defect pixels, or for a NaN threshold (none fitted: a validation split without masks)."""
        if not self.pixel_scores or threshold != threshold:
            return float("nan")
        labels = torch.cat([mask.reshape(-1) for mask in self.pixel_labels])
        if not labels.any():
            return float("nan")
        flagged = torch.cat([scores.reshape(-1) for scores in self.pixel_scores]) > threshold
        return 2 * int((flagged & labels).sum()) / (int(labels.sum()) + int(flagged.sum()))

    def good_pixels_flagged(self, threshold: float) -> float:
        """Share of the normal images' pixels above ``threshold``: what ``pred_mask`` marks on good parts; NaN
        without maps of normal images (or with maps of some images only), or for a NaN threshold."""
        if len(self.pixel_scores) != len(self.image_labels) or threshold != threshold:
            return float("nan")
        pairs = zip(self.pixel_scores, self.image_labels, strict=True)
        normal = [scores.reshape(-1) for scores, label in pairs if not label.any()]
        if not normal:
            return float("nan")
        return float((torch.cat(normal) > threshold).float().mean())

    def pixel_aupro(self) -> float:
        """Per-region overlap AUC up to 30 % FPR (anomalib's AUPRO); NaN without defect pixels.

        Maps are min-max scaled over the subclass first: a monotone change that keeps every
        threshold's region overlap, so raw scores of any range can be compared.
        """
        if not self.pixel_scores:
            return float("nan")
        maps, masks = torch.stack(self.pixel_scores).double(), torch.stack(self.pixel_labels).long()
        if masks.max() == 0 or masks.min() == 1:
            return float("nan")
        maps = ((maps - maps.min()) / (maps.max() - maps.min()).clamp_min(1e-12)).float()
        metric = AUPRO(fields=("anomaly_map", "gt_mask"), fpr_limit=0.3)
        metric.update(SimpleNamespace(anomaly_map=maps, gt_mask=masks))
        return float(metric.compute())


def _auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Rank-based AUROC of raw scores (torchmetrics would take scores outside [0, 1] for logits and squash them).

    The Mann-Whitney statistic with tied scores at their mean rank, which is what sklearn's ``roc_auc_score``
    computes, but without its copies: a category's pooled pixels are tens of millions of values.
    """
    positive = labels.reshape(-1).bool()
    n_positive = int(positive.sum())
    n_negative = positive.numel() - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    _, inverse, counts = torch.unique(scores.reshape(-1).double(), return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # 1-based mean rank of each distinct score
    rank_sum = float(mean_rank[inverse[positive]].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def group_by_subclass(
    batches: Iterable[Batch], default_subclass: str | None = None, pixels: bool = True
) -> dict[str, SubclassScores]:
    """Every image's score, label, map and mask (``pixels=False``: score and label only, for image figures
    without a copy of every map), grouped by ``subclass_name`` (``default_subclass`` without one).

    Raises:
        ValueError: a batch without ``subclass_name`` and no ``default_subclass``, or without scores or labels.
        TypeError: one batch, not a list of them.
    """
    groups: dict[str, SubclassScores] = defaultdict(SubclassScores)
    if not isinstance(batches, list | tuple) and hasattr(batches, "pred_score"):  # one batch: iterated item by item
        msg = "one batch given where a list of batches is needed. Fix: pass [batch] (engine.predict returns a list)."
        raise TypeError(msg)
    for batch in batches:
        if getattr(batch, "pred_score", None) is None or getattr(batch, "gt_label", None) is None:
            msg = (
                f"a {type(batch).__name__} without pred_score or gt_label: per-subclass AUROC needs predictions of "
                "labelled test images. Fix: predict a datamodule's test images (engine.predict(model, "
                "dataloaders=datamodule.test_dataloader()), or RawPredictionRecorder during engine.test), not a "
                "folder of unlabelled images or engine.test's metrics."
            )
            raise ValueError(msg)
        names = getattr(batch, "subclass_name", None)
        if names is None and default_subclass is not None:
            names = [default_subclass] * len(batch.pred_score)
        if names is None:
            msg = "Predictions carry no subclass_name: evaluate on a TextureAD or SyntheticTextureAD datamodule."
            raise ValueError(msg)
        for i, name in enumerate(names):
            anomaly_map = batch.anomaly_map[i] if pixels and batch.anomaly_map is not None else None
            mask = batch.gt_mask[i] if pixels and batch.gt_mask is not None else None
            groups[name].add(batch.pred_score[i], batch.gt_label[i], anomaly_map, mask)
    return groups


def per_subclass_table(
    batches: Iterable[Batch],
    seen: Iterable[str],
    default_subclass: str | None = None,
    threshold: float | None = None,
    pixels: bool = True,
    pixel_threshold: float | None = None,
) -> list[dict]:
    """Rows ``{subclass, split, images, image_auroc, pixel_auroc, pixel_aupro}`` per subclass, then per split
    the mean of the subclass rows and the pooled row (one ranking over all the split's images and pixels: what
    a single threshold sees; no AUPRO).

    With ``threshold`` (the category's image threshold, in the scores' units) every subclass row and mean also
    get ``f1`` (image F1 at that threshold) and ``best_f1`` (F1 at the subclass's own best threshold, chosen
    with its test labels: a reference for the report, never a setting). With ``pixel_threshold`` (the pixel
    threshold, in the maps' units) they get ``pixel_f1`` (pixel F1 of ``map > pixel_threshold``, anomalib's
    ``pred_mask``) and ``good_pixels_flagged`` (the share of normal images' pixels it flags).

    Args:
        batches: predicted batches carrying ``subclass_name``, ``pred_score``,
            ``gt_label`` and (for pixel AUROC) ``anomaly_map`` and ``gt_mask``.
        seen: names of the subclasses the model was trained on.
        default_subclass: name for images without ``subclass_name`` (datasets such as
            MVTecAD or Folder); ``None`` makes them an error.
        threshold: the category's image threshold, for ``f1`` and ``best_f1``.
        pixel_threshold: the pixel threshold, for ``pixel_f1`` and ``good_pixels_flagged``.
        pixels: ``False``: image figures only (pixel ones NaN), holding no copy of the maps.

    Raises:
        ValueError: a batch without ``subclass_name`` and no ``default_subclass``.
    """
    groups = group_by_subclass(batches, default_subclass, pixels)
    return subclass_table(groups, seen, threshold=threshold, pixel_threshold=pixel_threshold)


def checked_seen(seen: Iterable[str]) -> set[str]:
    """``seen`` as a set, refusing a single name: iterated, its letters matched no subclass, and every row read
    unseen without a word."""
    if isinstance(seen, str):
        msg = f"seen={seen!r}: a list of subclass names is needed, not one string. Fix: seen=[{seen!r}]."
        raise TypeError(msg)
    return set(seen)


def subclass_table(
    groups: dict[str, SubclassScores],
    seen: Iterable[str],
    threshold: float | None = None,
    pixel_threshold: float | None = None,
) -> list[dict]:
    """:func:`per_subclass_table`'s rows from groups already made (:func:`group_by_subclass`), for a caller that
    reads more from the same groups than the table does."""
    seen = checked_seen(seen)
    rows = [
        {
            "subclass": name,
            "split": "seen" if name in seen else "unseen",
            "images": len(group.image_scores),
            "image_auroc": group.image_auroc(),
            "pixel_auroc": group.pixel_auroc(),
            "pixel_aupro": group.pixel_aupro(),
            **({"f1": group.f1_at(threshold), "best_f1": group.best_f1()} if threshold is not None else {}),
            **(
                {
                    "pixel_f1": group.pixel_f1_at(pixel_threshold),
                    "good_pixels_flagged": group.good_pixels_flagged(pixel_threshold),
                }
                if pixel_threshold is not None
                else {}
            ),
        }
        for name, group in sorted(groups.items(), key=lambda item: (item[0] not in seen, item[0]))
    ]
    for split in ("seen", "unseen"):
        members = [row for row in rows if row["split"] == split]
        if not members:
            continue
        mean = {"subclass": f"mean {split}", "split": split, "images": sum(row["images"] for row in members)}
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "f1", "best_f1", "pixel_f1", "good_pixels_flagged"):
            if key in members[0]:
                mean[key] = nanmean(row[key] for row in members)
        pooled = SubclassScores.merged(groups[row["subclass"]] for row in members)
        rows += [
            mean,
            {
                "subclass": f"pooled {split}",
                "split": split,
                "images": mean["images"],
                "image_auroc": pooled.image_auroc(),
                "pixel_auroc": pooled.pixel_auroc(),
                "pixel_aupro": float("nan"),
            },
        ]
    return rows


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN (a subclass without defects has no AUROC); NaN if none is."""
    finite = [value for value in values if value == value]
    return sum(finite) / len(finite) if finite else float("nan")


def format_table(rows: list[dict]) -> str:
    """Markdown table with AUROCs in percent."""
    keys = ["image_auroc", "pixel_auroc", "pixel_aupro"]
    header = "| subclass | split | images | image AUROC % | pixel AUROC % | pixel AUPRO % |"
    if any("f1" in row for row in rows):
        keys += ["f1", "best_f1"]
        header += " F1 % at the threshold | best F1 % |"
    if any("pixel_f1" in row for row in rows):
        keys += ["pixel_f1", "good_pixels_flagged"]
        header += " pixel F1 % at the threshold | good pixels flagged % |"
    lines = [header, "|---|---|---:|" + "---:|" * len(keys)]
    for row in rows:
        name = f"**{row['subclass']}**" if row["subclass"].startswith(("mean ", "pooled ")) else row["subclass"]
        figures = " | ".join(_percent(row.get(key, float("nan"))) for key in keys)
        lines.append(f"| {name} | {row['split']} | {row['images']} | {figures} |")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "" if value != value else f"{100 * value:.2f}"
