"""History stays true under a random fault schedule (issue "History stays true under
glitches"): many snapshot runs over three small workspaces, the service glitching (empty
pages, lowered or raised totals, rows left out, a bad offset probe), failing (5xx, 429),
cutting export bodies short and losing jobs between listing and export, while jobs, scripts
and resources are added, changed and deleted between runs.

After every run, each workspace folder (the commit the run made, if any) is checked against
the simulator's content before and after the run (nothing changes during a run except jobs
the schedule deletes right after their listing):

* a failed snapshot left the folder as it was;
* a full success (ok, no problems) holds exactly the service's content;
* any success holds no item the service did not hold (no false addition), no content the
  service never had (each item as before or after the run, or as committed: kept), and
  lacks no item the service still holds (no false deletion).

The schedule is drawn from the seed in the test id: a failure names its seed and run.
Threads (pages side by side, retries) decide which call a random 5xx hits, so a rerun may
take another path through the same schedule; every path must hold the promises.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult, WorkspaceTarget
from backupd.simulator.server import Glitch, Simulator
from backupd.store.names import stem_of
from tests.helpers import VirtualClock, expected_tree, make_config, read_tree, workspace_id

SEEDS = (11, 23, 37)
RUNS = 10  # per seed, after the first clean snapshot
WORKSPACES = {f"w{n}": workspace_id(60 + n) for n in (1, 2, 3)}
SOURCE: dict[str, Any] = {
    "page_size": 4,  # several pages from few items: later pages and probes get glitched
    "batch_size": 4,
    "retry": {"attempts": 4, "base_delay": 0.001, "max_delay": 0.005},
}

CHANGES = (
    *("add", "add", "modify", "modify", "delete", "rename"),
    *("script", "script", "new script", "drop script", "resource"),
)
Item = tuple[str, str]  # ("job" | "script" | "resource", name)


def items(tree: dict[str, bytes]) -> dict[Item, dict[str, bytes]]:
    """A workspace tree's files, grouped by the item they belong to."""
    grouped: dict[Item, dict[str, bytes]] = defaultdict(dict)
    for path, data in tree.items():
        top, _, rest = path.partition("/")
        if top == "jobs":
            name = rest.split("/", 1)[0] if "/" in rest else stem_of(rest)
            grouped[("job", name)][path] = data
        elif top == "scripts":
            grouped[("script", stem_of(rest))][path] = data
        elif top == "resources":
            grouped[("resource", stem_of(rest))][path] = data
        else:
            grouped[("file", path)][path] = data
    return dict(grouped)


def violations(
    where: str,
    result: SnapshotResult,
    previous: dict[str, bytes],
    before: dict[str, bytes],
    after: dict[str, bytes],
    now: dict[str, bytes],
) -> list[str]:
    """What is wrong with the folder ``now`` (see the module docstring)."""
    if not result.ok:
        return [] if now == previous else [f"{where}: failed ({result.error}) yet changed"]
    found = []
    if not result.partial and now != after:
        wrong = sorted(set(now.items()) ^ set(after.items()))[:3]
        found.append(f"{where}: full success but not exact: {[p for p, _ in wrong]}")
    held, had, service_before, service_after = (
        items(now),
        items(previous),
        items(before),
        items(after),
    )
    for item, files in held.items():
        allowed = [service_before.get(item), service_after.get(item), had.get(item)]
        if files not in allowed:
            kind = "addition" if all(a is None for a in allowed) else "content"
            found.append(f"{where}: false {kind}: {item}")
    for item in had.keys() & service_after.keys() - held.keys():
        found.append(f"{where}: false deletion: {item} (partial: {result.problems})")
    return found


