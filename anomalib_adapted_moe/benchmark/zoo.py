"""The compared models, each built with the benchmark's backbone weights and image size where it allows.

Every builder takes the run's settings and returns ``(model, note)``: the note says
where the model could not follow the common setting. A model that cannot run here
(missing weights on an offline machine) is reported by :func:`unavailable_reason`
before any work starts: never silently dropped.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anomalib.models import AnomalibModule

from anomalib_adapted_moe.recipes import CPU_RECIPE, cpu_recipe_model

#: Backbone and feature layers shared by every model that takes a timm backbone (ResNet layer2/layer3 analogues):
#: the CPU recipe's (recipes.py)
BACKBONE = CPU_RECIPE["backbone"]
LAYERS = CPU_RECIPE["layers"]

#: Epochs each trained baseline's paper recommends; the benchmark stops earlier when the wall-clock budget ends.
RECOMMENDED_EPOCHS = {"Supersimplenet": 300, "Glass": 640, "EfficientAd": 1000}


@dataclass(frozen=True)
class Settings:
    """What every model of one run shares."""

    image_size: int = 256
    weights: str | None = CPU_RECIPE["backbone_weights"]
    epochs: int = CPU_RECIPE["epochs"]
    imagenette: str | None = None


def _backbone(settings: Settings):
    """The frozen backbone module with the run's weights, random-initialised without (``--weights none``): a timm
    name would be downloaded by the models built with ``pre_trained=True`` (Supersimplenet, Glass)."""
    import timm

    from anomalib_adapted_moe.backbone_weights import build_backbone

    if settings.weights is None:
        return timm.create_model(BACKBONE, pretrained=False).requires_grad_(False).eval()
    return build_backbone(BACKBONE, settings.weights)


def _pre_processor(settings: Settings):
    """Resize to the run's size and normalise the way the backbone's weights expect."""
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from anomalib_adapted_moe.backbone_weights import input_normalization

    mean, std = input_normalization(BACKBONE, settings.weights)
    size = (settings.image_size, settings.image_size)
    return PreProcessor(transform=Compose([Resize(size, antialias=True), Normalize(mean, std)]))


def _adapted_moe(settings: Settings, **overrides) -> tuple[AnomalibModule, str]:
    model = cpu_recipe_model(
        image_size=settings.image_size, backbone_weights=settings.weights, epochs=settings.epochs, **overrides
    )
    return model, ""


def _on_shared_backbone(model_name: str, settings: Settings, **kwargs) -> AnomalibModule:
    """anomalib's ``model_name`` on the run's frozen backbone, feature layers, image size and normalisation."""
    import anomalib.models

    model_class = getattr(anomalib.models, model_name)
    return model_class(backbone=_backbone(settings), layers=LAYERS, pre_processor=_pre_processor(settings), **kwargs)


def _supersimplenet(settings: Settings) -> tuple[AnomalibModule, str]:
    model = _on_shared_backbone("Supersimplenet", settings)
    return model, "unsupervised setting (no anomalous training images); Perlin-noise feature anomalies"


def _glass(settings: Settings) -> tuple[AnomalibModule, str]:
    # pre_trained=True keeps the given backbone frozen; the module already carries the weights (nothing downloads).
    size = (settings.image_size, settings.image_size)
    model = _on_shared_backbone("Glass", settings, input_shape=size, pre_trained=True)
    return model, "no DTD texture source (offline): Perlin anomalies from the image itself"


def _efficient_ad(settings: Settings) -> tuple[AnomalibModule, str]:
    from anomalib.models import EfficientAd

    size = (settings.image_size, settings.image_size)
    model = EfficientAd(imagenet_dir=settings.imagenette or "", pre_processor=EfficientAd.configure_pre_processor(size))
    return model, "own PDN teacher (distilled from WideResNet101), not the shared backbone; batch size 1"


def _patchcore(settings: Settings) -> tuple[AnomalibModule, str]:
    # anomalib's default ratio 0.1 means greedy selection of ~10k of ~100k patches: tens of minutes on 2 CPU cores
    model = _on_shared_backbone("Patchcore", settings, pre_trained=False, coreset_sampling_ratio=0.01)
    return model, "coreset ratio 0.01 (anomalib's default 0.1 takes tens of minutes on 2 CPU cores)"


def _padim(settings: Settings) -> tuple[AnomalibModule, str]:
    return _on_shared_backbone("Padim", settings, pre_trained=False, n_features=100), "100 random feature dimensions"


#: name -> builder; AdaptedMoE takes its ablation switches as keyword arguments.
MODELS: dict[str, Callable[..., tuple[AnomalibModule, str]]] = {
    "AdaptedMoE": _adapted_moe,
    "Supersimplenet": _supersimplenet,
    "Glass": _glass,
    "EfficientAd": _efficient_ad,
    "Patchcore": _patchcore,
    "Padim": _padim,
}

#: Named settings of our model: name -> (model, switches). The paper's SimpleNet baseline is one expert, no TTA,
#: no normalisation.
SETTINGS_OF_OURS: dict[str, tuple[str, dict]] = {
    "AdaptedMoE SimpleNet-baseline": ("AdaptedMoE", {"moe": False, "tta": False, "normalize": False}),
}

#: Switches that act only at inference: one training serves every value of them.
INFERENCE_SWITCHES = frozenset(
    {
        "tta",
        "tta_gate",
        "tta_blend",
        "top_k",
        "temperature",
        "image_top_k",
        "center_image_score",
        "center_map",
        "image_score_window",
        "spread_scaled_score",
        "level_corrected_score",
        "expert_offset_score",
        "unseen_min_over_experts",
        "unseen_min_near_twin",
        "blur_sigma",
        "map_at_feature_centre",
    }
)

#: Models trained by gradient descent over many epochs: they get AdaptedMoE's wall-clock training time.
BUDGETED = frozenset(RECOMMENDED_EPOCHS)

#: Models whose training batches must hold one image.
BATCH_SIZE_ONE = frozenset({"EfficientAd"})


def unavailable_reason(name: str, settings: Settings) -> str | None:
    """Why ``name`` cannot run on this machine (offline, missing files), or ``None`` when it can."""
    if name not in MODELS:
        return f"unknown model {name!r}; known: {sorted([*MODELS, *SETTINGS_OF_OURS])}"
    if name == "EfficientAd":
        from anomalib.utils.path import get_pretrained_weights_dir

        teacher = get_pretrained_weights_dir() / "efficientad_pretrained_weights"
        missing = []
        if not teacher.is_dir():
            missing.append(
                f"its teacher weights ({teacher}; anomalib downloads efficientad_pretrained_weights.zip from "
                "GitHub at train start: extract it there)"
            )
        if not settings.imagenette or not Path(settings.imagenette).is_dir():
            missing.append("the imagenette images (download imagenette2 and pass --imagenette DIR)")
        if missing:
            return "offline, needs " + " and ".join(missing)
    return None
