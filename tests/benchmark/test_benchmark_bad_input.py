"""Bad input to the benchmark harness: a cut-short run or manifest file, a bad --data file, an unknown category.

Each stops with one message naming the file (or the option) and the fix, before anything trains; the files the
benchmark resumes from are written whole, so a run killed while writing one leaves no half file behind.
"""

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

from anomalib_adapted_moe.benchmark import driver
from anomalib_adapted_moe.benchmark import run as run_module
from anomalib_adapted_moe.benchmark.__main__ import SYNTHETIC, _updated_manifest, main
from anomalib_adapted_moe.benchmark.report import render
from anomalib_adapted_moe.benchmark.studies import rows
from anomalib_adapted_moe.benchmark.zoo import Settings

FAST = ["--weights", "none", "--image-size", "64", "--epochs", "1"]


class Killed(BaseException):
    """A signal arriving while a file is being written (not an ``Exception``: nothing catches it)."""


def _write_manifest(output: Path) -> Path:
    args = argparse.Namespace(output=output, seed=0, categories=["cloth"], models=["Padim"], budget_seconds=300)
    _updated_manifest(args, Settings(weights=None), SYNTHETIC, ["compare"], ["compare"])
    return output / "manifest.json"


def _write_not_run(output: Path) -> Path:
    """EfficientAd without its imagenette folder is recorded as not run, in-process."""
    driver.execute(rows("compare", ["cloth"], ["EfficientAd"]), output, Settings(weights=None), SYNTHETIC, 0)
    return driver.run_path(output, "cloth__EfficientAd")


def _write_killed_run(output: Path) -> Path:
    """A run's process killed before it wrote its result: the driver records the failure."""
    original = driver.subprocess.call
    driver.subprocess.call = lambda *args, **kwargs: -9
    try:
        driver.execute(rows("compare", ["cloth"], ["Padim"]), output, Settings(weights=None), SYNTHETIC, 0)
    finally:
        driver.subprocess.call = original
    return driver.run_path(output, "cloth__Padim")


def _write_failed_run(output: Path) -> Path:
    """``benchmark.run`` itself, failing at once on a data config naming no class, writes its result file."""
    spec = {"settings": {"weights": None}, "model": "Padim", "category": "cloth", "seed": 0}
    spec |= {"data": {"class_path": "nosuch_module.Nothing"}, "work_dir": str(output / "work")}
    spec_path, result = output / "spec.json", output / "runs" / "cloth__Padim.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(SystemExit):
        run_module.main([str(spec_path), str(result)])
    return result


