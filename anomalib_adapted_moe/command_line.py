"""How the package's commands end: a refusal in one line, no traceback; SIGTERM as an exit that cleans up; and
libraries' chatter kept off the screen meanwhile.

The package's ``.pth`` hook registers the plugin when ``anomalib`` runs; the same
rule tells a refusal (bad argument, missing dataset folder) to end that command
with its message, where from Python it stays an exception a caller can catch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def running_the_anomalib_command() -> bool:
    """True inside the stock ``anomalib`` command (the rule the package's ``.pth`` hook uses)."""
    return os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "") in ("anomalib", "anomalib.exe")


def unwritable_reason(folder: Path) -> str | None:
    """Why files could not be written into ``folder`` (made with its parents when they are), or ``None``: tried in
    the nearest folder that exists, so nothing is made here and a refusal after it leaves no empty folder behind."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:  # a file made and removed there: root writes past a folder's mode, not past chattr +i or a read-only disk
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        return error.strerror or str(error)
    return None


def refuse(error: Exception) -> None:
    """Stop the stock ``anomalib`` command with the error's one-line message; raise it as it is from Python."""
    if running_the_anomalib_command():  # a message for the person at the terminal, no traceback
        raise SystemExit(f"error: {error}") from None
    raise error


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` meanwhile, so that ``finally`` and ``except`` blocks run.

    SIGTERM's default action (``timeout``, SLURM, ``kill``) ends the process on the spot: a generation's temporary
    folder and pool workers, or the benchmark's run process, were left behind. A handler the application set (or
    SIG_IGN, Lightning's own) is left alone, and Python lets only the main thread set one.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def exit_143(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_143)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def loggers_at(level: int, *names: str) -> Iterator[None]:
    """The ``names`` loggers at ``level`` meanwhile, as they were after (the ONNX exporter's passes log a thousand
    lines at INFO under the ``anomalib`` command, which logs INFO)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(level)
    try:
        yield
    finally:
        for each, previous in zip(loggers, levels, strict=True):
            each.setLevel(previous)
