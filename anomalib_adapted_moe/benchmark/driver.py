"""Runs the trainings a list of study rows needs, one process each, resuming where a previous call stopped.

Every finished run is a JSON file under ``<output>/runs/``; a run whose file says
``ok`` or ``not run`` is never redone (delete the file to redo it), a failed one is
retried. A kept run made at another commit is said so, and the report names the commit of every run. The
comparison's AdaptedMoE run of a category sets the wall-clock budget of the trained baselines of that category,
so it runs first.
"""

import json
import math
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from anomalib_adapted_moe.command_line import sigterm_exits

from .jsonfiles import read_json, write_json
from .provenance import commit
from .studies import Row
from .zoo import BUDGETED, Settings, unavailable_reason

FINISHED = ("ok", "not run")


def run_path(output: Path, key: str) -> Path:
    """Where the result of run ``key`` lives."""
    return output / "runs" / f"{key.replace(' ', '_')}.json"


def load_run(output: Path, key: str) -> dict | None:
    """The stored result of run ``key``, or ``None`` (not run yet: the driver runs it)."""
    path = run_path(output, key)
    fix = "delete it and run the benchmark command again: that run is redone, the finished ones are kept."
    return read_json(path, fix) if path.is_file() else None


def _budget(output: Path, category: str, default: float | None) -> float | None:
    """AdaptedMoE's training seconds on ``category``: the budget of the trained baselines."""
    ours = load_run(output, f"{category}__AdaptedMoE")
    if ours is not None and ours.get("status") == "ok":
        return float(ours["train_seconds"])
    return default


def _unique_runs(rows: list[Row]) -> list[Row]:
    """One row per run, AdaptedMoE's default training of each category first (it sets the budget)."""
    unique: dict[str, Row] = {}
    for row in rows:
        unique.setdefault(row.key, row)
    return sorted(unique.values(), key=lambda row: (row.category, row.key != f"{row.category}__AdaptedMoE"))


def _read_settings(rows: list[Row], key: str) -> list[str] | None:
    """The tested settings the rows of run ``key`` read; ``None`` when a row reads them all (``*``, ``top_k=*``)."""
    variants = {row.variant for row in rows if row.key == key}
    return None if any("*" in variant for variant in variants) else sorted(variants | {"default"})


def _finished(stored: dict | None, wanted: list[str] | None) -> bool:
    """Whether a stored run can be kept: finished, and it tested every setting wanted (``None``: all of them)."""
    if stored is None or stored.get("status") not in FINISHED:
        return False
    if stored["status"] != "ok":
        return True
    tested_only = stored["spec"].get("variants")  # None: the run tested every setting
    return tested_only is None or (wanted is not None and set(wanted) <= set(tested_only))


def refuse_runs_made_otherwise(rows: list[Row], output: Path, settings: Settings, data: dict, seed: int) -> None:
    """Stop, naming it, at a finished run of ``rows`` made with another seed, data or setting than this call's."""
    made = {"seed": seed, "settings": asdict(settings), "data": json.loads(json.dumps(data))}
    otherwise = {
        run_path(output, row.key): _made_otherwise(load_run(output, row.key), made) for row in _unique_runs(rows)
    }
    otherwise = {path: made_otherwise for path, made_otherwise in otherwise.items() if made_otherwise is not None}
    if otherwise:
        listed = "".join(f"\n  - {path}: made with {made_otherwise}" for path, made_otherwise in otherwise.items())
        msg = (
            f"{len(otherwise)} finished run(s) were made with other settings; kept, they would be reported under "
            f"this call's:{listed}\nFix: use another --output, or delete those files to run them again with these."
        )
        raise SystemExit(msg)


def _made_otherwise(stored: dict | None, made: dict) -> str | None:
    """The seed, data or setting a finished run was made with that differs from this call's, as ``key=then, not
    now``; ``None`` if none. The output folder's manifest refuses such a call, but its own fix for a damaged one is
    to delete it: the runs' records are then all that tells (a setting added since is not in older runs)."""
    if stored is None or stored.get("status") not in FINISHED:
        return None  # a failed run is done again anyway
    spec = stored.get("spec", {})
    for key, now in made.items():
        then = spec.get(key)
        if key == "settings" and isinstance(then, dict):
            now = {name: now.get(name) for name in then}
        if then is not None and then != now:
            return f"{key}={then}, not {now}"
    return None


