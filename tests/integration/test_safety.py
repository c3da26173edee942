"""History stays true when the service misbehaves: partial failures, vanished jobs, listing
glitches and broken archives. Real HTTP to the simulator, real git, nothing mocked."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import Simulator
from tests.helpers import commit_count, expected_tree, git, make_config, read_tree, workspace_id

A, B = workspace_id(21), workspace_id(22)
# Small batches give several batches from few jobs; short retries keep failures quick.
# Full snapshots: these tests are about what can go wrong while exporting every job.
SOURCE = {
    "batch_size": 10,
    "incremental": False,
    "retry": {"attempts": 2, "base_delay": 0.01, "max_delay": 0.02},
}


def run(config_path: Path, **options: object) -> dict[str, SnapshotResult]:
    return {r.target.folder: r for r in run_snapshots(load_config(config_path), **options)}  # type: ignore[arg-type]


def ok(config_path: Path) -> dict[str, SnapshotResult]:
    results = run(config_path)
    assert all(r.ok for r in results.values()), {k: r.error for k, r in results.items()}
    return results


def zip_jobs(data: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name.split("/")[1] for name in archive.namelist() if name.endswith(".job")}


def export_calls(simulator: Simulator) -> list[tuple[str, ...]]:
    return [c.job_names for c in simulator.calls if c.path.endswith("/batch-export")]


@pytest.fixture
def two(fast_dir: Path, simulator: Simulator) -> Path:
    """Workspace a: 25 jobs (3 batches), workspace b: 8 jobs; one good snapshot taken."""
    simulator.add_workspace(A, "a")
    simulator.populate(A, 25)
    simulator.add_workspace(B, "b")
    simulator.populate(B, 8)
    config_path = make_config(fast_dir, simulator, {"a": A, "b": B}, extra_source=SOURCE)
    ok(config_path)
    return config_path


def state(repo: Path, folder: str) -> tuple[dict[str, bytes], str]:
    """The workspace folder's files and the last commit that touched it."""
    return read_tree(repo / "prod" / folder), last_commit(repo, folder)


def last_commit(repo: Path, folder: str, what: str = "%H") -> str:
    return git(repo, "log", "-1", f"--format={what}", "--", f"prod/{folder}").strip()


def batch_job(simulator: Simulator, wid: str, index: int) -> str:
    """The index-th BATCH job: listed by the first job-list call, so it can vanish after it."""
    jobs = simulator.jobs(wid)
    return [name for name in sorted(jobs) if jobs[name]["processType"] == "BATCH"][index]


def mutate(simulator: Simulator, wid: str) -> None:
    names = sorted(simulator.jobs(wid))
    simulator.modify_job(wid, names[0])
    simulator.modify_job(wid, names[-1])
    simulator.delete_job(wid, names[1])
    simulator.add_job(wid, next(f"new_{i}" for i in range(1000) if f"new_{i}" not in names))


# --- all-or-nothing per workspace ------------------------------------------------------------


