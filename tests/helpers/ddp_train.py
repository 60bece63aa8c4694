"""Train the tiny AdaptedMoE through anomalib's Engine under Lightning's DDP strategy and save what each rank learnt.

Run by ``tests/models/adapted_moe/test_ddp.py`` as a script, because the ``ddp`` strategy re-launches
the running script once per extra rank (pytest cannot be that script)::

    python tests/helpers/ddp_train.py OUT_DIR DATA_ROOT --devices 2

Every rank writes ``OUT_DIR/<strategy>_<devices>_rank<r>.pt``: router centres,
TTA statistics, expert names, what the experts were trained on (one feature
checksum, one expert label and the image file per training image, in training
order) and the test metrics. The experts are discovered by k-means
(``num_experts=2`` on 3 labelled subclasses), so the clusters must agree across ranks too.
"""

import argparse
import logging
import sys
from pathlib import Path

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_adapted_moe.models.adapted_moe import lightning_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule

TRAINED_ON: dict[str, torch.Tensor] = {}


def recording_train_from_cache(model, features, labels, *args, **kwargs):
    """Note what the experts are trained on: one checksum per training image, and its expert."""
    TRAINED_ON["checksums"] = features.float().sum(dim=(1, 2, 3))
    TRAINED_ON["labels"] = labels.clone()
    return TRAIN_FROM_CACHE(model, features, labels, *args, **kwargs)


TRAIN_FROM_CACHE = lightning_model.train_from_cache
lightning_model.train_from_cache = recording_train_from_cache


def recording_expert_labels(module, features, labels, image_paths=None):
    """Note each training feature's image file, as the model has it to name odd training images."""
    TRAINED_ON["paths"] = image_paths
    return EXPERT_LABELS(module, features, labels, image_paths)


EXPERT_LABELS = lightning_model.AdaptedMoE._expert_labels
lightning_model.AdaptedMoE._expert_labels = recording_expert_labels

# 3 seen subclasses of 4 images, one of each held out for validation: 9 training images, an odd number, so the
# DistributedSampler of 2 ranks pads with a repeat; 20 test images, an even number, so testing repeats none.
DATA = {"num_train": 4, "num_test_good": 2, "num_test_defect": 3, "num_subclasses": 4, "num_unseen": 1}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seed_everything(args.seed)
    datamodule = tiny_synthetic_datamodule(args.data_root, train_batch_size=2, **DATA)
    model = tiny_adapted_moe(seed=None, num_experts=2, epochs=5, batch_size=2, visualizer=False)
    engine = Engine(
        accelerator="cpu",
        devices=args.devices,
        strategy=args.strategy,
        default_root_dir=args.out / f"results_{args.strategy}_{args.devices}",
        logger=False,
        enable_progress_bar=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    results = engine.test(model=model, datamodule=datamodule, verbose=False)
    rank = engine.trainer.global_rank
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "world_size": engine.trainer.world_size,
            "train_images": len(datamodule.train_data),
            "centers": model.model.router.centers.cpu(),
            "expert_mean": model.model.adaptation.expert_mean.cpu(),
            "expert_std": model.model.adaptation.expert_std.cpu(),
            "calibration": torch.stack([model.model.calibration.location, model.model.calibration.scale]).cpu(),
            "adaptor": model.model.adaptor.linear.weight.detach().cpu(),
            "experts": model.model.experts.weight1.detach().cpu(),
            "expert_names": list(model.expert_names),
            "training_images": (model.training_image_sizes, model.training_colour),  # read by rank 0, broadcast
            "trained_on": TRAINED_ON,
            "metrics": {key: float(value) for key, value in results[0].items()},
            "decisions": {name: vars(counts) for name, counts in model.flag_report.groups.items()},
            "thresholds": {name: float(value) for name, value in model.post_processor.state_dict().items()},
        },
        args.out / f"{args.strategy}_{args.devices}_rank{rank}.pt",
    )


if __name__ == "__main__":
    main()
