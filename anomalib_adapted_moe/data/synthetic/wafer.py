"""Patterned wafer: a grid of identical dies separated by scribe streets.

A die layout (pads, seal ring, line arrays, logic blocks) is drawn once per
material from a layout seed and tiled; subclasses differ in die pitch, street and
line width, thin-film colour, reflectance and optics. Each image draws a new grid
offset, a tiny rotation and a new slow thin-film colour drift.

Default split (5 seen, 3 unseen), pairing of the unseen subclasses:

* ``logic_die_purple_oblique_light`` <- ``logic_die_purple``: same wafer under a strong oblique
  light with a yellow cast (optics shift).
* ``memory_array_gold_wide_pitch``   <- ``memory_array_gold``: same layout family at ~30 % larger
  die pitch and wider lines (geometry shift).
* ``sensor_die_green_thick_oxide``   <- ``sensor_die_green``: thicker oxide turns the film
  colour yellow-olive, slightly defocused (colour + optics shift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .noise import gaussian_field, pixel_grid
from .optics import Optics
from .subclasses import Shift, SubclassSpec

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class WaferParams:
    """Pixel quantities at 256 px; they scale with the image size."""

    pitch: float  # die pitch
    street: float  # scribe street width
    line_width: float  # width of the lines in the line-array blocks
    film: RGB  # thin-film colour of the die background
    film_alt: RGB  # colour the film drifts towards across the image
    metal: RGB  # pads, seal ring and lines
    street_colour: RGB
    reflectance: float = 1.0
    blocks: int = 3  # functional blocks per die
    angle: float = 0.0


# Material ids of the die template.
_STREET, _FILM, _METAL, _LOGIC, _RING = range(5)


@lru_cache(maxsize=64)
def die_template(p: WaferParams, size: int, layout_seed: tuple[int, ...]) -> np.ndarray:
    """``(pitch, pitch)`` uint8 material ids; identical for every die of a material."""
    rng = np.random.default_rng(layout_seed)
    s = size / 256.0
    n = max(round(p.pitch * s), 8)
    sw = max(round(p.street * s), 1)
    lw = max(round(p.line_width * s), 1)
    t = np.full((n, n), _FILM, dtype=np.uint8)
    t[:sw, :] = _STREET
    t[:, :sw] = _STREET
    ring = sw + max(1, n // 24)
    t[ring : n - max(1, n // 24), ring] = _RING
    t[ring : n - max(1, n // 24), n - max(1, n // 24) - 1] = _RING
    t[ring, ring : n - max(1, n // 24)] = _RING
    t[n - max(1, n // 24) - 1, ring : n - max(1, n // 24)] = _RING
    # Bond pads along the top and left edges.
    pad = max(2, n // 12)
    inner0, inner1 = ring + 2, n - max(1, n // 24) - 2
    for k in range(inner0 + pad, inner1 - pad, 2 * pad):
        t[inner0 : inner0 + pad, k : k + pad] = _METAL
        t[k : k + pad, inner0 : inner0 + pad] = _METAL
    # Functional blocks in the core: line arrays or standard-cell logic.
    core0, core1 = inner0 + pad + 2, inner1 - 1
    span = core1 - core0
    if span >= 6:
        for _ in range(p.blocks):
            h, w = rng.integers(max(3, span // 4), max(4, span // 2 + 1), 2)
            y0 = core0 + int(rng.integers(0, max(1, span - h)))
            x0 = core0 + int(rng.integers(0, max(1, span - w)))
            block = t[y0 : y0 + h, x0 : x0 + w]
            if rng.random() < 0.5:
                yy, xx = np.mgrid[0 : block.shape[0], 0 : block.shape[1]]
                lines = (xx if rng.random() < 0.5 else yy) // lw % 2 == 0
                block[...] = np.where(lines, _METAL, _FILM)
            else:
                cell = max(1, lw)
                cells = rng.random((block.shape[0] // cell + 1, block.shape[1] // cell + 1)) < 0.35
                cells = np.kron(cells, np.ones((cell, cell), dtype=bool))[: block.shape[0], : block.shape[1]]
                block[...] = np.where(cells, _METAL, _LOGIC)
    return t


def render_texture(p: WaferParams, size: int, rng: np.random.Generator, layout_seed: tuple[int, ...]) -> np.ndarray:
    """``(size, size, 3)`` float32 reflectance."""
    t = die_template(p, size, layout_seed)
    n = t.shape[0]
    angle = np.deg2rad(p.angle + 0.25 * rng.standard_normal())
    ox, oy = (float(o) for o in rng.uniform(0.0, n, 2))
    c, sn = float(np.cos(angle)), float(np.sin(angle))
    yy, xx = pixel_grid(size)
    u = xx * c + yy * sn + ox
    v = -xx * sn + yy * c + oy
    ids = t[np.floor(v).astype(np.int64) % n, np.floor(u).astype(np.int64) % n]

    film, film_alt = np.asarray(p.film, np.float32), np.asarray(p.film_alt, np.float32)
    metal, street = np.asarray(p.metal, np.float32), np.asarray(p.street_colour, np.float32)
    pal_a = np.stack([street, film, metal, 0.45 * film, 0.9 * metal])
    pal_b = np.stack([street, film_alt, metal, 0.45 * film_alt, 0.9 * metal])
    drift = 0.5 + 0.5 * np.tanh(gaussian_field(rng, size, 60.0 * size / 256, 60.0 * size / 256))
    img = pal_a[ids] + drift[:, :, None] * (pal_b - pal_a)[ids]
    grain = 1.0 + 0.025 * rng.standard_normal((size, size, 1)).astype(np.float32)
    return (img * grain * p.reflectance).astype(np.float32)


_SILVER: RGB = (0.85, 0.85, 0.82)
_GOLDEN: RGB = (0.9, 0.78, 0.5)

BASES: tuple[SubclassSpec, ...] = (
    SubclassSpec(
        "logic_die_purple",
        WaferParams(48.0, 4.0, 2.0, (0.45, 0.3, 0.62), (0.35, 0.3, 0.7), _SILVER, (0.5, 0.48, 0.52)),
        Optics(gradient=0.15, gradient_angle=30.0, blur=0.5, noise=0.01),
        layout_key=0,
    ),
    SubclassSpec(
        "memory_array_gold",
        WaferParams(64.0, 5.0, 1.5, (0.75, 0.6, 0.3), (0.7, 0.5, 0.25), _SILVER, (0.45, 0.4, 0.3), blocks=4),
        Optics(gradient=0.12, gradient_angle=220.0, blur=0.45, noise=0.01),
        layout_key=1,
    ),
    SubclassSpec(
        "sensor_die_green",
        WaferParams(
            32.0, 3.0, 2.0, (0.3, 0.6, 0.4), (0.35, 0.65, 0.3), _GOLDEN, (0.35, 0.4, 0.35), reflectance=0.9, blocks=2
        ),
        Optics(gradient=0.2, gradient_angle=120.0, blur=0.5, noise=0.012),
        layout_key=2,
    ),
    SubclassSpec(
        "power_die_silver",
        WaferParams(
            96.0,
            8.0,
            4.0,
            (0.62, 0.63, 0.66),
            (0.58, 0.6, 0.64),
            (0.95, 0.95, 0.92),
            (0.3, 0.3, 0.32),
            reflectance=1.05,
            blocks=2,
        ),
        Optics(gradient=0.1, gradient_angle=300.0, vignette=0.2, blur=0.6, noise=0.01),
        layout_key=3,
    ),
    SubclassSpec(
        "mems_die_teal",
        WaferParams(
            40.0, 4.0, 3.0, (0.15, 0.45, 0.55), (0.1, 0.4, 0.6), (0.7, 0.75, 0.78), (0.2, 0.25, 0.3), reflectance=0.75
        ),
        Optics(gradient=0.18, gradient_angle=80.0, exposure=-0.1, blur=0.55, noise=0.014),
        layout_key=4,
    ),
    SubclassSpec(
        "rf_die_copper",
        WaferParams(56.0, 4.0, 2.0, (0.7, 0.42, 0.3), (0.75, 0.5, 0.32), _SILVER, (0.4, 0.35, 0.32)),
        Optics(gradient=0.15, gradient_angle=170.0, blur=0.5, noise=0.012),
        layout_key=5,
    ),
    SubclassSpec(
        "analog_die_blue",
        WaferParams(72.0, 6.0, 3.0, (0.25, 0.35, 0.75), (0.3, 0.45, 0.8), _GOLDEN, (0.45, 0.45, 0.5), blocks=3),
        Optics(gradient=0.12, gradient_angle=250.0, blur=0.5, noise=0.012),
        layout_key=6,
    ),
    SubclassSpec(
        "test_structure_olive",
        WaferParams(44.0, 6.0, 1.5, (0.55, 0.55, 0.25), (0.5, 0.58, 0.3), _SILVER, (0.35, 0.35, 0.3), blocks=4),
        Optics(gradient=0.2, gradient_angle=10.0, blur=0.45, noise=0.012),
        layout_key=7,
    ),
)


def _oblique_light(s: SubclassSpec) -> SubclassSpec:
    return replace(
        s,
        optics=replace(
            s.optics,
            gradient=0.6,
            gradient_angle=s.optics.gradient_angle + 150.0,
            vignette=0.35,
            exposure=s.optics.exposure - 0.1,
            cast=(1.15, 1.05, 0.72),
        ),
    )


def _wide_pitch(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    return replace(s, texture=replace(t, pitch=t.pitch * 1.3, line_width=t.line_width * 1.7, street=t.street * 1.4))


def _thick_oxide(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    return replace(
        s,
        texture=replace(t, film=(0.6, 0.62, 0.2), film_alt=(0.66, 0.56, 0.18)),
        optics=replace(s.optics, blur=1.1),
    )


SHIFTS: tuple[Shift, ...] = (
    Shift("oblique_light", _oblique_light),
    Shift("wide_pitch", _wide_pitch),
    Shift("thick_oxide", _thick_oxide),
    Shift(
        "dim_fine_pitch",
        lambda s: replace(
            s,
            texture=replace(s.texture, pitch=s.texture.pitch * 0.75, reflectance=s.texture.reflectance * 0.7),
        ),
    ),
)


def variant(spec: SubclassSpec, k: int) -> SubclassSpec:
    """Extra seen subclasses past the table: a new layout at a different pitch."""
    t = spec.texture
    return replace(
        spec,
        name=f"{spec.name}_rev{k + 1}",
        texture=replace(t, pitch=t.pitch * (1.0 + 0.2 * k), blocks=t.blocks + k),
        layout_key=spec.layout_key + 100 * k,
    )
