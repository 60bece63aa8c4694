"""Subclass discovery for data without subclass labels (MVTecAD, Folder, ...).

The paper's router needs subclass labels; when the datamodule gives none, the
training images are clustered and the cluster ids serve as labels.
"""

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

logger = logging.getLogger(__name__)

MAX_AUTO_EXPERTS = 8
MIN_SILHOUETTE = 0.1
#: a discovered expert with fewer training images is most likely odd images, not a variant (warned)
MIN_CLUSTER_IMAGES = 3
#: discovery tries k experts only for at least this many training images each: a walkthrough's 4 images were split
#: into experts of 2, and the warning blamed odd images where the whole set was too small
MIN_IMAGES_PER_EXPERT = 2 * MIN_CLUSTER_IMAGES


def image_descriptors(features: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """One L2-normalised descriptor per image: the spatial mean of its patch features ``(N, C, H, W)``.

    ``features`` may be any source split like a tensor (a memory-mapped cache, live
    features); it is read ``chunk`` images at a time.
    """
    means = [batch.float().mean(dim=(2, 3)).cpu() for batch in features.split(chunk)]
    return F.normalize(torch.cat(means), dim=1).numpy()


def discover_subclasses(
    descriptors: np.ndarray, num_experts: int | None, seed: int = 0, image_paths: list[str] | None = None
) -> np.ndarray:
    """Cluster image descriptors into subclasses; returns one label in ``[0, k)`` per image.

    Args:
        descriptors: ``(N, D)`` image descriptors.
        num_experts: number of clusters; ``None`` chooses k in ``2..8`` by silhouette
            score and falls back to a single expert when no k separates the images
            (silhouette below 0.1), or when there are too few images for two experts
            (:data:`MIN_IMAGES_PER_EXPERT` each).
        seed: k-means seed.
        image_paths: each descriptor's image file, when known: a warning about a tiny expert names its images.

    Raises:
        ValueError: more experts requested than there are distinct training images.
    """
    num_images = len(descriptors)
    distinct = len(np.unique(np.round(descriptors, 6), axis=0))
    if num_experts is not None:
        if num_experts < 1:
            msg = f"num_experts must be at least 1, got {num_experts}."
            raise ValueError(msg)
        if num_experts > distinct:
            msg = (
                f"num_experts={num_experts} experts were requested, but the training set has only {distinct} "
                f"distinct images ({num_images} in all), so some experts would get no data. "
                f"Lower num_experts to at most {distinct} or add training images."
            )
            raise ValueError(msg)
        if num_experts == 1:
            return np.zeros(num_images, dtype=np.int64)
        labels = KMeans(n_clusters=num_experts, n_init=10, random_state=seed).fit_predict(descriptors)
        return report_cluster_sizes(labels.astype(np.int64), image_paths)

    best_k, best_score, best_labels = 1, MIN_SILHOUETTE, np.zeros(num_images, dtype=np.int64)
    largest_k = min(MAX_AUTO_EXPERTS, distinct - 1, num_images // MIN_IMAGES_PER_EXPERT)
    if largest_k < 2:
        why = (
            f"{num_images} training images are too few to split into variants (two experts need "
            f"{2 * MIN_IMAGES_PER_EXPERT})"
            if num_images < 2 * MIN_IMAGES_PER_EXPERT
            else f"the {num_images} training images hold only {distinct} distinct ones"
        )
        logger.info("Subclass discovery kept one expert: %s.", why)
        return best_labels
    for k in range(2, largest_k + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(descriptors)
        score = silhouette_score(descriptors, labels)
        if score > best_score:
            best_k, best_score, best_labels = k, score, labels.astype(np.int64)
    logger.info("Subclass discovery chose %d expert(s) (silhouette %.3f).", best_k, best_score)
    return report_cluster_sizes(best_labels, image_paths)


def report_cluster_sizes(labels: np.ndarray, image_paths: list[str] | None = None) -> np.ndarray:
    """Log how many training images each discovered expert got; warn about an expert of one or two images, which
    is usually one odd image (a grey frame, another camera) rather than a variant of the product."""
    sizes = np.bincount(labels)
    parts = []
    for i, size in enumerate(sizes):  # one file of each, so a user can tell which variant an expert stands for
        first = np.flatnonzero(labels == i)[:1]
        example = f" (e.g. {Path(image_paths[first[0]]).name})" if image_paths is not None and len(first) else ""
        parts.append(f"cluster_{i}: {size}{example}")
    counts = ", ".join(parts)
    logger.info("Training images per discovered expert: %s.", counts)
    # num_experts asked of a small set: the set's size may be the cause rather than odd images
    small = len(labels) < MIN_IMAGES_PER_EXPERT * len(sizes)
    for i, size in enumerate(sizes):
        if size < MIN_CLUSTER_IMAGES:
            files = [] if image_paths is None else [image_paths[j] for j in np.flatnonzero(labels == i)]
            images, look = (": " + ", ".join(files), "look at them") if files else ("", "look for such images")
            also = (
                f" With {len(labels)} training images, {len(sizes)} experts may also be too many: give "
                f"{MIN_IMAGES_PER_EXPERT * len(sizes)} or more, or set num_experts to 1."
                if small
                else ""
            )
            logger.warning(
                "Discovered expert cluster_%d has %d training image(s) of %d%s. Most likely odd images (another "
                "camera, a blank or grey frame) rather than a variant; test images like them go to it. Fix: %s "
                "and move them out of the training folder if they are not the product, or set num_experts to the "
                "number of variants.%s",
                i,
                size,
                len(labels),
                images,
                look,
                also,
            )
    return labels
