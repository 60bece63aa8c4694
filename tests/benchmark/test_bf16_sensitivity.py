"""bf16 sensitivity: one part of the model at a time rounded to bf16 in torch, the model restored afterwards."""

import torch
from conftest import TINY_IMAGE_SIZE, tiny_adapted_moe

from anomalib_adapted_moe.benchmark.bf16_sensitivity import ROWS, parts_in_bf16, sensitivity_rows
from anomalib_adapted_moe.benchmark.precision import torch_outputs


def test_each_part_runs_in_bf16_inside_the_context_and_the_model_is_exact_again_after_it() -> None:
    torch.manual_seed(0)
    model = tiny_adapted_moe().eval()
    images = torch.rand(4, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    before = torch_outputs(model, images)
    backbone = torch_outputs(model, images, ROWS["backbone and patch aggregation"])
    whole = torch_outputs(model, images, ROWS["whole model"])
    after = torch_outputs(model, images)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # every method restored
    assert all(t.dtype == torch.float32 for t in whole)  # outputs cast back, whatever ran inside
    assert (whole[2] - before[2]).abs().max() > 0 and (backbone[3] - before[3]).abs().max() > 0
    with parts_in_bf16(model, ROWS["routing"]):
        assert "route" in vars(model.model)
        wrapped = model.model.route
        with parts_in_bf16(model, ROWS["routing"]):  # nested: the inner context gives back the outer wrapper
            assert model.model.route is not wrapped
        assert model.model.route is wrapped
    assert "route" not in vars(model.model)


def test_every_part_is_called_by_the_eval_forward() -> None:
    """A part the forward no longer calls would report 0 (nothing rounded) instead of failing."""
    model = tiny_adapted_moe(tta=True).eval()
    called = []
    for name, ((path, attribute),) in ((name, parts) for name, parts in ROWS.items() if len(parts) == 1):
        owner = model.get_submodule(path) if path else model
        original = getattr(owner, attribute)

        def spy(*args, _original=original, _name=name, **kwargs):
            called.append(_name)
            return _original(*args, **kwargs)

        setattr(owner, attribute, spy)
    with torch.no_grad():
        torch_outputs(model, torch.rand(2, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE))
    assert set(called) == {name for name, parts in ROWS.items() if len(parts) == 1}


def test_rows_report_the_differences_to_the_reference_for_every_part() -> None:
    reference = {"score": torch.zeros(3), "map": torch.zeros(3, 2, 2), "auroc": {"seen_image": 90.0}}

    def run(parts):  # a stand-in model whose error grows with the number of parts in bf16
        return torch.full((3,), 0.01 * len(parts)), torch.zeros(3, 2, 2), None, None

    rows = sensitivity_rows(run, reference, lambda scores, maps: {"seen_image": 89.5})
    assert [row["name"] for row in rows] == list(ROWS)
    whole = rows[-1]
    assert whole["max_score_diff"] == torch.tensor(0.01 * len(ROWS["whole model"])).item()
    assert whole["max_map_diff"] == 0 and whole["auroc_change"] == {"seen_image": -0.5}
