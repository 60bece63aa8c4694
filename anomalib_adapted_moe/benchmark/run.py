"""One benchmark run: train one model on one category, test it on every subclass, write one JSON file.

The driver starts each run in a fresh process (``python -m anomalib_adapted_moe.benchmark.run SPEC OUT``),
so peak memory is the run's own and a crash loses one run, not the benchmark.
For our model, every value of the inference-only switches (``tta``, ``top_k``) is
tested on the same trained weights: they do not change training.
"""

import copy
import importlib
import inspect
import json
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from anomalib_adapted_moe.data.seen_subclasses import seen_subclasses

from .jsonfiles import write_json
from .provenance import commit
from .zoo import BATCH_SIZE_ONE, BUDGETED, MODELS, RECOMMENDED_EPOCHS, Settings

#: where a bare class name (``class_path: TextureAD``, as the `anomalib` command accepts) is looked up, in order
BARE_NAME_MODULES = ("anomalib_adapted_moe", "anomalib.data")


def resolve_class_path(class_path: str) -> type:
    """The class of a dotted ``class_path``, or of a bare name from this package or anomalib's datamodules."""
    module_name, _, class_name = class_path.rpartition(".")
    for candidate in [module_name] if module_name else BARE_NAME_MODULES:
        module = importlib.import_module(candidate)
        if hasattr(module, class_name):
            return getattr(module, class_name)
    msg = (
        f"class_path {class_path!r}: no such class in {module_name or ' or '.join(BARE_NAME_MODULES)}. Fix: give "
        "the full path (e.g. anomalib_adapted_moe.TextureAD or anomalib.data.MVTecAD)."
    )
    raise ValueError(msg)


#: the categories a run takes when --categories is not given and the datamodule has them (the synthetic set's)
DEFAULT_CATEGORIES = ("cloth", "wafer", "metal")


def has_categories(data: dict) -> bool:
    """Whether the datamodule takes a ``category`` (TextureAD, MVTecAD); Folder reads one dataset per config."""
    return "category" in inspect.signature(resolve_class_path(data["class_path"])).parameters


def run_categories(data: dict, requested: list[str] | None) -> list[str]:
    """What each run is called: the requested categories, or for a datamodule without categories (Folder) its
    one dataset, named by its ``name`` (or one label given with --categories); without --categories, the Texture AD
    sets run cloth, wafer and metal and another datamodule with categories (MVTecAD) its config's ``category``.

    Raises:
        SystemExit: several categories for a datamodule that reads one dataset per config.
    """
    if has_categories(data):
        configured = data.get("init_args", {}).get("category")
        texture_sets = ("SyntheticTextureAD", "TextureAD")  # the three Texture AD categories, as the README says
        if requested or not configured or resolve_class_path(data["class_path"]).__name__ in texture_sets:
            return list(requested or DEFAULT_CATEGORIES)
        return [configured]  # another datamodule (MVTecAD): its config's category, not Texture AD's names
    if requested and len(requested) > 1:
        msg = (
            f"--categories {' '.join(requested)}: {data['class_path']} has no categories (one dataset per config). "
            "Fix: run once per dataset, each with its own --data config (and --output), or give one label."
        )
        raise SystemExit(msg)
    return list(requested or [str(data.get("init_args", {}).get("name") or data["class_path"].rpartition(".")[2])])


def category_problem(data: dict, categories: list[str]) -> str | None:
    """Why a category cannot run, found before any run starts, where the datamodule's categories are known without
    building it: the synthetic set's fixed list, TextureAD's folders (checked as its ``prepare_data`` does). Other
    datamodules (a user's own) are not checked here: their runs report a bad category; an MVTecAD category that is
    neither a folder under its root nor one of MVTecAD's own is named (anomalib would download MVTecAD); a Folder's
    missing folders and unpaired masks are named as training would name them (a wrong root failed each run after it
    started, and wrote an empty report)."""
    from anomalib.data import Folder, MVTecAD
    from anomalib.utils.path import resolve_dataset_root

    from anomalib_adapted_moe.data import SyntheticTextureAD, TextureAD
    from anomalib_adapted_moe.data.folder_layout import FolderLayoutError, check_folder_layout
    from anomalib_adapted_moe.data.mvtec_layout import unknown_mvtec_category
    from anomalib_adapted_moe.data.synthetic import SYNTHETIC_CATEGORIES
    from anomalib_adapted_moe.data.texture_ad.datamodule import DEFAULT_ROOT
    from anomalib_adapted_moe.data.texture_ad.errors import TextureADNotFoundError
    from anomalib_adapted_moe.data.texture_ad.locate import find_category_dir

    datamodule_class = resolve_class_path(data["class_path"])
    if issubclass(datamodule_class, Folder):
        try:
            check_folder_layout(build_datamodule(data, None, seed=0, batch_size_one=False))
        except (FolderLayoutError, ValueError) as error:  # ValueError: an argument Folder does not take
            return f"--data {data['class_path']}: {error}"
    for category in categories:
        if issubclass(datamodule_class, SyntheticTextureAD) and category not in SYNTHETIC_CATEGORIES:
            return (
                f"--categories {category}: SyntheticTextureAD has no category {category!r}; it has "
                f"{list(SYNTHETIC_CATEGORIES)}. Fix: choose among them, or give --data for other data."
            )
        if datamodule_class is MVTecAD:
            root = data.get("init_args", {}).get("root", inspect.signature(MVTecAD).parameters["root"].default)
            if problem := unknown_mvtec_category(root, category, "--categories", "the data config's root"):
                return problem
        if datamodule_class is TextureAD:
            root = resolve_dataset_root(data.get("init_args", {}).get("root", DEFAULT_ROOT), "TextureAD")
            try:
                find_category_dir(root, category)
            except TextureADNotFoundError as error:
                return f"TextureAD category {category!r} (--categories, --data): {error}"
    return None


