"""How closely an exported OpenVINO model scores like the torch model it came from, at a stated precision."""

from pathlib import Path

import torch


def openvino_parity(
    model,
    export_path: str | Path,
    image_paths: list,
    images: list[torch.Tensor],
    precision: str = "f32",
    batch_size: int | None = None,
) -> dict:
    """Largest ``pred_score`` and ``anomaly_map`` differences between anomalib's ``OpenVINOInferencer`` and ``model``.

    The inferencer is compiled for the CPU in ``precision`` (f32 by default, whatever the CPU would pick: bf16
    on CPUs with AVX512_BF16), and the returned ``precision`` is what the compiled model reports it ran in.
    ``images[i]`` is the model's input tensor for the file ``image_paths[i]`` (which the inferencer reads itself).
    ``batch_size``: compile the inferencer for that batch size (1: it predicts one file at a time), as
    :func:`~anomalib_adapted_moe.deploy.openvino_inferencer` does.
    """
    from anomalib_adapted_moe.deploy import compiled_precision, openvino_inferencer

    if not image_paths:  # no difference is not a difference of 0 ("max() arg is an empty sequence" before)
        msg = "no image to compare the export on. Fix: give one image file or more, with the model's input for each."
        raise ValueError(msg)
    inferencer = openvino_inferencer(export_path, precision, batch_size)
    model.eval()
    score_diffs, map_diffs = [], []
    for image_path, image in zip(image_paths, images, strict=True):
        result = inferencer.predict(image_path)
        with torch.no_grad():
            reference = model(image[None])
        score_diffs.append(abs(float(result.pred_score.reshape(-1)[0]) - float(reference.pred_score.reshape(-1)[0])))
        openvino_map = torch.as_tensor(result.anomaly_map).reshape(-1)
        map_diffs.append(float((openvino_map - reference.anomaly_map.reshape(-1)).abs().max()))
    return {
        "precision": compiled_precision(inferencer.model),
        "max_score_diff": max(score_diffs),
        "max_map_diff": max(map_diffs),
    }
