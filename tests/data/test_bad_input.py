"""Bad files on the ways images come in: a Texture AD folder, anomalib's Folder, and ``anomalib predict``.

Each bad input gets an error naming the file and the fix, or a documented
recovery (README, "Bad input"). The Texture AD errors for damaged files and
wrong-size masks are in ``test_texture_ad.py``; here are the image modes and the
predict path (anomalib's ``PredictDataset``, checked by the model before predicting).
"""

import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, write_image, write_mask, write_png_rgb16
from PIL import Image

from anomalib_adapted_moe.data import TextureADDataset, predict_check
from anomalib_adapted_moe.data.folder_layout import FolderLayoutError, check_folder_layout, mask_pairing_problems
from anomalib_adapted_moe.data.mvtec_layout import check_mvtec_layout
from anomalib_adapted_moe.data.predict_check import (
    BadPredictImagesError,
    HighBitDepthImageError,
    check_dataset_files,
    check_predict_images,
    mask_like_files,
    overwritten_maps,
    skipped_files,
)
from anomalib_adapted_moe.data.texture_ad import CorruptImageError, read_image_tensor, verify_image_file
from anomalib_adapted_moe.data.texture_ad.errors import MaskSizeMismatchError


def damage(path: Path, kind: str) -> Path:
    """Turn the image at ``path`` into one of the bad files a line produces."""
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "sixteen_bit":
        Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(path)
    else:
        raise ValueError(kind)
    return path


def write_mode(path: Path, mode: str) -> Path:
    """A 32x32 image in PIL ``mode`` (grey ``L`` or ``RGBA``, half transparent), pixel values 0..255 known."""
    rgb = np.asarray(Image.open(write_image(path)).convert("RGB"))
    if mode == "L":
        Image.fromarray(rgb[..., 0]).save(path)
    else:
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), mode="RGBA").save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grey_and_rgba_images_are_read_as_rgb(tmp_path: Path, mode: str) -> None:
    """Recovery: grey is repeated on the three channels; RGBA keeps its colour and drops alpha (no compositing)."""
    path = write_mode(tmp_path / "image.png", mode)
    pixels = np.asarray(Image.open(path), dtype=np.float32) / 255
    image = read_image_tensor(path)
    assert image.shape == (3, 32, 32)
    if mode == "L":
        assert all(torch.equal(image[c], torch.from_numpy(pixels)) for c in range(3))
    else:
        assert torch.equal(image, torch.from_numpy(pixels[..., :3]).permute(2, 0, 1))


def test_texture_ad_trains_on_grey_and_rgba_images(texture_ad_root: Path) -> None:
    train = texture_ad_root / "cloth" / "fabric_a" / "train" / "good"
    write_mode(train / "000.png", "L")
    write_mode(train / "001.png", "RGBA")
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="train")
    batch = dataset.collate_fn([dataset[i] for i in range(len(dataset))])  # mixed modes stack into one batch
    assert batch.image.shape == (6, 3, 32, 32)


# --------------------------------------------------------------------------- the predict path


@pytest.fixture
def predict_folder(tmp_path: Path) -> Path:
    """Three good images (RGB, grey, RGBA) and a stray text file."""
    folder = tmp_path / "to_predict"
    write_image(folder / "rgb.png", 1)
    write_mode(folder / "grey.png", "L")
    write_mode(folder / "rgba.png", "RGBA")
    (folder / "notes.txt").write_text("shift 2, camera 3")
    return folder


def test_predict_skips_a_non_image_file_with_a_warning_and_reads_grey_and_rgba(
    tmp_path: Path, predict_folder: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = fitted_tiny[3]
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        predictions = engine.predict(model=tiny_adapted_moe(), data_path=predict_folder, ckpt_path=checkpoint)
    assert f"{predict_folder / 'notes.txt'}: skipped, not an image" in caplog.text
    paths = sorted(Path(p).name for batch in predictions for p in batch.image_path)
    assert paths == ["grey.png", "rgb.png", "rgba.png"]
    for batch in predictions:
        assert torch.isfinite(batch.pred_score).all() and torch.isfinite(batch.anomaly_map).all()


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "zero_bytes", "sixteen_bit"])
def test_a_bad_image_in_a_predict_folder_is_named_with_its_fix(predict_folder: Path, kind: str) -> None:
    bad = damage(predict_folder / "rgb.png", kind)
    error = HighBitDepthImageError if kind == "sixteen_bit" else CorruptImageError
    with pytest.raises(error) as info:
        check_predict_images(sorted(predict_folder.glob("*.png")))
    message = str(info.value)
    assert str(bad) in message
    assert "Fix:" in message
    assert ("8 bits" if kind == "sixteen_bit" else "move it out of the folder") in message


def test_engine_predict_stops_on_a_damaged_image_before_predicting(
    tmp_path: Path, predict_folder: Path, fitted_tiny
) -> None:
    """The check runs in the model's ``on_predict_start``, so stock ``anomalib predict --data <folder>`` gets it."""
    bad = damage(predict_folder / "rgba.png", "random_bytes")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(CorruptImageError, match="cannot be read as an image") as info:
        engine.predict(model=tiny_adapted_moe(), data_path=predict_folder, ckpt_path=fitted_tiny[3])
    assert str(bad) in str(info.value)
    assert not list((tmp_path / "results").rglob("images/**/*.png"))  # nothing was predicted


def test_skipped_files_are_only_listed_for_a_folder(predict_folder: Path) -> None:
    images = sorted(predict_folder.glob("*.png"))
    assert skipped_files(images) == [predict_folder / "notes.txt"]
    assert skipped_files(images[:1]) == []  # one image: it may have been given alone, so its neighbours are not ours


