"""Adapted-MoE anomaly detection as an anomalib 2.x plugin.

Importing this package registers ``AdaptedMoE``, ``TextureAD`` and ``SyntheticTextureAD`` as subclasses of
anomalib's base classes, which is what lets ``anomalib train --model AdaptedMoE --data TextureAD`` resolve the bare
names, and puts them in ``anomalib.models`` and ``anomalib.data``, where ``anomalib benchmark`` looks them up. Under
the ``anomalib`` command it also applies the ``seed_everything`` anomalib parses but never applies, and names a
missing checkpoint or predict folder (:mod:`.anomalib_command`).
"""

import anomalib.data
import anomalib.models

from anomalib_adapted_moe.command_line import running_the_anomalib_command
from anomalib_adapted_moe.data import SyntheticTextureAD, TextureAD
from anomalib_adapted_moe.models.adapted_moe import AdaptedMoE

# anomalib's get_model and get_datamodule (behind `anomalib benchmark`) look a class name up in these two modules only
anomalib.models.AdaptedMoE = AdaptedMoE
anomalib.data.TextureAD, anomalib.data.SyntheticTextureAD = TextureAD, SyntheticTextureAD

if running_the_anomalib_command():  # its seed applied, its checkpoint and predict folder checked by name
    from anomalib.cli import AnomalibCLI

    from anomalib_adapted_moe.anomalib_command import extend_anomalib_cli

    extend_anomalib_cli(AnomalibCLI)

__all__ = [
    "AdaptedMoE",
    "SyntheticTextureAD",
    "TextureAD",
]
