"""Nodes marked ``precise`` in the IR: how AdaptedMoE's export keeps its backbone in f32 on every CPU."""

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from anomalib_adapted_moe.benchmark.precision import layer_precisions, mark_first_feature_layer
from anomalib_adapted_moe.deploy import cpu_model, default_precision
from anomalib_adapted_moe.deploy.ir_marks import is_marked, mark_precise, model_for, rewrite_ir
from anomalib_adapted_moe.deploy.openvino_core import shared_core
from anomalib_adapted_moe.deploy.quantization import head_node_names, stem_node_names


def backbone_and_head() -> ov.Model:
    """Two convolutions (the backbone), then the 3x3 stride-1 average pool where AdaptedMoE's head begins."""
    weights = np.random.default_rng(0).standard_normal((3, 16, 16, 3, 3)).astype(np.float32) * 0.2
    image = ops.parameter([1, 3, 32, 32], np.float32, name="image")
    features = ops.convolution(image, ops.constant(weights[0, :, :3]), [1, 1], [1, 1], [1, 1], [1, 1])
    features = ops.convolution(ops.relu(features), ops.constant(weights[1]), [1, 1], [1, 1], [1, 1], [1, 1])
    pooled = ops.avg_pool(features, [1, 1], [1, 1], [1, 1], [3, 3], exclude_pad=True)
    return ov.Model([ops.relu(pooled)], [image], "backbone_and_head")


def marked_types(model) -> list[str]:
    """Type names of the nodes that carry the mark."""
    return [op.get_type_name() for op in model.get_ordered_ops() if is_marked(op)]


@pytest.mark.parametrize(
    ("backbone_only", "expected"),
    [
        (True, ["Convolution", "Relu", "Convolution"]),
        (False, ["Convolution", "Relu", "Convolution", "AvgPool", "Relu"]),
    ],
)
def test_the_marks_survive_the_ir_file_and_spare_the_head_when_asked(
    tmp_path: Path, backbone_only: bool, expected: list[str]
) -> None:
    ov.save_model(mark_precise(backbone_and_head(), backbone_only), tmp_path / "model.xml", compress_to_fp16=False)
    assert marked_types(model_for(tmp_path / "model.xml", None)) == expected  # as written: OpenVINO's default
    assert marked_types(model_for(tmp_path / "model.xml", "bf16")) == []  # a named precision holds everywhere


@pytest.mark.parametrize("aggregation", ["average pools", "concatenation", "concatenation, then a score pool"])
def test_the_first_feature_layer_marks_cover_what_feeds_the_shallowest_patch_aggregation_only(
    tmp_path: Path, aggregation: str
) -> None:
    """Two feature layers, each pooled (``aggregation_size`` 3) or concatenated as they are (1, the CPU recipe):
    only the stem and the nodes before the shallow layer are marked (the precision matrix's row that keeps part of
    the backbone in f32), and the head kept out of INT8 starts at the pools or at the concatenation, also where
    the head pools its one-channel patch scores further down (``image_score_window`` 3)."""
    weights = np.random.default_rng(0).standard_normal((2, 16, 16, 3, 3)).astype(np.float32) * 0.2
    image = ops.parameter([1, 3, 32, 32], np.float32, name="image")
    stem = ops.convolution(image, ops.constant(weights[0, :, :3]), [1, 1], [1, 1], [1, 1], [1, 1])
    shallow = ops.relu(stem)
    deep = ops.relu(ops.convolution(shallow, ops.constant(weights[1]), [1, 1], [1, 1], [1, 1], [1, 1]))
    if aggregation == "average pools":
        heads = [ops.avg_pool(x, [1, 1], [1, 1], [1, 1], [3, 3], exclude_pad=True) for x in (shallow, deep)]
        below = [ops.add(*heads)]
    else:
        heads = [ops.concat([shallow, deep], axis=1)]
        below = [ops.reduce_mean(heads[0], [1], keep_dims=True)]
    if aggregation == "concatenation, then a score pool":
        below.append(ops.avg_pool(below[-1], [1, 1], [1, 1], [1, 1], [3, 3], exclude_pad=True))
    model = ov.Model([below[-1]], [image], "two_feature_layers")
    assert stem_node_names(model) == [stem.get_friendly_name()]
    head = [*heads, *below, *model.get_results()]  # the reduce_mean's axes are a constant: an input, not downstream
    assert set(head_node_names(model)) == {op.get_friendly_name() for op in head}
    ov.save_model(mark_first_feature_layer(model), tmp_path / "model.xml", compress_to_fp16=False)
    assert marked_types(model_for(tmp_path / "model.xml", None)) == ["Convolution", "Relu"]


def test_marking_an_exported_ir_in_place_changes_its_xml_only(tmp_path: Path) -> None:
    """The weights file comes out identical, so the two file moves cannot leave a mismatched pair."""
    xml = tmp_path / "model.xml"
    ov.save_model(backbone_and_head(), xml, compress_to_fp16=False)
    weights = xml.with_suffix(".bin").read_bytes()
    assert rewrite_ir(xml, lambda model: mark_precise(model, backbone_only=True)) == xml
    assert xml.with_suffix(".bin").read_bytes() == weights
    assert marked_types(model_for(xml, None)) == ["Convolution", "Relu", "Convolution"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin", "model.xml"]  # nothing left beside it


def test_marked_convolutions_run_in_f32_under_openvinos_bf16_default(tmp_path: Path) -> None:
    if default_precision() == "f32":
        pytest.skip(f"OpenVINO runs an FP32 IR in f32 by default on {cpu_model()}: no lower precision to keep out")
    core = shared_core()  # one Core per process (tests/conftest.py's signal-stack check says why)
    plain, marked = tmp_path / "plain.xml", tmp_path / "marked.xml"
    ov.save_model(backbone_and_head(), plain, compress_to_fp16=False)
    ov.save_model(mark_precise(backbone_and_head(), backbone_only=True), marked, compress_to_fp16=False)
    image = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)

    def run(path: Path, config: dict) -> tuple[np.ndarray, set[str]]:
        compiled = core.compile_model(path, "CPU", config)
        return compiled(image)[0], set(layer_precisions(compiled))  # its compute layers are the two convolutions

    exact, _ = run(plain, {"INFERENCE_PRECISION_HINT": "f32"})
    rounded, plain_precisions = run(plain, {})
    kept, marked_precisions = run(marked, {})
    assert plain_precisions == {default_precision()}  # unmarked: the CPU's own choice
    assert marked_precisions == {"f32"}
    assert np.abs(rounded - exact).max() > 0  # bf16 rounds these convolutions ...
    np.testing.assert_array_equal(kept, exact)  # ... and the marked IR computes them as f32 does
