"""What a killed run leaves behind is cleaned up by the next run, by itself.

Each test recreates one kind of leftover with real files and real processes (git lock files,
a git still running, a half-staged index, staging folders of dead processes, a half-made
repository) and checks that the next snapshot is complete and true. The kill -9 test in
tests/e2e/test_crash.py finds these states by actually killing backupd.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import Simulator
from backupd.snapshot.scratch import STAGING_PREFIX
from tests.helpers import expected_tree, git, make_config, read_tree, workspace_id

A, B = workspace_id(41), workspace_id(42)


def setup(base: Path, simulator: Simulator) -> Path:
    for wid, name in ((A, "a"), (B, "b")):
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 8)
    config_path = make_config(base, simulator, {"a": A, "b": B})
    assert_ok(run_snapshots(load_config(config_path)))
    return config_path


def assert_ok(results: list[SnapshotResult]) -> None:
    assert all(r.ok for r in results), [r.error for r in results]


def assert_true_and_clean(repo: Path, simulator: Simulator) -> None:
    for wid, name in ((A, "a"), (B, "b")):
        assert read_tree(repo / "prod" / name) == expected_tree(simulator, wid)
    assert git(repo, "status", "--porcelain") == ""
    subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], check=True, capture_output=True)


def test_stale_git_lock_files_are_removed_when_no_git_runs(
    fast_dir: Path, simulator: Simulator
) -> None:
    config_path = setup(fast_dir, simulator)
    repo = fast_dir / "repo"
    locks = [repo / ".git" / name for name in ("index.lock", "HEAD.lock", "refs/heads/main.lock")]
    for lock in locks:
        lock.write_bytes(b"")  # what git leaves when killed between creating and renaming
    simulator.modify_job(A, sorted(simulator.jobs(A))[0])

    results = run_snapshots(load_config(config_path))

    assert_ok(results)
    assert [r.commit is not None for r in results] == [True, False]
    assert not [lock for lock in locks if lock.exists()]
    assert (repo / ".git" / "backupd.lock").exists()  # our own lock file is not git's
    assert_true_and_clean(repo, simulator)


def test_the_lock_of_a_live_git_process_is_left_alone_until_it_exits(
    fast_dir: Path, simulator: Simulator
) -> None:
    config_path = setup(fast_dir, simulator)
    repo = fast_dir / "repo"
    simulator.modify_job(B, sorted(simulator.jobs(B))[0])
    # A git that is still working in the repository (an orphan of a killed run, say).
    orphan = subprocess.Popen(
        ["git", "hash-object", "--stdin"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"")
    results: list[SnapshotResult] = []
    runner = threading.Thread(
        target=lambda: results.extend(run_snapshots(load_config(config_path)))
    )
    try:
        runner.start()
        time.sleep(0.8)
        assert runner.is_alive() and lock.exists()  # waiting, not stealing the lock
    finally:
        orphan.communicate(b"done", timeout=10)
        lock.unlink(missing_ok=True)  # git removes its own lock when it finishes
    runner.join(timeout=30)

    assert_ok(results)
    assert [r.commit is not None for r in results] == [False, True]
    assert_true_and_clean(repo, simulator)


def test_half_staged_changes_never_enter_another_workspaces_commit(
    fast_dir: Path, simulator: Simulator
) -> None:
    config_path = setup(fast_dir, simulator)
    repo = fast_dir / "repo"
    # A run killed after `git add` for workspace a, before its commit: a's files changed on
    # disk and in the index; plus a temporary file of an interrupted write.
    job_file = next((repo / "prod" / "a" / "jobs").rglob("*.job"))
    job_file.write_text("half written")
    git(repo, "add", "--", str(job_file))
    (job_file.parent / ".x.job.backupd-tmp").write_text("partial")
    simulator.modify_job(B, sorted(simulator.jobs(B))[0])

    b_only = run_snapshots(load_config(config_path), only=["b"])

    assert_ok(b_only)
    changed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert changed and all(path.startswith("prod/b/") for path in changed)
    assert git(repo, "diff", "--cached", "--name-only") == ""

    assert_ok(run_snapshots(load_config(config_path)))  # a's folder is reset to HEAD
    assert git(repo, "log", "-1", "--format=%s").startswith("prod/b:")  # a had no real change
    assert_true_and_clean(repo, simulator)


def test_staging_folders_of_dead_processes_are_removed(
    fast_dir: Path, simulator: Simulator
) -> None:
    config_path = setup(fast_dir, simulator)
    staging = fast_dir / "staging"
    dead = staging / f"{STAGING_PREFIX}{_dead_pid()}-k1ll3d"
    (dead / "tree" / "jobs").mkdir(parents=True)
    (dead / "batch-3.zip").write_bytes(b"PK partial")
    mine = staging / f"{STAGING_PREFIX}{os.getpid()}-busy"  # this process: still working
    alive = staging / f"{STAGING_PREFIX}1-other"  # pid 1 is alive
    unrelated = staging / "not-ours"
    for folder in (mine, alive, unrelated):
        folder.mkdir()

    assert_ok(run_snapshots(load_config(config_path)))

    assert sorted(p.name for p in staging.iterdir()) == sorted(
        p.name for p in (mine, alive, unrelated)
    )


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_interrupted_repository_creation_is_started_over(
    fast_dir: Path, simulator: Simulator
) -> None:
    repo = fast_dir / "repo"
    leftover = repo / ".backupd-init-x1y2z3" / ".git"
    leftover.mkdir(parents=True)
    (leftover / "config").write_text("[core]\n")  # git init killed half-way
    for wid, name in ((A, "a"), (B, "b")):
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 3)
    config_path = make_config(fast_dir, simulator, {"a": A, "b": B})

    assert_ok(run_snapshots(load_config(config_path)))

    assert sorted(p.name for p in repo.iterdir()) == [".git", ".gitattributes", "README.md", "prod"]
    assert_true_and_clean(repo, simulator)