@pytest.mark.parametrize("write", [_write_manifest, _write_not_run, _write_killed_run, _write_failed_run])
def test_a_file_the_benchmark_resumes_from_is_written_whole(
    write: Callable[[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed half-way through the write, the file is absent (that run is redone), never cut short."""
    output = tmp_path / "bench"
    real_write_text = Path.write_text
    target = {"name": ""}

    def killed_mid_write(self: Path, text: str, *args, **kwargs) -> int:
        if target["name"] and self.name.startswith(target["name"]):
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise Killed
        return real_write_text(self, text, *args, **kwargs)

    path = write(tmp_path / "dry")  # where it writes, found on a dry run
    target["name"] = path.name
    monkeypatch.setattr(Path, "write_text", killed_mid_write)
    with pytest.raises(Killed):
        write(output)
    written = output / path.relative_to(tmp_path / "dry")
    assert not written.exists() or json.loads(written.read_text())
    monkeypatch.undo()
    write(output)
    assert isinstance(json.loads(written.read_text()), dict)
    assert not list(output.rglob("*.partial"))


def _cut_short(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def test_a_cut_short_run_file_is_named_with_its_fix(tmp_path: Path) -> None:
    """Resuming (compare) and render stop naming the run file, not with a bare JSONDecodeError."""
    output = tmp_path / "bench"
    argv = ["compare", "--models", "EfficientAd", "--categories", "cloth", "--output", str(output), *FAST]
    main(argv)
    path = driver.run_path(output, "cloth__EfficientAd")
    _cut_short(path)
    for call in (lambda: main(argv), lambda: render(output, output)):
        with pytest.raises(SystemExit) as stopped:
            call()
        message = str(stopped.value.code)
        assert str(path) in message and "Fix: delete it and run the benchmark command again" in message


def test_a_cut_short_manifest_is_named_with_its_fix(tmp_path: Path) -> None:
    output = tmp_path / "bench"
    path = _write_manifest(output)
    _cut_short(path)
    argv = ["compare", "--models", "EfficientAd", "--categories", "cloth", "--output", str(output), *FAST]
    for call in (lambda: main(argv), lambda: main(["render", "--output", str(output)])):
        with pytest.raises(SystemExit) as stopped:
            call()
        message = str(stopped.value.code)
        assert str(path) in message and "Fix: delete it" in message and "same options" in message
    assert not (output / "runs").exists()  # nothing ran


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("data: {class_path: [unclosed\n", "is not valid YAML"),
        ("", "holds no data config"),
        ("- a\n- b\n", "holds no data config"),
        ("init_args: {category: cloth}\n", "holds no data config"),
    ],
    ids=["invalid-yaml", "empty", "list", "no-class-path"],
)
def test_a_bad_data_file_is_named_before_anything_runs(
    content: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """argparse's exit code 2 and one line naming the file and what a data config is, not a yaml traceback."""
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    output = tmp_path / "bench"
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--models", "EfficientAd", "--data", str(config), "--output", str(output)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"argument --data: {config} {problem}" in error and "Fix:" in error and "class_path" in error
    assert not output.exists()


def test_an_unknown_synthetic_category_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The synthetic set has a fixed list of categories: the one that is not is refused, not run once per model."""
    output = tmp_path / "bench"
    argv = ["compare", "--models", "EfficientAd", "--categories", "cloth", "nosuch"]  # without the check: not run
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--output", str(output)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--categories nosuch: SyntheticTextureAD has no category 'nosuch'" in error
    assert "['cloth', 'wafer', 'metal']" in error and "Fix:" in error
    assert not output.exists()


def test_a_texture_ad_category_without_its_folder_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """TextureAD's categories are the folders of its root: a missing one is named with the folders found."""
    root = tmp_path / "textures"
    (root / "Cloth").mkdir(parents=True)
    (root / "stone").mkdir()
    config = REPO / "configs" / "data" / "texture_ad.yaml"
    output = tmp_path / "bench"
    argv = ["compare", "--models", "EfficientAd", "--data", str(config)]
    argv += ["--data-init-args", json.dumps({"root": str(root)})]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--categories", "cloth", "nosuch", "--output", str(output)])  # Cloth matches, as in TextureAD
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "TextureAD category 'nosuch'" in error and f"{root / 'nosuch'} does not exist" in error
    assert "['Cloth', 'stone']" in error
    assert not output.exists()


def test_another_budget_is_refused_like_another_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--budget-seconds was not among the settings a resume checks: baselines trained under the old budget were
    kept silently under the new one."""
    started: list[str] = []

    def run(spec: dict, output: Path, prefix: str) -> bool:
        started.append(spec["key"])
        driver.run_path(output, spec["key"]).write_text(json.dumps({"spec": spec, "status": "failed", "error": "x"}))
        return False

    monkeypatch.setattr(driver, "_run_in_subprocess", run)
    output = tmp_path / "bench"
    argv = ["compare", "--models", "Padim", "--categories", "cloth", "--output", str(output), *FAST]
    with pytest.raises(SystemExit, match="1 run"):
        main(argv)  # the default budget, 300 s
    with pytest.raises(SystemExit, match=r"holds runs made with budget_seconds=300\.0, not 60\.0"):
        main([*argv, "--budget-seconds", "60"])
    assert started == ["cloth__Padim"]  # refused before anything ran


def test_calls_with_other_categories_or_models_add_to_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One category per call (a slow machine's way) reported the last call's runs only; each call's categories and
    models are reported, not every category with every model; a name given twice made two rows of one run."""

    def failed(spec: dict, output: Path, prefix: str) -> bool:
        driver.run_path(output, spec["key"]).write_text(json.dumps({"spec": spec, "status": "failed", "error": "x"}))
        return False

    monkeypatch.setattr(driver, "_run_in_subprocess", failed)
    output = tmp_path / "bench"
    common = ["compare", "--output", str(output), *FAST]
    main([*common, "--models", "EfficientAd", "EfficientAd", "--categories", "cloth", "cloth"])
    with pytest.raises(SystemExit, match="1 run"):
        main([*common, "--models", "Padim", "--categories", "wafer"])
    results = json.loads((output / "results.json").read_text())
    assert [(row["category"], row["label"], row["status"]) for row in results["rows"]] == [
        ("cloth", "EfficientAd", "not run"),
        ("wafer", "Padim", "failed"),
    ]
    report = (output / "benchmarks.md").read_text()
    assert "--categories cloth cloth" in report and "--categories wafer" in report  # both commands named


def test_a_finished_run_of_other_settings_is_refused_without_its_manifest(tmp_path: Path) -> None:
    """The manifest's own fix for a damaged one is to delete it: the runs then were kept under any settings."""
    output = tmp_path / "bench"
    argv = ["compare", "--models", "EfficientAd", "--categories", "cloth", "--output", str(output), *FAST]
    main(argv)
    (output / "manifest.json").unlink()
    run = driver.run_path(output, "cloth__EfficientAd")
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--seed", "7"])
    said = str(stopped.value.code)
    assert f"  - {run}: made with seed=0, not 7" in said and "Fix: use another --output, or delete those" in said
    with pytest.raises(SystemExit, match=r"made with settings=.*'epochs': 1.*'epochs': 3"):
        main([*argv, "--epochs", "3"])
    assert not (output / "manifest.json").exists()  # not written with the refused settings
    main(argv)  # the settings it was made with: kept
    assert (output / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("option", "problem", "fix"),
    [
        (["--epochs", "0"], "--epochs 0: at least 1 is needed", "Fix: --epochs 1 or more"),
        (["--image-size", "0"], "--image-size 0: the side of the images in pixels", "Fix: a positive size"),
        (["--weights", "nosuch.pth"], "--weights nosuch.pth: Backbone weights file", "Supply the path of"),
        (["--budget-seconds", "0"], "--budget-seconds 0.0: the trained baselines' seconds", "Fix: a positive"),
        (["--budget-seconds", "nan"], "--budget-seconds nan: the trained baselines' seconds", "Fix: a positive"),
    ],
    ids=["epochs", "image-size", "weights", "budget", "budget-nan"],
)
def test_a_bad_option_value_is_named_before_anything_runs(
    option: list[str], problem: str, fix: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Each run failed on it in turn, and the manifest then held the bad value: the corrected command was refused."""
    output = tmp_path / "bench"
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--models", "EfficientAd", "--categories", "cloth", "--output", str(output), *FAST, *option])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert problem in error and fix in error
    assert not output.exists()


@pytest.mark.parametrize("command", ["compare", "render", "thresholds", "speed", "precision"])
def test_an_output_that_cannot_be_written_is_named_before_anything_is_measured(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file where the output folder should be: speed measured for minutes, then lost it all to a traceback."""
    from anomalib_adapted_moe.benchmark import precision, speed, thresholds

    def measured(*_args, **_kwargs):
        raise AssertionError("measured before the output was checked")

    for module in (speed, precision):
        monkeypatch.setattr(module, "measure", measured)
    monkeypatch.setattr(thresholds, "measure_category", measured)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    argv = [command, "--output", str(blocked), *([] if command in ("render", "speed") else FAST)]
    if command == "render":
        argv = ["render", "--output", str(tmp_path / "bench"), "--report-dir", str(blocked)]
        _write_manifest(tmp_path / "bench")
    if command == "compare":
        argv += ["--models", "EfficientAd", "--categories", "cloth"]
    if command == "thresholds":
        argv += ["--categories", "cloth"]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"{blocked}: cannot write results there" in error and "Fix: give a folder you can write to" in error


def test_ctrl_c_ends_the_benchmark_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a run printed the driver's wait traceback and exited 1."""

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_run_in_subprocess", interrupted)
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--models", "Padim", "--categories", "cloth", "--output", str(tmp_path / "bench"), *FAST])
    assert stopped.value.code == 130
    assert "Stopped (Ctrl-C). Calling the same command again runs the stopped run" in capsys.readouterr().err


def test_a_manifest_of_another_shape_is_named_with_its_fix(tmp_path: Path) -> None:
    output = tmp_path / "bench"
    path = _write_manifest(output)
    path.write_text("[]")
    for argv in (["render", "--output", str(output)], ["compare", "--models", "Padim", "--output", str(output)]):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, *(FAST if argv[0] == "compare" else [])])
        assert f"{path} is not a benchmark manifest ([])" in str(stopped.value.code) and "Fix: delete it" in str(
            stopped.value.code
        )


def test_thresholds_and_precision_name_a_bad_comparison_folder_and_category(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Both ended in a traceback after their clear message."""
    output = tmp_path / "out"
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "thresholds.json").write_text("[]")
    for argv in (
        ["thresholds", "--categories", "cloth", "--compare-to", str(tmp_path / "nosuch"), "--output", str(output)],
        ["thresholds", "--categories", "cloth", "--compare-to", str(tmp_path / "listed"), "--output", str(output)],
        ["precision", "--category", "clothes", "--output", str(output)],
    ):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, *FAST])
        assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"--compare-to: cannot read {tmp_path / 'nosuch' / 'thresholds.json'}" in error
    assert f"--compare-to: {tmp_path / 'listed' / 'thresholds.json'} is not a thresholds report ([])" in error
    assert "SyntheticTextureAD has no category 'clothes'" in error


@pytest.mark.parametrize("name", ["Supersimplenet", "Glass"])
def test_random_weights_build_every_model_offline(name: str) -> None:
    """``--weights none`` gave these two a timm name, which their pre_trained=True downloads: offline, each run
    failed with the hub's LocalEntryNotFoundError."""
    from anomalib_adapted_moe.benchmark.zoo import MODELS

    model, _note = MODELS[name](Settings(image_size=64, weights=None))
    assert sum(parameter.numel() for parameter in model.parameters()) > 0


def test_an_mvtec_category_typo_is_named_before_a_download(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Neither a folder under the root nor one of MVTecAD's own: each run started anomalib's download of the whole
    MVTecAD (offline, a URLError naming no folder)."""
    root = tmp_path / "mvtec"
    (root / "metal_plate").mkdir(parents=True)
    config = REPO / "configs" / "data" / "mvtec_example.yaml"
    output = tmp_path / "bench"
    argv = ["compare", "--models", "Padim", "--data", str(config), "--data-init-args", json.dumps({"root": str(root)})]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--categories", "metal_plat", "--output", str(output), *FAST])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--categories 'metal_plat': no folder" in error and f"the data config's root {root} (metal_plate)" in error
    assert not output.exists()


def test_an_mvtec_config_without_categories_runs_its_own_category() -> None:
    """Without --categories an MVTecAD config ran the synthetic set's cloth, wafer and metal (each then failing)."""
    from anomalib_adapted_moe.benchmark.run import run_categories

    mvtec = {"class_path": "anomalib.data.MVTecAD", "init_args": {"root": "x", "category": "bottle"}}
    assert run_categories(mvtec, None) == ["bottle"] and run_categories(mvtec, ["grid"]) == ["grid"]
    assert run_categories(SYNTHETIC, None) == ["cloth", "wafer", "metal"]
