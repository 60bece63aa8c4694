"""TextureAD: layout parsing, subclass ids through the dataloader, validation split, bad input, ``--check``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils import ValSplitMode
from conftest import make_subclass, tiny_synthetic_datamodule, write_image, write_mask, write_png_rgb16
from PIL import Image

from anomalib_adapted_moe.data import SubclassImageBatch, SubclassImageItem, TextureAD, TextureADDataset
from anomalib_adapted_moe.data.texture_ad import (
    CorruptImageError,
    EmptyTestSetError,
    EmptyTrainingSetError,
    MaskSizeMismatchError,
    MissingMaskError,
    OrphanMaskError,
    TextureADLayoutError,
    TextureADNotFoundError,
    UnknownSubclassError,
    UnsupportedPixelFormatError,
    read_binary_mask,
    read_image_tensor,
)
from anomalib_adapted_moe.data.texture_ad.check import main as check_main
from anomalib_adapted_moe.data.texture_ad.files import mask_warning

HF_DATASET = "texture-ad/Texture-AD-Benchmark"


def _datamodule(root: Path, category: str = "cloth", **kwargs) -> TextureAD:
    kwargs = {"train_batch_size": 16, "eval_batch_size": 16, "num_workers": 0, "seed": 0, **kwargs}
    return TextureAD(root=root, category=category, **kwargs)


def _item_for(dataset: TextureADDataset, path: Path) -> SubclassImageItem:
    index = dataset.samples.index[dataset.samples.image_path == str(path)][0]
    return dataset[int(index)]


# --------------------------------------------------------------------------- layout parsing


def test_samples_table_has_anomalib_columns_subclass_and_both_mask_namings(texture_ad_root: Path) -> None:
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="test")
    samples = dataset.samples
    for column in ("image_path", "split", "label", "label_index", "mask_path", "subclass", "subclass_id"):
        assert column in samples.columns
    assert samples.attrs["task"] == "segmentation"
    assert set(samples.split) == {"test"}
    assert len(samples) == 6  # 3 subclasses x (1 good + 1 hole)

    defects = samples[samples.label_index == 1].set_index("subclass")
    assert defects.loc["fabric_a", "mask_path"].endswith("fabric_a/ground_truth/hole/000_mask.png")
    assert defects.loc["fabric_b", "mask_path"].endswith("fabric_b/ground_truth/hole/000.png")  # same-name mask
    assert defects.loc["fabric_b", "image_path"].endswith("000.JPG")  # upper-case extension accepted
    assert (samples[samples.label_index == 0].mask_path == "").all()


@pytest.mark.parametrize("kind", ["L", "L1", "RGB", "RGBA", "I;16", "P"])
def test_mask_of_any_format_reaches_the_item_as_binary(tmp_path: Path, kind: str) -> None:
    category = tmp_path / "root" / "cloth"
    make_subclass(category, "fabric_a", train=1, mask_kind=kind)
    dataset = TextureADDataset(root=tmp_path / "root", category="cloth", split="test")
    item = _item_for(dataset, category / "fabric_a" / "test" / "hole" / "000.png")

    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[:8, :8] = True
    assert item.gt_mask is not None
    assert set(torch.unique(item.gt_mask.to(torch.uint8)).tolist()) <= {0, 1}
    assert torch.equal(item.gt_mask.bool(), expected)


def test_read_binary_mask_keeps_values_grey_conversion_loses(tmp_path: Path) -> None:
    rgb = write_mask(tmp_path / "rgb.png", "RGB")
    assert np.asarray(Image.open(rgb).convert("L")).max() == 0  # what a plain grey read would see
    assert read_binary_mask(rgb).sum() == 64


def test_sixteen_bit_image_is_scaled_not_clipped(tmp_path: Path) -> None:
    array = np.full((4, 4), 32768, np.uint16)
    Image.fromarray(array).save(tmp_path / "img16.png")
    image = read_image_tensor(tmp_path / "img16.png")
    assert image.shape == (3, 4, 4)
    assert torch.allclose(image, torch.full_like(image, 32768 / 65535))


def test_unseen_subclass_is_test_only_with_id_minus_one(texture_ad_root: Path) -> None:
    datamodule = _datamodule(texture_ad_root)
    datamodule.setup()
    assert datamodule.train_subclasses == ["fabric_a", "fabric_b"]
    assert datamodule.unseen_subclasses == ["fabric_c"]

    for subset in (datamodule.train_data, datamodule.val_data):
        assert "fabric_c" not in set(subset.samples.subclass)
        assert (subset.samples.subclass_id >= 0).all()
    test = datamodule.test_data.samples
    assert set(test[test.subclass == "fabric_c"].subclass_id) == {-1}
    assert set(test[test.subclass == "fabric_b"].subclass_id) == {1}
    item = _item_for(datamodule.test_data, texture_ad_root / "cloth" / "fabric_c" / "test" / "good" / "000.png")
    assert item.subclass_id.dtype == torch.long
    assert int(item.subclass_id) == -1
    assert item.subclass_name == "fabric_c"


def test_subclass_id_survives_the_dataloader_into_the_training_batch(texture_ad_root: Path) -> None:
    datamodule = _datamodule(texture_ad_root, val_split_mode="none")
    datamodule.setup()
    batches = list(datamodule.train_dataloader())
    assert all(isinstance(batch, SubclassImageBatch) for batch in batches)
    ids = torch.cat([batch.subclass_id for batch in batches])
    names = [name for batch in batches for name in batch.subclass_name]
    assert ids.dtype == torch.long
    assert ids.shape == (6,)
    assert sorted(ids.tolist()) == [0, 0, 0, 1, 1, 1]
    assert names == [datamodule.train_subclasses[i] for i in ids.tolist()]

    test_batch = next(iter(datamodule.test_dataloader()))
    assert isinstance(test_batch, SubclassImageBatch)
    assert -1 in test_batch.subclass_id.tolist()


def test_split_json_trains_seen_and_tests_unseen_only(split_json_root: Path) -> None:
    datamodule = _datamodule(split_json_root, category="wafer")
    datamodule.setup()
    assert datamodule.train_subclasses == ["wafer_1", "wafer_2"]
    train_and_val = set(datamodule.train_data.samples.subclass) | set(datamodule.val_data.samples.subclass)
    assert train_and_val == {"wafer_1", "wafer_2"}  # wafer_3 has train/good, but is unseen
    test = datamodule.test_data.samples
    assert set(test[test.subclass == "wafer_3"].subclass_id) == {-1}


def test_explicit_lists_override_split_json(split_json_root: Path) -> None:
    datamodule = _datamodule(
        split_json_root, category="wafer", train_subclasses=["wafer_3"], test_subclasses=["wafer_1", "wafer_3"]
    )
    datamodule.setup()
    assert datamodule.train_subclasses == ["wafer_3"]
    assert set(datamodule.train_data.samples.subclass) == {"wafer_3"}
    test = datamodule.test_data.samples
    assert set(test.subclass) == {"wafer_1", "wafer_3"}
    assert set(test[test.subclass == "wafer_1"].subclass_id) == {-1}
    assert set(test[test.subclass == "wafer_3"].subclass_id) == {0}


def test_category_folder_case_is_forgiven(texture_ad_root: Path) -> None:
    (texture_ad_root / "cloth").rename(texture_ad_root / "Cloth")  # as in the Cloth.zip archive
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="train")
    assert len(dataset) == 6


def test_datamodule_parses_from_anomalib_cli_arguments(texture_ad_root: Path) -> None:
    from anomalib.data import AnomalibDataModule
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    args = ["--data", "TextureAD", "--data.root", str(texture_ad_root), "--data.category", "cloth"]
    args += ["--data.train_subclasses", "[fabric_b]"]
    datamodule = parser.instantiate_classes(parser.parse_args(args)).data
    assert isinstance(datamodule, TextureAD)
    assert datamodule.num_workers == 2
    assert datamodule.val_split_mode == ValSplitMode.SYNTHETIC
    datamodule.setup()
    assert datamodule.train_subclasses == ["fabric_b"]


# --------------------------------------------------------------------------- validation split


def test_synthetic_validation_uses_train_images_of_every_subclass_and_never_test(tmp_path: Path) -> None:
    category = tmp_path / "root" / "cloth"
    for name in ("s1", "s2", "s3"):
        make_subclass(category, name, train=2)
    datamodule = _datamodule(tmp_path / "root", val_split_ratio=0.2)
    datamodule.setup()

    train = datamodule.train_data.samples
    val = datamodule.val_data.samples
    assert sorted(train.subclass) == ["s1", "s2", "s3"]  # each kept one training image
    assert sorted(val.subclass) == ["s1", "s2", "s3"]
    assert not any("/test/" in path for path in val.image_path)
    assert set(val.split) == {"val"}
    assert val.label_index.sum() >= 1  # synthetic anomalies, with masks
    assert (val[val.label_index == 1].mask_path != "").all()

    batches = list(datamodule.val_dataloader())
    assert all(isinstance(batch, SubclassImageBatch) for batch in batches)
    ids = torch.cat([batch.subclass_id for batch in batches]).tolist()
    assert sorted(ids) == [0, 1, 2]
    masks = torch.cat([batch.gt_mask for batch in batches])
    labels = torch.cat([batch.gt_label for batch in batches])
    assert all(bool(masks[i].any()) == bool(labels[i]) for i in range(len(labels)))


def test_validation_split_is_reproducible_with_a_seed(texture_ad_root: Path) -> None:
    first = _datamodule(texture_ad_root, seed=3)
    first.setup()
    second = _datamodule(texture_ad_root, seed=3)
    second.setup()
    assert list(first.train_data.samples.image_path) == list(second.train_data.samples.image_path)
    assert list(first.val_data.samples.label_index) == list(second.val_data.samples.label_index)


def test_from_dir_validation_is_refused(texture_ad_root: Path) -> None:
    with pytest.raises(ValueError, match="no validation folder"):
        _datamodule(texture_ad_root, val_split_mode="from_dir")


# --------------------------------------------------------------------------- missing data


def test_missing_root_explains_where_the_data_comes_from(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        _datamodule(tmp_path / "nowhere").prepare_data()
    message = str(info.value)
    assert HF_DATASET in message
    assert str(tmp_path / "nowhere") in message
    assert "ground_truth/<defect>" in message  # the expected layout
    assert "root" in message


def test_under_the_anomalib_command_missing_data_and_layout_errors_end_in_their_message_alone(
    tmp_path: Path, texture_ad_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message (the missing-data one spans the layout it expects), not 150 lines of Lightning's and the
    datamodule's traceback before it: a SystemExit with the message prints it alone. So is a damaged training image
    the synthetic validation split reads at setup (300 lines of traceback, where the feature pass said one)."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/anomalib", "train"])
    with pytest.raises(SystemExit, match=r"^error: Texture AD not found: .*nowhere does not exist"):
        _datamodule(tmp_path / "nowhere").prepare_data()
    with pytest.raises(SystemExit, match=r"^error: .*names unknown subclass\(es\) \['nosuch'\]"):
        _datamodule(texture_ad_root, train_subclasses=["nosuch"]).setup()
    for image in (texture_ad_root / "cloth").glob("*/train/good/*"):  # the held-out ones are read at setup
        image.write_bytes(image.read_bytes()[:60])
    with pytest.raises(SystemExit, match=r"^error: .*/train/good/.*: cannot be read as an image \(OSError"):
        _datamodule(texture_ad_root).setup()


def test_missing_category_lists_what_is_there(texture_ad_root: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        TextureADDataset(root=texture_ad_root, category="metal")
    assert HF_DATASET in str(info.value)
    assert "cloth" in str(info.value)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "zero_bytes"])
def test_unreadable_image_raises_naming_the_file(texture_ad_root: Path, damage: str) -> None:
    path = texture_ad_root / "cloth" / "fabric_a" / "train" / "good" / "001.png"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="train")
    with pytest.raises(CorruptImageError) as info:
        _item_for(dataset, path)
    assert str(path) in str(info.value)
    assert "Fix:" in str(info.value)
    if damage == "zero_bytes":  # worded as `--check` words it, not PIL's "cannot identify image file"
        assert "the file is empty (0 bytes)" in str(info.value)


def test_a_damaged_test_image_stops_training_before_it_starts_not_after(texture_ad_root: Path, tmp_path: Path) -> None:
    """TextureAD names a damaged file as it reads it: a test image was read only after the training, which then ended
    in the error. Every problem of the test split now stops the fit first (the first named, the others counted),
    with nothing trained or written."""
    from anomalib.engine import Engine
    from conftest import tiny_adapted_moe

    damaged = texture_ad_root / "cloth" / "fabric_c" / "test" / "good" / "000.png"
    damaged.write_bytes(damaged.read_bytes()[:200])
    write_mask(texture_ad_root / "cloth" / "fabric_a" / "ground_truth" / "hole" / "000_mask.png", size=(16, 32))
    datamodule = TextureAD(root=texture_ad_root, category="cloth", train_batch_size=2, eval_batch_size=2, num_workers=0)
    model = tiny_adapted_moe(num_experts=2, epochs=1)
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(TextureADLayoutError) as info:
        engine.fit(model=model, datamodule=datamodule)
    assert str(info.value).startswith(f"{texture_ad_root / 'cloth' / 'fabric_a' / 'ground_truth' / 'hole'}")
    assert "mask is 16x32" in str(info.value) and "(1 more problem; run `" in str(info.value)
    assert not model.expert_epochs_begun and not list((tmp_path / "results").rglob("*.ckpt"))


def test_a_damaged_image_validation_took_from_the_test_set_stops_training_before_it_starts(
    texture_ad_root: Path, tmp_path: Path
) -> None:
    """``val_split_mode="from_test"`` moves test images into validation, read after training too."""
    from anomalib.engine import Engine
    from conftest import tiny_adapted_moe

    make_subclass(texture_ad_root / "cloth", "fabric_d", train=3, test_good=4, defects={"hole": 4})
    args = {"root": texture_ad_root, "category": "cloth", "val_split_mode": "from_test", "seed": 0, "num_workers": 0}
    datamodule = TextureAD(**args)
    datamodule.setup()
    validation_only = set(datamodule.val_data.samples.image_path) - set(datamodule.test_data.samples.image_path)
    damaged = Path(sorted(validation_only)[0])
    damaged.write_bytes(damaged.read_bytes()[:200])
    model = tiny_adapted_moe(num_experts=2, epochs=1)
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(CorruptImageError, match="cannot be read as an image") as info:
        engine.fit(model=model, datamodule=TextureAD(**args))
    assert str(info.value).startswith(str(damaged)) and not model.expert_epochs_begun


def test_defect_image_without_mask_raises_naming_it(texture_ad_root: Path) -> None:
    image = write_image(texture_ad_root / "cloth" / "fabric_a" / "test" / "hole" / "007.png")
    with pytest.raises(MissingMaskError) as info:
        TextureADDataset(root=texture_ad_root, category="cloth")
    assert str(image) in str(info.value)
    assert "007_mask" in str(info.value)


def test_mask_without_image_raises_naming_it(texture_ad_root: Path) -> None:
    mask = write_mask(texture_ad_root / "cloth" / "fabric_b" / "ground_truth" / "hole" / "042_mask.png")
    with pytest.raises(OrphanMaskError) as info:
        TextureADDataset(root=texture_ad_root, category="cloth")
    assert str(mask) in str(info.value)


def test_mask_of_another_size_raises_naming_both_files(texture_ad_root: Path) -> None:
    mask = write_mask(texture_ad_root / "cloth" / "fabric_a" / "ground_truth" / "hole" / "000_mask.png", size=(16, 32))
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="test")
    image = texture_ad_root / "cloth" / "fabric_a" / "test" / "hole" / "000.png"
    with pytest.raises(MaskSizeMismatchError) as info:
        _item_for(dataset, image)
    assert str(mask) in str(info.value)
    assert str(image) in str(info.value)
    assert "16x32" in str(info.value)


@pytest.mark.parametrize("argument", ["train_subclasses", "test_subclasses"])
def test_unknown_subclass_argument_lists_the_available_ones(texture_ad_root: Path, argument: str) -> None:
    with pytest.raises(UnknownSubclassError) as info:
        TextureADDataset(root=texture_ad_root, category="cloth", **{argument: ["fabric_a", "fabrik_z"]})
    message = str(info.value)
    assert "fabrik_z" in message
    assert argument in message
    assert "['fabric_a', 'fabric_b', 'fabric_c']" in message


def test_unknown_subclass_in_split_json_names_the_file(split_json_root: Path) -> None:
    split_file = split_json_root / "wafer" / "split.json"
    split_file.write_text(json.dumps({"seen": ["wafer_1", "wafer_9"], "unseen": ["wafer_3"]}))
    with pytest.raises(UnknownSubclassError) as info:
        TextureADDataset(root=split_json_root, category="wafer")
    assert str(split_file) in str(info.value)
    assert "wafer_9" in str(info.value)
    assert "wafer_2" in str(info.value)  # available names are listed


def test_seen_subclass_with_empty_train_folder_raises(split_json_root: Path) -> None:
    train_dir = split_json_root / "wafer" / "wafer_2" / "train" / "good"
    for image in train_dir.iterdir():
        image.unlink()
    with pytest.raises(EmptyTrainingSetError) as info:
        TextureADDataset(root=split_json_root, category="wafer")
    assert str(train_dir) in str(info.value)
    assert "wafer_2" in str(info.value)


def test_no_training_subclass_at_all_raises(tmp_path: Path) -> None:
    make_subclass(tmp_path / "root" / "cloth", "fabric_x", train=None)
    with pytest.raises(EmptyTrainingSetError, match="no training subclass"):
        TextureADDataset(root=tmp_path / "root", category="cloth")


def test_layout_errors_are_value_errors() -> None:
    assert issubclass(MissingMaskError, TextureADLayoutError)
    assert issubclass(TextureADLayoutError, ValueError)


# --------------------------------------------------------------------------- --check


def test_check_reports_every_planted_problem_in_one_run(texture_ad_root: Path) -> None:
    cloth = texture_ad_root / "cloth"
    corrupt = cloth / "fabric_a" / "train" / "good" / "002.png"
    corrupt.write_bytes(corrupt.read_bytes()[:150])  # truncated PNG
    no_mask = write_image(cloth / "fabric_b" / "test" / "hole" / "009.JPG")
    wrong_size = write_mask(cloth / "fabric_c" / "ground_truth" / "hole" / "000_mask.png", size=(20, 20))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "anomalib_adapted_moe.data.texture_ad", "--check", str(texture_ad_root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(lines) == 3, result.stdout
    assert any(str(corrupt) in line and "cannot be read as an image" in line for line in lines)
    assert any(str(no_mask) in line and "no mask" in line for line in lines)
    assert any(str(wrong_size) in line and "20x20" in line for line in lines)
    assert all("Fix:" in line for line in lines)
    assert "3 problems found" in result.stdout
    assert "RuntimeWarning" not in result.stderr


def test_check_on_a_clean_copy_exits_zero_with_a_summary(
    texture_ad_root: Path, split_json_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert texture_ad_root == split_json_root  # one root, two categories
    assert check_main(["--check", str(texture_ad_root), "--category", "cloth"]) == 0
    assert "1 category, 3 subclasses, 12 images, no problems" in capsys.readouterr().out
    assert check_main(["--check", str(texture_ad_root)]) == 0
    assert "2 categories, 6 subclasses, 24 images, no problems" in capsys.readouterr().out


def test_check_on_a_missing_root_exits_two_with_instructions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert check_main(["--check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert HF_DATASET in err and "nowhere does not exist" in err
    image = tmp_path / "image.png"  # an image given for the root: it exists, it is just no folder
    image.write_bytes(b"")
    assert check_main(["--check", str(image)]) == 2
    assert "image.png is a file, not a folder" in capsys.readouterr().err


def test_a_category_or_subclass_folder_given_as_the_root_is_named_with_the_root_to_give(
    texture_ad_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """--check on a subclass folder checked train/, test/ and ground_truth/ as three categories (12 warnings, 3
    problems, no hint); the datamodule given the category folder as its root said only "not found"."""
    cloth = texture_ad_root / "cloth"
    assert check_main(["--check", str(cloth / "fabric_a")]) == 1
    said = capsys.readouterr().out
    assert f"{cloth / 'fabric_a'}: looks like a subclass folder" in said and "3 categories" not in said
    assert f"Fix: pass {texture_ad_root} as ROOT and add --category cloth." in said
    with pytest.raises(TextureADNotFoundError) as info:
        _datamodule(cloth).prepare_data()
    assert f"{cloth} is itself a category folder" in str(info.value)
    assert f"Fix: give its parent, {texture_ad_root}, as the root (--data.root) and 'cloth' as the category" in str(
        info.value
    )


def test_check_names_a_folder_layout_as_such(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """anomalib's Folder layout given to --check: normal/, abnormal/ and mask/ were checked as categories (99
    warnings, 8 problems, no word of the layout)."""
    for folder in ("normal", "abnormal", "mask"):
        write_image(tmp_path / "bolts" / folder / "000.png")
    assert check_main(["--check", str(tmp_path / "bolts")]) == 1
    said = capsys.readouterr().out
    assert f"{tmp_path / 'bolts'}: looks like anomalib's Folder layout (folders of images: ['abnormal', 'mask'," in said
    assert "Fix: train it with --data Folder" in said and "WARNING" not in said and "3 categories" not in said


def test_check_names_and_skips_folders_of_a_download_that_are_not_categories(
    texture_ad_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """Real downloads carry LICENSES/, __MACOSX/, READMEs and the paper: a warning each, and the check passes."""
    (texture_ad_root / "LICENSES").mkdir()
    (texture_ad_root / "LICENSES" / "CC-BY-4.0.txt").write_text("licence text\n")
    (texture_ad_root / "__MACOSX" / "cloth").mkdir(parents=True)
    (texture_ad_root / "README.md").write_text("Texture AD\n")
    (texture_ad_root / "paper.pdf").write_bytes(b"%PDF-1.4\n")
    assert check_main(["--check", str(texture_ad_root)]) == 0
    out = capsys.readouterr().out
    assert f"WARNING {texture_ad_root / 'LICENSES'}: not a category" in out
    assert f"WARNING {texture_ad_root / '__MACOSX'}: not a category" in out
    assert "1 category, 3 subclasses, 12 images, no problems" in out


# --------------------------------------------------------------------------- files read wrong without a word before


def test_files_textureads_reader_misreads_are_named_at_setup_and_by_the_check_one_line_a_kind(
    texture_ad_root: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    """TextureAD reads a multi-page file's first page and a 16-bit file of fewer bits (a 12-bit camera's) 16 times
    darker, as anomalib's reader does: named when the datamodule sets up and by ``--check``, one line a kind, where
    both said nothing. An even 12-bit texture is dark, not flat (its top 8 bits read flat: it was not named); a frame
    flat on a 12-bit scale (a covered lens) and full-range 16-bit grey are not named dark."""
    rng = np.random.default_rng(0)
    good = texture_ad_root / "cloth" / "fabric_a" / "train" / "good"
    pages = [good / "003.tif", good / "007.tif"]
    for path in pages:
        first, second = (Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2))
        first.save(path, save_all=True, append_images=[second])
    colour = write_png_rgb16(good / "004.png", rng.integers(1040, 1161, (32, 32, 3)))  # 1100 +- 60 of 4095
    grey = good / "005.png"
    Image.fromarray(rng.integers(1040, 1161, (32, 32), dtype=np.uint16)).save(grey)
    Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16)).save(good / "006.png")  # full range
    Image.fromarray(rng.integers(100, 111, (32, 32), dtype=np.uint16)).save(good / "008.png")  # a covered lens
    write_png_rgb16(good / "009.png", rng.integers(100, 111, (32, 32, 3)))
    grey_brightest = int(np.asarray(Image.open(grey)).max())
    said = [
        f"{pages[0]}: holds 2 frames (pages); TextureAD reads only one. Fix: save each page or frame as an image of "
        f"its own (PIL's ImageSequence.Iterator). Likewise 1 more of the N images ({pages[1]}).",
        f"{colour}: a 16-bit colour image whose brightest value reads 4 of 255: TextureAD keeps the top 8 of its 16 "
        "bits, so data of fewer bits (a 12-bit camera's) reads 16 times darker. Fix: scale it to 8 bits by the "
        "camera's full scale first (value * 255 / 4095 for 12-bit data).",
        f"{grey}: a 16-bit grey image whose brightest value is {grey_brightest} of 65535: TextureAD scales 16-bit "
        "images by 65535, so data of fewer bits (a 12-bit camera's) reads 16 times darker. Fix: scale it to the full "
        "16 bits by the camera's full scale first (value * 65535 // 4095 for 12-bit data).",
    ]

    def any_count(lines: list[str]) -> list[str]:
        return [re.sub(r"of the \d+ images", "of the N images", line) for line in lines]

    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        datamodule = _datamodule(texture_ad_root)
        datamodule.setup()
        datamodule.setup("test")  # anomalib train sets up for fit, then for test: named once
    assert any_count(caplog.messages) == said
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="train")
    assert float(_item_for(dataset, grey).image.max()) == pytest.approx(grey_brightest / 65535)  # read, not refused
    assert check_main(["--check", str(texture_ad_root), "--category", "cloth"]) == 0  # warnings, not problems
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    assert any_count(warnings) == [f"WARNING {line}" for line in said]


@pytest.mark.parametrize(
    ("array", "said"),
    [(np.full((32, 32), 0.5, np.float32), "32-bit float"), (np.full((32, 32), 100000, np.int32), "beyond 16 bits")],
)
def test_a_32_bit_image_is_refused_by_the_dataset_and_the_check(
    texture_ad_root: Path, capsys: pytest.CaptureFixture, array: np.ndarray, said: str
) -> None:
    """A float image read black, a 32-bit integer one white (clipped): both are named, with the fix."""
    path = texture_ad_root / "cloth" / "fabric_a" / "train" / "good" / "003.tif"
    Image.fromarray(array).save(path)
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="train")
    with pytest.raises(UnsupportedPixelFormatError, match=said) as info:
        _item_for(dataset, path)
    assert str(path) in str(info.value) and "Fix: save it as an 8-bit or 16-bit image" in str(info.value)
    assert check_main(["--check", str(texture_ad_root), "--category", "cloth"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and str(path) in problems[0] and said in problems[0]


@pytest.mark.parametrize("selected_by", ["test_subclasses", "split.json"])
def test_a_selected_test_subclass_without_test_images_is_refused(split_json_root: Path, selected_by: str) -> None:
    """Its rows and its share of the seen/unseen means would be missing from every table without a word."""
    wafer = split_json_root / "wafer"
    for image in (wafer / "wafer_3" / "test").rglob("*.png"):
        image.unlink()
    arguments = {"test_subclasses": ["wafer_1", "wafer_3"]} if selected_by == "test_subclasses" else {}
    with pytest.raises(EmptyTestSetError, match=r"\['wafer_3'\] \(selected by") as info:
        TextureADDataset(root=split_json_root, category="wafer", **arguments)
    assert "Fix:" in str(info.value)


def test_by_the_default_rule_a_subclass_without_test_images_is_left_out_and_named(
    texture_ad_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fabric_b = texture_ad_root / "cloth" / "fabric_b"
    for folder in ("test", "ground_truth"):
        for path in sorted((fabric_b / folder).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    datamodule = _datamodule(texture_ad_root)
    with caplog.at_level("WARNING"):
        datamodule.setup()
    assert datamodule.test_subclasses == ["fabric_a", "fabric_c"]
    assert datamodule.train_subclasses == ["fabric_a", "fabric_b"]
    assert f"{fabric_b}: no image under test/, so this subclass is not tested." in caplog.text


@pytest.mark.parametrize("how", ["no test/good anywhere", "test_subclasses empty"])
def test_a_test_split_without_good_images_is_refused_where_anomalib_would_take_training_images(
    texture_ad_root: Path, how: str
) -> None:
    """anomalib fills a test split without good images from the training images (test_split_ratio): tested from a
    checkpoint of the category, a walkthrough's copy without test/good scored image AUROC 1.0 on trained-on images,
    exit 0; an empty test_subclasses list tested on training images alone."""
    cloth = texture_ad_root / "cloth"
    arguments = {"test_subclasses": []} if how == "test_subclasses empty" else {}
    if how == "no test/good anywhere":
        for folder in cloth.glob("*/test/good"):
            for image in folder.iterdir():
                image.unlink()
            folder.rmdir()
    datamodule = _datamodule(texture_ad_root, **arguments)
    with pytest.raises(EmptyTestSetError) as info:
        datamodule.setup()
    said = {"no test/good anywhere": "hold no defect-free image under test/good/", "test_subclasses empty": "no test"}
    assert said[how] in str(info.value) and "share of the training images" in str(info.value)
    assert "Fix: add test/good" in str(info.value)


def test_a_subclass_with_one_kind_of_test_image_is_named(
    texture_ad_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its own AUROC is undefined (nan in its row): said, where the check and the setup said nothing."""
    fabric_a = texture_ad_root / "cloth" / "fabric_a"
    for image in (fabric_a / "test" / "good").iterdir():
        image.unlink()
    with caplog.at_level("WARNING"):
        _datamodule(texture_ad_root).setup()
    assert f"{fabric_a}: no test/good/ image, so this subclass's own AUROC cannot be computed" in caplog.text


