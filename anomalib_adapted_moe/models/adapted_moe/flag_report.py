"""What the one image threshold decided, by subclass or routed expert, logged after ``anomalib test`` and ``predict``.

anomalib prints pooled metrics after a test and nothing after a predict. A variant
the training images lacked can sit above the threshold while the pooled AUROC and
F1 look fine (a walkthrough's Folder of real metal plates: 32 of the 40 good test
images of one unseen variant flagged). This report counts each group's flagged
good images and missed defective ones (test), or its flagged images and the
highest-scoring files (predict), and warns of a group whose good images are
mostly flagged.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

#: the highest-scoring flagged files a predict names
LISTED_FILES = 5


@dataclass
class GroupCounts:
    """One group's images and the threshold's decisions on them (``good``, ``defective``: test labels)."""

    images: int = 0
    flagged: int = 0
    good: int = 0
    good_flagged: int = 0
    defective: int = 0
    missed: int = 0


class FlagReport:
    """The decisions of one test or predict run, one record per image file (an image a DistributedSampler pads
    with, or a second dataloader, repeats, counts once; an image without a file, which has no name to be known by,
    counts each time), grouped by subclass (TextureAD batches) or routed expert."""

    def __init__(self, expert_names: list[str], rank: int = 0) -> None:
        self.expert_names = expert_names
        #: this process's rank, in the keys of images without a file (DDP merges every rank's records)
        self.rank = rank
        #: image file -> (group, flagged, defective or None when unlabelled, score)
        self.records: dict[str, tuple[str, bool, bool | None, float]] = {}

    def add(self, batch: object, top_expert: torch.Tensor) -> None:
        """Record a post-processed batch (its ``pred_label``, ``pred_score``, and ``gt_label`` where known)."""
        if batch.pred_label is None:  # no post-processor (post_processor=False): nothing was decided
            return
        flagged = batch.pred_label.reshape(-1).bool().tolist()
        labels = batch.gt_label.reshape(-1).bool().tolist() if batch.gt_label is not None else [None] * len(flagged)
        scores = batch.pred_score.reshape(-1).tolist()
        subclasses = getattr(batch, "subclass_name", None)
        if subclasses is None:  # "expert": a seen subclass's expert also takes the variants routed to it
            names = [f"expert {self.expert_names[i] if self.expert_names else i}" for i in top_expert.tolist()]
        else:
            ids = getattr(batch, "subclass_id", None)
            unseen = [False] * len(flagged) if ids is None else (torch.as_tensor(ids).reshape(-1) < 0).tolist()
            names = [f"{name} (unseen)" if new else name for name, new in zip(subclasses, unseen, strict=True)]
        # no file: a key of its own, on every rank
        paths = batch.image_path or [f"#{self.rank}:{len(self.records) + i}" for i in range(len(flagged))]
        for path, *record in zip(paths, names, flagged, labels, scores, strict=True):
            self.records[str(path)] = tuple(record)

    def merge(self, records: dict[str, tuple[str, bool, bool | None, float]]) -> None:
        """Add another process's records (DDP: every rank tested its share of the images)."""
        self.records.update(records)

    @property
    def groups(self) -> dict[str, GroupCounts]:
        """Each group's counts, by group name."""
        groups: dict[str, GroupCounts] = defaultdict(GroupCounts)
        for group, flagged, defective, _ in self.records.values():
            counts = groups[group]
            counts.images += 1
            counts.flagged += flagged
            if defective is not None:
                counts.good += not defective
                counts.good_flagged += flagged and not defective
                counts.defective += defective
                counts.missed += defective and not flagged
        return dict(sorted(groups.items()))

    def log_test(self) -> None:
        """One line per group: good images flagged, defective images missed; a warning for a mostly flagged one (one
        warning in all when every group is: the threshold itself is off, not one variant)."""
        groups = self.groups
        if not any(c.good or c.defective for c in groups.values()):  # nothing labelled: nothing to say
            return
        lines = [
            f"  {name}: {_share(c.good_flagged, c.good)} good flagged, {_share(c.missed, c.defective)} defective missed"
            for name, c in groups.items()
        ]
        heading = f"The image threshold's decisions on the test images, by {self._grouping()}:"
        logger.info("%s\n%s", heading, "\n".join(lines))
        labelled = {name: c for name, c in groups.items() if c.good}
        flagged = {name: c for name, c in labelled.items() if c.good_flagged * 2 > c.good}
        if len(flagged) > 1 and len(flagged) == len(labelled):
            logger.warning(
                "More than half of the good test images of every %s score above the image threshold (%s): the "
                "threshold itself does not fit these images, not one variant: a variant level read from another "
                "product's images (model.post_processor.variant_level.zero_() returns to the trained threshold), or "
                "thresholds fitted under other scoring settings or on other data.",
                self._grouping(),
                ", ".join(f"{name} {_share(c.good_flagged, c.good)}" for name, c in flagged.items()),
            )
            return
        for name, counts in flagged.items():
            logger.warning(
                "%s: %s of its good test images score above the image threshold. Pooled metrics can hide this: "
                "if these are a variant the training images lacked, give it its own level (anomalib_adapted_moe."
                "deploy.variant_level, from its good images) or train with its images.",
                name,
                _share(counts.good_flagged, counts.good),
            )

    def log_predict(self) -> None:
        """How many images were flagged, by group, and the highest-scoring flagged files (named under their folder)."""
        counts = self.groups
        if not counts:
            return
        total = sum(c.images for c in counts.values())
        flagged = sum(c.flagged for c in counts.values())
        groups = ", ".join(f"{name} {c.flagged} of {c.images}" for name, c in counts.items())
        named_files = [(score, path) for path, (_, hit, _, score) in self.records.items() if hit and path[:1] != "#"]
        highest = sorted(named_files, reverse=True)[:LISTED_FILES]
        named = ""
        if highest:
            try:
                folder = os.path.commonpath([os.path.dirname(path) for _, path in highest])
            except ValueError:  # absolute and relative paths mixed
                folder = ""
            files = ", ".join(f"{os.path.relpath(path, folder or '.')} ({score:.3f})" for score, path in highest)
            scores = f"the {len(highest)} highest of the {flagged} (pred_score, threshold 0.5)"
            named = f"; {scores}, in {folder or '.'}: {files}"
        logger.info(
            "%d of %d images flagged (pred_label true: their score above the image threshold); by %s: %s%s",
            flagged,
            total,
            self._grouping(),
            groups,
            named,
        )

    def _grouping(self) -> str:
        kinds = {"routed expert" if group.startswith("expert ") else "subclass" for group, *_ in self.records.values()}
        return " or ".join(sorted(kinds, reverse=True))


def _share(part: int, whole: int) -> str:
    """``part of whole (p%)``, the percentage rounded half up (12.5 -> 13)."""
    return f"{part} of {whole}" + (f" ({math.floor(100 * part / whole + 0.5)}%)" if whole else "")
