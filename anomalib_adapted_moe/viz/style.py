"""Shared look of the figures: one colour per subclass (a seen subclass takes its expert's colour), Agg figures."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

UNSEEN_MARKER = "^"
SEEN_MARKER = "o"


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure drawn by Agg and not registered with pyplot: nothing is shown, nothing leaks between calls."""
    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path | str, dpi: int = 100) -> Path:
    """Save ``figure`` as a 256-colour PNG: a third of the true-colour size, no visible loss on these figures."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as image:
        quantized = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    quantized.save(path, format="PNG", optimize=True)
    return Path(path)


def palette(count: int) -> list[str]:
    """``count`` distinct colours (tab10, then tab20, then a sampled continuous map)."""
    if count <= 10:
        colours = colormaps["tab10"].colors
    elif count <= 20:
        colours = colormaps["tab20"].colors
    else:
        colours = [colormaps["turbo"](i / max(1, count - 1)) for i in range(count)]
    return [to_hex(colour) for colour in colours[:count]]


def subclass_order(names: Iterable[str], seen: Iterable[str], expert_names: Sequence[str]) -> list[str]:
    """Distinct subclass names: seen ones first (in expert order, then sorted), then the unseen ones sorted."""
    distinct = set(names)
    seen = set(seen)
    position = {name: i for i, name in enumerate(expert_names)}
    seen_names = sorted(distinct & seen, key=lambda name: (position.get(name, len(position)), name))
    return seen_names + sorted(distinct - seen)


def expert_colours(expert_names: Sequence[str], extra: int = 0) -> tuple[list[str], list[str]]:
    """Colours of the experts and of ``extra`` further groups, all distinct."""
    colours = palette(len(expert_names) + extra)
    return colours[: len(expert_names)], colours[len(expert_names) :]


def subclass_colours(order: Sequence[str], seen: Iterable[str], expert_names: Sequence[str]) -> dict[str, str]:
    """Colour of every subclass in ``order``: a seen subclass that names an expert takes that expert's colour."""
    seen = set(seen)
    own = [name for name in order if not (name in seen and name in expert_names)]
    experts, extra = expert_colours(expert_names, len(own))
    colours = {name: experts[i] for i, name in enumerate(expert_names) if name in order}
    colours.update(zip(own, extra, strict=True))
    return colours


def default_seen(names: Iterable[str], expert_names: Sequence[str]) -> list[str]:
    """Seen subclasses when the caller does not say: those that name an expert."""
    return sorted(set(names) & set(expert_names))
