"""What an operator sees: log lines through a pipe, into a file and into the journal; the
output options before and after the sub-command; a closed pipe. The CLI as a subprocess,
except where only the options' parsing is at stake (levels before and after the sub-command:
in process)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
import yaml

from backupd.simulator.server import Simulator
from tests.e2e.daemon_process import clean_environment
from tests.helpers import backupd_in_process, make_config, workspace_id


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without systemd's or the developer's logging choices."""
    environ = clean_environment(extra)
    for name in ("BACKUPD_LOG_LEVEL", "BACKUPD_LOG_FORMAT"):
        if name not in extra:
            environ.pop(name, None)
    return environ


TEXT_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) [a-z_.]+( |$)")


def run(
    *args: str, env: dict[str, str] | None = None, stderr: int | IO[str] = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env or environment(),
        timeout=120,
        check=False,
    )


def readable_config(tmp_path: Path, workspaces: int = 1) -> Path:
    """A valid config with its token written inline, readable by others: `config validate`
    warns (config.inline_secret) without calling anything."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "repository": {"path": str(tmp_path / "repo")},
                "sources": [
                    {
                        "name": "prod",
                        "region": "cn-north-4",
                        "project_id": "0123456789abcdef0123456789abcdef",
                        "auth": {"type": "token", "token": "not-a-real-token"},
                        "workspaces": [
                            {"id": workspace_id(number), "name": f"w{number}"}
                            for number in range(workspaces)
                        ],
                    }
                ],
            }
        )
    )
    config.chmod(0o644)
    return config


def test_logs_are_text_through_a_pipe(tmp_path: Path) -> None:
    result = run("config", "validate", "-c", str(readable_config(tmp_path)))

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), result.stderr
    assert "WARNING config.inline_secret" in result.stderr
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert "not-a-real-token" not in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_logs_are_json_on_request(tmp_path: Path, where: str) -> None:
    config = str(readable_config(tmp_path))
    option = ("--log-format", "json")
    args = (
        (*option, "config", "validate", "-c", config)
        if where == "before"
        else ("config", "validate", "-c", config, *option)
    )

    result = run(*args)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["level"], e["event"]) for e in events] == [("warning", "config.inline_secret")]


def test_json_from_the_environment_and_a_bad_choice_is_a_usage_error(tmp_path: Path) -> None:
    config = str(readable_config(tmp_path))
    result = run("config", "validate", "-c", config, env=environment(BACKUPD_LOG_FORMAT="json"))
    assert json.loads(result.stderr.splitlines()[0])["event"] == "config.inline_secret"
    result = run("config", "validate", "-c", config, env=environment(BACKUPD_LOG_LEVEL="loud"))
    assert result.returncode == 2 and "BACKUPD_LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_under_the_journal_lines_carry_priorities_and_no_time(tmp_path: Path) -> None:
    config = str(readable_config(tmp_path))
    journal = tmp_path / "journal"
    with open(journal, "w") as stderr:
        stat = os.fstat(stderr.fileno())
        env = environment(JOURNAL_STREAM=f"{stat.st_dev}:{stat.st_ino}")
        validated = run("config", "validate", "-c", config, env=env, stderr=stderr)
        failed = run("status", "-c", str(tmp_path / "missing.yaml"), env=env, stderr=stderr)

    assert validated.returncode == 0 and failed.returncode == 78
    lines = journal.read_text().splitlines()
    assert lines[0].startswith("<4>WARNING config.inline_secret file=")
    assert lines[1].startswith("<3>backupd: config: ") and "missing.yaml" in lines[1]
    assert len(lines) == 2


def test_the_same_file_without_journal_stream_gets_no_prefix(tmp_path: Path) -> None:
    log_file = tmp_path / "log"
    with open(log_file, "w") as stderr:
        run("config", "validate", "-c", str(readable_config(tmp_path)), stderr=stderr)
    (line,) = log_file.read_text().splitlines()
    assert TEXT_LINE.match(line) and not line.startswith("<")


def snapshot_setup(tmp_path: Path, simulator: Simulator) -> Path:
    wid = workspace_id(1)
    simulator.add_workspace(wid, "sales")
    simulator.populate(wid, 4)
    return make_config(tmp_path, simulator, {"sales": wid})


@pytest.mark.parametrize(
    "options",
    [("-v",), ("--verbose",), ("--log-level", "debug")],
    ids=["-v", "--verbose", "--log-level-debug"],
)
def test_debug_options_after_the_sub_command(
    tmp_path: Path, simulator: Simulator, options: tuple[str, ...]
) -> None:
    config = snapshot_setup(tmp_path, simulator)

    result = backupd_in_process("snapshot", "-c", str(config), *options)

    assert result.returncode == 0, result.stderr
    assert "unrecognized arguments" not in result.stderr
    assert " DEBUG snapshot.batch " in result.stderr  # debug events are shown
    assert " INFO snapshot.done " in result.stderr


def test_quiet_shows_warnings_and_errors_only_before_or_after(
    tmp_path: Path, simulator: Simulator
) -> None:
    config = snapshot_setup(tmp_path, simulator)

    after = backupd_in_process("snapshot", "-c", str(config), "-q")
    simulator.modify_job(workspace_id(1), sorted(simulator.jobs(workspace_id(1)))[0])
    before = backupd_in_process("-q", "snapshot", "-c", str(config))
    overridden = backupd_in_process("-q", "snapshot", "-c", str(config), "--log-level", "info")

    assert after.returncode == before.returncode == overridden.returncode == 0
    assert after.stderr == "" and before.stderr == "", after.stderr + before.stderr
    assert " INFO snapshot.done " in overridden.stderr  # the one after the sub-command wins


def test_status_exits_1_for_never_run_workspaces(tmp_path: Path) -> None:
    config = readable_config(tmp_path, workspaces=2)
    config.chmod(0o600)
    result = run("status", "-c", str(config))
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("NEVER RUN") == 2 and result.stderr == ""


def test_status_through_head_ends_quietly(tmp_path: Path) -> None:
    """More output than the pipe holds, so `head -1` leaves while backupd still writes."""
    config = readable_config(tmp_path, workspaces=3000)
    config.chmod(0o600)
    command = (
        f"{shlex.quote(sys.executable)} -m backupd status --json -c {shlex.quote(str(config))}"
    )
    script = f'{{ {command} 2>"$ERR"; echo $? >"$CODE"; }} | head -1'
    env = environment(ERR=str(tmp_path / "err"), CODE=str(tmp_path / "code"))

    shell = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )

    assert shell.returncode == 0 and shell.stdout == "{\n"
    assert (tmp_path / "code").read_text().strip() == "0"
    assert (tmp_path / "err").read_text() == ""  # no traceback, no error line
    assert shell.stderr == ""
