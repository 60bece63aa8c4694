"""Per-subclass evaluation (the paper's protocol of seen and unseen subclasses) and export parity."""

from .export_parity import openvino_parity
from .per_subclass import (
    SubclassScores,
    format_table,
    group_by_subclass,
    nanmean,
    per_subclass_table,
    subclass_table,
)
from .raw_predictions import RawPredictionRecorder, normalization_disabled, predict_raw
from .resampling import bootstrap_intervals, one_threshold_figures, paired_changes

__all__ = [
    "RawPredictionRecorder",
    "SubclassScores",
    "bootstrap_intervals",
    "format_table",
    "group_by_subclass",
    "nanmean",
    "normalization_disabled",
    "one_threshold_figures",
    "openvino_parity",
    "paired_changes",
    "per_subclass_table",
    "predict_raw",
    "subclass_table",
]