def test_a_broken_link_among_the_images_is_a_problem_not_an_unsupported_extension(texture_ad_root: Path) -> None:
    link = texture_ad_root / "cloth" / "fabric_a" / "train" / "good" / "003.png"
    link.symlink_to(texture_ad_root / "gone.png")
    with pytest.raises(CorruptImageError, match="is a broken link") as info:
        TextureADDataset(root=texture_ad_root, category="cloth")
    assert str(link) in str(info.value) and "gone.png does not exist" in str(info.value)


def test_a_jpeg_mask_is_read_at_half_scale_so_compression_does_not_grow_the_defect(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:256, :256]
    circle = (yy - 128) ** 2 + (xx - 128) ** 2 < 30**2
    Image.fromarray((circle * 255).astype(np.uint8)).save(tmp_path / "mask.jpg", quality=90)
    read = read_binary_mask(tmp_path / "mask.jpg")
    assert (read != circle).sum() < 0.02 * circle.sum()  # any non-zero pixel: 14 % more


def test_a_defect_covering_most_of_an_object_is_no_inverted_mask() -> None:
    """MVTec AD's flipped metal nut is marked whole: most of the image, but none of its border, as an inverted mask
    of a small defect marks all of it."""
    yy, xx = np.mgrid[:100, :100]
    whole_object = (yy - 50) ** 2 + (xx - 50) ** 2 < 45**2  # 64 % of the image
    assert whole_object.mean() > 0.5 and mask_warning(whole_object, "nut_mask.png", "nut.png") is None
    inverted = ~((yy - 50) ** 2 + (xx - 50) ** 2 < 10**2)
    assert mask_warning(inverted, "m.png", "i.png")[0] == "inverted mask"