def _kept(prefix: str, stored: dict, path: Path, checkout: str) -> str:
    """The line for a kept run; one made at another commit says so, and how to measure it again at this one."""
    made_at = stored.get("commit", "not recorded")
    if stored["status"] != "ok" or made_at == checkout:
        return f"{prefix}: finished earlier ({stored['status']}), kept"
    return (
        f"{prefix}: finished earlier at commit {made_at} (this checkout: {checkout}), kept; delete {path} to "
        "measure it again"
    )


def execute(
    rows: list[Row],
    output: Path,
    settings: Settings,
    data: dict,
    seed: int,
    budget_seconds: float | None = None,
    all_settings: bool = True,
) -> list[str]:
    """Run every training ``rows`` need that is not finished yet, printing progress; return the keys that failed.

    ``all_settings``: test every inference setting on each training, so that later studies reuse it; otherwise
    only the settings ``rows`` read (faster; a later study that reads more trains again).
    """
    checkout = commit()
    runs = _unique_runs(rows)
    (output / "logs").mkdir(parents=True, exist_ok=True)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed = []
    for index, row in enumerate(runs, start=1):
        prefix = f"[{index}/{len(runs)}] {row.key}"
        stored = load_run(output, row.key)
        wanted = None if all_settings else _read_settings(rows, row.key)
        if _finished(stored, wanted):
            print(_kept(prefix, stored, run_path(output, row.key), checkout), flush=True)
            continue
        spec = {
            "key": row.key,
            "model": row.model,
            "category": row.category,
            "switches": row.training_switches,
            "settings": asdict(settings),
            "data": data,
            "seed": seed,
            "budget_seconds": _budget(output, row.category, budget_seconds) if row.model in BUDGETED else None,
            "work_dir": str(output / "work" / row.key.replace(" ", "_")),
            "variants": wanted,
        }
        reason = unavailable_reason(row.model, settings)
        if reason is not None:
            print(f"{prefix}: not run: {reason}", flush=True)
            write_json(run_path(output, row.key), {"spec": spec, "status": "not run", "reason": reason})
            continue
        budget = f" (training budget {spec['budget_seconds']:.0f} s)" if spec["budget_seconds"] else ""
        print(f"{prefix}: running{budget}, {time.monotonic() - started:.0f} s into the benchmark", flush=True)
        if not _run_in_subprocess(spec, output, prefix):
            failed.append(row.key)
    return failed


def _run_in_subprocess(spec: dict, output: Path, prefix: str) -> bool:
    """Start ``python -m anomalib_adapted_moe.benchmark.run``; its log goes to ``logs/<key>.log``. True if it
    finished."""
    name = spec["key"].replace(" ", "_")
    spec_path = output / "logs" / f"{name}.spec.json"
    write_json(spec_path, spec)
    log_path = output / "logs" / f"{name}.log"
    result_path = run_path(output, spec["key"])
    start = time.monotonic()
    # SIGTERM as an exception, so that subprocess.call kills the run's process (as on Ctrl-C) instead of leaving it
    # training without its driver, beside the duplicate a rerun would start
    with sigterm_exits(), log_path.open("w") as log:
        command = [sys.executable, "-m", "anomalib_adapted_moe.benchmark.run", str(spec_path), str(result_path)]
        returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    result = load_run(output, spec["key"])
    if result is None:  # killed before it could write (out of memory, a signal): record why and go on
        tail = log_path.read_text()[-2000:]
        result = {"spec": spec, "status": "failed", "error": f"exit code {returncode}; log tail:\n{tail}"}
        write_json(result_path, result)
    if result["status"] == "ok":
        print(f"{prefix}: done in {seconds:.0f} s, {_headline(result)}", flush=True)
        return True
    print(f"{prefix}: FAILED after {seconds:.0f} s: {result['error'].splitlines()[0]} (log: {log_path})", flush=True)
    return False


def _headline(result: dict) -> str:
    """The run's first figure that was measured: unseen pixel AUROC, else seen (a Folder has no unseen subclass),
    else image AUROC (no masks)."""
    for split, metric in (("unseen", "pixel_auroc"), ("seen", "pixel_auroc"), ("unseen", "image_auroc")):
        if not math.isnan(value := _mean(result, split, metric)):
            return f"{split}-subclass {metric.replace('_auroc', '')} AUROC {100 * value:.2f}"
    return f"seen-subclass image AUROC {100 * _mean(result, 'seen', 'image_auroc'):.2f}"


def _mean(result: dict, split: str, metric: str, variant: str = "default") -> float:
    rows = [row for row in result["variants"][variant] if row["subclass"] == f"mean {split}"]
    return rows[0][metric] if rows else float("nan")
