"""`backupd snapshot` on a terminal (a progress bar) and through a pipe (none), its status
file and alerts, and `--dry-run`. The CLI as a subprocess, the simulator over HTTP, real git.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from backupd.simulator.server import Simulator
from tests.e2e.daemon_process import clean_environment
from tests.helpers import backupd_cli, commit_count, make_config, workspace_id


def run_on_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; (exit code, output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backupd", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=clean_environment({"TERM": "xterm"}),
        close_fds=True,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal closed with the last process
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return code, output.decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_and_none_through_a_pipe(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid = workspace_id(1)
    simulator.add_workspace(wid, "sales")
    simulator.populate(wid, 9)
    config = make_config(tmp_path, simulator, {"sales": wid}, extra_source={"batch_size": 3})

    code, screen = run_on_terminal("snapshot", "-c", str(config))

    assert code == 0, screen
    assert "\r\x1b[2K" in screen  # redrawn in place
    assert "prod/sales" in screen and "3/3 batches" in screen and "9/9 jobs" in screen
    assert "prod/sales committed 9 added (" in screen  # its final line
    assert "snapshot.done" in screen  # log lines still appear, above the rows

    simulator.modify_job(wid, simulator.populate(wid, 1)[0])
    piped = backupd_cli("snapshot", "-c", str(config))
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "batches" not in piped.stderr
    events = [line.split()[2] for line in piped.stderr.splitlines()]  # "HH:MM:SS INFO event"
    assert "snapshot.done" in events  # log lines only (text, as on a terminal)


def test_snapshot_records_status_and_alerts_once_per_change_through_a_command(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid = workspace_id(1)
    simulator.add_workspace(wid, "sales")
    simulator.populate(wid, 2)
    received = tmp_path / "alerts.jsonl"
    script = tmp_path / "alert.py"
    script.write_text(
        "import json, os, sys\n"
        "event = json.load(sys.stdin)\n"
        f"with open({str(received)!r}, 'a') as out:\n"
        "    out.write(json.dumps([os.environ['BACKUPD_ALERT'], event['workspace'],"
        " event['last_error']]) + '\\n')\n"
    )
    alerts = {"command": [sys.executable, str(script)], "timeout": 20}
    config = make_config(tmp_path, simulator, {"sales": wid}, extra={"alerts": alerts})

    assert backupd_cli("snapshot", "-c", str(config)).returncode == 0
    simulator.faults.forbidden_workspaces = [wid]
    for _ in range(2):
        assert backupd_cli("snapshot", "-c", str(config)).returncode == 1
    simulator.faults.forbidden_workspaces = []
    assert backupd_cli("snapshot", "-c", str(config)).returncode == 0

    sent = [json.loads(line) for line in received.read_text().splitlines()]
    assert [kind for kind, _, _ in sent] == ["failure", "recovery"]
    assert sent[0][1] == "prod/sales" and "HTTP 403" in sent[0][2]
    status_file = tmp_path / "repo" / ".git" / "backupd" / "status.json"
    assert status_file.stat().st_mode & 0o777 == 0o600
    record = json.loads(status_file.read_text())["workspaces"]["prod/sales"]
    assert record["last_error"] is None and record["jobs"] == 2 and record["alerted"] == "ok"


def test_a_failing_alert_is_logged_and_does_not_fail_the_snapshot(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid = workspace_id(1)
    simulator.add_workspace(wid, "sales")
    simulator.populate(wid, 2)
    simulator.faults.forbidden_workspaces = [wid]
    alerts = {
        "webhook": "http://127.0.0.1:9/nobody-listens",
        "command": [sys.executable, "-c", "import sys; sys.exit('no pager today')"],
    }
    config = make_config(tmp_path, simulator, {"sales": wid}, extra={"alerts": alerts})

    result = backupd_cli("--log-format", "json", "snapshot", "-c", str(config))

    assert result.returncode == 1  # the snapshot's own failure, nothing more
    failed = [
        event
        for line in result.stderr.splitlines()
        if line.startswith("{")
        for event in [json.loads(line)]
        if event["event"] == "alert.failed"
    ]
    assert {event["channel"] for event in failed} == {"webhook", "command"}
    assert "nobody-listens" not in result.stderr  # only scheme and host of a webhook
    assert any("no pager today" in event["error"] for event in failed)


def test_dry_run_lists_new_and_gone_jobs_and_exports_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid = workspace_id(1)
    simulator.add_workspace(wid, "sales")
    jobs = simulator.populate(wid, 6)
    config = make_config(tmp_path, simulator, {"sales": wid})
    assert backupd_cli("snapshot", "-c", str(config)).returncode == 0
    repo = tmp_path / "repo"
    commits = commit_count(repo)
    (added,) = simulator.populate(wid, 1)
    simulator.delete_job(wid, jobs[0])
    simulator.modify_job(wid, jobs[1])
    simulator.clear_calls()

    result = backupd_cli("snapshot", "--dry-run", "-c", str(config))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "prod/sales: 6 jobs listed, 6 in the repository" in out
    assert f"new jobs (1): {added}" in out
    assert f"jobs gone (recorded as deleted once the service confirms it) (1): {jobs[0]}" in out
    assert f"jobs saved in DataArts since the last snapshot (1): {jobs[1]}" in out
    assert "only known by exporting" in out
    assert not [call for call in simulator.calls if call.path.endswith("batch-export")]
    assert commit_count(repo) == commits

    simulator.clear_workspace(wid)
    refused = backupd_cli("snapshot", "--dry-run", "-c", str(config))
    assert "would be REFUSED" in refused.stdout and "--allow-mass-delete" in refused.stdout
