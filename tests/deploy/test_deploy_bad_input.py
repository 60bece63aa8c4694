"""Bad input to the deployment path is refused by name with the fix: image arrays anomalib would misread, damaged IRs,
and checkpoints the variant-level command cannot read."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import first_score, mean_score_ir, write_image

from anomalib_adapted_moe.deploy import ImageDtypeError, ImageShapeError, openvino_inferencer
from anomalib_adapted_moe.deploy.image_input import flat_frames
from anomalib_adapted_moe.deploy.variant_level import main


@pytest.mark.parametrize(
    ("image", "named"),
    [
        (np.full((32, 48, 3), np.nan, np.float32), "NaN or infinite"),  # scored like a normal image
        (np.full((32, 48, 3), np.inf, np.float32), "NaN or infinite"),
        (np.linspace(0, 255, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3), "values from 0 to 255"),
        (np.linspace(-0.5, 1.5, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3), "values from -0.5 to 1.5"),
    ],
    ids=["nan", "inf", "0..255", "-0.5..1.5"],
)
def test_float_arrays_not_finite_or_outside_the_unit_range_are_refused_with_the_fix(
    tmp_path, image: np.ndarray, named: str
) -> None:
    """anomalib divides a float frame by 255 only where its maximum exceeds 1: a dark frame on the 0..255 scale was
    read as [0, 1], one in [-0.5, 1.5] was divided by 255, and an all-NaN one scored like a normal image."""
    inferencer = openvino_inferencer(mean_score_ir(tmp_path))
    with pytest.raises(ImageDtypeError) as refused:
        inferencer.predict(image)
    message = str(refused.value)
    assert message.startswith("an image array of float32") and named in message
    assert "Fix: " in message and "[0, 1]" in message
    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)  # uint8 and [0, 1] as they were
    as_uint8 = first_score(inferencer, rgb)
    assert first_score(inferencer, rgb.astype(np.float32) / 255) == pytest.approx(as_uint8, rel=1e-6)


@pytest.mark.parametrize("shape", [(32, 48, 2), (32, 48, 5), (2, 32, 48, 2), (48,), (0, 0, 3), (2, 32, 48)])
def test_arrays_of_a_shape_anomalib_would_misread_name_their_shape_and_the_ones_read(tmp_path, shape) -> None:
    """An H x W x 2 array was read as a 32-pixel-high, 2-pixel-wide image: 'the image is 32 x 2 (height x width)'."""
    inferencer = openvino_inferencer(mean_score_ir(tmp_path))
    with pytest.raises(ImageShapeError) as refused:
        inferencer.predict(np.zeros(shape, np.uint8))
    message = str(refused.value)
    assert message.startswith(f"an image array of shape {shape}: ") and "H x W x 3 (RGB)" in message
    assert "Fix: " in message
    # a stack of grey frames is no batch (one of 3 reads as one colour image): the message says how to stack them
    assert "grey frames as N x H x W x 1" in message and "np.stack(frames)[..., None]" in message
    if shape == (2, 32, 48):  # the advice scores each frame as alone
        frames = [np.random.default_rng(seed).integers(0, 256, shape[1:], dtype=np.uint8) for seed in (0, 1)]
        stacked = inferencer.predict(np.stack(frames)[..., None]).pred_score
        assert list(stacked) == pytest.approx([first_score(inferencer, frame) for frame in frames])
    assert first_score(inferencer, np.full((3, 32, 48), 51, np.uint8)) == pytest.approx(0.2)  # 3 x H x W read as before


def _damage(xml: Path, how: str) -> Path:
    """The exported IR at ``xml`` damaged ``how``; returns the path to give the inferencer."""
    weights = xml.with_suffix(".bin")
    if how == "bin missing":
        weights.unlink()
    elif how == "xml missing":
        xml.unlink()
        return weights
    elif how == "bin truncated":
        weights.write_bytes(weights.read_bytes()[:10])
    elif how == "xml truncated":
        xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    elif how == "a checkpoint":
        xml = xml.with_name("model.ckpt")
        torch.save({"state_dict": {}}, xml)
    return xml


@pytest.mark.parametrize("batch_size", [None, 1])  # the plain load, and the one that reads the IR to reshape it
@pytest.mark.parametrize(
    ("how", "error", "named"),
    [
        ("bin missing", FileNotFoundError, "model.bin is missing beside it"),
        ("xml missing", FileNotFoundError, "model.xml is missing beside it"),
        ("bin truncated", ValueError, "OpenVINO cannot read it as a model ("),  # (Incorrect weights in bin file!)
        ("xml truncated", ValueError, "OpenVINO cannot read it as a model ("),  # (Error parsing ... at offset 769)
        ("a checkpoint", ValueError, "a Lightning checkpoint, not an OpenVINO model. Fix: export it first"),
    ],
)
def test_a_damaged_ir_is_named_with_the_fix(tmp_path, how: str, error: type, named: str, batch_size) -> None:
    """OpenVINO's own errors named no file and no fix: "Empty weights data in bin file or bin file cannot be found!"."""
    path = _damage(mean_score_ir(tmp_path), how)
    with pytest.raises(error) as refused:
        openvino_inferencer(path, batch_size=batch_size)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and named in message
    assert "Fix: " in message and "anomalib export --export_type openvino" in message
    assert "again" in message or how == "a checkpoint"  # OpenVINO tried it as a TensorFlow graph: "no field 'PK'"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("model.pt", "a torch export, not an OpenVINO model. Fix: anomalib's TorchInferencer runs it"),
        ("weights.PTH", "a torch state dict (backbone weights?), not an OpenVINO model. Fix: give the model.xml"),
    ],
)
def test_a_torch_file_is_named_as_what_it_is(tmp_path: Path, name: str, said: str) -> None:
    """OpenVINO read it as a TensorFlow graph: 'no field named "PK"' lines, then "Unable to read the model"."""
    torch.save({"weight": torch.zeros(1)}, tmp_path / name)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: {said}")):
        openvino_inferencer(tmp_path / name)


