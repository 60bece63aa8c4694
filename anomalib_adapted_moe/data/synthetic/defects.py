"""Defects drawn onto a clean texture, each with the exact mask of what it changed.

Every defect builds a candidate image ``new`` and a boolean ``mask``; the caller
keeps the clean pixels outside the mask, so the mask is exactly the set of altered
pixels. Soft defects (stains) cut their fall-off at a visible threshold instead of
fading out invisibly beyond the mask. The mask area is kept within
[AREA_MIN, AREA_MAX] of the image by resampling with a size correction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .noise import gaussian_field, pixel_grid

DEFECT_FAMILIES: tuple[str, ...] = ("scratch", "fold", "stain", "hole", "foreign")
AREA_MIN, AREA_MAX = 0.002, 0.08  # fraction of the image
_AREA_LO, _AREA_HI = 0.0025, 0.075  # resampling target, with a margin
_MAX_TRIES = 60

# Absolute stain colours; a stain picks one that contrasts with the surface it lands on.
_STAIN_COLOURS = np.array(
    [
        (0.38, 0.22, 0.08),  # brown (rust, coffee)
        (0.12, 0.12, 0.13),  # dark grease
        (0.88, 0.78, 0.3),  # yellow (oil)
        (0.3, 0.45, 0.85),  # bluish (residue, oxide)
        (0.75, 0.15, 0.15),  # red
        (0.92, 0.92, 0.88),  # white (salt, dried water)
    ],
    dtype=np.float32,
)


def _luminance(img: np.ndarray, where: np.ndarray) -> float:
    return float(img[where].mean()) if where.any() else float(img.mean())


def _arc(rng: np.random.Generator, size: int, length: float):
    """Random gently curved arc through the image: (signed distance, along-coordinate in [-1, 1], normal)."""
    yy, xx = pixel_grid(size)
    mx, my = (float(v) for v in rng.uniform(0.2, 0.8, 2) * size)
    alpha = float(rng.uniform(0.0, np.pi))
    radius = size * float(rng.uniform(0.6, 4.0))
    bend = 1.0 if rng.random() < 0.5 else -1.0
    cx = mx - bend * radius * float(np.sin(alpha))
    cy = my + bend * radius * float(np.cos(alpha))
    dx, dy = xx - cx, yy - cy
    rho = np.hypot(dx, dy)
    phi = np.arctan2(dy, dx) - float(np.arctan2(my - cy, mx - cx))
    phi = (phi + np.pi) % (2.0 * np.pi) - np.pi
    t = phi * radius / (0.5 * length)
    normal = np.stack([dy / np.maximum(rho, 1e-6), dx / np.maximum(rho, 1e-6)])  # (ny, nx)
    return rho - radius, t, normal


def _blob_radius(rng: np.random.Generator, size: int, cx: float, cy: float, roughness: float):
    """Distance to (cx, cy) divided by an irregular, angle-dependent radius factor."""
    yy, xx = pixel_grid(size)
    dx, dy = xx - cx, yy - cy
    phi = np.arctan2(dy, dx)
    a = [float(v) for v in rng.uniform(0.0, 2.0 * np.pi, 3)]
    w = [float(v) * roughness for v in rng.uniform(0.3, 1.0, 3)]
    factor = (
        1.0 + w[0] * np.cos(2 * phi + a[0]) + 0.6 * w[1] * np.cos(3 * phi + a[1]) + 0.4 * w[2] * np.cos(5 * phi + a[2])
    )
    return np.hypot(dx, dy) / factor


def scratch(tex, rng, k):
    """Thin bright or dark curved line, tapering at both ends."""
    size = tex.shape[0]
    s = size / 256.0
    length = rng.uniform(0.3, 0.75) * size * k
    width = max(rng.uniform(1.8, 3.6) * s, 1.2)
    dist, t, _ = _arc(rng, size, length)
    half = np.maximum(0.5 * width * np.sqrt(np.clip(1.0 - t**4, 0.0, 1.0)), 0.55)
    mask = (np.abs(t) <= 1.0) & (np.abs(dist) <= half)
    bright = _luminance(tex, mask) < 0.5
    target = np.float32(0.96 if bright else 0.05)
    alpha = (0.7 + 0.3 * (1.0 - (dist / half) ** 2)).clip(0.0, 1.0)[:, :, None]
    return tex * (1.0 - alpha) + alpha * target, mask


def fold(tex, rng, k):
    """Crease: a lens-shaped band whose pattern is pulled towards a sharp shaded ridge."""
    size = tex.shape[0]
    s = size / 256.0
    length = rng.uniform(0.35, 0.85) * size
    half_width = max(rng.uniform(4.0, 9.0) * s * k, 1.5)
    dist, t, normal = _arc(rng, size, length)
    half = half_width * np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))
    mask = (np.abs(t) < 1.0) & (np.abs(dist) < half) & (half > 0.6)
    u = np.where(mask, dist / np.maximum(half, 1e-6), 0.0)
    if rng.random() < 0.5:
        u, normal = -u, -normal
    # Pattern compression towards the ridge.
    shift = rng.uniform(0.5, 1.0) * half * u * (1.0 - np.abs(u))
    sy = np.clip(np.round(np.arange(size)[:, None] + 0.5 - shift * normal[0] - 0.5), 0, size - 1).astype(np.int64)
    sx = np.clip(np.round(np.arange(size)[None, :] + 0.5 - shift * normal[1] - 0.5), 0, size - 1).astype(np.int64)
    warped = tex[sy, sx]
    # Shadow on one flank, highlight on the other, a sharp ridge in between.
    g = np.where(u < 0.0, -(0.3 + 0.7 * (1.0 - np.abs(u)) ** 1.5), 0.2 + 0.6 * (1.0 - u) ** 1.5)
    strength = rng.uniform(0.35, 0.55)
    return warped * (1.0 + strength * g)[:, :, None], mask


def stain(tex, rng, k):
    """Soft, irregular blob of colour change; mask = where the change is visible."""
    size = tex.shape[0]
    s = size / 256.0
    sigma = rng.uniform(7.0, 18.0) * s * k
    cx, cy = (float(v) for v in rng.uniform(0.2, 0.8, 2) * size)
    r = _blob_radius(rng, size, cx, cy, 0.2)
    amp = rng.uniform(0.6, 0.95)
    alpha = amp * np.exp(-0.5 * (r / sigma) ** 2)
    # A second lobe makes the outline less circular.
    ox, oy = (float(v) for v in rng.normal(0.0, 0.8 * sigma, 2))
    yy, xx = pixel_grid(size)
    alpha = np.maximum(
        alpha, 0.8 * amp * np.exp(-0.5 * ((xx - cx - ox) ** 2 + (yy - cy - oy) ** 2) / (0.7 * sigma) ** 2)
    )
    threshold = 0.2
    mask = alpha > threshold
    alpha = np.where(mask, alpha, 0.0).astype(np.float32)[:, :, None]
    mean = tex[mask].mean(axis=0) if mask.any() else tex.reshape(-1, 3).mean(axis=0)
    contrast = np.abs(_STAIN_COLOURS - mean).max(axis=1)
    candidates = np.flatnonzero(contrast > 0.3)
    colour = _STAIN_COLOURS[rng.choice(candidates) if candidates.size else int(np.argmax(contrast))]
    # Keep the surface detail visible through the stain by modulating with the relative luminance.
    detail = tex.mean(axis=2, keepdims=True) / max(float(mean.mean()), 1e-3)
    return tex * (1.0 - alpha) + alpha * colour * detail, mask


def hole(tex, rng, k):
    """One to three small dark holes/pits or bright specks with ragged edges."""
    size = tex.shape[0]
    s = size / 256.0
    count = int(rng.integers(1, 4))
    radius = (rng.uniform(6.5, 12.0) if count == 1 else rng.uniform(4.0, 7.0)) * s * k
    radius = max(radius, 1.2)
    cx, cy = (float(v) for v in rng.uniform(0.15, 0.85, 2) * size)
    mask = np.zeros(tex.shape[:2], dtype=bool)
    depth = np.zeros(tex.shape[:2], dtype=np.float32)
    for i in range(count):
        ox, oy = (0.0, 0.0) if i == 0 else (float(v) for v in rng.uniform(-3.0, 3.0, 2) * radius)
        rr = _blob_radius(rng, size, cx + ox, cy + oy, 0.15) / (radius * rng.uniform(0.7, 1.1))
        mask |= rr < 1.0
        depth = np.maximum(depth, np.clip(1.0 - rr**2, 0.0, 1.0))
    lum = _luminance(tex, mask)
    dark = lum > 0.6 or (lum > 0.3 and rng.random() < 0.7)  # must contrast with the surface
    target = np.float32(0.03) if dark else np.float32(0.95)
    alpha = (0.8 + 0.2 * depth)[:, :, None]
    return tex * (1.0 - alpha) + alpha * target, mask


def foreign(tex, rng, k):
    """Patch of a different material: a fibre tuft or a blotchy particle in a contrasting colour."""
    size = tex.shape[0]
    s = size / 256.0
    radius = rng.uniform(11.0, 30.0) * s * k
    cx, cy = (float(v) for v in rng.uniform(0.2, 0.8, 2) * size)
    mask = _blob_radius(rng, size, cx, cy, 0.25) < radius
    if rng.random() < 0.5:
        pattern = gaussian_field(rng, size, 12.0 * s, 0.8 * s, rng.uniform(0.0, 180.0))  # fibres
    else:
        pattern = gaussian_field(rng, size, 2.5 * s, 2.5 * s)  # blotchy particle
    mean = tex[mask].mean(axis=0) if mask.any() else tex.reshape(-1, 3).mean(axis=0)
    colour = np.clip(1.0 - mean + rng.normal(0.0, 0.12, 3), 0.05, 0.95).astype(np.float32)
    if np.abs(colour - mean).max() < 0.3:  # grey on grey: go dark or bright instead
        colour = np.full(3, 0.08 if mean.mean() > 0.45 else 0.9, dtype=np.float32)
    patch = colour * (1.0 + 0.3 * pattern[:, :, None])
    return np.where(mask[:, :, None], patch, tex), mask


_DRAW: dict[str, Callable] = {"scratch": scratch, "fold": fold, "stain": stain, "hole": hole, "foreign": foreign}


def draw_defect(family: str, tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(new, mask)`` for one defect family on ``tex`` (float32 ``(S, S, 3)``).

    Resamples until the mask covers [_AREA_LO, _AREA_HI] of the image, growing or
    shrinking the size factor when a draw falls outside, so it always terminates
    within the hard bounds [AREA_MIN, AREA_MAX].
    """
    draw = _DRAW[family]
    scale = 1.0
    for _ in range(_MAX_TRIES):
        new, mask = draw(tex, rng, scale)
        frac = float(mask.mean())
        if _AREA_LO <= frac <= _AREA_HI:
            return new.astype(np.float32), mask
        if frac < _AREA_LO:
            scale *= 1.15
        else:
            scale /= 1.15
    raise RuntimeError(f"could not draw a {family} defect of valid area on a {tex.shape[0]} px image")
