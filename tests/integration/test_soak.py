"""Fault soak: a bad day at the service, six snapshots long.

Two workspaces of 120 jobs; the simulator answers 10% of calls with 5xx, throttles above
10 requests/s (the client is allowed 15/s of each kind, so it does get throttled) and cuts
20% of export bodies short. Between snapshots jobs are modified, added, deleted and renamed and
shared scripts change. Whatever each snapshot reports, the history must stay true:

* a workspace reported as snapshotted holds exactly the simulator's state;
* a workspace reported as failed is exactly as it was before;
* no commit ever removes a job that still exists, or touches two workspaces.

The service's throttle bounds the duration: every snapshot needs about 12 successful calls
(per workspace: BATCH and REAL_TIME listings with page_size 1000, one script page, two
exports), about 1.2 s at 10/s. Retry delays come from the config, kept short.
"""

from __future__ import annotations

import collections
import logging
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import (
    FAST_RATES,
    VirtualClock,
    expected_tree,
    git,
    make_config,
    read_tree,
    workspace_id,
)

WORKSPACES = {"alpha": workspace_id(61), "beta": workspace_id(62)}
SNAPSHOTS = 6
SOURCE = {
    # Every job exported every time: the soak is about the export path under faults
    # (test_incremental proves incremental snapshots equal full ones).
    "incremental": False,
    "page_size": 1000,
    "rates": dict.fromkeys(FAST_RATES, 15),
    "retry": {"attempts": 10, "base_delay": 0.02, "max_delay": 0.3, "max_retry_after": 0.5},
}


def mutate(simulator: Simulator, rng: random.Random, round_: int) -> None:
    for wid in WORKSPACES.values():
        names = sorted(simulator.jobs(wid))
        doomed = rng.sample(names, 3)
        for name in rng.sample(sorted(set(names) - set(doomed)), 5):
            simulator.modify_job(wid, name, user=rng.choice(("li.wei", "zhang.min")))
        for name in doomed[:2]:
            simulator.delete_job(wid, name)
        simulator.rename_job(wid, doomed[2], f"{doomed[2]}_v{round_}")
        simulator.add_job(wid, f"soak_{round_}_a", scripts=[f"soak_script_{round_}"])
        simulator.add_job(wid, f"soak_{round_}_b", job_type="REAL_TIME")
        shared = rng.choice(sorted(simulator.scripts(wid)))
        simulator.set_script(wid, shared, f"SELECT {round_} AS soak;\n")


def removed_jobs(repo: Path, commit: str) -> tuple[set[str], set[str]]:
    """(workspace folders a commit touches, "folder/job" of each .job file it deletes)."""
    output = git(repo, "diff-tree", "--no-commit-id", "--no-renames", "--name-status", "-r", commit)
    folders, removed = set(), set()
    for line in output.splitlines():
        status, path = line.split("\t", 1)
        parts = path.split("/")
        folders.add(parts[1])
        if status == "D" and path.endswith(".job") and parts[2] == "jobs":
            removed.add(f"{parts[1]}/{parts[3]}")
    return folders, removed


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def simulator(clock: VirtualClock) -> Iterator[Simulator]:
    """Throttling in the clock the client is paced by: waits cost no real time."""
    with Simulator(rate_clock=clock.monotonic) as running:
        yield running


def test_fault_soak_never_records_a_false_state(
    fast_dir: Path, simulator: Simulator, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(7)
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 120, scripts=60)  # one page of scripts per listing
    config = load_config(make_config(fast_dir, simulator, WORKSPACES, extra_source=SOURCE))
    repo = fast_dir / "repo"
    simulator.faults.error_rate = 0.10
    simulator.faults.throttle_rps = 10
    simulator.faults.truncate_rate = 0.20
    simulator.faults.retry_after = 0.2

    outcome: collections.Counter[str] = collections.Counter()
    retries = deletions_recorded = 0
    head = None
    for round_ in range(SNAPSHOTS):
        if round_:
            mutate(simulator, rng, round_)
        before = {name: read_tree(repo / "prod" / name) for name in WORKSPACES}

        with caplog.at_level(logging.WARNING):
            results = run_snapshots(config, client_factory=clock.client_factory())

        for result in results:
            folder = result.target.folder
            stored = read_tree(repo / "prod" / folder)
            if result.ok:
                assert stored == expected_tree(simulator, WORKSPACES[folder]), (round_, folder)
            else:
                assert stored == before[folder], (round_, folder, result.error)
            outcome["ok" if result.ok else "failed"] += 1
            retries += result.retries
        assert git(repo, "status", "--porcelain") == ""
        new_head = git(repo, "rev-parse", "HEAD").strip()
        span = f"{head}..{new_head}" if head else new_head
        for commit in git(repo, "rev-list", span).split():
            folders, removed = removed_jobs(repo, commit)
            assert len(folders) <= 1, (commit, folders)  # the README commit shows none
            for entry in removed:
                folder, job = entry.split("/", 1)
                assert job not in simulator.jobs(WORKSPACES[folder]), (round_, entry)
            deletions_recorded += len(removed)
        head = new_head

    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr
    served = collections.Counter(record.status for record in simulator.served)
    retry_errors = [
        str(getattr(r, "backupd_fields", {}).get("error", ""))
        for r in caplog.records
        if r.getMessage() == "api.retry"
    ]
    truncations = sum("peer closed" in e or "cut short" in e for e in retry_errors)
    print(  # the numbers are the point of a soak
        f"\nsoak: workspace snapshots {dict(outcome)}, retries {retries} "
        f"(throttled {served[429]}, 5xx {served[500] + served[503]}, cut short {truncations}), "
        f"deletions recorded {deletions_recorded}, requests {sum(served.values())}, "
        f"virtual seconds slept {clock.slept:.1f}"
    )
    # The faults really happened, and the checks above were not vacuous.
    assert served[429] and served[500] + served[503] and truncations
    assert outcome["ok"] >= 0.8 * 2 * SNAPSHOTS
    assert deletions_recorded >= 2 * (SNAPSHOTS - 1)
