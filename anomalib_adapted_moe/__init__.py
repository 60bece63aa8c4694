"""Adapted-MoE anomaly detection as an anomalib 2.x plugin.

Importing this package registers ``AdaptedMoE``, ``TextureAD`` and
``SyntheticTextureAD`` as subclasses of anomalib's base classes, which is what
lets ``anomalib train --model AdaptedMoE --data TextureAD`` resolve the bare names. Under the ``anomalib``
command it also applies the ``seed_everything`` anomalib parses but never applies, and names a missing checkpoint
or predict folder (:mod:`.anomalib_command`).
"""

from anomalib_adapted_moe.command_line import running_the_anomalib_command
from anomalib_adapted_moe.data import SyntheticTextureAD, TextureAD
from anomalib_adapted_moe.models.adapted_moe import AdaptedMoE

if running_the_anomalib_command():  # its seed applied, its checkpoint and predict folder checked by name
    from anomalib.cli import AnomalibCLI

    from anomalib_adapted_moe.anomalib_command import extend_anomalib_cli

    extend_anomalib_cli(AnomalibCLI)

__all__ = [
    "AdaptedMoE",
    "SyntheticTextureAD",
    "TextureAD",
]
