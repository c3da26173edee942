"""A large commit's trees go into one pack (fast-import) instead of a file each: the same
commit, whatever the names, and no loose trees for the folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backupd.store.gitrepo import PACK_TREES_FROM, SCRATCH_REF, GitRepo, Identity

ME = Identity("backupd", "backupd@example.invalid")
NAMES = ["plain", 'with "quotes"', "back\\slash", "tab\there", "作业 两", "trailing.", "a b"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True)
    return done.stdout.decode()


def loose_trees(repo: Path) -> int:
    objects = repo / ".git" / "objects"
    loose = [
        f"{p.parent.name}{p.name}\n"
        for d in objects.iterdir()
        if len(d.name) == 2
        for p in d.iterdir()
    ]
    # One process for all of them: a process an object was 1,500 git starts.
    kinds = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-check=%(objecttype)"],
        input="".join(loose).encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    return kinds.split().count("tree")


def commit_folder(repo_path: Path, jobs: int, *, packed: bool) -> tuple[str, int]:
    """Commit a workspace folder of ``jobs`` job folders; (its tree id, loose trees)."""
    with GitRepo.open(repo_path, branch="main") as repo:
        repo.prepare(ME)
        folder = "src/ws"
        paths = []
        for number in range(jobs):
            name = f"{NAMES[number % len(NAMES)]} {number}"
            for file in (f"{name}.job", f"{name}.script"):
                path = f"{folder}/jobs/{name}/{file}"
                target = repo_path / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{path}\n")
                paths.append(path)
        loose_before = loose_trees(repo_path)
        repo.stage(paths)
        if not packed:
            repo._staged = 0  # as if below the threshold: write-tree writes them all
        repo.commit("add", author=ME, committer=ME, folder=folder)
        tree = git(repo_path, "rev-parse", f"HEAD:{folder}").strip()
    return tree, loose_trees(repo_path) - loose_before


def test_a_large_commit_has_its_trees_packed_and_is_the_same_commit(tmp_path: Path) -> None:
    jobs = PACK_TREES_FROM // 2 + 7  # two paths a job: just over the threshold
    packed_tree, packed_loose = commit_folder(tmp_path / "packed", jobs, packed=True)
    loose_tree, loose_loose = commit_folder(tmp_path / "loose", jobs, packed=False)
    assert packed_tree == loose_tree  # every name, quoted or not, made the same trees
    assert loose_loose >= jobs  # a file per job folder ...
    assert packed_loose <= 3  # ... or only the trees above the folder (root, src)
    repo = tmp_path / "packed"
    assert git(repo, "for-each-ref", SCRATCH_REF) == ""  # the scratch ref is gone
    assert git(repo, "fsck", "--no-dangling").strip() == ""
    assert git(repo, "status", "--porcelain") == ""


def test_a_failing_pack_leaves_the_commit_to_write_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        GitRepo, "_index_entries", lambda self, folder: iter([(b"100644", b"0" * 40, b"x")])
    )
    tree, loose = commit_folder(tmp_path / "repo", PACK_TREES_FROM, packed=True)
    assert loose >= PACK_TREES_FROM // 2
    assert git(tmp_path / "repo", "rev-parse", "HEAD:src/ws").strip() == tree
