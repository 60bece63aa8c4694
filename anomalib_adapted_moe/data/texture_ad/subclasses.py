"""Which subclasses train and which test: argument, else ``split.json``, else the default rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from anomalib_adapted_moe.data.texture_ad.errors import (
    EmptyTestSetError,
    EmptyTrainingSetError,
    LayoutProblem,
    UnknownSubclassError,
)
from anomalib_adapted_moe.data.texture_ad.layout import NORMAL_LABEL, SPLIT_FILE
from anomalib_adapted_moe.data.texture_ad.scan import CategoryLayout


def _unknown_names(requested: Iterable[str], layout: CategoryLayout, what: str) -> list[LayoutProblem]:
    unknown = sorted(set(requested) - set(layout.names))
    if not unknown:
        return []
    return [
        LayoutProblem(
            UnknownSubclassError,
            layout.root,
            f"{what} names unknown subclass(es) {unknown}; available: {layout.names}.",
            f"pass names from the available list (folder names, case-sensitive) in {what}.",
        )
    ]


def resolve_subclasses(
    layout: CategoryLayout,
    train_subclasses: Sequence[str] | None = None,
    test_subclasses: Sequence[str] | None = None,
) -> tuple[list[str], list[str], list[LayoutProblem]]:
    """Decide which subclasses train and which test; return ``(train, test, problems)``.

    Each list is chosen independently: the explicit argument if given, else
    ``split.json`` (train = seen, test = seen + unseen), else the default (train:
    every subclass with a ``train/good`` folder; test: every subclass).
    """
    problems = list(layout.problems)
    if isinstance(train_subclasses, str) or isinstance(test_subclasses, str):
        msg = "train_subclasses/test_subclasses must be lists of names, not a single string (use ['name'])."
        raise TypeError(msg)
    if train_subclasses is not None:
        problems += _unknown_names(train_subclasses, layout, "train_subclasses")
        train = sorted(set(train_subclasses) & set(layout.names))
        source = "train_subclasses"
    elif layout.split is not None:
        train = [n for n in layout.split[0] if n in layout.subclasses]
        source = f"'seen' in {layout.root / SPLIT_FILE}"
    else:
        train = [n for n in layout.names if layout.subclasses[n].has_train_dir]
        source = "the default rule: every subclass with train/good"
    if test_subclasses is not None:
        problems += _unknown_names(test_subclasses, layout, "test_subclasses")
        test = sorted(set(test_subclasses) & set(layout.names))
        test_source = "test_subclasses"
    elif layout.split is not None:
        test = sorted(n for n in {*layout.split[0], *layout.split[1]} if n in layout.subclasses)
        test_source = f"split.json in {layout.root}"
    else:  # every subclass that has test images (one without is named by the scan's warnings)
        test = [n for n in layout.names if layout.subclasses[n].test_images]
        test_source = None

    if not train and not any(p.error is UnknownSubclassError for p in problems):
        problems.append(
            LayoutProblem(
                EmptyTrainingSetError,
                layout.root,
                f"no training subclass (selected by {source}); found subclasses {layout.names}.",
                "add <subclass>/train/good/ folders with defect-free images, or point root at the folder that "
                "holds the category folders (<root>/<category>/<subclass>/train/good/*.png).",
            )
        )
    for name in train:
        sub = layout.subclasses[name]
        if not sub.train_images:
            state = "is empty" if sub.has_train_dir else "does not exist"
            problems.append(
                LayoutProblem(
                    EmptyTrainingSetError,
                    sub.train_dir,
                    f"training subclass '{name}' (selected by {source}) has no training images: the folder {state}.",
                    f"add defect-free images there, or leave '{name}' out of the training subclasses "
                    "(train_subclasses / 'seen' in split.json).",
                )
            )
    untested = [n for n in test if not layout.subclasses[n].test_images]
    if test_source is not None and untested and len(untested) < len(test):  # all empty: the problem below
        problems.append(
            LayoutProblem(
                EmptyTestSetError,
                layout.root,
                f"test subclass(es) {untested} (selected by {test_source}) hold no image under test/, so their "
                "rows and the seen/unseen means would leave them out without a word.",
                "add test/good and test/<defect> folders to them, or leave them out of the test subclasses.",
            )
        )
    if test and not any(layout.subclasses[n].test_images for n in test):
        problems.append(
            LayoutProblem(
                EmptyTestSetError,
                layout.root,
                f"the test subclasses {test} hold no image under test/.",
                "add test/good and test/<defect> folders, or choose other test_subclasses.",
            )
        )
    problems += _test_split_problems(layout, test, test_source)
    for name in sorted({*train, *test}):
        problems += layout.subclasses[name].problems
    return train, test, problems


def _test_split_problems(layout: CategoryLayout, test: list[str], source: str | None) -> list[LayoutProblem]:
    """A test split of no subclass, or of no defect-free image: anomalib then fills its good images with a share of
    the training images (``test_split_ratio``), which a model trained on the category has seen (a walkthrough: image
    AUROC 1.0, exit 0)."""
    tested = [label for name in test for _image, label in layout.subclasses[name].test_images]
    if not test:
        selected = source or "the default rule: every subclass with images under test/"
        return [
            LayoutProblem(
                EmptyTestSetError,
                layout.root,
                f"no test subclass (selected by {selected}): anomalib would test on a share of the training images.",
                "add test/good and test/<defect> folders, or name test subclasses that have them (test_subclasses, "
                "'seen' and 'unseen' in split.json).",
            )
        ]
    if tested and NORMAL_LABEL not in tested:
        return [
            LayoutProblem(
                EmptyTestSetError,
                layout.root,
                f"the test subclasses {test} hold no defect-free image under test/{NORMAL_LABEL}/: anomalib would take "
                "a share of the training images (test_split_ratio) as the test's good images, images a model trained "
                "on this category has seen.",
                f"add test/{NORMAL_LABEL}/ folders with defect-free images held out from training.",
            )
        ]
    return []
