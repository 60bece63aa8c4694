"""anomalib's ``OpenVINOInferencer`` with the inference precision chosen, not left to the CPU."""

from __future__ import annotations

from pathlib import Path

from .ir_marks import ir_bytes, model_for
from .precision import Precision, compile_config


def openvino_inferencer(path: str | Path, precision: Precision = "f32"):
    """anomalib's ``OpenVINOInferencer`` on the CPU, compiled to run in ``precision`` (default f32: exact everywhere).

    ``OpenVINOInferencer(path)`` alone runs in the CPU's default precision (bf16 on CPUs
    with AVX512_BF16, f32 elsewhere), except for the backbone, which AdaptedMoE's export
    marks to stay in f32 (:mod:`~anomalib_adapted_moe.deploy.ir_marks`); this pins one
    precision for every node (the marks are taken off for ``"bf16"`` and ``"f16"``) and
    refuses a precision the CPU lacks
    (:class:`~anomalib_adapted_moe.deploy.precision.UnsupportedPrecisionError`).
    An INT8 IR (``--compression_type INT8_PTQ``) runs its quantised layers in int8
    whatever ``precision`` says; ``precision`` then applies to the layers left in float.

    Example:
        >>> inferencer = openvino_inferencer("results/demo/weights/openvino/model.xml")  # doctest: +SKIP
        >>> inferencer.predict("image.png").pred_score  # doctest: +SKIP
    """
    from anomalib.deploy import OpenVINOInferencer

    config = compile_config(precision)
    if precision != "f32":  # the IR's f32 marks would keep the backbone out of the precision asked for
        path = ir_bytes(model_for(path, precision))
    return OpenVINOInferencer(path=path, device="CPU", config=config)
