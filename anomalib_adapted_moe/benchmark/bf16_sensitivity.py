"""Which parts of AdaptedMoE lose accuracy in bfloat16: each part alone in bf16, the rest in f32, in torch.

OpenVINO runs an FP32 IR in bf16 by default on CPUs with AVX512_BF16, and our scores
then move by up to about 5e-2. torch's autocast runs bf16 on any CPU, so this finds the
precision-sensitive parts without such a CPU: each part's calls run under
``torch.autocast("cpu", torch.bfloat16)`` and its outputs go back to float32, so only that
part's arithmetic is rounded. Rows: the backbone with its patch aggregation, the
adaptor, routing, test-time adaptation, the experts, the map's blur, the
post-processor, then everything but the backbone and the whole model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: (row name, parts in bf16); a part is (path from the Lightning module, callable attribute)
PARTS = {
    "backbone and patch aggregation": (("model.patch_features", "forward"),),
    "adaptor": (("model.adaptor", "forward"),),
    "routing": (("model", "route"),),
    # the eval forward's callables: TTA as a per-channel affine map, folded into the experts' first weights
    "test-time adaptation": (("model.adaptation", "affine"),),
    "experts": (("model.experts", "score_adapted"),),
    "map blur": (("model.blur", "forward"),),
    "post-processor": (("post_processor", "forward"),),
}
BACKBONE = "backbone and patch aggregation"
HEAD = tuple(part for name, parts in PARTS.items() if name != BACKBONE for part in parts)
ROWS = {**PARTS, "all but the backbone": HEAD, "whole model": PARTS[BACKBONE] + HEAD}


def _to_float32(value):
    """``value`` with every floating tensor in it (tuples and named tuples included) cast back to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple):
        cast = [_to_float32(item) for item in value]
        return type(value)(*cast) if hasattr(value, "_fields") else type(value)(cast)
    return value


@contextlib.contextmanager
def parts_in_bf16(module: torch.nn.Module, parts: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """Run the callables ``parts`` of ``module`` under bf16 autocast (outputs back in float32), then restore them."""
    replaced = []
    for path, attribute in parts:
        owner = module.get_submodule(path) if path else module
        original = getattr(owner, attribute)

        def in_bf16(*args, _original=original, **kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return _to_float32(_original(*args, **kwargs))

        replaced.append((owner, attribute, vars(owner).get(attribute)))
        setattr(owner, attribute, in_bf16)
    try:
        yield
    finally:
        for owner, attribute, own in reversed(replaced):
            if own is None:
                delattr(owner, attribute)  # the class's method is visible again
            else:
                setattr(owner, attribute, own)  # an attribute the instance had set itself


def sensitivity_rows(run, reference: dict, auroc_of) -> list[dict]:
    """One row per :data:`ROWS` entry: largest score and map difference to ``reference`` and the AUROC change.

    ``run(parts)`` returns ``(scores, maps, raw_scores, raw_maps)`` with ``parts`` in bf16;
    ``reference`` holds the f32 ``score``, ``map`` and ``auroc``; ``auroc_of(raw_scores, raw_maps)``
    gives the AUROC means.
    """
    rows = []
    for name, parts in ROWS.items():
        scores, maps, raw_scores, raw_maps = run(parts)
        auroc = auroc_of(raw_scores, raw_maps)
        rows.append(
            {
                "name": name,
                "max_score_diff": float((scores - reference["score"]).abs().max()),
                "max_map_diff": float((maps - reference["map"]).abs().max()),
                "auroc_change": {key: auroc[key] - reference["auroc"][key] for key in auroc},
            }
        )
    return rows
