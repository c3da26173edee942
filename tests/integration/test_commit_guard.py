"""A workspace's commit carries that workspace only, and nothing staged means no commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupd.errors import RepoError
from backupd.store.gitrepo import GitRepo, Identity

ME = Identity("backupd", "backupd@example.invalid")


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_commit_refuses_changes_staged_outside_its_folder(tmp_path: Path) -> None:
    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(ME)
        head = repo.head()
        assert repo.commit("nothing", author=ME, committer=ME, folder="src/a") is None

        _write(repo.path, "src/a/jobs/x/x.job", "{}")
        _write(repo.path, "src/a b/jobs/y/y.job", "{}")  # a namesake folder is outside too
        repo.stage(["src/a/jobs/x/x.job", "src/a b/jobs/y/y.job"])
        with pytest.raises(RepoError, match=r"outside src/a \(src/a b/jobs/y/y.job\)"):
            repo.commit("a", author=ME, committer=ME, folder="src/a")
        assert repo.head() == head

        repo.stage([])  # nothing to stage: a no-op
        (repo.path / "src/a b/jobs/y/y.job").unlink()
        repo.stage(["src/a b/jobs/y/y.job"])  # unstaged again (its file is gone)
        sha = repo.commit("a", author=ME, committer=ME, folder="src/a")
        assert sha is not None and repo.head() == sha
        assert repo.tracked_files("src") == ["src/a/jobs/x/x.job"]
