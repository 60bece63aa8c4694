"""SHA-256 sums of an exported IR, written beside it, so a copy on the edge box can be trusted.

OpenVINO loads an IR whose weights file had a byte changed (a bad disk, memory or copy) without a word, and the
model then scores with a wrong weight. Every AdaptedMoE OpenVINO export writes ``<name>.sha256`` beside
``<name>.xml`` and ``<name>.bin``, in the format of coreutils' ``sha256sum``, so the box can check a copy without
Python (``cd <folder> && sha256sum -c model.sha256``); :func:`~.inferencer.openvino_inferencer` checks it before
loading. An IR without the file (exported before, or copied without it) is loaded as it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class ChangedModelFileError(ValueError):
    """An IR file whose SHA-256 differs from the one its export wrote beside it."""


def sums_file(xml: str | Path) -> Path:
    """Where the sums of the IR ``xml`` are written: ``<name>.sha256`` beside it."""
    return Path(xml).with_suffix(".sha256")


def sha256(path: Path) -> str:
    """The file's SHA-256, read in chunks (a weights file may be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sums(xml: str | Path) -> Path:
    """Write the sums of ``xml`` and its ``.bin`` (the files' names, not paths: the folder may be copied anywhere)."""
    xml = Path(xml)
    lines = [f"{sha256(file)}  {file.name}\n" for file in (xml, xml.with_suffix(".bin"))]
    target = sums_file(xml)
    target.write_text("".join(lines))
    return target


def check_sums(xml: str | Path) -> None:
    """Raise :class:`ChangedModelFileError` naming the IR file that differs from its export's sum; nothing if the
    IR has no sums file. A sums file that cannot be read as ``sha256sum`` writes it is named the same way."""
    xml = Path(xml)
    sums = sums_file(xml)
    if not sums.is_file():
        return
    fix = (
        f"copy the IR again (the .xml, .bin and .sha256 together) from where it was exported, or export again; "
        f"delete {sums} if the IR was changed on purpose"
    )
    expected = {}  # by suffix: an IR renamed with its sums file (line.xml, line.bin, line.sha256) is still checked
    for line in sums.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        digest, name = digest.lower(), name.removeprefix(" ").removeprefix("*")  # sha256sum's text and binary modes
        if len(digest) != 64 or not name:
            msg = f"{sums}: not a list of SHA-256 sums as an export writes it ({line!r:.80}). Fix: {fix}."
            raise ChangedModelFileError(msg)
        expected[Path(name).suffix] = digest
    for file in (xml, xml.with_suffix(".bin")):
        if file.suffix in expected and sha256(file) != expected[file.suffix]:
            msg = (
                f"{file}: its SHA-256 differs from the one its export wrote in {sums}: the file changed since (a bad "
                f"disk, memory or copy), and OpenVINO would score with whatever it now holds. Fix: {fix}."
            )
            raise ChangedModelFileError(msg)
