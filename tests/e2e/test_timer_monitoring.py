"""Timer mode is monitored too: `backupd snapshot` leaves a node_exporter textfile and pings
a heartbeat URL (start, then success or fail), and neither can fail the snapshot."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backupd import version
from backupd.simulator.server import Simulator
from tests.helpers import make_config, workspace_id

A, GHOST = workspace_id(41), workspace_id(42)
SECRET = "0f1e2d3c-secret-check-id"


@dataclass(frozen=True)
class Ping:
    method: str
    path: str
    body: str


class PingReceiver:
    """A healthchecks.io stand-in on loopback: records every request."""

    def __init__(self) -> None:
        self.pings: list[Ping] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                receiver.pings.append(Ping(self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/ping/{SECRET}"

    def paths(self) -> list[str]:
        return [ping.path for ping in self.pings]

    def __enter__(self) -> PingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[PingReceiver]:
    with PingReceiver() as running:
        yield running


def snapshot(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", "--log-format", "json", "snapshot", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def samples(textfile: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) → value, parsed the way Prometheus parses the file."""
    found = {}
    for family in text_string_to_metric_families(textfile.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def ws(label: str) -> tuple[tuple[str, str], ...]:
    return (("workspace", label),)


def test_snapshot_writes_the_textfile_and_pings_start_then_success(
    tmp_path: Path, simulator: Simulator, receiver: PingReceiver
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, jobs=3)
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    textfile = textfile_dir / "backupd.prom"
    config = make_config(
        tmp_path,
        simulator,
        {"a": A},
        extra={"metrics_textfile": str(textfile), "heartbeat": {"url": receiver.url}},
    )

    result = snapshot(config)

    assert result.returncode == 0, result.stderr
    found = samples(textfile)
    assert found[("backupd_last_snapshot_ok", ws("prod/a"))] == 1
    assert found[("backupd_workspace_jobs", ws("prod/a"))] == 3
    assert found[("backupd_consecutive_failures", ws("prod/a"))] == 0
    assert found[("backupd_workspace_stale", ws("prod/a"))] == 0
    success = found[("backupd_last_success_timestamp_seconds", ws("prod/a"))]
    assert found[("backupd_last_attempt_timestamp_seconds", ws("prod/a"))] == success
    assert found[("backupd_workspace_stale_after_timestamp_seconds", ws("prod/a"))] > success
    assert found[("backupd_last_snapshot_duration_seconds", ws("prod/a"))] > 0
    assert found[("backupd_last_run_result", (("result", "ok"),))] == 1
    assert found[("backupd_last_run_result", (("result", "partial"),))] == 0
    assert found[("backupd_last_run_timestamp_seconds", ())] >= success
    build = [key for key in found if key[0] == "backupd_build_info"]
    assert len(build) == 1 and ("version", version()) in build[0][1]
    assert not any(name.endswith("_created") for name, _ in found)
    assert not any(name.startswith("process_") for name, _ in found)  # the process is gone
    # Readable by node_exporter whatever the umask; no temporary file left beside it.
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert sorted(path.name for path in textfile_dir.iterdir()) == ["backupd.prom"]

    assert receiver.paths() == [f"/ping/{SECRET}/start", f"/ping/{SECRET}"]
    assert receiver.pings[1].method == "POST" and "prod/a: ok, 3 jobs" in receiver.pings[1].body
    assert SECRET not in result.stderr  # only scheme and host are logged
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    sent = [event for event in events if event.get("event") == "heartbeat.sent"]
    assert [event["ping"] for event in sent] == ["start", "success"]


def test_partial_run_pings_fail_and_the_textfile_names_the_failed_workspace(
    tmp_path: Path, simulator: Simulator, receiver: PingReceiver
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, jobs=2)  # GHOST is not a workspace of the simulator
    textfile = tmp_path / "backupd.prom"
    config = make_config(
        tmp_path,
        simulator,
        {"a": A, "ghost": GHOST},
        extra={"metrics_textfile": str(textfile), "heartbeat": {"url": receiver.url}},
    )

    result = snapshot(config)

    assert result.returncode == 1
    found = samples(textfile)
    assert found[("backupd_last_run_result", (("result", "partial"),))] == 1
    assert found[("backupd_last_run_result", (("result", "ok"),))] == 0
    assert found[("backupd_last_snapshot_ok", ws("prod/a"))] == 1
    assert found[("backupd_last_snapshot_ok", ws("prod/ghost"))] == 0
    assert found[("backupd_consecutive_failures", ws("prod/ghost"))] == 1
    assert ("backupd_last_success_timestamp_seconds", ws("prod/ghost")) not in found
    assert receiver.paths() == [f"/ping/{SECRET}/start", f"/ping/{SECRET}/fail"]
    body = receiver.pings[1].body
    assert "prod/a: ok" in body and "prod/ghost: FAILED" in body

    # The next run fails entirely: a second failure in a row, and the run result says so.
    simulator.remove_workspace(A)
    assert snapshot(config).returncode == 1
    found = samples(textfile)
    assert found[("backupd_last_run_result", (("result", "failed"),))] == 1
    assert found[("backupd_consecutive_failures", ws("prod/ghost"))] == 2


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_heartbeat_and_unwritable_textfile_never_fail_the_snapshot(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, jobs=1)
    url = f"http://127.0.0.1:{closed_port()}/ping/{SECRET}"
    config = make_config(
        tmp_path,
        simulator,
        {"a": A},
        extra={
            "metrics_textfile": str(tmp_path / "missing-dir" / "backupd.prom"),
            "heartbeat": {"url": url, "timeout": 2},
        },
    )

    result = snapshot(config)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failed = [event for event in events if event.get("event") == "heartbeat.failed"]
    assert [event["ping"] for event in failed] == ["start", "success"]
    assert all(event["target"] == "http://127.0.0.1" for event in failed)
    assert [event["event"] for event in events if "textfile" in event["event"]] == [
        "metrics.textfile_failed"
    ]
    assert SECRET not in result.stderr