@pytest.mark.parametrize(("batch_size", "said"), [("1", "batch_size='1' is a str"), (1.0, "batch_size=1.0 is a float")])
def test_a_batch_size_of_the_wrong_type_is_named(tmp_path: Path, batch_size, said: str) -> None:
    """ "'<' not supported between instances of 'str' and 'int'", or OpenVINO's "incompatible function arguments"."""
    with pytest.raises(TypeError, match=f"^{said}: batch_size takes a whole number \\(or None\\)"):
        openvino_inferencer(mean_score_ir(tmp_path), batch_size=batch_size)


def _truncated(path: Path, size: int) -> None:
    torch.save({"state_dict": {"weight": torch.zeros(size)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)),  # UnpicklingError, weights_only=False
        lambda path: path.write_bytes(b""),  # EOFError
        lambda path: _truncated(path, 4096),  # OSError: [Errno 22] Invalid argument
        lambda path: _truncated(path, 100_000),  # RuntimeError: PytorchStreamReader failed reading zip archive
        lambda path: torch.save(  # another anomalib model's checkpoint: the model's own refusal, named
            {
                "pytorch-lightning_version": "2.5.0",
                "state_dict": {"model.gaussian.mean": torch.zeros(4)},
                "hparams_name": "kwargs",
                "hyper_parameters": {"backbone": "resnet18", "layers": ["layer1"], "pre_trained": False},
            },
            path,
        ),
        lambda path: torch.save({"model.memory_bank": torch.zeros(4)}, path),  # a bare state dict: KeyError
    ],
    ids=["random bytes", "zero bytes", "truncated small", "truncated", "another model", "bare state dict"],
)
def test_the_variant_level_command_refuses_a_checkpoint_it_cannot_read_by_name_with_the_fix(
    tmp_path, capsys: pytest.CaptureFixture, write
) -> None:
    checkpoint, images, output = tmp_path / "model.ckpt", tmp_path / "images", tmp_path / "variant.ckpt"
    write(checkpoint)
    write_image(images / "000.png")  # the folder holds an image: the checkpoint is what is wrong
    with pytest.raises(SystemExit) as stopped:
        main(["--ckpt", str(checkpoint), "--images", str(images), "--output", str(output)])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {checkpoint}: ") and err.count("\n") == 1  # the file named, one line
    assert "Fix: give the model.ckpt an AdaptedMoE training wrote" in err and "weights_only" not in err
    assert not output.exists()


