"""Adapted-MoE anomaly detection as an anomalib 2.x plugin.

Importing this package registers ``AdaptedMoE``, ``TextureAD`` and
``SyntheticTextureAD`` as subclasses of anomalib's base classes, which is what
lets ``anomalib train --model AdaptedMoE --data TextureAD`` resolve the bare names.
"""

from anomalib_adapted_moe.data import SyntheticTextureAD, TextureAD
from anomalib_adapted_moe.models.adapted_moe import AdaptedMoE

__all__ = [
    "AdaptedMoE",
    "SyntheticTextureAD",
    "TextureAD",
]
