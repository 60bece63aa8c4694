"""Benchmark command: AdaptedMoE against anomalib's built-in models, and the paper's ablations.

    python -m anomalib_adapted_moe.benchmark compare            # 7 models x 3 synthetic categories
    python -m anomalib_adapted_moe.benchmark ablate all         # Table 2, Table 3, Fig. 6 (or one of them)
    python -m anomalib_adapted_moe.benchmark render             # re-write the report from the stored runs
    python -m anomalib_adapted_moe.benchmark precision          # OpenVINO f32/bf16/f16/FP16/INT8 matrix
    python -m anomalib_adapted_moe.benchmark speed              # latency, training time, memory
    python -m anomalib_adapted_moe.benchmark thresholds         # one threshold across subclasses: pooled AUROC, F1

Runs are stored under ``--output``; calling a command again resumes: finished runs
are kept, the rest are run. Other data: ``--data configs/data/texture_ad.yaml``
(an anomalib-style ``class_path``/``init_args`` file; MVTecAD or Folder work too,
each category then being one "seen" subclass; a Folder config is one run, named by its ``name``).
"""

import argparse
import difflib
import json
import os
import platform
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from anomalib_adapted_moe.command_line import unwritable_reason
from anomalib_adapted_moe.recipes import CPU_RECIPE

from .jsonfiles import write_json
from .provenance import commit

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SYNTHETIC = {
    "class_path": "anomalib_adapted_moe.SyntheticTextureAD",
    "init_args": {"train_batch_size": 8, "eval_batch_size": 16, "num_workers": 2},
}


def machine() -> str:
    """CPU model, cores, RAM and library versions: printed beside every table."""
    import anomalib
    import torch

    from anomalib_adapted_moe.deploy import cpu_description

    cpu = cpu_description()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores{memory}, no GPU used; Python {platform.python_version()}, "
        f"torch {torch.__version__}, anomalib {anomalib.__version__}"
    )


DATA_CONFIG = "a mapping with class_path and init_args, as configs/data/texture_ad.yaml"


def data_config_file(text: str) -> dict:
    """An argparse ``type`` for ``--data``: the file read and checked, so a bad one is named before anything runs."""
    import yaml

    path = Path(text)
    if not path.is_file():
        msg = f"{path}: no such file. Fix: give an anomalib-style data config, {DATA_CONFIG}."
        raise argparse.ArgumentTypeError(msg)
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)  # where the parser stopped
        problem = getattr(error, "problem", None) or error
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = f"{path} is not valid YAML ({problem}{where}). Fix: write it as {DATA_CONFIG}."
        raise argparse.ArgumentTypeError(msg) from None
    if isinstance(data, dict):
        data = data.get("data", data)  # a whole anomalib config: its data section
    if not (isinstance(data, dict) and "class_path" in data and isinstance(data.get("init_args", {}), dict)):
        msg = f"{path} holds no data config (it reads as {data!r:.80}). Fix: write it as {DATA_CONFIG}."
        raise argparse.ArgumentTypeError(msg)
    return data


def settings_problem(epochs: int | None, image_size: int | None, weights: str | None) -> str | None:
    """A bad ``--epochs``, ``--image-size`` or ``--weights``, named before anything runs: each run failed on it in
    turn, and the output folder's manifest then held the bad value, refusing the corrected command."""
    if epochs is not None and epochs < 1:
        recipe = CPU_RECIPE["epochs"]
        return f"--epochs {epochs}: at least 1 is needed. Fix: --epochs 1 or more (the CPU recipe's: {recipe})."
    if image_size is not None and image_size < 1:
        return f"--image-size {image_size}: the side of the images in pixels. Fix: a positive size (default 256)."
    if weights is not None and weights.lower() != "none":
        from anomalib_adapted_moe.backbone_weights import resolve_weights_path

        try:
            resolve_weights_path(weights)
        except (ImportError, FileNotFoundError) as error:
            return f"--weights {weights}: {error}"
    return None


def output_problem(*folders: Path) -> str | None:
    """A folder a command cannot write its results to (a file of that name, a read-only disk), named before it
    measures: ``speed`` lost minutes of measuring to a traceback at the end."""
    for folder in folders:
        if reason := unwritable_reason(folder):
            return f"{folder}: cannot write results there ({reason}). Fix: give a folder you can write to."
    return None


def _data_config(data: dict | None, init_args: dict | None) -> dict:
    """The config of ``--data`` (default: the synthetic set) with ``--data-init-args`` merged into its init_args."""
    data = json.loads(json.dumps(SYNTHETIC)) if data is None else data
    if init_args:
        data.setdefault("init_args", {}).update(init_args)
    return data