def test_the_variant_level_command_names_a_folder_without_images(tmp_path: Path, capsys) -> None:
    """anomalib's PredictDataset said only "Found 0 images in <folder>", after the model had loaded."""
    images = tmp_path / "first_images"
    images.mkdir()
    (images / "notes.txt").write_text("not an image\n")
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"never read: the folder is checked first")
    with pytest.raises(SystemExit) as stopped:
        main(["--ckpt", str(checkpoint), "--images", str(images), "--output", str(tmp_path / "out.ckpt")])
    assert stopped.value.code == 1
    error = capsys.readouterr().err
    assert f"{images}: no image in this folder" in error and "Fix: give the folder holding the first images" in error


def test_the_variant_level_command_names_a_file_for_a_folder_and_the_reverse(tmp_path: Path, capsys) -> None:
    """An image given for --images was told "no such folder", a checkpoint folder "no such checkpoint"; an --output
    under a file failed with a bare "File exists" after every image was scored."""
    images = tmp_path / "first_images"
    image = write_image(images / "000.png")
    folder = tmp_path / "weights" / "lightning"
    (folder / "model.ckpt").parent.mkdir(parents=True)
    (folder / "model.ckpt").write_bytes(b"never read")
    cases = [
        (folder / "model.ckpt", image, tmp_path / "out.ckpt", f"{image} is a file: the level is read from a folder"),
        (
            folder,
            images,
            tmp_path / "out.ckpt",
            f"{folder} is a folder, not a checkpoint file. Fix: give one of the "
            f"checkpoints in it (['{folder / 'model.ckpt'}'])",
        ),
        (folder / "model.ckpt", images, image / "out.ckpt", f"{image / 'out.ckpt'}: cannot be written"),
    ]
    for checkpoint, given, output, said in cases:
        with pytest.raises(SystemExit) as stopped:
            main(["--ckpt", str(checkpoint), "--images", str(given), "--output", str(output)])
        assert stopped.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: {said}") and error.count("\n") == 1 and "Fix:" in error, error


