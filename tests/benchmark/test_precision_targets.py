"""The precision matrix's target lines: computed from the rows, for the default and the bare-inferencer rows; the
README's copy of the matrix."""

import json
import re

from conftest import REPO

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


def _without_asides(name: str) -> str:
    """A row's name without its parentheses, nested ones included: the README's rows say more than the JSON's."""
    while name != (shorter := re.sub(r"\s*\([^()]*\)", "", name)):
        name = shorter
    return name


def test_the_readmes_precision_table_holds_the_figures_of_docs_precision_json() -> None:
    """The README's short table is copied from the generated matrix by hand: each cell is checked against the JSON
    it came from (a cell rounded twice, 0.1745 -> 1.75e-01 -> 1.8e-01, went unnoticed before)."""
    results = json.loads((REPO / "docs" / "precision.json").read_text())
    by_name = {_without_asides(row["name"]): row for row in results["rows"]}
    readme = (REPO / "README.md").read_text().split("| on the Intel Xeon (AMX), demo model", 1)[1]
    table = readme.split("\n\n", 1)[0].splitlines()[2:]  # the rows below the header and its rule
    assert len(table) == 6, table
    for line in table:
        name, score_diff, auroc_change, speed, megabytes = (cell.strip() for cell in line.strip("|").split("|"))
        row = by_name[_without_asides(name)]
        change = row["auroc_change"]
        assert score_diff == f"{row['max_score_diff']:.1e}", name
        assert auroc_change == f"{change['seen_image']:.2f} / {change['unseen_image']:.2f}", name
        assert speed == f"{row['ms_per_image']['1']:.1f} / {row['ms_per_image']['16']:.1f}", name
        assert megabytes == f"{row['ir_mb']:.1f}", name
