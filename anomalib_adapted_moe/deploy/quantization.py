"""INT8 post-training quantisation (NNCF) of an exported AdaptedMoE: the backbone only, calibrated on training data.

anomalib's ``--compression_type INT8_PTQ`` calibrates on the datamodule's
validation loader. Ours holds training images only (held-out normal images and
synthetic anomalies made from them, :mod:`anomalib_adapted_moe.data.validation_split`);
a datamodule that validates on test images is refused here, so that nothing about
the deployed model is chosen on test data.

Only the frozen backbone is quantised. The head (patch aggregation, adaptor,
routing, test-time adaptation, experts, map upsampling and blur) stays in float:
quantising it too cost 0.75 point more seen image AUROC on the demo model
(measured when this module was written, 5c4defd; no report keeps that run) and saves little time, since the backbone's
convolutions are where the time goes. The head starts at the patch
aggregation's stride-1 average pools (``PatchFeatureExtractor`` in
``models/adapted_moe/features.py``), or, without aggregation (``aggregation_size=1``),
at the concatenation of the feature layers; everything downstream is left out of
quantisation. So is the backbone's stem, the convolution of the three-channel
image: in int8 it ran slower than in float (its three input channels leave the
int8 kernels idle) and moved the scores more (figures in :func:`quantize_backbone`'s source comments).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anomalib.data import AnomalibDataModule

logger = logging.getLogger(__name__)

#: fewest calibration images accepted: fewer leave each layer's activation range to a handful of samples
#: (anomalib recommends 300; every validation image is used)
MIN_CALIBRATION_IMAGES = 16


class CalibrationDataError(ValueError):
    """The datamodule cannot calibrate an INT8 model (too few images, or test images)."""


def calibration_loader(datamodule: AnomalibDataModule | None):
    """The datamodule's validation loader, checked: training-derived images only, at least the minimum count."""
    from anomalib_adapted_moe.data.validation_split import validates_on_test_images

    if datamodule is None:
        msg = "INT8_PTQ needs a datamodule to calibrate on. Fix: pass --data (CLI) or datamodule= (Python)."
        raise CalibrationDataError(msg)
    if mode := validates_on_test_images(datamodule):
        msg = (
            f"INT8 calibration reads the validation split, and val_split_mode={mode!r} takes it from the test set; "
            "a deployed model must not be tuned on test images. Fix: use val_split_mode='synthetic' (held-out "
            "training images with synthetic anomalies; --data.val_split_mode synthetic) or 'from_train'."
        )
        raise CalibrationDataError(msg)
    datamodule.setup("fit")
    loader = datamodule.val_dataloader()
    count = len(loader.dataset)
    if count < MIN_CALIBRATION_IMAGES:
        msg = (
            f"INT8 calibration has {count} validation image(s) from {type(datamodule).__name__}, and wants at least "
            f"{MIN_CALIBRATION_IMAGES} (anomalib recommends 300); no model was written. Fix: add "
            "training images, raise val_split_ratio, or export in float (no --compression_type, or FP16)."
        )
        raise CalibrationDataError(msg)
    return loader


def warn_if_other_subclasses(dataset, subclasses: list[str]) -> None:
    """Warn when no calibration image is of ``subclasses``, the training subclasses the model's experts are.

    Another category's images (``--data.category wafer`` for a cloth checkpoint) set the int8 ranges for features
    the line never shows, and the export went through without a word (measured on a 10-epoch cloth model, 8 cloth
    images: the INT8 IR's largest score change from FP32 0.045, against 0.022 calibrated on cloth). A warning, not a
    refusal: a new variant's images may be given on purpose. Silent where there is nothing to compare: experts that
    are no subclass (none given: :meth:`AdaptedMoE.subclass_experts`), or a dataset without subclasses (``Folder``).
    """
    samples = getattr(dataset, "samples", None)
    if not subclasses or samples is None or "subclass" not in samples:
        return
    names = sorted(set(samples["subclass"].astype(str)))
    if names and not set(names) & set(subclasses):
        logger.warning(
            "INT8 calibration images are of subclass(es) %s, none of which this model's experts were trained on "
            "(%s): the int8 ranges are then set by images the model never scores. Fix: pass the data the checkpoint "
            "was trained on (e.g. its --data.category), unless these are the line's images on purpose.",
            ", ".join(names),
            ", ".join(subclasses),
        )


def head_node_names(model) -> list[str]:
    """Names of the OpenVINO model's nodes from the patch aggregation onwards (kept out of quantisation)."""
    return sorted(_downstream(patch_aggregations(model)))


