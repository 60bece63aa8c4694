"""Contact sheets for eyeballing the synthetic set: one row per subclass.

Columns: two normal images (train for seen subclasses, test/good for unseen ones)
and one test image per defect family with the mask outline drawn in red just
outside the mask, so the defect itself stays visible.

    python -m anomalib_adapted_moe.data.synthetic.contact_sheet --out docs/ [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .catalog import SYNTHETIC_CATEGORIES, defect_kinds, subclass_specs
from .defects import DEFECT_FAMILIES
from .generate import generate_synthetic_texture_ad

_LABEL_W, _HEADER_H, _GAP = 250, 22, 4
_SEEN_COLOUR, _UNSEEN_COLOUR, _OUTLINE = (40, 140, 40), (200, 90, 0), (255, 0, 0)


def _outline(tile: Image.Image, mask: Image.Image) -> Image.Image:
    """Draw a 1-px red ring just outside the (downscaled) mask."""
    m = np.asarray(mask.resize(tile.size, Image.Resampling.BOX)) > 0
    grown = m.copy()
    grown[1:] |= m[:-1]
    grown[:-1] |= m[1:]
    grown[:, 1:] |= m[:, :-1]
    grown[:, :-1] |= m[:, 1:]
    ring = grown & ~m
    arr = np.asarray(tile).copy()
    arr[ring] = _OUTLINE
    return Image.fromarray(arr)


def _tile(path: Path, tile: int) -> Image.Image:
    # Area averaging (BOX) also averages out sensor noise, which keeps the sheet small.
    return Image.open(path).convert("RGB").resize((tile, tile), Image.Resampling.BOX)


def _wrap(text: str, width: int) -> list[str]:
    """Break a snake_case name at underscores into lines of at most ``width`` characters."""
    lines, line = [], ""
    for part in text.split("_"):
        candidate = f"{line}_{part}" if line else part
        if len(candidate) > width and line:
            lines.append(line + "_")
            line = part
        else:
            line = candidate
    return [*lines, line]


def make_contact_sheet(category_dir: Path, out_path: Path, tile: int = 128) -> Path:
    """Render the sheet of one generated category directory to ``out_path``."""
    category = category_dir.name
    split = json.loads((category_dir / "split.json").read_text())
    names = split["seen"] + split["unseen"]
    pairing = {s.name: s.shifted_from for s in subclass_specs(category, len(names), len(split["unseen"]))}
    folders = defect_kinds(category)
    columns = ["normal", "normal"] + [folders[f] for f in DEFECT_FAMILIES]
    width = _LABEL_W + len(columns) * (tile + _GAP)
    height = _HEADER_H + len(names) * (tile + _GAP)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    draw.text((6, 4), f"synthetic {category}", fill=(0, 0, 0), font=font)
    for c, title in enumerate(columns):
        draw.text((_LABEL_W + c * (tile + _GAP) + 4, 4), title, fill=(0, 0, 0), font=font)

    for r, name in enumerate(names):
        y = _HEADER_H + r * (tile + _GAP)
        seen = name in split["seen"]
        lines = _wrap(name, 30)
        status = "SEEN" if seen else f"UNSEEN, shifted from {pairing.get(name)}"
        lines += _wrap(status, 30)
        for i, line in enumerate(lines):
            colour = (
                (0, 0, 0) if i < len(lines) - len(_wrap(status, 30)) else (_SEEN_COLOUR if seen else _UNSEEN_COLOUR)
            )
            draw.text((6, y + 6 + 16 * i), line, fill=colour, font=font)
        normal_dir = category_dir / name / ("train" if seen else "test") / "good"
        tiles = [_tile(normal_dir / f"{i:03d}.png", tile) for i in range(2)]
        for family in DEFECT_FAMILIES:
            img_path = category_dir / name / "test" / folders[family] / "000.png"
            mask_path = category_dir / name / "ground_truth" / folders[family] / "000_mask.png"
            tiles.append(_outline(_tile(img_path, tile), Image.open(mask_path)))
        for c, t in enumerate(tiles):
            sheet.paste(t, (_LABEL_W + c * (tile + _GAP), y))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # 256 adaptive colours keep the sheet well under 1.5 MB (true colour is ~2 MB of mostly noise).
    sheet.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out_path, format="PNG")
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.data.synthetic.contact_sheet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="directory for synthetic_<category>.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=128, help="tile size in the sheet (pixels)")
    parser.add_argument("--categories", nargs="+", default=list(SYNTHETIC_CATEGORIES))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        # Indices 0/1 of every folder have the same seed keys as in the default set, so these
        # are exactly the first images of the default set.
        root = generate_synthetic_texture_ad(
            tmp,
            args.categories,
            seed=args.seed,
            image_size=args.image_size,
            num_train=2,
            num_test_good=2,
            num_test_defect=len(DEFECT_FAMILIES),
        )
        for category in args.categories:
            path = make_contact_sheet(root / category, args.out / f"synthetic_{category}.png", args.tile)
            print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
