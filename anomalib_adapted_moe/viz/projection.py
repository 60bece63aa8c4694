"""2-D views of high-dimensional points: PCA fitted on the points that define the space, applied to others."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA


def pca_2d(fit_on: np.ndarray, *arrays: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Project ``arrays`` on the first two principal components of ``fit_on`` (zero-padded below two)."""
    components = min(2, fit_on.shape[0], fit_on.shape[1])
    pca = PCA(n_components=components).fit(fit_on)
    projected = []
    for array in arrays:
        xy = pca.transform(array) if len(array) else np.zeros((0, components))
        if components < 2:
            xy = np.concatenate([xy, np.zeros((len(xy), 2 - components))], axis=1)
        projected.append(xy)
    ratio = np.zeros(2)
    ratio[:components] = pca.explained_variance_ratio_
    return projected, ratio
