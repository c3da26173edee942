"""`backupd run` tells whether backups happen: /metrics, /healthz, alerts, and a status that
outlives the daemon. A real daemon process, the simulator over HTTP, a webhook receiver on
loopback, real git; schedules of 1 s so that "stale" (two periods without a success) comes
within seconds.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import yaml

from backupd.simulator.server import Simulator
from tests.alert_receiver import AlertReceiver
from tests.e2e.daemon_process import DaemonProcess
from tests.e2e.test_daemon import add_workspace, backupd
from tests.gitserver import bare_repository, free_port
from tests.helpers import backupd_in_process, git, make_config

LABEL = "prod/sales"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match[3])
    return 0.0


def wait_until(condition: Callable[[], bool], *, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def healthz(base: str) -> int:
    return httpx.get(f"{base}/healthz", timeout=5).status_code


def test_metrics_healthz_alerts_and_status_across_a_failure_and_a_restart(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales", jobs=6)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with AlertReceiver() as hook:
        config = make_config(
            tmp_path,
            simulator,
            {"sales": wid},
            # Full snapshots, so that every one exports (and moves the export counters).
            extra_source={"batch_size": 4, "incremental": False},
            extra={
                "schedule": {"interval": 1},
                "daemon": {"run_at_start": True},
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "alerts": {"webhook": hook.url, "timeout": 5},
            },
        )

        with DaemonProcess(config) as daemon:
            first = daemon.wait_for("snapshot.done")
            scrape = httpx.get(f"{base}/metrics", timeout=5).text
            assert metric(scrape, "backupd_snapshots_total", workspace=LABEL, result="success") >= 1
            assert metric(scrape, "backupd_exported_jobs_total", workspace="prod/sales") >= 6
            assert metric(scrape, "backupd_exported_bytes_total", workspace="prod/sales") > 1000
            assert metric(scrape, "backupd_api_requests_total", source="prod", status="200") >= 5
            assert metric(scrape, "backupd_snapshot_duration_seconds_count", workspace=LABEL) >= 1
            success_at = metric(
                scrape, "backupd_last_success_timestamp_seconds", workspace="prod/sales"
            )
            assert abs(success_at - time.time()) < 30
            assert healthz(base) == 200
            assert first["jobs"] == 6
            # The next snapshot moves the counters (read until it has: on a busy machine
            # the scrape above may already count a second snapshot).
            counters = (
                ("backupd_snapshots_total", {"workspace": LABEL, "result": "success"}),
                ("backupd_exported_jobs_total", {"workspace": LABEL}),
                ("backupd_api_requests_total", {"source": "prod", "status": "200"}),
            )

            def moved() -> bool:
                again = httpx.get(f"{base}/metrics", timeout=5).text
                return all(
                    metric(again, name, **labels) > metric(scrape, name, **labels)
                    for name, labels in counters
                )

            wait_until(moved, what="the counters of the next snapshot")

            # The workspace's source starts failing (403: the IAM user lost its role) …
            simulator.faults.forbidden_workspaces = [wid]
            failure = hook.wait_for("failure")
            assert failure["workspace"] == "prod/sales"
            assert "HTTP 403" in failure["last_error"]
            # … for longer than two intervals: stale, and /healthz says so.
            wait_until(lambda: healthz(base) == 503, what="/healthz 503")
            hook.wait_for("stale")
            response = httpx.get(f"{base}/healthz", timeout=5)
            assert "stale: prod/sales" in response.text
            scrape = httpx.get(f"{base}/metrics", timeout=5).text
            assert metric(scrape, "backupd_snapshots_total", workspace=LABEL, result="failure") >= 2
            assert metric(scrape, "backupd_workspace_stale", workspace="prod/sales") == 1
            assert daemon.stop() == 0

        # Between daemons: the status is on disk, and says STALE.
        status = backupd_in_process("status", "-c", str(config), "--json")
        assert status.returncode == 1, status.stderr
        (record,) = json.loads(status.stdout)["workspaces"]
        assert record["state"] == "STALE"
        assert record["failures"] >= 2 and "HTTP 403" in record["last_error"]
        assert record["last_commit"] and record["alerted"] == "stale"
        table = backupd_in_process("status", "-c", str(config)).stdout
        assert "prod/sales  STALE" in table and "last error" in table

        with DaemonProcess(config) as daemon:
            daemon.wait_for("daemon.ready")
            # The restarted daemon knows the last success and that it already alerted.
            assert healthz(base) == 503
            scrape = httpx.get(f"{base}/metrics", timeout=5).text
            restored = metric(
                scrape, "backupd_last_success_timestamp_seconds", workspace="prod/sales"
            )
            last_success = datetime.fromisoformat(record["last_success"]).timestamp()
            assert restored == last_success >= int(success_at)
            daemon.wait_for("snapshot.failed")
            simulator.faults.forbidden_workspaces = []
            recovery = hook.wait_for("recovery")
            assert recovery["workspace"] == "prod/sales" and recovery["last_error"] is None
            wait_until(lambda: healthz(base) == 200, what="/healthz 200 after recovery")
            assert daemon.stop() == 0

        # Once per change of state, restart or not: never per run.
        assert hook.kinds() == ["failure", "stale", "recovery"]
    # Read with an hourly schedule: with 1 s, a status read 2 s after the last success (a busy
    # machine) would rightly say STALE. What is asserted is the recorded recovery.
    settings = yaml.safe_load(config.read_text())
    settings["schedule"] = {"interval": 3600}
    config.write_text(yaml.safe_dump(settings))
    status = backupd_in_process("status", "-c", str(config), "--json")
    assert status.returncode == 0
    (record,) = json.loads(status.stdout)["workspaces"]
    # The stop may land in a later run (every second): that run is then INTERRUPTED, which
    # keeps the recovered state; what matters is that nothing is failing any more.
    assert record["state"] in ("OK", "INTERRUPTED"), record
    assert record["failures"] == 0 and record["last_error"] is None, record


def test_metrics_count_throttled_calls_and_retries(tmp_path: Path, simulator: Simulator) -> None:
    wid, _ = add_workspace(simulator, 1, "sales", jobs=6)
    port = free_port()
    config = make_config(
        tmp_path,
        simulator,
        {"sales": wid},
        extra_source={"batch_size": 2},
        extra={
            "schedule": {"interval": 3600},
            "daemon": {"run_at_start": True},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "remote": {"url": (tmp_path / "no-such-remote.git").as_uri(), "timeout": 10},
        },
    )
    # Three exports sent together against one a second: some are answered 429, and retried.
    # (Throttling the listings too would only make the client slow down for seconds.)
    simulator.faults.export_throttle_rps = 1
    simulator.faults.retry_after = 0.1

    with DaemonProcess(config) as daemon:
        daemon.wait_for("snapshot.done", timeout=30)
        daemon.wait_for("push.failed")
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert daemon.stop() == 0

    throttled = metric(scrape, "backupd_api_throttled_total", source="prod")
    assert throttled >= 1
    assert metric(scrape, "backupd_api_requests_total", source="prod", status="429") == throttled
    assert metric(scrape, "backupd_api_retries_total", source="prod") == throttled
    assert metric(scrape, "backupd_snapshots_total", workspace=LABEL, result="success") == 1
    assert metric(scrape, "backupd_push_failures_total") == 1


def test_the_daemon_pushes_what_it_committed(tmp_path: Path, simulator: Simulator) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    remote = bare_repository(tmp_path / "remote.git")
    config = make_config(
        tmp_path,
        simulator,
        {"sales": wid},
        extra={"daemon": {"run_at_start": True}, "remote": {"url": remote.as_uri()}},
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for("push.done")
        assert daemon.stop() == 0
    assert git(remote, "rev-parse", "main") == git(tmp_path / "repo", "rev-parse", "HEAD")


def test_a_metrics_address_in_use_fails_the_start_with_one_line(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid, _ = add_workspace(simulator, 1, "sales")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(
            tmp_path, simulator, {"sales": wid}, extra={"metrics": {"listen": f"127.0.0.1:{port}"}}
        )
        result = backupd("run", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"backupd: metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
