"""kill -9 at random moments: the next run always recovers and the history stays true.

`backupd snapshot` runs as a subprocess and is killed with SIGKILL — after a seeded random
delay, in an export held slow, or inside a commit held by a git hook — sometimes its whole
process group (git children die with it, as under systemd),
sometimes only the backupd process (its git child lives on as an orphan). After every kill a
normal snapshot must succeed, `git fsck --strict` must be clean and each workspace folder
must equal the simulator's state.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import expected_tree, git, make_config, read_tree, workspace_id

WORKSPACES = {"a": workspace_id(51), "b": workspace_id(52)}
RUNS = 9  # three kills in each of the three stages
# The last event a killed run logged tells how far it got.
STAGES = {
    "snapshot.listed": "export",
    "snapshot.batch": "export",
    "snapshot.apply": "apply+commit",
    "snapshot.done": "between workspaces",
}


def start(config: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "backupd", "--log-level", "debug", "--log-format", "json"]
    return subprocess.Popen(
        [*command, "snapshot", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, git children included
    )


def events(stderr: str) -> list[str]:
    return [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]


def wait_for(process: subprocess.Popen[str], event: str, count: int) -> str:
    """Read the log until ``event`` has appeared ``count`` times; return what was read."""
    assert process.stderr is not None
    seen, read = 0, []
    while seen < count and (line := process.stderr.readline()):
        read.append(line)
        seen += line.startswith("{") and json.loads(line)["event"] == event
    return "".join(read)


def mutate(simulator: Simulator, rng: random.Random, round_: int) -> None:
    for wid in WORKSPACES.values():
        names = sorted(simulator.jobs(wid))
        for name in rng.sample(names, 6):
            simulator.modify_job(wid, name)
        simulator.delete_job(wid, names[round_ % len(names)])
        simulator.rename_job(wid, names[(round_ + 7) % len(names)], f"renamed_{round_}")
        simulator.add_job(wid, f"added_{round_}", scripts=[f"script_{round_}"])
        script = rng.choice(sorted(simulator.scripts(wid)))
        simulator.set_script(wid, script, f"SELECT {round_};\n")


def test_kill_9_at_any_moment_is_recovered_by_the_next_run(
    fast_dir: Path, simulator: Simulator
) -> None:
    rng = random.Random(1009)
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 24)
    simulator.faults.export_latency = 0.03  # slow enough to be caught at every stage
    config = make_config(fast_dir, simulator, WORKSPACES, extra_source={"batch_size": 8})
    repo, staging = fast_dir / "repo", fast_dir / "staging"
    assert all(r.ok for r in run_snapshots(load_config(config)))

    # Calibrate on this machine: how long does an unkilled run take?
    mutate(simulator, rng, 0)
    started = time.monotonic()
    process = start(config)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    finish = time.monotonic() - started
    assert events(stderr).count("snapshot.apply") == 2

    hook = repo / ".git" / "hooks" / "reference-transaction"  # git runs it in every commit
    outcomes: collections.Counter[str] = collections.Counter()
    leftovers: collections.Counter[str] = collections.Counter()
    for round_ in range(1, RUNS + 1):
        mutate(simulator, rng, round_)
        whole_group = rng.random() < 0.5
        read = ""
        stage = round_ % 3
        if stage == 0:  # exporting: a slow export holds it there, however busy the machine
            simulator.faults.export_latency = 0.5
        elif stage == 2:  # committing: git holds it there, in its ref update
            hook.write_text("#!/bin/sh\nsleep 0.5\ncat > /dev/null\n")
            hook.chmod(0o755)
        process = start(config)
        if stage == 1:  # anywhere in the run
            time.sleep(rng.uniform(0.0, finish))
        elif stage == 0:
            read = wait_for(process, "snapshot.batch", 1)
        else:
            read = wait_for(process, "snapshot.apply", rng.choice((1, 2)))
            time.sleep(rng.uniform(0.0, 0.2))
        if whole_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        _, stderr = process.communicate(timeout=60)
        simulator.faults.export_latency = 0.03
        hook.unlink(missing_ok=True)
        reached = [STAGES[e] for e in events(read + stderr) if e in STAGES]
        outcomes["finished" if process.returncode == 0 else (reached or ["startup"])[-1]] += 1
        leftovers.update(lock.name for lock in (repo / ".git").rglob("*.lock"))
        leftovers["staging"] += len(list(staging.glob("backupd-staging-*")))

        results = run_snapshots(load_config(config))

        assert all(r.ok for r in results), (round_, [r.error for r in results])
        fsck = subprocess.run(
            ["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        for name, wid in WORKSPACES.items():
            assert read_tree(repo / "prod" / name) == expected_tree(simulator, wid), round_
        assert git(repo, "status", "--porcelain", "--ignored") == ""
        assert not list(staging.iterdir())
        assert not [p for p in (repo / ".git").rglob("*.lock") if p.name != "backupd.lock"]

    print(f"\nkill -9 outcomes: {dict(outcomes)}; left behind: {dict(leftovers)}")
    # The kills really landed in different stages, the dangerous one included (the slow
    # export and the slow ref update make sure of it whatever the machine's load).
    assert outcomes["export"] and outcomes["apply+commit"]