def build_datamodule(data: dict, category: str | None, seed: int, batch_size_one: bool):
    """The datamodule named by an anomalib-style ``{class_path, init_args}`` config, for one category.

    Built by jsonargparse as the ``anomalib`` command builds ``--data``, so a config that trains there runs here:
    nested ``class_path`` values (``train_augmentations``) become objects and unknown arguments are refused.
    """
    from jsonargparse import ArgumentError, ArgumentParser

    datamodule_class = resolve_class_path(data["class_path"])
    init_args = copy.deepcopy(data.get("init_args", {}))  # jsonargparse turns nested dicts into Namespaces in place
    if category is not None and has_categories(data):  # else the category is the run's label (Folder)
        init_args["category"] = category
    if "seed" in inspect.signature(datamodule_class).parameters:
        init_args.setdefault("seed", seed)
    if batch_size_one:
        init_args["train_batch_size"] = 1
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(datamodule_class, "data", instantiate=False)  # the datamodule's own errors stay its
    try:
        config = parser.instantiate_classes(parser.parse_object({"data": init_args}))
    except ArgumentError as error:
        msg = f"data config ({data['class_path']}): {error}. Fix its init_args (as for `anomalib train --data`)."
        raise ValueError(msg) from error
    return datamodule_class(**vars(config.data))


#: routing temperatures tested with the paper's top-4 (at the default 0.1 routing is nearly one-hot)
TEMPERATURES = (0.3, 1.0)
#: image scores tested as the mean of the k highest patch scores (of 32 x 32 patches at image size 256)
IMAGE_TOP_K = (8, 32)
#: image scores tested over n x n means of the patch scores (1: the patch scores themselves)
IMAGE_SCORE_WINDOWS = (1, 3)
#: anomaly-map smoothing tested (pixels at image size 256; patches are 8 pixels apart; SimpleNet's is 4)
BLUR_SIGMAS = (2.0, 4.0, 8.0)


def _variants(model) -> dict[str, dict]:
    """Inference-only settings to test on the same weights: ``default`` (as built), both TTA states, the gate and
    the blend, top-k 1..experts, an unseen image's patches at the lowest of its 3 most probable experts (every
    patch, or those with a near twin) or not, softer routing temperatures at the paper's top-4, top-k means as the
    image score, the image score centred on the image's mean patch score or not, over windows of patch scores or
    not, and the anomaly map's smoothing and patch placement."""
    inner = model.model
    if not hasattr(inner, "tta"):
        return {"default": {}}
    # "tta=on" is the paper's eq. 5 on every image (Table 2's "+TTA"), whatever the gate and blend are set to
    variants = {
        "default": {},
        "tta=on": {"tta": True, "tta_gate": False, "tta_blend": False},
        "tta=off": {"tta": False},
    }
    if inner.num_experts > 1:
        variants["tta=gated"] = {"tta": True, "tta_gate": True, "tta_blend": False}
        variants["tta=gated,blend"] = {"tta": True, "tta_gate": True, "tta_blend": True}
        variants |= {f"top_k={k}": {"top_k": k} for k in range(1, inner.num_experts + 1)}
        variants |= {f"unseen_min_over_experts={n}": {"unseen_min_over_experts": n} for n in (0, 3)}
        variants["unseen_min_over_experts=3,unseen_min_near_twin"] = {
            "unseen_min_over_experts": 3,
            "unseen_min_near_twin": True,
        }
        k = min(4, inner.num_experts)
        variants |= {f"temperature={t},top_k={k}": {"temperature": t, "top_k": k} for t in TEMPERATURES}
    variants |= {f"image_top_k={k}": {"image_top_k": k} for k in IMAGE_TOP_K}
    variants |= {f"center_image_score={on}": {"center_image_score": on} for on in (True, False)}
    variants |= {f"image_score_window={n}": {"image_score_window": n} for n in IMAGE_SCORE_WINDOWS}
    variants |= {f"spread_scaled_score={on}": {"spread_scaled_score": on} for on in (True, False)}
    variants |= {f"level_corrected_score={on}": {"level_corrected_score": on} for on in (True, False)}
    variants |= {f"expert_offset_score={on}": {"expert_offset_score": on} for on in (True, False)}
    variants |= {f"blur_sigma={sigma:g}": {"blur_sigma": sigma} for sigma in BLUR_SIGMAS}
    variants |= {f"map_at_feature_centre={on}": {"map_at_feature_centre": on} for on in (True, False)}
    variants |= {f"center_map={on}": {"center_map": on} for on in (True, False)}
    if "tta=gated" in variants:
        variants |= {
            f"tta=gated,image_top_k={k}": {"tta": True, "tta_gate": True, "tta_blend": False, "image_top_k": k}
            for k in IMAGE_TOP_K
        }
    return variants