def json_object(text: str) -> dict:
    """An argparse ``type`` for the options that take JSON: a typo is named with the option, not a traceback."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f'not JSON ({error}): {text!r}. Fix: quote it for the shell, e.g. \'{{"root": "./datasets/x"}}\''
        raise argparse.ArgumentTypeError(msg) from None
    if not isinstance(value, dict):
        msg = f"a JSON object ({{...}}) is needed, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def adapted_moe_arguments(text: str) -> dict:
    """An argparse ``type`` for ``--model-args``: a JSON object of AdaptedMoE's own arguments, checked before any
    training starts."""
    import inspect

    from anomalib_adapted_moe import AdaptedMoE

    value = json_object(text)
    known = set(inspect.signature(AdaptedMoE.__init__).parameters) - {"self"}
    unknown = sorted(set(value) - known)
    if unknown:
        msg = (
            f"AdaptedMoE has no argument(s) {unknown}. Fix: use its own names (`anomalib train --model AdaptedMoE -h`)"
        )
        raise argparse.ArgumentTypeError(msg)
    return value


def model_names() -> list[str]:
    """The names ``compare --models`` takes: anomalib's models as the harness builds them, and our own settings."""
    from .zoo import MODELS, SETTINGS_OF_OURS

    return sorted([*MODELS, *SETTINGS_OF_OURS])


