"""Test-time adaptation (paper eq. 5): move an image's features onto an expert's training distribution."""

import torch
from torch import nn


class TestTimeAdaptation(nn.Module):
    """Per image and per channel, standardise over spatial positions, then take on expert k's statistics.

    ``x' = (x - mean_hw(x)) / (std_hw(x) + eps) * std_k + mean_k``

    ``mean_k`` is the per-channel mean of expert k's training features and
    ``std_k`` the per-channel *within-image* standard deviation (root mean of the
    per-image spatial variances), so that adapting a training image of subclass
    k changes it little. The statistics are buffers, filled once after training
    with the final adaptor, so they are saved in checkpoints and exported.
    Each selected expert adapts the original features: no cascade between experts.

    Args:
        num_experts: number of experts.
        dim: feature channels.
        eps: added to the image's standard deviation; a constant image maps to
            ``mean_k`` instead of dividing by zero.
    """

    __test__ = False  # not a pytest class despite the name

    def __init__(self, num_experts: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("expert_mean", torch.zeros(num_experts, dim))
        self.register_buffer("expert_std", torch.ones(num_experts, dim))
        #: largest :meth:`shift` of expert k's own training images (0 before fitting: the gate stays open)
        self.register_buffer("expert_shift", torch.zeros(num_experts))

    def forward(self, features: torch.Tensor, expert_index: torch.Tensor, gated: bool = False) -> torch.Tensor:
        """Adapt ``(B, C, H, W)`` features to each of the ``(B, K)`` selected experts: ``(B, K, C, H, W)``.

        ``gated``: adapt an image only as far as it lies beyond its expert's training images (:meth:`gate`).
        """
        mean, variance = self.image_statistics(features)
        scale, offset = self.affine(mean, variance, expert_index, gated)
        centred = features - mean[..., None, None]
        return centred[:, None] * scale[..., None, None] + offset[..., None, None]

    def affine(
        self, mean: torch.Tensor, variance: torch.Tensor, expert_index: torch.Tensor, gated: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5 (gated or not) as a per-channel affine map of each image's centred features:
        ``x' = scale * (x - mean_hw(x)) + offset``, from the images' ``(B, C)`` :meth:`image_statistics`.

        Returns ``scale`` and ``offset``, each ``(B, K, C)``: an expert can fold them into its weights
        (:meth:`.experts.ExpertBank.score_adapted`) instead of scoring ``K`` adapted copies of the features.
        Centred first, so that a near-constant channel (a tiny spread, a huge ``scale``) is no difference of
        two large numbers.
        """
        target_mean = self.expert_mean[expert_index]  # (B, K, C)
        target_std = self.expert_std[expert_index]
        scale = target_std / (variance.sqrt()[:, None] + self.eps)  # (x - mean) / (std + eps) * std_k + mean_k
        if not gated:
            return scale, target_mean
        weight = self.gate_weights(mean, expert_index)
        weight, mean = weight[..., None], mean[:, None]  # x + w * (x' - x)
        return 1 + weight * (scale - 1), mean + weight * (target_mean - mean)

    def gate_weights(self, mean: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
        """:meth:`gate` ``(B, K)`` of images with ``(B, C)`` channel means for their ``(B, K)`` selected experts:
        0 for an image within the expert's training range (a seen subclass), 1 for a shifted variant."""
        target_mean, target_std = self.expert_mean[expert_index], self.expert_std[expert_index]
        return self.gate(self.shift(mean[:, None], target_mean, target_std), self.expert_shift[expert_index])

    @staticmethod
    def shift(mean: torch.Tensor, target_mean: torch.Tensor, target_std: torch.Tensor) -> torch.Tensor:
        """How far an image's channel means lie from an expert's: RMS over channels of the difference in units
        of the expert's within-image standard deviation. ``(..., C)`` inputs, ``(...)`` output."""
        return ((mean - target_mean) / (target_std + 1e-6)).square().mean(dim=-1).sqrt()

    @staticmethod
    def gate(shift: torch.Tensor, training_shift: torch.Tensor) -> torch.Tensor:
        """Adaptation weight in [0, 1]: 0 within the expert's training range, rising linearly to 1 at twice it.

        A seen-subclass image keeps its own statistics (per-image standardisation also evens out what a
        defect does to them); a shifted variant is moved onto the expert's distribution as in eq. 5.
        """
        return (shift / training_shift.clamp_min(1e-6) - 1.0).clamp(0.0, 1.0)

    @staticmethod
    def image_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image, per-channel spatial mean and variance of ``(B, C, H, W)`` features: two ``(B, C)`` tensors.

        The variance is the two-pass mean of squared deviations: the same value as
        ``var(unbiased=False)`` (to float rounding) at a tenth of its CPU time.
        """
        mean = features.mean(dim=(2, 3))
        return mean, (features - mean[..., None, None]).square().mean(dim=(2, 3))

    @torch.no_grad()
    def fit(self, image_means: torch.Tensor, image_variances: torch.Tensor, labels: torch.Tensor) -> None:
        """Set each expert's statistics from its training images' :meth:`image_statistics` and labels ``(N,)``.

        ``mean_k`` is the mean of the image means (all images share one grid, so
        this is the mean over all patches); ``std_k`` is the root of the mean
        within-image variance; the largest :meth:`shift` of its images bounds the
        gate. An expert without images keeps mean 0, std 1 and an open gate.
        """
        for expert in range(self.expert_mean.shape[0]):
            own = labels == expert
            if not bool(own.any()):
                continue
            self.expert_mean[expert] = image_means[own].double().mean(dim=0).to(self.expert_mean.dtype)
            self.expert_std[expert] = image_variances[own].double().mean(dim=0).sqrt().to(self.expert_std.dtype)
            shifts = self.shift(image_means[own], self.expert_mean[expert], self.expert_std[expert])
            self.expert_shift[expert] = shifts.max()
