"""Per-expert score calibration: every expert's patch scores in units of its own normal images' spread.

Each expert is a separate discriminator, so its scores live on its own scale
(on the real-texture development set one expert's normal patch scores spread
0.26 and another's 0.48). One threshold per category only means the same on
every expert once each expert's scores are standardised by its own statistics,
``z = (s - location_e) / scale_e``, mixed with the same top-k routing weights
as the raw scores. The statistics are buffers (saved in checkpoints, exported
to OpenVINO), fitted after training on normal images that the experts did not
train on: the validation split's (see :func:`.training.fit_expert_calibration`).

Patch scores in the same units still give image scores on different levels: an image score reads the top of an
image's patch scores, and how far that top stands out depends on the texture (a regular perforated sheet's stands
out less). ``image_offset`` holds how far each expert's image scores sit from the experts' mean, fitted on the
training images (:func:`.training.fit_expert_image_offsets`): the ``expert_offset_score`` switch subtracts it from
the images within the expert's training range (TTA's gate closed).
"""

import torch
from torch import nn


class NoCalibrationImagesError(ValueError):
    """Nothing to calibrate on: no normal image reached :meth:`ExpertCalibration.update`."""


class ExpertCalibration(nn.Module):
    """Location and scale of each expert's patch scores on normal images; identity until fitted.

    Args:
        num_experts: number of experts.
    """

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.register_buffer("location", torch.zeros(num_experts))
        self.register_buffer("scale", torch.ones(num_experts))
        # each expert's mean image score on its training images less the experts' mean; 0 until fitted
        self.register_buffer("image_offset", torch.zeros(num_experts))
        # routing-weighted sums of 1, s, s^2 over normal patches, accumulated in float64 by update()
        self._sums = torch.zeros(3, num_experts, dtype=torch.float64)

    def forward(self, scores: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
        """Standardise ``(B, K, P)`` patch scores of the ``(B, K)`` selected experts, each by its own statistics."""
        return (scores - self.location[expert_index][..., None]) / self.scale[expert_index][..., None]

    def image_offsets(self, expert_index: torch.Tensor, weights: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Offset ``(B,)`` of each image's score: its ``(B, K)`` selected experts' offsets, mixed by their weights,
        each faded by the TTA ``gate`` (:meth:`.tta.TestTimeAdaptation.gate_weights`). An offset places an expert's
        own subclass; an unseen variant routed there (gate open) sits at a level of its own and keeps its score."""
        return (weights * (1 - gate) * self.image_offset[expert_index]).sum(dim=1)

    @torch.no_grad()
    def update(self, scores: torch.Tensor, expert_index: torch.Tensor, weights: torch.Tensor) -> None:
        """Accumulate normal images' ``(B, K, P)`` raw patch scores, weighted by their ``(B, K)`` routing weights."""
        scores = scores.double().cpu()
        weights = weights.double().cpu()[..., None].expand_as(scores)
        index = expert_index.cpu()[..., None].expand_as(scores).reshape(-1)
        for row, values in enumerate((torch.ones_like(scores), scores, scores.square())):
            self._sums[row].index_add_(0, index, (weights * values).reshape(-1))

    @torch.no_grad()
    def compute(self) -> list[int]:
        """Set location and scale from the accumulated scores; return the experts that had none.

        An expert that no normal image was routed to takes the statistics of all experts' scores
        together, so its scores still land on the common scale.
        """
        count, total, squares = self._sums
        empty = [int(expert) for expert in torch.nonzero(count <= 0).flatten()]
        if len(empty) == len(count):
            msg = "No normal image to calibrate the experts on: every validation image is anomalous, or none exist."
            raise NoCalibrationImagesError(msg)
        mean = total / count.clamp_min(1e-12)
        spread = (squares / count.clamp_min(1e-12) - mean.square()).clamp_min(0).sqrt()
        pooled_mean = total.sum() / count.sum()
        pooled_spread = (squares.sum() / count.sum() - pooled_mean.square()).clamp_min(0).sqrt()
        for expert in empty:
            mean[expert], spread[expert] = pooled_mean, pooled_spread
        self.location.copy_(mean.to(self.location))
        self.scale.copy_(spread.clamp_min(1e-6).to(self.scale))
        self._sums.zero_()
        return empty
