"""The anomaly map: patch scores upsampled to the image and Gaussian-smoothed, as two small matrix products."""

import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d


class UpsampledGaussianBlur(GaussianBlur2d):
    """Bilinear upsampling then anomalib's ``GaussianBlur2d`` (same ``kernel`` buffer, reflect padding), fused.

    Both steps are linear and act on rows and columns separately, so the map of an
    ``h x w`` patch grid is ``A_H @ scores @ A_W^T``, where ``A`` (``H x h``) is one
    axis's upsampling followed by its 1-D blur, built by sending the unit impulses
    through them. For SimpleNet's sigma 4 (``k = 33``) and a 256 x 256 image this
    replaces a 256 x 256 interpolation and two 33-tap convolutions (about a sixth of
    the model's CPU time in OpenVINO) by about 2.4 M multiply-adds in GEMMs. The
    profiles come from the 2-D kernel's row and column sums, so checkpoints keep
    the one buffer.
    """

    #: where each patch score lies in the image, in pixels from ``stride * i`` (rows, columns), when known
    #: (:meth:`.features.PatchFeatureExtractor.feature_centre`); ``None``: the centre of the patch's grid cell,
    #: ``stride * (i + 0.5) - 0.5``, as ``align_corners=False`` upsampling has it
    patch_centre: tuple[float, float] | None = None

    def axis_operator(self, grid: int, size: int, profile: torch.Tensor, centre: float | None = None) -> torch.Tensor:
        """``(size, grid)`` matrix: linear upsampling (``align_corners=False``, or patch ``i`` at ``stride * i +
        centre`` pixels, held constant beyond the first and last patch) then the reflect-padded blur."""
        if centre is None:
            impulses = torch.eye(grid, dtype=profile.dtype, device=profile.device)[:, None]  # (grid, 1, grid)
            upsampled = F.interpolate(impulses, size=size, mode="linear", align_corners=False)  # (grid, 1, size)
        else:
            pixels = torch.arange(size, dtype=profile.dtype, device=profile.device)
            position = ((pixels - centre) * (grid / size)).clamp(0, grid - 1)  # in patches
            patches = torch.arange(grid, dtype=profile.dtype, device=profile.device)[:, None]
            upsampled = (1 - (position - patches).abs()).clamp(min=0)[:, None]  # (grid, 1, size): linear weights
        pad = profile.shape[-1] // 2
        blurred = F.conv1d(F.pad(upsampled, (pad, pad), mode=self.border_type), profile.view(1, 1, -1))
        return blurred[:, 0].T

    def forward(self, patch_scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, h, w)`` patch scores to ``(B, 1, H, W)`` smoothed maps of the image ``size``."""
        kernel = self.kernel[0, 0]  # (kh, kw), rank one: column profile x row profile / kernel sum
        column = kernel.sum(dim=1)
        row = kernel.sum(dim=0) / kernel.sum()
        centre_row, centre_column = self.patch_centre or (None, None)
        rows = self.axis_operator(patch_scores.shape[-2], size[0], column, centre_row)  # (H, h)
        columns = self.axis_operator(patch_scores.shape[-1], size[1], row, centre_column)  # (W, w)
        return (rows @ patch_scores @ columns.T)[:, None]
