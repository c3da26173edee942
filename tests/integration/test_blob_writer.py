"""BlobWriter: contents stored in the repository while a workspace is still staging."""

from __future__ import annotations

import subprocess
from pathlib import Path

from backupd.store.blobs import BlobWriter
from backupd.store.staging import StagedTree, blob_id


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)


def _init(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_blobs_fed_while_staging_are_in_one_pack_with_gits_ids(tmp_path: Path) -> None:
    repo = _init(tmp_path / "repo")
    writer = BlobWriter(repo)
    baseline = {"jobs/a/a.job": blob_id(b"same")}
    tree = StagedTree(tmp_path / "staging", baseline, on_write=writer.write)
    tree.put("jobs/a/a.job", b"same")  # unchanged: neither written nor stored
    contents = [b"first\n", "二 \u00e9\n".encode(), b"", b"x" * 200_000]
    contents += [f"job {number}\n".encode() for number in range(150)]
    for number, data in enumerate(contents):
        tree.put(f"jobs/j{number}/j{number}.job", data)

    assert writer.finish()

    for data in contents:
        shown = _git(repo, "cat-file", "blob", blob_id(data))
        assert shown.returncode == 0 and shown.stdout == data
    assert _git(repo, "cat-file", "-e", blob_id(b"same")).returncode != 0
    # One pack, not a file per object (git unpacks imports of under 100 objects).
    assert len(list((repo / ".git" / "objects" / "pack").glob("*.pack"))) == 1
    assert not [p for p in (repo / ".git" / "objects").iterdir() if len(p.name) == 2]


def test_nothing_written_starts_no_git_and_counts_as_stored(tmp_path: Path) -> None:
    writer = BlobWriter(tmp_path / "not-even-a-repository")
    assert writer.finish()


def test_a_failing_git_is_reported_so_the_commit_stores_the_blobs_itself(tmp_path: Path) -> None:
    writer = BlobWriter(tmp_path)  # not a repository: fast-import fails
    writer.write(b"content")
    assert writer.finish() is False
