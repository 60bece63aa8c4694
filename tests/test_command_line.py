"""The commands' shared check of a folder they will write into."""

import tempfile
from pathlib import Path

import pytest

from anomalib_adapted_moe.command_line import unwritable_reason


def test_a_folder_to_be_made_is_checked_where_it_would_be_made_and_is_not_made(tmp_path: Path) -> None:
    """The export, variant-level and benchmark checks ran mkdir first: a refusal after them left an empty folder
    (an untrained model's refused export left results/weights/openvino behind)."""
    assert unwritable_reason(tmp_path / "results" / "weights" / "openvino") is None
    assert not (tmp_path / "results").exists()


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    assert unwritable_reason(tmp_path / "a_file" / "export") == f"{tmp_path / 'a_file'} is a file, not a folder"
    assert unwritable_reason(tmp_path / "a_file") == f"{tmp_path / 'a_file'} is a file, not a folder"


def test_a_folder_that_refuses_new_files_gives_the_systems_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """root writes past a folder's mode, so the check makes a file there; chattr +i or a read-only disk refuse it."""

    def not_permitted(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "TemporaryFile", not_permitted)
    assert unwritable_reason(tmp_path / "new") == "Operation not permitted"
