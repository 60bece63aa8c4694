"""``F.normalize`` over one dimension with a cheaper backward, for training.

Autograd differentiates ``x / max(|x|, eps)`` op by op: a division by the broadcast norm whose backward runs
several full-size passes (divide, divide, negate, multiply, then a sum) and the norm's own backward, on the adaptor's
channels-last map in strided loops. That was the largest single cost of a training step on the CPU recipe. The
closed form ``(g - u * <g, u>) / |x|`` takes three passes. Forward values equal ``F.normalize``'s.
"""

import torch

#: ``F.normalize``'s default epsilon
EPS = 1e-12


class _UnitNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, dim: int) -> torch.Tensor:
        norm = torch.linalg.vector_norm(features, dim=dim, keepdim=True)
        denominator = norm.clamp_min(EPS)
        unit = features / denominator
        ctx.save_for_backward(unit, denominator, norm > EPS)
        ctx.dim = dim
        return unit

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        unit, denominator, unclamped = ctx.saved_tensors
        if grad.stride() != unit.stride():  # elementwise ops over two layouts take the slow strided loops
            grad = torch.empty_like(unit).copy_(grad)
        # a clamped norm is a constant: its vectors' gradient is grad / eps, as F.normalize's
        along = (grad * unit).sum(ctx.dim, keepdim=True) * unclamped
        return torch.addcmul(grad, unit, along, value=-1) / denominator, None


def unit_norm(features: torch.Tensor, dim: int) -> torch.Tensor:
    """``F.normalize(features, dim=dim)``: the same values, a gradient in half the time or less (measured on the
    recipe's 8 x 152 x 32 x 32 map: 6.5 ms for F.normalize's forward and backward, 1.9-3.8 ms for this)."""
    return _UnitNorm.apply(features, dim)
