"""SyntheticTextureAD: generated once into a keyed cache folder, then read by TextureAD's code."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from anomalib_adapted_moe.cache import CACHE_ENV
from anomalib_adapted_moe.data import SubclassImageBatch, SyntheticTextureAD, TextureAD
from anomalib_adapted_moe.data import synthetic_texture_ad as module

TINY = {
    "image_size": 64,
    "num_train": 2,
    "num_test_good": 1,
    "num_test_defect": 2,
    "num_subclasses": 3,
    "num_unseen": 1,
}
TINY_KEY = "v1-seed0-64-2-1-2-3-1"


def _tiny(**kwargs) -> SyntheticTextureAD:
    kwargs = {"num_workers": 0, "train_batch_size": 8, "eval_batch_size": 8, "seed": 0, **TINY, **kwargs}
    return SyntheticTextureAD(**kwargs)


def test_prepare_and_setup_give_batches_with_subclass_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=module.__name__)
    datamodule = _tiny(root=tmp_path, category="wafer")
    assert isinstance(datamodule, TextureAD)
    datamodule.prepare_data()
    datamodule.setup()

    assert datamodule.root == tmp_path / TINY_KEY
    assert (tmp_path / TINY_KEY / "wafer" / "split.json").is_file()
    assert not (tmp_path / TINY_KEY / "cloth").exists()  # only the requested category
    assert datamodule.generated is True
    assert any("generated" in r.message and str(tmp_path / TINY_KEY) in r.message for r in caplog.records)
    # a line when generation starts, before the wait: it prints nothing else until it is done
    messages = [r.message for r in caplog.records]
    starts = [i for i, m in enumerate(messages) if m.startswith("SyntheticTextureAD: generating the wafer set")]
    ends = [i for i, m in enumerate(messages) if m.startswith("SyntheticTextureAD: generated the wafer set")]
    assert starts and ends and starts[0] < ends[0]

    assert len(datamodule.train_subclasses) == 2
    assert len(datamodule.unseen_subclasses) == 1
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, SubclassImageBatch)
    assert batch.image.shape[-2:] == (64, 64)
    assert batch.subclass_id.dtype == torch.long
    assert set(batch.subclass_id.tolist()) <= {0, 1}
    assert [datamodule.train_subclasses[i] for i in batch.subclass_id.tolist()] == list(batch.subclass_name)

    test = datamodule.test_data.samples
    unseen = datamodule.unseen_subclasses[0]
    assert set(test[test.subclass == unseen].subclass_id) == {-1}
    assert unseen not in set(datamodule.train_data.samples.subclass)


def test_second_instance_reuses_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _tiny(root=tmp_path)
    first.prepare_data()
    image = next((tmp_path / TINY_KEY / "cloth").rglob("*.png"))
    stamp = image.stat().st_mtime_ns

    caplog.set_level(logging.INFO, logger=module.__name__)
    second = _tiny(root=tmp_path)
    second.prepare_data()
    second.setup()
    assert second.generated is False
    assert image.stat().st_mtime_ns == stamp
    assert any("reusing" in r.message and str(tmp_path / TINY_KEY) in r.message for r in caplog.records)


def test_setup_without_prepare_data_generates(tmp_path: Path) -> None:
    datamodule = _tiny(root=tmp_path)
    datamodule.setup()
    assert datamodule.generated is True
    assert len(datamodule.train_data) > 0


def test_every_generator_argument_keys_the_folder(tmp_path: Path) -> None:
    base = _tiny(root=tmp_path).root
    assert base.name == TINY_KEY
    for change in ({"data_seed": 1}, {"image_size": 32}, {"num_train": 3}, {"num_test_good": 2},
                   {"num_test_defect": 3}, {"num_subclasses": 4}, {"num_unseen": 2}):  # fmt: skip
        assert _tiny(root=tmp_path, **change).root != base, change
    assert _tiny(root=tmp_path, seed=5).root == base  # the split seed is not a data argument


def test_cache_folder_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    datamodule = _tiny()
    assert datamodule.root == tmp_path / "cache" / "synthetic_texture_ad" / TINY_KEY
    monkeypatch.delenv(CACHE_ENV)
    assert _tiny().root == Path.home() / ".cache" / "anomalib_adapted_moe" / "synthetic_texture_ad" / TINY_KEY


def test_folder_appearing_meanwhile_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_generator = module.generate_synthetic_texture_ad

    def another_process_wins(root: Path, **kwargs) -> Path:
        real_generator(root, **kwargs)  # the other process finishes first ...
        raise FileExistsError(f"{root} appeared while generating")  # ... so ours gives up

    monkeypatch.setattr(module, "generate_synthetic_texture_ad", another_process_wins)
    datamodule = _tiny(root=tmp_path)
    datamodule.prepare_data()
    assert datamodule.generated is False
    datamodule.setup()
    assert len(datamodule.train_data) > 0


def test_generator_failure_without_a_folder_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(root: Path, **kwargs) -> Path:
        raise FileExistsError("something else")

    monkeypatch.setattr(module, "generate_synthetic_texture_ad", fails)
    with pytest.raises(FileExistsError, match="something else"):
        _tiny(root=tmp_path).prepare_data()


def test_unknown_category_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cloth"):
        _tiny(root=tmp_path, category="leather")


def test_an_unknown_category_is_named_with_the_choices_in_one_line_under_the_anomalib_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"no category 'nosuch'; choose one of \['cloth', 'wafer', 'metal'\]"):
        SyntheticTextureAD(root=tmp_path, category="nosuch")
    monkeypatch.setattr("sys.argv", ["/venv/bin/anomalib", "fit"])  # not 200 lines of traceback there
    with pytest.raises(SystemExit, match=r"^error: SyntheticTextureAD has no category 'nosuch'") as stopped:
        SyntheticTextureAD(root=tmp_path, category="nosuch")
    assert "\n" not in stopped.value.code


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda cat: _first(cat, "*/test/good/*.png").unlink(),  # before: 1 test image fewer, without a word
        lambda cat: _first(cat, "*/train/good/*.png").unlink(),  # before: 1 training image fewer
        lambda cat: shutil.rmtree(_first(cat, "*/train")),  # before: EmptyTrainingSetError with TextureAD's fix
        lambda cat: shutil.rmtree(cat / _seen(cat)),  # before: UnknownSubclassError with TextureAD's fix
        lambda cat: (cat / "split.json").write_text('{"seen": [], "unseen": []}'),
        lambda cat: (_first(cat, "*/test/good") / "extra.png").write_bytes(b""),
    ],
    ids=["test-image", "train-image", "train-folder", "subclass-folder", "split-json", "added-file"],
)
def test_a_damaged_cache_is_refused_naming_the_folder_to_delete(tmp_path: Path, damage) -> None:
    _tiny(root=tmp_path).prepare_data()
    cat = tmp_path / TINY_KEY / "cloth"
    damage(cat)
    datamodule = _tiny(root=tmp_path)
    with pytest.raises(module.AlteredSyntheticSetError, match=rf"Fix: delete {cat}; the next run generates it again"):
        datamodule.prepare_data()
        datamodule.setup()
    shutil.rmtree(cat)  # as the message says: then it is generated again
    datamodule.prepare_data()
    assert datamodule.generated is True


def _seen(cat: Path) -> str:
    return json.loads((cat / "split.json").read_text())["seen"][0]
