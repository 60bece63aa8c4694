"""Edge deployment: the OpenVINO inference precision chosen and checked, INT8 quantisation of the backbone, and the
exported IR's SHA-256 sums checked before it is loaded."""

from .image_input import ImageDtypeError, ImageShapeError
from .inferencer import BatchSizeError, ImageSizeError, openvino_inferencer
from .ir_checksums import ChangedModelFileError
from .precision import (
    PRECISIONS,
    UnsupportedPrecisionError,
    available_precisions,
    compile_config,
    compiled_precision,
    cpu_description,
    cpu_flags,
    cpu_model,
    default_precision,
)
from .quantization import MIN_CALIBRATION_IMAGES, CalibrationDataError, quantize_backbone

__all__ = [
    "MIN_CALIBRATION_IMAGES",
    "PRECISIONS",
    "BatchSizeError",
    "CalibrationDataError",
    "ChangedModelFileError",
    "ImageDtypeError",
    "ImageShapeError",
    "ImageSizeError",
    "UnsupportedPrecisionError",
    "available_precisions",
    "compile_config",
    "compiled_precision",
    "cpu_description",
    "cpu_flags",
    "cpu_model",
    "default_precision",
    "openvino_inferencer",
    "quantize_backbone",
]
