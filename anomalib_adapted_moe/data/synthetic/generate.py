"""Writes the synthetic Texture AD set in the per-subclass MVTec layout.

Each category is written into ``root/<category>.tmp-<pid>`` and renamed to
``root/<category>`` only when complete, so a half-written set is never mistaken for
a finished one; a stopped run (exception, Ctrl-C, SIGTERM) removes its folder and
its workers, and one that was killed outright has its folder removed by the next.
Every file depends only on (seed, category index, subclass index, split code,
image index), so output is byte-identical across runs and independent
of which other categories are generated alongside.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import operator
import os
import shutil
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_adapted_moe.command_line import sigterm_exits

from .catalog import SYNTHETIC_CATEGORIES, check_category, defect_kinds, subclass_specs
from .defects import DEFECT_FAMILIES
from .render import render_sample
from .subclasses import SubclassSpec

SPLIT_TRAIN, SPLIT_TEST_GOOD = 0, 1  # defect family i uses split code 2 + i
_PNG_OPTIONS = {"format": "PNG", "compress_level": 1}  # fixed, and Pillow writes no time/metadata chunks
# Worker processes (default: up to 2). Small jobs run in-process; results never depend on it.
_WORKERS_ENV = "ANOMALIB_ADAPTED_MOE_SYNTH_WORKERS"
_PARALLEL_MIN_IMAGES = 150

logger = logging.getLogger(__name__)


def _count(name: str, value: int, minimum: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_categories(categories: Sequence[str] | str) -> list[str]:
    if isinstance(categories, str):
        categories = (categories,)
    cats = list(dict.fromkeys(categories))  # drop repeats, keep order
    if not cats:
        raise ValueError(f"categories must not be empty; valid categories are {list(SYNTHETIC_CATEGORIES)}")
    for c in cats:
        if not isinstance(c, str):
            raise ValueError(f"category names must be strings, got {c!r}")
        check_category(c)
    return cats


def defect_counts(num_test_defect: int, subclass_index: int) -> list[int]:
    """Images per defect family; the remainder rotates with the subclass so every family appears."""
    base, extra = divmod(num_test_defect, len(DEFECT_FAMILIES))
    return [base + int((k - subclass_index) % len(DEFECT_FAMILIES) < extra) for k in range(len(DEFECT_FAMILIES))]


def expected_image_counts(
    category: str, num_train: int, num_test_good: int, num_test_defect: int, num_subclasses: int, num_unseen: int
) -> dict[str, int]:
    """Images per folder (``<subclass>/train/good``, ..., relative to the category folder) that generation writes.

    Lets a cached copy be checked: a file deleted from it would otherwise shrink the set without a word.
    """
    folders = defect_kinds(category)
    counts = {}
    for sub_idx, spec in enumerate(subclass_specs(category, num_subclasses, num_unseen)):
        if spec.seen:
            counts[f"{spec.name}/train/good"] = num_train
        counts[f"{spec.name}/test/good"] = num_test_good
        for family, n in zip(DEFECT_FAMILIES, defect_counts(num_test_defect, sub_idx), strict=True):
            if n:
                counts[f"{spec.name}/test/{folders[family]}"] = n
                counts[f"{spec.name}/ground_truth/{folders[family]}"] = n
    return counts


def expected_split(category: str, num_subclasses: int, num_unseen: int) -> dict[str, list[str]]:
    """The ``split.json`` that generation writes (seen and unseen subclass names)."""
    specs = subclass_specs(category, num_subclasses, num_unseen)
    return {"seen": [s.name for s in specs if s.seen], "unseen": [s.name for s in specs if not s.seen]}


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path, **_PNG_OPTIONS)


def _write_subclass_args(args: tuple) -> None:
    _write_subclass(*args)


def _default_sigterm() -> None:
    """Pool workers die on SIGTERM (a forked one would inherit :func:`.sigterm_exits`' handler and outlive it)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(tasks: list[tuple], num_images: int) -> None:
    workers = int(os.environ.get(_WORKERS_ENV, min(2, os.cpu_count() or 1)))
    if workers <= 1 or len(tasks) <= 1 or num_images < _PARALLEL_MIN_IMAGES:
        for task in tasks:
            _write_subclass(*task)
        return
    # fork avoids re-importing the (heavy) parent package in every worker.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_default_sigterm)
    try:
        for _ in pool.map(_write_subclass_args, tasks):
            pass
    except BaseException:
        # Stopped: end the workers now, rather than wait for them to write into a folder about to be deleted
        # (or leave them blocked forever once this process is gone). No public API lists the pool's processes.
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_tmp_folders(root: Path, category: str) -> None:
    """Remove ``<category>.tmp-<pid>`` folders of processes that are gone (killed before they could clean up)."""
    for tmp in root.glob(f"{category}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if tmp.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            logger.warning("Removing %s, left behind by process %s, which is no longer running.", tmp, pid)
            shutil.rmtree(tmp, ignore_errors=True)


def _write_subclass(
    out: Path,
    category: str,
    spec: SubclassSpec,
    sub_idx: int,
    seed: int,
    image_size: int,
    num_train: int,
    num_test_good: int,
    num_test_defect: int,
) -> None:
    cat_idx = SYNTHETIC_CATEGORIES.index(category)
    layout_seed = (seed, cat_idx, spec.layout_key, 7)
    base = out / spec.name

    def normal(split_code: int, folder: Path, count: int) -> None:
        folder.mkdir(parents=True)
        for i in range(count):
            img, _ = render_sample(
                category, spec, image_size, (seed, cat_idx, sub_idx, split_code, i), None, layout_seed
            )
            _save(img, folder / f"{i:03d}.png")

    if spec.seen:
        normal(SPLIT_TRAIN, base / "train" / "good", num_train)
    normal(SPLIT_TEST_GOOD, base / "test" / "good", num_test_good)
    folders = defect_kinds(category)
    for k, (family, n) in enumerate(zip(DEFECT_FAMILIES, defect_counts(num_test_defect, sub_idx), strict=True)):
        if n == 0:
            continue
        img_dir = base / "test" / folders[family]
        mask_dir = base / "ground_truth" / folders[family]
        img_dir.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        for i in range(n):
            key = (seed, cat_idx, sub_idx, 2 + k, i)
            img, mask = render_sample(category, spec, image_size, key, family, layout_seed)
            _save(img, img_dir / f"{i:03d}.png")
            _save(mask.astype(np.uint8) * 255, mask_dir / f"{i:03d}_mask.png")


def generate_synthetic_texture_ad(
    root: str | Path,
    categories: Sequence[str] = SYNTHETIC_CATEGORIES,
    seed: int = 0,
    image_size: int = 256,
    num_train: int = 20,
    num_test_good: int = 8,
    num_test_defect: int = 10,
    num_subclasses: int = 8,
    num_unseen: int = 3,
) -> Path:
    """Generate the synthetic set under ``root`` and return ``Path(root)``.

    Per category and subclass: ``train/good`` (seen subclasses only), ``test/good``,
    ``test/<defect>``, ``ground_truth/<defect>/NNN_mask.png`` (0/255) and a
    ``split.json`` listing seen and unseen subclasses. Raises ``ValueError`` for bad
    arguments and ``FileExistsError`` (before writing anything) if any
    ``root/<category>`` already exists.
    """
    cats = _check_categories(categories)
    seed = _count("seed", seed, 0)
    image_size = _count("image_size", image_size, 32)
    num_train = _count("num_train", num_train, 1)
    num_test_good = _count("num_test_good", num_test_good, 1)
    num_test_defect = _count("num_test_defect", num_test_defect, 1)
    num_subclasses = _count("num_subclasses", num_subclasses, 2)
    num_unseen = _count("num_unseen", num_unseen, 0)
    if num_unseen >= num_subclasses:
        raise ValueError(
            f"num_unseen ({num_unseen}) must be smaller than num_subclasses ({num_subclasses}): "
            "at least one subclass has to be seen in training"
        )

    root = Path(root)
    for c in cats:
        if (root / c).exists():
            raise FileExistsError(f"{root / c} already exists; remove it or generate into another root")
    root.mkdir(parents=True, exist_ok=True)

    plans = {c: subclass_specs(c, num_subclasses, num_unseen) for c in cats}
    tmps = {c: root / f"{c}.tmp-{os.getpid()}" for c in cats}
    tasks, num_images = [], 0
    for c in cats:
        for sub_idx, spec in enumerate(plans[c]):
            tasks.append((tmps[c], c, spec, sub_idx, seed, image_size, num_train, num_test_good, num_test_defect))
            num_images += num_train * spec.seen + num_test_good + num_test_defect
    tasks.sort(key=lambda t: not t[2].seen)  # long (seen) subclasses first balances the workers
    for c in cats:
        _remove_dead_tmp_folders(root, c)
    with sigterm_exits():  # generation runs in prepare_data, before Lightning installs its handler
        try:
            for tmp in tmps.values():
                if tmp.exists():  # left over by a crashed run of a process with our pid
                    shutil.rmtree(tmp)
                tmp.mkdir()
            _run(tasks, num_images)
            for c in cats:
                split = expected_split(c, num_subclasses, num_unseen)
                (tmps[c] / "split.json").write_text(json.dumps(split, indent=2) + "\n")
                if (root / c).exists():
                    raise FileExistsError(f"{root / c} appeared while generating; not overwriting it")
                tmps[c].rename(root / c)
        except BaseException:
            for tmp in tmps.values():
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root
