"""Disk full (ENOSPC) for real: small tmpfs mounts, filled up with a ballast file.

Running out of space while unpacking (staging) or while writing the repository must give a
clear error and no partial commit; once space is back, the next snapshot completes. Needs
permission to mount a tmpfs (root in a container); skipped elsewhere — the unpack path is
also covered by tests/unit/test_archive.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import DEFAULT_TOKEN, Simulator
from tests.conftest import Mount
from tests.helpers import commit_count, expected_tree, git, make_config, read_tree, workspace_id

WID = workspace_id(71)
PAGE = 4096


def mounted(mount_tmpfs: Mount, name: str, size: str) -> Path:
    path = mount_tmpfs(name, size)
    if path is None:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    return path


def fill(folder: Path, leave: int) -> Path:
    """Write a ballast file so that about ``leave`` bytes stay free on folder's file system."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    ballast = folder / "ballast"
    with open(ballast, "wb") as file:
        file.truncate(0)
        file.write(b"\0" * max(free - leave, 0))  # real pages: tmpfs has no holes to cheat
    return ballast


def single(results: list[SnapshotResult]) -> SnapshotResult:
    (result,) = results
    return result


def export_size(simulator: Simulator) -> int:
    response = httpx.post(
        f"{simulator.url}/v1/{simulator.project_id}/jobs/batch-export",
        headers={"X-Auth-Token": DEFAULT_TOKEN, "workspace": WID},
        json={"jobList": sorted(simulator.jobs(WID))},
    )
    response.raise_for_status()
    return len(response.content)


def test_disk_full_while_unpacking_fails_cleanly_and_the_next_run_completes(
    tmp_path: Path, simulator: Simulator, mount_tmpfs: Mount
) -> None:
    staging = mounted(mount_tmpfs, "staging", "2m")
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 20)
    config = load_config(
        make_config(
            tmp_path,
            simulator,
            {"ws": WID},
            extra={"staging_dir": str(staging)},
            # Full: the zip then holds every job, and staging gets only room for that zip.
            extra_source={"incremental": False},
        )
    )
    assert single(run_snapshots(config)).ok
    repo = tmp_path / "repo"
    before, commits = read_tree(repo / "prod" / "ws"), commit_count(repo)
    for name in sorted(simulator.jobs(WID))[:5]:
        simulator.modify_job(WID, name)
    # Room for the downloaded zip, not for the ~60 files it unpacks to.
    ballast = fill(staging, leave=-(-export_size(simulator) // PAGE) * PAGE + 3 * PAGE)
    simulator.clear_calls()

    result = single(run_snapshots(config))

    assert not result.ok
    assert "disk full while unpacking" in (result.error or "")
    exports = [c for c in simulator.calls if c.path.endswith("/batch-export")]
    assert len(exports) == 1  # our disk, not the archive: no pointless second download
    assert read_tree(repo / "prod" / "ws") == before
    assert commit_count(repo) == commits
    assert [p.name for p in staging.iterdir()] == ["ballast"]  # half-unpacked batch removed

    ballast.unlink()
    assert single(run_snapshots(config)).ok
    assert read_tree(repo / "prod" / "ws") == expected_tree(simulator, WID)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("add", ("cannot write",)),  # new files do not fit in the work tree
        # Rewritten files fit; git's new objects (blobs or trees) do not.
        ("modify", ("git add failed", "git commit failed")),
    ],
)
def test_disk_full_in_the_repository_never_leaves_a_partial_commit(
    tmp_path: Path, simulator: Simulator, mount_tmpfs: Mount, change: str, words: tuple[str, ...]
) -> None:
    disk = mounted(mount_tmpfs, "disk", "8m")
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 20)
    config = load_config(
        make_config(
            tmp_path,
            simulator,
            {"ws": WID},
            extra={"repository": {"path": str(disk / "repo")}},
        )
    )
    assert single(run_snapshots(config)).ok
    repo = disk / "repo"
    head = git(repo, "rev-parse", "HEAD")
    if change == "add":
        for index in range(40):
            simulator.add_job(WID, f"extra_{index}", scripts=[f"extra_script_{index}"])
    else:
        for name in sorted(simulator.jobs(WID)):
            simulator.modify_job(WID, name)
    ballast = fill(disk, leave=12 * PAGE)

    result = single(run_snapshots(config))

    assert not result.ok
    assert any(word in (result.error or "") for word in words), result.error
    assert any(full in (result.error or "") for full in ("No space left", "Out of diskspace"))
    assert git(repo, "rev-parse", "HEAD") == head
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr

    ballast.unlink()
    after = single(run_snapshots(config))
    assert after.ok and after.commit is not None
    assert read_tree(repo / "prod" / "ws") == expected_tree(simulator, WID)
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-list", "--count", f"{head.strip()}..HEAD").strip() == "1"
