"""Build the real-texture development benchmark: photographs from ``openarena-081-textures``, shaped like Texture AD.

Every image is a camera view of one real texture: a crop at a random position
and scale (+-10 %) of the seamlessly tiled texture, a random horizontal flip, a
small exposure and white-balance change and sensor noise. Defective test images
get one defect from the synthetic generator's painters (scratch, dent, stain,
hole, foreign material), each with the exact mask of the pixels it changed.
Everything is drawn from ``seed``: the same seed and package give the same files. Each image is drawn from its own
index, so more test images (``--num-test-good``, ``--num-test-defect``) keep the training images and the smaller
set's test images: a test set grows (narrower intervals in ``benchmark thresholds``) and the trainings stay.

The package (GPL, 94 MB) is fetched with ``apt-get download`` at build time and
never committed; its copyright, credits and readme are copied beside the data.

    python -m anomalib_adapted_moe.data.real_textures --output datasets/real_textures_dev [--seed 0] [--deb FILE]
        [--num-test-good 40] [--num-test-defect 40]
    python -m anomalib_adapted_moe.data.texture_ad --check datasets/real_textures_dev
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_adapted_moe.data.synthetic.defects import DEFECT_FAMILIES, draw_defect
from anomalib_adapted_moe.data.synthetic.generate import defect_counts

from .catalog import DEFECT_FOLDERS, LICENSE_FILES, PACKAGE, PK3, REAL_CATEGORIES, RealSubclass

#: background behind the transparent parts of a texture (the holes of a grate): a dark floor under it
BACKGROUND = 0.06
SPLIT_TRAIN, SPLIT_GOOD, SPLIT_DEFECT = 0, 1, 2


class PackageUnavailableError(RuntimeError):
    """The texture package could not be fetched or read."""


def fetch_package(folder: Path, deb: Path | None = None) -> Path:
    """Unpack the package (``deb``, or one ``apt-get download`` fetches) into ``folder``; returns ``folder``."""
    if deb is None:
        if shutil.which("apt-get") is None:
            msg = (
                f"Building the real-texture benchmark needs the Debian package {PACKAGE}, fetched with apt-get, and "
                "this system has no apt-get. Fix: on a Debian-family system run `apt-get download "
                f"{PACKAGE}` and pass the file with --deb."
            )
            raise PackageUnavailableError(msg)
        done = subprocess.run(["apt-get", "download", PACKAGE], cwd=folder, capture_output=True, text=True)
        debs = sorted(folder.glob(f"{PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            msg = (
                f"`apt-get download {PACKAGE}` failed: {done.stderr.strip()[-400:]}. Fix: run `apt-get update` first "
                "(as root), or download the .deb elsewhere and pass it with --deb."
            )
            raise PackageUnavailableError(msg)
        deb = debs[-1]
    if shutil.which("dpkg-deb") is None:
        msg = f"Unpacking {deb} needs dpkg-deb (Debian's dpkg package). Fix: install dpkg, or build on Debian/Ubuntu."
        raise PackageUnavailableError(msg)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "unpacked")], check=True)
    return folder / "unpacked"


def load_texture(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """A texture of the package as float32 RGB in [0, 1]; transparent parts over a dark background."""
    with Image.open(io.BytesIO(archive.read(name))) as image:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)


def camera_view(texture: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """One view of the tiled texture: random position and scale, flip, exposure, white balance, sensor noise."""
    height, width = texture.shape[:2]
    window = round(size * rng.uniform(0.9, 1.1))
    reps_y, reps_x = -(-(window + height) // height), -(-(window + width) // width)
    tiled = np.tile(texture, (reps_y, reps_x, 1))
    y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
    crop = tiled[y : y + window, x : x + window]
    view = (
        np.asarray(
            Image.fromarray((crop * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
    )
    if rng.random() < 0.5:
        view = view[:, ::-1]
    gain = rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, size=3)
    view = view * gain + rng.normal(0.0, 0.01, size=view.shape)
    return np.clip(view, 0.0, 1.0).astype(np.float32)


def _save(image: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)).save(path, compress_level=1)


def write_subclass(folder: Path, texture: np.ndarray, spec: RealSubclass, key: tuple[int, ...], counts: dict) -> None:
    """``train/good`` (seen only), ``test/good``, ``test/<defect>`` and ``ground_truth/<defect>/NNN_mask.png``."""
    size = counts["image_size"]
    base = folder / spec.name
    plans = [("train/good", SPLIT_TRAIN, counts["num_train"])] if spec.seen else []
    plans.append(("test/good", SPLIT_GOOD, counts["num_test_good"]))
    for split, code, count in plans:
        (base / split).mkdir(parents=True)
        for i in range(count):
            _save(camera_view(texture, np.random.default_rng([*key, code, i]), size), base / split / f"{i:03d}.png")
    per_family = defect_counts(counts["num_test_defect"], key[-1])
    for k, (family, count) in enumerate(zip(DEFECT_FAMILIES, per_family, strict=True)):
        if count == 0:  # below one image per family: no empty folder, which the dataset check names as a lost copy
            continue
        images, masks = base / "test" / DEFECT_FOLDERS[family], base / "ground_truth" / DEFECT_FOLDERS[family]
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for i in range(count):
            rng = np.random.default_rng([*key, SPLIT_DEFECT + k, i])
            view = camera_view(texture, rng, size)
            painted, mask = draw_defect(family, view, rng)
            _save(np.where(mask[:, :, None], painted, view), images / f"{i:03d}.png")  # clean outside the mask
            Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"{i:03d}_mask.png")


def build_real_textures(
    output: str | Path,
    seed: int = 0,
    deb: str | Path | None = None,
    categories: tuple[str, ...] = tuple(REAL_CATEGORIES),
    image_size: int = 256,
    num_train: int = 40,
    num_test_good: int = 40,
    num_test_defect: int = 40,
) -> Path:
    """Write the benchmark under ``output`` (refusing an existing category folder) and return its path."""
    output = Path(output)
    if min(num_test_good, num_test_defect) < 1:
        msg = f"Every subclass needs normal and defective test images, got {num_test_good} and {num_test_defect}."
        raise ValueError(msg)
    unknown = sorted(set(categories) - set(REAL_CATEGORIES))
    if unknown:
        msg = f"Unknown categories {unknown}; the real-texture benchmark has {sorted(REAL_CATEGORIES)}."
        raise ValueError(msg)
    existing = [str(output / c) for c in categories if (output / c).exists()]
    if existing:
        msg = f"{', '.join(existing)} already exist(s); remove them or build into another --output."
        raise FileExistsError(msg)
    counts = {
        "image_size": image_size,
        "num_train": num_train,
        "num_test_good": num_test_good,
        "num_test_defect": num_test_defect,
    }
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="real_textures_") as scratch:
        unpacked = fetch_package(Path(scratch), Path(deb) if deb else None)
        for name in LICENSE_FILES:
            for source in (unpacked / "usr/share/doc" / PACKAGE).glob(name + "*"):
                shutil.copyfile(source, output / f"{PACKAGE}.{source.name}")
        with zipfile.ZipFile(unpacked / PK3) as archive:
            for cat_index, category in enumerate(categories):
                temporary = output / f".{category}.partial"
                shutil.rmtree(temporary, ignore_errors=True)
                temporary.mkdir()
                for sub_index, spec in enumerate(REAL_CATEGORIES[category]):
                    print(f"{category}/{spec.name} ({'seen' if spec.seen else 'unseen'}): {spec.texture}", flush=True)
                    texture = load_texture(archive, spec.texture)
                    write_subclass(temporary, texture, spec, (seed, cat_index, sub_index), counts)
                specs = REAL_CATEGORIES[category]
                split = {"seen": [s.name for s in specs if s.seen], "unseen": [s.name for s in specs if not s.seen]}
                (temporary / "split.json").write_text(json.dumps(split, indent=2) + "\n")
                temporary.rename(output / category)
    return output


def main(argv: list[str] | None = None) -> None:
    """Command line: build, then say how to check and use it."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.data.real_textures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("datasets/real_textures_dev"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deb", type=Path, default=None, help=f"a downloaded {PACKAGE} .deb (default: apt-get)")
    parser.add_argument("--categories", nargs="+", default=list(REAL_CATEGORIES))
    more = "per subclass; a larger count keeps the same training images and the smaller count's test images"
    parser.add_argument("--num-test-good", type=int, default=40, help=f"normal test images {more}")
    parser.add_argument("--num-test-defect", type=int, default=40, help=f"defective test images {more}")
    args = parser.parse_args(argv)
    try:
        root = build_real_textures(
            args.output,
            args.seed,
            args.deb,
            tuple(args.categories),
            num_test_good=args.num_test_good,
            num_test_defect=args.num_test_defect,
        )
    except (PackageUnavailableError, FileExistsError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"built {root}; check it with: python -m anomalib_adapted_moe.data.texture_ad --check {root}")
