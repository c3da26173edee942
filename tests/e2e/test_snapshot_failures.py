"""`backupd snapshot` as a subprocess when things go wrong: what it says and how it exits."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from backupd.simulator.server import Simulator
from tests.helpers import (
    commit_count,
    expected_tree,
    git,
    make_config,
    read_tree,
    secret_file,
    workspace_id,
)

A, B = workspace_id(31), workspace_id(32)


def snapshot(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "backupd", "--log-format", "json", "snapshot"]
    return subprocess.run(
        [*command, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def log_events(stderr: str) -> list[dict[str, object]]:
    """The JSON log records (asked for with --log-format json)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def plain_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def test_rejected_credentials_cost_one_request_and_one_clear_line(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.add_workspace(B, "b")
    config = make_config(tmp_path, simulator, {"a": A, "b": B})  # AK/SK, as in production
    secret_file(tmp_path / "secret-key", "not-the-secret-key")

    result = snapshot(config)

    assert result.returncode == 78  # a credential problem: restarting will not fix it
    assert len(simulator.served) == 1  # no retry loop, no second workspace tried
    assert simulator.served[0].status == 401
    (line,) = [line for line in plain_lines(result.stderr) if "HTTP 401" in line]
    assert line.startswith("backupd: prod/a, prod/b: ")
    assert "APIGW.0301" in line
    assert "Traceback" not in result.stderr
    events = log_events(result.stderr)
    assert not [e for e in events if e["event"] == "api.retry"]
    assert [e["event"] for e in events if e["level"] == "error"].count("snapshot.failed") == 1
    assert [e["workspaces"] for e in events if e["event"] == "source.skipped"] == ["prod/b"]
    assert commit_count(tmp_path / "repo") == 1  # the repository README only


def test_a_failing_workspace_is_named_and_the_others_are_committed(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, 6)
    simulator.add_workspace(B, "b")
    simulator.populate(B, 6)
    config = make_config(tmp_path, simulator, {"a": A, "b": B})
    a_jobs = set(simulator.jobs(A))

    def break_a(data: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {n.split("/")[1] for n in archive.namelist()}
        return data[:100] if names & a_jobs else data

    simulator.export_hook = break_a

    result = snapshot(config)

    assert result.returncode == 1
    reason, summary = plain_lines(result.stderr)
    assert reason.startswith("backupd: prod/a: batch 1/1: ")
    assert summary == "backupd: snapshot failed for prod/a"
    repo = tmp_path / "repo"
    assert not (repo / "prod" / "a").exists()
    assert read_tree(repo / "prod" / "b") == expected_tree(simulator, B)
    assert git(repo, "log", "--format=%s").splitlines()[0].startswith("prod/b: 6 added")


def test_allow_mass_delete_flag_records_a_real_mass_deletion(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, 6)
    config = make_config(tmp_path, simulator, {"a": A})
    assert snapshot(config).returncode == 0
    for name in sorted(simulator.jobs(A))[:5]:
        simulator.delete_job(A, name)

    refused = snapshot(config)
    assert refused.returncode == 1
    assert "5 of 6 BATCH jobs would be deleted" in refused.stderr
    assert "--allow-mass-delete" in plain_lines(refused.stderr)[0]

    allowed = snapshot(config, "--allow-mass-delete")
    assert allowed.returncode == 0, allowed.stderr
    assert read_tree(tmp_path / "repo" / "prod" / "a") == expected_tree(simulator, A)
