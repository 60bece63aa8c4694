"""Lightning DDP on CPU (gloo): every rank trains on all training images and ends with the same model.

``tests/helpers/ddp_train.py`` runs in a subprocess (the ``ddp`` strategy re-launches the
running script for rank 1). The reference is the same script on one process:
``strategy="ddp", devices=1`` shuffles the training images with the same
``DistributedSampler`` order that the 2-rank run reassembles, so the two runs
must train on the same images in the same order and agree exactly. (Lightning's
default single-device sampler shuffles in another order: that run is another
draw of the same training, like another seed.) The reassembly of the ranks' caches
is also unit-tested without processes, against a simulated second rank.
"""

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, TINY_IMAGE_SIZE
from torch.utils.data import DistributedSampler

from anomalib_adapted_moe.models.adapted_moe.distributed import gather_feature_cache
from anomalib_adapted_moe.models.adapted_moe.feature_cache import FeatureCache

SCRIPT = REPO / "tests" / "helpers" / "ddp_train.py"


def train(out: Path, data: Path, devices: int) -> str:
    """Every rank's printed output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), str(out), str(data), "--devices", str(devices), "--strategy", "ddp"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_two_ddp_ranks_train_identical_models_on_all_images_like_one_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    train(tmp_path / "out", data, devices=1)  # also generates the data, so the 2 ranks do not race to
    printed = train(tmp_path / "out", data, devices=2)
    # the package's lines once, from the first process (each process printed them all)
    assert printed.count("Training 2 expert(s)") == 1 and printed.count("Expert score calibration fitted") == 1
    single = torch.load(tmp_path / "out" / "ddp_1_rank0.pt")
    ranks = [torch.load(tmp_path / "out" / f"ddp_2_rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1

    # every rank trained on all 9 training images, the sampler's padding repeat dropped, in single-process order
    assert single["train_images"] == 9
    for rank in ranks:
        assert torch.equal(rank["trained_on"]["checksums"], single["trained_on"]["checksums"])
        assert torch.equal(rank["trained_on"]["labels"], single["trained_on"]["labels"])  # same k-means clusters
        assert rank["trained_on"]["paths"] == single["trained_on"]["paths"]  # each feature's file, to name odd ones
    assert len(single["trained_on"]["paths"]) == 9 and all(
        Path(path).is_file() for path in single["trained_on"]["paths"]
    )

    # identical router centres, TTA statistics, calibration (from all validation images on every rank), weights
    # and expert names on both ranks, and as on one process
    for key in ("centers", "expert_mean", "expert_std", "calibration", "adaptor", "experts"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.allclose(ranks[0][key], single[key], atol=1e-5), key
    assert ranks[0]["expert_names"] == ranks[1]["expert_names"] == single["expert_names"] == ["cluster_0", "cluster_1"]
    sizes = {"height": [TINY_IMAGE_SIZE] * 2, "width": [TINY_IMAGE_SIZE] * 2}
    assert ranks[0]["training_images"] == ranks[1]["training_images"] == (sizes, "colour")  # each rank may export
    assert not torch.equal(ranks[0]["expert_std"], torch.ones_like(ranks[0]["expert_std"]))  # statistics were fitted

    # thresholds, normalisation and the normal images' quartile fitted on every rank's validation images (the
    # normal-images rule read each rank's own share: 3.19 on two ranks, 2.96 on one, in a walkthrough)
    # (anomalib's own pixel F1-adaptive threshold differs under DDP, -0.70 vs -0.81 here: kept, not used, as the
    # pixel threshold follows the normal images' rule)
    assert ranks[0]["thresholds"] == ranks[1]["thresholds"]
    for name, value in single["thresholds"].items():
        if name != "f1_pixel_threshold":
            assert ranks[0]["thresholds"][name] == pytest.approx(value, abs=1e-5, nan_ok=True), name
    assert math.isfinite(single["thresholds"]["normal_image_threshold"])  # fitted

    for metric in ("image_AUROC", "pixel_AUROC"):
        assert ranks[0]["metrics"][metric] == ranks[1]["metrics"][metric]
        assert abs(ranks[0]["metrics"][metric] - single["metrics"][metric]) <= 0.005, metric

    # the threshold's decisions report every test image once on each rank (each rank tested half of them)
    assert ranks[0]["decisions"] == ranks[1]["decisions"]
    assert set(ranks[0]["decisions"]) == set(single["decisions"])
    assert sum(group["images"] for group in ranks[0]["decisions"].values()) == 20


class TwoRanks:
    """Rank 0's view of a 2-rank ``all_gather``: rank 1's tensors are replayed in the order rank 0 asks."""

    root_device = torch.device("cpu")

    def __init__(self, other: list[torch.Tensor]) -> None:
        self.other = list(other)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([tensor, self.other.pop(0)])


def rank_cache(indices: list[int], named: bool = True) -> FeatureCache:
    """A cache holding image ``i`` as a feature map filled with ``i``, label ``i`` and (``named``) file ``i.png``."""
    cache = FeatureCache()
    cache.append(
        torch.tensor(indices, dtype=torch.float)[:, None, None, None].expand(-1, 1, 2, 2),
        torch.tensor(indices),
        [f"{i}.png" for i in indices] if named else None,
    )
    return cache


@pytest.mark.parametrize("rank1_named", [True, False])
def test_gathering_reassembles_the_sampler_order_and_drops_its_padding(
    monkeypatch: pytest.MonkeyPatch, rank1_named: bool
) -> None:
    """5 images on 2 ranks: rank 0 holds [0, 2, 4], rank 1 [1, 3, 0] (0 repeated as padding), gathered 2 at a time.

    The image files come along in the same order (to name odd training images), unless a rank knows none.
    """
    sampler = DistributedSampler(list(range(5)), num_replicas=2, rank=0, shuffle=False)
    assert list(sampler) == [0, 2, 4]
    other = [torch.tensor(3)]  # rank 1's count, then per chunk its features and labels
    for chunk in ([1, 3], [0]):
        other += [
            torch.tensor(chunk, dtype=torch.float16)[:, None, None, None].expand(-1, 1, 2, 2),
            torch.tensor(chunk),
        ]

    def all_gather_object(output: list, rank0_paths: list[str] | None) -> None:
        output[:] = [rank0_paths, rank_cache([1, 3, 0], named=rank1_named).paths()]

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    trainer = SimpleNamespace(train_dataloader=SimpleNamespace(sampler=sampler), strategy=TwoRanks(other))
    gathered = gather_feature_cache(rank_cache([0, 2, 4]), trainer, chunk=2)
    features, labels = gathered.tensors()
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert features[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert gathered.paths() == ([f"{i}.png" for i in range(5)] if rank1_named else None)


def test_gathering_refuses_a_rank_that_skipped_part_of_its_share() -> None:
    sampler = DistributedSampler(list(range(6)), num_replicas=2, rank=0, shuffle=False)
    trainer = SimpleNamespace(train_dataloader=SimpleNamespace(sampler=sampler), strategy=TwoRanks([torch.tensor(2)]))
    with pytest.raises(
        ValueError, match=r"whole DistributedSampler share of 3 .* cached \[3, 2\]\. .*limit_train_batches"
    ):
        gather_feature_cache(rank_cache([0, 2, 4]), trainer)


def test_limit_train_batches_under_ddp_is_refused_before_the_feature_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was refused after the feature pass, when the ranks' caches did not add up (two tracebacks, 676 lines); now
    on_train_start refuses it, on every rank."""
    from conftest import tiny_adapted_moe

    from anomalib_adapted_moe.models.adapted_moe import lightning_model

    model = tiny_adapted_moe(epochs=1)
    model._trainer = SimpleNamespace(limit_train_batches=1.0, world_size=2)
    monkeypatch.setattr(lightning_model, "is_distributed", lambda trainer: trainer.world_size > 1)
    model.refuse_limited_training_under_ddp()  # the whole share: nothing to say
    model._trainer.limit_train_batches = 1
    with pytest.raises(ValueError, match=r"^--trainer.limit_train_batches 1 under DDP: every process must pass"):
        model.refuse_limited_training_under_ddp()
