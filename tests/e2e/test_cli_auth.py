"""The CLI against the authenticating simulator: what an operator sees when auth goes wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from backupd.simulator.server import Simulator
from tests.helpers import auth_config, commit_count, make_config, secret_file, workspace_id

WORKSPACES = {"sales": workspace_id(1), "finance": workspace_id(2)}


def backupd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", "--log-format", "text", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("backupd: ")]


@pytest.fixture
def populated(simulator: Simulator) -> Simulator:
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 10)
    return simulator


def test_a_snapshot_signed_with_aksk_succeeds(tmp_path: Path, populated: Simulator) -> None:
    result = backupd("snapshot", "-c", str(make_config(tmp_path, populated, WORKSPACES)))
    assert result.returncode == 0, result.stderr
    assert commit_count(tmp_path / "repo") == 3
    assert populated.auth.failures == []


def test_a_skewed_clock_is_reported_as_a_clock_problem(
    tmp_path: Path, populated: Simulator
) -> None:
    populated.auth.clock_offset = timedelta(minutes=20)

    result = backupd("snapshot", "-c", str(make_config(tmp_path, populated, WORKSPACES)))

    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("backupd: prod/sales, prod/finance: clock problem: list jobs: ")
    assert "synchronise it (NTP)" in lines[0]
    assert lines[1] == "backupd: snapshot failed for prod/sales, prod/finance"
    assert len(populated.auth.failures) == 1
    assert "Traceback" not in result.stderr


def test_rejected_credentials_exit_78_after_a_single_request(
    tmp_path: Path, populated: Simulator
) -> None:
    auth = auth_config(tmp_path, populated) | {
        "sk_file": str(secret_file(tmp_path / "old-sk", "a-revoked-secret-key"))
    }
    config = make_config(tmp_path, populated, WORKSPACES, auth=auth)

    result = backupd("snapshot", "-c", str(config))

    assert result.returncode == 78
    lines = error_lines(result)
    assert lines[0].startswith("backupd: prod/sales, prod/finance: credentials rejected: ")
    assert "verify aksk signature fail" in lines[0]
    assert len(populated.auth.failures) == 1 and populated.calls == []
    assert "api.retry" not in result.stderr
    assert result.stderr.count("snapshot.failed") == 1


def test_a_wrong_password_exits_78_after_one_iam_request(
    tmp_path: Path, populated: Simulator
) -> None:
    auth = auth_config(tmp_path, populated, "password")
    auth["password_file"] = str(secret_file(tmp_path / "old-password", "an-old-password"))
    config = make_config(tmp_path, populated, WORKSPACES, auth=auth)

    result = backupd("snapshot", "-c", str(config))

    assert result.returncode == 78
    assert "IAM rejected the password for user sim-user" in error_lines(result)[0]
    assert len(populated.auth.token_requests) == 1


def test_an_unreadable_secret_exits_78_naming_the_key(tmp_path: Path, populated: Simulator) -> None:
    auth = auth_config(tmp_path, populated) | {"sk_file": str(tmp_path / "missing")}
    result = backupd("snapshot", "-c", str(make_config(tmp_path, populated, WORKSPACES, auth=auth)))
    assert result.returncode == 78
    assert error_lines(result) == [
        f"backupd: sources[prod].auth.sk: cannot read {tmp_path / 'missing'}: "
        "No such file or directory"
    ]


def test_an_inline_secret_in_a_readable_config_is_warned_about(
    tmp_path: Path, populated: Simulator
) -> None:
    config = make_config(tmp_path, populated, WORKSPACES)
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["auth"] = {
        "type": "aksk",
        "ak": data["sources"][0]["auth"]["ak"],
        "sk": Path(data["sources"][0]["auth"]["sk_file"]).read_text().strip(),
    }
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o644)

    result = backupd("config", "validate", "-c", str(config))

    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "config.inline_secret" in line]
    assert len(warnings) == 1
    assert "key=sources[0].auth.sk" in warnings[0] and "mode=0644" in warnings[0]
    assert data["sources"][0]["auth"]["sk"] not in result.stderr
