"""anomalib's ``OpenVINOInferencer`` with the inference precision chosen, not left to the CPU."""

from __future__ import annotations

from pathlib import Path

from .precision import Precision, compile_config


def openvino_inferencer(path: str | Path, precision: Precision = "f32"):
    """anomalib's ``OpenVINOInferencer`` on the CPU, compiled to run in ``precision`` (default f32: exact everywhere).

    ``OpenVINOInferencer(path)`` alone runs in bf16 on CPUs with AVX512_BF16 and in
    f32 elsewhere; this pins the choice and refuses a precision the CPU lacks
    (:class:`~anomalib_adapted_moe.deploy.precision.UnsupportedPrecisionError`).
    An INT8 IR (``--compression_type INT8_PTQ``) runs its quantised layers in int8
    whatever ``precision`` says; ``precision`` then applies to the layers left in float.

    Example:
        >>> inferencer = openvino_inferencer("results/demo/weights/openvino/model.xml")  # doctest: +SKIP
        >>> inferencer.predict("image.png").pred_score  # doctest: +SKIP
    """
    from anomalib.deploy import OpenVINOInferencer

    return OpenVINOInferencer(path=path, device="CPU", config=compile_config(precision))