class Schedule:
    """Random changes between runs and random faults during them, from one seed."""

    def __init__(self, simulator: Simulator, seed: int) -> None:
        self.sim = simulator
        self.rng = random.Random(seed)
        self.faults = 0
        self.kinds: dict[str, int] = defaultdict(int)

    def populate(self) -> None:
        for name, wid in WORKSPACES.items():
            self.sim.add_workspace(wid, name)
            jobs = self.rng.randint(6, 12)
            self.sim.populate(wid, jobs, realtime_fraction=0.3, resources=self.rng.randint(0, 3))

    def change(self) -> None:
        """0-3 changes per workspace: jobs added, edited, renamed, deleted; scripts changed,
        added, deleted; resources added, changed, deleted."""
        rng = self.rng
        for wid in WORKSPACES.values():
            for _ in range(rng.randint(0, 3)):
                jobs = sorted(self.sim.jobs(wid))
                scripts = sorted(self.sim.scripts(wid))
                resources = sorted(self.sim.resources(wid))
                what = rng.choice(CHANGES)
                fresh = f"job_{rng.randint(0, 10**6)}"
                if what == "add" or not jobs:
                    uses = rng.sample(scripts, min(len(scripts), rng.randint(0, 2)))
                    job_type = rng.choice(["BATCH", "BATCH", "REAL_TIME"])
                    self.sim.add_job(wid, fresh, job_type=job_type, scripts=uses)
                elif what == "modify":
                    self.sim.modify_job(wid, rng.choice(jobs))
                elif what == "delete":
                    self.sim.delete_job(wid, rng.choice(jobs))
                elif what == "rename":
                    self.sim.rename_job(wid, rng.choice(jobs), fresh)
                elif what == "script" and scripts:
                    body = f"-- edit {rng.randint(0, 10**6)}\nSELECT 1;\n"
                    self.sim.set_script(wid, rng.choice(scripts), body)
                elif what == "new script":
                    self.sim.set_script(wid, f"s_{rng.randint(0, 10**6)}", "SELECT 3;\n")
                elif what == "drop script" and scripts:
                    self.sim.delete_script(wid, rng.choice(scripts))
                elif resources and rng.random() < 0.5:
                    if rng.random() < 0.5:
                        self.sim.delete_resource(wid, rng.choice(resources))
                    else:
                        self.sim.modify_resource(wid, rng.choice(resources))
                else:
                    self.sim.add_resource(wid, f"r_{rng.randint(0, 10**6)}")

    def arm(self) -> None:
        """1-4 faults for the next run. At most one glitch per list, and an empty answer
        fires once: a list that answers empty twice in a row while the last commit holds
        none of it is indistinguishable from an empty list (deletions.py)."""
        rng, faults = self.rng, self.sim.faults
        lists = ["BATCH", "REAL_TIME", "jobs", "scripts", "resources"]
        for _ in range(rng.randint(1, 4)):
            fault = rng.choice(["glitch"] * 5 + ["5xx", "429", "truncate", "vanish"])
            self.faults += 1
            self.kinds[fault] += 1
            if fault == "glitch" and lists:
                where = rng.choice(lists)
                lists = [
                    other
                    for other in lists
                    if other != where
                    and not ({where, other} & {"jobs"} and {where, other} & {"BATCH", "REAL_TIME"})
                ]
                kind = rng.choice(["empty", "total", "drop"])
                faults.glitches.append(
                    Glitch(
                        where,
                        kind,
                        offset=rng.choice([None, None, 0, 1, 2]),
                        skip=rng.choice([0, 0, 1, 2]),
                        total=rng.choice([0, 1, 4, 8, 50]),
                        rows=rng.randint(1, 3),
                        times=1 if kind == "empty" else rng.randint(1, 2),
                    )
                )
            elif fault == "5xx":
                faults.error_rate = rng.choice([0.03, 0.06, 0.1])
            elif fault == "429":
                faults.throttle_rps = rng.choice([20, 40])
                faults.retry_after = 0.01
            elif fault == "truncate":
                faults.truncate_rate = rng.choice([0.2, 0.4])
            else:
                wid = rng.choice(list(WORKSPACES.values()))
                jobs = sorted(self.sim.jobs(wid))
                if jobs:
                    faults.delete_after_listing.append(rng.choice(jobs))

    def disarm(self) -> None:
        faults = self.sim.faults
        with self.sim._lock:
            faults.glitches.clear()
            faults.delete_after_listing.clear()
        for field in ("error_rate", "throttle_rps", "truncate_rate"):
            setattr(faults, field, 0.0)


