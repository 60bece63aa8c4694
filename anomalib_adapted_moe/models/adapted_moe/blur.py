"""Gaussian smoothing of the anomaly map, as two 1-D convolutions."""

import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d


class SeparableGaussianBlur2d(GaussianBlur2d):
    """anomalib's ``GaussianBlur2d`` (same ``kernel`` buffer, same reflect padding), applied separably.

    A Gaussian kernel is the outer product of its row and column profiles, so a
    vertical then a horizontal 1-D convolution give the 2-D result with ``2k``
    instead of ``k * k`` multiplications per pixel: for SimpleNet's sigma 4
    (``k = 33``) the blur of a 256 x 256 map drops from about a third of the
    model's CPU time to a few percent. The profiles come from the 2-D kernel's row
    and column sums, so checkpoints and exports keep the one buffer.
    """

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
        """Blur ``(B, C, H, W)`` maps (``padding="same"``: output the size of the input)."""
        kernel = self.kernel  # (C, 1, kh, kw), rank one: column profile x row profile / kernel sum
        column = kernel.sum(dim=3, keepdim=True)  # (C, 1, kh, 1)
        row = kernel.sum(dim=2, keepdim=True) / kernel.sum(dim=(2, 3), keepdim=True)  # (C, 1, 1, kw)
        if self.padding == "same":
            input_tensor = F.pad(input_tensor, self.padding_shape, mode=self.border_type)
        vertical = F.conv2d(input_tensor, column, groups=self.channels)
        return F.conv2d(vertical, row, groups=self.channels)
