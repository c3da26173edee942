"""The daemon plans every workspace as its own unit, discovered ones included, and a stop is
not a failure. A real `backupd run` process, the simulator over loopback HTTP, real git.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from backupd.simulator.server import Simulator
from tests.alert_receiver import AlertReceiver
from tests.e2e.daemon_process import DaemonProcess, clean_environment
from tests.e2e.test_daemon import add_workspace, log_time
from tests.e2e.test_operable_daemon import healthz, metric
from tests.gitserver import free_port
from tests.helpers import backupd_in_process, commit_count, discover_all, git, make_config

NAMES = ("sales", "finance", "risk")


def status_json(config: Path) -> tuple[int, dict[str, Any]]:
    done = backupd_in_process("status", "-c", str(config), "--json")
    return done.returncode, json.loads(done.stdout)


def peak_overlap(events: list[dict[str, Any]]) -> int:
    """The most snapshots that ran at once, from their started/finished log events."""
    moments = []
    for event in events:
        name = event.get("event")
        if name == "snapshot.started":
            moments.append((log_time(event), 1))
        elif name in ("snapshot.done", "snapshot.failed", "snapshot.interrupted"):
            moments.append((log_time(event), -1))
    running = peak = 0
    for _, step in sorted(moments, key=lambda item: (item[0], item[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_discovered_workspaces_are_units_of_their_own(tmp_path: Path, simulator: Simulator) -> None:
    for number, name in enumerate(NAMES, 1):
        add_workspace(simulator, number, name)
    simulator.export_gate.hold()  # until two snapshots are in their exports at once
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = make_config(
        tmp_path,
        simulator,
        {},
        extra_source=discover_all(simulator),
        extra={
            "daemon": {"run_at_start": True, "max_parallel": 2},
            "metrics": {"listen": f"127.0.0.1:{port}"},
        },
    )

    with DaemonProcess(config) as daemon:
        simulator.export_gate.wait_for_held(2)
        simulator.export_gate.open()
        for name in NAMES:
            daemon.wait_for(
                "snapshot.done", lambda event, n=name: event["workspace"] == f"prod/{n}"
            )
        scrape = httpx.get(f"{base}/metrics", timeout=5).text
        health = healthz(base)
        code, status = status_json(config)
        assert daemon.stop() == 0

    # Two snapshots overlapped (max_parallel 2 across discovered workspaces), never three.
    assert peak_overlap(daemon.events) == 2
    # Each workspace has its own status record and its own metrics; no "prod/*" unit.
    rows = {row["workspace"]: row for row in status["workspaces"]}
    assert set(rows) == {f"prod/{name}" for name in NAMES}
    assert all(row["state"] == "OK" for row in rows.values())
    for name in NAMES:
        labels = {"workspace": f"prod/{name}", "result": "success"}
        assert metric(scrape, "backupd_snapshots_total", **labels) == 1
    assert 'workspace="prod/*"' not in scrape
    # /healthz and status agree.
    assert health == 200
    assert code == 0
    assert commit_count(tmp_path / "repo") == 5  # README, the map, one per workspace


def test_sigterm_mid_snapshot_is_an_interruption_not_a_failure(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales", jobs=12)
    gate = simulator.export_gate
    gate.hold()
    gate.allow(1)  # three exports: the first answers, the second is held
    with AlertReceiver() as hook:
        config = make_config(
            tmp_path,
            simulator,
            {"sales": wid},
            extra_source={"batch_size": 4, "max_concurrent_requests": 1},  # three exports
            extra={
                "daemon": {"run_at_start": True},
                "alerts": {"webhook": hook.url, "timeout": 5},
            },
        )
        with DaemonProcess(config, log_level="debug") as daemon:
            daemon.wait_for("snapshot.batch")  # one export in, two to go
            gate.wait_for_held(1)
            daemon.signal(signal.SIGTERM)
            daemon.wait_for("daemon.stopping")
            gate.open()
            assert daemon.wait_exit(30) == 0
        assert daemon.named("snapshot.interrupted")
        assert not [e for e in daemon.events if str(e.get("event")).startswith("alert.")]

        code, status = status_json(config)
        (row,) = status["workspaces"]
        assert row["state"] == "INTERRUPTED"
        assert row["interrupted"] is True
        assert row["last_error"] is None
        assert commit_count(tmp_path / "repo") == 1  # nothing half-recorded

        with DaemonProcess(config) as again:
            done = again.wait_for("snapshot.done", lambda event: event["commit"] != "none")
            assert done["added"] == 12
            assert again.stop() == 0
        assert hook.events == []

    code, status = status_json(config)
    assert status["workspaces"][0]["state"] == "OK"
    assert code == 0


def test_sigterm_stops_a_one_shot_snapshot_as_interrupted(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales", jobs=12)
    gate = simulator.export_gate
    gate.hold()
    gate.allow(1)  # three exports, one at a time: the first answers, the second is held
    config = make_config(
        tmp_path,
        simulator,
        {"sales": wid},
        extra_source={"batch_size": 4, "max_concurrent_requests": 1},
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backupd",
            *("--log-format", "json", "--log-level", "debug"),
            "snapshot",
            "-c",
            str(config),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=clean_environment(),
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if '"snapshot.batch"' in line:
            gate.wait_for_held(1)
            process.send_signal(signal.SIGTERM)
            # The handler sets the stop at once; the export still held answers only after
            # that, and the stop is looked at again before any commit.
            gate.open()
            break
    lines.append(process.stderr.read())  # the same reader: nothing it buffered is lost
    process.stderr.close()
    process.wait(timeout=30)
    output = "".join(lines)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "interrupted; not snapshotted: prod/sales" in output
    assert "Traceback" not in output
    _, status = status_json(config)
    assert status["workspaces"][0]["state"] == "INTERRUPTED"
    assert git(tmp_path / "repo", "status", "--porcelain") == ""
