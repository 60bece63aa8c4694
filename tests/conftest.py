"""Fixtures that write tiny Texture AD layouts (32x32 images) into ``tmp_path``; nothing is downloaded."""

from __future__ import annotations

import os

# before anything imports huggingface_hub, which reads it once: tests never download, however pytest is started
os.environ["HF_HUB_OFFLINE"] = "1"

import json
import struct
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

#: the repository root (configs/, notebooks/, tests/helpers/), wherever a test file sits below tests/
REPO = Path(__file__).resolve().parents[1]

SIZE = 32


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    """Write a small RGB image whose pixels depend on ``value`` (so images differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, kind: str = "L", size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    """Write a mask whose defect is the top-left 8x8 square, stored in the format ``kind``.

    The defect values are deliberately faint (1, pure blue 1, 16-bit 256, a dark
    palette colour) so that a reader treating only bright pixels as defect fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    if kind == "L":
        array = np.zeros((height, width), np.uint8)
        array[:8, :8] = 255
        image = Image.fromarray(array)
    elif kind == "L1":
        array = np.zeros((height, width), np.uint8)
        array[:8, :8] = 1
        image = Image.fromarray(array)
    elif kind == "RGB":
        array = np.zeros((height, width, 3), np.uint8)
        array[:8, :8] = (0, 0, 1)  # grey conversion rounds this to 0
        image = Image.fromarray(array)
    elif kind == "RGBA":
        array = np.zeros((height, width, 4), np.uint8)
        array[..., 3] = 255  # opaque everywhere: alpha must not count as defect
        array[:8, :8, 0] = 200
        image = Image.fromarray(array, mode="RGBA")
    elif kind == "I;16":
        array = np.zeros((height, width), np.uint16)
        array[:8, :8] = 256  # low byte is 0
        image = Image.fromarray(array)
    elif kind == "P":
        array = np.zeros((height, width), np.uint8)
        array[:8, :8] = 1
        image = Image.fromarray(array, mode="P")
        image.putpalette([0, 0, 0, 0, 0, 1] + [0, 0, 0] * 254)  # index 1 is an almost-black colour
    else:
        raise ValueError(kind)
    image.save(path)
    return path


def write_png_rgb16(path: Path, pixels: np.ndarray, colour_type: int = 2) -> Path:
    """A 16-bit RGB PNG of ``pixels`` (H x W x 3 uint16; RGBA, H x W x 4, with ``colour_type`` 6), which PIL cannot
    write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def make_subclass(
    category_root: Path,
    name: str,
    train: int | None = 3,
    test_good: int = 1,
    defects: dict[str, int] | None = None,
    mask_naming: str = "suffix",
    mask_kind: str = "L",
    ext: str = ".png",
) -> Path:
    """Write one subclass; ``train=None`` leaves out ``train/good`` (a test-only subclass)."""
    folder = category_root / name
    seed = sum(map(ord, name)) * 100
    if train is not None:
        (folder / "train" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(train):
            write_image(folder / "train" / "good" / f"{i:03d}{ext}", seed + i)
    for i in range(test_good):
        write_image(folder / "test" / "good" / f"{i:03d}{ext}", seed + 50 + i)
    for defect, count in (defects if defects is not None else {"hole": 1}).items():
        for i in range(count):
            write_image(folder / "test" / defect / f"{i:03d}{ext}", seed + 80 + i)
            mask_name = f"{i:03d}_mask.png" if mask_naming == "suffix" else f"{i:03d}.png"
            write_mask(folder / "ground_truth" / defect / mask_name, mask_kind)
    return folder


@pytest.fixture(scope="session", autouse=True)
def package_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """The package's cache (OpenVINO's compiled models, default synthetic sets) and every other cache that follows
    ``XDG_CACHE_HOME`` (anomalib's pre-trained weights folder) in temporary folders: a test run starts from empty
    caches (as CI does), whatever the user's ``~/.cache`` holds, and does not fill it."""
    from anomalib_adapted_moe.cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("package_cache")))
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield


@pytest.fixture(autouse=True)
def process_state_as_found():
    """Each test leaves the environment, torch's thread count and the levels of the loggers that existed before it as
    it found them: the workers of ``make test`` run tests in no fixed order, and in-process runs change them
    (``seed_everything`` sets ``PL_GLOBAL_SEED``, which later subprocesses inherit; the demo sets threads)."""
    import logging

    import torch

    loggers = [
        logging.root,
        *(each for each in logging.root.manager.loggerDict.values() if isinstance(each, logging.Logger)),
    ]
    levels = [each.level for each in loggers]
    threads = torch.get_num_threads()
    with mock.patch.dict(os.environ):
        yield
    for each, level in zip(loggers, levels, strict=True):
        each.setLevel(level)
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def signal_stack_left_mapped():
    """After each test the main thread's signal stack is still mapped memory.

    OpenVINO's CPU plugin swaps that stack per ``ov.Core`` (``anomalib_adapted_moe/deploy/openvino_core.py``);
    a test that drops Cores in the order they were made leaves it unmapped, and some later test then dies of a
    segmentation fault on its next signal (a DataLoader worker's exit), with no trace of the cause. This names the
    test instead. Linux only (``/proc/self/maps``).
    """
    yield
    import ctypes
    import threading

    maps = Path("/proc/self/maps")
    if threading.current_thread() is not threading.main_thread() or not maps.is_file():
        return

    class SignalStack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    stack = SignalStack()
    if ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) != 0 or not stack.ss_sp:
        return
    spans = [[int(bound, 16) for bound in line.split()[0].split("-")] for line in maps.read_text().splitlines()]
    assert any(low <= stack.ss_sp < high for low, high in spans), (
        f"this test left the main thread's signal stack ({stack.ss_sp:#x}) unmapped: it dropped OpenVINO Cores in "
        "the order they were made, and the next signal would crash the process. Compile through "
        "anomalib_adapted_moe.deploy.openvino_core.shared_core() (openvino_inferencer does)."
    )


