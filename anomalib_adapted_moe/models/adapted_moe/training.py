"""Training of adaptor, router and experts from cached patch features.

The backbone is frozen, so without random pixel augmentation its features are
computed once per training image and every epoch of the paper's schedule runs
from that cache: 160 epochs cost little more than one backbone pass. With such
an augmentation the same loop runs over a :class:`~.feature_cache.LiveFeatures`
source, which recomputes the features of freshly augmented images every epoch.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .feature_cache import LiveFeatures
from .loss import noise_scale, truncated_l1_loss
from .torch_model import AdaptedMoEModel
from .unit_norm import unit_norm

logger = logging.getLogger(__name__)


@dataclass
class TrainingSchedule:
    """Optimisation settings (paper Sec. 3.2; SimpleNet's optimisers).

    Optimisers, stepped in this order every step: adaptor AdamW(``adaptor_lr``),
    experts Adam(``expert_lr``), router Adam(``router_lr``).
    """

    epochs: int = 160
    batch_size: int = 8
    adaptor_lr: float = 1e-4
    expert_lr: float = 2e-4
    router_lr: float = 2e-4
    weight_decay: float = 1e-5
    noise_std: float = 0.015
    margin: float = 0.5
    #: fraction of each image's patches the experts' loss is computed on, drawn afresh every step: an unbiased
    #: estimate of the loss over all patches (neighbouring patches overlap in their receptive fields) for a
    #: fraction of the experts' cost; 1.0 is SimpleNet's and the paper's every patch
    patch_fraction: float = 1.0
    #: whether the routing loss trains the feature adaptor too (the paper's one graph); ``False`` routes from the
    #: adaptor's features without a gradient back into them: the adaptor then learns from the experts' loss alone,
    #: and a step skips the backward of the full patch map's normalisation (a fifth of a CPU step)
    routing_trains_adaptor: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.patch_fraction <= 1.0:
            msg = f"patch_fraction must lie in (0, 1], got {self.patch_fraction}."
            raise ValueError(msg)
        # each of these at 0 or below trains nothing, or nothing useful, without an error: no fake anomaly to
        # tell apart (noise_std), a loss already met (margin), a step that does not move (a learning rate)
        for name in ("adaptor_lr", "expert_lr", "router_lr", "noise_std", "margin"):
            if not getattr(self, name) > 0:
                msg = f"{name} must be positive, got {getattr(self, name)}."
                raise ValueError(msg)


def training_step(
    model: AdaptedMoEModel,
    features: torch.Tensor,
    labels: torch.Tensor,
    schedule: TrainingSchedule,
) -> dict[str, torch.Tensor]:
    """Losses of one mini-batch: routing loss (eq. 2) and the experts' truncated L1 on Gaussian-noise anomalies."""
    raw = model.adaptor(features)
    batch, channels, height, width = raw.shape
    patches = height * width
    # (B, P, C) view: the adaptor's output is channels-last, so this permute is free
    flat = raw.permute(0, 2, 3, 1).reshape(batch, patches, channels)
    sampled = max(1, round(schedule.patch_fraction * patches))
    if sampled < patches:  # one draw of patch positions for the whole batch
        positions = torch.randperm(patches, device=raw.device)[:sampled]
        flat = flat.index_select(1, positions)
    unit_flat = unit_norm(flat, 2) if model.normalize else flat
    # drawn contiguous in the (B, P, C) layout: torch fills a strided tensor one element at a time (8x slower)
    noise = torch.randn(batch, sampled, channels, dtype=raw.dtype, device=raw.device)
    noisy = flat + noise * noise_scale(raw, schedule.noise_std)
    if model.normalize:  # noise is added before the L2 norm, so a fake patch cannot be told by its norm alone
        noisy = unit_norm(noisy, 2)
    scores = model.experts(torch.cat([unit_flat, noisy], dim=1)[:, None], labels[:, None])[:, 0]  # (B, 2S)
    losses = {"expert_loss": truncated_l1_loss(scores[:, :sampled], scores[:, sampled:], schedule.margin)}
    if model.num_experts > 1:
        routed = raw if schedule.routing_trains_adaptor else raw.detach()
        embedding = model.router.embed(unit_norm(routed, 1) if model.normalize else routed)
        losses["routing_loss"] = model.router.loss(embedding, labels)
        model.router.update_centers(embedding.detach(), labels)
    losses["loss"] = sum(losses.values())
    return losses


def train_from_cache(
    model: AdaptedMoEModel,
    features: torch.Tensor | LiveFeatures,
    labels: torch.Tensor,
    schedule: TrainingSchedule,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train adaptor, router and experts for ``schedule.epochs`` passes over cached patch features.

    Args:
        model: the model; its ``num_experts`` must cover ``labels``.
        features: ``(N, C, H, W)`` cached patch features (any float dtype; batches are cast to float32),
            or a :class:`~.feature_cache.LiveFeatures` source indexed the same way (same batches, same order).
        labels: ``(N,)`` expert of each training image.
        schedule: optimisation settings.
        on_epoch_end: called with the epoch index and its mean losses.

    Returns:
        The mean losses of the last epoch.
    """
    device = model.adaptor.linear.weight.device
    labels = labels.to(device)
    # one fused kernel per optimiser instead of a dozen small ops per parameter: 4 % of a CPU step
    fused = device.type in ("cpu", "cuda")
    optimizers = [
        torch.optim.AdamW(
            model.adaptor.parameters(), lr=schedule.adaptor_lr, weight_decay=schedule.weight_decay, fused=fused
        ),
        torch.optim.Adam(
            model.experts.parameters(), lr=schedule.expert_lr, weight_decay=schedule.weight_decay, fused=fused
        ),
    ]
    if model.num_experts > 1:
        optimizers.append(torch.optim.Adam(model.router.parameters(), lr=schedule.router_lr, fused=fused))
    model.train()
    means: dict[str, float] = {}
    for epoch in range(schedule.epochs):
        totals: dict[str, float] = {}
        order = torch.randperm(len(features))
        steps = 0
        for start in range(0, len(order), schedule.batch_size):
            index = order[start : start + schedule.batch_size]
            batch = features[index].to(device, torch.float32, memory_format=torch.channels_last)  # the adaptor's layout
            losses = training_step(model, batch, labels[index], schedule)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            for optimizer in optimizers:
                optimizer.step()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
            steps += 1
        means = {name: total / steps for name, total in totals.items()}
        if on_epoch_end is not None:
            on_epoch_end(epoch, means)
    model.eval()
    return means


@torch.no_grad()
def fit_expert_statistics(
    model: AdaptedMoEModel, features: torch.Tensor | LiveFeatures, labels: torch.Tensor, chunk: int = 32
) -> None:
    """Fill the TTA statistics of every expert from its training images, with the final adaptor (eval mode).

    Streams over the cache in chunks, so memory stays at one chunk of float32 features.
    """
    model.eval()
    device = model.adaptor.linear.weight.device
    means, variances = [], []
    for batch in features.split(chunk):
        adapted = model.adapt(batch.to(device, torch.float32))
        mean, variance = model.adaptation.image_statistics(adapted)
        means.append(mean)
        variances.append(variance)
    model.adaptation.fit(torch.cat(means), torch.cat(variances), labels.to(device))


@torch.no_grad()
def fit_expert_calibration(model: AdaptedMoEModel, feature_batches: Iterable[torch.Tensor]) -> list[int]:
    """Fit :class:`~.calibration.ExpertCalibration` from the patch features ``(B, C, H, W)`` of normal images,
    then, on the same images' calibrated, mixed patch scores, the model's ``normal_image_spread`` (their median
    :meth:`~.torch_model.AdaptedMoEModel.image_spread`, the unit of ``spread_scaled_score``) and its level
    correction (:func:`fit_level_correction`). One pass over the features.

    Each image is routed as at inference, and each selected expert's raw patch scores count towards its
    statistics with the image's routing weight. Returns the experts no image was routed to.
    """
    model.eval()
    device = model.adaptor.linear.weight.device
    own, foreign = [], []  # raw scores, experts and weights of every image: calibrated once the statistics exist
    for features in feature_batches:
        adapted = model.adapt(features.to(device, torch.float32))
        expert_index, weights = model.route(adapted)
        scores = model.expert_scores(adapted, expert_index)
        model.calibration.update(scores, expert_index, weights)
        own.append((scores, expert_index, weights, adapted.shape[-2:]))
        if model.num_experts > 1:
            index, weights = _routing_without_the_top_expert(model, adapted)
            foreign.append((model.expert_scores(adapted, index), index, weights, adapted.shape[-2:]))
    empty = model.calibration.compute()

    def mixed(scores: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return (weights[..., None] * model.calibration(scores, index)).sum(dim=1).unflatten(1, size)

    own_maps, foreign_maps = [mixed(*batch) for batch in own], [mixed(*batch) for batch in foreign]
    model.normal_image_spread.fill_(float(torch.cat([model.image_spread(m) for m in own_maps]).median()))
    fit_level_correction(model, own_maps, foreign_maps)
    return empty


@torch.no_grad()
def fit_expert_image_offsets(
    model: AdaptedMoEModel, features: torch.Tensor | LiveFeatures, chunk: int = 32
) -> list[int]:
    """Fit ``calibration.image_offset`` (``expert_offset_score``): each expert's routing-weighted mean image
    score over the training images' patch features, less the mean over the experts that had images; returns
    the experts none was routed to (offset 0).

    The training images, not the validation split's 4 or so normal images per expert: an image gives one score,
    and that few place an expert's level too roughly (issue 15's probes). The experts were fitted on these
    images, so they score a little low, but alike for every expert: the offsets place the experts against each
    other, the threshold still comes from the validation split. Fitted on the image score as the model is set
    (its switches) after the calibration, so the calibrated units are the ones it will score in. From the cache a
    pass of the head only; with a training augmentation (no cache), one more backbone pass over augmented images.
    """
    model.eval()
    device = model.adaptor.linear.weight.device
    weight_sums = torch.zeros(model.num_experts, dtype=torch.float64)
    score_sums = torch.zeros(model.num_experts, dtype=torch.float64)
    for batch in features.split(chunk):
        adapted = model.adapt(batch.to(device, torch.float32))
        patch_scores, expert_index, weights = model.score_patches(adapted)
        scores = model.image_score(patch_scores)
        index, weights = expert_index.flatten().cpu(), weights.double().cpu()
        weight_sums.index_add_(0, index, weights.flatten())
        score_sums.index_add_(0, index, (weights * scores.double().cpu()[:, None]).flatten())
    routed = weight_sums > 0
    means = score_sums / weight_sums.clamp_min(1e-12)
    offsets = torch.where(routed, means - means[routed].mean(), torch.zeros_like(means))
    model.calibration.image_offset.copy_(offsets.to(model.calibration.image_offset))
    return [int(expert) for expert in torch.nonzero(~routed).flatten()]


@torch.no_grad()
def fit_near_twin_limit(model: AdaptedMoEModel, features: torch.Tensor | LiveFeatures, chunk: int = 32) -> None:
    """Fit the near-twin limit (``unseen_min_near_twin``, :class:`.near_twin.NearTwin`) on the training images'
    patch features, with the final adaptor (eval mode): the training images, not the validation split's few, as a
    quantile of every patch of every seen subclass (a defect must not set it, and the training images hold none).

    Fitted whatever the switch, so it can be turned on after training. From the cache a pass of the adaptor and one
    ``P x P`` distance per image, one image at a time (a 64 x 64 patch grid makes it 64 MiB); with a training
    augmentation (no cache), one more backbone pass.
    """
    model.eval()
    device = model.adaptor.linear.weight.device

    def distances():
        for batch in features.split(chunk):
            for adapted in model.adapt(batch.to(device, torch.float32)).split(1):
                yield model.near_twin.distances(adapted)

    model.near_twin.fit(distances())


def _routing_without_the_top_expert(model: AdaptedMoEModel, adapted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k experts and weights an image would be routed to if its top-1 expert did not exist."""
    probabilities = model.router.probabilities(model.router.embed(adapted))
    others = probabilities.scatter(1, probabilities.argmax(dim=1, keepdim=True), 0.0)
    weights, index = others.topk(min(model.top_k, model.num_experts - 1), dim=1)
    return index, weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def fit_level_correction(model: AdaptedMoEModel, own: list[torch.Tensor], foreign: list[torch.Tensor]) -> None:
    """Fit ``normal_image_level`` and ``level_slope`` (``level_corrected_score``) from normal images' calibrated
    patch scores ``(B, H, W)``: as routed (``own``), and routed without their top-1 expert (``foreign``).

    An unseen variant is an image no expert was trained on; a normal image scored by the experts it would go to if
    its own did not exist stands in for one. ``normal_image_level`` is the median level of ``own``;
    ``level_slope`` is the least-squares slope of the (uncorrected) image score on the level's excess over it,
    over both sets (0 where it would be negative, or without ``foreign`` images: one expert).
    """
    model.level_slope.zero_()  # the image scores below are the uncorrected ones
    model.normal_image_level.zero_()
    if not foreign:
        return
    levels = [model.image_level(maps) for maps in own + foreign]
    scores = [model.image_score(maps) for maps in own + foreign]
    levels, scores = torch.cat(levels).double(), torch.cat(scores).double()
    reference = levels[: sum(len(maps) for maps in own)].median()
    excess = (levels - reference).clamp_min(0.0)
    variance = excess.var(unbiased=False)
    slope = ((excess - excess.mean()) * (scores - scores.mean())).mean() / variance if variance > 0 else 0.0
    model.normal_image_level.fill_(float(reference))
    model.level_slope.fill_(max(float(slope), 0.0))
