"""Camera and lighting: what makes one subclass look different from another even
for the same material (illumination gradient, vignette, exposure, colour cast,
focus, sensor noise).

Each subclass has a fixed :class:`Optics`; every image jitters it slightly so the
images of one subclass are not copies of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .noise import pixel_grid


@dataclass(frozen=True)
class Optics:
    """Per-subclass imaging conditions (pixel quantities are given at 256 px)."""

    gradient: float = 0.15  # peak-to-peak relative brightness change across the image
    gradient_angle: float = 0.0  # degrees; direction towards the brighter side
    vignette: float = 0.1  # relative darkening at the corners
    exposure: float = 0.0  # EV; +1 doubles the brightness
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white-balance gains (R, G, B)
    blur: float = 0.5  # Gaussian sigma in pixels at 256 px (defocus / lens softness)
    noise: float = 0.012  # sensor noise std on the [0, 1] scale


def jitter_optics(optics: Optics, rng: np.random.Generator) -> Optics:
    """Small per-image variation; always draws the same number of values."""
    n = rng.standard_normal(9)
    return replace(
        optics,
        gradient=max(0.0, optics.gradient * (1.0 + 0.2 * n[0])),
        gradient_angle=optics.gradient_angle + 8.0 * n[1],
        vignette=max(0.0, optics.vignette * (1.0 + 0.15 * n[2])),
        exposure=optics.exposure + 0.05 * n[3],
        cast=tuple(float(c * (1.0 + 0.012 * e)) for c, e in zip(optics.cast, n[4:7], strict=True)),
        blur=max(0.0, optics.blur * (1.0 + 0.1 * n[7])),
        noise=max(0.0, optics.noise * (1.0 + 0.1 * n[8])),
    )


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(H, W, C)`` float image (reflect borders)."""
    if sigma < 0.25:
        return img
    radius = int(np.ceil(3.0 * sigma))
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2.0 * sigma**2)).astype(np.float32)
    taps /= taps.sum()
    h, w = img.shape[:2]
    padded = np.pad(img, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    out = taps[0] * padded[0:h]
    for i in range(1, taps.size):
        out += taps[i] * padded[i : i + h]
    padded = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    out = taps[0] * padded[:, 0:w]
    for i in range(1, taps.size):
        out += taps[i] * padded[:, i : i + w]
    return out


def illumination(optics: Optics, size: int) -> np.ndarray:
    """``(size, size, 3)`` multiplicative light field: gradient x vignette x exposure x cast."""
    yy, xx = pixel_grid(size)
    xn = 2.0 * xx / size - 1.0
    yn = 2.0 * yy / size - 1.0
    a = np.deg2rad(optics.gradient_angle)
    ramp = 1.0 + 0.5 * optics.gradient * (float(np.cos(a)) * xn + float(np.sin(a)) * yn)
    vignette = 1.0 - 0.5 * optics.vignette * (xn**2 + yn**2)
    light = (ramp * vignette * float(2.0**optics.exposure)).astype(np.float32)
    return light[:, :, None] * np.asarray(optics.cast, dtype=np.float32)
