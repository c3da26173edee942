"""Incremental snapshots export only what moved, and record exactly what a full one would."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import Simulator
from tests.helpers import expected_tree, git, make_config, read_tree, workspace_id

WID = workspace_id(31)


def snapshot(config_path: Path) -> SnapshotResult:
    (result,) = run_snapshots(load_config(config_path))
    assert result.ok, result.error
    return result


def exported_jobs(simulator: Simulator) -> list[str]:
    return sorted(
        n for c in simulator.calls if c.path.endswith("/batch-export") for n in c.job_names
    )


def mutate(simulator: Simulator) -> tuple[set[str], str]:
    """Edit, add, delete, rename jobs and change a shared script without touching its jobs."""
    jobs = sorted(simulator.jobs(WID))
    simulator.modify_job(WID, jobs[0])
    simulator.modify_job(WID, jobs[1])
    simulator.delete_job(WID, jobs[2])
    simulator.rename_job(WID, jobs[3], "renamed_job")
    simulator.add_job(WID, "brand_new_job", scripts=[])
    shared = next(
        s
        for s in simulator.scripts(WID)
        if sum(s in simulator.job_scripts(WID, j) for j in simulator.jobs(WID)) >= 2
    )
    simulator.set_script(WID, shared, "-- changed without its jobs\nSELECT 2;\n")
    users = {j for j in simulator.jobs(WID) if shared in simulator.job_scripts(WID, j)}
    return {jobs[0], jobs[1], "renamed_job", "brand_new_job"} | users, shared


def test_incremental_snapshot_equals_a_full_one_after_mutations(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 120)
    (tmp_path / "inc").mkdir()
    (tmp_path / "full").mkdir()
    incremental = make_config(tmp_path / "inc", simulator, {"ws": WID})
    snapshot(incremental)
    must_export, shared = mutate(simulator)
    simulator.clear_calls()

    result = snapshot(incremental)

    # Only what moved was exported: edited, new and renamed jobs, and the jobs that hold a
    # copy of the script that changed without them.
    assert set(exported_jobs(simulator)) == must_export
    assert result.commit is not None
    full = make_config(
        tmp_path / "full", simulator, {"ws": WID}, extra_source={"incremental": False}
    )
    snapshot(full)
    incremental_tree = read_tree(tmp_path / "inc" / "repo" / "prod" / "ws")
    assert incremental_tree == read_tree(tmp_path / "full" / "repo" / "prod" / "ws")
    assert incremental_tree == expected_tree(simulator, WID)
    users = [j for j in simulator.jobs(WID) if shared in simulator.job_scripts(WID, j)]
    assert all(f"jobs/{j}/{shared}.script" in incremental_tree for j in users)


def test_a_snapshot_without_changes_exports_nothing_and_commits_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 60)
    config = make_config(tmp_path, simulator, {"ws": WID})
    snapshot(config)
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    simulator.clear_calls()

    result = snapshot(config)

    assert exported_jobs(simulator) == []
    assert result.commit is None
    assert git(tmp_path / "repo", "rev-parse", "HEAD") == head


def test_a_full_snapshot_runs_every_full_every_seconds(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 30)
    config = make_config(tmp_path, simulator, {"ws": WID}, extra_source={"full_every": 0})
    snapshot(config)
    simulator.clear_calls()

    snapshot(config)

    assert len(exported_jobs(simulator)) == 30


def test_a_fresh_clone_resumes_from_the_committed_index(
    tmp_path: Path, simulator: Simulator
) -> None:
    """A clone knows every job's version from .backupd/index.json; it reconciles fully once."""
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 30)
    (tmp_path / "a").mkdir()
    original = make_config(tmp_path / "a", simulator, {"ws": WID})
    snapshot(original)
    clone_dir = tmp_path / "b"
    clone_dir.mkdir()
    subprocess.run(
        ["git", "clone", "-q", str(tmp_path / "a" / "repo"), str(clone_dir / "repo")], check=True
    )
    data = yaml.safe_load(original.read_text())
    data["repository"]["path"] = str(clone_dir / "repo")
    data["staging_dir"] = str(clone_dir / "staging")
    cloned = clone_dir / "config.yaml"
    cloned.write_text(yaml.safe_dump(data, allow_unicode=True))

    first = snapshot(cloned)  # unknown time of the last full one: reconcile
    simulator.modify_job(WID, sorted(simulator.jobs(WID))[0])
    simulator.clear_calls()
    second = snapshot(cloned)

    assert first.commit is None  # same state as the clone's source: nothing to record
    assert len(exported_jobs(simulator)) == 1
    assert second.commit is not None
    assert read_tree(clone_dir / "repo" / "prod" / "ws") == expected_tree(simulator, WID)


def test_a_failing_batch_stops_the_downloads_ahead_and_leaves_no_archive(
    tmp_path: Path, simulator: Simulator
) -> None:
    """Batches download ahead of unpacking; when one fails, the rest are dropped cleanly.

    From the third download on, every export is unreadable: the failing batch is halved
    down to single jobs, and once several single jobs fail the fault is the service's.
    """
    simulator.add_workspace(WID, "ws")
    simulator.populate(WID, 50)
    config = make_config(
        tmp_path,
        simulator,
        {"ws": WID},
        extra_source={
            "batch_size": 5,
            "max_concurrent_requests": 3,
            "retry": {"attempts": 1, "archive_attempts": 1},
        },
    )
    calls = 0

    def break_the_third(data: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return b"not a zip" if calls >= 3 else data

    simulator.export_hook = break_the_third

    (result,) = run_snapshots(load_config(config))

    assert not result.ok
    # Downloads run side by side: the third one served may belong to batch 2, 3 or 4.
    assert re.search(r"batch \d+/10\b.*not a zip archive", result.error or "")
    assert "the fault is not one job's" in (result.error or "")
    assert list((tmp_path / "staging").iterdir()) == []  # no archive or staging left behind
    assert git(tmp_path / "repo", "log", "--format=%s").strip() == "backupd: initialise repository"
