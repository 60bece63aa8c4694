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

    def forward(self, features: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
        """Adapt ``(B, C, H, W)`` features to each of the ``(B, K)`` selected experts: ``(B, K, C, H, W)``."""
        mean, variance = self.image_statistics(features)
        mean, std = mean[..., None, None], variance.sqrt()[..., None, None]
        standardised = (features - mean) / (std + self.eps)
        target_mean = self.expert_mean[expert_index][..., None, None]  # (B, K, C, 1, 1)
        target_std = self.expert_std[expert_index][..., None, None]
        return standardised[:, None] * target_std + target_mean

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
        within-image variance. An expert without images keeps mean 0 and std 1.
        """
        for expert in range(self.expert_mean.shape[0]):
            own = labels == expert
            if not bool(own.any()):
                continue
            self.expert_mean[expert] = image_means[own].double().mean(dim=0).to(self.expert_mean.dtype)
            self.expert_std[expert] = image_variances[own].double().mean(dim=0).sqrt().to(self.expert_std.dtype)
