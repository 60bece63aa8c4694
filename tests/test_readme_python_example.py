"""The README's Python example runs as written: its imports resolve, its model and datamodule build, and each Engine
call passes arguments anomalib's Engine takes. The calls are bound to Engine's own signatures, not run: training the
recipe takes minutes, and test_demo trains the same recipe end to end."""

import inspect
from pathlib import Path
from typing import ClassVar

import anomalib.engine
from anomalib.deploy import ExportType
from anomalib.engine import Engine

from anomalib_adapted_moe import AdaptedMoE, SyntheticTextureAD
from anomalib_adapted_moe.recipes import CPU_RECIPE

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    section = README.read_text().split("## Use it from Python", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


class _RecordingEngine:
    """Stands in for Engine: checks each call against Engine's signature and records it."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, *args, **kwargs) -> None:
        inspect.signature(Engine.__init__).bind(self, *args, **kwargs)

    def __getattr__(self, name: str):
        method = getattr(Engine, name)

        def record(*args, **kwargs) -> None:
            inspect.signature(method).bind(self, *args, **kwargs)
            self.calls.append((name, kwargs))

        return record


def test_the_readme_python_example_builds_the_recipe_and_calls_engine_with_arguments_it_takes(monkeypatch) -> None:
    monkeypatch.setattr(anomalib.engine, "Engine", _RecordingEngine)
    monkeypatch.setattr(_RecordingEngine, "calls", [])
    namespace: dict = {}
    exec(compile(_python_example(), str(README), "exec"), namespace)

    assert [name for name, _ in _RecordingEngine.calls] == ["fit", "test", "export"]
    model, datamodule = namespace["model"], namespace["datamodule"]
    assert isinstance(model, AdaptedMoE)
    assert {key: model.hparams[key] for key in CPU_RECIPE} == CPU_RECIPE
    assert isinstance(datamodule, SyntheticTextureAD)
    for _, kwargs in _RecordingEngine.calls:
        assert kwargs["model"] is model
    assert [kwargs.get("datamodule") for _, kwargs in _RecordingEngine.calls[:2]] == [datamodule, datamodule]
    assert ExportType(_RecordingEngine.calls[2][1]["export_type"]) == ExportType.OPENVINO
