"""Synthetic Texture AD generator: determinism, layout, masks, split and argument checks."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_adapted_moe.data.synthetic import (
    DEFECT_FAMILIES,
    SYNTHETIC_CATEGORIES,
    defect_kinds,
    generate_synthetic_texture_ad,
    subclass_specs,
)
from anomalib_adapted_moe.data.synthetic import generate as generate_module
from anomalib_adapted_moe.data.synthetic.catalog import category_module
from anomalib_adapted_moe.data.synthetic.render import render_sample

SMALL = {
    "image_size": 64,
    "num_train": 2,
    "num_test_good": 1,
    "num_test_defect": 5,
    "num_subclasses": 3,
    "num_unseen": 1,
}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = generate_synthetic_texture_ad(tmp_path / "a", ("cloth",), seed=3, **SMALL)
    b = generate_synthetic_texture_ad(tmp_path / "b", ("cloth",), seed=3, **SMALL)
    c = generate_synthetic_texture_ad(tmp_path / "c", ("cloth",), seed=4, **SMALL)
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert len(ha) > 20
    assert ha == hb
    assert ha.keys() == hc.keys()
    for name, digest in ha.items():
        if name.endswith(".png"):
            assert hc[name] != digest, name


def test_pool_and_in_process_generation_are_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_PARALLEL_MIN_IMAGES", 0)
    monkeypatch.setenv(generate_module._WORKERS_ENV, "1")
    serial = generate_synthetic_texture_ad(tmp_path / "serial", ("metal",), **{**SMALL, "image_size": 32})
    monkeypatch.setenv(generate_module._WORKERS_ENV, "2")
    pooled = generate_synthetic_texture_ad(tmp_path / "pooled", ("metal",), **{**SMALL, "image_size": 32})
    assert _hashes(serial) == _hashes(pooled)


def test_one_category_alone_equals_it_among_all(tmp_path):
    everything = generate_synthetic_texture_ad(tmp_path / "all", SYNTHETIC_CATEGORIES, **SMALL)
    alone = generate_synthetic_texture_ad(tmp_path / "alone", ["wafer"], **SMALL)
    assert sorted(p.name for p in everything.iterdir()) == sorted(SYNTHETIC_CATEGORIES)
    assert _hashes(alone / "wafer") == _hashes(everything / "wafer")
    assert _hashes(everything / "wafer") != _hashes(everything / "metal")


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
def test_layout_split_and_masks(tmp_path, category):
    size = 64
    root = generate_synthetic_texture_ad(tmp_path, (category,), **SMALL)
    cat = root / category
    split = json.loads((cat / "split.json").read_text())
    assert set(split) == {"seen", "unseen"}
    assert len(split["seen"]) == 2 and len(split["unseen"]) == 1
    assert sorted(p.name for p in cat.iterdir() if p.is_dir()) == sorted(split["seen"] + split["unseen"])
    assert not list(root.glob("*.tmp-*"))
    folders = set(defect_kinds(category).values())
    for name in split["seen"] + split["unseen"]:
        sub = cat / name
        assert (sub / "train" / "good").is_dir() == (name in split["seen"])
        if name in split["seen"]:
            assert len(list((sub / "train" / "good").glob("*.png"))) == SMALL["num_train"]
        assert not (sub / "ground_truth" / "good").exists()
        assert len(list((sub / "test" / "good").glob("*.png"))) == SMALL["num_test_good"]
        assert {p.name for p in (sub / "test").iterdir()} == folders | {"good"}  # 5 images -> every family once
        assert {p.name for p in (sub / "ground_truth").iterdir()} == folders
        for img_path in sub.rglob("*.png"):
            if "ground_truth" in img_path.parts:
                continue
            img = Image.open(img_path)
            assert img.mode == "RGB" and img.size == (size, size)
            defect = img_path.parent.name
            mask_path = sub / "ground_truth" / defect / f"{img_path.stem}_mask.png"
            if defect == "good":
                continue
            mask = Image.open(mask_path)
            assert mask.mode == "L" and mask.size == (size, size)
            m = np.asarray(mask)
            assert set(np.unique(m)) <= {0, 255}
            assert 0.002 <= (m > 0).mean() <= 0.08, (mask_path, (m > 0).mean())


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
@pytest.mark.parametrize("family", DEFECT_FAMILIES)
def test_mask_is_exactly_the_altered_pixels(category, family):
    spec = subclass_specs(category)[1]
    size = 96
    for i in range(3):
        key = (0, SYNTHETIC_CATEGORIES.index(category), 1, 9, i)
        clean, none = render_sample(category, spec, size, key)
        defective, mask = render_sample(category, spec, size, key, family)
        assert none is None and mask.shape == (size, size) and mask.dtype == bool
        changed = (clean != defective).any(axis=2)
        assert not (changed & ~mask).any(), "pixels outside the mask were altered"
        assert changed[mask].mean() > 0.6, "the mask covers pixels that were not visibly altered"
        assert 0.002 <= mask.mean() <= 0.08


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
def test_default_tables_and_defect_families(category):
    assert len(category_module(category).BASES) >= 8
    specs = subclass_specs(category)
    names = [s.name for s in specs]
    assert len(specs) >= 8 and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)+", n) for n in names), names
    seen = {s.name: s for s in specs if s.seen}
    unseen = [s for s in specs if not s.seen]
    assert len(seen) == 5 and len(unseen) == 3
    for u in unseen:
        source = seen[u.shifted_from]
        assert (u.texture, u.optics) != (source.texture, source.optics), "an unseen subclass must be shifted"
    assert list(defect_kinds(category)) == list(DEFECT_FAMILIES) == ["scratch", "fold", "stain", "hole", "foreign"]
    assert len(set(defect_kinds(category).values())) == 5
    big = subclass_specs(category, 20, 9)  # past the tables: still unique
    assert len({s.name for s in big}) == 20 and sum(s.seen for s in big) == 11


def _features(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    g = x.mean(axis=2)
    grad = [np.abs(np.diff(g, axis=0)).mean(), np.abs(np.diff(g, axis=1)).mean()]
    return np.concatenate([x.mean(axis=(0, 1)), x.std(axis=(0, 1)), grad])


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
def test_seen_subclasses_differ_and_unseen_are_shifted_from_their_pair(category):
    """In simple image statistics (in units of the within-subclass spread): seen subclasses are far
    apart, and each unseen subclass is shifted away from its paired seen subclass yet closer to it
    than to any other seen subclass."""
    ci = SYNTHETIC_CATEGORIES.index(category)
    specs = subclass_specs(category)
    feats = {
        s.name: np.stack(
            [
                _features(render_sample(category, s, 128, (0, ci, k, 1, i), None, (0, ci, s.layout_key, 7))[0])
                for i in range(5)
            ]
        )
        for k, s in enumerate(specs)
    }
    spread = np.sqrt(np.mean([f.var(axis=0) for f in feats.values()], axis=0)) + 1e-3

    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm((feats[a].mean(axis=0) - feats[b].mean(axis=0)) / spread))

    seen = [s.name for s in specs if s.seen]
    assert min(dist(a, b) for a in seen for b in seen if a < b) > 8.0
    for u in (s for s in specs if not s.seen):
        to_pair = dist(u.name, u.shifted_from)
        assert to_pair > 3.0, u.name
        assert to_pair == min(dist(u.name, b) for b in seen), u.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"categories": ("leather",)}, "cloth"),
        ({"categories": ()}, "empty"),
        ({"num_subclasses": 3, "num_unseen": 3}, "num_unseen"),
        ({"num_subclasses": 3, "num_unseen": 5}, "num_unseen"),
        ({"num_subclasses": 1, "num_unseen": 0}, "num_subclasses"),
        ({"num_unseen": -1}, "num_unseen"),
        ({"num_train": 0}, "num_train"),
        ({"num_test_good": 0}, "num_test_good"),
        ({"num_test_defect": 0}, "num_test_defect"),
        ({"image_size": 16}, "image_size"),
        ({"image_size": 64.5}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, message):
    args = {**SMALL, "categories": ("cloth",), **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_synthetic_texture_ad(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_existing_target_raises_before_writing_anything(tmp_path):
    generate_synthetic_texture_ad(tmp_path, ("cloth",), **SMALL)
    before = _hashes(tmp_path)
    with pytest.raises(FileExistsError, match=r"cloth already exists; remove it or generate into another root"):
        generate_synthetic_texture_ad(tmp_path, ("wafer", "cloth"), **SMALL)
    assert not (tmp_path / "wafer").exists()
    assert _hashes(tmp_path) == before


def test_failed_generation_leaves_no_partial_category(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = generate_module._save

    def flaky_save(arr, path):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError("disk full")
        real_save(arr, path)

    monkeypatch.setattr(generate_module, "_save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        generate_synthetic_texture_ad(tmp_path, ("cloth",), **SMALL)
    assert list(tmp_path.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _generate_until_sigterm(root: Path, pids: Path, workers: str) -> None:
    """In a forked child: generate, and SIGTERM the generating process at the first image (as `kill PID` does).

    With a pool, the worker that sends it then stays busy, as a worker rendering a large subclass would."""
    os.environ[generate_module._WORKERS_ENV] = workers
    generate_module._PARALLEL_MIN_IMAGES = 0
    parent, real_save = os.getpid(), generate_module._save

    def save(arr, path):
        with pids.open("a") as file:
            file.write(f"{os.getpid()}\n")
        try:
            os.close(os.open(pids.with_suffix(".sent"), os.O_CREAT | os.O_EXCL))  # the first caller only
            os.kill(parent, signal.SIGTERM)
        except FileExistsError:
            pass
        if os.getpid() != parent:
            time.sleep(120)
        real_save(arr, path)

    generate_module._save = save
    generate_synthetic_texture_ad(root, ("cloth",), **SMALL)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_during_generation_leaves_no_folder_and_no_worker(tmp_path, workers):
    # before: SIGTERM's default action killed the process, leaving cloth.tmp-<pid>/ (which no later run removed)
    # and the pool's workers, orphaned and blocked forever
    pids = tmp_path / "pids.txt"
    child = multiprocessing.get_context("fork").Process(
        target=_generate_until_sigterm, args=(tmp_path / "out", pids, workers)
    )
    child.start()
    child.join(300)  # a guard against a hang, not a timing: it exits within seconds
    started = {int(line) for line in pids.read_text().split()} - {child.pid}
    try:
        # SystemExit(128 + SIGTERM), as a shell reports a SIGTERM'd command
        assert child.exitcode == 143, f"exit code {child.exitcode} (None: still running after 300 s, hung)"
        assert not list((tmp_path / "out").iterdir())
        assert bool(started) == (workers == "2")  # the pool's workers (the other one may not have started an image)
        assert not [pid for pid in started if _alive(pid)]
    finally:
        for pid in started | {child.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_tmp_folders_of_dead_processes_are_removed(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=generate_module.__name__)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # its pid now names no process: the one that made the folder was killed outright
    (tmp_path / f"cloth.tmp-{dead.pid}" / "cloth_00").mkdir(parents=True)
    running = tmp_path / f"cloth.tmp-{os.getppid()}"  # another process still generating: left alone
    running.mkdir()
    generate_synthetic_texture_ad(tmp_path, ("cloth",), **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloth", running.name]
    assert any(
        f"cloth.tmp-{dead.pid}" in r.getMessage() and "no longer running" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
def test_expected_counts_and_split_are_what_generation_writes(tmp_path, category):
    # SyntheticTextureAD checks its cache against these
    args = {**SMALL, "num_test_defect": 3, "num_subclasses": 4}
    cat = generate_synthetic_texture_ad(tmp_path, (category,), **args) / category
    found = Counter(p.parent.relative_to(cat).as_posix() for p in cat.rglob("*.png"))
    del args["image_size"]
    assert found == generate_module.expected_image_counts(category, **args)
    split = generate_module.expected_split(category, args["num_subclasses"], args["num_unseen"])
    assert json.loads((cat / "split.json").read_text()) == split
