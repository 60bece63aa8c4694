"""``python -m anomalib_adapted_moe.data.real_textures``: build the real-texture development benchmark."""

from .build import main

main()