def corrupt_when(
    predicate: Callable[[set[str]], bool], *, times: int | None = None
) -> Callable[[bytes], bytes]:
    """An export hook that cuts matching archives in half (a valid Content-Length)."""
    done = [0]

    def hook(data: bytes) -> bytes:
        if predicate(zip_jobs(data)) and (times is None or done[0] < times):
            done[0] += 1
            return data[: len(data) // 2]
        return data

    return hook


def test_a_failed_batch_leaves_its_workspace_untouched_while_others_commit(
    simulator: Simulator, two: Path
) -> None:
    repo = two.parent / "repo"
    mutate(simulator, A)
    mutate(simulator, B)
    jobs_of_a = set(simulator.jobs(A)) - set(simulator.jobs(B))  # both have a "new_0"
    seen = [0]

    def corrupt_after_two(data: bytes) -> bytes:
        # The first two archives of a are fine; from then on every archive of a is cut short,
        # so halving the batch finds no single job at fault: the fault is the service's.
        # (Batches download side by side: which batch is served third is not fixed.)
        if zip_jobs(data) & jobs_of_a:
            seen[0] += 1
            if seen[0] > 2:
                return data[: len(data) // 2]
        return data

    before_a, commits = state(repo, "a"), commit_count(repo)
    simulator.export_hook = corrupt_after_two

    results = run(two)

    assert not results["a"].ok and results["b"].ok
    error = results["a"].error or ""
    # Whichever batch was served third (any of them, side by side) is the one named.
    assert re.search(r"batch [123]/3", error) and "the fault is not one job's" in error, error
    assert state(repo, "a") == before_a  # two batches were fine: still nothing applied
    assert read_tree(repo / "prod" / "b") == expected_tree(simulator, B)
    assert commit_count(repo) == commits + 1
    assert git(repo, "status", "--porcelain") == ""

    simulator.export_hook = None
    ok(two)
    assert read_tree(repo / "prod" / "a") == expected_tree(simulator, A)


def test_a_job_whose_export_is_unreadable_is_named_and_kept_while_the_rest_commits(
    simulator: Simulator, two: Path
) -> None:
    repo = two.parent / "repo"
    edited = sorted(simulator.jobs(A))[0]
    before = read_tree(repo / "prod" / "a")
    mutate(simulator, A)  # edits 'edited' too
    simulator.export_hook = corrupt_when(lambda jobs: edited in jobs)
    simulator.clear_calls()

    results = run(two)

    result = results["a"]
    assert result.ok and result.partial and result.commit is not None
    (problem,) = result.problems
    assert problem.startswith(f"job {edited}: could not be exported: batch 1/3")
    assert "its previous version is kept" in problem
    tree = read_tree(repo / "prod" / "a")
    expected = expected_tree(simulator, A)
    mine = f"jobs/{edited}/"
    assert {p: v for p, v in tree.items() if not p.startswith(mine)} == {
        p: v for p, v in expected.items() if not p.startswith(mine)
    }
    assert {p: v for p, v in tree.items() if p.startswith(mine)} == {
        p: v for p, v in before.items() if p.startswith(mine)
    }
    message = git(repo, "log", "-1", "--format=%B", "--", "prod/a")
    assert edited not in message  # not recorded as changed, nor as deleted
    # Halving found it: fewer calls than one per job (each broken piece is tried twice).
    only_a = set(simulator.jobs(A)) - set(simulator.jobs(B))
    calls_of_a = [names for names in export_calls(simulator) if only_a & set(names)]
    assert len(calls_of_a) < len(simulator.jobs(A))

    simulator.export_hook = None
    ok(two)  # the next snapshot exports it again
    assert read_tree(repo / "prod" / "a") == expected_tree(simulator, A)


def test_a_listing_that_keeps_failing_touches_nothing(simulator: Simulator, two: Path) -> None:
    repo = two.parent / "repo"
    mutate(simulator, A)
    head = git(repo, "rev-parse", "HEAD")
    simulator.faults.error_rate = 1.0

    results = run(two)

    assert [r.ok for r in results.values()] == [False, False]
    assert all("HTTP 50" in (r.error or "") for r in results.values())
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


def test_a_broken_archive_is_downloaded_again_before_giving_up(
    simulator: Simulator, two: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = two.parent / "repo"
    mutate(simulator, B)
    simulator.export_hook = corrupt_when(lambda jobs: bool(jobs & set(simulator.jobs(B))), times=1)
    simulator.clear_calls()

    with caplog.at_level(logging.WARNING):
        results = run(two)

    assert results["b"].ok
    assert read_tree(repo / "prod" / "b") == expected_tree(simulator, B)
    b_exports = [names for names in export_calls(simulator) if set(names) <= set(simulator.jobs(B))]
    assert len(b_exports) == 2  # the cut one, then a good one
    assert "snapshot.archive_retry" in caplog.messages

    # Every download broken: bounded by retry.archive_attempts, then halved (each piece tried
    # once) in search of one job at fault; none is, so the workspace fails.
    mutate(simulator, B)
    simulator.export_hook = corrupt_when(lambda jobs: bool(jobs & set(simulator.jobs(B))))
    simulator.clear_calls()
    before = state(repo, "b")
    results = run(two)
    assert not results["b"].ok and "not a zip archive or truncated" in (results["b"].error or "")
    assert "the fault is not one job's" in (results["b"].error or "")
    b_calls = len(export_calls(simulator)) - 3  # a: 3 batches
    assert 2 < b_calls <= 2 + 2 * len(simulator.jobs(B)) - 2  # 2 downloads, then the halves
    assert state(repo, "b") == before


# --- jobs that vanish between listing and export ---------------------------------------------


def test_a_job_deleted_after_listing_is_isolated_and_recorded_as_deleted(
    simulator: Simulator, two: Path
) -> None:
    repo = two.parent / "repo"
    names = sorted(simulator.jobs(A))
    doomed = batch_job(simulator, A, 12)  # in batch 2 of 3
    simulator.faults.delete_after_listing = [doomed]
    simulator.clear_calls()

    results = run(two)

    assert results["a"].ok, results["a"].error
    assert doomed not in simulator.jobs(A)
    assert read_tree(repo / "prod" / "a") == expected_tree(simulator, A)
    assert last_commit(repo, "a", "%s") == "prod/a: 0 added, 0 changed, 1 removed"
    exports = [c for c in simulator.calls if c.path.endswith("/batch-export") and c.workspace == A]
    rejected = [c.job_names for c in exports if c.status == 400]
    assert rejected[-1] == (doomed,)  # bisected down to the one name
    assert len(exports) <= 3 + 2 * 4  # 3 batches + two halves per level, log2(10) < 4
    exported = {n for c in exports if c.status == 200 for n in c.job_names}
    assert exported == set(names) - {doomed}  # every other job of the batch still exported
    assert doomed not in (repo / "prod" / "a" / ".backupd" / "index.json").read_text()


def test_a_rejected_job_that_still_exists_is_kept_and_named_while_the_rest_commits(
    simulator: Simulator, two: Path
) -> None:
    # Export refused a job (DLF.0100) that the show call then finds: not a deletion. One bad
    # item never blocks the rest (promise 2): it keeps its committed version, is named, and
    # everything else is committed.
    repo = two.parent / "repo"
    doomed = batch_job(simulator, A, 2)  # batch 1: batches 2 and 3 follow its isolation
    definition = simulator.jobs(A)[doomed]
    edited = batch_job(simulator, A, -1)
    simulator.modify_job(A, edited)

    def reappear(data: bytes) -> bytes:
        isolated = any(
            c.job_names == (doomed,) and c.status == 400 for c in simulator.calls if c.job_names
        )
        if isolated and doomed not in simulator.jobs(A):
            simulator.add_job(A, doomed, job_type=definition["processType"])
        return data

    simulator.faults.delete_after_listing = [doomed]
    simulator.export_hook = reappear
    before = read_tree(repo / "prod" / "a")

    results = run(two)

    assert results["a"].partial and results["b"].ok and not results["b"].partial
    assert any(doomed in problem for problem in results["a"].problems)
    after = read_tree(repo / "prod" / "a")
    assert {p: b for p, b in after.items() if f"jobs/{doomed}/" in p} == {
        p: b for p, b in before.items() if f"jobs/{doomed}/" in p
    }
    assert after[f"jobs/{edited}/{edited}.job"] != before[f"jobs/{edited}/{edited}.job"]
    assert last_commit(repo, "a", "%s") == "prod/a: 0 added, 1 changed, 0 removed"

    simulator.export_hook = None  # the next snapshot records the job as it is now
    assert not ok(two)["a"].partial
    assert read_tree(repo / "prod" / "a") == expected_tree(simulator, A)


# --- listing glitches and the deletion guard -------------------------------------------------


@pytest.mark.parametrize("empty_calls", [2, 1])
def test_a_transient_empty_listing_records_no_deletion(
    simulator: Simulator,
    two: Path,
    caplog: pytest.LogCaptureFixture,
    empty_calls: int,
) -> None:
    repo = two.parent / "repo"
    before, head = state(repo, "a"), git(repo, "rev-parse", "HEAD")
    # Empty job listing(s) for workspace a only: both types, or just BATCH (most jobs).
    simulator.faults.empty_listings = empty_calls

    with caplog.at_level(logging.WARNING):
        results = run(two, only=["a"])

    assert results["a"].ok and results["a"].partial
    assert "BATCH jobs: the list left out" in results["a"].problems[0]
    assert "snapshot.unconfirmed" in caplog.messages
    assert state(repo, "a") == before and git(repo, "rev-parse", "HEAD") == head

    mutate(simulator, A)  # the next normal snapshot proceeds as if nothing happened
    assert ok(two)["a"].commit is not None
    assert read_tree(repo / "prod" / "a") == expected_tree(simulator, A)
    assert "1 removed" in git(repo, "log", "-1", "--format=%s")


def test_real_mass_deletions_need_an_explicit_allowance(simulator: Simulator, two: Path) -> None:
    repo = two.parent / "repo"
    for name in sorted(simulator.jobs(B))[:5]:  # 5 of 8: more than half
        simulator.delete_job(B, name)
    before = state(repo, "b")

    refused = run(two)["b"]
    assert not refused.ok and "5 of 8 BATCH jobs would be deleted" in (refused.error or "")
    assert state(repo, "b") == before

    allowed = run(two, allow_mass_delete=True)["b"]
    assert allowed.ok and allowed.commit is not None
    assert read_tree(repo / "prod" / "b") == expected_tree(simulator, B)

    simulator.populate(B, 5)
    ok(two)
    for name in sorted(simulator.jobs(B))[:4]:  # 4 of 8: half, no allowance needed
        simulator.delete_job(B, name)
    assert ok(two)["b"].commit is not None
    assert read_tree(repo / "prod" / "b") == expected_tree(simulator, B)


def test_config_can_allow_mass_deletion(fast_dir: Path, simulator: Simulator) -> None:
    simulator.add_workspace(B, "b")
    simulator.populate(B, 10)
    config_path = make_config(
        fast_dir, simulator, {"b": B}, extra={"safety": {"allow_mass_delete": True}}
    )
    ok(config_path)
    for name in sorted(simulator.jobs(B)):
        simulator.delete_job(B, name)
    assert ok(config_path)["b"].commit is not None
    assert not list((fast_dir / "repo" / "prod" / "b").glob("jobs/*"))
