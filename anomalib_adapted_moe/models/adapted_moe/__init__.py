"""Adapted-MoE model: Lightning module and torch model."""

from .lightning_model import AdaptedMoE
from .torch_model import AdaptedMoEModel

__all__ = ["AdaptedMoE", "AdaptedMoEModel"]
