"""The commit stamped on generated docs: code changes mark it dirty (each edit its own), generated outputs do not."""

import subprocess
from pathlib import Path

from anomalib_adapted_moe.benchmark.provenance import commit


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_generated_docs_do_not_mark_the_commit_dirty_but_code_does(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "performance.md").write_text("old figures\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    sha = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert commit(tmp_path) == sha
    (tmp_path / "docs" / "performance.md").write_text("new figures from make speed\n")
    assert commit(tmp_path) == sha  # the next generator of the chain stamps the same clean commit
    (tmp_path / "model.py").write_text("x = 2\n")
    dirty = commit(tmp_path)
    assert dirty.startswith(sha + "+dirty.") and len(dirty) == len(sha) + len("+dirty.") + 8
    assert commit(tmp_path) == dirty  # the same edit, the same stamp
    (tmp_path / "model.py").write_text("x = 3\n")
    assert commit(tmp_path) not in (sha, dirty)  # another edit of the same commit: thresholds measures again