@pytest.fixture
def texture_ad_root(tmp_path: Path) -> Path:
    """``root/cloth`` with two trained subclasses (different mask namings/formats) and one test-only."""
    root = tmp_path / "TextureAD"
    category = root / "cloth"
    make_subclass(category, "fabric_a", train=3, mask_naming="suffix", mask_kind="RGB")
    make_subclass(category, "fabric_b", train=3, mask_naming="same", mask_kind="I;16", ext=".JPG")
    make_subclass(category, "fabric_c", train=None, mask_naming="suffix", mask_kind="P")
    return root


@pytest.fixture
def split_json_root(tmp_path: Path) -> Path:
    """``root/wafer`` with a ``split.json``: the unseen subclass has a train folder that must not be used."""
    root = tmp_path / "TextureAD"
    category = root / "wafer"
    for name in ("wafer_1", "wafer_2", "wafer_3"):
        make_subclass(category, name, train=2)
    (category / "split.json").write_text(json.dumps({"seen": ["wafer_1", "wafer_2"], "unseen": ["wafer_3"]}))
    return root


TINY_IMAGE_SIZE = 64


def tiny_synthetic_datamodule(root: Path, **kwargs):
    """A synthetic Texture AD small enough to train through anomalib's Engine in seconds (2 seen, 1 unseen)."""
    from anomalib_adapted_moe import SyntheticTextureAD

    args = {
        "root": str(root),
        "category": "cloth",
        "image_size": TINY_IMAGE_SIZE,
        "num_train": 4,
        "num_test_good": 2,
        "num_test_defect": 5,
        "num_subclasses": 3,
        "num_unseen": 1,
        "train_batch_size": 4,
        "eval_batch_size": 8,
        "num_workers": 0,
        "seed": 0,
    }
    return SyntheticTextureAD(**{**args, **kwargs})


#: the tiny models' backbone and sizes: a random-init ResNet-18 (no download), 32 feature channels
TINY_MODEL_ARGS = {
    "backbone": "resnet18",
    "layers": ["layer1", "layer2"],
    "pre_trained": False,
    "embed_dim": 32,
    "routing_dim": 16,
}


def tiny_model(**kwargs):
    """The bare torch AdaptedMoEModel on the tiny backbone: 3 experts, top_k 2, seeded."""
    import torch

    from anomalib_adapted_moe.models.adapted_moe.torch_model import AdaptedMoEModel

    torch.manual_seed(0)
    return AdaptedMoEModel(**{**TINY_MODEL_ARGS, "num_experts": 3, "top_k": 2, **kwargs})


def tiny_adapted_moe(seed: int | None = 0, **kwargs):
    """AdaptedMoE on a random-init ResNet-18 (no download), small dimensions, 64-px input.

    Seeded, so a test's outcome does not hang on the random draws of the tests before it; ``seed=None`` keeps the
    generator as the caller seeded it.
    """
    import torch

    from anomalib_adapted_moe import AdaptedMoE

    if seed is not None:
        torch.manual_seed(seed)

    args = {
        **TINY_MODEL_ARGS,
        "epochs": 3,
        "batch_size": 4,
        "pre_processor": AdaptedMoE.configure_pre_processor(image_size=(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)),
    }
    return AdaptedMoE(**{**args, **kwargs})


@pytest.fixture(scope="session")
def fitted_tiny(tmp_path_factory: pytest.TempPathFactory):
    """``(engine, model, datamodule, checkpoint)``: one tiny AdaptedMoE fitted through anomalib's Engine (seed 0).

    Shared by the end-to-end test files so the suite pays for this fit once; a
    test that writes results uses its own Engine and folder.
    """
    import torch
    from anomalib.engine import Engine

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("fitted_tiny")
    datamodule = tiny_synthetic_datamodule(root / "data")
    model = tiny_adapted_moe()
    engine = Engine(default_root_dir=root / "results", accelerator="cpu", devices=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    callback = engine.trainer.checkpoint_callback
    return engine, model, datamodule, Path(callback.best_model_path or callback.last_model_path)


def mean_score_ir(folder: Path, height: int = 32, width: int = 48) -> Path:
    """A one-node IR with AdaptedMoE's input layout, exported for ``height x width`` images (batch free), whose
    score is the image's mean: what a deployment check needs without a trained model."""
    import openvino as ov

    image = ov.opset13.parameter([-1, 3, height, width], ov.Type.f32, name="input")
    score = ov.opset13.reduce_mean(image, [1, 2, 3])
    score.output(0).set_names({"pred_score"})
    xml = folder / "model.xml"
    ov.save_model(ov.Model([score], [image]), xml)
    return xml


def first_score(inferencer, image) -> float:
    """The one image score ``inferencer.predict`` gives."""
    return float(inferencer.predict(image).pred_score.reshape(-1)[0])