@pytest.mark.parametrize(("how", "said"), [("empty", "marks no pixel"), ("inverted", "marks 94% of it: an inverted")])
def test_an_empty_or_inverted_mask_of_a_defect_image_is_named_by_the_dataset_and_the_check(
    texture_ad_root: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture, how: str, said: str
) -> None:
    """An inverted mask (the good surface white) read pixel AUROC 0.37 in a walkthrough, without a word."""
    hole = texture_ad_root / "cloth" / "fabric_a"
    mask = hole / "ground_truth" / "hole" / "000_mask.png"
    inverted = np.where(read_binary_mask(mask), 0, 255).astype(np.uint8)
    Image.fromarray(np.zeros((32, 32), np.uint8) if how == "empty" else inverted).save(mask)
    (hole / "ground_truth" / "good").mkdir()  # masks of normal images: ignored, and said so
    dataset = TextureADDataset(root=texture_ad_root, category="cloth", split="test")
    with caplog.at_level("WARNING"):
        item = _item_for(dataset, hole / "test" / "hole" / "000.png")
    assert int(item.gt_mask.sum()) == (0 if how == "empty" else 1024 - 64)  # read as it is
    assert f"{mask}: the mask of the defect image {hole / 'test' / 'hole' / '000.png'} {said}" in caplog.text
    assert check_main(["--check", str(texture_ad_root), "--category", "cloth"]) == 0  # a warning, not a problem
    out = capsys.readouterr().out
    assert f"WARNING {mask}: the mask of the defect image {hole / 'test' / 'hole' / '000.png'} {said}" in out
    assert f"WARNING {hole / 'ground_truth' / 'good'}: ignored" in out


