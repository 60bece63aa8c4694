"""anomalib's ``OpenVINOInferencer`` with the inference precision chosen, not left to the CPU, optionally compiled
for one batch size; images read as anomalib's file reader reads files (:mod:`.image_input`) and checked against the
compiled shape; one call at a time; compiled by the process's one Core and cached in the package's cache folder
instead of the working directory."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from anomalib.data import NumpyImageBatch
from anomalib.data.utils.image import is_image_file
from anomalib.deploy import OpenVINOInferencer
from PIL.Image import Image as PILImage

from anomalib_adapted_moe.argument_types import wrong_argument_types
from anomalib_adapted_moe.cache import CACHE_ENV, package_cache_dir
from anomalib_adapted_moe.data.flat_frames import FLAT_FRAME_WARNING
from anomalib_adapted_moe.data.image_colour import colour_warning, ir_training_colour, kinds
from anomalib_adapted_moe.data.image_sizes import far_from, ir_size_range, other_size_warning
from anomalib_adapted_moe.data.misread_images import misread_warnings
from anomalib_adapted_moe.data.predict_check import PREDICT_FIX, check_bit_depth, decode_fix
from anomalib_adapted_moe.data.texture_ad import verify_image_file

from .image_input import flat_frames, rgb_in_unit_range, rgb_pil_image
from .ir_checksums import check_sums
from .ir_marks import ir_bytes, model_for
from .openvino_core import shared_core
from .precision import Precision, compile_config

logger = logging.getLogger(__name__)

#: files of torch, not OpenVINO: what each is, and the fix
TORCH_FILES = {
    ".ckpt": (
        "a Lightning checkpoint",
        "export it first (anomalib export --export_type openvino --ckpt_path {path} "
        "...) and give the model.xml it writes",
    ),
    ".pt": (
        "a torch export",
        "anomalib's TorchInferencer runs it; for OpenVINO, export the checkpoint it came from "
        "(anomalib export --export_type openvino --ckpt_path <its model.ckpt> ...)",
    ),
    ".pth": (
        "a torch state dict (backbone weights?)",
        "give the model.xml an OpenVINO export wrote (anomalib export "
        "--export_type openvino --ckpt_path <model.ckpt> ...)",
    ),
}
#: the fix for a file named unlike an image (notes.txt) that does not decode: nothing is damaged
NOT_AN_IMAGE_FIX = "give an image file (.png, .jpg, .bmp, .tif, ...): this one is not named like an image."

#: the fields an output may be named after: ``predict`` builds a ``NumpyImageBatch`` from the outputs
_BATCH_FIELDS = {field.name for field in dataclasses.fields(NumpyImageBatch)}


class ImageSizeError(ValueError):
    """An image whose size differs from the fixed size its IR was exported for (``--input_size``)."""


class BatchSizeError(ValueError):
    """A batch of another size than the one the inferencer was compiled for (``batch_size``)."""


def unreadable_model(path: str | Path, error: RuntimeError) -> ValueError:
    """The error for a model file OpenVINO cannot read (truncated, damaged, not a model): OpenVINO's names neither
    the file nor the fix, and for a missing ``.bin`` not even the path."""
    reason = str(error).strip().splitlines()[-1]  # OpenVINO's last line says what; the others, where in its source
    msg = (
        f"{path}: OpenVINO cannot read it as a model ({reason}). Fix: give the model.xml that `anomalib export "
        "--export_type openvino` wrote, its model.bin beside it; if it is that file, it is damaged or incomplete "
        "(e.g. an interrupted copy): copy it again or export again."
    )
    return ValueError(msg)


def compiled_model_cache() -> dict[str, str]:
    """OpenVINO's ``CACHE_DIR`` for compiled models: ``openvino`` in the package's cache folder.

    anomalib's ``OpenVINOInferencer`` creates ``./openvino_cache`` in the working directory on every
    load, which fails where that is read-only (a service started in ``/``) and litters it elsewhere.
    A cache folder that cannot be written is not worth a failed load: the model is then compiled
    without a cache (each load compiles again), and a warning names the folder and the fix.
    """
    folder = package_cache_dir() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        warnings.warn(
            f"OpenVINO's compiled-model cache {folder} cannot be written; compiling without a cache (every load "
            f"compiles again). Fix: set {CACHE_ENV} to a writable folder.",
            stacklevel=3,
        )
        return {}
    return {"CACHE_DIR": str(folder)}


class SizeCheckedInferencer(OpenVINOInferencer):
    """``OpenVINOInferencer`` that reads every kind of image alike and names the image and the fix when it does not fit.

    An IR exported with ``--input_size`` takes only images of that size (anomalib's inferencer does
    not resize them), one compiled for a batch size only batches of that size, and OpenVINO's own
    refusal names neither the file nor what to do.

    One inferencer may serve several threads (a web service's pool): its calls run one at a time.
    OpenVINO's compiled-model call shares one infer request, so two threads at once got
    ``RuntimeError: Infer Request is busy`` or, on a small graph, each other's scores. One inference
    already spreads over the cores; for inferences in parallel, give each thread its own inferencer.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._one_call_at_a_time = threading.Lock()
        self._source: Path | None = None  # the file of the call in progress
        self._flat_before = False  # the last call held a flat frame
        self._sizes_named: set[tuple[int, int]] = set()  # image sizes far from the training ones, named once each
        self._colour_named = False  # an image of the other kind (grey, colour) than the training ones was named
        self._misread_named: set[str] = set()  # the kinds of misread files named (several pages, dark 16-bit)

    def load_model(self, path: str | Path | tuple[bytes, bytes]):
        """anomalib's loading (an IR's ``.xml`` or ``.bin``, an ONNX file, or IR bytes), with the compiled model
        cached by :func:`compiled_model_cache` instead of in ``./openvino_cache``, and compiled by the process's one
        ``Core`` (:mod:`.openvino_core`: a Core per inferencer can crash the process after a model reload)."""
        core = shared_core()
        if isinstance(path, tuple):
            model = core.read_model(model=path[0], weights=path[1])
        else:
            try:
                model = core.read_model(Path(path).with_suffix(".xml") if Path(path).suffix == ".bin" else path)
            except RuntimeError as error:
                raise unreadable_model(path, error) from error
        self.training_image_sizes = ir_size_range(model)  # before __init__'s body: anomalib's __init__ loads
        self.training_colour = ir_training_colour(model)
        compiled = core.compile_model(model, self.device, {**(self.config or {}), **compiled_model_cache()})
        return compiled.input(0), compiled.output(0), compiled

    def predict(self, image):
        """anomalib's ``predict``, one call at a time; an image file that does not fit is named in the error.

        An image file is read by anomalib's reader (``PIL``'s ``convert("RGB")``), as ``anomalib predict`` reads
        them, with the same checks (:mod:`~anomalib_adapted_moe.data.predict_check`): a 16-bit grey image, which
        that reader clips to 8 bits (silently wrong scores), raises ``HighBitDepthImageError``; a damaged one
        raises ``CorruptImageError`` naming the file and the fix (PIL's "image file is truncated" names neither).
        Arrays and PIL images are read as files are (:mod:`.image_input`).
        """
        path = Path(image) if isinstance(image, str | Path) else None
        if isinstance(image, list | tuple) or (path is not None and path.is_dir()):
            what = f"{path}: a folder" if path is not None else f"a {type(image).__name__} of {len(image)}"
            msg = (
                f"{what}; predict takes one image per call: a file's path, a PIL image, or an array (N x H x W x 3 "
                "for a batch). Fix: call it for each image (for path in sorted(folder.glob('*.png'))), stack arrays "
                "with numpy.stack, or predict a folder with anomalib predict --data <folder>."
            )
            raise TypeError(msg)
        if not isinstance(image, str | Path | PILImage | np.ndarray | torch.Tensor):  # 'bytes' has no attribute 'ndim'
            encoded = isinstance(image, bytes | bytearray | memoryview)
            msg = (
                f"a {type(image).__name__}: predict takes an image file's path, a PIL image, a numpy array or a torch "
                "tensor. Fix: "
                + (
                    "decode the file's bytes first, PIL.Image.open(io.BytesIO(data))."
                    if encoded
                    else "give the image in one of those forms."
                )
            )
            raise TypeError(msg)
        if isinstance(image, PILImage):
            # opened from a file and not turned to another page: that file's pages and 16-bit colour, named once
            filename = getattr(image, "filename", "")
            if filename and image.tell() == 0:
                with contextlib.suppress(OSError, ValueError, EOFError, SyntaxError):  # a file moved or damaged since
                    self.warn_if_misread(Path(filename))
            image = rgb_pil_image(image)
        try:
            if path is not None:
                check_bit_depth(path)
                self.warn_if_misread(path)
            with self._one_call_at_a_time:
                self._source = path  # named by pre_process's warnings
                return super().predict(image)
        except (ImageSizeError, BatchSizeError) as error:
            if path is not None:
                raise type(error)(f"{image}: {error}") from None
            raise
        except OSError:  # PIL's UnidentifiedImageError and "image file is truncated" among them
            if path is not None and path.is_file():  # raises CorruptImageError naming the file and the fix
                verify_image_file(path, fix=decode_fix(path, PREDICT_FIX) if is_image_file(path) else NOT_AN_IMAGE_FIX)
            raise

    def pre_process(self, image: np.ndarray) -> np.ndarray:
        """:func:`rgb_in_unit_range`, anomalib's NCHW conversion, then the checks against the compiled height, width
        and batch size."""
        batch = OpenVINOInferencer.pre_process(rgb_in_unit_range(image))
        flat = flat_frames(batch)
        if flat and not self._flat_before:  # once per run of flat calls: a covered lens at 30 frames/s, one line
            which = str(self._source or "the image given") if batch.shape[0] == 1 else f"frame(s) {flat} of the batch"
            logger.warning(FLAT_FRAME_WARNING + " (Flat frames right after it are not named again.)", which)
        self._flat_before = bool(flat)
        shape = self.input_blob.get_partial_shape()
        fixed = [shape[axis].get_length() if shape[axis].is_static else None for axis in (2, 3)]
        if None not in fixed and fixed != list(batch.shape[2:]):
            height, width = fixed
            msg = (
                f"the image is {batch.shape[2]} x {batch.shape[3]} (height x width), but this IR was exported for "
                f"{height} x {width} images (--input_size). Fix: resize the image to {height} x {width} before "
                "predict, or export again with the camera's size (or without --input_size for any size)."
            )
            raise ImageSizeError(msg)
        size = tuple(batch.shape[2:])
        training = self.training_image_sizes  # an IR of a fixed size takes only images resized to it
        if None in fixed and training and size not in self._sizes_named and far_from(size, training):
            self._sizes_named.add(size)  # a line's camera: one line, not one per frame
            subject = str(self._source or ("the image given" if batch.shape[0] == 1 else "each frame of the batch"))
            logger.warning(other_size_warning(subject, size, training) + " (Named once per size.)")
        self.warn_if_other_colour(batch, flat)
        if shape[0].is_static and shape[0].get_length() != batch.shape[0]:
            msg = (
                f"the batch holds {batch.shape[0]} image(s), but this inferencer was compiled for batches of "
                f"{shape[0].get_length()} (batch_size). Fix: give {shape[0].get_length()} at a time, or create it "
                "with openvino_inferencer(path) for any batch size."
            )
            raise BatchSizeError(msg)
        return batch

    def warn_if_misread(self, path: Path) -> None:
        """:func:`~anomalib_adapted_moe.data.misread_images.misread_warnings` of an image file, each kind once: a
        12-bit line camera's frames, one line, not one per frame."""
        for kind, warning in misread_warnings(path, "scores"):
            if kind not in self._misread_named:
                self._misread_named.add(kind)
                logger.warning(warning + " (Named once.)")

    def warn_if_other_colour(self, batch: np.ndarray, flat: list[int]) -> None:
        """Name the first grey frame given to a model trained on colour images, or colour to one trained on grey
        (``flat``: the batch's flat frames, named as such)."""
        if self._colour_named or self.training_colour not in ("colour", "grey"):
            return
        other_kind = "grey" if self.training_colour == "colour" else "colour"
        flat_frames = np.isin(np.arange(batch.shape[0]), flat)
        found = kinds(batch.reshape(*batch.shape[:2], -1), full_scale=1.0, flat=flat_frames)
        if other_kind in found:
            self._colour_named = True  # a line's camera: one line, not one per frame
            first = found.index(other_kind)
            which = str(self._source or "the image given") if batch.shape[0] == 1 else f"frame {first} of the batch"
            logger.warning(colour_warning(f"{which} is", other_kind) + " (Named once.)")

    @staticmethod
    def post_process(predictions) -> dict:
        """anomalib's outputs by name, each named after its ``NumpyImageBatch`` field.

        A graph compiled for a static batch folds nodes, and an output can then carry a
        folded node's name as well (``{'add_893', 'pred_score'}``); anomalib takes any one
        of the names, and ``NumpyImageBatch`` refuses the wrong one.
        """
        names = [min(set(names) & _BATCH_FIELDS or names) for names in predictions.names()]
        return dict(zip(names, predictions.to_tuple(), strict=True))


def openvino_inferencer(
    path: str | Path, precision: Precision | None = "f32", batch_size: int | None = None
) -> SizeCheckedInferencer:
    """anomalib's ``OpenVINOInferencer`` on the CPU, compiled to run in ``precision`` (default f32: exact everywhere).

    ``OpenVINOInferencer(path)`` alone runs in the CPU's default precision (bf16 on CPUs
    with AVX512_BF16, f32 elsewhere), except for the backbone, which AdaptedMoE's export
    marks to stay in f32 (:mod:`~anomalib_adapted_moe.deploy.ir_marks`); this pins one
    precision for every node (the marks are taken off for ``"bf16"`` and ``"f16"``) and
    refuses a precision the CPU lacks
    (:class:`~anomalib_adapted_moe.deploy.precision.UnsupportedPrecisionError`). ``None``
    compiles as that bare inferencer does (OpenVINO's default, the marks kept), with this
    function's checks: it was refused, so that choice lost them.
    An INT8 IR (``--compression_type INT8_PTQ``) runs its quantised layers in int8
    whatever ``precision`` says; ``precision`` then applies to the layers left in float.
    An image that does not fit an IR exported for a fixed size raises :class:`ImageSizeError`;
    a missing IR (or its ``.bin``), ``FileNotFoundError`` naming it and how to export one; a damaged one,
    ``ValueError`` naming it and the fix (:func:`unreadable_model`); one whose file differs from the SHA-256 its
    export wrote beside it, :class:`~.ir_checksums.ChangedModelFileError`. Compiled models are cached
    in the package's cache folder (:func:`compiled_model_cache`), not in the working directory.
    ``predict`` runs one call at a time (threads may share the inferencer) and reads image arrays and
    PIL images as anomalib reads image files (:mod:`.image_input`).

    ``batch_size``: compile for that batch size only (1 for a line that inspects one image at a
    time): OpenVINO then plans every tensor once instead of on each call, which is faster,
    most where the IR was also exported for a fixed image size (``--input_size``); another batch
    size then raises :class:`BatchSizeError`. ``None`` (default): any batch size.

    Example:
        >>> inferencer = openvino_inferencer("results/demo/weights/openvino/model.xml")  # doctest: +SKIP
        >>> inferencer.predict("image.png").pred_score  # doctest: +SKIP
    """
    if problem := wrong_argument_types(openvino_inferencer, locals()):  # batch_size="1" met "'<' not supported"
        raise TypeError(problem)
    config = {} if precision is None else compile_config(precision)  # None: OpenVINO's own default
    if Path(path).is_dir():
        inside = sorted(str(xml) for xml in Path(path).rglob("*.xml"))
        msg = (
            f"{path}: a folder, not a model file (the .xml file(s) under it: {', '.join(inside) or 'none'}). Fix: "
            "give the model.xml itself, e.g. <export_root>/weights/openvino/model.xml."
        )
        raise IsADirectoryError(msg)
    if not Path(path).is_file():
        msg = (
            f"{path}: no such model file. Fix: give the model.xml that `anomalib export --export_type openvino` wrote "
            "(<export_root>/weights/openvino/model.xml, ./results/weights/openvino/model.xml unless --export_root was "
            "given; its model.bin beside it)."
        )
        raise FileNotFoundError(msg)
    if Path(path).suffix.lower() in TORCH_FILES:  # OpenVINO tried it as a TensorFlow graph: 'no field named "PK"'
        kind, fix = TORCH_FILES[Path(path).suffix.lower()]
        raise ValueError(f"{path}: {kind}, not an OpenVINO model. Fix: {fix.format(path=path)}.")
    xml = Path(path).with_suffix(".xml") if Path(path).suffix == ".bin" else Path(path)
    if xml.suffix == ".xml" and not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        missing = xml.with_suffix(".bin") if xml.is_file() else xml
        msg = (
            f"{path}: {missing} is missing beside it (an IR is the .xml and the .bin together). Fix: put the "
            "model.xml and model.bin that `anomalib export --export_type openvino` wrote in one folder, or export "
            "again."
        )
        raise FileNotFoundError(msg)
    if xml.suffix == ".xml":
        check_sums(xml)  # a changed byte in the weights loads without a word
    if batch_size is not None and batch_size < 1:
        msg = f"batch_size must be a positive number of images (or None for any), not {batch_size}."
        raise BatchSizeError(msg)
    if precision not in ("f32", None) or batch_size is not None:
        # a named precision other than f32 takes the IR's f32 marks off: they would keep the backbone out of it
        try:
            model = model_for(xml, None if precision in ("f32", None) else precision)
        except RuntimeError as error:
            raise unreadable_model(path, error) from error
        if batch_size is not None:
            shape = model.input(0).get_partial_shape()
            shape[0] = batch_size
            model.reshape({model.input(0): shape})
        path = ir_bytes(model)
    return SizeCheckedInferencer(path=path, device="CPU", config=config)
