"""Training under Lightning DDP: every rank fits the experts on ALL training images and ends with the same model.

The model trains in :meth:`AdaptedMoE.fit` from a feature cache filled by one
Lightning epoch. Under DDP each rank's epoch sees only its
``DistributedSampler`` share, padded with repeats so all shares are equal. So,
before training, every rank gathers the other ranks' caches and drops the
sampler's padding (rank ``r``'s ``k``-th image is position ``k * world + r`` of
the sampler's padded order, whose first ``len(dataset)`` positions are distinct
images): every rank then holds the single-process training set. Expert labels
come from rank 0 (k-means seeds may differ between ranks), every rank trains,
and rank 0's trained weights and statistics are broadcast, so the ranks are
bit-identical even where floating point is not deterministic.

The experts are trained with their own optimisers outside Lightning's loop, so
DDP's gradient hooks are switched off for this model.
"""

import logging

import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from .feature_cache import FeatureCache

logger = logging.getLogger(__name__)


def is_distributed(trainer: Trainer | None) -> bool:
    """Whether training runs in several processes (an initialised process group with more than one rank)."""
    return (
        trainer is not None
        and trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


def all_gather_objects(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (a collective: every rank calls it)."""
    gathered: list[object] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def disable_gradient_sync(wrapper: nn.Module) -> None:
    """Stop DDP from expecting a backward after each forward (what Lightning does for manual optimisation).

    :meth:`AdaptedMoE.fit` backpropagates through the adaptor, router and
    experts with its own optimisers; DDP's reducer would otherwise fire on those
    backward passes and fail ("marked ready twice").
    """
    if isinstance(wrapper, DistributedDataParallel):
        wrapper.require_backward_grad_sync = False


def gather_feature_cache(cache: FeatureCache, trainer: Trainer, chunk: int = 64) -> FeatureCache:
    """All ranks' cached features, labels and image files, in the sampler's order, without its padding repeats.

    Streams ``chunk`` images per rank at a time into a new cache with the same
    RAM budget (it spills to disk like the original).

    Raises:
        ValueError: the ranks cached a different number of images than their
            ``DistributedSampler`` share (``limit_train_batches``, ``drop_last``), so
            the padding cannot be told apart from real images.
    """
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        logger.info(
            "DDP without a DistributedSampler (%s): every rank trains on the images its own loader gave it.",
            type(sampler).__name__,
        )
        return cache
    strategy = trainer.strategy
    features, labels = cache.tensors()
    counts = strategy.all_gather(torch.tensor(len(features), device=strategy.root_device)).reshape(-1).tolist()
    if any(count != sampler.num_samples for count in counts):
        msg = (
            f"Under DDP every rank must cache its whole DistributedSampler share of {sampler.num_samples} training "
            f"images, but the ranks cached {counts}. Remove what skips training batches (limit_train_batches, a "
            "training dataloader with drop_last=True): AdaptedMoE's one Lightning epoch collects the training features."
        )
        raise ValueError(msg)
    world = len(counts)
    distinct = min(len(sampler.dataset), sampler.total_size)  # drop_last=True drops instead of padding
    rank_paths: list[list[str] | None] = [None] * world
    torch.distributed.all_gather_object(rank_paths, cache.paths())  # to name odd training images
    paths = None if None in rank_paths else [rank_paths[p % world][p // world] for p in range(distinct)]
    gathered = FeatureCache(budget_bytes=cache.budget_bytes, directory=cache.directory, dtype=cache.dtype)
    for start in range(0, sampler.num_samples, chunk):
        local = features[start : start + chunk].to(strategy.root_device)
        all_features = strategy.all_gather(local)  # (world, n, C, H, W)
        all_labels = strategy.all_gather(labels[start : start + chunk].to(strategy.root_device))
        # position in the sampler's padded order of rank r's k-th image: k * world + r
        interleaved = all_features.transpose(0, 1).reshape(-1, *all_features.shape[2:])
        first = start * world  # the chunk's first position in that order
        keep = max(0, min(len(interleaved), distinct - first))
        gathered.append(
            interleaved[:keep],
            all_labels.transpose(0, 1).reshape(-1)[:keep],
            None if paths is None else paths[first : first + keep],
        )
    logger.info(
        "DDP: gathered the feature caches of %d ranks: %d training images (%d sampler padding repeats dropped).",
        world,
        len(gathered),
        sum(counts) - len(gathered),
    )
    cache.clear()
    return gathered


def broadcast_from_rank_zero(module: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Overwrite every parameter and buffer of ``module`` (but the ``skip`` prefixes) with rank 0's, in place."""
    for name, tensor in module.state_dict(keep_vars=True).items():
        if not name.startswith(skip):
            torch.distributed.broadcast(tensor.data, src=0)