def _downstream(starts: list) -> set[str]:
    """Names of ``starts`` and of every node they feed."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        op = stack.pop()
        if op.get_friendly_name() in seen:
            continue
        seen.add(op.get_friendly_name())
        stack += [target.get_node() for output in op.outputs() for target in output.get_target_inputs()]
    return seen


def stem_node_names(model) -> list[str]:
    """Names of the convolutions that read the three-channel image (the backbone's stem), kept out of quantisation."""
    return [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "Convolution"
        and op.input(1).get_partial_shape().rank.get_length() == 4
        and op.input(1).get_partial_shape()[1].is_static
        and op.input(1).get_partial_shape()[1].get_length() == 3
    ]


def patch_aggregations(model) -> list:
    """Where the head of an exported AdaptedMoE starts: the patch aggregation's average pools (one per feature
    layer), or without aggregation the concatenation of the feature layers (the backbones we use have none).
    Pools and concatenations these feed (``image_score_window``'s pool over the patch scores) are the head's own."""
    candidates = [op for op in model.get_ops() if _is_patch_aggregation(op) or _is_layer_concat(op)]
    fed = _downstream(
        [target.get_node() for op in candidates for out in op.outputs() for target in out.get_target_inputs()]
    )
    starts = [op for op in candidates if op.get_friendly_name() not in fed]
    if not starts:
        msg = (
            "No stride-1 average pool and no concatenation of feature maps found: this does not look like an "
            "exported AdaptedMoE graph."
        )
        raise ValueError(msg)
    return starts


def _is_patch_aggregation(op) -> bool:
    if op.get_type_name() != "AvgPool":
        return False
    attributes = op.get_attributes()
    kernel = list(attributes.get("kernel", []))
    return len(kernel) == 2 and kernel[0] == kernel[1] > 1 and list(attributes.get("strides", [])) == [1, 1]


def _is_layer_concat(op) -> bool:
    shape = op.get_output_partial_shape(0)
    return op.get_type_name() == "Concat" and op.get_input_size() > 1 and shape.rank.is_static and len(shape) == 4


def as_input_of(model):
    """The calibration batches' images as the IR takes them: an IR exported with a fixed ``--input_size`` (the
    camera's) refused images of another size, as the datamodule's are (OpenVINO's "incompatible" traceback), so
    they are resized to it, as the camera's would be, and the resize is logged once."""
    from torchvision.transforms.v2.functional import resize

    shape = model.inputs[0].get_partial_shape()
    fixed = shape.rank.is_static and len(shape) == 4 and shape[2].is_static and shape[3].is_static
    size = (shape[2].get_length(), shape[3].get_length()) if fixed else None
    said = []

    def image(batch):
        if size is None or tuple(batch.image.shape[-2:]) == size:
            return batch.image.numpy()
        if not said:
            logger.info(
                "INT8 calibration images resized from %s to the model's fixed input, %s (--input_size).",
                "x".join(map(str, batch.image.shape[-2:])),
                "x".join(map(str, size)),
            )
            said.append(True)
        return resize(batch.image, list(size), antialias=True).numpy()

    return image


def quantize_backbone(model, datamodule: AnomalibDataModule | None):
    """NNCF post-training quantisation of the backbone of an exported AdaptedMoE ``openvino.Model``."""
    import nncf

    from anomalib_adapted_moe.command_line import loggers_at

    from .ir_marks import without_precise_marks

    loader = calibration_loader(datamodule)
    logger.info("INT8 calibration on %d validation images.", len(loader.dataset))
    model = without_precise_marks(model)  # an exported FP32 IR's f32 marks must not hold the backbone out of int8
    dataset = nncf.Dataset(loader, as_input_of(model))
    ignored = nncf.IgnoredScope(names=head_node_names(model) + stem_node_names(model), validate=False)
    # Both choices were made on the demo model's validation split (20 images; the mean score difference to the FP32
    # IR, head in f32 / in bf16), with the time at batch 1 on an Intel Xeon with AMX (head in bf16; f32 6.45 ms):
    # fast bias correction, stem in int8: 1.7e-2 / 1.9e-2; full bias correction (each layer's bias refitted on the
    # quantised layers before it), stem in int8: 1.3e-2 / 1.4e-2, 4.79 ms; full, stem in float: 1.1e-2 / 8.7e-3,
    # 4.64 ms. Every depthwise convolution in float too: 9.9e-3 / 7.7e-3 but 4.91 ms, not taken.
    # subset_size counts dataset items, here batches: every validation image calibrates. NNCF logs an INFO line for
    # each head node the ignored scope leaves in float (162 on the demo model); its warnings still show.
    with loggers_at(logging.WARNING, "nncf"):
        return nncf.quantize(model, dataset, subset_size=len(loader), ignored_scope=ignored, fast_bias_correction=False)
