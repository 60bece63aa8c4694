"""The README's layout block names every file of the model folder and every top-level part of the package (issue 16)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anomalib_adapted_moe"


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1]
    return section.split("```", 2)[1].splitlines()


def test_the_layout_lists_each_model_file_and_each_top_level_part_that_exists() -> None:
    lines = _layout_block()
    model_files = {m.group(1) for line in lines if (m := re.match(r"^    (\w+\.py)\b", line))}
    on_disk = {path.name for path in (PACKAGE / "models" / "adapted_moe").glob("*.py")} - {"__init__.py"}
    assert model_files == on_disk, f"listed, absent: {model_files - on_disk}; not listed: {on_disk - model_files}"

    top_level = {m.group(1) for line in lines if (m := re.match(r"^  (\w+(?:\.py|/))", line))}
    parts = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py"}
    assert top_level == parts, f"listed, absent: {top_level - parts}; not listed: {parts - top_level}"
