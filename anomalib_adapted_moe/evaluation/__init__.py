"""Per-subclass evaluation (the paper's protocol of seen and unseen subclasses) and export parity."""

from .export_parity import openvino_parity
from .per_subclass import SubclassScores, format_table, group_by_subclass, per_subclass_table
from .raw_predictions import RawPredictionRecorder, normalization_disabled, predict_raw

__all__ = [
    "RawPredictionRecorder",
    "SubclassScores",
    "format_table",
    "group_by_subclass",
    "normalization_disabled",
    "openvino_parity",
    "per_subclass_table",
    "predict_raw",
]