def close_names(unknown: list[str]) -> str:
    """``" (did you mean ...?)"`` for names close to known ones (``Padm``), else ``""``."""
    meant = [next(iter(difflib.get_close_matches(name, model_names(), 1)), None) for name in unknown]
    pairs = [f"{name!r} -> {guess!r}" for name, guess in zip(unknown, meant, strict=True) if guess]
    return f" (did you mean: {', '.join(pairs)}?)" if pairs else ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", type=Path, default=Path("results/benchmark"), help="runs and results go here")
    common.add_argument("--report-dir", type=Path, default=None, help="benchmarks.md and plots (default: --output)")
    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument(
        "--categories", nargs="+", default=None, help="default: cloth wafer metal; Folder: its one dataset"
    )
    runs.add_argument("--seed", type=int, default=0)
    runs.add_argument(
        "--epochs", type=int, default=CPU_RECIPE["epochs"], help="AdaptedMoE's passes over the cached features"
    )
    runs.add_argument("--image-size", type=int, default=256)
    runs.add_argument(
        "--weights",
        default=CPU_RECIPE["backbone_weights"],
        help="backbone weights for every model that takes them; 'none' = random init (tests only)",
    )
    runs.add_argument(
        "--data", type=data_config_file, default=None, help="anomalib-style data config (default: synthetic)"
    )
    runs.add_argument(
        "--data-init-args", type=json_object, default=None, help="JSON merged into the data config's init_args"
    )
    runs.add_argument("--budget-seconds", type=float, default=300, help="trained baselines' budget without ours")
    runs.add_argument("--imagenette", default=None, help="imagenette folder, for EfficientAd")
    runs.add_argument(
        "--read-settings-only",
        action="store_true",
        help="test on each training only the inference settings these studies read (by default every setting is "
        "tested, so that later studies reuse the training; with this flag they train again)",
    )
    compare = commands.add_parser("compare", parents=[common, runs], help="AdaptedMoE vs anomalib's models")
    compare.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="default: all seven: " + ", ".join(repr(name) for name in model_names()) + " (quote a name with a space)",
    )
    ablate = commands.add_parser("ablate", parents=[common, runs], help="the paper's ablations")
    ablate.add_argument("study", choices=["table2", "table3", "topk", "inference", "all"])
    commands.add_parser("render", parents=[common], help="re-write results and report from stored runs")
    commands.add_parser("precision", help="OpenVINO precision matrix (its own options: precision --help)")
    commands.add_parser("speed", help="latency, training time and memory (its own options: speed --help)")
    commands.add_parser("thresholds", help="one threshold across subclasses (its own options: thresholds --help)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse, run what is missing, render."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["precision"]:  # its own options: python -m anomalib_adapted_moe.benchmark precision --help
        from .precision import main as precision_main

        precision_main(argv[1:])
        return
    if argv[:1] == ["thresholds"]:  # its own options: python -m anomalib_adapted_moe.benchmark thresholds --help
        from .thresholds import main as thresholds_main

        thresholds_main(argv[1:])
        return
    if argv[:1] == ["speed"]:  # its own options: python -m anomalib_adapted_moe.benchmark speed --help
        from .speed import main as speed_main

        speed_main(argv[1:])
        return
    parser = _parser()
    args = parser.parse_args(argv)
    from .report import render

    report_dir = args.report_dir or args.output
    if args.command == "render":
        if not (args.output / "manifest.json").is_file():
            parser.error(f"{args.output} holds no benchmark runs (no manifest.json). Fix: give the --output of a run.")
        if problem := output_problem(args.output, report_dir):
            parser.error(problem)
        render(args.output, report_dir)
        print(f"wrote {args.output / 'results.json'}, {args.output / 'results.csv'}, {report_dir / 'benchmarks.md'}")
        return

    from .driver import execute
    from .run import category_problem, run_categories
    from .studies import rows
    from .zoo import Settings

    if getattr(args, "models", None):  # any case: anomalib's docs write SuperSimpleNet, its class Supersimplenet
        spelled = {name.lower(): name for name in model_names()}
        args.models = [spelled.get(name.lower(), name) for name in args.models]
    unknown = [name for name in getattr(args, "models", None) or [] if name not in model_names()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}{close_names(unknown)}; known: {model_names()}")
    if getattr(args, "models", None):
        args.models = _union([], args.models)  # a name given twice is one run, not two rows of it
    problem = settings_problem(args.epochs, args.image_size, args.weights)
    if problem:
        parser.error(problem)
    if not args.budget_seconds > 0:  # nan too
        parser.error(f"--budget-seconds {args.budget_seconds}: the trained baselines' seconds. Fix: a positive number.")

    weights = None if args.weights.lower() == "none" else args.weights
    settings = Settings(image_size=args.image_size, weights=weights, epochs=args.epochs, imagenette=args.imagenette)
    data = _data_config(args.data, args.data_init_args)
    args.categories = _union([], run_categories(data, args.categories))
    problem = category_problem(data, args.categories) or output_problem(args.output, report_dir)
    if problem:
        parser.error(problem)
    if args.command == "compare":
        studies = ["compare"]
    else:
        studies = ["table2", "table3", "topk", "inference"] if args.study == "all" else [args.study]
    planned = [row for study in studies for row in rows(study, args.categories, getattr(args, "models", None))]
    _updated_manifest(args, settings, data, studies, argv, planned)
    try:
        failed = execute(
            planned,
            args.output,
            settings,
            data,
            args.seed,
            budget_seconds=args.budget_seconds,
            all_settings=not args.read_settings_only,
        )
    except KeyboardInterrupt:  # the run's process is killed with it; one line, not the wait's traceback
        print(
            "Stopped (Ctrl-C). Calling the same command again runs the stopped run from its start and keeps the "
            "finished ones.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    render(args.output, report_dir)
    print(f"report: {report_dir / 'benchmarks.md'}; figures: {args.output / 'results.json'}, results.csv")
    if failed:  # the report shows what finished; a script or CI must not read the run as a success
        msg = (
            f"{len(failed)} run(s) failed: {', '.join(failed)}; their logs are in {args.output / 'logs'}. Calling "
            "the same command again runs them again and keeps the finished ones."
        )
        raise SystemExit(msg)


def _updated_manifest(
    args: argparse.Namespace, settings, data: dict, studies: list[str], argv: list[str], planned: list | None = None
) -> dict:
    """The output folder's record of settings and studies; refuses to mix runs made with other settings, those of
    the folder and those of the ``planned`` runs' records (all the folder has when its manifest was deleted)."""
    from .driver import refuse_runs_made_otherwise
    from .report import load_manifest

    path = args.output / "manifest.json"
    # the budget too: kept baselines trained under another one would be reported under this one
    fixed = {
        "settings": asdict(settings),
        "seed": args.seed,
        "data": data,
        "budget_seconds": float(args.budget_seconds),
    }
    manifest = load_manifest(args.output) if path.is_file() else {**fixed, "studies": {}, "commands": {}}
    for key, value in fixed.items():
        if manifest.setdefault(key, value) != value:  # a manifest from before a key was recorded takes this run's
            msg = (
                f"{args.output} holds runs made with {key}={manifest[key]}, not {value}. Resuming would mix them: "
                "use another --output, or delete that folder to start over."
            )
            raise SystemExit(msg)
    refuse_runs_made_otherwise(planned or [], args.output, settings, data, args.seed)
    manifest["machine"] = machine()
    manifest["commit"] = commit()
    command = "python -m anomalib_adapted_moe.benchmark " + shlex.join(argv)
    for study in studies:  # each call's request: the report covers every run asked for into the folder
        requests = manifest["studies"].get(study, [])
        requests = [requests] if isinstance(requests, dict) else requests  # one request in older manifests
        request = {"categories": args.categories, "models": getattr(args, "models", None)}
        manifest["studies"][study] = requests if request in requests else [*requests, request]
        commands = manifest["commands"].get(study, [])
        manifest["commands"][study] = _union([commands] if isinstance(commands, str) else commands, [command])
    args.output.mkdir(parents=True, exist_ok=True)
    write_json(path, manifest)
    return manifest


def _union(earlier: list, now: list) -> list:
    """``earlier`` then what ``now`` adds, in order, each once."""
    return list(dict.fromkeys([*earlier, *now]))


if __name__ == "__main__":
    main()
