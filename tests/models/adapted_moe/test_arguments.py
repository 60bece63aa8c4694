"""Arguments that cannot train anything useful are refused when the model is built, naming the argument.

They used to be accepted: some failed after the whole feature pass with torch's words (a zero-sized layer, "Invalid
learning rate"), some trained a model that learns nothing (margin -1, noise_std 0), one dropped a layer with a
warning and failed at the first image (``KeyError: 'layer9'``).
"""

import sys
from pathlib import Path

import pytest
from conftest import tiny_adapted_moe


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ({"num_experts": 0}, "num_experts must be at least 1"),
        ({"cache_budget_gb": -1}, "cache_budget_gb must be 0 or more"),
        ({"embed_dim": 0}, "embed_dim must be at least 1"),
        ({"routing_dim": 0}, "routing_dim must be at least 1"),
        ({"expert_hidden_dim": 0}, "expert_hidden_dim must be at least 1"),
        ({"routing_pool": 0}, "routing_pool must be at least 1"),
        ({"center_lr": 5.0}, r"center_lr, the centres' update rate \(Wen et al.\), must lie in \(0, 1\]"),
        ({"margin": -1.0}, "margin must be positive"),
        ({"noise_std": 0.0}, "noise_std must be positive"),
        ({"adaptor_lr": -1.0}, "adaptor_lr must be positive"),
        ({"expert_lr": 0.0}, "expert_lr must be positive"),
        ({"layers": ["layer1", "layer9"]}, r"resnet18 has no layer\(s\) \['layer9'\]"),
        ({"layers": []}, "layers names no backbone layer"),
        ({"backbone": "resnet_nosuch"}, "backbone 'resnet_nosuch' is not a timm model name. Fix:"),
    ],
)
def test_an_argument_that_cannot_train_is_refused_when_the_model_is_built(argument: dict, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        tiny_adapted_moe(**argument)


def test_under_the_anomalib_command_a_refused_argument_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not two rich tracebacks and jsonargparse's union report (about 200 lines, the message 16 from the end)."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/anomalib", "fit"])
    with pytest.raises(SystemExit, match=r"^error: top_k and image_top_k must be at least 1") as stopped:
        tiny_adapted_moe(top_k=0)
    assert "\n" not in stopped.value.code
    with pytest.raises(SystemExit, match=r"^error: margin must be positive, got -1") as stopped:
        tiny_adapted_moe(margin=-1.0)
    assert "\n" not in stopped.value.code


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ({"epochs": 2.5}, "epochs=2.5 is a float: epochs takes a whole number. Fix: give it as one, e.g. epochs=160"),
        ({"batch_size": "4"}, "batch_size='4' is a str: batch_size takes a whole number."),
        ({"num_experts": 2.5}, "num_experts=2.5 is a float: num_experts takes a whole number (or None)."),
        ({"tta": "no"}, "tta='no' is a str: tta takes True or False."),
        ({"top_k": True}, "top_k=True is a bool: top_k takes a whole number."),
        ({"cache_budget_gb": "8"}, "cache_budget_gb='8' is a str: cache_budget_gb takes a number."),
        (
            {"layers": "layer2"},
            "layers='layer2' is a str: layers takes a list of names. Fix: give it as one, e.g. layers=['layer2'].",
        ),
        ({"layers": ["layer2", 3]}, "layers=['layer2', 3] is a list holding 3 (int): layers takes a list of names."),
        ({"backbone": Path("resnet18")}, "backbone=PosixPath('resnet18') is a PosixPath: backbone takes a name"),
        ({"backbone_weights": 3}, "backbone_weights=3 is an int: backbone_weights takes a name (a str) or a path"),
    ],
)
def test_a_number_or_switch_of_the_wrong_type_is_named_when_the_model_is_built(argument: dict, said: str) -> None:
    """From Python (the command's parser checks types): epochs=2.5 failed after the feature pass, 21 frames deep;
    epochs="3" with "'<' not supported between instances of 'str' and 'int'"; tta="no" was silently true."""
    with pytest.raises(TypeError) as refused:
        tiny_adapted_moe(**argument)
    assert str(refused.value).startswith(said)


def test_numbers_of_numpy_an_int_for_a_float_and_none_where_allowed_are_taken() -> None:
    import numpy as np

    model = tiny_adapted_moe(epochs=np.int64(2), blur_sigma=2, num_experts=None, feature_cache=None, tta=np.True_)
    assert model.schedule.epochs == 2


def test_a_weights_file_given_as_a_path_and_layers_as_a_tuple_are_taken(tmp_path: Path) -> None:
    import timm
    import torch

    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.pth")
    model = tiny_adapted_moe(backbone_weights=tmp_path / "resnet18.pth", layers=("layer2",))
    assert model.hparams.layers == ("layer2",)
