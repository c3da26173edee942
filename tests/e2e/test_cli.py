"""The installed command line, run as a subprocess the way a person or systemd runs it (demo,
simulator); what it says about a bad config, a usage error or in its help is checked in
process (tests/e2e/test_cli_strict_config.py proves exit 78 of the real process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import backupd_in_process, commit_count


def backupd(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


GOOD = {
    "repository": {"path": "repo"},
    "sources": [
        {
            "name": "prod",
            "region": "cn-north-4",
            "project_id": "0123456789abcdef0123456789abcdef",
            "auth": {"type": "token", "token": "x"},
            "workspaces": [{"id": "fedcba9876543210fedcba9876543210"}],
        }
    ],
}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "blue"}, "sources[0].colour"),
        ({"batch_size": "many"}, "sources[0].batch_size"),
        ({"project_id": None}, "sources[0].project_id"),
        ({"batch_size": 101}, "sources[0].batch_size"),
    ],
)
def test_bad_config_gives_one_line_naming_the_key_and_exit_78(
    tmp_path: Path, change: dict[str, object], key: str
) -> None:
    source = {**GOOD["sources"][0], **change}  # type: ignore[dict-item]
    if change.get("project_id", "") is None:
        del source["project_id"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**GOOD, "sources": [source]}))

    result = backupd_in_process("snapshot", "-c", str(config))

    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "repo").exists()


def test_unreadable_yaml_and_missing_file_exit_78(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [\n")
    result = backupd_in_process("snapshot", "-c", str(broken))
    assert result.returncode == 78 and "line" in result.stderr
    result = backupd_in_process("snapshot", "-c", str(tmp_path / "missing.yaml"))
    assert result.returncode == 78 and "cannot read" in result.stderr


def test_usage_error_exits_2() -> None:
    assert backupd_in_process("no-such-command").returncode == 2


def test_help_lists_every_command() -> None:
    result = backupd_in_process("--help")
    assert result.returncode == 0
    for command in ("snapshot", "check", "status", "push", "log", "show", "config", "demo"):
        assert command in result.stdout


def test_demo_runs_to_completion_in_a_fresh_directory(tmp_path: Path) -> None:
    result = backupd("demo", str(tmp_path / "demo"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Second snapshot" in result.stdout
    repo = tmp_path / "demo" / "repo"
    assert commit_count(repo) == 4  # README, two workspaces, one change
    assert "demo/sales:" in result.stdout


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = backupd("demo", str(tmp_path))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_simulator_command_serves_the_dataarts_api(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "backupd", "simulator", "--port", "0", "--jobs", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Ctrl-C"):
            lines.append(process.stdout.readline())

        def value(prefix: str) -> list[str]:
            return next(line for line in lines if line.startswith(prefix)).split()

        url = value("DataArts simulator listening on")[-1]
        project = value("project id:")[-1]
        token = value("token:")[1]
        workspace = value("workspace:")[1]
        reply = httpx.get(
            f"{url}/v1/{project}/jobs",
            params={"limit": 100},
            headers={"X-Auth-Token": token, "workspace": workspace},
            timeout=10,
        )
        assert reply.status_code == 200
        assert reply.json()["total"] > 0
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_help_describes_check_status_and_dry_run() -> None:
    check = " ".join(backupd_in_process("check", "--help").stdout.split())
    assert "limit 1" in check and "Exit code 0 only if every line is OK" in check
    status = " ".join(backupd_in_process("status", "--help").stdout.split())
    assert "STALE" in status and "--json" in status and "twice the period" in status
    snapshot = " ".join(backupd_in_process("snapshot", "--help").stdout.split())
    assert "--dry-run" in snapshot and "only known by exporting" in snapshot