def test_an_empty_defect_folder_is_named_by_the_check(texture_ad_root: Path, capsys: pytest.CaptureFixture) -> None:
    """An incomplete copy left ``test/hole`` empty: its defect kind was missing from every figure, ``--check`` said
    "no problems"."""
    hole = texture_ad_root / "cloth" / "fabric_a" / "test" / "hole"
    for image in hole.iterdir():
        image.unlink()
    for mask in (hole.parents[1] / "ground_truth" / "hole").iterdir():
        mask.unlink()
    assert check_main(["--check", str(texture_ad_root), "--category", "cloth"]) == 0  # a warning, not a problem
    assert f"WARNING {hole}: no image in it, so no test/hole image is tested." in capsys.readouterr().out


@pytest.mark.parametrize("ratio", [1.5, 1.0, 0.0, -0.1])
def test_a_validation_ratio_outside_0_to_1_is_refused_when_the_datamodule_is_built(
    texture_ad_root: Path, ratio: float
) -> None:
    """1.5 held out all but one training image of every subclass for validation, and training went on."""
    with pytest.raises(ValueError, match=rf"val_split_ratio={ratio}: the share .* between 0 and 1\. Fix: e\.g\. 0\.2"):
        _datamodule(texture_ad_root, val_split_ratio=ratio)
    with pytest.raises(ValueError, match=rf"val_split_ratio={ratio}"):  # the synthetic set too
        tiny_synthetic_datamodule(texture_ad_root / "synthetic", val_split_ratio=ratio)


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ({"val_split_ratio": "0.2"}, "val_split_ratio='0.2' is a str: val_split_ratio takes a number."),
        ({"train_batch_size": "4"}, "train_batch_size='4' is a str: train_batch_size takes a whole number."),
        ({"num_workers": 1.5}, "num_workers=1.5 is a float: num_workers takes a whole number."),
        ({"root": 3}, "root=3 is an int: root takes a path or a name (a str) (or None)."),
    ],
)
def test_a_number_or_path_of_the_wrong_type_is_named_when_the_datamodule_is_built(
    texture_ad_root: Path, argument: dict, said: str
) -> None:
    """From Python (the command's parser checks types): '0.2' ended in "'<' not supported between instances of
    'int' and 'str'", a batch size '4' in torch's "should be a positive integer value, but got batch_size=4"."""
    arguments = {"root": texture_ad_root, **argument}
    with pytest.raises(TypeError) as refused:
        _datamodule(**arguments)
    assert str(refused.value).startswith(said)


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ({"num_train": "3"}, "num_train='3' is a str: num_train takes a whole number."),
        ({"data_seed": 0.5}, "data_seed=0.5 is a float: data_seed takes a whole number."),
    ],
)
def test_a_synthetic_set_size_of_the_wrong_type_is_named(tmp_path: Path, argument: dict, said: str) -> None:
    """num_train='3' ended in "can only concatenate str (not "int") to str", naming no argument."""
    with pytest.raises(TypeError) as refused:
        tiny_synthetic_datamodule(tmp_path, **argument)
    assert str(refused.value).startswith(said)
