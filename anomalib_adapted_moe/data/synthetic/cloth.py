"""Woven cloth: warp and weft threads interlaced by a weave matrix.

Subclasses differ in weave (plain, twill, satin, basket, herringbone, rib), thread
pitch, yarn colours (solid or checked) and optics. Each image draws a new pattern
phase, a slightly different angle and new per-thread yarn variation.

Default split (5 seen, 3 unseen), pairing of the unseen subclasses:

* ``plain_weave_red_warm_lamp``    <- ``plain_weave_red``: same cloth, warm tungsten light,
  darker exposure, steeper illumination gradient (optics shift).
* ``twill_denim_blue_fine_pitch``  <- ``twill_denim_blue``: threads ~30 % finer, yarn shifted
  to a greener indigo, rotated weave (texture shift).
* ``satin_gold_amber_soft_focus``  <- ``satin_gold``: a redder (amber) yarn, slightly cooler,
  softer-focused and flatter light (colour + optics shift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from .noise import pixel_grid
from .optics import Optics
from .subclasses import Shift, SubclassSpec

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ClothParams:
    """Pixel quantities at 256 px; they scale with the image size."""

    weave: str  # plain | twill | satin | basket | herringbone | rib
    pitch: float  # warp thread pitch (pixels)
    warp_colours: tuple[RGB, ...]  # cycled every `stripe` threads (checks when > 1 colour)
    weft_colours: tuple[RGB, ...]
    weft_ratio: float = 1.0  # weft pitch / warp pitch
    stripe: int = 1
    angle: float = 0.0  # degrees
    yarn_variation: float = 0.06  # per-thread brightness std
    fuzz: float = 0.05  # per-pixel fibre noise


@cache
def weave_matrix(weave: str) -> np.ndarray:
    """``W[i % ri, j % rj]`` is True where warp thread ``i`` lies over weft thread ``j``."""
    if weave in ("plain", "rib"):
        i, j = np.mgrid[0:2, 0:2]
        return (i + j) % 2 == 0
    if weave == "twill":  # 3/1 right-hand twill (denim)
        i, j = np.mgrid[0:4, 0:4]
        return (j - i) % 4 < 3
    if weave == "satin":  # 5-end warp-faced satin, move 2
        i, j = np.mgrid[0:5, 0:5]
        return (j - 2 * i) % 5 != 0
    if weave == "basket":  # 2x2 basket
        i, j = np.mgrid[0:4, 0:4]
        return (i // 2 + j // 2) % 2 == 0
    if weave == "herringbone":  # 2/2 twill that reverses every 4 warps
        i, j = np.mgrid[0:8, 0:4]
        direction = np.where(i < 4, 1, -1)
        return (j + direction * i) % 4 < 2
    raise ValueError(f"unknown weave {weave!r}")


def _profile(f: np.ndarray) -> np.ndarray:
    """Rounded cross-section of a yarn: dark in the gaps, bright on the crown."""
    return np.sqrt(np.clip(np.sin(float(np.pi) * f), 0.0, 1.0))


def render_texture(p: ClothParams, size: int, rng: np.random.Generator, layout_seed: tuple[int, ...]) -> np.ndarray:
    """``(size, size, 3)`` float32 reflectance in about [0, 1]."""
    del layout_seed  # cloth has no fixed layout beyond its parameters
    s = size / 256.0
    pw = max(p.pitch * s, 2.5)
    pf = max(p.pitch * p.weft_ratio * s, 2.5)
    angle = np.deg2rad(p.angle + 0.6 * rng.standard_normal())
    ox, oy = (float(o) for o in rng.uniform(0.0, 1000.0, 2))
    c, sn = float(np.cos(angle)), float(np.sin(angle))
    yy, xx = pixel_grid(size)  # float32; Python floats keep the arithmetic in float32
    u = xx * c + yy * sn + ox
    v = -xx * sn + yy * c + oy
    ui = np.floor(u / pw).astype(np.int64)
    vj = np.floor(v / pf).astype(np.int64)
    fu = u / pw - ui
    fv = v / pf - vj

    # Weave lookups per cell: which yarn is on top, and whether it continues (floats) into the
    # neighbouring cells -- a yarn only dips where it goes under, which is what makes satin smooth.
    w = weave_matrix(p.weave)
    ri, rj = w.shape
    cell = (ui % ri) * rj + (vj % rj)
    warp_up = w.ravel()[cell]
    warp_float_prev = np.roll(w, 1, axis=1).ravel()[cell]  # warp also on top at weft j - 1
    warp_float_next = np.roll(w, -1, axis=1).ravel()[cell]
    weft_float_prev = ~np.roll(w, 1, axis=0).ravel()[cell]  # weft also on top at warp i - 1
    weft_float_next = ~np.roll(w, -1, axis=0).ravel()[cell]

    # Per-thread yarn colour (checks) and brightness variation.
    u0, v0 = ui.min(), vj.min()
    nu, nv = ui.max() - u0 + 1, vj.max() - v0 + 1
    tone_u = 1.0 + p.yarn_variation * rng.standard_normal(nu).astype(np.float32)
    tone_v = 1.0 + p.yarn_variation * rng.standard_normal(nv).astype(np.float32)
    warp_pal = np.asarray(p.warp_colours, dtype=np.float32)
    weft_pal = np.asarray(p.weft_colours, dtype=np.float32)
    warp_idx = ((np.arange(nu) + u0) // p.stripe) % len(warp_pal)
    weft_idx = ((np.arange(nv) + v0) // p.stripe) % len(weft_pal)
    warp_rgb = warp_pal[warp_idx] * tone_u[:, None]  # (nu, 3)
    weft_rgb = weft_pal[weft_idx] * tone_v[:, None]

    # Yarn shading: cross-section, dip where the yarn goes under, and twist ridges.
    two_pi = 2.0 * float(np.pi)
    twist_u = 1.0 + 0.07 * np.sin(two_pi * (v / (0.9 * pw) + 1.3 * fu))
    twist_v = 1.0 + 0.07 * np.sin(two_pi * (u / (0.9 * pf) + 1.3 * fv))
    dip_start_v, dip_end_v = np.exp(-((fv / 0.25) ** 2)), np.exp(-(((1.0 - fv) / 0.25) ** 2))
    dip_start_u, dip_end_u = np.exp(-((fu / 0.25) ** 2)), np.exp(-(((1.0 - fu) / 0.25) ** 2))
    along_u = 1.0 - 0.35 * (~warp_float_prev * dip_start_v + ~warp_float_next * dip_end_v)
    along_v = 1.0 - 0.35 * (~weft_float_prev * dip_start_u + ~weft_float_next * dip_end_u)
    shade_u = (0.3 + 0.7 * _profile(fu)) * along_u * twist_u
    shade_v = (0.3 + 0.7 * _profile(fv)) * along_v * twist_v

    img = np.where(
        warp_up[:, :, None],
        warp_rgb[ui - u0] * shade_u[:, :, None],
        weft_rgb[vj - v0] * shade_v[:, :, None],
    )
    fuzz = 1.0 + p.fuzz * rng.standard_normal((size, size, 1)).astype(np.float32)
    return (img * fuzz).astype(np.float32)


def _opt(**kw) -> Optics:
    return Optics(**kw)


BASES: tuple[SubclassSpec, ...] = (
    SubclassSpec(
        "plain_weave_red",
        ClothParams("plain", 8.0, ((0.78, 0.14, 0.13),), ((0.62, 0.09, 0.11),)),
        _opt(gradient=0.12, gradient_angle=20.0, blur=0.4),
        layout_key=0,
    ),
    SubclassSpec(
        "twill_denim_blue",
        ClothParams("twill", 6.0, ((0.14, 0.22, 0.5),), ((0.82, 0.82, 0.76),), angle=3.0, yarn_variation=0.1),
        _opt(gradient=0.1, gradient_angle=200.0, cast=(0.95, 1.0, 1.06), blur=0.5),
        layout_key=1,
    ),
    SubclassSpec(
        "satin_gold",
        ClothParams("satin", 5.0, ((0.92, 0.74, 0.3),), ((0.66, 0.5, 0.18),), yarn_variation=0.03, fuzz=0.03),
        _opt(gradient=0.35, gradient_angle=110.0, vignette=0.2, exposure=0.1, blur=0.5),
        layout_key=2,
    ),
    SubclassSpec(
        "basket_weave_natural",
        ClothParams("basket", 7.0, ((0.8, 0.72, 0.56),), ((0.68, 0.58, 0.42),), yarn_variation=0.08, fuzz=0.08),
        _opt(gradient=0.15, gradient_angle=300.0, cast=(1.05, 1.0, 0.92), blur=0.6),
        layout_key=3,
    ),
    SubclassSpec(
        "gingham_check_green",
        ClothParams(
            "plain", 5.0, ((0.12, 0.5, 0.25), (0.9, 0.92, 0.88)), ((0.12, 0.5, 0.25), (0.9, 0.92, 0.88)), stripe=6
        ),
        _opt(gradient=0.1, gradient_angle=60.0, exposure=-0.1, blur=0.5),
        layout_key=4,
    ),
    SubclassSpec(
        "herringbone_charcoal",
        ClothParams("herringbone", 5.0, ((0.3, 0.3, 0.32),), ((0.6, 0.6, 0.6),), yarn_variation=0.05),
        _opt(gradient=0.2, gradient_angle=250.0, blur=0.5),
        layout_key=5,
    ),
    SubclassSpec(
        "rib_weave_purple",
        ClothParams("rib", 6.0, ((0.5, 0.22, 0.6),), ((0.4, 0.15, 0.5),), weft_ratio=2.0),
        _opt(gradient=0.15, gradient_angle=160.0, cast=(1.0, 0.97, 1.04), blur=0.4),
        layout_key=6,
    ),
    SubclassSpec(
        "canvas_coarse_khaki",
        ClothParams("plain", 12.0, ((0.62, 0.58, 0.38),), ((0.55, 0.5, 0.32),), yarn_variation=0.12, fuzz=0.1),
        _opt(gradient=0.2, gradient_angle=330.0, blur=0.7),
        layout_key=7,
    ),
)


def _warm_lamp(s: SubclassSpec) -> SubclassSpec:
    return replace(
        s,
        optics=replace(
            s.optics,
            cast=(1.25, 0.98, 0.62),
            exposure=s.optics.exposure - 0.35,
            gradient=0.45,
            gradient_angle=s.optics.gradient_angle + 140.0,
            vignette=0.3,
        ),
    )


def _scale_colours(colours: tuple[RGB, ...], gains: RGB) -> tuple[RGB, ...]:
    return tuple(tuple(float(min(1.0, c * g)) for c, g in zip(col, gains, strict=True)) for col in colours)


def _fine_pitch(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    return replace(
        s,
        texture=replace(
            t,
            pitch=t.pitch * 0.7,
            angle=t.angle + 12.0,
            warp_colours=_scale_colours(t.warp_colours, (0.6, 1.45, 1.1)),
        ),
    )


def _amber_soft(s: SubclassSpec) -> SubclassSpec:
    t = s.texture
    gains = (1.0, 0.86, 0.78)  # a redder (amber) dye lot
    return replace(
        s,
        texture=replace(
            t, warp_colours=_scale_colours(t.warp_colours, gains), weft_colours=_scale_colours(t.weft_colours, gains)
        ),
        optics=replace(s.optics, exposure=s.optics.exposure - 0.15, cast=(0.97, 1.0, 1.08), blur=0.8, gradient=0.2),
    )


SHIFTS: tuple[Shift, ...] = (
    Shift("warm_lamp", _warm_lamp),
    Shift("fine_pitch", _fine_pitch),
    Shift("amber_soft_focus", _amber_soft),
    Shift(
        "coarse_pitch_backlit",
        lambda s: replace(
            s,
            texture=replace(s.texture, pitch=s.texture.pitch * 1.4),
            optics=replace(s.optics, gradient=0.5, exposure=s.optics.exposure + 0.3),
        ),
    ),
)


def variant(spec: SubclassSpec, k: int) -> SubclassSpec:
    """Extra seen subclasses past the table: same weave, different pitch and a darker dye lot."""
    t = spec.texture
    gain = (0.8**k, 0.85**k, 0.95**k)
    return replace(
        spec,
        name=f"{spec.name}_lot{k + 1}",
        texture=replace(
            t,
            pitch=t.pitch * (1.0 + 0.25 * k),
            warp_colours=_scale_colours(t.warp_colours, gain),
            weft_colours=_scale_colours(t.weft_colours, gain),
        ),
        layout_key=spec.layout_key + 100 * k,
    )
