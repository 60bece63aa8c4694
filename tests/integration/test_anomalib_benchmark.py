"""anomalib's own benchmark pipeline (`anomalib benchmark --config ...`) runs AdaptedMoE on SyntheticTextureAD: it
looks both up by bare name in ``anomalib.models`` / ``anomalib.data`` (an ``UnknownModelError`` before) and passes
``image_size`` as a pair (SyntheticTextureAD took an integer only)."""

from pathlib import Path

import pytest
import yaml
from anomalib.data import get_datamodule
from anomalib.models import get_model
from anomalib.pipelines.benchmark.generator import BenchmarkJobGenerator
from conftest import REPO, tiny_adapted_moe

from anomalib_adapted_moe import AdaptedMoE, SyntheticTextureAD

CONFIG = REPO / "configs" / "benchmark" / "adapted_moe_synthetic.yaml"


def test_anomalibs_lookups_find_the_bare_names(tmp_path: Path) -> None:
    assert type(get_model({"class_path": "AdaptedMoE", "init_args": {"pre_trained": False}})) is AdaptedMoE
    data = get_datamodule({"class_path": "SyntheticTextureAD", "init_args": {"root": tmp_path, "image_size": 64}})
    assert type(data) is SyntheticTextureAD and data.generator_kwargs["image_size"] == 64  # given as (64, 64)
    with pytest.raises(ValueError, match=r"generates square images: image_size \(64, 32\) is not"):
        SyntheticTextureAD(root=tmp_path, image_size=(64, 32))


@pytest.mark.slow
def test_the_shipped_benchmark_config_runs_in_anomalibs_benchmark_pipeline(tmp_path: Path) -> None:
    """One job per category of the shipped config; a job on tiny data (the tests' small model in place of the
    recipe's, for time) gives anomalib's metrics row."""
    args = yaml.safe_load(CONFIG.read_text())["benchmark"]
    jobs = list(BenchmarkJobGenerator("cpu").generate_jobs(args, None))
    assert [job.datamodule.category for job in jobs] == ["cloth", "wafer", "metal"]
    assert all(type(job.model) is AdaptedMoE for job in jobs)

    args["data"]["init_args"] = {"category": "cloth", "root": str(tmp_path), "image_size": 64, "num_train": 3}
    args["data"]["init_args"] |= {"num_test_good": 2, "num_test_defect": 2, "num_subclasses": 3, "num_unseen": 1}
    (job,) = BenchmarkJobGenerator("cpu").generate_jobs(args, None)
    job.model = tiny_adapted_moe(epochs=1)
    row = job.run()
    assert row["model.class_path"] == "AdaptedMoE" and row["data.init_args.category"] == "cloth"
    assert 0 <= row["image_AUROC"] <= 1 and 0 <= row["pixel_AUROC"] <= 1 and row["fit_duration"] > 0
