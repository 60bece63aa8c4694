"""The precision matrix's target lines: computed from the rows, for the default and the bare-inferencer rows."""

from anomalib_adapted_moe.benchmark.precision import AUROC_KEYS, BARE_ROW, DEFAULT_ROW, targets


def row(name: str, ms: float, score_diff: float, auroc_change: float) -> dict:
    return {
        "name": name,
        "ms_per_image": {"1": ms},
        "max_score_diff": score_diff,
        "max_map_diff": score_diff,
        "auroc_change": dict.fromkeys(AUROC_KEYS, auroc_change),
    }


def test_the_default_and_the_bare_inferencer_rows_are_each_held_to_the_default_targets() -> None:
    rows = [row(DEFAULT_ROW, 8.0, 1e-6, 0.0), row(BARE_ROW, 5.0, 2e-2, 0.1), row("INT8 IR, bf16 rest", 4.0, 0.2, 0.6)]
    lines = {line["target"]: (line["value"], line["pass"]) for line in targets({"rows": rows})}
    assert lines["FP32 IR in f32: largest score or map difference to torch"] == (1e-6, True)
    assert lines[f"default ({DEFAULT_ROW}): speed-up over f32, batch 1 (at least)"] == (1.0, False)
    assert lines[f"default ({BARE_ROW}): speed-up over f32, batch 1 (at least)"] == (1.6, True)
    assert lines[f"default ({BARE_ROW}): largest score difference"] == (2e-2, False)  # limit 1e-2
    assert lines[f"default ({BARE_ROW}): largest AUROC-mean change, points"] == (0.1, True)  # limit 0.2
    assert lines["INT8 IR, bf16 rest: speed-up over f32, batch 1 (at least)"] == (2.0, True)
    assert lines["INT8 IR, bf16 rest: largest AUROC-mean change, points"] == (0.6, False)  # limit 0.5
