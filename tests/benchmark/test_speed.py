"""Smoke run of ``python -m anomalib_adapted_moe.benchmark speed --quick``: every figure lands in the JSON and the
markdown comes from it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_adapted_moe.benchmark import speed

pytestmark = pytest.mark.slow

SPEED = [sys.executable, "-m", "anomalib_adapted_moe.benchmark", "speed"]

LATENCIES = [
    "backbone",
    *(f"adapted_moe_e{e}_k{k}" for e in (2, 8, 16) for k in (1, 4)),
    "simplenet_baseline",
    "supersimplenet",
    "glass",
    "openvino_fp32",
    "openvino_fp16",
]


def test_quick_run_has_every_figure_and_renders_its_markdown(tmp_path: Path) -> None:
    output, markdown = tmp_path / "out", tmp_path / "performance.md"
    command = [*SPEED, "--quick", "--output", str(output), "--markdown", str(markdown)]
    command += ["--data-root", str(tmp_path / "data")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=1800)

    results = json.loads((output / "speed.json").read_text())
    assert {"cpu", "cores", "ram_gib", "torch", "openvino"} <= results["machine"].keys()
    assert results["settings"]["batch_sizes"] == [1, 4]  # --quick's
    for batch in results["settings"]["batch_sizes"]:
        figures = results["inference"][f"batch_{batch}"]
        assert list(figures) == LATENCIES
        assert all(math.isfinite(value) and value > 0 for value in figures.values())
    assert set(results["training"]) == {"AdaptedMoE", "Supersimplenet", "large"}
    for run in results["training"].values():
        assert run["fit_seconds"] > 0 and run["peak_rss_gib"] > 0 and len(run["epoch_seconds"]) == run["epochs"]
    assert results["training"]["AdaptedMoE"]["epochs"] == results["training"]["Supersimplenet"]["epochs"] >= 2
    assert any("feature cache: " in line for line in results["training"]["AdaptedMoE"]["log"])
    assert [t["target"][:3] for t in results["targets"]] == ["(a)", "(b)", "(b)", "(c)", "(c)", "(d)", "(e)", "(f)"]
    assert all(isinstance(t["pass"], bool) and t["pass"] == (t["value"] <= t["limit"]) for t in results["targets"])

    text = markdown.read_text()
    assert json.loads(markdown.with_suffix(".json").read_text()) == results  # the report's source sits beside it
    assert results["machine"]["cpu"] in text and "quick mode" in text
    assert all(t["target"] in text for t in results["targets"])
    assert text.count("| PASS |") + text.count("| MISS |") == len(results["targets"])
    # the markdown is a function of the JSON alone (rendered in this process: a second start-up of the command
    # costs seconds and is what the run above tested)
    rerendered = tmp_path / "again.md"
    speed.main(["--render", str(output / "speed.json"), "--markdown", str(rerendered)])
    assert rerendered.read_text() == text
