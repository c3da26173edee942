"""`backupd run` as a real subprocess against the simulator over loopback HTTP and real git.

Schedules are short, so that a second run comes soon; a stage that must still be under way
when something happens is held at the simulator's export gate, not slowed by a latency. Every
wait is on an event, with a timeout.
"""

from __future__ import annotations

import fcntl
import itertools
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from backupd.simulator.server import Simulator
from tests.e2e.daemon_process import DaemonProcess, NotifySocket, clean_environment
from tests.helpers import commit_count, discover_all, git, make_config, workspace_id

# Short enough that the next run comes at once; the tests wait for events, not for times.
EVERY_SECOND = {"schedule": {"interval": 0.2}}


def backupd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean_environment(),
    )


def add_workspace(
    simulator: Simulator, number: int, name: str, jobs: int = 5
) -> tuple[str, list[str]]:
    wid = workspace_id(number)
    simulator.add_workspace(wid, name)
    return wid, simulator.populate(wid, jobs)


def lock_is_held(repo: Path) -> bool:
    with open(repo / ".git" / "backupd.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def log_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def changed(count: int) -> Any:
    return lambda event: event["commit"] != "none" and event["changed"] == count


def test_daemon_snapshots_on_schedule_and_commits_a_change(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, jobs = add_workspace(simulator, 1, "sales")
    config = make_config(tmp_path, simulator, {"sales": wid}, extra=EVERY_SECOND)

    with DaemonProcess(config) as daemon:
        first = daemon.wait_for("snapshot.done", lambda event: event["commit"] != "none")
        assert first["added"] == 5
        simulator.modify_job(wid, jobs[0], user="carol")
        daemon.wait_for("snapshot.done", changed(1))
        assert daemon.stop() == 0

    repo = tmp_path / "repo"
    assert len(daemon.named("snapshot.done")) >= 2
    assert commit_count(repo) == 3  # README, first snapshot, the change
    assert (
        git(repo, "log", "-1", "--format=%s").strip() == "prod/sales: 0 added, 1 changed, 0 removed"
    )
    assert f"prod/sales/jobs/{jobs[0]}/{jobs[0]}.job" in git(repo, "show", "--name-only", "HEAD")
    assert git(repo, "status", "--porcelain") == ""


def test_workspaces_run_in_parallel_up_to_max_parallel_and_all_commit(
    tmp_path: Path, simulator: Simulator
) -> None:
    names = ("sales", "finance", "risk")
    workspaces = {name: add_workspace(simulator, i, name)[0] for i, name in enumerate(names, 1)}
    simulator.export_gate.hold()  # each snapshot stays in its export until two are there
    daemon_settings = {"run_at_start": True, "max_parallel": 2}
    config = make_config(tmp_path, simulator, workspaces, extra={"daemon": daemon_settings})

    with DaemonProcess(config) as daemon:
        simulator.export_gate.wait_for_held(2)
        first = daemon.wait_for("snapshot.started")
        daemon.wait_for("snapshot.started", after=daemon.events.index(first) + 1)
        assert len(daemon.named("snapshot.started")) == 2  # the third waits for a slot
        simulator.export_gate.open()
        for name in names:
            daemon.wait_for(
                "snapshot.done", lambda event, n=name: event["workspace"] == f"prod/{n}"
            )
        assert daemon.stop() == 0

    spans = {}
    for event in daemon.events:
        if event.get("event") in ("snapshot.started", "snapshot.done"):
            spans.setdefault(event["workspace"], []).append(log_time(event))
    moments = sorted(
        (at, +1 if i == 0 else -1) for times in spans.values() for i, at in enumerate(times)
    )
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    assert peak == 2  # two exports overlapped, never three
    repo = tmp_path / "repo"
    assert commit_count(repo) == 4  # README + one per workspace
    assert git(repo, "status", "--porcelain") == ""


def test_daemon_reports_ready_status_watchdog_and_stopping_to_systemd(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    # One run, at the start: a short schedule would make the workspace STALE on a busy
    # machine, and the STATUS line would begin with that.
    once = {"schedule": {"interval": 3600}, "daemon": {"run_at_start": True}}
    config = make_config(tmp_path, simulator, {"sales": wid}, extra=once)

    with (
        NotifySocket() as notify,
        DaemonProcess(
            config, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000"}
        ) as daemon,
    ):
        ready = notify.wait_for("READY=1")
        assert lock_is_held(tmp_path / "repo")  # READY only once the repository is ours
        notify.wait_for("STATUS=last: prod/sales ok, commit", after=ready)
        pings = notify.times_of("WATCHDOG=1")
        deadline = time.monotonic() + 5
        while len(pings) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
            pings = notify.times_of("WATCHDOG=1")
        assert len(pings) >= 4, notify.texts()
        gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
        # Pinged every 0.5 s (half of WATCHDOG_USEC; the interval itself is a unit test):
        # the median, as one ping a busy machine delays makes one gap long, the next short.
        assert 0.3 < statistics.median(gaps) < 1.0, gaps

        daemon.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", after=ready)
        assert daemon.wait_exit(15) == 0
    assert not lock_is_held(tmp_path / "repo")


def test_watchdog_is_withheld_while_a_snapshot_overruns_its_deadline(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    simulator.export_gate.hold()  # the snapshot overruns until the test lets it finish
    daemon_settings = {"run_at_start": True, "snapshot_timeout": 0.3}
    config = make_config(tmp_path, simulator, {"sales": wid}, extra={"daemon": daemon_settings})

    with (
        NotifySocket() as notify,
        DaemonProcess(
            config, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}
        ) as daemon,
    ):
        notify.wait_for("READY=1")
        simulator.export_gate.wait_for_held(1)
        overrun = daemon.wait_for("daemon.overrun")
        assert overrun["workspace"] == "prod/sales"
        unhealthy = daemon.wait_for("daemon.unhealthy")
        # Not a wait for anything: the window in which pings must be absent (five watchdog
        # intervals; on a busy machine the daemon may try fewer times, never more).
        time.sleep(1.0)
        simulator.export_gate.open()
        daemon.wait_for("snapshot.done")
        healthy = daemon.wait_for("daemon.healthy")
        # Compare on the daemon's own clock: pings are withheld from the moment it logged
        # the snapshot as overrunning until it logged it healthy again.
        withheld = (log_time(unhealthy), log_time(healthy))
        assert withheld[1] - withheld[0] >= 1.0
        assert [at for at in notify.times_of("WATCHDOG=1") if withheld[0] < at < withheld[1]] == []
        assert "UNHEALTHY: prod/sales" in " ".join(notify.texts())
        notify.wait_for("WATCHDOG=1", after=len(notify.texts()))  # and pings resume
        assert daemon.stop() == 0


def test_sighup_reloads_new_workspaces_and_keeps_running_on_a_broken_config(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid_a, _ = add_workspace(simulator, 1, "sales")
    wid_b, jobs_b = add_workspace(simulator, 2, "finance")
    config = make_config(tmp_path, simulator, {"sales": wid_a}, extra=EVERY_SECOND)

    with (
        NotifySocket() as notify,
        DaemonProcess(config, env={"NOTIFY_SOCKET": notify.address}) as daemon,
    ):
        daemon.wait_for("snapshot.done", lambda event: event["workspace"] == "prod/sales")
        make_config(tmp_path, simulator, {"sales": wid_a, "finance": wid_b}, extra=EVERY_SECOND)
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_for("daemon.reloaded")
        assert reloaded["added"] == "prod/finance"
        reloading = notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1", after=reloading)
        daemon.wait_for(
            "snapshot.done",
            lambda event: event["workspace"] == "prod/finance" and event["added"] == 5,
        )

        data = yaml.safe_load(config.read_text())
        data["sources"][0]["workspaces"][0]["schedule"] = {"cron": "0 25 * * *"}
        config.write_text(yaml.safe_dump(data))
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_for("daemon.reload_failed")
        assert "sources[0].workspaces[0].schedule.cron" in failed["error"]
        assert failed["level"] == "error"

        mark = len(daemon.events)
        simulator.modify_job(wid_b, jobs_b[0])
        daemon.wait_for(
            "snapshot.done",
            lambda event: event["workspace"] == "prod/finance" and event["changed"] == 1,
            after=mark,
        )
        assert daemon.process.poll() is None
        assert daemon.stop() == 0
    assert notify.times_of("WATCHDOG=1") == []  # no WATCHDOG_USEC, no pings

    repo = tmp_path / "repo"
    assert "prod/finance: 0 added, 1 changed" in git(repo, "log", "--format=%s")


def test_sigterm_during_a_slow_snapshot_exits_promptly_and_leaves_the_repository_clean(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales", jobs=12)
    gate = simulator.export_gate
    gate.hold()
    gate.allow(1)
    config = make_config(
        tmp_path,
        simulator,
        {"sales": wid},
        # Three exports, one at a time: the SIGTERM lands while the second is held.
        extra_source={"batch_size": 4, "max_concurrent_requests": 1},
        extra={"daemon": {"run_at_start": True}},
    )

    with DaemonProcess(config, log_level="debug") as daemon:
        daemon.wait_for("snapshot.batch")  # one export in …
        gate.wait_for_held(1)  # … the second under way, the third to come
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        daemon.wait_for("daemon.stopping")  # the stop is decided: now let the export answer
        gate.open()
        code = daemon.wait_exit(30)
        elapsed = time.monotonic() - signalled

    assert code == 0, "".join(daemon.lines)
    assert elapsed < 30
    print(f"SIGTERM to exit: {elapsed:.2f} s")
    assert daemon.named("snapshot.interrupted")
    assert not daemon.named("snapshot.done")
    assert gate.passed == 2  # the third export never started
    repo = tmp_path / "repo"
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True, timeout=30
    )
    assert fsck.returncode == 0, fsck.stderr
    assert git(repo, "status", "--porcelain", "--ignored") == ""
    assert commit_count(repo) == 1  # only the README: nothing half-recorded
    assert not any((tmp_path / "staging").iterdir())


def test_sigterm_abandons_a_stuck_export_after_stop_timeout(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    simulator.export_gate.hold()  # an API call that does not return (until the test ends)
    daemon_settings = {"run_at_start": True, "stop_timeout": 0.5}
    config = make_config(tmp_path, simulator, {"sales": wid}, extra={"daemon": daemon_settings})

    with DaemonProcess(config) as daemon:
        simulator.export_gate.wait_for_held(1)
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        code = daemon.wait_exit(15)
        elapsed = time.monotonic() - signalled

    assert code == 0, "".join(daemon.lines)
    print(f"SIGTERM to exit with a stuck export: {elapsed:.2f} s")
    assert elapsed >= 0.5  # it waited stop_timeout for the export, then gave up on it
    assert daemon.named("daemon.stop_abandoned")[0]["staging"] == "prod/sales"
    repo = tmp_path / "repo"
    assert git(repo, "status", "--porcelain", "--ignored") == ""
    assert commit_count(repo) == 1


def test_second_writer_on_a_repository_fails_fast_and_a_killed_holder_is_taken_over(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    config = make_config(tmp_path, simulator, {"sales": wid})

    with DaemonProcess(config) as first:
        first.wait_for("daemon.ready")
        for command in ("run", "snapshot"):
            started = time.monotonic()
            second = backupd(command, "-c", str(config))
            assert second.returncode == 1
            assert time.monotonic() - started < 10
            last_line = second.stderr.strip().splitlines()[-1]
            assert last_line.startswith("backupd: repository ")
            assert f"in use by another backupd (pid {first.pid})" in last_line
        first.process.kill()  # SIGKILL: no chance to release anything
        assert first.wait_exit(10) == -signal.SIGKILL

    with DaemonProcess(config) as third:
        third.wait_for("daemon.ready", timeout=15)
        assert third.stop() == 0


def test_run_with_an_invalid_config_exits_78_before_ready(tmp_path: Path) -> None:
    source = {
        "name": "prod",
        "region": "cn-north-4",
        "project_id": "0123456789abcdef0123456789abcdef",
        "auth": {"type": "token", "token": "x"},
        "workspaces": [{"id": workspace_id(1)}],
    }
    data = {"repository": {"path": "repo"}, "sources": [source], "schedule": {"cron": "@hourly"}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    with NotifySocket() as notify:
        result = subprocess.run(
            [sys.executable, "-m", "backupd", "run", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=clean_environment({"NOTIFY_SOCKET": notify.address}),
        )
        assert result.returncode == 78
        assert result.stderr.strip() == (
            "backupd: config: schedule.cron: must have 5 fields (minute hour day-of-month "
            "month day-of-week), got 1 in '@hourly'"
        )
        assert notify.texts() == []
    assert not (tmp_path / "repo").exists()


def test_help_describes_the_run_command() -> None:
    assert "run" in backupd("--help").stdout
    text = backupd("run", "--help").stdout
    for words in ("SIGTERM", "SIGHUP", "READY", "--config"):
        assert words in text


def test_daemon_discovers_workspaces_and_backs_up_a_new_one_without_a_restart(
    tmp_path: Path, simulator: Simulator
) -> None:
    add_workspace(simulator, 1, "sales")
    config = make_config(
        tmp_path, simulator, {}, extra_source=discover_all(simulator), extra=EVERY_SECOND
    )

    with DaemonProcess(config) as daemon:
        daemon.wait_for("snapshot.done", lambda event: event["workspace"] == "prod/sales")
        add_workspace(simulator, 2, "finance")
        daemon.wait_for("snapshot.done", lambda event: event["workspace"] == "prod/finance")
        assert daemon.stop() == 0

    repo = tmp_path / "repo"
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert any(s.startswith("prod/sales: 5 added") for s in subjects)
    assert any(s.startswith("prod/finance: 5 added") for s in subjects)
    assert git(repo, "status", "--porcelain") == ""


def test_daemon_tags_restore_points_as_the_history_policy_says(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, jobs = add_workspace(simulator, 1, "sales")
    extra = {**EVERY_SECOND, "history": {"tags": "every"}}
    config = make_config(tmp_path, simulator, {"sales": wid}, extra=extra)

    with DaemonProcess(config) as daemon:
        daemon.wait_for("snapshot.done", lambda event: event["commit"] != "none")
        simulator.modify_job(wid, jobs[0])
        done = daemon.wait_for("snapshot.done", changed(1))
        daemon.wait_for("tag.created", after=daemon.events.index(done))  # tagged after commit
        assert daemon.stop() == 0

    repo = tmp_path / "repo"
    tags = git(repo, "tag", "--list", "snapshot/*", "--points-at", "HEAD").split()
    assert tags, git(repo, "tag", "--list")
    assert git(repo, "cat-file", "-t", tags[0]).strip() == "tag"  # annotated
