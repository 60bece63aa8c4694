"""SimpleNet's truncated L1 loss for the experts, and its Gaussian-noise anomaly synthesis."""

import torch

#: Width (channels) of SimpleNet's WideResNet50 feature embedding that the paper's sigma was tuned on.
SIMPLENET_EMBED_DIM = 1536


def truncated_l1_loss(normal_scores: torch.Tensor, anomalous_scores: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """SimpleNet's loss: push normal scores above ``margin`` and synthetic-anomaly scores below ``-margin``."""
    normal = torch.clamp(margin - normal_scores, min=0).mean()
    anomalous = torch.clamp(margin + anomalous_scores, min=0).mean()
    return normal + anomalous


def noise_scale(features: torch.Tensor, noise_std: float) -> torch.Tensor:
    """Standard deviation of the synthetic-anomaly noise for these features.

    The paper's sigma (0.015) is absolute and tuned to SimpleNet's WideResNet50
    embedding; it means nothing on another backbone's feature scale. We express
    it relative to the features: ``noise_std`` is the noise standard deviation per
    channel when the patch features have unit L2 norm and 1536 channels, i.e.
    sigma = noise_std * sqrt(1536) * RMS(features), with the RMS measured on
    the batch. On unit-norm 1536-d features (``normalize=True`` with WideResNet50)
    this is exactly the paper's absolute sigma.
    """
    rms = torch.linalg.vector_norm(features.detach()) / features.numel() ** 0.5
    return noise_std * (SIMPLENET_EMBED_DIM**0.5) * rms