def test_the_variant_level_command_refuses_a_folder_it_cannot_create_files_in_before_scoring(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder root may not write into (chattr +i) passed the folder check; torch's save failed after every image
    was scored, with "open file failed with strerror: Operation not permitted" and no file named."""
    import tempfile

    images = tmp_path / "first_images"
    write_image(images / "000.png")
    (tmp_path / "model.ckpt").write_bytes(b"never read")

    def not_permitted(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "TemporaryFile", not_permitted)  # what the OS says there, as any user
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "model.ckpt"), "--images", str(images), "--output", str(tmp_path / "o.ckpt")])
    said = f"error: {tmp_path / 'o.ckpt'}: cannot be written (Operation not permitted). Fix: give an --output in"
    assert capsys.readouterr().err.startswith(said)


def test_a_flat_frame_is_named_in_a_warning_as_it_is_scored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A covered lens, lights off or an overexposed camera: the demo model passed black, white and grey frames as good
    (0.28 to 0.31 against its 0.5 threshold), without a word."""
    from PIL import Image

    inferencer = openvino_inferencer(mean_score_ir(tmp_path))
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(black)
    near_white = np.full((32, 48, 3), 253, np.uint8)
    near_white[0, 0] = 255  # within two grey levels: saturated, with a hot pixel
    textured = np.asarray(Image.open(write_image(tmp_path / "texture.png", size=(48, 32))))
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        inferencer.predict(black)
        inferencer.predict(near_white)  # right after a flat frame: a covered lens at 30 frames/s warns once
        inferencer.predict(textured)
        inferencer.predict(near_white)
        inferencer.predict(textured)
        inferencer.predict(np.stack([textured, near_white]))
        inferencer.predict(textured)
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 3, warned
    assert warned[0].startswith(f"{black}: 99 % of the pixels within 2 grey levels (a covered lens, lights off")
    assert warned[0].endswith("(Flat frames right after it are not named again.)")
    assert warned[1].startswith("the image given: 99 % of the pixels within 2 grey levels")
    assert warned[2].startswith("frame(s) [1] of the batch: 99 % of") and "Fix: check the camera" in warned[2]


def test_a_flat_frame_under_an_overlay_or_a_stuck_pixel_is_still_flat_and_a_faint_texture_is_not() -> None:
    """The span leaves out the darkest and brightest 0.5 % of each channel: a camera's timestamp (0.2 % of the frame)
    and a stuck pixel on a covered lens hid it from a min-max span; a texture of 6 grey levels is no flat frame."""
    rng = np.random.default_rng(0)
    dark = np.full((3, 48, 64), 3 / 255, np.float32)
    stamped = dark.copy()
    stamped[:, :2, :3], stamped[1, 30, 40] = 1.0, 0.8
    faint = (100 + rng.integers(0, 7, (3, 48, 64))).astype(np.float32) / 255
    assert flat_frames(np.stack([dark, stamped, faint, faint])) == [0, 1]


def test_an_ir_whose_files_differ_from_their_sums_is_refused_and_one_without_sums_loads(tmp_path: Path) -> None:
    """The sums file an export writes beside the IR (``model.sha256``): an edited .xml is named; an IR renamed with
    its sums file is still checked; a sums file not in ``sha256sum``'s format is named; an IR without one (exported
    before, or copied without it) loads as it is."""
    from anomalib_adapted_moe.deploy import ChangedModelFileError
    from anomalib_adapted_moe.deploy.ir_checksums import write_sums

    xml = mean_score_ir(tmp_path)
    assert first_score(openvino_inferencer(xml), np.zeros((32, 48, 3), np.uint8)) == 0  # no sums: loads
    sums = write_sums(xml)
    openvino_inferencer(xml)  # unchanged: loads
    for suffix in (".xml", ".bin", ".sha256"):  # the whole IR renamed, as a line may name its models
        xml.with_suffix(suffix).rename(tmp_path / f"line{suffix}")
    renamed = tmp_path / "line.xml"
    renamed.write_text(renamed.read_text().replace("input", "input "))
    with pytest.raises(ChangedModelFileError, match=re.escape(f"{renamed}: its SHA-256 differs from the one")):
        openvino_inferencer(renamed)
    renamed.write_text(renamed.read_text().replace("input ", "input"))  # the IR as exported again
    # sha256sum's other forms: binary mode (" *"), upper-case digits, a blank line at the end
    pairs = [line.split("  ", 1) for line in (tmp_path / "line.sha256").read_text().splitlines()]
    (tmp_path / "line.sha256").write_text("".join(f"{digest.upper()} *{name}\n" for digest, name in pairs) + "\n")
    openvino_inferencer(renamed)
    renamed.write_text(renamed.read_text().replace("input", "input "))
    with pytest.raises(ChangedModelFileError, match=re.escape(f"{renamed}: its SHA-256 differs")):
        openvino_inferencer(renamed)  # and still checked in that form
    (tmp_path / "line.sha256").write_text("not a sum\n")
    with pytest.raises(ChangedModelFileError, match=re.escape(f"{tmp_path / 'line.sha256'}: not a list of SHA-256")):
        openvino_inferencer(renamed)
    assert not sums.exists()


def test_precision_none_compiles_with_openvinos_own_default_and_keeps_the_checks(tmp_path: Path) -> None:
    """``openvino_inferencer(path, None)`` was refused ("Unknown precision None"), so OpenVINO's own default (bf16 with
    the backbone kept in f32 on CPUs with AVX512_BF16) was only to be had from a bare ``OpenVINOInferencer``, without
    the size, flat-frame and SHA-256 checks."""
    from anomalib_adapted_moe.deploy import compiled_precision, default_precision
    from anomalib_adapted_moe.deploy.ir_checksums import write_sums

    xml = mean_score_ir(tmp_path)
    inferencer = openvino_inferencer(xml, None)
    assert compiled_precision(inferencer.model) == default_precision()
    assert first_score(inferencer, np.full((32, 48, 3), 255, np.uint8)) == pytest.approx(1.0, abs=1e-2)
    write_sums(xml)
    xml.write_text(xml.read_text().replace("input", "input "))
    with pytest.raises(ValueError, match="its SHA-256 differs"):
        openvino_inferencer(xml, None)
