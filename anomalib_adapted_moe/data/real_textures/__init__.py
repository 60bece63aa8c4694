"""Real-texture development benchmark: photographic textures of a Debian package, shaped like Texture AD."""

from .build import PackageUnavailableError, build_real_textures
from .catalog import REAL_CATEGORIES

__all__ = ["REAL_CATEGORIES", "PackageUnavailableError", "build_real_textures"]
