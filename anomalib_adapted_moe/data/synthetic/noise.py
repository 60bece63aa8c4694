"""Band-limited random fields shared by the textures and the defects.

Filtering white noise in the Fourier domain with an anisotropic Gaussian gives
streaks (long correlation along one direction: brushed metal, fibres) or grain
(isotropic: blasted metal, residue) in one vectorised step.
"""

from __future__ import annotations

import numpy as np


def gaussian_field(
    rng: np.random.Generator, size: int, along: float, across: float, angle_deg: float = 0.0
) -> np.ndarray:
    """Zero-mean, unit-std ``(size, size)`` float32 field.

    ``along``/``across`` are the spatial correlation lengths (Gaussian sigmas, pixels)
    along and across the direction ``angle_deg`` (0 = streaks run left to right).
    The field is periodic, which is harmless for the textures that use it.
    """
    white = rng.standard_normal((size, size), dtype=np.float32)
    spectrum = np.fft.rfft2(white)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    a = np.deg2rad(angle_deg)
    k_along = kx * np.cos(a) + ky * np.sin(a)
    k_across = -kx * np.sin(a) + ky * np.cos(a)
    # A spatial Gaussian of sigma s has frequency response exp(-2 pi^2 s^2 f^2).
    gain = np.exp(-2.0 * np.pi**2 * ((k_along * along) ** 2 + (k_across * across) ** 2))
    field = np.fft.irfft2(spectrum * gain, s=(size, size))
    field -= field.mean()
    std = field.std()
    if std > 0:
        field /= std
    return field.astype(np.float32)


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(yy, xx)`` float32 pixel-centre coordinates."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[:, None].repeat(size, 1), coords[None, :].repeat(size, 0)
