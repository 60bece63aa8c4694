"""The exported IR keeps AdaptedMoE's backbone in f32 on every CPU, as far as the IR itself can say so.

OpenVINO's CPU plugin runs an FP32 IR in bf16 on CPUs with AVX512_BF16, and
``OpenVINOInferencer(path)`` passes no precision, so an IR that says nothing runs
in bf16 there. The plugin ignores a model-wide precision in the IR's ``rt_info``,
but it keeps a node in its own precision when the node is marked ``precise``
(rt_info ``DisablePrecisionConversion``, which OpenVINO 2026.4 writes as ``<attribute
name="DisablePrecisionConversion" version="0" value="dynamic:f16" />``; its ``Node::keepOrigPrecision``).
The backbone is where bf16 loses AdaptedMoE's accuracy (the precision matrix's sensitivity table),
so every AdaptedMoE export marks it (:func:`mark_precise`, :func:`rewrite_ir`); the head after
it still runs in the CPU's default precision. Marking every node does worse: the
nodes the plugin rewrites lose the mark and run in bf16 between f32 ones, which
was slower than f32 throughout (README, "Deploying to the edge").

A precision asked for by name (:func:`~.inferencer.openvino_inferencer` with
``"bf16"``) takes the marks off first (:func:`without_precise_marks`): the user's
choice wins over the IR's default.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .openvino_core import shared_core

#: the rt_info key that marks a node precise (OpenVINO 2026.4 writes it as ``<attribute
#: name="DisablePrecisionConversion" version="0" value="dynamic:f16" />``)
PRECISE = "precise_0"
#: the keys the mark may carry once an IR is read back
_MARK_KEYS = ("precise", "DisablePrecisionConversion")


def mark_precise(model, backbone_only: bool = False):
    """Mark the nodes of an ``openvino.Model`` ``precise`` (in place; returned for chaining).

    ``backbone_only``: every node before the patch aggregation, the part the INT8 export quantises
    (:func:`~.quantization.head_node_names` names the rest).
    """
    from .quantization import head_node_names

    head = set(head_node_names(model)) if backbone_only else set()
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Parameter", "Result", "Constant") and op.get_friendly_name() not in head:
            op.get_rt_info()[PRECISE] = ""
    return model


def without_precise_marks(model):
    """Take every ``precise`` mark off an ``openvino.Model`` (in place; returned for chaining)."""
    for op in model.get_ordered_ops():
        rt_info = op.get_rt_info()
        for key in [key for key in rt_info if key.startswith(_MARK_KEYS)]:
            del rt_info[key]
    return model


def rewrite_ir(xml: str | Path, edit: Callable) -> Path:
    """Rewrite an exported IR (``.xml`` and its ``.bin``) after ``edit(model)`` changed its rt_info (the marks,
    the training images' sizes).

    Written beside the IR, then moved over it, weights first. An FP32 or INT8 IR's weights come out byte for byte
    the same (only the XML's rt_info changes; checked one-off on the demo model), so an interruption between the two
    moves leaves a whole IR; an FP16-weights IR's are laid out anew (a review measured 2 kB less), so there the two
    moves are a window of microseconds in which the pair does not match.
    """
    import openvino as ov

    xml = Path(xml)
    model = shared_core().read_model(xml)
    edit(model)
    with tempfile.TemporaryDirectory(dir=xml.parent) as folder:
        marked = Path(folder) / xml.name
        # compress_to_fp16=False keeps the weights as they are: an FP16-weights IR stays FP16
        ov.save_model(model, marked, compress_to_fp16=False)
        del model  # the source's weights are memory-mapped
        os.replace(marked.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(marked, xml)
    return xml


def model_for(path: str | Path, precision: str | None):
    """The IR at ``path`` as an ``openvino.Model`` to compile in ``precision``: as written for OpenVINO's own
    default (``None``), without its marks when a precision is named (the named one then holds for every node)."""
    model = shared_core().read_model(path)
    return model if precision is None else without_precise_marks(model)


def ir_bytes(model) -> tuple[bytes, bytes]:
    """``(xml, weights)`` of an ``openvino.Model``: the form anomalib's ``OpenVINOInferencer`` also loads."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "model.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def is_marked(op) -> bool:
    """Whether a node of an ``openvino.Model`` carries the ``precise`` mark."""
    return any(key.startswith(_MARK_KEYS) for key in op.get_rt_info())