def effective_switches(model) -> tuple:
    """The inference switches as they act (``AdaptedMoEModel.scoring_settings``); none for other models."""
    inner = model.model
    return tuple(inner.scoring_settings().items()) if hasattr(inner, "scoring_settings") else ()


def _routing(model, datamodule) -> dict[str, dict[str, float]]:
    """Share of each test subclass's images whose most probable expert is each expert: is the right one chosen
    for a seen subclass, and which seen expert takes an unseen one?"""
    from anomalib_adapted_moe.viz.routing import routing_embeddings

    routed = routing_embeddings(model, datamodule.test_dataloader())
    chosen = routed["probabilities"].argmax(axis=1)
    shares: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(routed["subclass_names"]):
        mine = chosen[[n == name for n in routed["subclass_names"]]]
        shares[name] = {expert: float((mine == e).mean()) for e, expert in enumerate(routed["expert_names"])}
    return shares


def _inference_ms(model, datamodule, repeats: int = 3) -> float:
    """Median ms per image of the full module forward (pre-processing, model, post-processing) on one test batch."""
    images = next(iter(datamodule.test_dataloader())).image
    model.eval()
    times = []
    with torch.no_grad():
        model(images)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(images)


def execute(spec: dict) -> dict:
    """Train, time and test the run ``spec`` describes; return every figure."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_adapted_moe.evaluation import per_subclass_table, predict_raw

    settings = Settings(**spec["settings"])
    name, category = spec["model"], spec["category"]
    load_before = os.getloadavg()
    seed_everything(spec["seed"], workers=True)
    datamodule = build_datamodule(spec["data"], category, spec["seed"], name in BATCH_SIZE_ONE)
    model, note = MODELS[name](settings, **spec.get("switches", {}))
    model.visualizer = None  # every tested setting predicts the whole test set: saving its pictures took minutes
    trainer_args: dict = {}
    if name in BUDGETED:
        trainer_args["max_epochs"] = RECOMMENDED_EPOCHS[name]
        if spec.get("budget_seconds"):
            trainer_args["max_time"] = {"seconds": spec["budget_seconds"]}
    engine = Engine(
        default_root_dir=Path(spec["work_dir"]),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        **trainer_args,
    )
    # Lightning's fit would prepare the data inside the timer: on a fresh cache the synthetic set's generation
    # (seconds) counted as the training time of the first model run on each category, AdaptedMoE's.
    datamodule.prepare_data()
    start, cpu_start = time.perf_counter(), time.process_time()
    engine.fit(model=model, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    # CPU seconds of this process's threads (data-loading workers excepted): a cost that a shared machine inflates
    # far less than the wall time
    train_cpu_seconds = time.process_time() - cpu_start
    if hasattr(model, "schedule"):  # ours: one Lightning epoch of feature extraction, then `epochs` cached passes
        epochs = float(model.schedule.epochs)
    else:
        batches = max(1, engine.trainer.num_training_batches)
        epochs = round(engine.trainer.global_step / batches, 2) if engine.trainer.global_step else 1.0

    seen = seen_subclasses(datamodule) or [category or "all"]
    results, tested = {}, {}
    wanted = spec.get("variants")  # None: every setting
    for variant, switches in _variants(model).items():
        if wanted is not None and variant not in wanted:
            continue
        saved = {key: getattr(model.model, key) for key in switches}
        for key, value in switches.items():
            setattr(model.model, key, value)
        effective = effective_switches(model)
        if effective not in tested:  # e.g. "default" and "tta=on" are one setting: test it once
            predictions = predict_raw(engine, model, datamodule.test_dataloader())
            tested[effective] = per_subclass_table(predictions, seen=seen, default_subclass=category or "all")
            print(f"tested {variant}", flush=True)
        results[variant] = tested[effective]
        for key, value in saved.items():
            setattr(model.model, key, value)
    return {
        "status": "ok",
        "commit": commit(),
        "note": note,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "epochs": epochs,
        "inference_ms_per_image": _inference_ms(model, datamodule),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": [load_before[0], os.getloadavg()[0]],
        "variants": results,
        "routing": _routing(model, datamodule) if getattr(model.model, "num_experts", 1) > 1 else {},
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m anomalib_adapted_moe.benchmark.run SPEC.json OUT.json``: a failure is written to OUT too."""
    spec_path, out_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = execute(spec)
    except Exception as error:
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    write_json(Path(out_path), {"spec": spec, **result})
    sys.exit(0 if result["status"] == "ok" else 1)


if __name__ == "__main__":
    main()
