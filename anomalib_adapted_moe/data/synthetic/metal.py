"""Metal surfaces: brushed, cross-hatched, turned (concentric) or blasted grain.

Subclasses differ in finish, grain direction, roughness, grain size and tone
(steel, aluminium, titanium, brass, copper, bronze, anodised) plus optics. Each
image draws a new grain realisation, a slightly different direction and a new
position of the anisotropic highlight.

Default split (5 seen, 3 unseen), pairing of the unseen subclasses:

* ``brushed_steel_horizontal_low_angle_light`` <- ``brushed_steel_horizontal``: same steel under a
  low-angle, cool light (strong gradient and blue cast) (optics shift).
* ``brushed_aluminium_diagonal_steep_rough``   <- ``brushed_aluminium_diagonal``: grain turned to a
  steeper angle and ~2x rougher (texture shift).
* ``blasted_titanium_heat_tint``               <- ``blasted_titanium``: finer blast and a
  straw/gold heat tint, darker exposure (tone + texture shift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .noise import gaussian_field, pixel_grid
from .optics import Optics
from .subclasses import Shift, SubclassSpec

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class MetalParams:
    """Pixel quantities at 256 px; they scale with the image size."""

    finish: str  # brushed | crosshatch | turned | blasted
    direction: float  # grain direction in degrees (turned: direction of the spindle centre)
    roughness: float  # relative amplitude of the grain
    grain: float  # across-grain correlation length / blast grain size (pixels)
    streak: float  # along-grain correlation length (pixels)
    tone: RGB
    sheen: float = 0.15  # strength of the anisotropic highlight band


def _brushed(rng, size, p, s, direction):
    coarse = gaussian_field(rng, size, p.streak * s, p.grain * s, direction)
    fine = gaussian_field(rng, size, 0.3 * p.streak * s, max(0.4, 0.4 * p.grain * s), direction)
    return 0.75 * coarse + 0.45 * fine


def render_texture(p: MetalParams, size: int, rng: np.random.Generator, layout_seed: tuple[int, ...]) -> np.ndarray:
    """``(size, size, 3)`` float32 reflectance."""
    del layout_seed
    s = size / 256.0
    direction = p.direction + 2.0 * float(rng.standard_normal())
    yy, xx = pixel_grid(size)
    if p.finish == "brushed":
        grain = _brushed(rng, size, p, s, direction)
    elif p.finish == "crosshatch":
        grain = (_brushed(rng, size, p, s, direction + 45.0) + _brushed(rng, size, p, s, direction - 45.0)) / 1.4
    elif p.finish == "turned":
        a = np.deg2rad(direction)
        dist = size * float(rng.uniform(0.7, 1.2))
        cx, cy = size / 2 + dist * float(np.cos(a)), size / 2 + dist * float(np.sin(a))
        r = np.hypot(xx - cx, yy - cy)
        n = int(np.ceil(r.max())) + 2
        rings = rng.standard_normal(n)
        k = max(1, round(p.grain * s))
        rings = np.convolve(rings, np.ones(k) / np.sqrt(k), mode="same")
        grain = np.interp(r, np.arange(n), rings / rings.std()).astype(np.float32)
        grain += 0.35 * gaussian_field(rng, size, 0.6, 0.6)
    elif p.finish == "blasted":
        grain = gaussian_field(rng, size, p.grain * s, p.grain * s)
        pits = gaussian_field(rng, size, 0.7 * p.grain * s, 0.7 * p.grain * s)
        grain = grain + 2.0 * np.clip(pits - 2.0, 0.0, None) - 1.5 * np.clip(-pits - 2.3, 0.0, None)
    else:
        raise ValueError(f"unknown finish {p.finish!r}")

    blotch = gaussian_field(rng, size, 40.0 * s, 40.0 * s)
    # Anisotropic highlight: a soft band across the grain that moves from image to image.
    a = np.deg2rad(direction)
    across = ((xx - size / 2) * -float(np.sin(a)) + (yy - size / 2) * float(np.cos(a))) / size
    centre = float(rng.uniform(-0.4, 0.4))
    sheen = p.sheen * np.exp(-(((across - centre) / 0.3) ** 2))
    value = 1.0 + p.roughness * grain + 0.04 * blotch
    tone = np.asarray(p.tone, dtype=np.float32)
    # The highlight brightens the tone and partly whitens it (specular component).
    img = tone * (value * (1.0 + 0.5 * sheen))[:, :, None] + (0.3 * sheen)[:, :, None]
    return img.astype(np.float32)


BASES: tuple[SubclassSpec, ...] = (
    SubclassSpec(
        "brushed_steel_horizontal",
        MetalParams("brushed", 0.0, 0.12, 0.8, 60.0, (0.58, 0.59, 0.61)),
        Optics(gradient=0.15, gradient_angle=90.0, blur=0.4, noise=0.01),
        layout_key=0,
    ),
    SubclassSpec(
        "brushed_aluminium_diagonal",
        MetalParams("brushed", 35.0, 0.07, 0.6, 90.0, (0.7, 0.71, 0.73), sheen=0.15),
        Optics(gradient=0.1, gradient_angle=200.0, exposure=0.05, blur=0.4, noise=0.01),
        layout_key=1,
    ),
    SubclassSpec(
        "blasted_titanium",
        MetalParams("blasted", 0.0, 0.16, 1.1, 1.1, (0.46, 0.48, 0.52), sheen=0.05),
        Optics(gradient=0.2, gradient_angle=30.0, vignette=0.15, blur=0.5, noise=0.014),
        layout_key=2,
    ),
    SubclassSpec(
        "turned_brass_concentric",
        MetalParams("turned", 225.0, 0.1, 1.5, 0.0, (0.76, 0.6, 0.3), sheen=0.12),
        Optics(gradient=0.15, gradient_angle=300.0, blur=0.5, noise=0.012),
        layout_key=3,
    ),
    SubclassSpec(
        "brushed_copper_vertical",
        MetalParams("brushed", 90.0, 0.14, 1.0, 50.0, (0.72, 0.42, 0.28)),
        Optics(gradient=0.15, gradient_angle=160.0, blur=0.45, noise=0.012),
        layout_key=4,
    ),
    SubclassSpec(
        "crosshatch_steel",
        MetalParams("crosshatch", 0.0, 0.1, 0.7, 50.0, (0.55, 0.56, 0.57)),
        Optics(gradient=0.2, gradient_angle=45.0, blur=0.4, noise=0.012),
        layout_key=5,
    ),
    SubclassSpec(
        "blasted_bronze_coarse",
        MetalParams("blasted", 0.0, 0.2, 2.2, 2.2, (0.55, 0.4, 0.24), sheen=0.05),
        Optics(gradient=0.2, gradient_angle=250.0, blur=0.5, noise=0.012),
        layout_key=6,
    ),
    SubclassSpec(
        "brushed_black_anodised",
        MetalParams("brushed", 150.0, 0.18, 0.8, 70.0, (0.16, 0.16, 0.18), sheen=0.1),
        Optics(gradient=0.15, gradient_angle=0.0, exposure=0.2, blur=0.4, noise=0.012),
        layout_key=7,
    ),
)


def _low_angle_light(s: SubclassSpec) -> SubclassSpec:
    return replace(
        s,
        optics=replace(
            s.optics,
            gradient=0.6,
            gradient_angle=s.optics.gradient_angle + 180.0,
            vignette=0.3,
            cast=(0.88, 0.97, 1.14),
            exposure=s.optics.exposure - 0.15,
        ),
    )


def _steep_rough(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    return replace(
        s, texture=replace(t, direction=t.direction + 35.0, roughness=t.roughness * 2.0, grain=t.grain * 1.4)
    )


def _heat_tint(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    return replace(
        s,
        texture=replace(t, grain=t.grain * 0.6, tone=(0.62, 0.52, 0.3)),
        optics=replace(s.optics, exposure=s.optics.exposure - 0.2),
    )


SHIFTS: tuple[Shift, ...] = (
    Shift("low_angle_light", _low_angle_light),
    Shift("steep_rough", _steep_rough),
    Shift("heat_tint", _heat_tint),
    Shift("oily_haze", lambda s: replace(s, optics=replace(s.optics, blur=1.6, cast=(1.05, 1.05, 0.9)))),
)


def variant(spec: SubclassSpec, k: int) -> SubclassSpec:
    """Extra seen subclasses past the table: another batch with a rotated grain and a darker tone."""
    t = spec.texture
    return replace(
        spec,
        name=f"{spec.name}_batch{k + 1}",
        texture=replace(t, direction=t.direction + 20.0 * k, tone=tuple(c * 0.85**k for c in t.tone)),
        layout_key=spec.layout_key + 100 * k,
    )
