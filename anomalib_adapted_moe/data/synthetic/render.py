"""Rendering one image (and its mask) from a subclass spec and a seed key.

Pipeline: texture -> [defect on the sharp texture] -> blur -> light field -> sensor
noise -> 8 bit. The image RNG draws the same values whether or not a defect is
drawn (the defect has its own RNG), and everything after the defect is pointwise
except the blur, which is applied to the defect only inside its mask -- so a
defect image differs from its defect-free twin exactly inside the mask.
"""

from __future__ import annotations

import numpy as np

from .catalog import category_module
from .defects import draw_defect
from .optics import gaussian_blur, illumination, jitter_optics
from .subclasses import SubclassSpec


def render_sample(
    category: str,
    spec: SubclassSpec,
    size: int,
    key: tuple[int, ...],
    defect: str | None = None,
    layout_seed: tuple[int, ...] = (0,),
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb uint8 (size, size, 3), mask bool (size, size) or None)``.

    ``key`` seeds the image (pattern phase, optics jitter, noise); ``key + (1,)``
    seeds the defect. ``defect`` is a defect family name (see ``DEFECT_FAMILIES``).
    """
    rng = np.random.default_rng((*key, 0))
    tex = category_module(category).render_texture(spec.texture, size, rng, layout_seed)
    optics = jitter_optics(spec.optics, rng)
    noise = (optics.noise * rng.standard_normal((size, size, 3))).astype(np.float32)

    sigma = optics.blur * size / 256.0
    img = gaussian_blur(tex, sigma)
    mask = None
    if defect is not None:
        new, mask = draw_defect(defect, tex, np.random.default_rng((*key, 1)))
        img = np.where(mask[:, :, None], gaussian_blur(new, sigma), img)

    out = img * illumination(optics, size) + noise
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8), mask
