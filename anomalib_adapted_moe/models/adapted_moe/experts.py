"""The experts: one SimpleNet discriminator per subclass, stored stacked and applied in one batched op."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def select_experts(stacked: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """``stacked[expert_index]`` by ``index_select``, whose gradient is the same on every run.

    Advanced indexing's backward sums the gradients of repeated experts (several images routed to one) with a
    parallel ``index_put_`` that adds in thread-timing order on the CPU: two trainings with one seed differed.
    """
    return stacked.index_select(0, expert_index.reshape(-1)).reshape(*expert_index.shape, *stacked.shape[1:])


class ExpertBank(nn.Module):
    """``E`` SimpleNet discriminators ``Linear -> BatchNorm -> LeakyReLU(0.2) -> Linear`` with stacked weights.

    Only the selected experts' weights are gathered and applied (``einsum``), so the
    cost follows ``top_k``, not the number of experts, and the forward pass is plain
    tensor code that ``torch.export``/ONNX/OpenVINO take. BatchNorm keeps one set
    of statistics per expert; in training each expert normalises over the patches
    routed to it in the batch.

    Args:
        num_experts: number of experts.
        in_dim: feature channels.
        hidden_dim: hidden width of each discriminator.
        momentum: BatchNorm running-statistics momentum.
        eps: BatchNorm epsilon.
    """

    def __init__(
        self, num_experts: int, in_dim: int, hidden_dim: int, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight1 = nn.Parameter(torch.empty(num_experts, in_dim, hidden_dim))
        self.bias1 = nn.Parameter(torch.zeros(num_experts, hidden_dim))
        self.bn_weight = nn.Parameter(torch.ones(num_experts, hidden_dim))
        self.bn_bias = nn.Parameter(torch.zeros(num_experts, hidden_dim))
        self.weight2 = nn.Parameter(torch.empty(num_experts, hidden_dim))
        self.register_buffer("running_mean", torch.zeros(num_experts, hidden_dim))
        self.register_buffer("running_var", torch.ones(num_experts, hidden_dim))
        for expert in range(num_experts):  # SimpleNet initialises its linear layers with xavier_normal
            nn.init.xavier_normal_(self.weight1.data[expert].T)
        nn.init.normal_(self.weight2, std=math.sqrt(2.0 / (hidden_dim + 1)))

    @property
    def num_experts(self) -> int:
        """Number of experts in the bank."""
        return self.weight1.shape[0]

    def forward(self, features: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
        """Score patches with their selected experts; higher means more normal.

        Args:
            features: ``(B, K, P, C)`` patch features, one copy per selected expert.
            expert_index: ``(B, K)`` expert of each copy.

        Returns:
            ``(B, K, P)`` discriminator outputs.
        """
        hidden = torch.einsum("bkpc,bkch->bkph", features, select_experts(self.weight1, expert_index))
        # BatchNorm folded into one scale and shift per expert: (h + b1 - mean) * g / std + beta. In training
        # the batch mean of h + b1 cancels b1, so only the running mean carries it.
        if self.training:
            mean, var = self._batch_statistics(hidden, expert_index)
        else:
            mean = select_experts(self.running_mean, expert_index) - select_experts(self.bias1, expert_index)
            var = select_experts(self.running_var, expert_index)
        scale = select_experts(self.bn_weight, expert_index) * torch.rsqrt(var + self.eps)
        shift = select_experts(self.bn_bias, expert_index) - mean * scale
        hidden = torch.addcmul(shift[:, :, None], hidden, scale[:, :, None])
        hidden = F.leaky_relu(hidden, negative_slope=0.2)
        weight2 = select_experts(self.weight2, expert_index)[..., None]
        return (hidden @ weight2)[..., 0]  # matmul: its gradient stays contiguous

    def score_adapted(
        self,
        features: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor,
        expert_index: torch.Tensor,
        normalized_views: int = 0,
    ) -> torch.Tensor:
        """Eval scores ``(B, K, P)`` of the ``(B, K)`` selected experts, expert ``k`` seeing the ``(B, P, C)``
        patch features ``x`` mapped per channel to ``scale[:, k] * x + offset[:, k]`` (``(B, K, C)`` each; test-time
        adaptation, :meth:`.tta.TestTimeAdaptation.affine`, on centred ``x``); the first ``normalized_views`` of
        the ``K`` mapped copies are L2-normalised over channels first (adapted features, as the experts were
        trained on unit-norm ones).

        The same scores as :meth:`forward` on those inputs, to float rounding, without forming them: the affine
        map and the eval BatchNorm fold into each selected expert's first weights, and the norm of
        ``scale * x + offset`` is a sum over channels of ``x^2``, ``x`` and constant terms. So ``K`` experts
        cost one product of the shared features each, and no ``(B, K, P, C)`` copy is adapted, normalised and
        transposed (the larger part of the head's time in the exported graph).
        """
        if self.training:
            msg = "score_adapted uses the experts' running BatchNorm statistics: call it in eval mode."
            raise RuntimeError(msg)
        weight1 = select_experts(self.weight1, expert_index)  # (B, K, C, H)
        mean = select_experts(self.running_mean, expert_index) - select_experts(self.bias1, expert_index)
        bn_scale = select_experts(self.bn_weight, expert_index) * torch.rsqrt(
            select_experts(self.running_var, expert_index) + self.eps
        )
        shift = select_experts(self.bn_bias, expert_index) - mean * bn_scale  # (B, K, H)
        folded = scale[..., None] * weight1 * bn_scale[:, :, None]
        bias = (offset[:, :, None] @ weight1)[:, :, 0] * bn_scale  # (B, K, H)
        hidden = features[:, None] @ folded + bias[:, :, None]  # (B, K, P, H)
        if normalized_views > 0:
            mapped_scale, mapped_offset = scale[:, :normalized_views], offset[:, :normalized_views]
            squared = (
                features.square() @ mapped_scale.square().transpose(1, 2)
                + features @ (2 * mapped_scale * mapped_offset).transpose(1, 2)
                + mapped_offset.square().sum(dim=2)[:, None]
            )  # (B, P, V): |scale * x + offset|^2
            norm = squared.clamp_min(0).sqrt().clamp_min(1e-12).transpose(1, 2)  # F.normalize's eps
            norm = torch.cat([norm, norm.new_ones(norm.shape[0], scale.shape[1] - normalized_views, norm.shape[2])], 1)
            hidden = hidden / norm[..., None]
        hidden = F.leaky_relu(hidden + shift[:, :, None], negative_slope=0.2)
        return (hidden @ select_experts(self.weight2, expert_index)[..., None])[..., 0]

    def _batch_statistics(self, hidden: torch.Tensor, expert_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-expert mean and variance of ``hidden`` (before ``bias1``) over the patches routed to each expert.

        Updates the running statistics, whose mean includes ``bias1`` as a BatchNorm after ``Linear`` would.
        """
        patches = hidden.shape[2]
        one_hot = F.one_hot(expert_index.reshape(-1), self.num_experts).to(hidden.dtype)  # (B*K, E)
        count = one_hot.sum(dim=0) * patches  # (E,)
        flat = hidden.reshape(-1, patches, hidden.shape[-1])
        sums = one_hot.T @ flat.sum(dim=1)  # (E, H)
        squares = one_hot.T @ (flat * flat).sum(dim=1)  # x * x: the same values, a cheaper backward than pow(2)
        safe = count.clamp(min=1)[:, None]
        mean = sums / safe
        var = (squares / safe - mean.pow(2)).clamp(min=0)
        with torch.no_grad():
            seen = (count > 0)[:, None]
            unbiased = var * (safe / (safe - 1).clamp(min=1))
            m = self.momentum
            linear_mean = mean + self.bias1
            self.running_mean.copy_(torch.where(seen, (1 - m) * self.running_mean + m * linear_mean, self.running_mean))
            self.running_var.copy_(torch.where(seen, (1 - m) * self.running_var + m * unbiased, self.running_var))
        return select_experts(mean, expert_index), select_experts(var, expert_index)