@pytest.fixture(params=SEEDS, ids=lambda seed: f"seed-{seed}")
def seed(request: pytest.FixtureRequest) -> Iterator[int]:
    yield request.param


def test_history_stays_true_under_a_random_fault_schedule(tmp_path: Path, seed: int) -> None:
    offset_mode = random.Random(seed).choice(["page", "record"])
    clock = VirtualClock()  # throttled and backed off in virtual time: no real waits
    with Simulator(  # type: ignore[arg-type]
        seed=seed, offset_mode=offset_mode, rate_clock=clock.monotonic
    ) as simulator:
        schedule = Schedule(simulator, seed)
        schedule.populate()
        source = {**SOURCE, "full_every": random.Random(seed).choice([0, 86400])}
        config = load_config(
            make_config(
                tmp_path,
                simulator,
                WORKSPACES,
                extra_source=source,
                extra={"daemon": {"max_parallel": 1}},
            )
        )
        repo = tmp_path / "repo" / "prod"
        first = run_snapshots(config, client_factory=clock.client_factory())
        assert all(r.ok and not r.partial for r in first), [r.error for r in first]
        found: list[str] = []
        outcomes: dict[str, int] = defaultdict(int)
        for number in range(1, RUNS + 1):
            schedule.change()
            previous = {name: read_tree(repo / name) for name in WORKSPACES}
            before = {name: expected_tree(simulator, wid) for name, wid in WORKSPACES.items()}
            schedule.arm()
            results = {
                r.target.folder: r
                for r in run_snapshots(config, client_factory=clock.client_factory())
            }
            schedule.disarm()
            for name, wid in WORKSPACES.items():
                result = results[name]
                outcomes["failed" if not result.ok else "partial" if result.partial else "ok"] += 1
                found += violations(
                    f"seed {seed} run {number} {name}",
                    result,
                    previous[name],
                    before[name],
                    expected_tree(simulator, wid),
                    read_tree(repo / name),
                )
        print(  # shown with -s: what the schedule exercised
            f"seed {seed}: {RUNS} runs x {len(WORKSPACES)} workspaces, {schedule.faults} "
            f"faults {dict(schedule.kinds)}, outcomes {dict(outcomes)}, violations {len(found)}"
        )
        assert found == []
        # Without faults, every workspace ends exact.
        final = run_snapshots(config, client_factory=clock.client_factory())
        assert all(r.ok for r in final)
        for name, wid in WORKSPACES.items():
            assert read_tree(repo / name) == expected_tree(simulator, wid), name


def test_the_checker_sees_false_deletions_additions_and_content() -> None:
    ok = SnapshotResult(WorkspaceTarget("prod", "0" * 32, "x"), ok=True)
    partial = dataclasses.replace(ok, problems=("kept",))
    job = {"jobs/a/a.job": b"1"}
    other = {"jobs/b/b.job": b"2"}
    assert violations("x", ok, job, job, job, job) == []
    assert violations("x", partial, job | other, job | other, job | other, job) == [
        "x: false deletion: ('job', 'b') (partial: ('kept',))"
    ]
    assert violations("x", partial, job, job, job, job | {"jobs/c/c.job": b"3"}) == [
        "x: false addition: ('job', 'c')"
    ]
    assert violations("x", partial, job, job, job, {"jobs/a/a.job": b"9"}) == [
        "x: false content: ('job', 'a')"
    ]
    assert violations("x", ok, job, job, job | other, job) == [
        "x: full success but not exact: ['jobs/b/b.job']"
    ]
    failed = dataclasses.replace(ok, ok=False, error="boom")
    assert violations("x", failed, job, job, job, other) == ["x: failed (boom) yet changed"]
