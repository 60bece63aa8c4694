"""Near twins: whether a patch's structure repeats elsewhere in its own image (``unseen_min_near_twin``).

``unseen_min_over_experts`` lets another expert explain a patch of an unseen variant: a structure a nearby
subclass knows (a die pitch, a grain). A defect can look like such a structure too (rust stains like another
plate's patina), and then loses its score. What tells them apart on the real textures is that a variant's
structure repeats across its image and a defect does not (issue 15's probes, docs/real_textures): a patch has a *near
twin* when its ``twins``-th nearest patch of the same image outside the ``(2 radius + 1)^2`` window around it (its
own neighbourhood, which shares its receptive field) lies within ``limit`` in the adapted feature space. The limit
is a quantile of that same distance over the training images' patches (:meth:`NearTwin.fit`, after training), so a
normal patch of a seen subclass has a twin ``quantile`` of the time. R 6, K 8 and the 0.97 quantile are the model
README's near-twin rows.
"""

from collections.abc import Iterable

import torch
from torch import nn


class NearTwin(nn.Module):
    """The near-twin test and its fitted distance limit (``limit``: NaN until :meth:`fit`).

    Args:
        radius: patches on each side of a patch that do not count as its twins.
        twins: how many patches outside that window must lie within the limit.
        quantile: of the training patches' distances, the one the limit is set to.
    """

    def __init__(self, radius: int = 6, twins: int = 8, quantile: float = 0.97) -> None:
        super().__init__()
        if radius < 0 or twins < 1 or not 0.0 < quantile < 1.0:
            msg = f"radius >= 0, twins >= 1 and 0 < quantile < 1 are needed, got {radius}, {twins}, {quantile}."
            raise ValueError(msg)
        self.radius, self.twins, self.quantile = radius, twins, quantile
        self.register_buffer("limit", torch.tensor(float("nan")))

    def distances(self, adapted: torch.Tensor) -> torch.Tensor:
        """Distance ``(B, H, W)`` of each patch of ``(B, C, H, W)`` features to its ``twins``-th nearest patch of
        the same image outside its window; ``inf`` where the grid leaves fewer than ``twins`` patches outside it.

        Squared distances from one matrix product (``|a|^2 + |b|^2 - 2 a.b``): exportable, unlike ``cdist``.
        """
        batch, _, height, width = adapted.shape
        flat = adapted.flatten(2).transpose(1, 2)  # (B, P, C)
        norms = flat.square().sum(dim=2)
        squared = norms[:, :, None] + norms[:, None, :] - 2 * flat @ flat.transpose(1, 2)
        rows = torch.arange(height, device=adapted.device).repeat_interleave(width)
        columns = torch.arange(width, device=adapted.device).repeat(height)
        inside = ((rows[:, None] - rows).abs() <= self.radius) & ((columns[:, None] - columns).abs() <= self.radius)
        squared = squared.clamp_min(0.0).masked_fill(inside, float("inf"))
        count = min(self.twins, height * width)
        kth = squared.topk(count, dim=2, largest=False).values[..., -1]
        return kth.sqrt().reshape(batch, height, width)

    def has_twin(self, adapted: torch.Tensor) -> torch.Tensor:
        """Whether each patch ``(B, H, W)`` has its near twins within the fitted limit."""
        return self.distances(adapted) <= self.limit

    @torch.no_grad()
    def fit(self, distances: Iterable[torch.Tensor]) -> None:
        """Set ``limit`` to the ``quantile`` of the finite :meth:`distances` of normal training patches.

        With none finite (a patch grid no larger than the window) no patch can have a twin: the limit is ``-inf``.
        """
        values = torch.cat([batch.flatten().double().cpu() for batch in distances])
        values = values[torch.isfinite(values)]
        if len(values) == 0:
            self.limit.fill_(float("-inf"))
            return
        # kthvalue, not quantile: quantile refuses more than 2^24 values (16,384 images of 32 x 32 patches)
        rank = max(1, min(len(values), round(self.quantile * len(values))))
        self.limit.fill_(float(values.kthvalue(rank).values))