def test_a_flat_frame_in_a_predict_folder_is_named_in_a_warning_not_refused(
    predict_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A covered lens or an overexposed camera: the demo model passed black, white and grey frames as good."""
    from PIL import Image

    white = np.full((32, 32, 3), 254, np.uint8)
    white[0, 0] = 252  # within two grey levels
    Image.fromarray(white).save(predict_folder / "white.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(predict_folder / "lens_cap.png")  # grey, as cameras write
    # a covered lens under a camera's timestamp (the top-left corner's 2 x 3 white pixels, 0.2 % of the frame) and a
    # stuck pixel: their span of all the pixels is 255 grey levels, so a min-max check passed them as textured
    stamped = np.full((48, 64), 3, np.uint8)
    stamped[:2, :3], stamped[30, 40] = 255, 200
    Image.fromarray(stamped).save(predict_folder / "stamped.png")
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images(sorted(predict_folder.glob("*.png")))
    flat = [record.getMessage() for record in caplog.records if "grey levels" in record.getMessage()]
    assert len(flat) == 1  # one line for the kind, naming each file: 24 black frames printed 24 warnings
    assert flat[0].startswith(f"{predict_folder / 'lens_cap.png'}: 99 % of the pixels within 2 grey levels (a covered")
    assert "Fix: check the camera" in flat[0]
    n = len(list(predict_folder.glob("*.png")))
    assert flat[0].endswith(
        f" Likewise 2 more of the {n} images ({predict_folder / 'stamped.png'}, {predict_folder / 'white.png'})."
    )


def test_predicting_a_category_folder_names_overwritten_maps_and_masks_scored_as_images(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """``anomalib predict --data <category folder>``: anomalib's visualizer keeps only each image's own folder, so
    ``a/test/good/000.png`` and ``b/test/good/000.png`` drew to one file (a walkthrough kept 69 of 78 maps), and the
    masks under ``ground_truth`` were scored as images, neither said. Both are named before predicting."""
    category = tmp_path / "category"
    for variant in ("a", "b"):
        write_image(category / variant / "test" / "good" / "000.png", 1)
        write_image(category / variant / "test" / "hole" / "001.png", 2)
    mask = write_mask(category / "a" / "ground_truth" / "hole" / "001_mask.png")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        predictions = engine.predict(model=tiny_adapted_moe(), data_path=category, ckpt_path=fitted_tiny[3])
    assert sum(len(batch.image_path) for batch in predictions) == 5  # every image is still scored
    drawn = list((tmp_path / "results").rglob("*.png"))
    assert len(drawn) == 3  # what the warning is about: five images, three maps
    overwrite = next(r.getMessage() for r in caplog.records if "overwritten" in r.getMessage())
    assert overwrite.startswith("2 of 5 images would have their drawn maps overwritten")
    assert str(category / "a" / "test" / "good" / "000.png") in overwrite and "Fix: predict each subfolder" in overwrite
    masks = next(r.getMessage() for r in caplog.records if "look like defect masks" in r.getMessage())
    assert masks.startswith(f"1 of 5 images look like defect masks ({mask}): they are scored as images. Fix:")
    # named as masks, not again as a grey image for a colour model (a walkthrough's root: both) or of another size
    assert not any(
        str(mask) in r.getMessage() for r in caplog.records if "look like defect masks" not in r.getMessage()
    )


def test_predicted_images_far_from_the_training_sizes_are_named_in_one_warning(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """The tiny model trained on 64 x 64 images: images more than 1.5x taller, shorter, wider or narrower are named
    (another field of view is scored at another texture scale), the rest not."""
    folder = tmp_path / "line"
    write_image(folder / "a_same.png", 1, size=(64, 64))
    write_image(folder / "b_near.png", 2, size=(96, 43))  # width x height, within 1.5x
    write_image(folder / "c_short.png", 3, size=(64, 42))
    write_image(folder / "d_wide.png", 4, size=(97, 64))
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        engine.predict(model=tiny_adapted_moe(), data_path=folder, ckpt_path=fitted_tiny[3])
    named = [record.getMessage() for record in caplog.records if "training sizes" in record.getMessage()]
    assert len(named) == 1 and named[0].startswith(
        f"predict: 2 of 4 images are far from the training sizes; the first, {folder / 'c_short.png'}, is 42 x 64 "
        "(height x width) against the training images' 64 x 64, more than 1.5x off. The model resizes"
    )


def test_predicted_grey_images_of_a_model_trained_on_colour_are_named_in_one_warning(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """anomalib's reader puts a grey image on three channels: the demo model flagged 39 % of grey copies of its good
    images, without a word. Grey as a file's mode or as RGB with equal channels alike; a flat frame is not called
    grey (it has its own warning)."""
    folder = tmp_path / "line"
    colour = write_image(folder / "a_colour.png", 1, size=(64, 64))
    Image.open(colour).convert("L").save(folder / "b_grey.png")
    Image.open(colour).convert("L").convert("RGB").save(folder / "c_grey_as_rgb.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "d_black.png")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        engine.predict(model=tiny_adapted_moe(), data_path=folder, ckpt_path=fitted_tiny[3])
    named = [record.getMessage() for record in caplog.records if "trained on colour" in record.getMessage()]
    assert len(named) == 1 and named[0].startswith(
        "predict: 2 of 4 sampled images are grey, but the model was trained on colour images: anomalib's reader puts"
    )
    assert named[0].endswith(f"or train on grey images. The first: {folder / 'b_grey.png'}.")


def test_the_training_images_colour_is_read_from_a_sample(tmp_path: Path) -> None:
    from anomalib_adapted_moe.data.image_colour import kinds, sampled, training_colour

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (1, 1, 64 * 64)).repeat(3, axis=1)
    jpeg_noise = grey + rng.integers(-1, 2, grey.shape)  # a grey JPEG's colour noise
    steel = grey + np.array([0, 6, 12])[None, :, None]  # a colour photograph of grey metal spreads 12 levels or more
    assert kinds(np.concatenate([grey, jpeg_noise, steel])) == ["grey", "grey", "colour"]
    assert kinds(grey / 255.0, full_scale=1.0) == ["grey"] and kinds(np.zeros((1, 3, 64))) == [None]  # flat
    colour = [write_image(tmp_path / f"{n}.png", n) for n in range(3)]
    greys = []
    for path in colour:
        greys.append(path.with_name(f"grey_{path.name}"))
        Image.open(path).convert("L").save(greys[-1])
    assert training_colour(colour) == "colour" and training_colour(greys) == "grey"
    assert training_colour([*colour, greys[0]]) is None  # both kinds: nothing to name
    assert training_colour([tmp_path / "missing.png"]) is None
    # a review's catches: a flat frame among them switched the check off; 16-bit grey files (clipped flat when made
    # 8-bit RGB) were recorded as colour; 16 of 31 files were the first 16
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(black)
    assert training_colour([*colour, black]) == "colour" and training_colour([*greys, black]) == "grey"
    # a covered lens written by a grey camera, 8- or 16-bit, is flat too (the second review's catch: "grey")
    black_grey, lens_cap16 = tmp_path / "black_grey.png", tmp_path / "lens_cap16.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(black_grey)
    Image.fromarray(np.full((32, 32), 1000, np.uint16)).save(lens_cap16)
    assert training_colour([*colour, black_grey, lens_cap16]) == "colour"
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(rng.integers(800, 4000, (32, 32)).astype(np.uint16)).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I") and training_colour([sixteen]) == "grey"
    picked = sampled(list(range(31)))
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 30


def test_a_model_trained_on_grey_images_names_colour_ones_and_no_flat_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from anomalib_adapted_moe.data.image_colour import warn_about_other_colour

    colour = write_image(tmp_path / "c_colour.png", 1)
    grey = tmp_path / "a_grey.png"
    Image.open(colour).convert("L").save(grey)
    black = tmp_path / "b_black.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(black)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        warn_about_other_colour([grey, black], "grey", "predict")
        assert not caplog.messages  # a covered lens is no colour image (it has its own warning)
        warn_about_other_colour([grey, black, colour], "grey", "predict")
    assert caplog.messages == [
        "predict: 1 of 3 sampled images are colour, but the model was trained on grey images: its colours make a "
        "texture no expert saw. Fix: give the grey images the line's camera takes (a colour frame made grey: PIL's "
        f"convert('L')), or train on colour images. The first: {colour}."
    ]


def test_image_size_ranges_read_headers_and_skip_what_cannot_be_read(tmp_path: Path) -> None:
    from anomalib_adapted_moe.data.image_sizes import describe, far_from, file_size, size_range

    sizes = [file_size(write_image(tmp_path / f"{n}.png", n, size=size)) for n, size in enumerate([(30, 20), (50, 10)])]
    (tmp_path / "damaged.png").write_bytes(b"not an image")
    sizes.append(file_size(tmp_path / "damaged.png"))
    assert sizes == [(20, 30), (10, 50), None]
    training = size_range(sizes)
    assert training == {"height": [10, 20], "width": [30, 50]} and describe(training) == "10-20 x 30-50"
    assert size_range([None]) is None
    assert not far_from((30, 20), training) and not far_from((7, 75), training)
    assert far_from((31, 40), training) and far_from((15, 19), training)


def test_multi_page_images_hidden_copies_macos_metadata_and_undecodable_tiffs_are_named_with_their_fix(
    predict_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """anomalib's reader takes an image file's first frame: a defect on a TIFF's page 2 (or an animated image's later
    frame) passed without a word. A Mac's '._000.png' (AppleDouble metadata) was called damaged, "replace it with a
    good copy"."""
    pages = [Image.open(write_image(predict_folder / f"page{n}.png", n)).convert("RGB") for n in (3, 4)]
    pages[0].save(predict_folder / "pages.tif", save_all=True, append_images=pages[1:])
    pages[0].save(predict_folder / "animated.png", save_all=True, append_images=pages[1:])
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images(sorted([*predict_folder.glob("*.png"), predict_folder / "pages.tif"]))
        check_dataset_files([predict_folder / "pages.tif"], [None], "training")
    named = [record.getMessage() for record in caplog.records if "frames (pages)" in record.getMessage()]
    assert named == [
        f"{predict_folder / 'animated.png'}: holds 2 frames (pages); anomalib's reader scores only one. Fix: "
        "save each page or frame as an image of its own (PIL's ImageSequence.Iterator). Likewise 1 more of the 7 "
        f"images ({predict_folder / 'pages.tif'}).",
        f"{predict_folder / 'pages.tif'}: holds 2 frames (pages); anomalib's reader reads only one. Fix: save "
        "each page or frame as an image of its own (PIL's ImageSequence.Iterator).",
    ]
    # a camera JPEG's preview (MPO) and a TIFF's thumbnail page are no pages to inspect
    pages[0].save(predict_folder / "camera.jpg", format="MPO", save_all=True, append_images=pages[1:])
    thumbnail = pages[1].resize((8, 8))
    thumbnail.encoderinfo = {"tiffinfo": {254: 1}}  # NewSubfileType: reduced resolution
    pages[0].save(predict_folder / "thumbnailed.tif", save_all=True, append_images=[thumbnail])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images([predict_folder / "camera.jpg", predict_folder / "thumbnailed.tif"])
    assert Image.open(predict_folder / "camera.jpg").n_frames == 2 and "frames (pages)" not in caplog.text
    (predict_folder / "camera.jpg").unlink()
    (predict_folder / "thumbnailed.tif").unlink()
    metadata = predict_folder / "._rgb.png"
    metadata.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    with pytest.raises(CorruptImageError, match=re.escape(f"{metadata}: ") + ".* Fix: it is a macOS metadata file"):
        check_predict_images(sorted(predict_folder.glob("*.png")))
    metadata.unlink()
    # a TIFF PIL cannot decode (32-bit float colour) may be valid: "damaged or incomplete" alone was wrong
    (predict_folder / "float.tif").write_bytes(b"II*\x00" + bytes(64))
    with pytest.raises(CorruptImageError, match=r"float.tif: .* Fix: if it opens in an image viewer, it is a TIFF"):
        check_predict_images([predict_folder / "float.tif"])
    # a notebook's copies under .ipynb_checkpoints were predicted and counted
    copy = write_image(predict_folder / ".ipynb_checkpoints" / "rgb-checkpoint.png", 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images(sorted(predict_folder.rglob("*.png")))
    assert f"1 of 7 images lie in hidden folders ({copy}): they are predicted and counted too. Fix:" in caplog.text


def test_a_16_bit_colour_image_of_fewer_bits_is_named_as_read_dark(tmp_path: Path, caplog) -> None:
    """anomalib's reader keeps a 16-bit colour file's top 8 bits: a 12-bit camera's image was scored 16 times darker
    (a walkthrough's defect: 0.92 -> 0.78), without a word; full-range 16-bit data reads as it should."""
    rng = np.random.default_rng(0)
    twelve = write_png_rgb16(tmp_path / "twelve.png", rng.integers(0, 4096, (16, 16, 3)))
    full = write_png_rgb16(tmp_path / "full.png", rng.integers(0, 65536, (16, 16, 3)))
    assert Image.open(twelve).mode == "RGB" and np.asarray(Image.open(twelve).convert("RGB")).max() == 15
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images([twelve, full])
    assert caplog.messages == [
        f"{twelve}: a 16-bit colour image whose brightest value reads 15 of 255: anomalib's reader keeps the top 8 of "
        "its 16 bits, so data of fewer bits (a 12-bit camera's) reads 16 times darker. Fix: scale it to 8 bits by the "
        "camera's full scale first (value * 255 / 4095 for 12-bit data)."
    ]


def test_the_second_reviews_catches_on_misread_files_and_their_fixes(tmp_path: Path, caplog) -> None:
    """A flat 16-bit colour frame is no 12-bit image, 16-bit RGBA is read dark too, a TIFF whose later page is
    damaged ended in PIL's SyntaxError traceback, a truncated PNG beside an undecodable TIFF was given the TIFF's fix,
    and a tall, thin image was sampled in its first column only."""
    from anomalib_adapted_moe.data.flat_frames import is_flat_image

    rng = np.random.default_rng(0)
    dark = write_png_rgb16(tmp_path / "lights_off.png", np.full((16, 16, 3), 2000))  # flat: its own warning
    rgba = tmp_path / "rgba.png"
    write_png_rgb16(rgba, rng.integers(0, 4096, (16, 16, 4)), colour_type=6)
    assert Image.open(rgba).mode == "RGBA"
    pages = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "two.tif", save_all=True, append_images=pages[1:])
    cut = tmp_path / "cut.tif"
    cut.write_bytes((tmp_path / "two.tif").read_bytes()[: 64 * 64 * 3 + 200])  # page 1 whole, page 2's IFD cut
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_predict_images([dark, rgba, cut, tmp_path / "two.tif"])
    said = "\n".join(caplog.messages)
    assert f"{dark}: a 16-bit" not in said and f"{rgba}: a 16-bit colour image whose brightest value reads 15" in said
    assert f"{cut}: its later pages cannot be read" in said and "anomalib's reader scores its first only" in said
    # an intact file of several pages is not grouped with the damaged one (it was "Likewise ...", with its fix)
    assert f"{tmp_path / 'two.tif'}: holds 2 frames (pages)" in said and "Likewise" not in said
    (tmp_path / "float.tif").write_bytes(b"II*\x00" + bytes(64))
    (tmp_path / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(BadPredictImagesError) as both:
        check_predict_images([tmp_path / "float.tif", tmp_path / "truncated.png"])
    fixes = str(both.value).split("Fix:\n", 1)[1]
    assert "  - TIFFs PIL cannot decode: If it opens in an image viewer" in fixes
    assert "  - damaged files: The file is damaged or incomplete" in fixes
    thin = rng.integers(0, 256, (100_000, 3, 3), dtype=np.uint8)
    thin[:, 0] = 7  # a flat first column
    assert not is_flat_image(Image.fromarray(thin))


def test_distinct_maps_and_no_masks_are_not_warned_about(tmp_path: Path) -> None:
    """A folder of one variant's images draws each map once; a project kept under a folder named ``masks`` (above
    the predicted one) holds no mask; a lone image is a mask only by its name."""
    images = [tmp_path / "masks" / "line" / "good" / "000.png", tmp_path / "masks" / "line" / "hole" / "000.png"]
    assert overwritten_maps(images) == [] and mask_like_files(images) == []
    assert mask_like_files(images[:1]) == [] and mask_like_files([tmp_path / "000_mask.png"]) == [
        tmp_path / "000_mask.png"
    ]
    texture_ad = [tmp_path / "textures" / "cloth" / v / "test" / "good" / "000.png" for v in ("a", "b")]
    assert overwritten_maps(texture_ad, "textures", "cloth") == []  # TextureAD's layout keeps the variant's folder
    assert overwritten_maps(texture_ad) == [texture_ad]


def test_every_bad_image_of_a_predict_folder_is_named_in_one_message(predict_folder: Path) -> None:
    """Three damaged files: all three named at once (fixing one file per run is no way to clear a folder)."""
    bad = [
        damage(predict_folder / name, kind)
        for name, kind in (("rgb.png", "zero_bytes"), ("grey.png", "random_bytes"), ("rgba.png", "truncated"))
    ]
    with pytest.raises(BadPredictImagesError) as info:
        check_predict_images(sorted(predict_folder.glob("*.png")))
    message = str(info.value)
    assert message.startswith("3 of 3 images cannot be predicted")
    assert all(f"  - {path}: cannot be read as an image" in message for path in bad)
    assert message.count("Fix:") == 1


def test_a_folder_with_two_kinds_of_bad_image_gets_each_kinds_fix_by_name(predict_folder: Path) -> None:
    """A damaged file and a 16-bit image: two fixes, each named by the files it is for, not run together."""
    damage(predict_folder / "rgb.png", "random_bytes")
    damage(predict_folder / "grey.png", "sixteen_bit")
    with pytest.raises(BadPredictImagesError) as info:
        check_predict_images(sorted(predict_folder.glob("*.png")))
    fixes = dict(line.removeprefix("  - ").split(": ", 1) for line in str(info.value).split("\nFix:\n")[1].splitlines())
    assert set(fixes) == {"damaged files", "high-bit-depth images"}
    assert fixes["damaged files"].startswith("The file is damaged or incomplete")
    assert fixes["high-bit-depth images"].startswith("Convert it to 8-bit grey or RGB")


# --------------------------------------------------------------------------- anomalib's own datasets (Folder)


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """A user's own images in anomalib's Folder layout: normal images, defective ones and their masks."""
    root = tmp_path / "bolts"
    for i in range(8):
        write_image(root / "good" / f"{i:03d}.png", 40 + 20 * i)
    for i in range(3):
        write_image(root / "defect" / f"{i:03d}.png", 200 + 10 * i)
        write_mask(root / "mask" / f"{i:03d}.png")
    return root


def fit_on_folder(root: Path, results: Path, **folder_args: object) -> tuple:
    """Engine, model and anomalib Folder (``good``, ``defect``, ``mask`` unless ``folder_args`` say otherwise)."""
    from anomalib.data import Folder

    folder_args = {"normal_dir": "good", "abnormal_dir": "defect", "mask_dir": "mask", **folder_args}
    folder = Folder(
        name="bolts",
        root=root,
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
        val_split_mode="same_as_test",
        **folder_args,
    )
    engine = Engine(default_root_dir=results, accelerator="cpu", devices=1, logger=False)
    model = tiny_adapted_moe(num_experts=2, epochs=1)
    engine.fit(model=model, datamodule=folder)
    return engine, model, folder


def test_good_test_images_that_are_copies_of_training_images_are_named(
    tmp_path: Path, folder_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A walkthrough's Folder whose good test images were byte-for-byte copies of its training images tested at image
    AUROC 0.966, exit 0, without a word (only the same path listed twice was refused)."""
    import shutil

    good_test = folder_root / "good_test"
    good_test.mkdir()
    copies = [shutil.copy(folder_root / "good" / name, good_test / f"copy_{name}") for name in ("003.png", "005.png")]
    write_image(good_test / "new.png", 7)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        fit_on_folder(folder_root, tmp_path / "results", normal_test_dir="good_test")
    named = [message for message in caplog.messages if "byte-for-byte" in message]
    assert named == [
        f"2 of 6 test images are byte-for-byte copies of training images ({copies[0]} is "
        f"{folder_root / 'good' / '003.png'}, and 1 more): the model trained on them, so the test metrics read better "
        "than they would on new images. Fix: keep the test images apart from the training ones (Folder: "
        "normal_test_dir and normal_dir; MVTecAD and TextureAD: test/good and train/good)."
    ]


def test_a_validation_split_of_no_image_stops_the_training_before_it_starts(
    tmp_path: Path, folder_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tenth of 8 training images rounds down to none: the thresholds and normalisation, fitted on the validation
    split, stayed NaN without a word and every test image was flagged. With validation turned off on purpose the
    training runs, and test names the unfitted thresholds until validation fits them."""
    from anomalib.data import Folder

    def folder(ratio: float) -> Folder:
        split = {"val_split_mode": "synthetic", "val_split_ratio": ratio, "num_workers": 0}
        return Folder(
            name="bolts", root=folder_root, normal_dir="good", abnormal_dir="defect", mask_dir="mask", **split
        )

    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=r"The validation split holds no image \(Folder: val_split_mode 'synthetic', "):
        engine.fit(model=tiny_adapted_moe(epochs=1), datamodule=folder(0.1))
    assert not list(tmp_path.rglob("*.ckpt"))  # stopped before training
    few = tmp_path / "few"  # from_test: the test split's one defect image stays there, validation gets none
    for i in range(4):
        write_image(few / "good" / f"{i:03d}.png", 40 + 20 * i)
    write_image(few / "defect" / "000.png", 250)
    with pytest.raises(ValueError, match=r"val_split_mode 'from_test'.* Fix: more test images, or --data.val_split_m"):
        engine.fit(
            model=tiny_adapted_moe(epochs=1),
            datamodule=Folder(name="few", root=few, normal_dir="good", abnormal_dir="defect", num_workers=0),
        )

    unvalidated = Engine(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    model = tiny_adapted_moe(epochs=1)
    unvalidated.fit(model=model, datamodule=folder(0.1))
    unfitted = "test: this AdaptedMoE's thresholds and score normalisation were never fitted"
    with caplog.at_level(logging.WARNING):
        engine.test(model=model, datamodule=folder(0.5), verbose=False)
    assert unfitted in caplog.text
    caplog.clear()
    engine.validate(model=model, datamodule=folder(0.5), verbose=False)
    with caplog.at_level(logging.WARNING):
        engine.test(model=model, datamodule=folder(0.5), verbose=False)
    assert "never fitted" not in caplog.text


@pytest.mark.parametrize("where", ["good", "defect"])
def test_a_damaged_image_of_a_folder_dataset_is_named_before_training(
    tmp_path: Path, folder_root: Path, where: str
) -> None:
    """anomalib's reader stopped on "image file is truncated" without naming the file: in the middle of the
    feature pass for a training image, after training for a test image."""
    bad = damage(folder_root / where / "001.png", "truncated")
    with pytest.raises(CorruptImageError, match="cannot be read as an image") as info:
        fit_on_folder(folder_root, tmp_path / "results")
    assert str(bad) in str(info.value)
    assert "move it (and its mask) out of the dataset's folders" in str(info.value)
    assert not list((tmp_path / "results").rglob("*.ckpt"))  # stopped before anything trained


def test_a_mask_of_another_size_in_a_folder_dataset_is_named_with_its_image(tmp_path: Path, folder_root: Path) -> None:
    """anomalib's Folder resized a 16 x 16 mask to its 32 x 32 image without a word (TextureAD refuses it)."""
    mask = write_mask(folder_root / "mask" / "002.png", size=(16, 16))
    with pytest.raises(MaskSizeMismatchError) as info:
        fit_on_folder(folder_root, tmp_path / "results")
    assert str(mask) in str(info.value) and str(folder_root / "defect" / "002.png") in str(info.value)


def test_a_mask_marking_no_pixel_or_most_of_its_image_in_a_folder_dataset_is_named_as_texture_ad_names_it(
    tmp_path: Path, folder_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Folder and MVTecAD read an all-black mask of a defect image as it is, its pixels normal, without a word; and
    inverted masks (the good surface white): a walkthrough's pixel AUROC read 0.37."""
    mask = folder_root / "mask" / "002.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    inverted = [path for path in sorted((folder_root / "mask").glob("*.png")) if path != mask][:2]
    for path in inverted:
        Image.fromarray(np.where(np.asarray(Image.open(path).convert("L")) > 0, 0, 255).astype(np.uint8)).save(path)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        fit_on_folder(folder_root, tmp_path / "results")
    image = folder_root / "defect" / "002.png"
    assert f"{mask}: the mask of the defect image {image} marks no pixel" in caplog.text
    assert "the good test images (Folder's --data.normal_test_dir, MVTecAD's test/good)" in caplog.text  # not test/good
    named = [message for message in caplog.messages if "an inverted mask" in message]
    defect = folder_root / "defect" / inverted[0].name
    assert len(named) == 1 and named[0].startswith(f"{inverted[0]}: the mask of the defect image {defect} marks 94% ")
    assert named[0].endswith(f"Likewise 1 more of the 3 masks ({inverted[1]}).")


def test_a_missing_mask_of_a_folder_dataset_is_named_before_folder_reads_it(tmp_path: Path, folder_root: Path) -> None:
    """Folder's own setup ended in numpy's "cannot assign 2 input values to the 3 output values", no file named:
    the model's ``prepare_data`` runs before it (``FolderLayoutError`` is the model's; numpy's is a plain
    ValueError)."""
    (folder_root / "mask" / "001.png").unlink()
    with pytest.raises(FolderLayoutError) as info:
        fit_on_folder(folder_root, tmp_path / "results")
    assert f"{folder_root / 'defect' / '001.png'}: no mask's name holds '001'" in str(info.value)
    assert "Fix: give every defect image one mask named after it" in str(info.value)


def test_every_image_folder_pairs_with_another_images_mask_is_counted() -> None:
    """Unpadded names (img_1 ... img_12) sort apart from their masks: img_1.png takes img_10_mask.png, whose name
    holds 'img_1', so Folder's name test passes it; a walkthrough's message counted 36 problems of 40."""
    defects = sorted(Path(f"/line/defect/img_{i}.png") for i in range(1, 13))
    masks = sorted(Path(f"/line/mask/img_{i}_mask.png") for i in range(1, 13))
    kind, problems = mask_pairing_problems(defects, masks)
    assert kind == "order" and len(problems) == 4  # img_1, img_10, img_11, img_12
    assert problems[0] == (
        "/line/defect/img_1.png: Folder pairs it with /line/mask/img_10_mask.png (both lists sorted by path), not with "
        "its own /line/mask/img_1_mask.png"
    )
    assert problems[1].endswith("img_11_mask.png (both lists sorted by path), whose name does not hold 'img_10'")


def break_folder(root: Path, how: str) -> list[str]:
    """Break the ``folder_root`` layout one way; the files or folders the error must name."""
    if how == "misnamed mask":
        (root / "mask" / "001.png").rename(root / "mask" / "scratch.png")
        return [str(root / "defect" / "001.png"), str(root / "mask" / "scratch.png")]
    if how == "masks sorted crosswise":  # 1.png sorts before 10.png, but 10_mask.png before 1_mask.png
        for name in ("1", "10"):
            write_image(root / "defect" / f"{name}.png", 250)
            write_mask(root / "mask" / f"{name}_mask.png")
        return [f"{root / 'defect' / '10.png'}: Folder pairs it with {root / 'mask' / '1_mask.png'}"]
    if how == "empty and missing folders":
        for image in (root / "good").iterdir():
            image.unlink()
        (root / "mask").rename(root / "masks")
        return [f"{root / 'good'}: no image in it (--data.normal_dir", f"{root / 'mask'}: no such folder (--data.mask"]
    if how == "many unmasked images":
        for image in (root / "mask").iterdir():
            image.rename(image.with_name(f"m{image.name}"))  # "000" is in "m000": still paired
        for i in range(3, 10):
            write_image(root / "defect" / f"{i:03d}.png", 250)
        return [str(root / "defect" / "007.png"), "... and 2 more like these"]
    assert how == "intact"
    return []


@pytest.mark.parametrize(
    "how", ["intact", "misnamed mask", "masks sorted crosswise", "empty and missing folders", "many unmasked images"]
)
def test_the_folder_check_refuses_exactly_what_anomalibs_folder_refuses(folder_root: Path, how: str) -> None:
    """Every problem named at once, each with its file; and the check passes where Folder reads the folders (a
    check stricter than Folder would refuse a user's good dataset)."""
    from anomalib.data import Folder
    from anomalib.data.errors import MisMatchError

    named = break_folder(folder_root, how)
    folder = Folder(name="bolts", root=folder_root, normal_dir="good", abnormal_dir="defect", mask_dir="mask")
    try:
        folder.setup()
    except (ValueError, RuntimeError, FileNotFoundError, MisMatchError):
        folder_fails = True
    else:
        folder_fails = False
    assert folder_fails == bool(named)
    if not named:
        check_folder_layout(folder)
        return
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    assert all(each in str(info.value) for each in named), str(info.value)
    assert str(info.value).startswith(f"{folder_root}: anomalib's Folder cannot read this dataset as given")


def test_jpeg_masks_of_a_folder_are_named_in_a_warning(folder_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """JPEG's compression rings read as defect (any value above 0): a walkthrough's masks held 6391 defect pixels
    where 4272 were drawn, pixel AUROC 0.757 against 0.799 with the same masks as PNG, without a word."""
    from anomalib.data import Folder

    for mask in sorted((folder_root / "mask").glob("*.png")):
        Image.open(mask).save(mask.with_suffix(".jpg"), quality=75)
        mask.unlink()
    folder = Folder(name="bolts", root=folder_root, normal_dir="good", abnormal_dir="defect", mask_dir="mask")
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_folder_layout(folder)
        check_folder_layout(folder)  # anomalib train checks at fit, then at test: named once
    said = f"{folder_root / 'mask' / '000.jpg'} (3 of 3 masks are JPEG): anomalib reads any mask value above 0"
    assert said in caplog.text and "Fix: save the masks as PNG" in caplog.text
    assert len([message for message in caplog.messages if "masks are JPEG" in message]) == 1


def test_a_folder_path_with_a_letter_anomalibs_folder_refuses_is_named_with_that_reason(folder_root: Path) -> None:
    """anomalib's Folder takes printable ASCII only ('Path contains non-printable characters' for an 'ä'); the
    check said so and told the user to point the setting at a folder that exists, which it did."""
    from anomalib.data import Folder

    (folder_root / "good").rename(folder_root / "gut ä")
    folder = Folder(name="bolts", root=folder_root, normal_dir="gut ä", abnormal_dir="defect", mask_dir="mask")
    with pytest.raises(ValueError, match="non-printable"):  # what Folder itself says
        folder.setup()
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    message = str(info.value)
    assert f"{folder_root / 'gut ä'}: holds 'ä' (--data.normal_dir)" in message
    assert "Fix: rename each folder named" in message and "point each setting" not in message


@pytest.mark.parametrize(
    ("good_images", "split_args", "empty"),
    [
        (4, {}, True),  # test_split_ratio 0.2 of 4 good images rounds down to none
        (5, {}, False),
        (8, {"test_split_mode": "none"}, True),
        (3, {"test_split_mode": "synthetic"}, True),
        (3, {"val_split_mode": "synthetic"}, False),  # validation from training images: no test image needed
        (8, {"test_split_mode": "none", "normal_test_dir": "good_test"}, True),  # none drops the good test images
        (8, {"normal_test_dir": "good_test"}, False),
    ],
)
def test_a_validation_split_drawn_from_an_empty_test_split_is_refused_where_folder_fails(
    tmp_path: Path, good_images: int, split_args: dict, empty: bool
) -> None:
    """Good images only, and few of them: Folder's validation split from the test split ended in anomalib's "not
    enough values to unpack (expected 2, got 0)", no setting named."""
    from anomalib.data import Folder

    for i in range(good_images):
        write_image(tmp_path / "good" / f"{i:03d}.png", 40 + 20 * i)
        write_image(tmp_path / "good_test" / f"{i:03d}.png", 45 + 20 * i)
    folder = Folder(name="bolts", root=tmp_path, normal_dir="good", **split_args)
    try:
        folder.setup()
    except ValueError as error:
        assert "not enough values to unpack" in str(error)
        folder_fails = True
    else:
        folder_fails = False
    assert folder_fails == empty
    if not folder_fails:
        check_folder_layout(folder)
        return
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    assert "the test split holds no image" in str(info.value)
    assert "or validate on held-out training images with synthetic defects (--data.val_split_mode synthetic)" in str(
        info.value
    )


def test_masks_without_defect_images_are_refused_where_folder_drops_them(folder_root: Path) -> None:
    """A mask_dir given, abnormal_dir forgotten: Folder tested on good images only, the masks unread, without a word."""
    from anomalib.data import Folder

    folder = Folder(name="bolts", root=folder_root, normal_dir="good", mask_dir="mask")
    folder.setup()
    assert not (folder.test_data.samples.label_index == 1).any()  # the silent answer: no defect tested
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    assert f"{folder_root / 'mask'}: 3 masks (--data.mask_dir) but no --data.abnormal_dir" in str(info.value)


def test_folders_given_through_a_link_are_sorted_as_folder_sorts_them(tmp_path: Path) -> None:
    """Folder resolves each folder (a link followed) before sorting: the check sorted the paths as given, paired
    0link/1.png with m1/1_mask.png, and passed a layout Folder refused."""
    from anomalib.data import Folder
    from anomalib.data.errors import MisMatchError

    root = tmp_path.resolve() / "line"
    write_image(root / "good" / "000.png")
    write_image(root / "zdir" / "1.png", 250)
    write_image(root / "a" / "2.png", 250)
    write_mask(root / "m1" / "1_mask.png")
    write_mask(root / "m2" / "2_mask.png")
    (root / "0link").symlink_to(root / "zdir")
    defects, masks = [root / "0link", root / "a"], [root / "m1", root / "m2"]
    folder = Folder(name="line", root=root, normal_dir="good", abnormal_dir=defects, mask_dir=masks)
    with pytest.raises(MisMatchError):
        folder.setup()
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    assert f"{root / 'a' / '2.png'}: Folder pairs it with {root / 'm1' / '1_mask.png'}" in str(info.value)


def mvtec_category(root: Path, how: str) -> tuple[Path, list[str]]:
    """A small MVTecAD-layout category under ``root`` broken one way; the category folder and what must be named."""
    category = root / "bolts"
    for i in range(8):
        write_image(category / "train" / "good" / f"{i:03d}.png", 40 + 20 * i)
    write_image(category / "test" / "good" / "000.png", 50)
    for defect in ("crack", "hole"):  # each defect folder numbered from 000, as MVTec AD's are
        for i in range(3):
            write_image(category / "test" / defect / f"{i:03d}.png", 200 + 10 * i)
            write_mask(category / "ground_truth" / defect / f"{i:03d}_mask.png")
    if how == "missing mask":  # crack/002 has no mask, though hole/002_mask.png holds its name
        (category / "ground_truth" / "crack" / "002_mask.png").unlink()
        return category, [f"{category / 'test' / 'crack' / '002.png'}: no mask's name holds '002'"]
    if how == "no ground_truth":
        shutil.rmtree(category / "ground_truth" / "hole")
        return category, [f"{category / 'ground_truth' / 'hole'}: no mask for the 3 images of test/hole"]
    if how == "one mask for three images":  # pandas' "Must have equal len keys", as for a missing mask
        for mask in (category / "ground_truth" / "hole").iterdir():
            mask.unlink()
        only = write_mask(category / "ground_truth" / "hole" / "000_001_002_mask.png")
        return category, [f"{only}: the one mask of 3 defect images; MVTecAD cannot pair them"]
    if how == "linked training folder":
        (category / "train" / "good").rename(root / "good")
        (category / "train" / "good").symlink_to(root / "good")
        return category, [f"{category / 'train' / 'good'}: a linked folder in {category}; MVTecAD does not look"]
    if how == "linked training images":  # a copy made of links, as a user may make it
        elsewhere = root / "elsewhere"
        elsewhere.mkdir()
        for image in sorted((category / "train" / "good").iterdir())[:4]:
            image.rename(elsewhere / image.name)
            image.symlink_to(elsewhere / image.name)
        link = category / "train" / "good" / "000.png"
        return category, [f"{link}: a link to {elsewhere / '000.png'}, outside {category} (4 of its 21 images"]
    if how == "jpg and Png training images":  # a variant saved another way: left out, its expert with it
        for image in sorted((category / "train" / "good").iterdir())[:3]:
            Image.open(image).save(image.with_suffix(".jpg"))
            image.unlink()
        (category / "train" / "good" / "007.png").rename(category / "train" / "good" / "007.Png")
        good = category / "train" / "good"
        return category, [f"{good / '000.jpg'}: MVTecAD would skip it (.jpg)", f"{good / '007.Png'}: MVTecAD would"]
    if how == "no training images":  # "num_samples should be a positive integer value, but got num_samples=0"
        shutil.rmtree(category / "train")
        return category, [f"{category / 'train' / 'good'}: no .png image there (the good training images)"]
    assert how == "intact"
    return category, []


@pytest.mark.parametrize(
    "how",
    [
        "intact",
        "missing mask",
        "no ground_truth",
        "one mask for three images",
        "linked training images",
        "linked training folder",
        "jpg and Png training images",
        "no training images",
    ],
)
def test_an_mvtec_category_is_checked_where_mvtecad_fails_or_drops_files(tmp_path: Path, how: str) -> None:
    """MVTecAD pairs sorted masks as Folder does: a missing mask ended in pandas' "Must have equal len keys", no
    file named; images linked from outside the category folder were dropped without a word."""
    from anomalib.data import MVTecAD

    category, named = mvtec_category(tmp_path.resolve(), how)
    mvtec = MVTecAD(root=category.parent, category=category.name, num_workers=0)
    try:
        mvtec.setup()
    except ValueError:
        outcome = "fails"
    else:
        outcome = "drops" if len(mvtec.train_data) + len(mvtec.test_data) < 15 else "reads"  # validation: the test set
    # no training images: setup reads none, and the training loader fails (num_samples=0)
    drops = ("linked training images", "linked training folder", "jpg and Png training images", "no training images")
    assert outcome == ("reads" if how == "intact" else "drops" if how in drops else "fails")
    if not named:
        check_mvtec_layout(mvtec)
        return
    with pytest.raises(FolderLayoutError) as info:
        check_mvtec_layout(mvtec)
    assert str(info.value).startswith(f"{category}: anomalib's MVTecAD cannot read this category as given")
    assert all(each in str(info.value) for each in named), str(info.value)


def test_an_mvtec_path_with_a_letter_anomalib_refuses_is_named_with_a_rename_fix(tmp_path: Path) -> None:
    """MVTecAD's setup ended in a 210-line traceback: "Path contains non-printable characters"."""
    from anomalib.data import MVTecAD

    category, _ = mvtec_category(tmp_path / "Prüfung", "intact")
    mvtec = MVTecAD(root=category.parent, category=category.name, num_workers=0)
    with pytest.raises(FolderLayoutError) as info:
        check_mvtec_layout(mvtec)
    assert f"{category}: holds 'ü', which anomalib refuses in a path" in str(info.value)
    assert "the path ASCII letters only" in str(info.value)


def test_an_mvtec_category_without_good_test_images_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """anomalib fills the test split with a share of the training images: tested from a checkpoint with another
    seed, 5 of 9 "good test" images were ones it trained on (a walkthrough), exit 0."""
    from anomalib.data import MVTecAD

    category, _ = mvtec_category(tmp_path, "intact")
    shutil.rmtree(category / "test" / "good")
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        check_mvtec_layout(MVTecAD(root=category.parent, category=category.name, num_workers=0))
    assert f"{category}: no good test image (test/good): anomalib fills the test split" in caplog.text


def test_an_mvtec_category_missing_a_mask_stops_the_training_before_it_starts(tmp_path: Path) -> None:
    from anomalib.data import MVTecAD

    category, named = mvtec_category(tmp_path, "missing mask")
    mvtec = MVTecAD(root=category.parent, category=category.name, num_workers=0, val_split_mode="synthetic")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(FolderLayoutError, match=named[0]):
        engine.fit(model=tiny_adapted_moe(epochs=1), datamodule=mvtec)


@pytest.mark.parametrize("stage", ["fit", "test"])
def test_an_mvtec_category_typo_from_python_is_refused_before_anomalib_downloads(
    tmp_path: Path, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From Python, MVTecAD's ``prepare_data`` (the first hook Lightning runs) downloaded the whole MVTecAD for a
    category that is neither a folder under the root nor one of MVTecAD's own; only the stock command checked it."""
    from anomalib.data import MVTecAD

    monkeypatch.setattr(MVTecAD, "prepare_data", lambda self: pytest.fail("MVTecAD's download started"))
    category, _ = mvtec_category(tmp_path, "missing mask")
    mvtec = MVTecAD(root=category.parent, category=category.name + "x", num_workers=0)
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    said = f"category '{category.name}x': no folder {category}x, and MVTecAD has no such category"
    with pytest.raises(ValueError, match=re.escape(said) + ".*Fix: give a category folder under root"):
        getattr(engine, stage)(model=tiny_adapted_moe(epochs=1), datamodule=mvtec)


def test_a_linked_folder_inside_a_folder_setting_is_named_where_folder_leaves_it_unread(tmp_path: Path) -> None:
    """anomalib lists a setting's images with glob("**/*"), which does not go into a linked folder: its images were
    left out without a word."""
    from anomalib.data import Folder

    root = tmp_path.resolve()
    for i in range(8):
        write_image(root / "good" / f"{i:03d}.png", 40 + 20 * i)
        write_image(root / "camera_2" / f"{i:03d}.png", 50 + 20 * i)
    (root / "good" / "camera_2").symlink_to(root / "camera_2")
    folder = Folder(name="line", root=root, normal_dir="good", val_split_mode="synthetic")
    folder.setup()
    assert len(folder.train_data) + len(folder.val_data) + len(folder.test_data) == 8  # camera_2's 8 unread
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    named = (
        f"{root / 'good' / 'camera_2'}: a linked folder in --data.normal_dir; Folder does not look into it (8 images)"
    )
    assert named in str(info.value) and "give the linked folder as a setting of its own" in str(info.value)


def test_one_mask_for_several_defect_images_is_refused_where_folder_gives_it_to_each(folder_root: Path) -> None:
    """numpy broadcasts a single mask to every defect image: Folder read this layout without a word, every defect
    drawn where one mask says."""
    import pandas as pd
    from anomalib.data import Folder

    for mask in (folder_root / "mask").iterdir():
        mask.unlink()
    only = write_mask(folder_root / "mask" / "000_001_002.png")
    folder = Folder(name="bolts", root=folder_root, normal_dir="good", abnormal_dir="defect", mask_dir="mask")
    folder.setup()
    samples = pd.concat([folder.test_data.samples, folder.val_data.samples])  # from_test moved some to validation
    defects = samples[samples.label_index == 1]
    assert set(defects.mask_path) == {str(only)} and len(defects) == 3  # the silent wrong answer
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    assert f"{only}: the one mask of 3 defect images; Folder would give it to each" in str(info.value)


def test_a_mask_named_unlike_the_others_is_named_first_with_the_sort_order_fix(folder_root: Path) -> None:
    """One mask renamed (z001.png among 000.png, 002.png) sorts away from its image and shifts the pairs between:
    the walkthrough's real case listed 57 crosswise pairs and hid the renamed file among them."""
    from anomalib.data import Folder

    renamed = (folder_root / "mask" / "001.png").rename(folder_root / "mask" / "z001.png")
    folder = Folder(name="bolts", root=folder_root, normal_dir="good", abnormal_dir="defect", mask_dir="mask")
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(folder)
    lines = str(info.value).splitlines()
    assert lines[1] == f"  - {renamed}: named 'z{{}}.png', the other masks '{{}}.png'"
    assert f"{folder_root / 'defect' / '001.png'}: Folder pairs it with {folder_root / 'mask' / '002.png'}" in lines[2]
    assert lines[-1].startswith("Fix: name every mask alike")


@pytest.mark.parametrize("inside", ["masks in the defect folder", "the training folder holding the others"])
def test_a_folder_inside_another_is_refused_where_folder_would_read_its_files_twice(
    folder_root: Path, inside: str
) -> None:
    """Folder lists files recursively: masks under the defect folder became defect images too (each matched its own
    name), and a normal_dir holding the test folders trained on the test images, without a word."""
    from anomalib.data import Folder

    if inside == "masks in the defect folder":
        (folder_root / "mask").rename(folder_root / "defect" / "masks")
        args = {"normal_dir": "good", "abnormal_dir": "defect", "mask_dir": "defect/masks"}
        named = f"{folder_root / 'defect' / 'masks' / '000.png'}: listed by both --data.abnormal_dir and --data.mask"
    else:
        args = {"normal_dir": ".", "abnormal_dir": "defect", "mask_dir": "mask"}
        named = f"{folder_root / 'defect' / '000.png'}: listed by both --data.normal_dir and --data.abnormal_dir (3"
    with pytest.raises(FolderLayoutError) as info:
        check_folder_layout(Folder(name="bolts", root=folder_root, **args))
    assert named in str(info.value)


def test_training_then_testing_decodes_each_file_of_a_folder_dataset_once(
    tmp_path: Path, folder_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`anomalib train` tests after fitting: the test images (and a validation split taken from them) were
    decoded again at the test, a second pass over the whole test set before any prediction."""
    decoded: list[Path] = []

    def counting_verify(path: Path, **kwargs) -> tuple[int, int]:
        decoded.append(Path(path))
        return verify_image_file(path, **kwargs)

    monkeypatch.setattr(predict_check, "verify_image_file", counting_verify)
    engine, model, folder = fit_on_folder(folder_root, tmp_path / "results")
    engine.test(model=model, datamodule=folder)
    files = [*folder_root.glob("good/*.png"), *folder_root.glob("defect/*.png"), *folder_root.glob("mask/*.png")]
    assert sorted(decoded) == sorted(files)  # each image and mask once


def test_a_file_changed_after_training_is_checked_again_before_testing(tmp_path: Path, folder_root: Path) -> None:
    engine, model, folder = fit_on_folder(folder_root, tmp_path / "results")
    bad = damage(folder_root / "defect" / "001.png", "truncated")
    with pytest.raises(CorruptImageError, match="cannot be read as an image") as info:
        engine.test(model=model, datamodule=folder)
    assert str(bad) in str(info.value)


def test_a_damaged_good_image_of_a_folder_with_synthetic_validation_is_named_before_folder_reads_it(
    tmp_path: Path, folder_root: Path
) -> None:
    """Folder's setup decodes the good images it makes synthetic defects from: a text file named .png there ended in
    a 250-line traceback (PIL's "cannot identify image file"), or in the model's one-line error, as the split fell
    (anomalib's default val_split_ratio holds out half)."""
    from anomalib.data import Folder

    # five of eight: whichever half the split holds out for validation holds one of them
    bad = [damage(folder_root / "good" / f"{i:03d}.png", "random_bytes") for i in range(5)]
    folder = Folder(
        name="bolts",
        root=folder_root,
        normal_dir="good",
        abnormal_dir="defect",
        mask_dir="mask",
        val_split_mode="synthetic",
        num_workers=0,
    )
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(CorruptImageError, match="cannot be read as an image") as info:
        engine.fit(model=tiny_adapted_moe(num_experts=2, epochs=1), datamodule=folder)
    assert all(str(path) in str(info.value) for path in bad) and "Fix:" in str(info.value)


def test_a_folder_test_split_of_defective_images_only_is_named_before_its_image_auroc_of_0(
    tmp_path: Path, folder_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No good test image (test_split_mode none): anomalib reported image AUROC 0.0 and exited 0, with torchmetrics'
    "No negative samples" warning only. TextureAD refuses such a split itself."""
    engine, model, folder = fit_on_folder(folder_root, tmp_path / "results", test_split_mode="none")
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        engine.test(model=model, datamodule=folder)
    said = "test: the test split holds only defective images (3): image AUROC and F1 are undefined (anomalib reports"
    assert said in caplog.text and "Fix: add good test images (Folder: --data.normal_test_dir" in caplog.text


def test_a_test_split_of_good_images_only_is_named_and_a_mixed_one_is_not() -> None:
    import pandas as pd

    from anomalib_adapted_moe.data.predict_check import one_kind_of_test_image

    def dataset(labels: list[int]) -> SimpleNamespace:
        return SimpleNamespace(samples=pd.DataFrame({"label_index": labels}))

    assert one_kind_of_test_image(dataset([0, 0])).startswith("the test split holds only good images (2): image and")
    assert one_kind_of_test_image(dataset([0, 1])) is None
    assert one_kind_of_test_image(SimpleNamespace(samples=None)) is None


@pytest.mark.parametrize("features", ["cached", "live"])
def test_a_grey_frame_among_the_training_images_of_a_folder_is_named_by_its_expert_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, features: str
) -> None:
    """A discovered expert of one image (a grey frame, another camera) was warned about by its cluster number only:
    the user was told to look for odd images in the training folder, not which. A random pixel augmentation
    trains on live features instead of the cache: the files are named there too."""
    from torchvision.transforms import v2

    root = tmp_path / "bolts"
    for i in range(8):
        write_image(root / "good" / f"{i:03d}.png", 40 + i)
    grey = root / "good" / "frame.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(grey)
    for i in range(2):
        write_image(root / "good_test" / f"{i:03d}.png", 90 + i)
        write_image(root / "defect" / f"{i:03d}.png", 200 + i)
    augmentations = v2.ColorJitter(brightness=0.05) if features == "live" else None
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe"):
        fit_on_folder(
            root, tmp_path / "results", normal_test_dir="good_test", mask_dir=None, train_augmentations=augmentations
        )
    assert ("Feature cache bypassed" in caplog.text) == (features == "live")
    warnings = [record.getMessage() for record in caplog.records if "Discovered expert" in record.getMessage()]
    assert len(warnings) == 1 and f"has 1 training image(s) of 9: {grey}." in warnings[0]


def test_every_bad_file_of_a_dataset_split_is_named_in_one_message(folder_root: Path) -> None:
    images = sorted((folder_root / "defect").glob("*.png"))
    damage(images[0], "zero_bytes")
    damage(images[1], "sixteen_bit")
    masks = [str(folder_root / "mask" / path.name) for path in images]
    write_mask(Path(masks[2]), size=(16, 16))
    with pytest.raises(BadPredictImagesError) as info:
        check_dataset_files(images, masks, "test")
    message = str(info.value)
    assert message.startswith("3 of 3 test images or their masks cannot be read as they are, so the run stopped")
    assert all(str(path) in message for path in images)
    assert "damaged files:" in message and "high-bit-depth images:" in message and "masks of another size:" in message


def test_bad_files_of_the_training_and_test_splits_are_named_in_one_message(tmp_path: Path, folder_root: Path) -> None:
    """A 16-bit image among a Folder's good training images and one among its test images were named one run after
    the other (the training split's first)."""
    write_image(folder_root / "good_test" / "000.png", 90)
    bad = [
        damage(folder_root / "good" / "005.png", "sixteen_bit"),
        damage(folder_root / "defect" / "001.png", "zero_bytes"),
    ]
    with pytest.raises(BadPredictImagesError) as info:
        fit_on_folder(folder_root, tmp_path / "results", normal_test_dir="good_test")
    message = str(info.value)
    assert message.startswith("2 of 12 training, validation and test images cannot be read as they are")
    assert all(str(path) in message for path in bad)
    assert "or use TextureAD, which scales 16-bit images" in message  # not "predict through": this is training


def test_a_damaged_mask_of_an_anomalib_dataset_gets_a_masks_fix(folder_root: Path) -> None:
    """It got a Texture AD copy's fix (extract it again from Hugging Face, SyntheticTextureAD's cache, "or delete it
    (and its mask)")."""
    images = sorted((folder_root / "defect").glob("*.png"))
    masks = [folder_root / "mask" / path.name for path in images]
    damage(masks[1], "random_bytes")
    with pytest.raises(CorruptImageError) as info:
        check_dataset_files(images, masks, "test")
    message = str(info.value)
    assert message.startswith(f"{masks[1]}: cannot be read as an image")
    assert "Fix: the mask is damaged or incomplete" in message and "Hugging Face" not in message


def test_only_a_16_bit_image_is_pointed_to_texture_ad_which_refuses_a_float_one_too() -> None:
    from anomalib_adapted_moe.data.predict_check import refuse_high_bit_depth

    with pytest.raises(HighBitDepthImageError) as sixteen:
        refuse_high_bit_depth("frame.png", "I;16")
    assert "or use TextureAD, which scales 16-bit images." in str(sixteen.value)
    with pytest.raises(HighBitDepthImageError) as floating:
        refuse_high_bit_depth("frame.tif", "F")
    assert "frame.tif" in str(floating.value) and "Fix: convert it to 8-bit" in str(floating.value)
    assert "TextureAD" not in str(floating.value)
    # a float image's own words: "every value above 255 becomes white" and ">> 8" (which fails on floats) were a
    # 16-bit image's
    assert "values in [0, 1] read black" in str(floating.value) and ">> 8" not in str(floating.value)
    assert "* 255).round()" in str(floating.value) and "above 255" in str(sixteen.value)


@pytest.mark.parametrize(
    ("defects", "masks", "said"),
    [
        (
            ["1", "2", "3"],
            ["1_2", "3"],
            ["3 defect images but 2 masks; /m/1_2.png: the name holds 2 defect images' (/d/1.png, /d/2.png)"],
        ),
        (
            ["1", "2"],
            ["1_mask", "12_mask", "2_mask"],
            [
                "2 defect images but 3 masks; /d/1.png: its name is in 2 masks' (/m/12_mask.png, /m/1_mask.png)",
                "/d/2.png: its name is in 2 masks' (/m/12_mask.png, /m/2_mask.png)",
            ],
        ),
        (  # an image saved twice, as .png and .jpg
            ["025.png", "025.jpg", "026.png"],
            ["025", "026"],
            ["3 defect images but 2 masks; /m/025.png: the name holds 2 defect images' (/d/025.jpg, /d/025.png)"],
        ),
    ],
)
def test_counts_that_differ_where_every_name_has_a_partner_name_the_files_each_way(
    defects: list[str], masks: list[str], said: list[str]
) -> None:
    """Both ways were worded "some image's name is in several masks' names", then named an example file
    (000_001.png) instead of the dataset's: an image saved as .png and .jpg shared its mask unnamed. The counts lead
    the first file's line: as a line of their own, the message's "(N problems)" counted them as one."""
    from anomalib_adapted_moe.data.folder_layout import mask_pairing_problems

    kind, problems = mask_pairing_problems(
        sorted(Path(f"/d/{name}" if "." in name else f"/d/{name}.png") for name in defects),
        sorted(Path(f"/m/{name}.png") for name in masks),
    )
    assert kind == "masks" and problems == said


def test_copies_of_uncompressed_images_of_one_size_are_found_reading_their_heads_first(tmp_path: Path) -> None:
    """Uncompressed images of one camera (BMP) all share a size: each is compared by its first 64 kB before a whole
    read (5000 of 3 MB were read whole), and a copy is still found, a file alike at its head but not after not."""
    from anomalib_adapted_moe.data import test_copies

    rng = np.random.default_rng(0)
    training = []
    for i in range(3):
        training.append(tmp_path / f"train_{i}.bmp")
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(training[-1])
    copy = tmp_path / "test_copy.bmp"
    copy.write_bytes(training[1].read_bytes())
    tail = bytearray(training[2].read_bytes())
    tail[-1] ^= 0xFF  # the same head, another last pixel
    (tmp_path / "test_tail.bmp").write_bytes(bytes(tail))
    other = tmp_path / "test_other.bmp"
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(other)
    whole_reads = []
    digest = test_copies._digest

    def counted(path: Path | str, head: bool) -> str | None:
        whole_reads.extend([] if head else [Path(path).name])
        return digest(path, head)

    with mock.patch.object(test_copies, "_digest", counted):
        found = test_copies.copies_of_training_images(training, [copy, tmp_path / "test_tail.bmp", other])
    assert found == [(str(copy), str(training[1]))]
    assert sorted(whole_reads) == ["test_copy.bmp", "test_tail.bmp", "train_1.bmp", "train_2.bmp"]
