"""Errors for the person at the stock ``anomalib`` command: one line, no traceback.

The package's ``.pth`` hook registers the plugin when ``anomalib`` runs; the same
rule tells a refusal (bad argument, missing dataset folder) to end that command
with its message, where from Python it stays an exception a caller can catch.
"""

from __future__ import annotations

import os
import sys


def running_the_anomalib_command() -> bool:
    """True inside the stock ``anomalib`` command (the rule the package's ``.pth`` hook uses)."""
    return os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "") in ("anomalib", "anomalib.exe")


def refuse(error: Exception) -> None:
    """Stop the stock ``anomalib`` command with the error's one-line message; raise it as it is from Python."""
    if running_the_anomalib_command():  # a message for the person at the terminal, no traceback
        raise SystemExit(f"error: {error}") from None
    raise error
