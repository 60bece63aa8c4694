"""The real-texture benchmark builder, on a fake package of tiny textures (tests never download)."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_adapted_moe.data.real_textures import REAL_CATEGORIES, PackageUnavailableError, build_real_textures
from anomalib_adapted_moe.data.real_textures import build as build_module
from anomalib_adapted_moe.data.real_textures.catalog import PACKAGE, PK3
from anomalib_adapted_moe.data.texture_ad import run_check

SMALL = {"image_size": 48, "num_train": 3, "num_test_good": 2, "num_test_defect": 5}


def fake_package(folder: Path) -> Path:
    """The package's layout with a random 32x32 texture (RGBA for .tga) at every path the catalog names."""
    unpacked = folder / "unpacked"
    (unpacked / PK3).parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(unpacked / PK3, "w") as archive:
        for specs in REAL_CATEGORIES.values():
            for spec in specs:
                mode = "RGBA" if spec.texture.endswith(".tga") else "RGB"
                pixels = rng.integers(0, 256, size=(32, 32, len(mode)), dtype=np.uint8)
                path = folder / Path(spec.texture).name
                Image.fromarray(pixels, mode=mode).save(path, format="TGA" if mode == "RGBA" else "JPEG")
                archive.write(path, spec.texture)
    docs = unpacked / "usr/share/doc" / PACKAGE
    docs.mkdir(parents=True)
    (docs / "copyright").write_text("GPL-2+\n")
    return unpacked


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(build_module, "fetch_package", lambda folder, deb=None: fake_package(folder))
    return build_real_textures(tmp_path / "out", seed=3, categories=("metal_sheet",), **SMALL)


def test_layout_split_and_licence_are_texture_ad_shaped(built: Path) -> None:
    category = built / "metal_sheet"
    split = json.loads((category / "split.json").read_text())
    assert len(split["seen"]) == 5 and len(split["unseen"]) == 3
    for name in split["seen"]:
        assert len(list((category / name / "train" / "good").glob("*.png"))) == 3
    for name in split["unseen"]:
        assert not (category / name / "train").exists()
    defects = sorted(p.name for p in (category / split["seen"][0] / "test").iterdir())
    assert defects == ["dent", "foreign_material", "good", "hole", "scratch", "stain"]
    assert (built / f"{PACKAGE}.copyright").read_text() == "GPL-2+\n"
    assert run_check(built) == 0  # what `python -m anomalib_adapted_moe.data.texture_ad --check` runs


def test_fewer_defect_images_than_defect_kinds_leave_no_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Three defect images among five kinds: the kinds left without one got empty test/ and ground_truth/ folders,
    which the dataset check names as an incomplete copy."""
    monkeypatch.setattr(build_module, "fetch_package", lambda folder, deb=None: fake_package(folder))
    root = build_real_textures(
        tmp_path / "out", seed=3, categories=("metal_sheet",), **(SMALL | {"num_test_defect": 3})
    )
    assert [folder for folder in root.rglob("*") if folder.is_dir() and not any(folder.iterdir())] == []
    capsys.readouterr()
    assert run_check(root) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_masks_are_exactly_the_changed_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every defect image on disk is its clean camera view outside its mask, pixel for pixel, and the defect visibly
    changes most of the pixels inside it."""
    drawn, saved = [], []
    draw, save = build_module.draw_defect, build_module._save

    def recording_draw(family, view, rng):
        painted, mask = draw(family, view, rng)
        drawn.append((view, mask))
        return painted, mask

    def recording_save(image, path):
        saved.append(path)
        save(image, path)

    monkeypatch.setattr(build_module, "fetch_package", lambda folder, deb=None: fake_package(folder))
    monkeypatch.setattr(build_module, "draw_defect", recording_draw)
    monkeypatch.setattr(build_module, "_save", recording_save)
    built = build_real_textures(tmp_path / "out", seed=3, categories=("metal_sheet",), **SMALL)

    defect_images = [path for path in saved if path.parent.parent.name == "test" and path.parent.name != "good"]
    assert len(defect_images) == len(drawn) == 8 * SMALL["num_test_defect"]  # each draw saved right after it
    for written, (view, mask) in zip(defect_images, drawn, strict=True):
        path = built / "metal_sheet" / written.relative_to(written.parents[3])  # written in a staging folder
        clean = (np.clip(view, 0.0, 1.0) * 255).round().astype(np.uint8)  # as the builder saves it
        on_disk = np.asarray(Image.open(path))
        mask_on_disk = np.asarray(
            Image.open(path.parents[2] / "ground_truth" / path.parent.name / f"{path.stem}_mask.png")
        )
        assert np.array_equal(mask_on_disk > 0, mask), path
        changed = (on_disk != clean).any(axis=2)
        assert not (changed & ~mask).any(), f"{path}: pixels outside the mask differ from the clean view"
        assert changed[mask].mean() > 0.6, f"{path}: the mask covers pixels the defect did not visibly change"
        assert 0.002 <= mask.mean() <= 0.08, path


def test_the_same_seed_builds_the_same_files(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    again = build_real_textures(tmp_path / "again", seed=3, categories=("metal_sheet",), **SMALL)
    first = sorted(p.relative_to(built) for p in (built / "metal_sheet").rglob("*.png"))
    assert sum("ground_truth" in str(p) for p in first) == 8 * SMALL["num_test_defect"]  # the build wrote files
    assert first == sorted(p.relative_to(again) for p in (again / "metal_sheet").rglob("*.png"))
    for relative in first[::7]:
        assert (built / relative).read_bytes() == (again / relative).read_bytes()


def test_more_test_images_keep_the_training_and_the_first_test_images(built: Path, tmp_path: Path) -> None:
    larger = build_real_textures(
        tmp_path / "larger", seed=3, categories=("metal_sheet",), **(SMALL | {"num_test_good": 4, "num_test_defect": 9})
    )
    first = sorted(p.relative_to(built) for p in (built / "metal_sheet").rglob("*.png"))
    grown = sorted(p.relative_to(larger) for p in (larger / "metal_sheet").rglob("*.png"))
    assert first and set(first) < set(grown)
    assert sum("test/good" in str(p) for p in grown) == 4 * 8  # eight subclasses
    for relative in first:
        assert (built / relative).read_bytes() == (larger / relative).read_bytes(), relative


def test_the_command_passes_the_test_image_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(build_module, "build_real_textures", lambda *args, **kwargs: calls.append(kwargs) or tmp_path)
    build_module.main(["--output", str(tmp_path), "--num-test-good", "160", "--num-test-defect", "120"])
    assert calls == [{"num_test_good": 160, "num_test_defect": 120}]


def test_existing_output_and_unknown_categories_are_refused(built: Path) -> None:
    with pytest.raises(FileExistsError, match="metal_sheet already exist"):
        build_real_textures(built, categories=("metal_sheet",))
    with pytest.raises(ValueError, match="Unknown categories \\['carpet'\\]"):
        build_real_textures(built, categories=("carpet",))
    with pytest.raises(ValueError, match="normal and defective test images, got 0 and 40"):
        build_real_textures(built, categories=("metal_sheet",), num_test_good=0)


def test_without_apt_get_it_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module.shutil, "which", lambda name: None)
    with pytest.raises(PackageUnavailableError, match=f"needs the Debian package {PACKAGE}.*--deb"):
        build_module.fetch_package(tmp_path)
