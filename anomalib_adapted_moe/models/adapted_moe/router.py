"""Routing network (paper eq. 1-2): image embedding, centre loss + softmax, cosine routing."""

import torch
import torch.nn.functional as F
from torch import nn

ROUTING_LOSSES = ("center", "softmax")
ROUTING_RULES = ("cosine", "classifier")
#: the routing rule each loss implies when none is given (the paper's Table 3 changes both together)
DEFAULT_RULE = {"center": "cosine", "softmax": "classifier"}


class RoutingNetwork(nn.Module):
    """Embeds an image and gives the probability that each expert owns it.

    Embedding (eq. 1): 3x3 conv + ReLU + global average pooling over the adapted
    patch features, L2-normalised when ``normalize`` (paper "+Norm"). With ``pool`` > 1 the
    convolution runs on the features averaged over ``pool x pool`` patches: the embedding is a
    global average anyway, and the convolution and its gradient are the largest training op.
    Training (eq. 2): ``alpha * ||x - c_y||^2 + (1 - alpha) * CE(W x, y)``; the
    centres ``c`` follow Wen et al. (2016): they are buffers moved towards the mean
    of their class every step, not optimiser parameters.
    Routing (``routing_rule``): softmax over cosine similarity to the centres divided
    by ``temperature`` (``"cosine"``, the default with ``routing_loss="center"``), or
    softmax of the trained classifier ``W x`` (``"classifier"``, the default with
    ``routing_loss="softmax"``, paper Table 3). The two are separate switches: the
    centres follow their classes (Wen et al.'s update) under either loss, and the
    classifier trains under either (the softmax term is in both losses).

    Args:
        in_dim: channels of the adapted patch features.
        embed_dim: size of the routing embedding.
        num_experts: number of experts (= subclasses).
        normalize: L2-normalise the embedding.
        routing_loss: ``"center"`` or ``"softmax"``.
        routing_rule: ``"cosine"``, ``"classifier"`` or ``None`` (the one ``routing_loss`` implies).
        alpha: weight of the centre term, in [0, 1].
        center_lr: Wen et al.'s centre update rate, in (0, 1].
        temperature: softmax temperature on the cosine similarities.
        pool: side of the average pooling before the convolution (1: none, the paper's).
    """

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        num_experts: int,
        normalize: bool = True,
        routing_loss: str = "center",
        routing_rule: str | None = None,
        alpha: float = 0.5,
        center_lr: float = 0.5,
        temperature: float = 0.1,
        pool: int = 1,
    ) -> None:
        super().__init__()
        if routing_loss not in ROUTING_LOSSES:
            msg = f"routing_loss must be one of {ROUTING_LOSSES}, got {routing_loss!r}."
            raise ValueError(msg)
        if routing_rule not in (*ROUTING_RULES, None):
            msg = f"routing_rule must be one of {ROUTING_RULES} or None, got {routing_rule!r}."
            raise ValueError(msg)
        if not 0.0 <= alpha <= 1.0:
            msg = f"alpha weighs the centre loss against the softmax loss and must lie in [0, 1], got {alpha}."
            raise ValueError(msg)
        if temperature <= 0:
            msg = f"temperature must be positive, got {temperature}."
            raise ValueError(msg)
        if pool < 1:
            msg = f"routing_pool must be at least 1, got {pool}."
            raise ValueError(msg)
        if not 0.0 < center_lr <= 1.0:
            msg = f"center_lr, the centres' update rate (Wen et al.), must lie in (0, 1], got {center_lr}."
            raise ValueError(msg)
        if embed_dim < 1:
            msg = f"routing_dim must be at least 1, got {embed_dim}."
            raise ValueError(msg)
        self.pool = pool
        self.normalize = normalize
        self.routing_loss = routing_loss
        self.routing_rule = routing_rule or DEFAULT_RULE[routing_loss]
        self.alpha = alpha
        self.center_lr = center_lr
        self.temperature = temperature
        self.projection = nn.Conv2d(in_dim, embed_dim, kernel_size=3, padding=1)
        self.classifier = nn.Linear(embed_dim, num_experts, bias=False)
        self.register_buffer("centers", torch.zeros(num_experts, embed_dim))

    @property
    def num_experts(self) -> int:
        """Number of experts the router chooses between."""
        return self.centers.shape[0]

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Image embedding ``x`` (eq. 1) of ``(B, C, H, W)`` features, shape ``(B, D)``."""
        if self.pool > 1:  # ceil_mode: a feature map smaller than the pool still gives one cell
            features = F.avg_pool2d(features, self.pool, ceil_mode=True)
        embedding = F.relu(self.projection(features)).mean(dim=(2, 3))
        return F.normalize(embedding, dim=1) if self.normalize else embedding

    def probabilities(self, embedding: torch.Tensor) -> torch.Tensor:
        """Routing probabilities ``(B, E)``; each row sums to 1."""
        if self.routing_rule == "classifier":
            return self.classifier(embedding).softmax(dim=1)
        cosine = F.normalize(embedding, dim=1) @ F.normalize(self.centers, dim=1).T
        return (cosine / self.temperature).softmax(dim=1)

    def loss(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Routing loss (eq. 2), averaged over the batch."""
        softmax_loss = F.cross_entropy(self.classifier(embedding), labels)
        if self.routing_loss == "softmax":
            return softmax_loss
        center_loss = (embedding - self.centers[labels]).pow(2).sum(dim=1).mean()
        return self.alpha * center_loss + (1.0 - self.alpha) * softmax_loss

    @torch.no_grad()
    def update_centers(self, embedding: torch.Tensor, labels: torch.Tensor) -> None:
        """Move each centre towards its class: ``c_j -= lr * sum_i(c_j - x_i) / (1 + n_j)`` (Wen et al.)."""
        one_hot = F.one_hot(labels, self.num_experts).to(embedding.dtype)  # (B, E)
        counts = one_hot.sum(dim=0)  # (E,)
        sums = one_hot.T @ embedding  # (E, D)
        delta = (counts[:, None] * self.centers - sums) / (1.0 + counts[:, None])
        self.centers -= self.center_lr * delta
