"""anomalib's ``OpenVINOInferencer`` with the inference precision chosen, not left to the CPU, and images checked
against the size an IR was exported for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anomalib.deploy import OpenVINOInferencer

from .ir_marks import ir_bytes, model_for
from .precision import Precision, compile_config


class ImageSizeError(ValueError):
    """An image whose size differs from the fixed size its IR was exported for (``--input_size``)."""


class SizeCheckedInferencer(OpenVINOInferencer):
    """``OpenVINOInferencer`` that names the image and the fix when it does not fit an IR of fixed size.

    An IR exported with ``--input_size`` takes only images of that size (anomalib's inferencer does
    not resize them), and OpenVINO's own refusal names neither the file nor what to do.
    """

    def predict(self, image):
        """anomalib's ``predict``; an image file that does not fit is named in the error."""
        try:
            return super().predict(image)
        except ImageSizeError as error:
            if isinstance(image, str | Path):
                raise ImageSizeError(f"{image}: {error}") from None
            raise

    def pre_process(self, image: np.ndarray) -> np.ndarray:
        """anomalib's NCHW conversion, then the size check against the IR's fixed height and width."""
        batch = OpenVINOInferencer.pre_process(image)
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
        return batch


def openvino_inferencer(path: str | Path, precision: Precision = "f32") -> SizeCheckedInferencer:
    """anomalib's ``OpenVINOInferencer`` on the CPU, compiled to run in ``precision`` (default f32: exact everywhere).

    ``OpenVINOInferencer(path)`` alone runs in the CPU's default precision (bf16 on CPUs
    with AVX512_BF16, f32 elsewhere), except for the backbone, which AdaptedMoE's export
    marks to stay in f32 (:mod:`~anomalib_adapted_moe.deploy.ir_marks`); this pins one
    precision for every node (the marks are taken off for ``"bf16"`` and ``"f16"``) and
    refuses a precision the CPU lacks
    (:class:`~anomalib_adapted_moe.deploy.precision.UnsupportedPrecisionError`).
    An INT8 IR (``--compression_type INT8_PTQ``) runs its quantised layers in int8
    whatever ``precision`` says; ``precision`` then applies to the layers left in float.
    An image that does not fit an IR exported for a fixed size raises :class:`ImageSizeError`.

    Example:
        >>> inferencer = openvino_inferencer("results/demo/weights/openvino/model.xml")  # doctest: +SKIP
        >>> inferencer.predict("image.png").pred_score  # doctest: +SKIP
    """
    config = compile_config(precision)
    if precision != "f32":  # the IR's f32 marks would keep the backbone out of the precision asked for
        path = ir_bytes(model_for(path, precision))
    return SizeCheckedInferencer(path=path, device="CPU", config=config)
